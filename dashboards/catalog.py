"""The detection catalog as the pages show it: the ``analytics.detectors`` registry and its framework catalogs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from analytics.detectors import REGISTRY, base

FRAMEWORKS = {"nhi": "OWASP NHI Top 10", "asi": "OWASP Agentic Top 10", "attack": "MITRE ATT&CK",
              "csf": "NIST CSF 2.0"}
_CATALOGS: Mapping[str, Mapping[str, str]] = {"nhi": base.NHI, "asi": base.ASI, "attack": base.ATTACK,
                                               "csf": base.CSF}
# Time thresholds are reported in seconds whatever unit the detector declares.
_UNIT_S = {"s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class DetectionInfo:
    id: str
    title: str
    severity: str
    description: str
    refs: dict[str, tuple[str, ...]]
    thresholds: dict[str, float]


def detections() -> list[DetectionInfo]:
    """Every registered detection's header, sorted by id."""
    out = []
    for mod in REGISTRY:
        h = mod.DETECTION
        out.append(DetectionInfo(
            h.id, h.title, h.severity, h.description, {k: tuple(getattr(h, k)) for k in FRAMEWORKS},
            {t.name: float(t.default) * _UNIT_S.get(t.unit.lower(), 1.0) for t in h.thresholds}))
    return sorted(out, key=lambda d: d.id)


def framework_names(framework: str) -> dict[str, str]:
    """Item id → name for one framework."""
    return dict(_CATALOGS[framework])


def detection_threshold(det_id: str, name: str) -> float:
    """A detection's threshold default, in seconds for time thresholds."""
    for d in detections():
        if d.id == det_id:
            return d.thresholds[name]
    raise KeyError(det_id)
