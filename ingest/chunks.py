"""One chunk of source records → normalised → committed to the lake exactly once.

Shared by the file and Kafka collectors: both cut chunks by record count, hand them here with
their source positions, and move their own progress marker only after this returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ingest.lake import Lake, Progress
from ingest.normalize import normalize, to_tables


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

    def add(self, other: IngestStats) -> None:
        for k in ("read", "events", "dead_letter", "duplicates", "already_ingested", "chunks", "files"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read, "events": self.events, "dead_letter": self.dead_letter,
            "duplicates": self.duplicates, "already_ingested": self.already_ingested,
            "chunks": self.chunks, "files": self.files, "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        return (f"read {self.read:,} records: {self.events:,} events written, {self.dead_letter:,} dead-lettered, "
                f"{self.duplicates:,} duplicates skipped, {self.already_ingested:,} already in the lake; "
                f"{self.files} files, {self.chunks} chunks, {self.seconds:.1f}s ({rate:,.0f} records/s)")


def commit_chunk(
    lake: Lake,
    items: Sequence[tuple[bytes, str, int]],
    app_id: str,
    fmt: str,
    progress: Progress,
    metadata: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> IngestStats:
    """Normalise ``(raw, origin, position)`` items and commit them; positions must increase."""
    stats = IngestStats(read=len(items), chunks=1)
    if not items:
        return stats
    batch = normalize(items, fmt=fmt, now=now)
    events, dead = to_tables(batch)
    ev_pos = pa.array([r["_pos"] for r in batch.events], pa.int64())
    dl_pos = pa.array([r["_pos"] for r in batch.dead], pa.int64())
    first, last = items[0][2], items[-1][2]
    meta = {"first_position": first, "last_position": last}
    meta.update(metadata or {})
    res = lake.commit(
        events, dead, app_id, last, metadata=meta,
        skip_events_upto=progress.events, skip_dead_upto=progress.dead_letter,
        event_positions=ev_pos, dead_positions=dl_pos,
    )
    stats.events, stats.dead_letter, stats.duplicates = res.events_written, res.dead_written, res.duplicates
    return stats
