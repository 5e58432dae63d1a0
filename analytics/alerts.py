"""Alerts: the typed record, the Delta tables (`alerts`, `detect_state`) and idempotent writes."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from analytics.detectors.base import Finding, iso
from ingest.errors import DecisionPathError

_ts = pa.timestamp("us", tz="UTC")
ALERTS_SCHEMA = pa.schema([
    pa.field("alert_id", pa.string(), nullable=False),
    pa.field("detection", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("severity", pa.string(), nullable=False),
    pa.field("identities", pa.list_(pa.string())),
    pa.field("first_seen", _ts, nullable=False),
    pa.field("last_seen", _ts, nullable=False),
    pa.field("event_ids", pa.list_(pa.string())),
    pa.field("key_event_id", pa.string()),
    pa.field("explanation", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("evidence", pa.string()),  # JSON: links, facts, key, decision path of the key event
    pa.field("detector_version", pa.int64()),
    pa.field("raised_at", _ts, nullable=False),
    pa.field("run_id", pa.string()),
])
STATE_SCHEMA = pa.schema([
    pa.field("detection", pa.string(), nullable=False),
    pa.field("detector_version", pa.int64()),
    pa.field("since", _ts, nullable=False),
    pa.field("until", _ts, nullable=False),
    pa.field("run_id", pa.string()),
    pa.field("ran_at", _ts, nullable=False),
    pa.field("findings", pa.int64()),
    pa.field("new_alerts", pa.int64()),
])


@dataclass(frozen=True)
class Alert:
    """An alert as stored and as printed by `detect --json`."""

    alert_id: str
    detection: str
    title: str
    severity: str
    identities: tuple[str, ...]
    first_seen: dt.datetime
    last_seen: dt.datetime
    event_ids: tuple[str, ...]
    key_event_id: str
    explanation: str
    score: float
    evidence: dict[str, Any]
    detector_version: int
    raised_at: dt.datetime
    run_id: str

    @classmethod
    def from_finding(cls, f: Finding, title: str, severity: str, version: int, path: dict[str, Any] | None,
                     run_id: str, now: dt.datetime) -> Alert:
        evidence = {"key": list(f.key), "links": [ln.to_json() for ln in f.links], "facts": dict(f.facts),
                    "decision_path": path}
        return cls(f.alert_id, f.detection, title, severity, f.identities, f.first_seen, f.last_seen, f.event_ids,
                   f.key_event_id, f.explanation, f.score, evidence, version, now, run_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id, "detection": self.detection, "title": self.title, "severity": self.severity,
            "identities": list(self.identities), "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen),
            "event_ids": list(self.event_ids), "key_event_id": self.key_event_id, "explanation": self.explanation,
            "score": self.score, "evidence": self.evidence, "raised_at": iso(self.raised_at),
        }

    def to_row(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in ALERTS_SCHEMA.names if k != "evidence"},
                "identities": list(self.identities), "event_ids": list(self.event_ids),
                "evidence": orjson.dumps(self.evidence, default=str).decode()}


def table(path: Path) -> DeltaTable | None:
    try:
        return DeltaTable(str(path))
    except TableNotFoundError:
        return None


def existing_ids(lake_dir: str | Path, ids: Sequence[str]) -> set[str]:
    """Which of these alert ids the lake already holds."""
    t = table(Path(lake_dir) / "alerts")
    if t is None or not ids:
        return set()
    con = duckdb.connect()
    rows = con.execute("SELECT DISTINCT alert_id FROM read_parquet($f) WHERE list_contains($ids, alert_id)",
                       {"f": list(t.file_uris()), "ids": list(ids)}).fetchall()
    return {r[0] for r in rows}


# Each detect run adds a small file to `detect_state` (and to `alerts` when it raises some): a `schedule --every 5m`
# makes 288 a day, and every run reads them all (the watermarks: 0.63 s after 1,000 runs, growing linearly). Past
# this many files such a table is compacted into one (delta-rs `optimize.compact`, a data_change=false commit).
SMALL_FILES_MAX = 64
log = logging.getLogger(__name__)


def tidy(path: Path, max_files: int | None = None) -> bool:
    """Compact the run table at ``path`` once it holds more than ``max_files`` (``SMALL_FILES_MAX``) files; whether
    it did. Best effort: a concurrent writer's commit, or any failure, leaves it to the next run."""
    t = table(path)
    if t is None or len(t.file_uris()) <= (SMALL_FILES_MAX if max_files is None else max_files):
        return False
    try:
        t.optimize.compact()
        t.vacuum(dry_run=False)  # files the compactions replaced over a week ago (delta-rs's default retention)
    except Exception as e:  # noqa: BLE001 - a tidy-up: the table stays as it was, readable
        log.info("compacting %s skipped (%s); the next run tries again", path, e)
        return False
    return True


def append(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Append rows to a Delta table, retrying when a concurrent writer won the commit (then ``tidy`` it)."""
    if not rows:
        return
    tbl = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(8):
        try:
            write_deltalake(str(path), tbl, mode="append")
            tidy(path)
            return
        except CommitFailedError:
            time.sleep(0.05 * (attempt + 1))
    raise DecisionPathError(f"could not commit to {path} after 8 attempts")


def write_alerts(lake_dir: str | Path, alerts: Sequence[Alert]) -> list[Alert]:
    """Write the alerts the lake does not hold yet; returns those (the new ones). Idempotent."""
    uniq: dict[str, Alert] = {}
    for a in alerts:
        uniq.setdefault(a.alert_id, a)
    have = existing_ids(lake_dir, list(uniq))
    new = [a for i, a in uniq.items() if i not in have]
    path = Path(lake_dir) / "alerts"
    if not new:
        return []
    t = table(path)
    tbl = pa.Table.from_pylist([a.to_row() for a in new], schema=ALERTS_SCHEMA)
    if t is None:
        append(path, [a.to_row() for a in new], ALERTS_SCHEMA)
        return new
    # MERGE on alert_id: a concurrent run that raised the same alert cannot make it appear twice.
    for attempt in range(8):
        try:
            (t.merge(tbl, predicate="t.alert_id = s.alert_id", source_alias="s", target_alias="t")
             .when_not_matched_insert_all().execute())
            tidy(path)
            return new
        except CommitFailedError:
            time.sleep(0.05 * (attempt + 1))
            t = DeltaTable(str(path))
    raise DecisionPathError(f"could not commit to {path} after 8 attempts")


def read_alerts(lake_dir: str | Path) -> pa.Table:
    """Every stored alert (empty table with the schema when none)."""
    t = table(Path(lake_dir) / "alerts")
    if t is None:
        return ALERTS_SCHEMA.empty_table()
    return t.to_pyarrow_table()
