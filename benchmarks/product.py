"""Thin adapters from the benchmark to the product's own entry points (no logic of their own)."""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


def detector_modules() -> dict[str, ModuleType]:
    """Detection id → module: the registry when there is one, else every module with DETECTION and detect."""
    reg = importlib.import_module("analytics.detectors")
    for name in ("REGISTRY", "DETECTORS", "CATALOG"):
        mods = getattr(reg, name, None)
        if mods:
            items = mods.values() if isinstance(mods, dict) else mods
            out = {}
            for m in items:
                mod = m if isinstance(m, ModuleType) else importlib.import_module(m.__module__)
                out[mod.DETECTION.id] = mod
            return dict(sorted(out.items()))
    out = {}
    for info in pkgutil.iter_modules(reg.__path__):
        if info.name.startswith("_") or info.name in ("base", "views", "registry"):
            continue
        mod = importlib.import_module(f"analytics.detectors.{info.name}")
        if hasattr(mod, "DETECTION") and hasattr(mod, "detect"):
            out[mod.DETECTION.id] = mod
    return dict(sorted(out.items()))


def lake_window(con: Any) -> tuple[dt.datetime, dt.datetime]:
    lo, hi = con.execute("SELECT min(time), max(time) FROM events").fetchone()
    if lo is None:
        now = dt.datetime.now(dt.UTC)
        return now, now
    return lo, hi


def run_detections(lake_dir: str | Path, rules: Sequence[str] | None = None) -> dict[str, set[tuple[str, ...]]]:
    """The product's detections over the whole lake, pure (no alerts written): id → set of finding keys."""
    try:
        from analytics.detect import connect as detect_connect
        from analytics.detect import detect_findings
    except ImportError:
        return _run_modules(lake_dir, rules)
    con = detect_connect(lake_dir)
    out: dict[str, set[tuple[str, ...]]] = {did: set() for did in (rules or detector_modules())}
    for f in detect_findings(con, tuple(rules or ())):
        out.setdefault(f.detection, set()).add(tuple(f.key))
    con.close()
    return out


def run_detect_full(lake_dir: str | Path) -> dict[str, Any]:
    """``decisionpath detect --full`` as the SOC runs it: alerts (with decision paths) written to the lake.

    Alerts and detect state of a previous run are removed first, so every run does the same work.
    """
    import shutil
    import time

    from analytics.detect import DetectSettings, run

    for sub in ("alerts", "detect_state"):
        shutil.rmtree(Path(lake_dir) / sub, ignore_errors=True)
    t0 = time.perf_counter()
    res = run(DetectSettings(lake_dir=Path(lake_dir), full=True))
    return {"seconds": time.perf_counter() - t0, "new_alerts": len(res.new_alerts), "findings": res.findings}


def _run_modules(lake_dir: str | Path, rules: Sequence[str] | None = None) -> dict[str, set[tuple[str, ...]]]:
    from analytics.detectors.base import Context
    from analytics.lake import connect

    con = connect(lake_dir)
    try:
        views = importlib.import_module("analytics.detectors.views")
        views.install(con)
    except ModuleNotFoundError:
        pass
    since, until = lake_window(con)
    ctx = Context(con, since, until)
    out: dict[str, set[tuple[str, ...]]] = {}
    for did, mod in detector_modules().items():
        if rules and did not in rules:
            continue
        out[did] = {tuple(f.key) for f in mod.detect(ctx)}
    return out
