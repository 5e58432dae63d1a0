"""Precision / recall of the detections against ground-truth labels, or against analysts' triage marks.

Matching rule (documented in docs/detections.md): an alert matches an incident when the detection ids
are equal and they share at least one event id; for detections whose header says ``match="identity"``
an alert also matches when it names one of the incident's identities and its [first_seen, last_seen]
overlaps the incident's time span (the min..max time of the incident's events in the lake).
Per detection: tp = positive incidents matched by at least one alert, fn = positive incidents matched by
none, fp = alerts that match no positive incident. precision = tp / (tp + fp), recall = tp / (tp + fn).
Benign look-alikes are reported apart: any alert of the look-alike's detection that matches it is a hit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from analytics import alerts as al
from analytics.detectors import BY_ID
from ingest.errors import ConfigError


@dataclass(frozen=True)
class Incident:
    incident_id: str
    detection: str
    benign: bool
    identities: frozenset[str]
    event_ids: frozenset[str]
    span: tuple[dt.datetime, dt.datetime] | None = None


def read_labels(path: str | Path) -> list[Incident]:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"labels file {p} does not exist (written by `decisionpath generate --out DIR`)")
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = orjson.loads(line)
            out.append(Incident(d["incident_id"], d["detection"], bool(d.get("benign", False)),
                                frozenset(d.get("identities") or ()), frozenset(d.get("event_ids") or ())))
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{p}:{n}: not a label line ({e})") from e
    return out


def _with_spans(lake_dir: Path, incs: list[Incident]) -> list[Incident]:
    from analytics.lake import connect

    ids = sorted({e for i in incs for e in i.event_ids})
    if not ids:
        return incs
    con = connect(lake_dir)
    times = dict(con.execute("SELECT event_id, time FROM events WHERE list_contains($ids, event_id)",
                             {"ids": ids}).fetchall())
    out = []
    for i in incs:
        ts = [times[e] for e in i.event_ids if e in times]
        out.append(Incident(i.incident_id, i.detection, i.benign, i.identities, i.event_ids,
                            (min(ts), max(ts)) if ts else None))
    return out


def matches(alert: dict[str, Any], inc: Incident) -> bool:
    """The documented matching rule."""
    if alert["detection"] != inc.detection:
        return False
    if inc.event_ids & set(alert["event_ids"] or ()):
        return True
    m = BY_ID.get(inc.detection)
    if m is not None and m.DETECTION.match == "identity" and inc.span is not None:
        return bool(inc.identities & set(alert["identities"] or ())) and \
            alert["first_seen"] <= inc.span[1] and alert["last_seen"] >= inc.span[0]
    return False


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    p = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}


def score(alerts: Sequence[dict[str, Any]], incidents: Sequence[Incident]) -> dict[str, Any]:
    """Per-detection and overall tp/fp/fn/precision/recall/f1, plus benign look-alike hits."""
    dets = sorted({i.detection for i in incidents} | {a["detection"] for a in alerts} | set(BY_ID))
    pos = [i for i in incidents if not i.benign]
    per: dict[str, dict[str, Any]] = {}
    T = F = N = 0
    for d in dets:
        ai = [a for a in alerts if a["detection"] == d]
        pi = [i for i in pos if i.detection == d]
        tp = sum(1 for i in pi if any(matches(a, i) for a in ai))
        fp = sum(1 for a in ai if not any(matches(a, i) for i in pi))
        fn = len(pi) - tp
        per[d] = _prf(tp, fp, fn)
        T, F, N = T + tp, F + fp, N + fn
    hits = [{"incident_id": i.incident_id, "detection": i.detection,
             "alert_ids": [a["alert_id"] for a in alerts if matches(a, i)]}
            for i in incidents if i.benign]
    return {"detections": per, "overall": _prf(T, F, N),
            "benign_lookalikes": {"total": len(hits), "hit": sum(1 for h in hits if h["alert_ids"]),
                                  "hits": [h for h in hits if h["alert_ids"]]}}


def score_triage(alerts: Sequence[dict[str, Any]], marks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Precision per detection against analysts' marks (true_positive vs false_positive/benign); open excluded."""
    per: dict[str, dict[str, Any]] = {}
    for d in sorted({a["detection"] for a in alerts}):
        vs = [marks.get(a["alert_id"], {}).get("verdict", "open") for a in alerts if a["detection"] == d]
        tp = vs.count("true_positive")
        fp = vs.count("false_positive") + vs.count("benign")
        per[d] = {"tp": tp, "fp": fp, "open": vs.count("open"),
                  "precision": round(tp / (tp + fp), 4) if tp + fp else None}
    tp = sum(v["tp"] for v in per.values())
    fp = sum(v["fp"] for v in per.values())
    return {"detections": per, "overall": {"tp": tp, "fp": fp, "open": sum(v["open"] for v in per.values()),
                                           "precision": round(tp / (tp + fp), 4) if tp + fp else None}}


def evaluate(lake_dir: str | Path, labels: str | Path | None = None, triage: bool = False) -> dict[str, Any]:
    """Evaluate the alerts stored in the lake (running a full detect first when none were ever run)."""
    lake_dir = Path(lake_dir)
    if al.table(lake_dir / "detect_state") is None:
        from analytics.detect import DetectSettings, run

        run(DetectSettings(lake_dir=lake_dir, with_paths=False))
    alerts = al.read_alerts(lake_dir).select(
        ["alert_id", "detection", "identities", "event_ids", "first_seen", "last_seen"]).to_pylist()
    if triage:
        from analytics.triage import latest_marks

        return score_triage(alerts, latest_marks(lake_dir))
    if labels is None:
        raise ConfigError("evaluate needs --labels PATH (or --triage)")
    return score(alerts, _with_spans(lake_dir, read_labels(labels)))


def run_evaluate_cli(args: argparse.Namespace) -> int:
    res = evaluate(args.lake, args.labels, bool(getattr(args, "triage", False)))
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(res, default=str).decode() + "\n")
        return 0
    third = "open" if getattr(args, "triage", False) else "fn"
    print(f"{'detection':10} {'tp':>4} {'fp':>4} {third:>4} {'precision':>10} {'recall':>8} {'f1':>6}")
    for d, v in {**res["detections"], "overall": res["overall"]}.items():
        print(f"{d:10} {v['tp']:>4} {v['fp']:>4} {v.get('fn', v.get('open', 0)):>4} {v['precision']!s:>10} "
              f"{v.get('recall', '')!s:>8} {v.get('f1', '')!s:>6}")
    if "benign_lookalikes" in res:
        b = res["benign_lookalikes"]
        print(f"benign look-alikes: {b['hit']} of {b['total']} raised an alert")
    return 0
