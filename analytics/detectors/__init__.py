"""The detector registry: one line per detection module (checked by tests/test_detector_conventions.py)."""

from __future__ import annotations

from types import ModuleType

from analytics.detectors import (
    az1_unmediated,
    az2_denied_elsewhere,
    cr1_long_lived,
    cr2_stale_secret,
    dg1_delegation_boundary,
    dg2_agent_as_human,
    id1_shared_identity,
    pc1_scope_escalation,
    pc2_confused_deputy,
    pc3_role_chain,
    tr1_token_origins,
    tr2_after_expiry,
    tr3_after_revocation,
    tr4_other_task,
)

REGISTRY: tuple[ModuleType, ...] = (
    tr1_token_origins,
    tr2_after_expiry,
    tr3_after_revocation,
    tr4_other_task,
    pc1_scope_escalation,
    pc2_confused_deputy,
    pc3_role_chain,
    dg1_delegation_boundary,
    dg2_agent_as_human,
    az1_unmediated,
    az2_denied_elsewhere,
    cr1_long_lived,
    cr2_stale_secret,
    id1_shared_identity,
)
BY_ID: dict[str, ModuleType] = {m.DETECTION.id: m for m in REGISTRY}
