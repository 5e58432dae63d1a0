"""One chunk of source records → normalised → committed to the lake exactly once.

Shared by the file and Kafka collectors: both cut chunks by record count, hand them here with
their source positions, and move their own progress marker only after this returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ingest.lake import Lake, Progress
from ingest.normalize import normalize, to_lake_tables


@dataclass
class IngestStats:
    """The run summary; ``to_json`` is the documented ``ingest --json`` contract."""

    read: int = 0
    events: int = 0
    dead_letter: int = 0
    duplicates: int = 0
    already_ingested: int = 0
    chunks: int = 0
    files: int = 0
    seconds: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)
    # Of ``seconds``, a Kafka collector's wait for its first partitions (the group join) and its last
    # ``--until-idle`` wait for records that did not come: neither is reading (file ingest: both 0).
    join_seconds: float = 0.0
    idle_seconds: float = 0.0

    def add(self, other: IngestStats) -> None:
        for k in ("read", "events", "dead_letter", "duplicates", "already_ingested", "chunks", "files"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read, "events": self.events, "dead_letter": self.dead_letter,
            "duplicates": self.duplicates, "already_ingested": self.already_ingested,
            "chunks": self.chunks, "files": self.files, "seconds": round(self.seconds, 3),
            "join_seconds": round(self.join_seconds, 3), "idle_seconds": round(self.idle_seconds, 3),
        }

    def line(self) -> str:
        head = (f"read {self.read:,} records: {self.events:,} events written, {self.dead_letter:,} dead-lettered, "
                f"{self.duplicates:,} duplicates skipped, {self.already_ingested:,} already in the lake; "
                f"{self.files} files, {self.chunks} chunks, {self.seconds:.1f}s")
        busy = self.seconds - self.join_seconds - self.idle_seconds
        waits = ([f"{self.join_seconds:.1f}s joining the group"] if self.join_seconds else []) + \
            ([f"{self.idle_seconds:.1f}s waiting for more (--until-idle)"] if self.idle_seconds else [])
        if not waits:
            return f"{head} ({self.read / self.seconds if self.seconds > 0 else 0.0:,.0f} records/s)"
        return f"{head}, of which {' and '.join(waits)}: {self.read / busy if busy > 0 else 0.0:,.0f} records/s while reading"


@dataclass(frozen=True)
class Normalized:
    """A chunk after parsing: Arrow tables plus the source position of every row.

    ``presorted``: the events are as ``Lake.commit`` writes them (``normalize.to_lake_tables``: repeats of an
    ``event_id`` left out, ``duplicates`` of them, sorted by actor then time); else in record order.
    """

    events: pa.Table
    dead: pa.Table
    event_positions: pa.Array
    dead_positions: pa.Array
    read: int
    first: int
    last: int
    duplicates: int = 0
    presorted: bool = False


def normalize_chunk(items: Sequence[tuple[bytes, str, int]], fmt: str, now: dt.datetime | None = None) -> Normalized:
    """Pure: ``(raw, origin, position)`` items → tables. Runs in worker processes. No items (a range of blank
    lines): empty tables, ``read`` 0 (the caller commits nothing)."""
    batch = normalize(items, fmt=fmt, now=now)
    events, dead, event_positions, dead_positions, dups = to_lake_tables(batch)
    first, last = (items[0][2], items[-1][2]) if items else (0, 0)
    return Normalized(events, dead, event_positions, dead_positions, len(items), first, last, dups, True)


def commit_normalized(
    lake: Lake, n: Normalized, app_id: str, progress: Progress, metadata: dict[str, Any] | None = None,
) -> IngestStats:
    """Commit one normalised chunk exactly once (see ``Lake.commit``)."""
    stats = IngestStats(read=n.read, chunks=1)
    meta = {"first_position": n.first, "last_position": n.last}
    meta.update(metadata or {})
    res = lake.commit(
        n.events, n.dead, app_id, n.last, metadata=meta,
        skip_events_upto=progress.events, skip_dead_upto=progress.dead_letter,
        event_positions=n.event_positions, dead_positions=n.dead_positions, presorted=n.presorted,
    )
    stats.events, stats.dead_letter = res.events_written, res.dead_written
    stats.duplicates = res.duplicates + n.duplicates
    return stats


def _worker_init() -> None:
    """A parsing worker dies with its parent and never holds the caller's stdout/stderr open.

    (A collector killed with SIGKILL must not leave workers behind that keep a pipe open: the
    process that started the collector would wait on that pipe forever.)
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:  # not Linux: the pool's own broken-pipe detection still applies
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def file_label(path: str | os.PathLike[str]) -> str:
    """A file's path as origins and commit metadata carry it: bytes of the name that are not UTF-8 are escaped
    (``\\xff``), so that Arrow and the Delta log can hold it (a name in another encoding failed the whole ingest)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class LineRange:
    """Lines ``first``, ``first + 1``, ... of a plain (uncompressed) JSON Lines file, at bytes ``[offset,
    offset + length)``: read by the process that parses them, so only this record crosses the pipe (the
    records themselves cost a pickle in this process and an unpickle in the worker, ~45 MB per 50,000)."""

    path: str
    offset: int
    length: int
    first: int

    def items(self) -> list[tuple[bytes, str, int]]:
        """``(raw, origin, position)`` of the range's non-blank lines, as ``collect_files.records`` gives them."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.length)
        origin = f"file:{file_label(self.path)}:"
        out = []
        for n, line in enumerate(data.split(b"\n"), self.first):
            line = line.strip()
            if line:
                out.append((line, f"{origin}{n}", n))
        return out


