"""Kafka end to end on the real embedded Tansu broker: produce → collect → lake, and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest

from ingest.collect_files import ingest_files
from ingest.lake import Lake
from tests.conftest import REPO, cli, lake_counts, wait_until

pytestmark = pytest.mark.kafka

COLLECT = ("--until-idle", "4", "--session-timeout-ms", "2000")


@pytest.fixture(scope="module")
def reference(scenario, tmp_path_factory):
    """The scenario ingested from files: what the Kafka path must reproduce exactly."""
    lake = Lake(tmp_path_factory.mktemp("ref") / "lake")
    stats = ingest_files([scenario], lake)
    return stats, lake_counts(lake)


def _produce(broker, topic, scenario) -> int:
    p = cli("produce", str(scenario), "--bootstrap", broker.bootstrap, "--topic", topic, "--json")
    return orjson.loads(p.stdout)["produced"]


def test_generate_produce_collect(broker, topic, scenario, reference, tmp_path):
    stats, ref = reference
    produced = _produce(broker, topic, scenario)
    assert produced == stats.read
    lake_dir = tmp_path / "lake"
    p = cli("ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g1",
            "--lake", str(lake_dir), "--json", *COLLECT)
    out = orjson.loads(p.stdout)
    assert out["read"] == produced
    # Of the run's seconds: the wait for the group's assignment, and the last --until-idle 4 s wait for more (less
    # the commit of what was held when the records stopped, made within those 4 s).
    assert 0 < out["join_seconds"] < out["seconds"] and 0 < out["idle_seconds"] < out["seconds"] - out["join_seconds"]
    assert out["idle_seconds"] < 5
    c = lake_counts(Lake(lake_dir))
    assert c["events"] == c["distinct"] == ref["events"]
    manifest = json.loads((scenario / "manifest.json").read_text())
    assert c["dead"] == manifest["malformed"] == ref["dead"]
    # Every labelled event id of the ground truth is in the lake.
    import duckdb

    labelled = {e for line in (scenario / "labels.jsonl").read_text().splitlines() if line
                for e in json.loads(line)["event_ids"]}
    have = {r[0] for r in duckdb.execute("SELECT event_id FROM read_parquet($f)",
                                         {"f": Lake(lake_dir).files()}).fetchall()}
    assert labelled <= have
    # A second run of the same group finds nothing new.
    p = cli("ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g1",
            "--lake", str(lake_dir), "--json", *COLLECT)
    assert orjson.loads(p.stdout)["events"] == 0
    assert lake_counts(Lake(lake_dir)) == c


@pytest.mark.parametrize("fault", ["after_dead_letter_commit:2", "after_lake_commit:2", "after_offset_commit:3"])
def test_crash_points_then_restart_exactly_once(broker, topic, scenario, reference, tmp_path, fault):
    _, ref = reference
    _produce(broker, topic, scenario)
    lake_dir = tmp_path / "lake"
    args = ("ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-crash",
            "--lake", str(lake_dir), "--chunk-records", "400", *COLLECT)
    p = cli(*args, env={"DECISIONPATH_FAULT": fault}, check=False)
    assert p.returncode == -9, p.stderr
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    assert c["events"] == c["distinct"] == ref["events"]
    assert c["dead"] == c["dead_distinct_origins"] == ref["dead"]


def test_collector_with_parsing_processes_writes_what_one_process_writes(broker, topic, scenario, reference, tmp_path):
    """``--workers 2``: records spooled to the parsing processes and their results spooled back; the lake holds
    the same events and dead-letter as the file reference, every row once."""
    _, ref = reference
    produced = _produce(broker, topic, scenario)
    lake_dir = tmp_path / "lake"
    p = cli("ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-workers",
            "--lake", str(lake_dir), "--chunk-records", "400", "--workers", "2", "--json", *COLLECT)
    out = orjson.loads(p.stdout)
    assert out["read"] == produced and out["chunks"] > 3
    c = lake_counts(Lake(lake_dir))
    assert c["events"] == c["distinct"] == ref["events"]
    assert c["dead"] == c["dead_distinct_origins"] == ref["dead"]


def test_kill_9_mid_run_then_restart(broker, topic, scenario, reference, tmp_path):
    """SIGKILL from outside at an arbitrary moment while the collector is writing."""
    _, ref = reference
    _produce(broker, topic, scenario)
    lake_dir = tmp_path / "lake"
    args = ["ingest", "kafka", "--bootstrap", broker.bootstrap, "--topic", topic, "--group", "g-kill",
            "--lake", str(lake_dir), "--chunk-records", "200", *COLLECT]
    proc = subprocess.Popen([sys.executable, "-m", "analytics.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    events_log = lake_dir / "events" / "_delta_log"
    assert wait_until(lambda: events_log.exists() and len(list(events_log.glob("*.json"))) >= 3, timeout=90)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -9
    partial = lake_counts(Lake(lake_dir))
    assert 0 < partial["events"] < ref["events"]
    time.sleep(2.5)  # let the dead member's session expire (2 s session timeout)
    cli(*args)
    c = lake_counts(Lake(lake_dir))
    assert c["events"] == c["distinct"] == ref["events"]
    assert c["dead"] == c["dead_distinct_origins"] == ref["dead"]


def test_broker_down_is_a_clear_error(tmp_path):
    from ingest.broker import free_port

    p = cli("ingest", "kafka", "--bootstrap", f"127.0.0.1:{free_port()}", "--topic", "x", "--lake",
            str(tmp_path / "lake"), "--until-idle", "1", "--connect-timeout", "2", check=False, timeout=120)
    assert p.returncode == 1
    assert "no Kafka broker answered" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_run_line_gives_the_rate_while_reading():
    """The demo printed "4.2s (708 records/s)" for 3,005 records read in about a second: a Kafka run's line says
    which part of its time was the group join and the idle wait, and the rate without them."""
    from ingest.chunks import IngestStats

    files = IngestStats(read=3000, events=2990, dead_letter=10, seconds=2.0)
    assert files.line().endswith("2.0s (1,500 records/s)")
    kafka = IngestStats(read=3005, events=2999, dead_letter=6, chunks=3, seconds=4.2, join_seconds=0.2,
                        idle_seconds=3.0)
    assert kafka.line().endswith("4.2s, of which 0.2s joining the group and 3.0s waiting for more (--until-idle): "
                                 "3,005 records/s while reading")
    assert kafka.to_json()["join_seconds"] == 0.2 and kafka.to_json()["idle_seconds"] == 3.0
    stopped = IngestStats(read=1000, seconds=1.5, join_seconds=0.5)  # stopped by a signal: no idle wait
    assert stopped.line().endswith("1.5s, of which 0.5s joining the group: 1,000 records/s while reading")
