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
