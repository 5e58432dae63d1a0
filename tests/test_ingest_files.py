"""File collector: shapes of input, re-ingest, and crash safety of an interrupted run."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest

from ingest.collect_files import ingest_files, records
from ingest.lake import COMPACTED_SUFFIX, Lake
from tests.conftest import cli, lake_counts


def _manifest(scenario):
    return json.loads((scenario / "manifest.json").read_text())


def test_record_shapes(tmp_path):
    """JSONL (blank lines skipped, line numbers kept), JSON arrays, one pretty document, gzip."""
    (tmp_path / "a.jsonl").write_bytes(b'{"x":1}\n\n{"x":2}\n')
    (tmp_path / "b.json").write_bytes(b'[{"x":1}, {"x":2}, 3]')
    (tmp_path / "c.json").write_bytes(b'{\n  "Records": [\n {"x": 1}\n ]\n}\n')
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(b'{"x":1}\nbroken\n'))
    got = {p.name: [(r[1].rsplit("/", 1)[-1], r[2]) for r in records(p)] for p in sorted(tmp_path.iterdir())}
    assert got == {
        "a.jsonl": [("a.jsonl:1", 1), ("a.jsonl:3", 3)],
        "b.json": [("b.json:[0]", 1), ("b.json:[1]", 2), ("b.json:[2]", 3)],
        "c.json": [("c.json:1", 1)],
        "d.jsonl.gz": [("d.jsonl.gz:1", 1), ("d.jsonl.gz:2", 2)],
    }


def test_every_record_lands_once_and_reingest_adds_nothing(scenario, tmp_path):
    m = _manifest(scenario)
    lake = Lake(tmp_path / "lake")
    first = ingest_files([scenario], lake)
    total_records = sum(m["files"].values()) if isinstance(m["files"], dict) else None
    if total_records is not None:
        assert first.read == total_records
    c = lake_counts(lake)
    assert c["events"] == c["distinct"] == first.events
    assert c["dead"] == first.dead_letter == m["malformed"]
    assert first.events + first.dead_letter >= first.read  # one record may carry several events

    again = ingest_files([scenario], lake)
    assert (again.events, again.dead_letter) == (0, 0)
    assert again.already_ingested == first.read
    assert lake_counts(lake) == c

    # The same records under another name: the file id is content-based, nothing new lands.
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in scenario.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    third = ingest_files([copy], lake)
    assert third.events == 0
    assert lake_counts(lake) == c


def test_event_id_dedup_across_different_files(scenario, tmp_path):
    """Records repeated inside another file (different content id) are skipped by event_id."""
    src = next(p for p in sorted(scenario.iterdir()) if p.name.startswith("opa"))
    lines = src.read_bytes().splitlines()
    (tmp_path / "one.jsonl").write_bytes(b"\n".join(lines[:50]) + b"\n")
    (tmp_path / "two.jsonl").write_bytes(b"\n".join(lines[25:75]) + b"\n")
    lake = Lake(tmp_path / "lake")
    a = ingest_files([tmp_path / "one.jsonl"], lake)
    b = ingest_files([tmp_path / "two.jsonl"], lake)
    assert b.duplicates == 25
    assert lake_counts(lake)["events"] == lake_counts(lake)["distinct"] == a.events + b.events == 75


@pytest.mark.parametrize("fault", ["after_dead_letter_commit:2", "after_lake_commit:3"])
def test_killed_file_ingest_resumes_exactly_once(scenario, tmp_path, fault):
    ref = Lake(tmp_path / "ref")
    expected = ingest_files([scenario], ref)
    lake_dir = tmp_path / "lake"
    p = cli("ingest", "file", str(scenario), "--lake", str(lake_dir), "--chunk-records", "300",
            env={"DECISIONPATH_FAULT": fault}, check=False)
    assert p.returncode == -9, p.stderr  # SIGKILL at the crash point
    partial = lake_counts(Lake(lake_dir))
    assert partial["events"] < expected.events
    p = cli("ingest", "file", str(scenario), "--lake", str(lake_dir), "--chunk-records", "300", "--json")
    out = orjson.loads(p.stdout)
    c = lake_counts(Lake(lake_dir))
    assert c["events"] == c["distinct"] == expected.events
    assert c["dead"] == c["dead_distinct_origins"] == expected.dead_letter
    assert out["read"] == expected.read


def test_unknown_path_is_a_clear_error(tmp_path):
    p = cli("ingest", "file", str(tmp_path / "nope.jsonl"), "--lake", str(tmp_path / "lake"), check=False)
    assert p.returncode == 2
    assert "no such file or directory" in p.stderr
    assert "Traceback" not in p.stderr


def test_compact_sorts_days_without_changing_rows(scenario, tmp_path):
    """Compaction rewrites each day sorted by activity, then identity, then time, in one commit, rows unchanged."""
    import duckdb

    lake = Lake(tmp_path / "lake")
    ingest_files([scenario], lake, chunk_records=500)
    before = lake_counts(lake)
    files_before = len(lake.files())
    res = lake.compact()
    assert res["files_after"] < files_before
    assert lake_counts(lake) == before
    for day_files in ({f for f in lake.files() if f"day={d}" in f} for d in
                      {f.split("day=")[1].split("/")[0] for f in lake.files()}):
        assert len(day_files) == 1
        rows = duckdb.execute("SELECT activity, actor_id, time FROM read_parquet($f)", {"f": sorted(day_files)}).fetchall()
        assert rows == sorted(rows, key=lambda r: (r[0] is None, r[0] or "", r[1] is None, r[1] or "", r[2]))
        assert len({r[0] for r in rows}) > 1 or len(rows) < 2  # the order is tested on days of several activities


def test_compact_cli_caches_the_new_snapshots_marts(scenario, tmp_path):
    """`decisionpath compact` leaves the new snapshot's credential marts cached, unless --no-marts."""
    lake_dir = tmp_path / "lake"
    ingest_files([scenario], Lake(lake_dir), chunk_records=500)
    out = orjson.loads(cli("compact", "--lake", str(lake_dir), "--json", "--no-marts").stdout)
    assert "marts" not in out and not (lake_dir / "marts").exists()
    assert out["rewritten"] == out["days"] > 0 and out["files_after"] == out["days"] < out["files_before"]
    out = orjson.loads(cli("compact", "--lake", str(lake_dir), "--json").stdout)
    assert out["rewritten"] == 0 and out["files_after"] == out["files_before"]  # every day already compacted
    marts = lake_dir / "marts"
    assert sorted(p.name for p in marts.iterdir()) == sorted([out["marts"].rsplit("/", 1)[1], "shared"])
    version = Lake(lake_dir).events_table().version()
    assert out["marts"].rsplit("/", 1)[1].startswith(f"v{version:012d}-")  # the snapshot after compaction
    # the detections' shared issuance and revocations, left by the credentials mart for the next detect run
    assert {p.name.split("-")[0] for p in (marts / "shared").glob("*/v*.parquet")} == {f"v{version:012d}"}
    assert {p.parent.name for p in (marts / "shared").glob("*/v*.parquet")} == {
        "int_credential_issued", "int_credential_revoked"}
    cached = {p.name for p in (marts / out["marts"].rsplit("/", 1)[1]).iterdir()}
    # every snapshot cache (analytics.snapshot.prepare): marts, id index, overview aggregates, path tables
    assert {n for n in cached if "-" not in n} == {
        "mat_credentials.parquet", "mat_policy_versions.parquet", "credential_actors.parquet", "mat_delegations.parquet",
        "READY"}
    assert sorted(n.split("-")[0] for n in cached if "-" in n) == [
        "key_days", "ov_agent_credentials", "ov_hourly", "ov_identities", "ov_mediated", "ov_owned", "path_lineage",
        "path_svids"]


