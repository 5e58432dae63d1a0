"""The parsing pipeline: line ranges read by the parsing processes, results handed back through a spool."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import ingest.collect_files as cf
from ingest.chunks import LineRange, Normalized, Pipeline, Spooled, _clear_stale_spools, _spool_root
from ingest.collect_files import ingest_files, line_ranges, plain_lines, records
from ingest.lake import Lake
from tests.conftest import cli

LINES = [b'{"a":1}', b"", b"  ", b'{"b":2}\r', b"not json", b"", b'{"c":3}', b'  {"d":4}  ', b"", b'{"e":5}']


@pytest.mark.parametrize("tail", [b"\n", b"", b"\n\n"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("after", [0, 1, 2, 4, 9, 10, 11, 40])
def test_line_ranges_give_the_lines_records_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: bytes,
                                                  chunk: int, after: int) -> None:
    monkeypatch.setattr(cf, "_BLOCK", 5)  # newlines on both sides of every block boundary
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\n".join(LINES * 3) + tail)
    every = list(records(path))
    skipped, ranges = line_ranges(path, chunk, after)
    got = [it for r in ranges for it in r.items()]
    assert got == [it for it in every if it[2] > after]
    assert skipped == sum(1 for it in every if it[2] <= after)
    firsts = [r.first for r in line_ranges(path, chunk, after)[1]]
    assert firsts == list(range(after + 1, after + 1 + chunk * len(firsts), chunk))  # ranges of `chunk` lines


def test_only_plain_json_lines_are_read_as_ranges(tmp_path: Path) -> None:
    import gzip

    (tmp_path / "a.jsonl").write_bytes(b'{"x":1}\n{"x":2}\n')
    (tmp_path / "junk.log").write_bytes(b"no json here\n{}\n")
    (tmp_path / "b.json").write_bytes(b'[{"x":1}]')
    (tmp_path / "c.json").write_bytes(b'{\n  "Records": []\n}\n')
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(b'{"x":1}\n'))
    assert {p.name for p in tmp_path.iterdir() if plain_lines(p)} == {"a.jsonl", "junk.log"}


def _spools() -> set[str]:
    return {n for n in os.listdir(_spool_root()) if n.startswith("decisionpath-spool-")}


def _rows(lake: Lake, table: str) -> list[tuple]:
    files = lake.files(table)
    if not files:
        return []
    cols = "* EXCLUDE (ingested_at)" if table == "events" else "* EXCLUDE (received_at, day)"
    return duckdb.connect().execute(f"SELECT {cols} FROM read_parquet($f) ORDER BY ALL", {"f": files}).fetchall()  # noqa: S608


def test_parallel_ingest_writes_the_rows_of_one_process(scenario: Path, tmp_path: Path) -> None:
    """Two parsing processes (ranges read by them, or records spooled to them for a gzip file; results through the
    spool) and one process: the same lake.

    The parallel run is the real command in its own process: a pytest process that has parsed in-process holds a
    DuckDB instance, which a forked worker must not inherit."""
    import gzip
    import shutil

    data = tmp_path / "data"  # the scenario, one file gzipped: its records go to the workers through the spool
    shutil.copytree(scenario, data)
    gz = next(p for p in sorted(data.glob("*.jsonl")) if p.name not in ("labels.jsonl", "truth.jsonl"))
    gz.with_suffix(".jsonl.gz").write_bytes(gzip.compress(gz.read_bytes()))
    gz.unlink()
    one, two = Lake(tmp_path / "one"), Lake(tmp_path / "two")
    a = ingest_files([data], one, chunk_records=700, workers=1)
    before = _spools()
    p = cli("ingest", "file", str(data), "--lake", str(tmp_path / "two"), "--chunk-records", "700",
            "--workers", "2", "--json")
    b = orjson.loads(p.stdout)
    assert (a.read, a.events, a.dead_letter, a.chunks) == (b["read"], b["events"], b["dead_letter"], b["chunks"])
    assert a.events > 1000 and a.dead_letter > 0
    assert _rows(one, "events") == _rows(two, "events")
    assert _rows(one, "dead_letter") == _rows(two, "dead_letter")
    assert _spools() <= before  # the command removed its spool


def test_stale_spools_of_dead_collectors_are_cleared(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    gone = tmp_path / f"decisionpath-spool-{int(dead.stdout)}-abc"
    live = tmp_path / f"decisionpath-spool-{os.getpid()}-def"
    reused = tmp_path / f"decisionpath-spool-{os.getppid()}-ghi"  # a live pid, but nothing written for two days
    other = tmp_path / "decisionpath-spool-notapid"
    for d in (gone, live, reused, other):
        d.mkdir()
        (d / "x.arrow").write_bytes(b"1")
    old = os.stat(reused).st_mtime - 2 * 86_400
    os.utime(reused, (old, old))
    _clear_stale_spools(str(tmp_path))
    assert not gone.exists() and not reused.exists() and live.exists() and other.exists()


def test_an_unreadable_spooled_result_is_parsed_again(tmp_path: Path) -> None:
    """A result whose spool file is gone (removed by someone, damaged) costs a parse here, nothing else."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"log_id":"l1","timestamp":"2026-11-02T10:00:00Z","request":{"method":"tools/list"}}\n')
    got: list[Normalized] = []
    with Pipeline(2) as pipe:
        for damaged in (None, b"not arrow"):
            spooled = tmp_path / "missing.arrow"
            if damaged:
                spooled.write_bytes(damaged)
            fut: Future[Spooled] = Future()
            shell = Normalized(pa.table({}), pa.table({}), pa.array([], pa.int64()), pa.array([], pa.int64()), 1, 1, 1)
            fut.set_result(Spooled(str(spooled), shell))
            pipe._pending.append((fut, LineRange(str(path), 0, path.stat().st_size, 1), "auto", got.append))
        pipe.drain()
    assert [(n.read, n.events.num_rows, n.events["event_id"][0].as_py()) for n in got] == [(1, 1, "mcp:l1")] * 2


