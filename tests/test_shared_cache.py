"""The shared issuance and revocations cached per snapshot and carried forward (``analytics.shared_cache``).

Each test compares the cached, carried or recomputed rows with the lake view computed from scratch on the same
snapshot: the cache may only ever change how fast the rows come, never which rows.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from analytics import shared_cache
from analytics.detect import connect, detect_findings
from analytics.detectors import REGISTRY
from analytics.detectors.base import ev
from analytics.lake import share
from tests.test_detect_detectors import write_lake

ACTS = ("token.issued", "token.exchanged", "token.refreshed", "svid.minted", "role.assumed", "session.started")
ENDS = ("token.revoked", "secret.revoked", "session.ended")
ISSUED, REVOKED = "int_credential_issued", "int_credential_revoked"
VIEWS = pytest.mark.parametrize("name", [ISSUED, REVOKED])


def issuance(rnd: random.Random, creds: range, t0: float, span: float, tag: str) -> list[dict[str, Any]]:
    """Issuance and revocation records (some repeated, some failed, some tied on time) and a use of each credential."""
    out = []
    for c in creds:
        for k in range(rnd.choice((1, 1, 2, 3))):
            out.append({"t": t0 + float(rnd.randrange(0, int(span))), "event_id": f"{tag}{rnd.randrange(10**6):06d}-{c}-{k}",
                        "activity": rnd.choice(ACTS + ENDS), "category": "credential", "credential_id": f"c{c}",
                        "actor_id": f"agent/{k}", "target_id": f"role/{c}", "scope": ["read", f"s{k}"],
                        "outcome": rnd.choice(("success", None, "failure"))})
        out.append(ev(t0 + span, f"{tag}use-{c}", "tool.invoked", credential_id=f"c{c}", actor_id="agent/u"))
    return out


def rows(con: Any, view: str) -> list[tuple[Any, ...]]:
    return sorted(con.execute(f"SELECT * FROM {view}").fetchall(), key=repr)  # noqa: S608 - test constants


def same_as_the_lake(con: Any, name: str = ISSUED) -> list[tuple[Any, ...]]:
    """The cached view's rows, checked against the lake view computed on the same connection's snapshot."""
    got = rows(con, f"shared_{name}")
    assert got == rows(con, name) != []
    return got


@VIEWS
def test_a_later_snapshot_carries_the_cached_rows_forward(tmp_path: Path, name: str) -> None:
    """The second snapshot adds files holding earlier and later records of cached credentials, failed ones, ties and
    new credentials: it reads the first snapshot's file plus the new files' issuance, with exactly the rows of the
    view. Ranking the new records alone, or keeping the cached row whatever comes, fails this test."""
    rnd = random.Random(7)
    write_lake(tmp_path, issuance(rnd, range(0, 120), 100.0, 50.0, "a"))
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "computed"
    same_as_the_lake(con, name)
    # earlier (t 0-99) and later (t 150-199) records of the same credentials, and new ones
    write_lake(tmp_path, issuance(rnd, range(60, 200), 0.0, 200.0, "b")
               + [ev(100.0, f"b-tie-2-{a}", a, category="credential", credential_id="c5", actor_id="agent/t")
                  for a in ("token.issued", "token.revoked")]
               + [ev(100.0, f"a-tie-1-{a}", a, category="credential", credential_id="c5", actor_id="agent/t")
                  for a in ("token.issued", "token.revoked")])
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "carried"
    assert con.execute(f"SELECT count(*) FROM shared_{name}_delta").fetchone()[0] > 0  # noqa: S608 - test constant
    got = same_as_the_lake(con, name)
    assert len({r[0] for r in got}) == len(got)  # one row per credential
    # the next connection on this snapshot reads the same (carried) rows again
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "cached"  # the carried rows exceeded REBASE: written for this snapshot
    assert same_as_the_lake(con, name) == got


def test_the_same_snapshot_reads_its_file_and_not_the_lake(tmp_path: Path) -> None:
    write_lake(tmp_path, issuance(random.Random(1), range(40), 0.0, 30.0, "a"))
    assert shared_cache.attach(connect(tmp_path)) == "computed"
    con = connect(tmp_path)
    assert shared_cache.attach(con) == "cached"
    want = rows(con, "int_credential_issued")
    (tmp_path / "events").rename(tmp_path / "gone")  # the cached rows need none of the lake's files
    assert rows(con, "shared_int_credential_issued") == want != []


@VIEWS
def test_a_compaction_of_cached_files_reads_nothing_again(tmp_path: Path, name: str) -> None:
    """``compact`` replaced every cached file by files holding the same rows: the cached rows serve as they are,
    and the files appended after the compaction are the only ones read."""
    from ingest.lake import Lake

    rnd = random.Random(2)
    write_lake(tmp_path, issuance(rnd, range(50), 0.0, 30.0, "a"))
    write_lake(tmp_path, issuance(rnd, range(30, 80), 0.0, 30.0, "b"))
    shared_cache.attach(connect(tmp_path), name)
    assert Lake(tmp_path).compact()["rewritten"] >= 1
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "cached"
    same_as_the_lake(con, name)
    write_lake(tmp_path, issuance(rnd, range(70, 90), 0.0, 60.0, "c"))
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "carried"
    same_as_the_lake(con, name)
    delta = {r[0] for r in con.execute(f"SELECT credential_id FROM shared_{name}_delta").fetchall()}  # noqa: S608
    assert delta and delta <= {f"c{c}" for c in range(70, 90)}  # the compacted files were not read


def test_a_compaction_too_many_commits_back_computes_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The log is read only up to ``MAX_WALK`` commits back: a cache older than that is not carried through a
    compaction (computing costs less than reading a week of commits)."""
    from ingest.lake import Lake

    rnd = random.Random(6)
    write_lake(tmp_path, issuance(rnd, range(50), 0.0, 30.0, "a"))
    write_lake(tmp_path, issuance(rnd, range(30, 80), 0.0, 30.0, "b"))
    shared_cache.attach(connect(tmp_path))
    assert Lake(tmp_path).compact()["rewritten"] >= 1
    monkeypatch.setattr(shared_cache, "MAX_WALK", 0)
    con = connect(tmp_path)
    assert shared_cache.attach(con) == "computed"
    same_as_the_lake(con)


