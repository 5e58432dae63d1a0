"""The lake: Delta tables of zstd Parquet, the source of truth for ingest progress.

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
import re
import time
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

from ingest import faults
from ingest.errors import DecisionPathError
from ingest.events import DEAD_LETTER_SCHEMA, SCHEMA, SCHEMA_VERSION

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ROW_GROUP_ROWS = 16_384  # small row groups: a per-identity query skips most of a day's file
# The order `compact` writes each day in. Activity first: the row groups of a compacted day hold one or two
# activities each, so a scan for some activities (decisions, tool calls, issuance: nearly every detection's scan)
# skips the others' row groups on their min/max statistics; actor then time within each activity keeps a
# per-identity query to about one row group per activity it appears in (docs/analytics.md "Row-group pruning").
# On 10M events the whole detection catalog took 18.2 s instead of 23.5 s (benchmarks/RESULTS.md, stop 19).
COMPACT_ORDER = "activity, actor_id, time"
# zstd level 1: measured faster than level 3 and no larger on our rows (benchmarks/RESULTS.md);
# the evidence columns are unique per row, so dictionaries and min/max statistics only cost.
_EVIDENCE = ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE")
_WRITER = WriterProperties(
    compression="ZSTD", compression_level=1, max_row_group_size=ROW_GROUP_ROWS,
    column_properties={"raw": _EVIDENCE, "attributes": _EVIDENCE},
)


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
    def compact(self, days: Sequence[str] | None = None) -> dict[str, int]:
        """Rewrite each day of ``events`` as few files sorted by ``COMPACT_ORDER`` (one atomic commit per day).

        Readers keep seeing every row exactly once: the replacement is a single Delta commit.
        """
        t = self.events_table()
        if t is None:
            return {"days": 0, "files_before": 0, "files_after": 0}
        all_days = sorted({p["day"] for p in t.partitions()}) if days is None else list(days)
        before = len(t.file_uris())
        con = duckdb.connect()
        try:
            for day in all_days:
                if not _DAY.match(day):
                    raise DecisionPathError(f"unexpected partition value {day!r} in {self.events_path}")
                files = self.files("events", [day])
                if len(files) <= 1:
                    continue
                # Partition columns are not stored in Delta's Parquet files: select the stored columns.
                cols = ", ".join(f'"{n}"' for n in SCHEMA.names if n != "day")
                tbl = con.sql(
                    f"SELECT {cols}, $day AS day FROM read_parquet($files) ORDER BY {COMPACT_ORDER}",  # noqa: S608
                    params={"files": files, "day": day},
                ).to_arrow_table()
                assert tbl is not None
                tbl = tbl.select(SCHEMA.names).cast(SCHEMA)
                write_deltalake(
                    str(self.events_path), tbl, mode="overwrite", partition_by=["day"],
                    predicate=f"day = '{day}'", writer_properties=_WRITER,
                    commit_properties=CommitProperties(custom_metadata={"decisionpath.operation": "compact"}),
                )
        finally:
            con.close()
        after = len(DeltaTable(str(self.events_path)).file_uris())
        return {"days": len(all_days), "files_before": before, "files_after": after}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
