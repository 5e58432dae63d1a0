"""A compact factory for small canonical lakes: one dict per event, defaults filled in, committed with Lake."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa

from ingest.events import DEAD_LETTER_SCHEMA, SCHEMA
from ingest.lake import Lake

T0 = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """T0 plus some seconds."""
    return T0 + dt.timedelta(seconds=seconds)


def ev(event_id: str, t: float, activity: str, actor: str, **kw: Any) -> dict[str, Any]:
    """One canonical row with the required fields defaulted."""
    time = at(t)
    fmt = event_id.split(":", 1)[0]
    category = {"decision": "authorization", "tool.invoked": "tool_call", "api.call": "api_activity",
                "session.started": "authentication"}.get(activity, "credential")
    row = {"event_id": event_id, "time": time, "day": time.date().isoformat(), "ingested_at": time, "source": fmt,
           "format": fmt, "category": category, "activity": activity, "actor_id": actor, "origin": f"test:{event_id}",
           "raw": "{}"}
    row.update(kw)
    return row


def make_lake(root: Path, events: list[dict[str, Any]]) -> Path:
    """Commit the rows as one chunk into a fresh lake at ``root``."""
    return append_events(root, events)


def append_events(root: Path, events: list[dict[str, Any]], app_id: str = "test") -> Path:
    """Commit the rows as one chunk of input ``app_id`` (a commit an input already made is skipped)."""
    cols = {f.name: [e.get(f.name) for e in events] for f in SCHEMA}
    tbl = pa.table(cols, schema=SCHEMA)
    dead = pa.table({f.name: [] for f in DEAD_LETTER_SCHEMA}, schema=DEAD_LETTER_SCHEMA)
    Lake(root).commit(tbl, dead, app_id=app_id, last_position=1)
    return root
