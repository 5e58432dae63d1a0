"""The lake: Delta tables of Parquet (zstd; a compacted day LZ4_RAW for its analytic columns), the source of truth for ingest progress.

Layout under the lake directory:
  events/       canonical events, partitioned by ``day``; each ingested file sorted by actor then time,
                each compacted day by activity, then actor, then time (``COMPACT_ORDER``)
  dead_letter/  records that could not be parsed, with reason and source position
  alerts/ ...   written by analytics (not here)
  marts/        analytics' cache of marts computed from one snapshot (disposable; see analytics.lake)

Exactly-once: every chunk is committed to ``dead_letter`` and then to ``events``, each commit
carrying a Delta application transaction ``(app_id, version)`` where ``app_id`` names the input
(``kafka:<group>:<topic>:<partition>[:<topic id>][:e<epoch>]``, see ingest.incarnation, or
``file:<content id>``) and ``version`` is the last
source position of the chunk. A restarted collector resumes after
``min(events version, dead_letter version)`` and drops, per table, what that table already has.
Kafka offsets are committed only after both lake commits.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction

from ingest import faults
from ingest.errors import DecisionPathError
from ingest.events import DEAD_LETTER_SCHEMA, SCHEMA, SCHEMA_VERSION

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ROW_GROUP_ROWS = 16_384  # small row groups: a per-identity query skips most of a day's file
# The order `compact` writes each day in. Activity first: the row groups of a compacted day hold one or two
# activities each, so a scan for some activities (decisions, tool calls, issuance: nearly every detection's scan)
# skips the others' row groups on their min/max statistics; actor then time within each activity keeps a
# per-identity query to about one row group per activity it appears in (docs/analytics.md "Row-group pruning").
# On 10M events the whole detection catalog took 18.0-18.7 s instead of 23.1-23.9 s (zstd both; RESULTS.md, stop 19).
COMPACT_ORDER = "activity, actor_id, time"
# zstd level 1: measured faster than level 3 and no larger on our rows (benchmarks/RESULTS.md);
# the evidence columns are unique per row, so dictionaries and min/max statistics only cost.
EVIDENCE_COLUMNS = ("raw", "attributes")
_EVIDENCE = ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")
_WRITER = WriterProperties(
    compression="ZSTD", compression_level=1, max_row_group_size=ROW_GROUP_ROWS,
    column_properties=dict.fromkeys(EVIDENCE_COLUMNS, _EVIDENCE),
)
# Compacted days are written by pyarrow, which sets a codec per column (delta-rs sets one per file): zstd level 1
# for the evidence and provenance (`raw`, `attributes`, `origin`: read per finding, never scanned; `raw` is half the
# bytes), LZ4_RAW for the rest, the columns the analytics scan: every detection scan decompresses the columns it
# reads, and LZ4 decodes faster. The lake is ~30 % larger than all-zstd (benchmarks/RESULTS.md, stop 19).
_ZSTD_COLUMNS = ("raw", "attributes", "origin")
COMPACT_CODECS: dict[str, str] = {f.name: "ZSTD" if f.name in _ZSTD_COLUMNS else "LZ4_RAW"
                                  for f in SCHEMA if f.name != "day"}
# What `compact` writes, in words: a lake compacted under another layout is compacted again by benchmarks/suite.py.
COMPACT_LAYOUT = f"order {COMPACT_ORDER}; zstd {', '.join(_ZSTD_COLUMNS)}, LZ4_RAW the rest; pyarrow"


def _leaf(field: pa.Field) -> str:
    """The Parquet column path pyarrow keys per-column writer options by (a list's values are a leaf of their own)."""
    return f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name


def first_rows(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The positions of the first row of each distinct id, ascending: the rows in their order, repeats left out.
    (Positions of groups are not row numbers: taking ``sort_indices`` of the first rows lost rows, bc83c7f.)"""
    import pyarrow.compute as pc

    first = pa.table({"e": ids, "i": pa.array(range(len(ids)), pa.int64())}).group_by(
        "e", use_threads=False).aggregate([("i", "min")])["i_min"]
    return pc.take(first, pc.sort_indices(first))


@dataclass(frozen=True)
class Progress:
    """Where an input stands in the lake: the last position each table has committed."""

    events: int | None
    dead_letter: int | None

    @property
    def resume_after(self) -> int | None:
        """The last position both tables have; resume after it (None: from the start)."""
        if self.events is None or self.dead_letter is None:
            return None
        return min(self.events, self.dead_letter)


@dataclass(frozen=True)
class CommitResult:
    events_written: int
    dead_written: int
    duplicates: int


class Lake:
    """One lake directory. Cheap to create; tables are created on first write."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.events_path = self.root / "events"
        self.dead_letter_path = self.root / "dead_letter"
        # Open tables are kept and brought up to date incrementally (a reload per commit costs
        # more than the commit's own bookkeeping); one DuckDB connection serves the dedup checks.
        self._tables: dict[Path, DeltaTable] = {}
        self._con: duckdb.DuckDBPyConnection | None = None

    # -- reading -------------------------------------------------------------------------
    def _table(self, path: Path) -> DeltaTable | None:
        """The table's latest snapshot (other writers' commits included), or None if it does not exist."""
        t = self._tables.get(path)
        if t is not None:
            t.update_incremental()
            return t
        try:
            t = DeltaTable(str(path))
        except TableNotFoundError:
            return None
        self._tables[path] = t
        return t

    def events_table(self) -> DeltaTable | None:
        return self._table(self.events_path)

    def dead_letter_table(self) -> DeltaTable | None:
        return self._table(self.dead_letter_path)

    def files(self, which: str = "events", days: Sequence[str] | None = None) -> list[str]:
        """Parquet files of the current snapshot of a table (optionally of some days only)."""
        t = self._table(self.root / which)
        if t is None:
            return []
        if days is not None:
            if not days:
                return []
            return list(t.file_uris(file_pruning_predicate=[("day", "in", list(days))]))
        return list(t.file_uris())

    def progress(self, app_id: str) -> Progress:
        ev = self.events_table()
        dl = self.dead_letter_table()
        return Progress(
            events=ev.transaction_version(app_id) if ev is not None else None,
            dead_letter=dl.transaction_version(app_id) if dl is not None else None,
        )

    # -- writing -------------------------------------------------------------------------
    def existing_event_ids(self, ids: pa.Array, days: Sequence[str]) -> set[str]:
        """Which of ``ids`` the lake already holds (looking only at the given days)."""
        files = self.files("events", days)
        if not files or len(ids) == 0:
            return set()
        if self._con is None:
            self._con = duckdb.connect()
        con = self._con
        con.register("chunk_ids", pa.table({"event_id": ids}))
        try:
            rows = con.execute(
                "SELECT e.event_id FROM read_parquet($files) e SEMI JOIN chunk_ids c USING (event_id)",
                {"files": files},
            ).fetchall()
        finally:
            con.unregister("chunk_ids")
        return {r[0] for r in rows}

    def commit(
        self,
        events: pa.Table,
        dead: pa.Table,
        app_id: str,
        last_position: int,
        metadata: dict[str, Any] | None = None,
        skip_events_upto: int | None = None,
        skip_dead_upto: int | None = None,
        event_positions: pa.Array | None = None,
        dead_positions: pa.Array | None = None,
        presorted: bool = False,
    ) -> CommitResult:
        """Write one chunk exactly once: dead-letter first, then events, each with its txn version.

        Rows whose source position is at or below what a table already holds (after a crash
        between the two commits) are dropped for that table. Events whose ``event_id`` is
        already in the lake (re-ingest of the same records) are dropped and counted.
        ``presorted``: the events hold one row per ``event_id`` and are sorted by actor then time
        already (``normalize.to_lake_tables``), so they are written in their order.
        """
        import pyarrow.compute as pc

        if skip_dead_upto is not None and dead_positions is not None and dead.num_rows:
            dead = dead.filter(pc.greater(dead_positions, skip_dead_upto))
        if skip_events_upto is not None and event_positions is not None and events.num_rows:
            events = events.filter(pc.greater(event_positions, skip_events_upto))
        meta = {"decisionpath.schema_version": SCHEMA_VERSION, "app_id": app_id, "last_position": last_position}
        meta.update(metadata or {})
        str_meta = {k: str(v) for k, v in meta.items()}

        events, dups = self._dedup(events, within=not presorted)
        dl_prog = self.dead_letter_table()
        if dl_prog is None or (dl_prog.transaction_version(app_id) or -1) < last_position:
            self._append(self.dead_letter_path, dead, DEAD_LETTER_SCHEMA, app_id, last_position, str_meta)
        faults.point("after_dead_letter_commit")
        ev_prog = self.events_table()
        if ev_prog is None or (ev_prog.transaction_version(app_id) or -1) < last_position:
            if not presorted:
                events = events.sort_by([("actor_id", "ascending"), ("time", "ascending")])
            self._append(self.events_path, events, SCHEMA, app_id, last_position, str_meta)
        faults.point("after_lake_commit")
        return CommitResult(events.num_rows, dead.num_rows, dups)

    def _dedup(self, events: pa.Table, within: bool = True) -> tuple[pa.Table, int]:
        if events.num_rows == 0:
            return events, 0
        import pyarrow.compute as pc

        before = events.num_rows
        if within:  # keep the first row of each event_id of the chunk
            keep = first_rows(events["event_id"])
            if len(keep) != before:
                events = events.take(keep)
        days = pc.unique(events["day"]).to_pylist()
        seen = self.existing_event_ids(events["event_id"], days)
        if seen:
            events = events.filter(pc.invert(pc.is_in(events["event_id"], value_set=pa.array(list(seen)))))
        return events, before - events.num_rows

    def _append(
        self, path: Path, table: pa.Table, schema: pa.Schema, app_id: str, version: int, meta: dict[str, str]
    ) -> None:
        table = table.cast(schema) if table.schema != schema else table
        props = CommitProperties(app_transactions=[Transaction(app_id=app_id, version=version)], custom_metadata=meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(8):
            target = self._table(path)
            try:
                write_deltalake(
                    target if target is not None else str(path), table, mode="append", partition_by=["day"],
                    writer_properties=_WRITER, commit_properties=props, schema_mode=None,
                )
                return
            except CommitFailedError:  # a concurrent writer won the race: retry on the new snapshot
                time.sleep(0.05 * (attempt + 1))
        raise DecisionPathError(f"could not commit to {path} after 8 attempts; is another process compacting it?")

    # -- maintenance ---------------------------------------------------------------------
    def compact(self, days: Sequence[str] | None = None, memory_limit: str = "1GB") -> dict[str, int]:
        """Rewrite each day of ``events`` as one file sorted by ``COMPACT_ORDER``, its columns compressed by
        ``COMPACT_CODECS`` (one atomic commit per day: the day's files are replaced by the new one).

        Readers keep seeing every row exactly once: the replacement is a single Delta commit. A day is streamed:
        DuckDB sorts it within ``memory_limit`` (spilling to a temporary directory beyond it) and the file is
        written one row group at a time, so a day larger than memory compacts too. A day already in one file that
        ``compact`` wrote is left as it is.
        """
        import tempfile

        t = self.events_table()
        if t is None:
            return {"days": 0, "rewritten": 0, "files_before": 0, "files_after": 0}
        all_days = sorted({p["day"] for p in t.partitions()}) if days is None else list(days)
        for day in all_days:
            if not _DAY.match(day):
                raise DecisionPathError(f"unexpected partition value {day!r} in {self.events_path}")
        before = len(t.file_uris())
        # The days with work to do, from this snapshot's file list: loading the table again per day cost ~7 ms a day
        # (5.5 s on a lake of 743 days with nothing to do, as every `schedule --compact` step found it).
        by_day: dict[str, list[str]] = {}
        adds = t.get_add_actions(flatten=True)
        for path, d in zip(pa.chunked_array(adds.column("path")).to_pylist(),
                           pa.chunked_array(adds.column("partition.day")).to_pylist(), strict=True):
            by_day.setdefault(d, []).append(path)
        todo = [d for d in all_days if len(by_day.get(d, ())) > 1 or not all(map(_compacted, by_day.get(d, ())))]
        rewritten = 0
        with tempfile.TemporaryDirectory(prefix="decisionpath-compact-") as spill:
            con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill})
            try:
                for day in todo:
                    # The day's files are read, and removed by name, on one snapshot: a file another writer adds
                    # meanwhile stays as it is, and one another compaction removed meanwhile makes the commit fail.
                    table = self._table(self.events_path)
                    assert table is not None
                    files = list(table.file_uris(file_pruning_predicate=[("day", "in", [day])]))
                    if len(files) <= 1 and all(_compacted(f) for f in files):
                        continue
                    # Partition columns are not stored in Delta's Parquet files: select the stored columns.
                    cols = ", ".join(f'"{n}"' for n in SCHEMA.names if n != "day")
                    rel = con.sql(
                        f"SELECT {cols} FROM read_parquet($files) ORDER BY {COMPACT_ORDER}",  # noqa: S608
                        params={"files": files},
                    )
                    # duckdb 2 names it to_arrow_reader; 1.4 has fetch_record_batch only
                    reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch
                    self._replace_day(table, day, files, reader(ROW_GROUP_ROWS))
                    rewritten += 1
            finally:
                con.close()
        table = self._table(self.events_path)  # the snapshot this process compacted, updated in place
        after = len(table.file_uris()) if table is not None else 0
        return {"days": len(all_days), "rewritten": rewritten, "files_before": before, "files_after": after}

    def settled_days(self) -> list[str]:
        """The days of ``events`` before the newest one: the days collectors have moved past (``schedule --compact``).

        The newest day is still being written; an earlier one only receives late records, and a day that gets one
        after its compaction holds two files and is compacted again."""
        t = self.events_table()
        days = sorted({p["day"] for p in t.partitions()}) if t is not None else []
        return days[:-1]

    def _replace_day(self, table: DeltaTable, day: str, files: list[str], rows: pa.RecordBatchReader) -> None:
        """One commit on ``table``'s snapshot: ``files`` (the day's, as read) removed, one new file holding ``rows``
        (written here, ``COMPACT_CODECS``, a row group at a time) added."""
        import pyarrow.parquet as pq

        schema = pa.schema([f for f in SCHEMA if f.name != "day"])
        name = f"day={day}/part-00000-{uuid.uuid4()}-c000{COMPACTED_SUFFIX}"
        path = self.events_path / name
        leaf = {f.name: _leaf(f) for f in schema}
        analytic = [leaf[n] for n in schema.names if n not in EVIDENCE_COLUMNS]
        stats = FileStats(schema)
        try:
            with pq.ParquetWriter(
                    path, schema, compression={leaf[n]: COMPACT_CODECS[n] for n in schema.names},
                    compression_level={leaf[n]: 1 for n in schema.names if COMPACT_CODECS[n] == "ZSTD"},
                    use_dictionary=analytic, write_statistics=analytic,
                    write_page_index=True) as writer:  # as delta-rs writes: DuckDB skips pages on it
                pending: list[pa.Table] = []
                held = 0
                for batch in rows:
                    part = pa.Table.from_batches([batch]).cast(schema)
                    stats.add(part)
                    pending.append(part)
                    held += part.num_rows
                    if held >= ROW_GROUP_ROWS:
                        whole = pa.concat_tables(pending)
                        cut = held - held % ROW_GROUP_ROWS
                        writer.write_table(whole.slice(0, cut), row_group_size=ROW_GROUP_ROWS)
                        pending, held = [whole.slice(cut)], held - cut
                if held:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
            now = int(time.time() * 1000)
            root = self.events_path.resolve()
            # data_change=True, though the rows are only rearranged: with False, delta-rs 1.6 does not check the
            # removes against a concurrent commit that removed the same files, and two compactions of one day would
            # both commit, every row twice (test_compact_fails_when_another_compaction_replaced_the_day_first).
            actions: list[AddAction | RemoveAction] = [
                RemoveAction(path=Path(f).resolve().relative_to(root).as_posix(), data_change=True,
                             deletion_timestamp=now, partition_values={"day": day}) for f in files]
            actions.append(AddAction(path=name, size=path.stat().st_size, partition_values={"day": day},
                                     modification_time=now, data_change=True, stats=stats.json()))
            table.create_write_transaction(
                actions, mode="append", schema=table.schema(), partition_by=["day"],
                commit_properties=CommitProperties(custom_metadata={"decisionpath.operation": "compact"}))
        except CommitFailedError as e:
            path.unlink(missing_ok=True)  # not committed: no reader can see it
            raise DecisionPathError(f"another process replaced files of day {day} in {self.events_path} while it was "
                                    f"being compacted ({e}); nothing was lost: run compact again") from e
        except BaseException:
            path.unlink(missing_ok=True)
            raise


COMPACTED_SUFFIX = ".compacted.parquet"  # the name of a file `compact` wrote (a day already in one such file is skipped)


def _compacted(uri: str) -> bool:
    return uri.endswith(COMPACTED_SUFFIX)


def _stat_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        # as delta-rs writes them: UTC, truncated to the millisecond
        return v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    return v


class FileStats:
    """A data file's Delta statistics, accumulated over its rows in parts: record count, and min, max and null count
    of every top-level column of a plain type except the evidence (as delta-rs records them;
    ``analytics.lakefiles`` reads those of ``time``)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.names = [f.name for f in schema if f.name not in EVIDENCE_COLUMNS and not pa.types.is_nested(f.type)]
        self.rows = 0
        self.lo: dict[str, Any] = {}
        self.hi: dict[str, Any] = {}
        self.nulls = dict.fromkeys(self.names, 0)

    def add(self, part: pa.Table) -> None:
        import pyarrow.compute as pc

        self.rows += part.num_rows
        for n in self.names:
            col = part.column(n)
            self.nulls[n] += col.null_count
            if col.null_count < len(col):
                mm = pc.min_max(col).as_py()
                if n not in self.lo or mm["min"] < self.lo[n]:
                    self.lo[n] = mm["min"]
                if n not in self.hi or mm["max"] > self.hi[n]:
                    self.hi[n] = mm["max"]

    def json(self) -> str:
        return json.dumps({"numRecords": self.rows, "minValues": {k: _stat_value(v) for k, v in self.lo.items()},
                           "maxValues": {k: _stat_value(v) for k, v in self.hi.items()}, "nullCount": self.nulls})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
