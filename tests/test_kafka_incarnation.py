"""A topic's log reset under the collector (recreated topic, broker that lost its log, no topic ids).

Each test uses a memory Tansu broker restarted empty on the same port, so offsets start again at 0
and every record of the new log sits at an offset the lake already holds for the old one. Records
are new (fresh ids), so every one of them must land; nothing may land twice.
"""

from __future__ import annotations

import threading
import time

import pytest

from ingest.broker import EmbeddedBroker, create_topics, free_port
from ingest.collect_kafka import KafkaCollector, KafkaSettings
from ingest.incarnation import app_id, resolve
from ingest.lake import Lake
from tests.conftest import lake_counts, wait_until
from tests.test_reliability_broker import BAD_EVERY, _produce_mixed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _bad(ids: range) -> int:
    return sum(1 for i in ids if i % BAD_EVERY == BAD_EVERY - 1)


def _collect(bootstrap: str, lake: Lake, logs: list[str], no_topic_ids: bool = False,
             until_idle: float = 4.0, log_end: int | None = None) -> KafkaCollector:
    s = KafkaSettings(bootstrap=bootstrap, topics=("t",), group="g", chunk_records=100, until_idle_s=until_idle,
                      session_timeout_ms=2000, connect_timeout_s=20)
    c = KafkaCollector(s, lake, log=logs.append)
    if no_topic_ids:  # a broker that reports no topic ids (Kafka before 2.8)
        c._topic_id = lambda topic: None  # type: ignore[method-assign]
    if log_end is not None:
        # Kafka answers a fetch beyond a partition's log end with OFFSET_OUT_OF_RANGE; Tansu answers
        # it with an empty fetch (checked: position 50 of a 10-record log polls nothing). So the
        # broker's answer is given here for the log the test produced (``log_end`` per partition).
        connect = c._connect

        def connect_checked():  # type: ignore[no-untyped-def]
            from kafka.errors import OffsetOutOfRangeError

            consumer = connect()
            poll = consumer.poll

            def checked_poll(*a, **kw):  # type: ignore[no-untyped-def]
                out = poll(*a, **kw)
                beyond = {tp: consumer.position(tp) for tp in consumer.assignment()}
                beyond = {tp: p for tp, p in beyond.items() if p is not None and p > log_end}
                if beyond:
                    raise OffsetOutOfRangeError(beyond)
                return out

            consumer.poll = checked_poll
            return consumer

        c._connect = connect_checked  # type: ignore[method-assign]
    return c


def test_resolve_names_incarnations(tmp_path):
    lake = Lake(tmp_path / "lake")
    r = resolve(lake, "g", "t", 1, "5a1e")
    assert (r.app_id, r.seek_to, r.verify) == ("kafka:g:t:1:5a1e", None, False)
    assert app_id("g", "t", 1) == "kafka:g:t:1"
    assert app_id("g", "t", 1, None, 2) == "kafka:g:t:1:e2"
    assert app_id("g", "t", 1, "5a1e", 3) == "kafka:g:t:1:5a1e:e3"


@pytest.mark.parametrize("no_topic_ids", [False, True], ids=["topic-ids", "no-topic-ids"])
def test_new_log_after_restart_is_read_from_its_start(tmp_path, no_topic_ids):
    lake = Lake(tmp_path / "lake")
    port = free_port()
    first, second = range(0, 900), range(100_000, 100_600)
    logs: list[str] = []
    with EmbeddedBroker(port=port) as b:
        create_topics(b.bootstrap, ["t"], partitions=3)
        _produce_mixed(b.bootstrap, "t", first)
        _collect(b.bootstrap, lake, logs, no_topic_ids).run()
    with EmbeddedBroker(port=port) as b:  # empty again: offsets 0..199 per partition, all new records
        create_topics(b.bootstrap, ["t"], partitions=3)
        _produce_mixed(b.bootstrap, "t", second)
        _collect(b.bootstrap, lake, logs, no_topic_ids, log_end=200 if no_topic_ids else None).run()
    got = lake_counts(lake)
    n_bad = _bad(first) + _bad(second)
    assert got["events"] == got["distinct"] == 1500 - n_bad
    assert got["dead"] == n_bad
    if no_topic_ids:  # the out-of-range fetch of the lake's last offset started epoch 1
        assert any("no longer holds offset" in m and ":e1" in m for m in logs), logs
        assert lake.progress(app_id("g", "t", 0, None, 1)).resume_after == 199
    else:
        assert lake.progress(app_id("g", "t", 0, None)).resume_after is None


def test_topic_recreated_while_the_collector_runs(tmp_path):
    lake = Lake(tmp_path / "lake")
    port = free_port()
    logs: list[str] = []
    first, second = range(0, 1500), range(200_000, 200_300)
    b = EmbeddedBroker(port=port).start()
    try:
        create_topics(b.bootstrap, ["t"], partitions=3)
        _produce_mixed(b.bootstrap, "t", first)
        c = _collect(b.bootstrap, lake, logs, until_idle=8.0)
        th = threading.Thread(target=c.run)
        th.start()
        assert wait_until(lambda: lake_counts(lake)["events"] + lake_counts(lake)["dead"] >= 1500, timeout=90,
                          every=0.5)
        b.stop()
        time.sleep(2)
        b = EmbeddedBroker(port=port).start()  # the log is gone; the new one is shorter than our positions
        create_topics(b.bootstrap, ["t"], partitions=3)
        _produce_mixed(b.bootstrap, "t", second)
        th.join(timeout=180)
        assert not th.is_alive()
    finally:
        b.stop()
    got = lake_counts(lake)
    n_bad = _bad(first) + _bad(second)
    assert got["events"] == got["distinct"] == 1800 - n_bad, logs
    assert got["dead"] == n_bad
    assert any("topic recreated" in m or "no longer holds offset" in m for m in logs), logs


def test_progress_from_before_topic_ids_is_adopted_not_reread(tmp_path):
    lake = Lake(tmp_path / "lake")
    logs: list[str] = []
    first, more = range(0, 600), range(600, 900)
    with EmbeddedBroker(port=free_port()) as b:
        create_topics(b.bootstrap, ["t"], partitions=3)
        _produce_mixed(b.bootstrap, "t", first)
        _collect(b.bootstrap, lake, logs, no_topic_ids=True).run()  # progress under kafka:g:t:<p>
        assert lake.progress(app_id("g", "t", 0)).resume_after == 199
        _produce_mixed(b.bootstrap, "t", more)
        _collect(b.bootstrap, lake, logs).run()  # same log, now with its topic id
    got = lake_counts(lake)
    n_bad = _bad(first) + _bad(more)
    # read again from offset 0, the dead-letter would hold the first run's bad records twice
    assert got["dead"] == got["dead_distinct_origins"] == n_bad
    assert got["events"] == got["distinct"] == 900 - n_bad
    assert sum("continuing the lake's progress recorded as kafka:g:t:" in m for m in logs) == 3, logs
