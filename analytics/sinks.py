"""Where new alerts go besides the lake: ``jsonl:PATH``, ``ocsf:PATH``, ``kafka:BOOTSTRAP/TOPIC``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from analytics.alerts import Alert
from ingest.errors import ConfigError

_SEVERITY_ID = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
OCSF_VERSION = "1.3.0"


def _ms(a: Any) -> int:
    return int(a.timestamp() * 1000)


def to_ocsf(a: Alert) -> dict[str, Any]:
    """An OCSF 1.x Detection Finding (class_uid 2004, category Findings) for one alert."""
    activity_id = 1  # Create
    return {
        "class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2, "category_name": "Findings",
        "activity_id": activity_id, "activity_name": "Create", "type_uid": 2004 * 100 + activity_id,
        "type_name": "Detection Finding: Create",
        "time": _ms(a.raised_at), "severity_id": _SEVERITY_ID.get(a.severity, 0), "severity": a.severity.capitalize(),
        "status_id": 1, "status": "New", "message": a.explanation,
        "metadata": {"version": OCSF_VERSION, "uid": a.alert_id,
                     "product": {"name": "decisionpath", "vendor_name": "decisionpath"},
                     "original_time": a.first_seen.isoformat()},
        "finding_info": {
            "uid": a.alert_id, "title": a.title, "desc": a.explanation,
            "first_seen_time": _ms(a.first_seen), "last_seen_time": _ms(a.last_seen),
            "analytic": {"uid": a.detection, "name": a.title, "type_id": 1, "type": "Rule",
                         "version": str(a.detector_version)},
            "related_events": [{"uid": e} for e in a.event_ids],
            "types": [a.detection],
        },
        "evidences": [{"data": {"key_event_id": a.key_event_id, **a.evidence}}],
        "resources": [{"uid": i, "type": "identity"} for i in a.identities],
        "risk_score": int(round(a.score * 100)),
        "unmapped": {"identities": list(a.identities)},
    }


def _append_lines(path: Path, docs: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        for d in docs:
            f.write(orjson.dumps(d, default=str) + b"\n")


def send(spec: str, alerts: Sequence[Alert]) -> None:
    """Send alerts to one sink given as ``kind:target``."""
    kind, _, target = spec.partition(":")
    if not target:
        raise ConfigError(f"sink {spec!r}: expected jsonl:PATH, ocsf:PATH or kafka:BOOTSTRAP/TOPIC")
    if kind == "jsonl":
        _append_lines(Path(target), [a.to_json() for a in alerts])
    elif kind == "ocsf":
        _append_lines(Path(target), [to_ocsf(a) for a in alerts])
    elif kind == "kafka":
        bootstrap, _, topic = target.rpartition("/")
        if not bootstrap or not topic:
            raise ConfigError(f"sink {spec!r}: expected kafka:HOST:PORT/TOPIC")
        if not alerts:
            return
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", retries=5)
        try:
            for a in alerts:
                # key = alert id: a consumer dedups re-sent alerts by key
                p.send(topic, key=a.alert_id.encode(), value=orjson.dumps(a.to_json(), default=str))
            p.flush(timeout=30)
        finally:
            p.close()
    else:
        raise ConfigError(f"unknown sink kind {kind!r} in {spec!r} (jsonl, ocsf, kafka)")