@VIEWS
def test_a_compaction_of_cached_and_newer_files_reads_the_compacted_file(tmp_path: Path, name: str) -> None:
    """A day's cached file compacted together with a newer one: the new file holds new rows besides cached ones and
    is read like any new file (new credentials and earlier records of cached ones included)."""
    from ingest.lake import Lake

    rnd = random.Random(2)
    write_lake(tmp_path, issuance(rnd, range(50), 10.0, 30.0, "a"))
    shared_cache.attach(connect(tmp_path), name)
    write_lake(tmp_path, issuance(rnd, range(30, 80), 0.0, 40.0, "b"))
    assert Lake(tmp_path).compact()["rewritten"] >= 1
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "carried"
    same_as_the_lake(con, name)


@VIEWS
def test_a_snapshot_that_lost_rows_computes_again(tmp_path: Path, name: str) -> None:
    """Another commit removed a cached file (here a Delta delete rewrote it without some records): the cached
    rows may name records the lake no longer holds, so nothing is carried."""
    from deltalake import DeltaTable

    rnd = random.Random(4)
    write_lake(tmp_path, issuance(rnd, range(50), 0.0, 30.0, "a"))
    shared_cache.attach(connect(tmp_path), name)
    DeltaTable(str(tmp_path / "events")).delete("credential_id = 'c1' OR credential_id = 'c2'")
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "computed"
    got = same_as_the_lake(con, name)
    assert not {"c1", "c2"} & {r[0] for r in got}


def test_many_carried_rows_are_written_for_the_new_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(3)
    write_lake(tmp_path, issuance(rnd, range(50), 10.0, 30.0, "a"))
    shared_cache.attach(connect(tmp_path))
    write_lake(tmp_path, issuance(rnd, range(25, 90), 0.0, 60.0, "b"))
    monkeypatch.setattr(shared_cache, "REBASE", 0.0)
    con = connect(tmp_path)
    assert shared_cache.attach(con) == "carried"
    files = sorted(p.name for p in (tmp_path / "marts" / shared_cache.ROOT / ISSUED).glob("v*.parquet"))
    assert len(files) == 2  # the first snapshot's and the new one's
    (view,) = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'shared_int_credential_issued'").fetchone()
    assert files[-1] in view and "_delta" not in view  # the new file alone
    same_as_the_lake(con)
    con = connect(tmp_path)
    assert shared_cache.attach(con) == "cached"
    same_as_the_lake(con)