@dataclass(frozen=True)
class SpooledItems:
    """Records the collector holds in memory (Kafka values, with origins and positions), written to the pipeline's
    spool as Arrow columns: the pipe carries this name instead of the pickled records. The reader unlinks it."""

    path: str

    @staticmethod
    def write(spool: str, items: Sequence[tuple[bytes, str, int]]) -> SpooledItems | None:
        """Write ``items`` to the spool; None when there is no room, or when Arrow cannot hold them (an origin that
        is not UTF-8: a file name in another encoding): the records then go through the pipe."""
        try:
            table = pa.table({"raw": pa.array([i[0] for i in items], pa.binary()),
                              "origin": pa.array([i[1] for i in items], pa.string()),
                              "pos": pa.array([i[2] for i in items], pa.int64())})
        except (pa.ArrowException, UnicodeError, TypeError, ValueError):
            return None
        path = _spool_write(spool, table)
        return SpooledItems(path) if path is not None else None

    def items(self) -> list[tuple[bytes, str, int]]:
        t = _spool_read(self.path)
        return list(zip(t["raw"].to_pylist(), t["origin"].to_pylist(), t["pos"].to_pylist(), strict=True))


Work = Sequence[tuple[bytes, str, int]] | LineRange | SpooledItems


def _items(work: Work) -> Sequence[tuple[bytes, str, int]]:
    return work.items() if isinstance(work, LineRange | SpooledItems) else work


_SPOOL_PREFIX = "decisionpath-spool-"


@dataclass(frozen=True)
class Spooled:
    """A worker's result whose events table waits in a file of the pipeline's spool (memory-backed where
    ``/dev/shm`` is): the pipe carries the path and the rest of the result (``shell``: no events) instead of
    the pickled table, which cost the worker a copy, the pipe two more and this process another to unpickle
    (~80 MB per 50,000 records)."""

    path: str
    shell: Normalized

    def load(self) -> Normalized:
        table = _spool_read(self.path)
        pos = table["_pos"].combine_chunks() if table.num_rows else pa.array([], pa.int64())
        return dataclasses.replace(self.shell, events=table.drop_columns(["_pos"]), event_positions=pos)


def _spool_root() -> str:
    shm = "/dev/shm"  # noqa: S108 - a directory of our own is made inside it, private to this user
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


_SPOOL_MAX_IDLE_S = 86_400.0


