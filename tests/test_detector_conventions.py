"""Conventions every detector module must follow (registered, described, mapped, labelled)."""

from __future__ import annotations

import importlib
import pkgutil

import analytics.detectors as pkg
from analytics.detectors import BY_ID, REGISTRY
from analytics.detectors.base import AI_RMF_RE, ASI, ATTACK, CSF, ID_RE, MAESTRO, NHI, SEVERITIES, Detection

HELPERS = {"base", "views", "suppress"}
CATALOG = {"DP-TR-1", "DP-TR-2", "DP-TR-3", "DP-TR-4", "DP-PC-1", "DP-PC-2", "DP-PC-3", "DP-DG-1", "DP-DG-2",
           "DP-AZ-1", "DP-AZ-2", "DP-CR-1", "DP-CR-2", "DP-ID-1"}


def _modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_") and m.name not in HELPERS]


def test_every_module_is_registered() -> None:
    registered = {m.__name__.rpartition(".")[2] for m in REGISTRY}
    assert set(_modules()) == registered


def test_catalog_is_complete_and_ids_unique() -> None:
    assert len(BY_ID) == len(REGISTRY)
    assert set(BY_ID) == CATALOG


def test_headers() -> None:
    for name in _modules():
        m = importlib.import_module(f"analytics.detectors.{name}")
        d = m.DETECTION
        assert isinstance(d, Detection), name
        assert ID_RE.match(d.id) and d.title and len(d.description) > 80, d.id
        assert d.severity in SEVERITIES, d.id
        assert d.nhi and set(d.nhi) <= set(NHI), d.id
        assert d.asi and set(d.asi) <= set(ASI), d.id
        assert d.attack and set(d.attack) <= set(ATTACK), d.id
        assert d.csf and set(d.csf) <= set(CSF), d.id
        assert set(d.maestro) <= set(MAESTRO), d.id
        assert all(AI_RMF_RE.match(x) for x in d.ai_rmf), d.id
        assert d.match in ("event", "identity") and d.version >= 1, d.id
        assert len({t.name for t in d.thresholds}) == len(d.thresholds), d.id
        assert callable(m.detect), d.id


def test_labelled_events() -> None:
    for m in REGISTRY:
        exs = m.EXAMPLES
        assert any(e.positive for e in exs), f"{m.DETECTION.id} has no positive example"
        assert any(not e.positive for e in exs), f"{m.DETECTION.id} has no benign example"
        for e in exs:
            assert e.events and all("t" in x and "event_id" in x and "activity" in x for x in e.events)
            for k in e.overrides:
                base = k.rpartition(".")[2]
                m.DETECTION.default(base)  # names a real threshold


def test_unknown_framework_id_is_caught() -> None:
    assert "NHI11" not in NHI and "ASI11" not in ASI and "T9999" not in ATTACK and "PR.XX-01" not in CSF


def _sql_strings(m: object) -> list[str]:
    """Every SQL text of a module: its string constants, and those inside its functions (inline lookups)."""
    import types

    out: list[str] = []

    def walk(code: types.CodeType) -> None:
        for c in code.co_consts:
            if isinstance(c, str):
                out.append(c)
            elif isinstance(c, types.CodeType):
                walk(c)

    for v in vars(m).values():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, types.FunctionType) and v.__module__ == m.__name__:  # type: ignore[attr-defined]
            walk(v.__code__)
    return [s for s in out if "SELECT" in s or "FROM" in s]


def test_shared_reads_are_declared() -> None:
    """`share_for` computes up front what `SHARED_READS` names: each module declares exactly the shared views its
    SQL reads (DP-TR-2 reads `shared_int_credential_issued` only when another detector has shared it, and
    declares none)."""
    import re

    from analytics.lake import SHARED

    for name in _modules():
        m = importlib.import_module(f"analytics.detectors.{name}")
        used = {n for n in SHARED for s in _sql_strings(m) if re.search(rf"\b{n}\b", s)}
        declared = set(getattr(m, "SHARED_READS", ()))
        assert declared <= set(SHARED), name
        assert declared == used, (name, used, declared)