def test_a_record_repeated_within_one_chunk_lands_once(tmp_path):
    """The same event twice in one chunk (a replayed line, a producer's retry): the first is kept, every other
    record of the chunk lands, and the repeat is counted as a duplicate."""
    src = tmp_path / "dup.jsonl"
    line = b'{"log_id":"%s","timestamp":"2026-11-02T10:00:0%dZ","request":{"method":"tools/list"}}'
    src.write_bytes(b"\n".join([line % (b"a", 1), line % (b"b", 2), line % (b"a", 3), line % (b"c", 4)]) + b"\n")
    lake = Lake(tmp_path / "lake")
    s = ingest_files([src], lake)
    assert (s.read, s.events, s.duplicates) == (4, 3, 1)
    c = lake_counts(lake)
    assert c["events"] == c["distinct"] == 3
    import duckdb

    rows = duckdb.connect().execute("SELECT event_id, origin FROM read_parquet($f) ORDER BY event_id",
                                    {"f": lake.files("events")}).fetchall()
    assert [(e, o.rsplit(":", 1)[1]) for e, o in rows] == [("mcp:a", "1"), ("mcp:b", "2"), ("mcp:c", "4")]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_name_that_is_not_utf8_is_ingested_with_an_escaped_origin(tmp_path, workers):
    """A name in another encoding (a byte that is not UTF-8) failed the whole ingest with UnicodeEncodeError; its
    origins now carry the byte escaped. Two workers run the real command (forked parsing processes)."""
    import os

    import duckdb

    data = tmp_path / "data"
    data.mkdir()
    line = b'{"log_id":"l%d","timestamp":"2026-11-02T10:00:00Z","request":{"method":"tools/list"}}'
    name = os.fsencode(data) + b"/mcp-\xff.jsonl"
    with open(name, "wb") as f:
        f.write(b"\n".join(line % i for i in range(100)) + b"\n")
    lake = tmp_path / "lake"
    if workers == 1:
        s = ingest_files([data], Lake(lake), workers=1)
        assert (s.read, s.events) == (100, 100)
    else:
        out = orjson.loads(cli("ingest", "file", str(data), "--lake", str(lake), "--workers", "2", "--json").stdout)
        assert (out["read"], out["events"]) == (100, 100)
    origins = [r[0] for r in duckdb.connect().execute("SELECT origin FROM read_parquet($f) ORDER BY origin",
                                                      {"f": Lake(lake).files("events")}).fetchall()]
    assert len(origins) == 100 and all(o.startswith(f"file:{data}/mcp-\\xff.jsonl:") for o in origins)


