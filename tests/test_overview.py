"""analytics.overview: the cached aggregates answer exactly what the direct queries over the events answer."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from analytics import inventory, overview
from analytics.lake import connect, mart_cache_dir
from ingest.collect_files import ingest_files
from ingest.lake import Lake


@pytest.fixture(scope="module")
def lake_dir(scenario, tmp_path_factory):
    d = tmp_path_factory.mktemp("ov") / "lake"
    ingest_files([scenario], Lake(d))
    return d


def _direct_over_time(con, bucket, by, since, until) -> pd.DataFrame:
    col = {"source": "source", "category": "category"}[by]
    return con.execute(f"""
        SELECT date_trunc($b, time) AS bucket, {col} AS series, count(*) AS events FROM events
        WHERE ($s IS NULL OR time >= $s) AND ($u IS NULL OR time < $u) GROUP BY ALL ORDER BY bucket, series""",  # noqa: S608
        {"b": bucket, "s": since, "u": until}).df()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) > 0
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


def test_counts_and_bars_equal_the_events(lake_dir):
    con = connect(lake_dir)
    by = overview.events_by(con)
    direct = con.execute("""SELECT source, category, count(*) AS events, min(time) AS first, max(time) AS last
        FROM events GROUP BY ALL ORDER BY events DESC, source, category""").df()
    _same(by, direct)
    first = by["first"].min()
    median = con.execute("SELECT quantile_disc(time, 0.5) FROM events").fetchone()[0]
    mid = pd.Timestamp(median).floor("h").to_pydatetime()
    for bucket in ("hour", "day", "week"):
        for by_col in ("source", "category"):
            for since, until in ((None, None), (first.floor("h").to_pydatetime(), mid), (mid, None)):
                _same(overview.events_over_time(con, bucket, by_col, since, until),
                      _direct_over_time(con, bucket, by_col, since, until))
    # a range that cuts an hour, and minute bars, read the events themselves
    cut = median + dt.timedelta(minutes=17)
    _same(overview.events_over_time(con, "minute", "source", mid, cut),
          _direct_over_time(con, "minute", "source", mid, cut))
    _same(overview.events_over_time(con, "day", "source", cut, None), _direct_over_time(con, "day", "source", cut, None))


def test_busy_period_holds_the_middle_of_the_events(lake_dir):
    con = connect(lake_dir)
    busy_from, busy_to = overview.busy_period(con)
    n, inside = con.execute("SELECT count(*), count(*) FILTER (WHERE time >= $a AND time < $b) FROM events",
                            {"a": busy_from, "b": busy_to}).fetchone()
    assert 0.96 * n <= inside <= n
    assert busy_from == pd.Timestamp(busy_from).floor("h")


@pytest.mark.parametrize(("ttl", "grace"), [(900.0, 60.0), (60.0, 0.0), (86_400.0, 3_600.0)])
def test_hygiene_equals_the_credential_layers(lake_dir, ttl, grace):
    con = connect(lake_dir)
    got = overview.hygiene(con, ttl, grace)
    m = con.execute("""SELECT count(*), count(*) FILTER (WHERE a.decision IS NOT NULL OR EXISTS (
            SELECT 1 FROM decisions d WHERE d.request_id = a.request_id OR d.trace_id = a.trace_id)) FROM actions a""").fetchone()
    c = con.execute("""
        WITH agent_creds AS (SELECT * FROM int_credential_issued WHERE holder_type = 'agent'),
        task_end AS (SELECT task_id, max(time) AS ended_at FROM events GROUP BY task_id)
        SELECT count(*), count(c.expires_at),
               count(*) FILTER (WHERE epoch(c.expires_at) - epoch(c.issued_at) <= $ttl),
               count(*) FILTER (WHERE c.task_id IS NOT NULL),
               count(*) FILTER (WHERE c.task_id IS NOT NULL AND r.revoked_at IS NOT NULL
                                AND epoch(r.revoked_at) <= epoch(t.ended_at) + $grace)
        FROM agent_creds c LEFT JOIN int_credential_revoked r USING (credential_id) LEFT JOIN task_end t USING (task_id)""",
        {"ttl": ttl, "grace": grace}).fetchone()
    assert got == dict(zip(["actions", "mediated", "agent_credentials", "with_expiry", "within_ttl", "per_task",
                            "revoked_at_end"], [*m, *c], strict=True))
    assert got["agent_credentials"] > 0 and 0 < got["mediated"] <= got["actions"]


def test_identity_figures_equal_the_inventory(lake_dir):
    con = connect(lake_dir)
    inv = inventory.inventory(con)
    nonhuman = [r for r in inv if r.identity_type != "human"]
    want = {"identities": con.execute("SELECT count(*) FROM identities").fetchone()[0], "nonhuman": len(nonhuman),
            "nonhuman_no_owner": sum(1 for r in nonhuman if not r.owners)}
    assert overview.identity_figures(con) == want
    assert list(overview.identities(con)["identity"]) == [
        r[0] for r in con.execute("SELECT identity FROM identities ORDER BY events_as_actor DESC, identity").fetchall()]


def test_the_next_connection_reads_the_snapshots_cache(lake_dir):
    first = connect(lake_dir)
    overview.prepare(first)
    want = (overview.events_by(first), overview.hygiene(first, 900.0, 60.0), overview.identity_figures(first))
    cache = mart_cache_dir(first)
    files = {p.name.split("-")[0] for p in cache.glob("ov_*.parquet")}
    assert files == set(overview.TABLES)
    for p in cache.glob("ov_*.parquet"):  # the next connection must read these, not recompute
        p.touch()
    stamp = {p: p.stat().st_mtime_ns for p in cache.glob("ov_*.parquet")}
    second = connect(lake_dir)
    got = (overview.events_by(second), overview.hygiene(second, 900.0, 60.0), overview.identity_figures(second))
    _same(got[0], want[0])
    assert got[1:] == want[1:]
    assert {p: p.stat().st_mtime_ns for p in cache.glob("ov_*.parquet")} == stamp
