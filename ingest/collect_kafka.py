"""Kafka collector: a consumer-group member that lands every record in the lake exactly once.

The lake is the source of truth for progress. On assignment each partition is positioned after
the last offset the lake holds for that incarnation of the partition (``ingest.incarnation``:
the app id carries the broker's topic id, so a recreated topic is read from its beginning); Kafka offsets are
committed only after the lake commit, and only as a convenience for lag monitoring. Chunks are
cut per partition by record count, or by the span of the records' own Kafka timestamps; when
the stream goes quiet the tail is flushed. Exactly-once does not depend on where chunks are cut:
the lake drops, per table, every offset it already holds.

A broker lost mid-stream is waited for: probed once a second, the outage logged on stderr, what is
held flushed into the lake, and BrokerUnavailable after ``broker_retry_s``; an outage never counts
as idle time for ``until_idle_s``.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest import faults
from ingest.broker import wait_for_listener
from ingest.chunks import IngestStats, Normalized, Pipeline, commit_normalized
from ingest.errors import BrokerUnavailable, ConfigError
from ingest.incarnation import Resume, next_epoch, resolve
from ingest.lake import Lake


@dataclass(frozen=True)
class KafkaSettings:
    """How a collector joins the cluster and cuts chunks."""

    bootstrap: str
    topics: tuple[str, ...]
    group: str = "decisionpath"
    fmt: str = "auto"
    chunk_records: int = 50_000
    chunk_span_ms: int = 60_000          # cut when a chunk's Kafka timestamps span this much
    idle_flush_s: float = 2.0            # flush partial chunks when nothing arrived for this long
    until_idle_s: float | None = None    # stop after this long with nothing to read (batch use)
    session_timeout_ms: int = 10_000
    connect_timeout_s: float = 30.0      # how long to retry a broker that is down at start
    broker_retry_s: float = 300.0        # how long to wait for a broker lost mid-stream before giving up
    max_poll_records: int = 5_000
    fetch_max_bytes: int = 50 << 20
    client_id: str = "decisionpath-collector"
    workers: int = 1                     # parsing processes; chunks commit in order in this one
    extra: dict[str, Any] = field(default_factory=dict)  # passed to KafkaConsumer (security settings ...)


PROBE_AFTER_IDLE_S = 1.0   # probe the broker once nothing arrived for this long ...
PROBE_EVERY_S = 1.0        # ... and then at most this often
STILL_WAITING_EVERY_S = 10.0
KAFKA_CALL_TIMEOUT_MS = 5_000  # offset commit and leave-group calls: never block on a lost broker


def _stderr(msg: str) -> None:
    print(f"decisionpath: {msg}", file=sys.stderr, flush=True)


def broker_reachable(bootstrap: str, timeout: float = 1.0) -> tuple[bool, str]:
    """Whether any bootstrap address accepts a TCP connection now, and the last error if none does."""
    err = "no address"
    for hp in bootstrap.split(","):
        host, _, port_s = hp.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port_s)), timeout=timeout):
                return True, ""
        except (OSError, ValueError) as e:
            err = str(e)
    return False, err


class KafkaCollector:
    """Consume ``settings.topics`` into ``lake``; ``run()`` returns the summary."""

    def __init__(
        self,
        settings: KafkaSettings,
        lake: Lake,
        on_chunk: Callable[[IngestStats], None] | None = None,
        after_commit: Callable[[int], None] | None = None,
        log: Callable[[str], None] = _stderr,
        on_assigned: Callable[[int], None] | None = None,
    ) -> None:
        self.s = settings
        self.lake = lake
        self.on_chunk = on_chunk
        self.after_commit = after_commit
        self.on_assigned = on_assigned  # called with the number of partitions the group just gave this member
        self.log = log
        self.stats = IngestStats()
        self._t0 = 0.0  # when run() started (join_seconds is counted from it)
        self._buf: dict[Any, list[tuple[bytes, str, int]]] = {}
        self._first_ts: dict[Any, int] = {}
        self._stop = threading.Event()
        self._consumer: Any = None
        self._last_data = time.monotonic()
        self._pipe = Pipeline(settings.workers)
        self._down_since: float | None = None    # when the broker was first found unreachable
        self._last_probe = 0.0
        self._last_notice = 0.0
        self._error_since: float | None = None   # first of a run of failed polls
        self._resume: dict[Any, Resume] = {}     # per assigned partition: its incarnation and floor
        self._last_id_check = 0.0
        self._topic_ids: dict[Any, str] = {}      # the topic id each partition was last read under (kept on revoke)

    def stop(self) -> None:
        """Ask ``run()`` to flush what it holds and return (safe from a signal handler)."""
        self._stop.set()

    # -- consumer plumbing ---------------------------------------------------------------
    def _connect(self) -> Any:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError, KafkaTimeoutError

        wait_for_listener(self.s.bootstrap, timeout=self.s.connect_timeout_s)
        try:
            c = KafkaConsumer(
                bootstrap_servers=self.s.bootstrap.split(","),
                group_id=self.s.group,
                client_id=self.s.client_id,
                enable_auto_commit=False,
                # Never reset silently: an offset out of range means the log was reset, truncated
                # or cut by retention under us, which _reposition examines (see ingest.incarnation).
                auto_offset_reset="none",
                session_timeout_ms=self.s.session_timeout_ms,
                heartbeat_interval_ms=max(100, self.s.session_timeout_ms // 4),
                max_poll_records=self.s.max_poll_records,
                fetch_max_bytes=self.s.fetch_max_bytes,
                max_partition_fetch_bytes=min(self.s.fetch_max_bytes, 16 << 20),
                **self.s.extra,
            )
        except KafkaTimeoutError as e:
            raise BrokerUnavailable(
                f"no Kafka broker answered at {self.s.bootstrap}: {e}; check --bootstrap and that the cluster is up"
            ) from e
        except KafkaError as e:
            raise ConfigError(f"cannot create the Kafka consumer: {e}") from e
        return c

    def _topic_id(self, topic: str) -> str | None:
        tid = self._consumer._client.cluster.topic_id(topic)  # kafka-python keeps the broker's ids here
        return str(tid) if tid is not None else None

    def _on_assigned(self, partitions: Sequence[Any]) -> None:
        # A rebalance is activity: a member that takes over a dead member's partitions must get
        # its full --until-idle to read them, however long it had been idle before.
        self._last_data = time.monotonic()
        if partitions and not self.stats.join_seconds:
            self.stats.join_seconds = time.perf_counter() - self._t0
        for tp in partitions:
            self._start(tp, resolve(self.lake, self.s.group, tp.topic, tp.partition, self._topic_id(tp.topic)))
        if self.on_assigned and partitions:
            self.on_assigned(len(partitions))

    def _start(self, tp: Any, r: Resume) -> None:
        before = self._topic_ids.get(tp)
        if before is not None and r.topic_id is not None and before != r.topic_id:
            # seen by the id watch below, or by a rebalance after the broker came back with the new topic
            self.log(f"{tp.topic}/{tp.partition}: topic recreated (topic id {before} -> {r.topic_id}); reading the "
                     "new topic from its beginning")
        if r.topic_id is not None:
            self._topic_ids[tp] = r.topic_id
        if r.adopted_from:
            self.log(f"{tp.topic}/{tp.partition}: continuing the lake's progress recorded as {r.adopted_from} "
                     f"(before topic ids were tracked) for topic id {r.topic_id}")
        self._resume[tp] = r
        if r.seek_to is None:
            self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, r.seek_to)

    def _reposition(self, positions: dict[Any, Any], why: str) -> set[Any]:
        """The broker says a partition's position is no longer in its log: find out why and go on.

        The topic was recreated (a new topic id): read the new incarnation from its beginning.
        Retention deleted records before we read them: say how many are lost upstream and go on
        from the log's start. Otherwise the log was reset or truncated under the same id (or the
        broker reports no ids): a new epoch, read from the beginning (the lake drops event ids it
        already holds). Whatever this partition holds in memory is committed first, under the
        incarnation it was read from.

        Returns the partitions repositioned. A broker that fails these calls leaves a partition as it
        was: its next fetch or id check brings it here again.
        """
        from kafka.errors import KafkaError

        done: set[Any] = set()
        try:
            self._consumer._client.cluster.request_update()
            self._consumer.topics()  # a metadata round trip: the topic id below is the broker's current one
        except KafkaError as e:
            self.log(f"could not read the topics' metadata to examine {why} ({e}); retrying")
            return done
        for tp in positions:
            if tp not in self._resume:
                continue
            try:
                self._reposition_one(tp, positions[tp], why)
            except KafkaError as e:
                self.log(f"{tp.topic}/{tp.partition}: could not examine {why} ({e}); retrying")
                continue
            done.add(tp)
        return done

    def _reposition_one(self, tp: Any, position: Any, why: str) -> None:
        self._flush(tp)
        self._pipe.drain()
        old = self._resume[tp]
        tid = self._topic_id(tp.topic)
        where = f"{tp.topic}/{tp.partition}"
        if tid is None and old.topic_id is not None:
            # deleted and not (yet) recreated: read what appears; once the broker reports the new
            # topic's id, _recreated starts it again from its beginning under that id
            self.log(f"{where}: topic not found on the broker ({why}); waiting for it")
            self._consumer.seek_to_beginning(tp)
            return
        if tid is not None and tid != old.topic_id:  # (_start says so)
            self._start(tp, resolve(self.lake, self.s.group, tp.topic, tp.partition, tid))
            return
        pos = self._consumer.position(tp) if position is None else position
        pos = getattr(pos, "offset", pos)
        start = self._consumer.beginning_offsets([tp]).get(tp, 0)
        if pos is not None and pos < start:
            self.log(f"{where}: offsets {pos}..{start - 1} were deleted by the broker's retention before "
                     f"they were read; they are lost upstream (raise the topic's retention or run the collector "
                     f"more often). Going on from offset {start}")
            self._consumer.seek(tp, start)
            return
        has_progress = self.lake.progress(old.app_id).resume_after is not None
        new = next_epoch(old, self.s.group, tp.topic, tp.partition) if has_progress else \
            Resume(old.app_id, old.topic_id, old.epoch, None, verify=False)
        self.log(f"{where}: the log no longer holds offset {pos} ({why}): it was reset or truncated "
                 f"under us. Reading it again from its beginning as {new.app_id}; events already in the lake are "
                 "recognised by event id")
        self._start(tp, new)

    def _on_revoked(self, partitions: Sequence[Any]) -> None:
        for tp in partitions:
            self._flush(tp)
        self._pipe.drain()  # everything of the revoked partitions is in the lake before they go
        for tp in partitions:
            self._resume.pop(tp, None)

    # -- chunking ------------------------------------------------------------------------
    def _flush(self, tp: Any) -> None:
        items = self._buf.pop(tp, None)
        self._first_ts.pop(tp, None)
        if not items:
            return
        from kafka.structs import OffsetAndMetadata

        r = self._resume[tp]
        aid = r.app_id
        prog = self.lake.progress(aid)
        # Drop what the lake has: the verification record at the floor, or what a previous owner
        # of the partition committed meanwhile.
        floor = max(x for x in (prog.resume_after, r.floor, -1) if x is not None)
        items = [i for i in items if i[2] > floor]
        if not items:
            return
        meta = {"topic": tp.topic, "partition": tp.partition, "first_offset": items[0][2], "last_offset": items[-1][2]}

        def commit(n: Normalized) -> None:
            s = commit_normalized(self.lake, n, aid, prog, meta)
            self.stats.add(s)
            if self.after_commit:
                self.after_commit(self.stats.chunks)
            if self.on_chunk:
                self.on_chunk(s)
            # Lag monitoring only: the lake, not this offset, decides where we resume; so it is
            # skipped while the broker is known to be down (each attempt would block).
            if self._down_since is None:
                try:
                    self._consumer.commit({tp: OffsetAndMetadata(n.last + 1, "", -1)},
                                          timeout_ms=KAFKA_CALL_TIMEOUT_MS)
                except Exception:  # noqa: BLE001 - a rebalance in flight, or the broker is gone
                    self._broker_up(time.monotonic(), force=True)
            faults.point("after_offset_commit")

        self._pipe.submit(items, self.s.fmt, commit)

    def _flush_all(self) -> None:
        for tp in list(self._buf):
            self._flush(tp)
        self._pipe.drain()

    def run(self) -> IngestStats:
        from kafka import ConsumerRebalanceListener
        from kafka.errors import KafkaError, LogTruncationError, OffsetOutOfRangeError

        t0 = self._t0 = time.perf_counter()
        self._consumer = self._connect()
        outer = self

        class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Sequence[Any]) -> None:
                outer._on_revoked(revoked)

            def on_partitions_assigned(self, assigned: Sequence[Any]) -> None:
                outer._on_assigned(assigned)

        self._consumer.subscribe(topics=list(self.s.topics), listener=_Listener())
        self._last_data = time.monotonic()
        tail_work = (0.0, 0.0)  # (the last data's time, seconds then spent committing what was held)
        try:
            while not self._stop.is_set():
                try:
                    polled = self._consumer.poll(timeout_ms=200, max_records=self.s.max_poll_records)
                except (OffsetOutOfRangeError, LogTruncationError) as e:
                    self._reposition(dict(e.args[0]) if e.args and isinstance(e.args[0], dict) else {}, type(e).__name__)
                    continue
                except KafkaError as e:  # transient broker trouble: keep what we hold, retry
                    self._poll_failed(e)
                    continue
                self._error_since = None
                now = time.monotonic()
                moved: set[Any] = set()
                if now - self._last_id_check >= PROBE_EVERY_S:
                    # a recreated topic whose new log is shorter than our positions sends nothing
                    # (Tansu answers such fetches empty), so the ids are watched, not only batches
                    self._last_id_check = now
                    moved = {tp for tp in list(self._resume) if self._recreated(tp)}
                if polled:
                    if self._down_since is not None:  # records prefetched before an outage, or it is over
                        self._broker_up(now)
                    for tp, msgs in polled.items():
                        if tp in moved or self._recreated(tp):
                            continue  # this batch may be either incarnation's: re-read from the new one's start
                        buf = self._buf.setdefault(tp, [])
                        origin = f"kafka:{tp.topic}/{tp.partition}@"
                        for m in msgs:
                            # a tombstone (null value) is a record too: it lands in the dead-letter
                            buf.append((m.value or b"", origin + str(m.offset), m.offset))
                            self._first_ts.setdefault(tp, m.timestamp)
                            if (len(buf) >= self.s.chunk_records
                                    or m.timestamp - self._first_ts[tp] >= self.s.chunk_span_ms):
                                self._flush(tp)
                                buf = self._buf.setdefault(tp, [])
                    # Idle time starts when this batch is handled, not when it was fetched: chunk
                    # commits can take longer than --until-idle (and a broker lost meanwhile must
                    # still be waited for).
                    self._last_data = time.monotonic()
                else:
                    if now - self._last_data >= PROBE_AFTER_IDLE_S and not self._broker_up(now):
                        self._give_up_if_down_too_long(now)
                        if self._buf:
                            self._flush_all()  # into the lake now: the outage may outlast us
                        continue  # an outage is not idleness: wait for the broker, bounded
                    idle = now - self._last_data  # after the probe: a broker back resets it
                    if self._buf and idle >= self.s.idle_flush_s:
                        began = time.monotonic()
                        self._flush_all()
                        tail_work = (self._last_data, time.monotonic() - began)
                    if self.s.until_idle_s is not None and idle >= self.s.until_idle_s and self._assigned():
                        # since the last records, less the commit of what was held when they stopped
                        self.stats.idle_seconds = max(0.0, time.monotonic() - self._last_data
                                                      - (tail_work[1] if tail_work[0] == self._last_data else 0.0))
                        break
        finally:
            try:
                self._flush_all()
            finally:
                self._pipe.close()
            try:
                self._consumer.close(autocommit=False, timeout_ms=KAFKA_CALL_TIMEOUT_MS)
            except Exception:  # noqa: BLE001
                pass
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    # -- broker outages ------------------------------------------------------------------
    def _broker_up(self, now: float, force: bool = False) -> bool:
        """Probe the broker (at most every PROBE_EVERY_S unless forced) and log outages on stderr:
        when one starts, every STILL_WAITING_EVERY_S while it lasts, and when it ends."""
        if not force and now - self._last_probe < PROBE_EVERY_S:
            return self._down_since is None
        self._last_probe = now
        up, err = broker_reachable(self.s.bootstrap)
        if up:
            if self._down_since is not None:
                self.log(f"Kafka broker at {self.s.bootstrap} is back after {now - self._down_since:.0f}s; resuming")
                self._down_since = None
                self._consumer._client.cluster.request_update()  # a broker back may hold recreated topics
                self._last_data = now  # the idle timer starts again: give the broker time to serve
            return True
        if self._down_since is None:
            self._down_since = self._last_notice = now
            self.log(f"Kafka broker at {self.s.bootstrap} unreachable ({err}); waiting for the broker, retrying "
                     f"every {PROBE_EVERY_S:.0f}s for up to {self.s.broker_retry_s:.0f}s (--broker-retry-timeout)")
        elif now - self._last_notice >= STILL_WAITING_EVERY_S:
            self._last_notice = now
            self.log(f"still waiting for the Kafka broker at {self.s.bootstrap} ({now - self._down_since:.0f}s of "
                     f"{self.s.broker_retry_s:.0f}s)")
        return False

    def _give_up_if_down_too_long(self, now: float) -> None:
        if self._down_since is not None and now - self._down_since > self.s.broker_retry_s:
            raise BrokerUnavailable(
                f"Kafka broker at {self.s.bootstrap} unreachable for {now - self._down_since:.0f}s; gave up after "
                f"--broker-retry-timeout {self.s.broker_retry_s:.0f}s. Everything read before the outage is in "
                "the lake: run the collector again once the broker is back, it resumes from there.")

    def _poll_failed(self, e: Exception) -> None:
        """A poll raised: retry, bounded by ``broker_retry_s`` like an unreachable broker."""
        now = time.monotonic()
        if self._error_since is None:
            self._error_since = now
            self.log(f"Kafka poll failed ({e}); retrying for up to {self.s.broker_retry_s:.0f}s")
        elif now - self._error_since > self.s.broker_retry_s:
            raise BrokerUnavailable(
                f"Kafka at {self.s.bootstrap} failing for {now - self._error_since:.0f}s: {e}") from e
        time.sleep(0.5)

    def _recreated(self, tp: Any) -> bool:
        """Whether the broker now reports another topic id for ``tp`` than the one it was resumed under.

        The records fetched before the metadata showed it are committed under the old incarnation
        (a record fetched in that window can be the new topic's: its event is then recognised by
        event id when the new topic is read from its beginning)."""
        r = self._resume.get(tp)
        tid = self._topic_id(tp.topic)
        if r is None or tid is None or r.topic_id is None or tid == r.topic_id:
            return False
        return tp in self._reposition({tp: None}, "topic id changed")

    def _assigned(self) -> bool:
        try:
            return bool(self._consumer.assignment())
        except Exception:  # noqa: BLE001
            return False


def install_signal_handlers(collector: KafkaCollector) -> None:
    """SIGTERM/SIGINT: finish the current chunk, commit, leave the group cleanly."""
    def handler(signum: int, frame: object) -> None:
        collector.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def produce(
    paths: Sequence[str], bootstrap: str, topic: str, on_progress: Callable[[int], None] | None = None,
    connect_timeout_s: float = 30.0,
) -> int:
    """Replay the records of files into a topic, one record per message (value = the raw bytes)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    from ingest.collect_files import expand, records

    wait_for_listener(bootstrap, timeout=connect_timeout_s)
    try:
        p = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=1 << 20,
                          max_request_size=8 << 20, acks="all", compression_type=None)
    except KafkaTimeoutError as e:
        raise BrokerUnavailable(f"no Kafka broker answered at {bootstrap}; check --bootstrap") from e
    n = 0
    try:
        for path in expand(paths):
            for raw, _origin, _pos in records(path):
                p.send(topic, raw)
                n += 1
                if on_progress and n % 10_000 == 0:
                    on_progress(n)
        p.flush()
    finally:
        p.close()
    return n