def _day_rows(lake_dir, n0: int, n: int, app: str) -> None:
    from tests.analytics_factory import append_events, ev

    append_events(lake_dir, [ev(f"e{i}", 60.0 * i, "tool.invoked" if i % 2 else "decision", f"agent/a{i % 3}")
                             for i in range(n0, n0 + n)], app_id=app)


def _two_chunks_of_one_day(tmp_path):
    """A lake whose one day is two ingested files of 20 events each."""
    lake_dir = tmp_path / "lake"
    _day_rows(lake_dir, 0, 20, "a")
    _day_rows(lake_dir, 20, 20, "b")
    return lake_dir


def _count(lake: Lake) -> tuple[int, int]:
    import duckdb

    return duckdb.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($f)",
                          {"f": lake.files()}).fetchone()


def test_compact_keeps_a_file_another_writer_adds_meanwhile(tmp_path, monkeypatch):
    """Compaction removes the files it read, by name: a chunk committed to the same day while the day is being
    rewritten stays, and every row is there once."""
    lake_dir = _two_chunks_of_one_day(tmp_path)
    lake, real = Lake(lake_dir), Lake._replace_day

    def meanwhile(self, *a, **kw):
        _day_rows(lake_dir, 40, 5, "c")  # another collector commits to the same day
        return real(self, *a, **kw)

    monkeypatch.setattr(Lake, "_replace_day", meanwhile)
    lake.compact()
    assert _count(lake) == (45, 45)
    names = [f.rsplit("/", 1)[1] for f in lake.files()]
    assert len(names) == 2 and sum(n.endswith(COMPACTED_SUFFIX) for n in names) == 1
    # one file from each writer (pyarrow, delta-rs): the analytics views read both
    from analytics.lake import connect

    assert connect(lake_dir).execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (45, 45)


def test_compact_fails_when_another_compaction_replaced_the_day_first(tmp_path, monkeypatch):
    """Two compactions of one day: the second to commit fails on the files the first removed, so no row is
    written twice; the day stays readable, each row once."""
    from ingest.errors import DecisionPathError

    lake_dir = _two_chunks_of_one_day(tmp_path)
    lake, real = Lake(lake_dir), Lake._replace_day

    def raced(self, *a, **kw):
        monkeypatch.setattr(Lake, "_replace_day", real)
        Lake(lake_dir).compact()  # the other compaction wins
        return real(self, *a, **kw)

    monkeypatch.setattr(Lake, "_replace_day", raced)
    with pytest.raises(DecisionPathError, match="run compact again"):
        lake.compact()
    assert _count(Lake(lake_dir)) == (40, 40)
    assert len(Lake(lake_dir).files()) == 1
    assert not [p for p in (lake_dir / "events").rglob(f"*{COMPACTED_SUFFIX}")
                if p.name not in {f.rsplit("/", 1)[1] for f in Lake(lake_dir).files()}]  # the loser's file is gone


