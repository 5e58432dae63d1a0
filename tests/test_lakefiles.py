"""Per-file facts of a snapshot: the Delta time statistics the exact time range relies on, and the schema cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import analytics.lakefiles as lf
from analytics.lake import connect, time_range
from ingest.lake import Lake
from tests.analytics_factory import append_events, ev

US = dt.timedelta(microseconds=1)
BASE = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)


def _at(day: int, us: int) -> dt.datetime:
    return BASE + dt.timedelta(days=day) + us * US


def _commit(root: Path, name: str, times: list[dt.datetime]) -> None:
    rows = [ev(f"t:{name}-{i}", 0, "api.call", "alice@corp.example") for i in range(len(times))]
    for r, t in zip(rows, times, strict=True):
        r["time"], r["day"] = t, t.date().isoformat()
    append_events(root, rows, app_id=name)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    # Extremes that share a millisecond across files, a file within the 2 ms slack, and files far from both ends.
    _commit(tmp_path, "a", [_at(0, 400), _at(0, 5_000_000)])
    _commit(tmp_path, "b", [_at(0, 100), _at(0, 7_000_123)])  # the earliest: same ms as a's, 300 µs before
    _commit(tmp_path, "c", [_at(0, 1_900), _at(0, 9_000_000)])  # within 2 ms of the earliest statistic
    _commit(tmp_path, "d", [_at(1, 0), _at(1, 3_000_000)])  # far from both ends
    _commit(tmp_path, "e", [_at(2, 5_000_999), _at(2, 999)])
    _commit(tmp_path, "f", [_at(2, 5_000_001), _at(2, 4_000_000)])  # the latest is e's, 998 µs later, same ms
    return tmp_path


def test_delta_time_statistics_are_at_most_one_millisecond_below(lake: Path) -> None:
    """The assumption ``time_range`` rests on, checked on the installed deltalake's own statistics."""
    facts = lf.FileFacts.of(Lake(lake).events_table())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for uri, smin, smax in zip(facts.uris, facts.time_min, facts.time_max, strict=True):
        lo, hi = con.execute("SELECT epoch_us(min(time)), epoch_us(max(time)) FROM read_parquet($f)",
                             {"f": uri}).fetchone()
        assert smin is not None and smax is not None
        assert 0 <= lo - smin < 1000 and 0 <= hi - smax < 1000  # µs


def test_time_range_is_exact_and_reads_only_the_files_at_the_ends(lake: Path) -> None:
    con = connect(lake)
    full = con.execute("SELECT min(time), max(time) FROM events").fetchone()
    assert time_range(con) == full == (_at(0, 100), _at(2, 5_000_999))
    facts = lf.FileFacts.of(Lake(lake).events_table())
    first, last = lf.extreme_files(facts)
    assert len(facts.uris) == 6
    assert len(first) == 3 and len(last) == 2  # a, b, c / e, f: d and the others are not read


def test_files_without_statistics_are_always_read() -> None:
    t, hour = 1_767_225_600_000_000, 3_600_000_000  # µs since the epoch
    facts = lf.FileFacts(["x", "y", "z"], ["x", "y", "z"], [1, 1, 1], [t, None, t + hour], [t, t + hour, None])
    assert lf.extreme_files(facts) == (["x", "y"], ["y", "z"])
    none = lf.FileFacts(["x"], ["x"], [1], [None], [None])
    assert lf.extreme_files(none) == (["x"], ["x"])


def test_schema_cache_follows_the_snapshot_and_survives_damage(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = lake / lf.SCHEMA_CACHE
    c1 = connect(lake)
    rows = pq.read_table(cache).to_pylist()
    facts = lf.FileFacts.of(Lake(lake).events_table())
    assert sorted((r["path"], r["size"]) for r in rows) == sorted(zip(facts.paths, facts.sizes, strict=True))
    assert all(len(r["sig"]) == 64 for r in rows)  # a SHA-256 per file
    expected = c1.execute("SELECT count(*), min(time) FROM events").fetchone()

    # The cache is what is read: a signature planted for one file comes back without reading its footer.
    planted = [dict(r, sig="planted") if r["path"] == facts.paths[0] else r for r in rows]
    lf._save(duckdb.connect(), cache, [(r["path"], r["size"], r["sig"]) for r in planted])
    assert lf.signatures(duckdb.connect(), lake, facts)[facts.uris[0]] == "planted"

    # Damaged: the footers are read again and the cache is rewritten whole.
    cache.write_bytes(b"not parquet")
    assert connect(lake).execute("SELECT count(*), min(time) FROM events").fetchone() == expected
    assert len(pq.read_table(cache)) == 6

    # Compaction replaces the files: the cache then lists the new ones only.
    Lake(lake).compact()
    c2 = connect(lake)
    after = lf.FileFacts.of(Lake(lake).events_table())
    assert sorted(pq.read_table(cache)["path"].to_pylist()) == sorted(after.paths) != sorted(facts.paths)
    assert c2.execute("SELECT count(*), min(time) FROM events").fetchone() == expected

    # A lake the process cannot write: the connection works and leaves no file behind.
    cache.unlink()

    def refuse(*_a: object) -> None:
        raise PermissionError("read-only lake")

    monkeypatch.setattr(lf.os, "replace", refuse)
    assert connect(lake).execute("SELECT count(*), min(time) FROM events").fetchone() == expected
    assert not cache.exists() and not list(lake.glob(f".{lf.SCHEMA_CACHE}.*"))


def test_facts_not_trusted_read_every_footer_and_leave_the_cache(lake: Path) -> None:
    """When the log's paths do not match the file list, nothing is cached from them (sizes -1) and the cache of
    the trusted snapshot stays."""
    connect(lake)
    cache = lake / lf.SCHEMA_CACHE
    before = cache.read_bytes()
    facts = lf.FileFacts.of(Lake(lake).events_table())
    untrusted = lf.FileFacts(facts.uris, list(facts.uris), [-1] * len(facts.uris), [None] * len(facts.uris),
                             [None] * len(facts.uris))
    sig = lf.signatures(duckdb.connect(), lake, untrusted)
    assert set(sig) == set(facts.uris) and all(len(v) == 64 for v in sig.values())
    assert cache.read_bytes() == before
