"""What a connection needs to know about a snapshot's data files, without opening every one of them.

Two facts cost a pass over every file's footer (or column) at each connection, ~0.2 s and ~0.4 s on a lake
of 2,000 files, and both can be had for a few files' worth:

* **Schema signatures** (``signatures``: a SHA-256 of each file's Parquet schema). ``analytics.lake.connect``
  scans the files in groups of one Parquet schema. A data file of a Delta table is never rewritten (a compaction writes new files under new names),
  so a file's signature is cached for good in ``<lake>/file_schemas.parquet``, keyed by its path in the table
  and its size; only files the cache has not seen are read. The cache is best effort: a read-only lake, or a
  damaged or concurrently replaced cache file, only costs reading the footers again.
* **The time range** (``time_range``). Delta's ``add`` actions carry each file's ``min``/``max`` of ``time``,
  truncated to the millisecond (at most 1 ms below the value: ``tests/test_lakefiles.py`` checks it on a
  written lake). Only the files whose statistic lies within 2 ms of the extreme statistic can hold the
  extreme, so only those (and files without statistics) are read; the answer is the exact ``min``/``max``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

SCHEMA_CACHE = "file_schemas.parquet"  # under the lake directory
_SLACK = 2_000  # µs: twice the statistics' truncation
_SIGNATURES = """
SELECT file_name, sha256(string_agg(name || ' ' || coalesce(type, '') || ' ' || coalesce(CAST(logical_type AS VARCHAR), '')
                             || ' ' || coalesce(CAST(repetition_type AS VARCHAR), ''), ',' ORDER BY name)) AS sig
FROM parquet_schema($files) GROUP BY file_name
"""
_CACHE_SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("sig", pa.string())])
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileFacts:
    """One snapshot's data files (``uris``, as DuckDB reads them) with their Delta ``add`` facts, aligned."""

    uris: list[str]
    paths: list[str]  # relative to the table, as in the log
    sizes: list[int]
    time_min: list[int | None]  # Delta statistics, µs since the epoch (truncated to ms); None: not recorded
    time_max: list[int | None]

    @classmethod
    def of(cls, table: DeltaTable) -> FileFacts:
        uris = list(table.file_uris())
        adds = table.get_add_actions(flatten=True)
        # Only the columns used, each on its own: converting the whole table (every column's statistics) to
        # pyarrow costs ~40 MB of RSS on a 2,000-file lake, which stays for the connection's life.
        cols = set(adds.column_names)

        def col(name: str) -> list[Any]:
            if name not in cols:
                return [None] * adds.num_rows
            arr = pa.chunked_array(adds.column(name))
            # timestamps as integers: Python datetimes with a time zone cost ~40 MB of RSS the first time
            if pa.types.is_timestamp(arr.type):
                arr = arr.cast(pa.timestamp("us", arr.type.tz)).cast(pa.int64())
            values: list[Any] = arr.to_pylist()
            return values

        # The log's paths are relative (and may be percent-encoded); data file names are unique (a UUID each).
        by_name = {u.rsplit("/", 1)[-1]: u for u in uris}
        paths = col("path")
        n = len(paths)
        tmin, tmax = col("min.time"), col("max.time")
        names = [p.rsplit("/", 1)[-1] for p in paths]
        if n != len(uris) or len(by_name) != n or any(m not in by_name for m in names):  # no facts trusted
            return cls(uris, list(uris), [-1] * len(uris), [None] * len(uris), [None] * len(uris))
        return cls([by_name[m] for m in names], paths, col("size_bytes"), tmin, tmax)


def signatures(con: duckdb.DuckDBPyConnection, lake_dir: str | Path, facts: FileFacts) -> dict[str, str]:
    """Each file's Parquet schema signature (by uri), reading only the footers the cache has not seen."""
    cache = Path(lake_dir) / SCHEMA_CACHE
    known: dict[tuple[str, int], str] = {}
    try:  # through DuckDB, already loaded: pyarrow's reader starts its thread pools (~80 MB of RSS)
        known = {(p, s): g for p, s, g in con.execute("SELECT path, size, sig FROM read_parquet($p)",
                                                      {"p": str(cache)}).fetchall()}
    except duckdb.Error as e:
        if cache.exists():
            log.info("file schema cache %s unreadable (%s); reading the footers again", cache, e)
    keys = list(zip(facts.paths, facts.sizes, strict=True))
    missing = [u for u, k in zip(facts.uris, keys, strict=True) if k not in known or k[1] < 0]
    if missing:
        read = dict(con.execute(_SIGNATURES, {"files": missing}).fetchall())
        for u, k in zip(facts.uris, keys, strict=True):
            if u in read:
                known[k] = read[u]
        if any(s >= 0 for _p, s in keys):  # facts not trusted (sizes -1): nothing to cache, keep the cache as is
            _save(con, cache, [(p, s, known[(p, s)]) for p, s in keys if s >= 0 and (p, s) in known])
    return {u: known.get(k, "") for u, k in zip(facts.uris, keys, strict=True)}


def _save(con: duckdb.DuckDBPyConnection, cache: Path, rows: list[tuple[str, int, str]]) -> None:
    """Replace the cache with these rows (the snapshot's files: removed files drop out); best effort."""
    tmp = cache.with_name(f".{cache.name}.{uuid.uuid4().hex[:8]}")
    try:
        table = pa.table([list(c) for c in zip(*rows, strict=True)] if rows else [[], [], []], schema=_CACHE_SCHEMA)
        con.from_arrow(table).write_parquet(str(tmp))
        os.replace(tmp, cache)
    except (OSError, duckdb.Error) as e:
        tmp.unlink(missing_ok=True)
        log.info("could not write the file schema cache %s (%s)", cache, e)


def extreme_files(facts: FileFacts) -> tuple[list[str], list[str]]:
    """The files that can hold the snapshot's earliest ``time``, and those that can hold the latest."""
    mins = [v for v in facts.time_min if v is not None]
    maxs = [v for v in facts.time_max if v is not None]
    lo_cut = min(mins) + _SLACK if mins else None
    hi_cut = max(maxs) - _SLACK if maxs else None
    first = [u for u, v in zip(facts.uris, facts.time_min, strict=True) if v is None or lo_cut is None or v < lo_cut]
    last = [u for u, v in zip(facts.uris, facts.time_max, strict=True) if v is None or hi_cut is None or v > hi_cut]
    return first, last


def time_range(con: duckdb.DuckDBPyConnection, facts: FileFacts | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``min(time)``, ``max(time)`` over the snapshot's events, reading only the files that can hold them."""
    if facts is None or not facts.uris:
        row = con.execute("SELECT min(time), max(time) FROM events").fetchone()
        return (row[0], row[1]) if row else (None, None)
    first, last = extreme_files(facts)
    row = con.execute("SELECT (SELECT min(time) FROM events_in($a)), (SELECT max(time) FROM events_in($b))",
                      {"a": first, "b": last}).fetchone()
    return (row[0], row[1]) if row else (None, None)