def test_compact_streams_a_day_into_row_groups_with_exact_statistics(tmp_path):
    """A day larger than a row group, read in batches and written in row groups of ROW_GROUP_ROWS, keeps
    compaction order across row groups, and the Delta statistics accumulated over the batches are those of all its
    rows (min/max of `time` truncated to the millisecond, as delta-rs records them). That memory stays bounded on a
    day larger than memory is not shown here: this day fits in the 64 MB limit."""
    import datetime as dt

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingest.lake import ROW_GROUP_ROWS
    from tests.analytics_factory import append_events, ev

    lake_dir = tmp_path / "lake"
    acts = ("decision", "tool.invoked", "token.issued")
    n = 2 * ROW_GROUP_ROWS + 777
    rows = [ev(f"e{i}", (i * 7919 % n) * 1.000321, acts[i % 3], f"agent/a{i % 97:02d}",
               tool=None if i % 5 == 0 else "kb.search") for i in range(n)]
    append_events(lake_dir, rows[: n // 2], app_id="a")
    append_events(lake_dir, rows[n // 2:], app_id="b")
    lake = Lake(lake_dir)
    lake.compact(memory_limit="64MB")
    (f,) = lake.files()
    meta = pq.ParquetFile(f).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 777]
    got = duckdb.execute("SELECT activity, actor_id, time FROM read_parquet($f)", {"f": f}).fetchall()
    assert len(got) == n and got == sorted(got)
    add = pa.table(lake.events_table().get_add_actions(flatten=True)).to_pylist()[0]  # as delta-rs reads them
    times = [r["time"] for r in rows]

    def ms(t: dt.datetime) -> dt.datetime:
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    assert add["num_records"] == n
    assert (add["min.time"], add["max.time"]) == (ms(min(times)), ms(max(times)))
    assert (add["min.actor_id"], add["max.actor_id"]) == ("agent/a00", "agent/a96")
    assert add["null_count.tool"] == sum(r["tool"] is None for r in rows) > 0
    assert add.get("min.raw") is None and add.get("null_count.scope") is None  # no statistics for those


def test_schedule_compacts_the_settled_days_then_detects(scenario, tmp_path):
    """`schedule --compact`'s step compacts every day before the newest, leaves the newest (still being written)
    as the collectors wrote it, then runs detect; a second step rewrites nothing. `decisionpath compact` says how
    many days it rewrote."""
    from analytics.detect import DetectSettings, detect_findings
    from analytics.detect import connect as detect_connect
    from analytics.schedule import compact_then_run

    lake_dir = tmp_path / "lake"
    lake = Lake(lake_dir)
    ingest_files([scenario], lake, chunk_records=500)
    before = lake_counts(lake)
    findings_before = sorted(f.alert_id for f in detect_findings(detect_connect(lake_dir)))
    days = sorted({f.split("day=")[1].split("/")[0] for f in lake.files()})
    newest = {f for f in lake.files() if f"day={days[-1]}/" in f}
    assert lake.settled_days() == days[:-1] and len(days) > 2
    assert sum(1 for f in lake.files() if not f.endswith(COMPACTED_SUFFIX)) > len(days)  # several files a day

    res = compact_then_run(DetectSettings(lake_dir=lake_dir, with_paths=False), quiet=True)
    assert lake_counts(lake) == before
    for d in days[:-1]:
        assert [f.endswith(COMPACTED_SUFFIX) for f in lake.files() if f"day={d}/" in f] == [True]
    assert {f for f in lake.files() if f"day={days[-1]}/" in f} == newest
    assert sorted(a.alert_id for a in res.new_alerts) == findings_before and findings_before
    assert lake.compact(days=lake.settled_days())["rewritten"] == 0
    out = cli("compact", "--lake", str(lake_dir), "--no-marts")
    assert out.stdout.startswith(f"compacted 1 of {len(days)} days")


def test_schedule_step_detects_when_compaction_fails(scenario, tmp_path, monkeypatch, capsys):
    """Compaction only speeds detection up: a step whose compaction fails says why and runs detect anyway."""
    from analytics.detect import DetectSettings
    from analytics.schedule import compact_then_run
    from ingest.errors import DecisionPathError

    lake_dir = tmp_path / "lake"
    ingest_files([scenario], Lake(lake_dir), chunk_records=500)

    def fail(self, days=None, memory_limit="1GB"):
        raise DecisionPathError("day 2026-11-01 was being compacted (conflict); nothing was lost: run compact again")

    monkeypatch.setattr(Lake, "compact", fail)
    res = compact_then_run(DetectSettings(lake_dir=lake_dir, with_paths=False))
    assert res.new_alerts
    assert "compaction skipped this run: day 2026-11-01 was being compacted" in capsys.readouterr().err
