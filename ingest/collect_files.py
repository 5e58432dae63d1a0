"""File collector: JSONL, JSON arrays, single JSON documents (CloudTrail files), gzip.

Progress per file is recorded in the lake under ``file:<content id>`` (SHA-256 of the file's
first 64 KiB and its path-independent content), with the last record number as version: an
interrupted run re-run resumes where the lake stands, and the same file ingested again adds
nothing. Records of other files that repeat an ``event_id`` already in the lake are skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import orjson

from ingest import faults
from ingest.chunks import IngestStats, LineRange, Normalized, Pipeline, commit_normalized, file_label
from ingest.errors import ConfigError
from ingest.lake import Lake, Progress

CHUNK_RECORDS = 50_000
_SUFFIXES = (".json", ".jsonl", ".ndjson", ".log", ".gz")
_ID_PREFIX = 64 << 10


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files named, and the log files inside directories named (sorted); errors name what is wrong."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(_SUFFIXES))
            out.extend(f for f in found if f.name not in ("labels.jsonl", "truth.jsonl", "manifest.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such file or directory")
    return out


def _open(path: Path) -> IO[bytes]:
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed there
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))
    f.seek(0)
    return f


def content_id(path: Path) -> str:
    """A path-independent id for a file's content (its first 64 KiB, decompressed)."""
    with _open(path) as f:
        head = f.read(_ID_PREFIX)
    return hashlib.sha256(head).hexdigest()[:32]


def records(path: Path) -> Iterator[tuple[bytes, str, int]]:
    """``(raw, origin, position)`` for every record of a file; positions start at 1."""
    label = file_label(path)
    with _open(path) as f:
        data_head = f.read(_ID_PREFIX)
        if _whole_document(data_head):
            whole = data_head + f.read()
            try:
                doc = orjson.loads(whole)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, list):
                for i, item in enumerate(doc, 1):
                    yield orjson.dumps(item), f"file:{label}:[{i - 1}]", i
                return
            if isinstance(doc, dict):
                yield whole.strip(), f"file:{label}:1", 1
                return
            # not one JSON document after all: fall through to lines
            stream: IO[bytes] = io.BytesIO(whole)
        else:
            stream = io.BufferedReader(_Concat(data_head, f), buffer_size=1 << 20)
        for n, line in enumerate(stream, 1):
            line = line.strip()
            if line:
                yield line, f"file:{label}:{n}", n


def plain_lines(path: Path) -> bool:
    """Whether ``records`` reads this file as lines of an uncompressed file (so ranges of them can be read
    elsewhere: ``line_ranges``)."""
    with open(path, "rb") as f:
        head = f.read(_ID_PREFIX)
    return head[:2] != b"\x1f\x8b" and not _whole_document(head)


def _whole_document(head: bytes) -> bool:
    """A file opening with "[" is one JSON array; with "{", JSON Lines unless its first line is not a whole JSON
    value (a pretty-printed document such as a CloudTrail file)."""
    first = head.lstrip()[:1]
    return first == b"[" or (first == b"{" and not _is_jsonl(head))


_BLOCK = 8 << 20


def line_ranges(path: Path, chunk_lines: int, after: int = 0) -> tuple[int, Iterator[LineRange]]:
    """The non-blank lines among the first ``after`` (already in the lake), and ranges of ``chunk_lines`` lines
    each (blank ones included) from line ``after + 1`` to the end: the same lines and positions ``records``
    gives, cut by a scan for newlines instead of a Python object per line."""
    skipped, offset = 0, 0
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if n > after:
                break
            offset += len(line)
            skipped += bool(line.strip())
    return skipped, _ranges(path, chunk_lines, after, offset)


def _ranges(path: Path, chunk_lines: int, after: int, offset: int) -> Iterator[LineRange]:
    name = str(path)
    start, line, pending = offset, after + 1, 0  # the open range: its first byte and line, lines in it so far
    pos = offset
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + 1  # the byte after each newline
            k = chunk_lines - pending - 1  # the newline that closes the open range
            while k < len(ends):
                end = pos + int(ends[k])
                yield LineRange(name, start, end - start, line)
                start, line = end, line + chunk_lines
                k += chunk_lines
            pending = len(ends) - (k - chunk_lines + 1)
            pos += len(block)
    if pos > start:
        yield LineRange(name, start, pos - start, line)


def _is_jsonl(head: bytes) -> bool:
    """True when the first line is a complete JSON value on its own (JSON Lines)."""
    line = head.lstrip().split(b"\n", 1)[0].strip()
    if not line:
        return False
    try:
        orjson.loads(line)
        return True
    except orjson.JSONDecodeError:
        return False


class _Concat(io.RawIOBase):
    """``head`` followed by the rest of ``f``, as one raw stream."""

    def __init__(self, head: bytes, f: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head.nbytes:
            n = min(len(b), self._head.nbytes)
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def default_workers() -> int:
    """Parsing processes: one per core (this process mostly reads and commits meanwhile)."""
    return max(1, os.cpu_count() or 1)


def ingest_files(
    paths: Sequence[str | Path],
    lake: Lake,
    fmt: str = "auto",
    chunk_records: int = CHUNK_RECORDS,
    on_chunk: Callable[[IngestStats], None] | None = None,
    after_commit: Callable[[int], None] | None = None,
    workers: int = 1,
) -> IngestStats:
    """Ingest files into the lake exactly once; returns the run summary.

    ``workers > 1`` parses chunks in that many processes; commits stay in order in this one.
    ``after_commit`` is called with the chunk number after each lake commit (tests use it to
    kill the process at a chosen point).
    """
    t0 = time.perf_counter()
    total = IngestStats()
    files = expand(paths)
    if fmt != "auto":
        from ingest import sources

        sources.get(fmt)  # an unknown format is a usage error before anything is read
    with Pipeline(workers) as pipe:
        for path in files:
            app_id = f"file:{content_id(path)}"
            prog = lake.progress(app_id)
            resume = prog.resume_after or 0

            def commit(n: Normalized, app_id: str = app_id, prog: Progress = prog, path: Path = path) -> None:
                if not n.read:  # a range of blank lines
                    return
                s = commit_normalized(lake, n, app_id, prog, {"file": file_label(path)})
                total.add(s)
                if after_commit:
                    after_commit(total.chunks)
                if on_chunk:
                    on_chunk(s)

            if plain_lines(path):  # the parsing processes read their lines themselves
                skipped, ranges = line_ranges(path, chunk_records, resume)
                total.already_ingested += skipped
                total.read += skipped
                for rng in ranges:
                    if rng.first == 1:
                        faults.point("while_reading")
                    pipe.submit(rng, fmt, commit)
                total.files += 1
                continue
            chunk: list[tuple[bytes, str, int]] = []
            for item in records(path):
                if item[2] == 1:
                    faults.point("while_reading")
                if item[2] <= resume:
                    total.already_ingested += 1
                    total.read += 1
                    continue
                chunk.append(item)
                if len(chunk) >= chunk_records:
                    pipe.submit(chunk, fmt, commit)
                    chunk = []
            if chunk:
                pipe.submit(chunk, fmt, commit)
            total.files += 1
    total.seconds = time.perf_counter() - t0
    return total
