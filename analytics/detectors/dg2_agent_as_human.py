"""DP-DG-2: an agent workload presents a person's own credential, with no delegation."""

from __future__ import annotations

from typing import Any

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, benign, ev, positive

DETECTION = Detection(
    id="DP-DG-2", title="Agent as human", severity="high",
    description="A call whose subject is a person (`actor_type` human), with no on-behalf-of and no delegation "
                "chain, comes from an agent workload. The agent is impersonating the person with their own "
                "token instead of a delegated (RFC 8693) one, so every action looks like the person's.",
    nhi=("NHI10", "NHI9"), asi=("ASI03", "ASI09"), attack=("T1078", "T1550.001"), csf=("PR.AA-02", "PR.AA-03"),
    maestro=("L3",), ai_rmf=("GOVERN 1.4",),
)
SHARED_READS = ("int_credential_issued",)  # computed first in a catalog run (share_for)

# The person is the first call's actor (calls without a credential id, grouped under one key per workload, may
# name several people; `any_value` named any of them, so the text could differ between two runs of the same lake).
# The decisions are gathered per call before the calls are grouped: joined in the same GROUP BY, a call with two
# decision records (a policy enforcement point that logs a retry) was listed, and counted, twice. Only the calls of
# the keys whose calls span the window are kept before the decisions are looked up: an incremental run with none
# skips the scan of the decisions (10M events: 0.3 s).
_SQL = """
WITH every_call AS MATERIALIZED (
    SELECT event_id, time, actor_id, credential_id, src_workload, trace_id, span_id FROM events
    WHERE activity = 'tool.invoked' AND actor_type = 'human' AND contains(coalesce(src_workload, ''), '/agent/')
      AND on_behalf_of IS NULL AND len(coalesce(delegation_chain, [])) <= 1
), calls AS MATERIALIZED (
    SELECT c.* FROM every_call c SEMI JOIN (
        SELECT credential_id, src_workload FROM every_call GROUP BY ALL
        HAVING max(time) >= $since AND min(time) <= $until
    ) k ON c.credential_id IS NOT DISTINCT FROM k.credential_id AND c.src_workload IS NOT DISTINCT FROM k.src_workload
), dec AS (
    SELECT m.event_id, list(d.event_id ORDER BY d.event_id) AS decisions
    FROM events d JOIN calls m ON d.trace_id = m.trace_id AND d.span_id = m.span_id
    WHERE d.activity = 'decision'
    GROUP BY m.event_id
)
SELECT e.credential_id, e.src_workload, list(e.event_id ORDER BY e.time, e.event_id) AS ids,
       list(e.time ORDER BY e.time, e.event_id) AS times,
       arg_min(e.actor_id, (e.time, e.event_id)) AS person, any_value(c.issue_event_id) AS issue_id,
       list_sort(list_distinct(flatten(list(x.decisions) FILTER (WHERE x.decisions IS NOT NULL)))) AS decisions
FROM calls e LEFT JOIN int_credential_issued c USING (credential_id) LEFT JOIN dec x USING (event_id)
GROUP BY e.credential_id, e.src_workload
HAVING max(e.time) >= $since AND min(e.time) <= $until
ORDER BY e.credential_id, e.src_workload
"""


def detect(ctx: Context) -> list[Finding]:
    out = []
    # The few calls are hashed and every decision probes them: DuckDB's own choice hashed the 3.3M decisions of
    # the 10M lake (0.5 s of CPU in that join; the query peaked at 1.08 GB of DuckDB memory instead of 0.54).
    for r in ctx.rows(_SQL, ctx.window(), build_right=True):
        out.append(make(
            DETECTION, (r["credential_id"] or "-", r["src_workload"]), [r["src_workload"], r["person"]], r["times"],
            [r["issue_id"], *(r["decisions"] or []), *r["ids"]], r["ids"][0],
            f"Agent workload {r['src_workload']} presented {r['person']}'s own credential {r['credential_id']} "
            f"in {len(r['ids'])} call(s), with no delegation. An agent must act with its own or a delegated token; "
            "using a person's token hides the agent and gives it all of the person's rights.",
            links=[Link(r["credential_id"] or "?", i, "presented_by_agent", "credential subject is a person, peer "
                        "SPIFFE ID is an agent") for i in r["ids"]],
            facts={"person": r["person"], "workload": r["src_workload"]},
        ))
    return out


def _call(on_behalf: str | None, chain: list[str] | None, actor: str, actor_type: str) -> dict[str, Any]:
    return ev(10, "x:call", "tool.invoked", category="tool_call", credential_id="ptok", actor_id=actor,
              actor_type=actor_type, on_behalf_of=on_behalf, delegation_chain=chain,
              src_workload="spiffe://c/agent/coder", tool="repo.read")


EXAMPLES = (
    positive("coder presents bob's token", [_call(None, None, "bob@corp.example", "human")],
             ("ptok", "spiffe://c/agent/coder")),
    positive("one call whose decision was logged twice", [
        _call(None, None, "bob@corp.example", "human") | {"trace_id": "t", "span_id": "s"},
        *(ev(9, f"x:dec{i}", "decision", category="authorization", credential_id="ptok", actor_id="bob@corp.example",
             decision="allow", trace_id="t", span_id="s") for i in (1, 2))], ("ptok", "spiffe://c/agent/coder")),
    positive("two people's calls without a credential id: the first caller is named", [
        _call(None, None, "bob@corp.example", "human") | {"credential_id": None, "event_id": "x:b"},
        _call(None, None, "amy@corp.example", "human") | {"credential_id": None, "event_id": "x:a", "t": 11}],
        ("-", "spiffe://c/agent/coder")),
    benign("coder acting on behalf of bob (delegated)",
           [_call("bob@corp.example", ["bob@corp.example", "spiffe://c/agent/coder"], "spiffe://c/agent/coder",
                  "agent")]),
)
