"""DP-AZ-1: a tool call with no authorization decision on its path."""

from __future__ import annotations

from typing import Any

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-AZ-1", title="Unmediated action", severity="high",
    description="A tool call has no policy decision on its path: none with the same trace and span, and none for "
                "the same credential within the window either side. Something reached a tool around the policy "
                "enforcement point. (Cloud API calls are decided by the cloud's own IAM and are not checked here.)",
    nhi=("NHI5",), asi=("ASI02", "ASI03"), attack=("T1078",), csf=("PR.AA-05", "PR.PS-04", "DE.CM-09"),
    maestro=("L3", "L6"), ai_rmf=("GOVERN 1.4", "MEASURE 2.7"),
    thresholds=(Threshold("window_s", 5, "s", "how far a decision may be from the call it mediates"),),
)

# "No decision by trace/span, and none by credential", as two anti-joins on equality keys with the time window
# as a residual condition: DuckDB builds one hash table per join. The second one only holds the decisions of the
# credentials the first left (correlated NOT EXISTS subqueries grouped every call's (trace, span, time) first:
# 3.0-3.2 s for this query at 10M events against 1.3-1.4 s, same rows).
_SQL = """
WITH m AS (
    SELECT event_id, time, actor_id, tool, resource, credential_id, src_workload, outcome, trace_id, span_id
    FROM events WHERE activity = 'tool.invoked' AND time BETWEEN $since AND $until
), d AS (  -- a decision can mediate a call of the window only within ±w of it (an incremental run hashes few)
    SELECT trace_id, span_id, credential_id, time FROM events
    WHERE activity = 'decision'
      AND time BETWEEN $since - to_microseconds(CAST($w * 1e6 AS BIGINT))
                   AND $until + to_microseconds(CAST($w * 1e6 AS BIGINT))
), by_span AS MATERIALIZED (
    SELECT m.* FROM m ANTI JOIN d ON d.trace_id = m.trace_id AND d.span_id = m.span_id
        AND d.time BETWEEN m.time - to_microseconds(CAST($w * 1e6 AS BIGINT))
                       AND m.time + to_microseconds(CAST($w * 1e6 AS BIGINT))
)
SELECT m.event_id, m.time, m.actor_id, m.tool, m.resource, m.credential_id, m.src_workload, m.outcome
FROM by_span m ANTI JOIN (SELECT * FROM d WHERE credential_id IN (SELECT credential_id FROM by_span)) d
    ON d.credential_id = m.credential_id
    AND d.time BETWEEN m.time - to_microseconds(CAST($w * 1e6 AS BIGINT))
                   AND m.time + to_microseconds(CAST($w * 1e6 AS BIGINT))
ORDER BY m.time, m.event_id
"""


def detect(ctx: Context) -> list[Finding]:
    w = ctx.p(DETECTION, "window_s")
    return [make(
        DETECTION, (r["event_id"],), [r["actor_id"]], [r["time"]], [r["event_id"]], r["event_id"],
        f"{r['actor_id']} called {r['tool']} on {r['resource']} (outcome {r['outcome']}) and no policy decision "
        f"exists for it: none on its trace/span and none for credential {r['credential_id']} within {w:.0f} s. "
        "The call bypassed the policy enforcement point.",
        links=[Link(r["event_id"], "-", "no_decision", f"no decision by trace/span or credential within ±{w:.0f} s")],
        facts={"tool": r["tool"], "resource": r["resource"]},
    ) for r in ctx.rows(_SQL, {**ctx.window(), "w": w})]


def _tl(decision_lag: float | None) -> list[dict[str, Any]]:
    evs = [ev(40, "x:call", "tool.invoked", category="tool_call", credential_id="j", actor_id="agent/r",
              tool="files.read", trace_id="t", span_id="s", outcome="success")]
    if decision_lag is not None:
        evs.append(ev(40 - decision_lag, "x:dec", "decision", category="authorization", credential_id="j",
                      actor_id="agent/r", decision="allow", trace_id="t", span_id="s"))
    return evs


def _by_credential(lag: float, credential: str | None = "j") -> list[dict[str, Any]]:
    """A call whose decision is on another trace and span: only the credential ties them."""
    call = _tl(None)[0] | {"credential_id": credential}
    return [call, ev(40 - lag, "x:dec", "decision", category="authorization", credential_id="j", actor_id="agent/r",
                     decision="allow", trace_id="t2", span_id="s2")]


EXAMPLES = (
    positive("no decision at all", _tl(None), ("x:call",)),
    benign("decision for the same credential 3 s later, on another trace", _by_credential(-3)),
    positive("decision for the same credential 6 s earlier, on another trace", _by_credential(6), ("x:call",)),
    positive("call without a credential, decision on another trace", _by_credential(1, None), ("x:call",)),
    positive("decision 1 s past the window", _tl(6), ("x:call",)),
    benign("decision 4.2 s before the call", _tl(4.2)),
    benign("decision exactly at the window edge", _tl(5)),
)
