"""DP-AZ-2: a denied request succeeds soon after through another identity on an unrelated path."""

from __future__ import annotations

from typing import Any

from analytics.detectors import _denials
from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-AZ-2", title="Denied, then allowed elsewhere", severity="medium",
    description="An identity is denied a tool on a resource; within the window a different identity, on another "
                "trace (no causal link: that is DP-PC-2), is allowed the same tool on the same resource and the call "
                "succeeds. The refusal was routed around through a second identity or path.",
    nhi=("NHI5", "NHI9"), asi=("ASI03", "ASI10"), attack=("T1078",), csf=("PR.AA-05", "DE.AE-02", "DE.AE-03"),
    maestro=("L6",), ai_rmf=("MEASURE 2.7",),
    thresholds=(Threshold("window_s", 900, "s", "how long after the denial a success elsewhere counts"),),
)

# The pairs of a denial and a later allow, and the tool calls of their traces, are shared with DP-PC-2
# (`_denials`); here the pairs on another trace than the denial's, within this detection's window.
_SQL = """
WITH pairs AS (
  SELECT * FROM {pairs}
  WHERE resource IS NOT NULL AND a_trace IS DISTINCT FROM d_trace
    AND allow_time <= deny_time + to_microseconds(CAST($window * 1e6 AS BIGINT))
    AND allow_time BETWEEN $since AND $until
)
SELECT p.deny_id, p.deny_time, p.a_actor, p.tool, p.resource, p.allow_id, p.allow_time, p.b_actor,
       m.event_id AS call_id, dm.event_id AS deny_call_id
FROM pairs p
JOIN {calls} m ON m.trace_id = p.a_trace AND m.span_id = p.a_span AND m.outcome = 'success'
LEFT JOIN {calls} dm ON dm.trace_id = p.d_trace AND dm.span_id = p.d_span
ORDER BY p.deny_time, p.deny_id, p.allow_id, call_id, deny_call_id
"""


def detect(ctx: Context) -> list[Finding]:
    out = []
    pairs, calls = _denials.denial_pairs(ctx)
    for r in ctx.rows(_SQL.format(pairs=pairs, calls=calls), {**ctx.window(), "window": ctx.p(DETECTION, "window_s")}):
        gap = (r["allow_time"] - r["deny_time"]).total_seconds()
        out.append(make(
            DETECTION, (r["deny_id"], r["allow_id"]), [r["a_actor"], r["b_actor"]], [r["deny_time"], r["allow_time"]],
            [r["deny_id"], r["deny_call_id"], r["allow_id"], r["call_id"]], r["allow_id"],
            f"{r['a_actor']} was denied {r['tool']} on {r['resource']}; {gap:.0f} s later {r['b_actor']}, on an "
            "unrelated trace, was allowed the same tool on the same resource and the call succeeded. "
            "The denial was routed around through another identity.",
            links=[Link(r["deny_id"], r["allow_id"], "denied_then_allowed", "same tool + resource within window"),
                   Link(r["allow_id"], r["call_id"], "decided", "trace_id + span_id")],
            facts={"tool": r["tool"], "resource": r["resource"]},
        ))
    return out


def _tl(allow_at: float, same_trace: bool = False) -> list[dict[str, Any]]:
    c = {"tool": "db.query", "resource": "db/payroll-1"}
    return [
        ev(3, "x:deny", "decision", category="authorization", actor_id="agent/analyst", decision="deny",
           trace_id="t1", span_id="s1", **c),
        ev(allow_at, "x:allow", "decision", category="authorization", actor_id="svc-batch", decision="allow",
           trace_id="t1" if same_trace else "t2", span_id="s2", **c),
        ev(allow_at + 0.05, "x:call", "tool.invoked", category="tool_call", actor_id="svc-batch", outcome="success",
           trace_id="t1" if same_trace else "t2", span_id="s2", **c),
    ]


EXAMPLES = (
    positive("service account allowed 4 min later", _tl(243), ("x:deny", "x:allow")),
    positive("allowed exactly at the window edge", _tl(903), ("x:deny", "x:allow")),
    benign("allowed 1 s after the window", _tl(904)),
    benign("same trace (causal: PC-2's business)", _tl(243, same_trace=True)),
)
