"""Crash matrix: every scenario ends with produced == in lake == distinct, dead-letter exact.

The fault points ``after_dead_letter_commit``, ``after_lake_commit`` (files and Kafka),
``after_offset_commit`` and an external kill -9 of the Kafka collector are already tested in
test_ingest_files.py / test_ingest_kafka.py; here are the rows they do not cover (file ingest
killed from outside, killed while reading before any commit, orphan Parquet). With
``RELIABILITY_FULL_MATRIX=1`` the covered rows are rerun too on the same corpus, and every row
is appended to ``$RELIABILITY_MATRIX_OUT`` (JSON lines) to fill docs/reliability.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.lake import Lake
from tests.conftest import REPO, cli, lake_counts, wait_until
from tests.test_reliability_corpus import Corpus, make_corpus

FULL = os.environ.get("RELIABILITY_FULL_MATRIX") == "1"
COLLECT = ("--until-idle", "4", "--session-timeout-ms", "2000")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("corpus"), n=6000)


def _record(scenario: str, produced: int, c: dict[str, int], partial: dict[str, int] | None = None) -> None:
    out = os.environ.get("RELIABILITY_MATRIX_OUT")
    if out:
        with open(out, "ab") as f:
            f.write(orjson.dumps({"scenario": scenario, "produced": produced, **c,
                                  "partial_events": (partial or {}).get("events")}) + b"\n")


def _assert_exact(c: dict[str, int], corpus: Corpus) -> None:
    assert c["events"] == c["distinct"] == corpus.events
    assert c["dead"] == c["dead_distinct_origins"] == corpus.dead


def _popen(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "analytics.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))


def _has_open_file_under(pid: int, d: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(d)):
                return True
        except OSError:
            continue
    return False


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -9


# -- file ingest ---------------------------------------------------------------------------
@pytest.mark.slow
def test_file_killed_while_reading_before_any_commit(corpus, tmp_path):
    lake_dir = tmp_path / "lake"
    args = ["ingest", "file", str(corpus.dir), "--lake", str(lake_dir), "--chunk-records", "1000000"]
    # SIGKILL at a named point (the first record read) rather than by polling /proc for an open
    # file: a small corpus is read faster than any poll interval.
    p = cli(*args, env={"DECISIONPATH_FAULT": "while_reading"}, check=False)
    assert p.returncode == -9, p.stderr
    assert not (lake_dir / "events" / "_delta_log").exists()  # killed before the first commit
    partial = lake_counts(Lake(lake_dir))
    out = orjson.loads(cli(*args, "--json").stdout)
    assert out["read"] == corpus.records
    c = lake_counts(Lake(lake_dir))
    _assert_exact(c, corpus)
    _record("file: killed while reading (SIGKILL before any commit)", corpus.records, c, partial)


@pytest.mark.slow
def test_file_kill_9_from_outside_mid_run(corpus, tmp_path):
    lake_dir = tmp_path / "lake"
    args = ["ingest", "file", str(corpus.dir), "--lake", str(lake_dir), "--chunk-records", "100"]
    proc = _popen(args)
    log = lake_dir / "events" / "_delta_log"
    assert wait_until(lambda: log.exists() and len(list(log.glob("*.json"))) >= 4, timeout=90, every=0.01)
    _kill9(proc)
    partial = lake_counts(Lake(lake_dir))
    assert 0 < partial["events"] < corpus.events
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    _assert_exact(c, corpus)
    _record("file: external kill -9 mid-run", corpus.records, c, partial)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after_dead_letter_commit:2", "after_lake_commit:3"])
def test_file_fault_points(corpus, tmp_path, fault):
    if not FULL:
        pytest.skip("covered by test_ingest_files.py::test_killed_file_ingest_resumes_exactly_once")
    lake_dir = tmp_path / "lake"
    args = ["ingest", "file", str(corpus.dir), "--lake", str(lake_dir), "--chunk-records", "300"]
    p = cli(*args, env={"DECISIONPATH_FAULT": fault}, check=False)
    assert p.returncode == -9
    partial = lake_counts(Lake(lake_dir))
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    _assert_exact(c, corpus)
    _record(f"file: fault {fault}", corpus.records, c, partial)


def test_after_parquet_before_commit_orphans_are_never_read(corpus, tmp_path):
    """The Parquet-written-but-not-committed instant is inside delta-rs's write call (no hook there).

    Its effect is an orphan data file in the table directory; readers must ignore it.
    """
    lake = Lake(tmp_path / "lake")
    from ingest.collect_files import ingest_files

    ingest_files([corpus.dir], lake)
    before = lake_counts(lake)
    day_dir = next((tmp_path / "lake" / "events").glob("day=*"))
    some = next(day_dir.glob("*.parquet"))
    orphan = pq.read_table(some)
    pq.write_table(orphan, day_dir / "part-00000-orphan-c000.zstd.parquet")
    pq.write_table(pa.table({"junk": ["x"]}), tmp_path / "lake" / "dead_letter" / "orphan.parquet")
    assert lake_counts(lake) == before
    assert not any("orphan" in f for f in lake.files("events") + lake.files("dead_letter"))
    # and a later ingest still lands exactly once on top of the orphans
    more = make_corpus(tmp_path / "more", n=300, start=10_000_000)
    ingest_files([more.dir], lake)
    after = lake_counts(lake)
    assert after["events"] == after["distinct"] == before["events"] + more.events
    _record("after Parquet, before Delta commit (orphan file planted)", corpus.records, before)


# -- Kafka ----------------------------------------------------------------------------------
def _produce(broker, topic, corpus: Corpus) -> int:
    p = cli("produce", str(corpus.dir), "--bootstrap", broker.bootstrap, "--topic", topic, "--json")
    return int(orjson.loads(p.stdout)["produced"])


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_killed_while_reading_before_any_commit(broker, topic, corpus, tmp_path):
    produced = _produce(broker, topic, corpus)
    lake_dir = tmp_path / "lake"
    args = ["ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-read",
            "--lake", str(lake_dir), "--chunk-records", "1000000", *COLLECT]
    proc = _popen(args)
    # connected to the broker: reading (the first flush waits for 2 s of idle)
    def connected() -> bool:
        try:
            return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith("socket:")
                       for fd in os.listdir(f"/proc/{proc.pid}/fd"))
        except OSError:
            return False
    assert wait_until(connected, timeout=60, every=0.01)
    time.sleep(0.5)
    _kill9(proc)
    assert not (lake_dir / "events" / "_delta_log").exists()
    time.sleep(2.5)  # the dead member's session expires
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    _assert_exact(c, corpus)
    _record("kafka: killed while reading (SIGKILL before any commit)", produced, c)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after_dead_letter_commit:2", "after_lake_commit:2", "after_offset_commit:3"])
def test_kafka_fault_points(broker, topic, corpus, tmp_path, fault):
    if not FULL:
        pytest.skip("covered by test_ingest_kafka.py::test_crash_points_then_restart_exactly_once")
    produced = _produce(broker, topic, corpus)
    lake_dir = tmp_path / "lake"
    args = ["ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-crash",
            "--lake", str(lake_dir), "--chunk-records", "400", *COLLECT]
    p = cli(*args, env={"DECISIONPATH_FAULT": fault}, check=False)
    assert p.returncode == -9
    partial = lake_counts(Lake(lake_dir))
    time.sleep(2.5)
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    _assert_exact(c, corpus)
    _record(f"kafka: fault {fault}", produced, c, partial)


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_kill_9_from_outside(broker, topic, corpus, tmp_path):
    if not FULL:
        pytest.skip("covered by test_ingest_kafka.py::test_kill_9_mid_run_then_restart")
    produced = _produce(broker, topic, corpus)
    lake_dir = tmp_path / "lake"
    args = ["ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-kill",
            "--lake", str(lake_dir), "--chunk-records", "200", *COLLECT]
    proc = _popen(args)
    log = lake_dir / "events" / "_delta_log"
    assert wait_until(lambda: log.exists() and len(list(log.glob("*.json"))) >= 3, timeout=90, every=0.01)
    _kill9(proc)
    partial = lake_counts(Lake(lake_dir))
    time.sleep(2.5)
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    _assert_exact(c, corpus)
    _record("kafka: external kill -9 mid-run", produced, c, partial)
