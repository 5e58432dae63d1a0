"""Analyst triage of alerts: append-only marks in ``<lake>/triage``; the latest mark per alert wins."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pandas as pd
import pyarrow as pa

from analytics import alerts as al
from ingest.errors import ConfigError

VERDICTS = ("true_positive", "false_positive", "benign", "open")
_ts = pa.timestamp("us", tz="UTC")
TRIAGE_SCHEMA = pa.schema([
    pa.field("alert_id", pa.string(), nullable=False),
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("note", pa.string()),
    pa.field("by", pa.string()),
    pa.field("marked_at", _ts, nullable=False),
])


def mark_alert(lake_dir: str | Path, alert_id: str, verdict: str, note: str = "", by: str = "analyst") -> dict[str, Any]:
    """Record a triage mark for an existing alert; returns the stored mark."""
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if not al.existing_ids(lake_dir, [alert_id]):
        raise ConfigError(f"no alert {alert_id!r} in {lake_dir}/alerts; list them with `decisionpath detect` "
                          "or the dashboard")
    row = {"alert_id": alert_id, "verdict": verdict, "note": note, "by": by, "marked_at": dt.datetime.now(dt.UTC)}
    al.append(Path(lake_dir) / "triage", [row], TRIAGE_SCHEMA)
    return row


def latest_marks(lake_dir: str | Path) -> dict[str, dict[str, Any]]:
    """alert_id → its latest mark."""
    t = al.table(Path(lake_dir) / "triage")
    if t is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for r in sorted(t.to_pyarrow_table().to_pylist(), key=lambda r: r["marked_at"]):
        out[r["alert_id"]] = r
    return out


def list_alerts(lake_dir: str | Path, detection: str | None = None, severity: str | None = None,
                verdict: str | None = None, since: dt.datetime | None = None,
                until: dt.datetime | None = None) -> pd.DataFrame:
    """Alerts with their latest triage mark (verdict 'open' when unmarked), newest first; for the dashboard."""
    alerts = al.read_alerts(lake_dir)
    marks = latest_marks(lake_dir)
    mt = pa.Table.from_pylist(list(marks.values()), schema=TRIAGE_SCHEMA)
    con = duckdb.connect()
    con.register("a", alerts)
    con.register("m", mt)
    df = con.execute(
        """
        SELECT a.*, coalesce(m.verdict, 'open') AS verdict, m.note AS triage_note, m.by AS triage_by,
               m.marked_at AS triaged_at
        FROM a LEFT JOIN m USING (alert_id)
        WHERE ($det IS NULL OR a.detection = $det) AND ($sev IS NULL OR a.severity = $sev)
          AND ($ver IS NULL OR coalesce(m.verdict, 'open') = $ver)
          AND ($since IS NULL OR a.last_seen >= $since) AND ($until IS NULL OR a.first_seen <= $until)
        ORDER BY a.last_seen DESC, a.alert_id
        """,
        {"det": detection, "sev": severity, "ver": verdict, "since": since, "until": until},
    ).df()
    return df


def run_triage_cli(args: argparse.Namespace) -> int:
    row = mark_alert(args.lake, args.alert_id, args.verdict, args.note or "", args.by)
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
    else:
        print(f"{row['alert_id']} marked {row['verdict']} by {row['by']}")
    return 0