def test_lake_tables_are_what_the_lake_wrote_after_its_own_dedup_and_sort(scenario: Path, tmp_path: Path) -> None:
    """``to_lake_tables`` (one reordering in the parsing process) gives the rows, order and positions that
    ``Lake.commit`` wrote from record order (first row of each event_id, then sorted by actor and time): on every
    format of the scenario, both parse paths, with records repeated and an event id reused by another record."""
    import datetime as dt

    from ingest.normalize import normalize, to_lake_tables, to_tables_with_positions

    now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    items = [it for p in sorted(scenario.glob("*.jsonl")) if p.name not in ("labels.jsonl", "truth.jsonl")
             for it in list(records(p))[:400]]
    items += [(raw, f"again:{n}", 10_000 + n) for n, (raw, _, _) in enumerate(items[::37])]  # repeats
    mcp = next(i for i, it in enumerate(items) if b'"log_id"' in it[0] and b'"server":"' in it[0])
    other = items[mcp][0].replace(b'"server":"', b'"server":"another-', 1)  # same log_id: the same event id
    items.insert(0, (other, "first", 0))
    ref, dead, pos, dead_pos = to_tables_with_positions(normalize(items, now=now))
    ref = ref.append_column("_pos", pos)
    kept, dups = Lake(tmp_path / "empty")._dedup(ref)
    ref = kept.sort_by([("actor_id", "ascending"), ("time", "ascending")])
    got, dead2, pos2, dead_pos2, dups2 = to_lake_tables(normalize(items, now=now))
    assert dups2 == dups > 10
    assert got.append_column("_pos", pos2).to_pylist() == ref.to_pylist()
    assert dead2.equals(dead) and dead_pos2.equals(dead_pos)
    assert [r["origin"] for r in got.to_pylist() if r["event_id"] == ref.filter(pc.equal(ref["_pos"], 0))["event_id"][
        0].as_py()] == ["first"]  # the first record of a reused id wins


def test_spooled_records_come_back_as_they_were_or_stay_in_the_pipe(tmp_path: Path) -> None:
    from ingest.chunks import SpooledItems

    items = [(b'{"a":1}', "kafka:t:0:7", 7), (b"\xff not utf-8", "kafka:t:0:8", 8), (b"", "kafka:t:0:9", 9)]
    sp = SpooledItems.write(str(tmp_path), items)
    assert sp is not None and Path(sp.path).exists()
    assert sp.items() == items and not Path(sp.path).exists()  # read once, then gone
    # an origin Arrow cannot hold (a file name that is not UTF-8): nothing spooled, the pipe carries the records
    assert SpooledItems.write(str(tmp_path), [(b"{}", "file:/x\udcff.gz:1", 1)]) is None
    assert list(tmp_path.iterdir()) == []
