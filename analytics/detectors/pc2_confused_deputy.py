"""DP-PC-2: agent A, denied, causes agent B to do it (same trace, B's span caused by A's)."""

from __future__ import annotations

from typing import Any

from analytics.detectors import _denials
from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-PC-2", title="Privilege chaining: confused deputy", severity="critical",
    description="Agent A is denied a tool on a resource; within the window another identity B is allowed the same "
                "tool on the same resource in the same trace, and B's call was caused by A (its parent span is one "
                "of A's spans). A used B as a deputy to do what A was refused.",
    nhi=("NHI5",), asi=("ASI03", "ASI07", "ASI02"), attack=("T1199", "T1134"), csf=("PR.AA-05", "DE.AE-02", "DE.AE-03"),
    maestro=("L3", "L7"), ai_rmf=("MEASURE 2.7",),
    thresholds=(Threshold("window_s", 600, "s", "how long after the denial B's success counts"),),
)

# The pairs of a denial and a later allow, and the tool calls of their traces, are shared with DP-AZ-2
# (`_denials`); here the pairs on the denial's own trace, within this detection's window.
_SQL = """
SELECT p.deny_id, p.deny_time, p.a_actor, p.allow_id, p.allow_time, p.b_actor, p.tool, p.resource,
       p.d_trace AS trace_id, m.event_id AS call_id, m.parent_span_id,
       (SELECT arg_min(c.event_id, (c.time, c.event_id)) FROM {calls} c
        WHERE c.trace_id = p.d_trace AND c.span_id = m.parent_span_id)
         AS cause_id
FROM {pairs} p JOIN {calls} m ON m.trace_id = p.a_trace AND m.span_id = p.a_span
WHERE p.d_trace IS NOT NULL AND p.a_trace = p.d_trace
  AND p.allow_time <= p.deny_time + to_microseconds(CAST($window * 1e6 AS BIGINT))
  AND EXISTS (SELECT 1 FROM {calls} c WHERE c.trace_id = p.d_trace AND c.actor_id = p.a_actor
                                        AND c.span_id = m.parent_span_id)
  AND p.allow_time BETWEEN $since AND $until
ORDER BY p.deny_time, p.deny_id, p.allow_id, m.event_id
"""


def detect(ctx: Context) -> list[Finding]:
    out = []
    pairs, calls = _denials.denial_pairs(ctx)
    for r in ctx.rows(_SQL.format(pairs=pairs, calls=calls), {**ctx.window(), "window": ctx.p(DETECTION, "window_s")}):
        gap = (r["allow_time"] - r["deny_time"]).total_seconds()
        out.append(make(
            DETECTION, (r["deny_id"], r["allow_id"]), [r["a_actor"], r["b_actor"]], [r["deny_time"], r["allow_time"]],
            [r["deny_id"], r["cause_id"], r["allow_id"], r["call_id"]], r["allow_id"],
            f"{r['a_actor']} was denied {r['tool']} on {r['resource']}; {gap:.0f} s later, in the same trace, "
            f"{r['b_actor']} was allowed the same tool on the same resource in a call caused by {r['a_actor']} "
            f"(parent span {r['parent_span_id']}). The denied agent obtained through a deputy what policy refused it.",
            links=[Link(r["deny_id"], r["cause_id"] or r["parent_span_id"], "followed_by", "same trace, A's span"),
                   Link(r["cause_id"] or r["parent_span_id"], r["call_id"], "caused", "parent_span_id"),
                   Link(r["allow_id"], r["call_id"], "decided", "trace_id + span_id")],
            facts={"tool": r["tool"], "resource": r["resource"], "trace_id": r["trace_id"]},
        ))
    return out


def _tl(b_at: float, parent: str) -> list[dict[str, Any]]:
    common = {"tool": "billing.refund", "resource": "billing/acct-1", "trace_id": "tr1"}
    return [
        ev(10, "x:deny", "decision", category="authorization", actor_id="agent/a", decision="deny", span_id="s1",
           **common),
        ev(10.01, "x:denycall", "tool.invoked", category="tool_call", actor_id="agent/a", span_id="s1", **common),
        ev(180, "x:dlg", "tool.invoked", category="tool_call", actor_id="agent/a", span_id="s2", trace_id="tr1",
           tool="agents.delegate"),
        ev(b_at, "x:allow", "decision", category="authorization", actor_id="agent/b", decision="allow", span_id="s3",
           **common),
        ev(b_at + 0.01, "x:call", "tool.invoked", category="tool_call", actor_id="agent/b", span_id="s3",
           parent_span_id=parent, outcome="success", **common),
    ]


EXAMPLES = (
    positive("deputy allowed 3 min after the denial", _tl(183, "s2"), ("x:deny", "x:allow")),
    positive("deputy exactly at the window edge", _tl(610, "s2"), ("x:deny", "x:allow")),
    benign("deputy 1 s past the window", _tl(611, "s2")),
    benign("same trace but not caused by A", _tl(183, "s-other")),
)
