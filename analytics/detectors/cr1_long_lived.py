"""DP-CR-1: an agent credential whose lifetime exceeds policy."""

from __future__ import annotations

from typing import Any

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-CR-1", title="Long-lived credential", severity="medium",
    description="A credential issued to an agent (token, exchanged token, refreshed token, SVID) lives longer than "
                "the agent TTL policy (expiry minus issuance). Agents should hold short-lived, per-task credentials; "
                "a long lifetime widens the window for theft and reuse.",
    nhi=("NHI7",), asi=("ASI03",), attack=("T1528", "T1550.001"), csf=("PR.AA-01",), maestro=("L4",),
    ai_rmf=("GOVERN 1.4",),
    thresholds=(Threshold("max_lifetime_s", 3600, "s", "agent credential TTL policy"),),
)

_SQL = """
SELECT event_id, time, actor_id, credential_id, credential_type, credential_expires_at AS exp,
       epoch(credential_expires_at) - epoch(time) AS life
FROM events
WHERE activity IN ('token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted') AND actor_type = 'agent'
  AND credential_expires_at IS NOT NULL AND time BETWEEN $since AND $until
  AND epoch(credential_expires_at) - epoch(time) > $max
ORDER BY time, event_id
"""


def detect(ctx: Context) -> list[Finding]:
    mx = ctx.p(DETECTION, "max_lifetime_s")
    return [make(
        DETECTION, (r["credential_id"],), [r["actor_id"]], [r["time"]], [r["event_id"]], r["event_id"],
        f"{r['actor_id']} was issued {r['credential_type'] or 'a credential'} {r['credential_id']} valid for "
        f"{r['life'] / 3600:.1f} h (policy {mx / 3600:.1f} h for agents). Long-lived agent credentials widen the "
        "window for theft and reuse; issue per-task, short-lived ones.",
        links=[Link(r["event_id"], r["credential_id"], "issued", "credential_expires_at - time")],
        facts={"credential_id": r["credential_id"], "lifetime_s": f"{r['life']:.0f}"},
    ) for r in ctx.rows(_SQL, {**ctx.window(), "max": mx})]


def _tl(life: float) -> list[dict[str, Any]]:
    return [ev(0, "x:iss", "token.issued", category="credential", credential_id="lt", actor_id="agent/ops",
               actor_type="agent", credential_expires_at=life)]


EXAMPLES = (
    positive("8 h agent token", _tl(8 * 3600), ("lt",)),
    positive("1 s over the policy", _tl(3601), ("lt",)),
    benign("exactly the policy", _tl(3600)),
)
