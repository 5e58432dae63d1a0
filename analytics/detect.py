"""Run the detections incrementally over the lake; raise each alert once.

Per detection, ``<lake>/detect_state`` records the event-time window already covered. A run covers
``[watermark - lookback, latest event]`` (or ``--since/--until``): the lookback re-reads recent time
so events that arrive late are still seen. Findings have stable ids (detection + identifying
evidence) and alerts are merged on ``alert_id``, so re-covering a window, or a crash between the
alert commit and the state commit, never raises an alert twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from analytics import DETECT_MEMORY_LIMIT
from analytics import alerts as al
from analytics.detectors import BY_ID, REGISTRY
from analytics.detectors.base import Context, Finding, iso, set_run
from analytics.lake import share, time_range
from ingest import faults
from ingest.errors import ConfigError

DEFAULT_LOOKBACK = dt.timedelta(hours=6)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class DetectSettings:
    """What one detect run does."""

    lake_dir: Path
    rules: tuple[str, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    full: bool = False
    lookback: dt.timedelta = DEFAULT_LOOKBACK
    overrides: Mapping[str, float] = field(default_factory=dict)
    suppressions: Path | None = None
    memory_limit: str = DETECT_MEMORY_LIMIT
    with_paths: bool = True


@dataclass(frozen=True)
class DetectResult:
    new_alerts: tuple[al.Alert, ...]
    findings: int
    suppressed: tuple[tuple[str, str], ...]  # (alert_id, reason)
    windows: Mapping[str, tuple[dt.datetime, dt.datetime]]

    def to_json(self) -> dict[str, Any]:
        return {"new_alerts": len(self.new_alerts), "alerts": [a.to_json() for a in self.new_alerts],
                "findings": self.findings,
                "suppressed": [{"alert_id": a, "reason": r} for a, r in self.suppressed],
                "windows": {k: [iso(s), iso(u)] for k, (s, u) in self.windows.items()}}


def connect(lake_dir: str | Path, memory_limit: str = DETECT_MEMORY_LIMIT) -> duckdb.DuckDBPyConnection:
    """The analytics connection (``analytics.lake``): detectors read its views."""
    from analytics.lake import connect as lake_connect

    return lake_connect(lake_dir, memory_limit)


def share_for(con: duckdb.DuckDBPyConnection, mods: Sequence[Any]) -> None:
    """Materialize up front each shared intermediate one of ``mods`` declares in ``SHARED_READS``
    (``analytics.lake.share``; tests/test_detector_conventions.py checks that each module declares the shared
    views its SQL reads).

    It is computed once either way; computed first, every detector's reads of it, including the lookups of a few
    credentials' rows (``int_credential_issued_for``), come from memory whatever the order the detectors run in.
    A run whose detectors declare none does not compute it; a module that declares none still shares lazily, on
    its first query that names one (``Context.rows``).
    """
    set_run(con, (m.DETECTION.id for m in mods))  # the shared passes of analytics/detectors/_*.py ask who reads them
    names = {n for m in mods for n in getattr(m, "SHARED_READS", ())}
    if names:
        share(con, " ".join(sorted(names)))


def _event_range(con: duckdb.DuckDBPyConnection) -> tuple[dt.datetime | None, dt.datetime | None]:
    return time_range(con)


def watermarks(lake_dir: str | Path) -> dict[str, dt.datetime]:
    """Per detection (at its current version), the end of the covered event-time window."""
    t = al.table(Path(lake_dir) / "detect_state")
    if t is None:
        return {}
    out: dict[str, dt.datetime] = {}
    for r in t.to_pyarrow_table(columns=["detection", "detector_version", "until"]).to_pylist():
        m = BY_ID.get(r["detection"])
        if m is None or r["detector_version"] != m.DETECTION.version:
            continue  # a new detector version re-covers everything
        if r["detection"] not in out or r["until"] > out[r["detection"]]:
            out[r["detection"]] = r["until"]
    return out


def _decision_path(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any]:
    try:
        from analytics.paths import decision_path

        return decision_path(con, event_id).to_json()
    except Exception as e:  # noqa: BLE001 - a missing path must not lose the alert; record why
        return {"event_id": event_id, "links": [], "missing": [f"decision path unavailable: {e}"]}


def _decision_paths(con: duckdb.DuckDBPyConnection, event_ids: Sequence[str],
                    near: Sequence[tuple[dt.datetime, dt.datetime]] = ()) -> dict[str, dict[str, Any]]:
    """The decision path (JSON) of each event, all built together by one ``decision_paths`` call (``near``: the
    findings' first and last seen, where their key events lie: only those days are read for them).

    Never raises: an event the batch did not build (unknown id, or the whole batch failed) is retried alone,
    so a failure costs only the paths it affects and each alert records why its path is unavailable.
    """
    from analytics.paths import decision_paths

    try:
        built = {e: p.to_json() for e, p in decision_paths(con, event_ids, near).items()}
    except Exception:  # noqa: BLE001 - retried one by one below, where each failure is recorded
        built = {}
    return {e: built[e] if e in built else _decision_path(con, e) for e in event_ids}


def run(settings: DetectSettings) -> DetectResult:
    """One incremental detect run over the lake; returns the alerts it newly raised."""
    from analytics.detectors.suppress import load_suppressions

    lake_dir = Path(settings.lake_dir)
    if not lake_dir.is_dir():
        raise ConfigError(f"no lake at {lake_dir}: pass --lake DIR (ingest first with `decisionpath ingest file ...`)")
    unknown = [r for r in settings.rules if r not in BY_ID]
    if unknown:
        raise ConfigError(f"unknown detection id(s): {', '.join(unknown)}; known: {', '.join(sorted(BY_ID))}")
    mods = [BY_ID[r] for r in settings.rules] if settings.rules else list(REGISTRY)
    rules = load_suppressions(settings.suppressions, lake_dir)
    con = connect(lake_dir, settings.memory_limit)
    lo, hi = _event_range(con)
    marks = {} if settings.full else watermarks(lake_dir)
    run_id = uuid.uuid4().hex[:16]
    now = dt.datetime.now(dt.UTC)
    found: list[tuple[Any, Finding]] = []
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    if lo is None or hi is None:
        return DetectResult((), 0, (), {})
    share_for(con, mods)
    for m in mods:
        det = m.DETECTION
        until = settings.until or hi
        if settings.since is not None:
            since = settings.since
        elif det.id in marks:
            since = max(lo, marks[det.id] - settings.lookback)
        else:
            since = lo
        windows[det.id] = (since, until)
        ctx = Context(con, since, until, settings.overrides)
        for f in m.detect(ctx):
            found.append((m, f))
    by_id: dict[str, tuple[Any, Finding]] = {}
    for m, f in found:
        by_id.setdefault(f.alert_id, (m, f))
    suppressed: list[tuple[str, str]] = []
    keep: list[tuple[Any, Finding]] = []
    for aid, (m, f) in by_id.items():
        reason = rules.match(f)
        if reason:
            suppressed.append((aid, reason))
        else:
            keep.append((m, f))
    have = al.existing_ids(lake_dir, [f.alert_id for _, f in keep])
    fresh = [(m, f) for m, f in keep if f.alert_id not in have]
    paths = _decision_paths(con, list(dict.fromkeys(f.key_event_id for _, f in fresh)),
                            [(f.first_seen, f.last_seen) for _, f in fresh]) if settings.with_paths else {}
    todo = [
        al.Alert.from_finding(
            f, m.DETECTION.title, m.DETECTION.severity, m.DETECTION.version, paths.get(f.key_event_id), run_id, now)
        for m, f in fresh
    ]
    todo.sort(key=lambda a: (a.first_seen, a.detection, a.alert_id))
    new = al.write_alerts(lake_dir, todo)
    faults.point("detect_after_alerts_write")  # crash-matrix tests: alerts written, state not advanced
    new_by_det: dict[str, int] = {}
    for a in new:
        new_by_det[a.detection] = new_by_det.get(a.detection, 0) + 1
    fcount: dict[str, int] = {}
    for m, _f in found:
        fcount[m.DETECTION.id] = fcount.get(m.DETECTION.id, 0) + 1
    al.append(lake_dir / "detect_state", [
        {"detection": d, "detector_version": BY_ID[d].DETECTION.version, "since": s, "until": u, "run_id": run_id,
         "ran_at": now, "findings": fcount.get(d, 0), "new_alerts": new_by_det.get(d, 0)}
        for d, (s, u) in windows.items()
    ], al.STATE_SCHEMA)
    return DetectResult(tuple(new), len(by_id), tuple(suppressed), windows)


def _instant(v: str | None, what: str) -> dt.datetime | None:
    if not v:
        return None
    from analytics.timeparse import parse_instant

    return parse_instant(v, what)


def settings_from_args(args: argparse.Namespace) -> DetectSettings:
    lb = getattr(args, "lookback", None)
    return DetectSettings(
        lake_dir=Path(args.lake), rules=tuple(getattr(args, "rule", None) or ()),
        since=_instant(getattr(args, "since", None), "--since"), until=_instant(getattr(args, "until", None), "--until"),
        full=bool(getattr(args, "full", False)),
        lookback=parse_duration(lb) if lb else DEFAULT_LOOKBACK,
        suppressions=Path(args.suppressions) if getattr(args, "suppressions", None) else None,
        memory_limit=getattr(args, "memory_limit", DETECT_MEMORY_LIMIT),
    )


def parse_duration(s: str) -> dt.timedelta:
    """``30s``, ``5m``, ``1h``, ``2d`` → timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    s = s.strip()
    try:
        n = float(s[:-1]) if s[-1] in units else float(s)
    except (ValueError, IndexError) as e:
        raise ConfigError(f"not a duration: {s!r} (use 30s, 5m, 1h, 2d)") from e
    if n <= 0:
        raise ConfigError(f"duration must be positive: {s!r}")
    return dt.timedelta(seconds=n * units.get(s[-1], 1))


def emit(result: DetectResult, args: argparse.Namespace) -> None:
    from analytics.sinks import send

    for spec in getattr(args, "sink", None) or []:
        send(spec, result.new_alerts)
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(result.to_json(), default=str).decode() + "\n")
    else:
        for a in result.new_alerts:
            print(f"{a.severity:8} {a.detection:8} {a.alert_id}  {', '.join(a.identities[:3])}")
            print(f"         {a.explanation}")
        print(f"{len(result.new_alerts)} new alert(s), {result.findings} finding(s), "
              f"{len(result.suppressed)} suppressed", file=sys.stderr)


def run_detect_cli(args: argparse.Namespace) -> int:
    res = run(settings_from_args(args))
    emit(res, args)
    return 0


def detect_findings(con: duckdb.DuckDBPyConnection, rules: Sequence[str] = (),
                    overrides: Mapping[str, float] | None = None) -> list[Finding]:
    """Pure: every finding over all of ``events`` on a connection (no lake writes but the snapshot's shared
    caches, ``analytics.shared_cache``)."""
    lo, hi = _event_range(con)
    if lo is None or hi is None:
        return []
    out: list[Finding] = []
    mods = [BY_ID[r] for r in rules] if rules else list(REGISTRY)
    share_for(con, mods)
    for m in mods:
        out.extend(m.detect(Context(con, lo, hi, dict(overrides or {}))))
    return out