def _clear_stale_spools(root: str) -> None:
    """Remove the spools of collectors that died without closing theirs: their pid is gone, or nothing was
    written in them for a day (a dead collector whose pid was reused). Removing a live but idle collector's spool
    only sends its next chunks through the pipe. Best effort."""
    try:
        names = [n for n in os.listdir(root) if n.startswith(_SPOOL_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(root, name)
        try:
            pid = int(name[len(_SPOOL_PREFIX):].split("-", 1)[0])
            if time.time() - os.stat(path).st_mtime > _SPOOL_MAX_IDLE_S:
                raise ProcessLookupError
            os.kill(pid, 0)
        except (ValueError, FileNotFoundError):
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue


def normalize_work(work: Work, fmt: str) -> Normalized:
    return normalize_chunk(_items(work), fmt)


def normalize_spooled(work: Work, fmt: str, spool: str) -> Normalized | Spooled:
    """``normalize_chunk`` in a worker, its events table written to ``spool`` when there is room for it."""
    n = normalize_chunk(_items(work), fmt)
    path = _spool_write(spool, n.events.append_column("_pos", n.event_positions))
    if path is None:
        return n
    # new empty columns: a zero-length slice of the table could still pickle its buffers
    return Spooled(path, dataclasses.replace(n, events=n.events.schema.empty_table(),
                                             event_positions=pa.array([], pa.int64())))


def _spool_write(spool: str, table: pa.Table) -> str | None:
    """Write ``table`` as an Arrow IPC file in the spool; None when there is no room for it (a container's 64 MB
    ``/dev/shm``) or the write fails: the caller sends the data through the pipe instead."""
    path = os.path.join(spool, f"{uuid.uuid4().hex}.arrow")
    try:
        st = os.statvfs(spool)
        if st.f_bavail * st.f_frsize < 2 * table.nbytes + (64 << 20):
            return None
        with pa.OSFile(path, "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return None
    return path


def _spool_read(path: str) -> pa.Table:
    """Map a spooled file (no copy: the table's buffers are the mapping) and unlink it at once."""
    try:
        return pa.ipc.open_file(pa.memory_map(path)).read_all()
    finally:
        os.unlink(path)


class Pipeline:
    """Parse chunks in worker processes while this process reads and commits, in submission order.

    Parsing is pure Python and dominates ingest; commits must stay ordered per input (the lake's
    progress marker is the last position committed), so results are committed strictly in the
    order chunks were submitted. ``workers <= 1`` parses in this process (no pool at all).
    Up to ``2 * workers + 1`` chunks are in flight: while this process waits on the oldest one and
    commits it, every worker already holds its next chunk (with ``workers + 1`` they sat idle for
    about a second per worker at 100k records, waiting for this process to read and submit).
    """

    def __init__(self, workers: int, max_pending: int | None = None) -> None:
        self.workers = max(1, workers)
        self.max_pending = max_pending or 2 * self.workers + 1
        self._pool: Any = None
        self._spool: str | None = None
        self._pending: deque[tuple[Any, Work, str, Callable[[Normalized], None]]] = deque()

    def _executor(self) -> Any:
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # fork: no helper processes (a forkserver and a resource tracker would outlive a killed
            # collector holding its output pipes). Workers only run pure-Python parsing and Arrow
            # conversion, never the parent's DuckDB or delta-rs threads' locks.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                             initializer=_worker_init)
            root = _spool_root()
            _clear_stale_spools(root)
            try:
                self._spool = tempfile.mkdtemp(prefix=f"{_SPOOL_PREFIX}{os.getpid()}-", dir=root)
            except OSError:
                self._spool = None  # results come back through the pipe
        return self._pool

    def submit(self, work: Work, fmt: str, then: Callable[[Normalized], None]) -> None:
        """Parse ``work`` (items, or a range of lines the parsing process reads); ``then(result)`` runs here, in
        order, once it and every earlier chunk are done."""
        if self.workers == 1:
            then(normalize_work(work, fmt))
            return
        from concurrent.futures.process import BrokenProcessPool

        if not isinstance(work, LineRange | SpooledItems):
            work = list(work)
        pool = self._executor()
        sent: Work = work
        if self._spool is not None and not isinstance(work, LineRange | SpooledItems):
            sent = SpooledItems.write(self._spool, work) or work  # kept here too: a dead worker's chunk is parsed here
        try:
            fut = (pool.submit(normalize_spooled, sent, fmt, self._spool) if self._spool is not None
                   else pool.submit(normalize_work, sent, fmt))
        except BrokenProcessPool:  # a worker died earlier: the chunks before this one first, then this one here
            self.drain()
            then(normalize_work(work, fmt))
            return
        self._pending.append((fut, work, fmt, then))
        while len(self._pending) >= self.max_pending:
            self._complete_one()

    def _complete_one(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        fut, work, fmt, then = self._pending.popleft()
        try:
            result = fut.result()
            if isinstance(result, Spooled):
                result = result.load()
        except (BrokenProcessPool, OSError, pa.ArrowInvalid):
            # A worker died (out of memory, killed) or could not start, or its spooled result is unreadable
            # (removed, damaged): parse here instead.
            result = normalize_work(work, fmt)
        then(result)

    def drain(self) -> None:
        """Commit everything submitted so far."""
        while self._pending:
            self._complete_one()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
            if self._spool is not None:
                shutil.rmtree(self._spool, ignore_errors=True)
                self._spool = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None and self._pool is not None:  # failing: do not commit what is pending
            self._pending.clear()
        self.close()
