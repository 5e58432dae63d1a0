"""Real-world formats (okta, k8s_audit, gcp_audit, entra, ocsf): golden files, sniffing, robustness.

Golden files: every ``tests/fixtures/formats/<fmt>/<name>.jsonl`` is normalised with a fixed clock
and compared exactly with ``<name>.golden.json`` (events and dead-letter rows, datetimes ISO).
Regenerate with ``DP_UPDATE_GOLDEN=1 pytest tests/test_parsers_real_formats.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import sources
from ingest.events import FIELD_NAMES
from ingest.normalize import Batch, normalize, to_tables

FORMATS = ("okta", "k8s_audit", "gcp_audit", "entra", "ocsf")
FIXTURES = Path(__file__).parent / "fixtures" / "formats"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
UPDATE = os.environ.get("DP_UPDATE_GOLDEN") == "1"


def _files() -> list[Path]:
    return sorted(p for f in FORMATS for p in (FIXTURES / f).glob("*.jsonl"))


def _lines(path: Path) -> list[tuple[bytes, str]]:
    rel = path.relative_to(FIXTURES)
    return [(line, f"file:{rel}:{i}") for i, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()]


def _records(fmt: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted((FIXTURES / fmt).glob("*.jsonl")):
        out += [orjson.loads(b) for b, _ in _lines(p)]
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _golden_of(batch: Batch) -> dict[str, Any]:
    events = [{k: _jsonable(r[k]) for k in FIELD_NAMES if r.get(k) is not None} for r in batch.events]
    for e in events:  # attributes and raw are JSON text: store them parsed, so diffs read well
        for k in ("attributes", "raw"):
            if k in e:
                e[k] = json.loads(e[k])
    dead = [{k: _jsonable(v) for k, v in sorted(r.items()) if k in ("origin", "format_hint", "reason")}
            for r in batch.dead]
    return {"read": batch.read, "events": events, "dead_letter": dead}


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_golden(path: Path) -> None:
    batch = normalize(_lines(path), now=NOW)
    got = _golden_of(batch)
    golden = path.with_suffix(".golden.json")
    if UPDATE or not golden.exists():
        golden.write_text(json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        if not UPDATE:
            pytest.fail(f"golden file written, review it: {golden}")
    assert got == json.loads(golden.read_text())
    et, _ = to_tables(batch)
    assert et.num_rows == len(got["events"])  # every row the parser made fits the Arrow schema
