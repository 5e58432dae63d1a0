"""The detection catalog as the dashboard sees it: the analytics.detectors registry, read defensively.

The registry's exact entry point may still change while colleagues build it; this module looks
for the documented shapes (Detection headers, or detector modules carrying ``DETECTION``) and
returns plain records, so the pages never depend on more than the header fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboards.context import optional

_ENTRY_POINTS = ("DETECTIONS", "REGISTRY", "DETECTORS", "all_detections", "detections", "registry", "all_detectors")
FRAMEWORKS = {"nhi": "OWASP NHI Top 10", "asi": "OWASP Agentic Top 10", "attack": "MITRE ATT&CK",
              "csf": "NIST CSF 2.0"}


# Time thresholds are reported in seconds whatever unit the detector declares.
_UNIT_S = {"s": 1.0, "seconds": 1.0, "second": 1.0, "min": 60.0, "minutes": 60.0, "m": 60.0,
           "h": 3600.0, "hours": 3600.0, "hour": 3600.0, "d": 86400.0, "days": 86400.0, "day": 86400.0}


@dataclass(frozen=True)
class DetectionInfo:
    id: str
    title: str
    severity: str
    description: str
    refs: dict[str, tuple[str, ...]]
    thresholds: dict[str, float]


def _header(obj: Any) -> Any:
    return getattr(obj, "DETECTION", None) or getattr(obj, "detection", None) or obj


def _entries() -> list[Any]:
    for modname in ("analytics.detectors.registry", "analytics.detectors"):
        mod = optional(modname)
        if mod is None:
            continue
        for name in _ENTRY_POINTS:
            val = getattr(mod, name, None)
            if val is None:
                continue
            if callable(val) and not isinstance(val, dict | list | tuple):
                try:
                    val = val()
                except TypeError:
                    continue
            items = list(val.values()) if isinstance(val, dict) else list(val)
            if items:
                return items
    return []


@st.cache_data(ttl=600, show_spinner=False)
def detections() -> list[DetectionInfo]:
    """Every registered detection's header, sorted by id (empty while the registry has not landed)."""
    out = []
    for item in _entries():
        h = _header(item)
        if not hasattr(h, "id"):
            continue
        refs = {k: tuple(getattr(h, k, ()) or ()) for k in FRAMEWORKS}
        thresholds = {t.name: float(t.default) * _UNIT_S.get(str(getattr(t, "unit", "")).lower(), 1.0)
                      for t in getattr(h, "thresholds", ()) or ()}
        out.append(DetectionInfo(str(h.id), str(getattr(h, "title", "")), str(getattr(h, "severity", "")),
                                 str(getattr(h, "description", "")), refs, thresholds))
    return sorted(out, key=lambda d: d.id)


def framework_names(framework: str) -> dict[str, str]:
    """Item id → name for one framework, from analytics.detectors.base catalogs."""
    base = optional("analytics.detectors.base")
    attr = {"nhi": "NHI", "asi": "ASI", "attack": "ATTACK", "csf": "CSF"}[framework]
    return dict(getattr(base, attr, {})) if base is not None else {}


def detection_threshold(det_id: str, names: tuple[str, ...], default: float) -> float:
    """A detection's threshold default (first of ``names`` it has), else ``default``."""
    for d in detections():
        if d.id == det_id:
            for n in names:
                if n in d.thresholds:
                    return d.thresholds[n]
            for n, v in d.thresholds.items():
                if "ttl" in n or "lifetime" in n:
                    return v
    return default