def test_an_unusable_cache_keeps_the_issuance_in_memory_and_leaves_the_revocations(tmp_path: Path) -> None:
    """A cache directory that cannot be made (here a file stands in its place) costs nothing but the cache: the
    issuance is kept in memory, the revocations are not shared (their one reader computes them)."""
    from analytics.lake import is_shared

    write_lake(tmp_path, issuance(random.Random(4), range(30), 0.0, 30.0, "a"))
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / shared_cache.ROOT).write_text("not a directory")
    con = connect(tmp_path)
    assert shared_cache.attach(con, ISSUED) is None and shared_cache.attach(con, REVOKED) is None
    share(con, f"{ISSUED} {REVOKED}")
    assert con.execute("SELECT database_name FROM duckdb_tables() WHERE table_name = 'shared_int_credential_issued'"
                       ).fetchall() == [("dp_kept",)]
    same_as_the_lake(con)
    assert is_shared(con, ISSUED) and not is_shared(con, REVOKED)
    assert not con.execute("SELECT * FROM duckdb_views() WHERE view_name LIKE 'shared_int_credential_revoked%'"
                           ).fetchall()


def test_prune_keeps_the_newest_snapshots_any_file_in_use_and_other_installs_files(tmp_path: Path) -> None:
    root = tmp_path / "issued"
    root.mkdir()
    old = time.time() - 2 * shared_cache.GRACE_S
    for v in range(1, 6):
        for suffix in (".parquet", ".files.json"):
            p = root / f"v{v:012d}-abc{suffix}"
            p.write_text("x")
            os.utime(p, (old, old))
    os.utime(root / "v000000000002-abc.parquet")  # read by a running detect
    (root / "v000000000001-other.parquet").write_text("x")  # another version of the SQL, recent
    # Another install's files, unused for longer than this one's grace but not for a day: its own to prune.
    for v, age in ((3, 2 * shared_cache.GRACE_S), (2, 2 * shared_cache.IDLE_S)):
        for suffix in (".parquet", ".files.json"):
            p = root / f"v{v:012d}-fed{suffix}"
            p.write_text("x")
            os.utime(p, (time.time() - age, time.time() - age))
    stale = root / ".dead.tmp"
    stale.write_text("x")
    os.utime(stale, (old, old))
    shared_cache._prune(root, "abc")
    assert sorted(p.name for p in root.iterdir()) == [
        "v000000000001-other.parquet", "v000000000002-abc.parquet",
        "v000000000003-fed.files.json", "v000000000003-fed.parquet",
        "v000000000004-abc.files.json", "v000000000004-abc.parquet",
        "v000000000005-abc.files.json", "v000000000005-abc.parquet"]


