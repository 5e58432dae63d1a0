"""DP-PC-2: agent A, denied, causes agent B to do it (same trace, B's span caused by A's)."""

from __future__ import annotations

from typing import Any

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

_SQL = """
WITH d AS MATERIALIZED (
  SELECT event_id, time, actor_id, tool, resource, trace_id FROM events
  WHERE activity = 'decision' AND decision = 'deny' AND tool IS NOT NULL AND trace_id IS NOT NULL
), a AS (
  SELECT event_id, time, actor_id, tool, resource, trace_id, span_id FROM events
  WHERE activity = 'decision' AND decision = 'allow' AND trace_id IN (SELECT trace_id FROM d)
), m AS MATERIALIZED (
  SELECT event_id, time, trace_id, span_id, parent_span_id, actor_id, outcome FROM events
  WHERE activity = 'tool.invoked' AND trace_id IN (SELECT trace_id FROM d)
)
SELECT d.event_id AS deny_id, d.time AS deny_time, d.actor_id AS a_actor, a.event_id AS allow_id, a.time AS allow_time,
       a.actor_id AS b_actor, d.tool, d.resource, d.trace_id, m.event_id AS call_id, m.parent_span_id,
       (SELECT arg_min(p.event_id, p.time) FROM m p WHERE p.trace_id = d.trace_id AND p.span_id = m.parent_span_id)
         AS cause_id
FROM d JOIN a ON a.tool = d.tool AND a.resource IS NOT DISTINCT FROM d.resource AND a.trace_id = d.trace_id
        AND a.actor_id <> d.actor_id AND a.time > d.time
        AND a.time <= d.time + to_microseconds(CAST($window * 1e6 AS BIGINT))
JOIN m ON m.trace_id = a.trace_id AND m.span_id = a.span_id
WHERE EXISTS (SELECT 1 FROM m p WHERE p.trace_id = d.trace_id AND p.actor_id = d.actor_id
                                  AND p.span_id = m.parent_span_id)
  AND a.time BETWEEN $since AND $until
ORDER BY d.time, d.event_id, a.event_id, m.event_id
"""


def detect(ctx: Context) -> list[Finding]:
    out = []
    for r in ctx.rows(_SQL, {**ctx.window(), "window": ctx.p(DETECTION, "window_s")}):
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
