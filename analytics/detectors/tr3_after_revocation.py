"""DP-TR-3: a credential used after it was revoked, beyond the propagation grace."""

from __future__ import annotations

from typing import Any

from analytics.detectors import _suspect_uses
from analytics.detectors._common import fmt, make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-TR-3", title="Token reuse: after revocation", severity="high",
    description="A credential is presented after it was revoked, later than the revocation propagation grace. "
                "Revocation at task end is the control that bounds a per-task token; a use after it means the "
                "token was kept and replayed, or a resource server does not honour revocation.",
    nhi=("NHI1", "NHI4"), asi=("ASI03",), attack=("T1550.001",), csf=("PR.AA-01", "PR.AA-03", "DE.CM-03"),
    maestro=("L4",), ai_rmf=("MANAGE 4.1",),
    thresholds=(Threshold("revocation_grace_s", 30, "s", "time a revocation takes to reach every relying party"),),
)
SHARED_READS = ("int_credential_issued", "int_credential_revoked")  # had first in a catalog run (share_for)

# The late uses first, against the revocations alone; the issuance (evidence, and a credential must have one)
# is joined to those few rows only, not to every use of the lake. The revocations are hashed (`build_right`), not
# the uses (10M events: 1.0-1.2 s instead of 1.45-1.7 s, same rows).
_SQL = """
WITH late AS MATERIALIZED (
    SELECT u.credential_id, u.event_id, u.time, u.actor_id, r.revoked_at, r.revoke_event_id
    FROM events u JOIN int_credential_revoked r USING (credential_id)
    WHERE u.category IN ('tool_call', 'authorization', 'api_activity')
      AND u.time BETWEEN $since AND $until
      AND u.time > r.revoked_at + to_microseconds(CAST($grace * 1e6 AS BIGINT))
)
SELECT l.credential_id, l.event_id, l.time, l.actor_id, l.revoked_at, l.revoke_event_id, c.issue_event_id,
       c.issue_target AS holder
FROM late l JOIN int_credential_issued c USING (credential_id)
ORDER BY l.credential_id, l.time, l.event_id
"""
# In a catalog run: the late uses among the shared suspect uses (`_suspect_uses`), the same rows.
_SHARED_SQL = """
SELECT credential_id, event_id, time, actor_id, revoked_at, revoke_event_id, issue_event_id, issue_target AS holder
FROM {view}
WHERE issued AND time BETWEEN $since AND $until
  AND time > revoked_at + to_microseconds(CAST($grace * 1e6 AS BIGINT))
ORDER BY credential_id, time, event_id
"""


def detect(ctx: Context) -> list[Finding]:
    grace = ctx.p(DETECTION, "revocation_grace_s")
    by: dict[str, list[dict[str, Any]]] = {}
    view = _suspect_uses.suspect_uses(ctx, grace)
    sql = _SQL if view is None else _SHARED_SQL.format(view=view)
    for r in ctx.rows(sql, {**ctx.window(), "grace": grace}, build_right=True):
        by.setdefault(r["credential_id"], []).append(r)
    out = []
    for cid, rs in by.items():
        rv = rs[0]["revoked_at"]
        late = (rs[0]["time"] - rv).total_seconds()
        out.append(make(
            DETECTION, (cid,), [*(r["actor_id"] for r in rs), rs[0]["holder"]], [rv, *(r["time"] for r in rs)],
            [rs[0]["issue_event_id"], rs[0]["revoke_event_id"], *(r["event_id"] for r in rs)], rs[0]["event_id"],
            f"Credential {cid} was revoked at {fmt(rv)} and used {len(rs)} time(s) afterwards, the first {late:.0f} s "
            f"after revocation (grace {grace:.0f} s). A revoked token must not work; this use means it was kept "
            "and replayed, or the resource server ignores revocation.",
            links=[Link(rs[0]["revoke_event_id"], r["event_id"], "used_after_revocation",
                        "credential_id; time > revoked_at + grace") for r in rs],
            facts={"credential_id": cid, "revoked_at": fmt(rv), "seconds_late": f"{late:.0f}"},
        ))
    return out


def _timeline(use_at: float) -> list[dict[str, Any]]:
    return [
        ev(0, "x:iss", "token.exchanged", category="credential", credential_id="jti-3", actor_id="agent/s",
           actor_type="agent", credential_expires_at=900),
        ev(60, "x:rev", "token.revoked", category="credential", credential_id="jti-3", actor_id="agent/s"),
        ev(use_at, "x:use", "decision", category="authorization", credential_id="jti-3", actor_id="agent/s",
           decision="allow"),
    ]


EXAMPLES = (
    positive("used 5 min after revocation", _timeline(360), ("jti-3",)),
    positive("used 1 s over the grace", _timeline(91), ("jti-3",)),
    benign("used exactly at the grace limit", _timeline(90)),
    benign("in-flight call 8 s after revocation", _timeline(68)),
)