def test_the_catalog_finds_the_same_with_the_cache_and_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every detection over every example, first computing the cache, then carrying it over a new file, equals the
    run that keeps the issuance in memory."""
    import analytics.lake as lake

    events = [dict(e, event_id=f"{i}:{e['event_id']}", credential_id=e.get("credential_id") and f"{i}:{e['credential_id']}",
                   credential_parent_id=e.get("credential_parent_id") and f"{i}:{e['credential_parent_id']}")
              for i, ex in enumerate(ex for m in REGISTRY for ex in m.EXAMPLES) for e in ex.events]
    half = len(events) // 2
    hows: list[tuple[str, str | None]] = []
    attach = shared_cache.attach

    def recorded(con: Any, name: str) -> str | None:
        hows.append((name, attach(con, name)))
        return hows[-1][1]

    monkeypatch.setattr(shared_cache, "attach", recorded)

    def run() -> list[dict[str, Any]]:  # in a stable order: DP-DG-2 lists its findings in the order rows come
        return sorted((dataclasses.asdict(f) for f in detect_findings(connect(tmp_path))), key=repr)

    write_lake(tmp_path, events[:half])
    first = run()
    write_lake(tmp_path, events[half:])
    carried = run()
    want = sorted((n, h) for n in (ISSUED, REVOKED) for h in ("computed", "carried"))
    assert sorted(hows) == want
    monkeypatch.setattr(lake, "_CARRIED", {})
    assert run() == carried != first
    assert sorted(hows) == want and len(carried) > 20


@VIEWS
def test_a_damaged_cached_file_is_computed_again_and_replaced(tmp_path: Path, name: str) -> None:
    """A cached file that cannot be read (truncated, overwritten) is not trusted, not kept either: the run computes
    the rows again and writes a good file over it, so the next run reads the cache again."""
    write_lake(tmp_path, issuance(random.Random(5), range(40), 0.0, 30.0, "a"))
    assert shared_cache.attach(connect(tmp_path), name) == "computed"
    (cached,) = (tmp_path / "marts" / shared_cache.ROOT / name).glob("v*.parquet")
    cached.write_bytes(b"PAR1 not a parquet file PAR1")
    con = connect(tmp_path)
    assert shared_cache.attach(con, name) == "computed"
    same_as_the_lake(con, name)
    assert shared_cache.attach(connect(tmp_path), name) == "cached"


def test_the_marts_read_the_shared_caches_and_leave_them_for_detect(tmp_path: Path) -> None:
    """Preparing a snapshot (``materialize``: the credentials mart) has the issuance and revocations through the
    shared cache: a detect run after it reads them cached, and the mart computed over cached or carried rows holds
    exactly the rows of the mart computed from the lake."""
    from analytics.lake import connect, is_shared, materialize

    rnd = random.Random(5)
    write_lake(tmp_path, issuance(rnd, range(60), 0.0, 40.0, "a"))
    for step in range(2):  # computed (and cached), then carried to the next snapshot
        con = connect(tmp_path)
        want = rows(con, "credentials")  # the view, before anything is shared on this connection
        materialize(con)
        assert is_shared(con, ISSUED) and is_shared(con, REVOKED)
        assert rows(con, "mat_credentials") == want != []
        for name in (ISSUED, REVOKED):  # left for the next detect run on this snapshot
            assert shared_cache.attach(connect(tmp_path), name) == "cached"
        if step == 0:
            write_lake(tmp_path, issuance(rnd, range(40, 90), 0.0, 60.0, "b"))


def test_the_fingerprint_follows_the_cached_views_sql_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to another view (here `int_credential_used`) keeps the caches; one to the view or to `events`
    changes its fingerprint, so no run reads rows of other SQL."""
    import analytics.lake

    real = analytics.lake.view_sql
    before = {n: shared_cache.fingerprint(n) for n in shared_cache.RANKED}
    assert before[ISSUED] != before[REVOKED]
    for changed, moves in (("int_credential_used", set()), (ISSUED, {ISSUED}), ("events", {ISSUED, REVOKED})):
        monkeypatch.setattr(analytics.lake, "view_sql", lambda n, c=changed: real(n) + ("\n-- changed" if n == c else ""))
        shared_cache.fingerprint.cache_clear()
        assert {n for n in shared_cache.RANKED if shared_cache.fingerprint(n) != before[n]} == moves
    monkeypatch.undo()
    shared_cache.fingerprint.cache_clear()


@pytest.mark.parametrize("commit", ['{"remove": {}}', '{"remove": {"path": 7}}', '["remove"]', "{not json", ""])
def test_a_commit_that_cannot_be_read_computes_again(tmp_path: Path, commit: str) -> None:
    """A JSON commit of the log that is not what Delta writes (or is missing) is no ground to carry: None."""
    log_dir = tmp_path / "_delta_log"
    log_dir.mkdir()
    (log_dir / f"{1:020d}.json").write_text('{"commitInfo": {}}\n{"add": {"path": "day=2026-01-01/b.parquet"}}\n')
    assert shared_cache._covered(log_dir, 0, 1, {"a.parquet"}) == {"a.parquet"}  # an append: nothing removed
    if commit:
        (log_dir / f"{2:020d}.json").write_text(commit + "\n")
    assert shared_cache._covered(log_dir, 0, 2, {"a.parquet"}) is None
