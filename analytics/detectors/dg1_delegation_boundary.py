"""DP-DG-1: an agent acting for a person goes beyond the delegated scope or the person's own rights."""

from __future__ import annotations

from typing import Any

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, benign, ev, positive

DETECTION = Detection(
    id="DP-DG-1", title="Delegation boundary", severity="high",
    description="A tool call made on behalf of a person succeeds although the scope the tool needs (`a.b` needs "
                "`a:b`) is not in the delegated token's scope, or not among the scopes the person was ever issued. "
                "The agent acted beyond what the person delegated or may do.",
    nhi=("NHI5", "NHI10"), asi=("ASI03", "ASI09"), attack=("T1078", "T1134.001"), csf=("PR.AA-05", "DE.CM-03"),
    maestro=("L3",), ai_rmf=("GOVERN 1.4", "MEASURE 2.7"),
)
SHARED_READS = ("int_credential_issued",)  # computed first in a catalog run (share_for)

_SQL = """
WITH person AS (  -- scopes ever issued directly to each person (their own tokens)
  SELECT issue_target AS holder, flatten(list(scope)) AS scopes FROM int_credential_issued
  WHERE contains(issue_target, '@') AND scope IS NOT NULL AND parent_id IS NULL GROUP BY issue_target
)
SELECT e.event_id, e.time, e.actor_id, e.on_behalf_of, e.tool, e.resource, e.credential_id, e.scope, e.trace_id, e.span_id,
       replace(e.tool, '.', ':') AS need, list_contains(coalesce(e.scope, []), replace(e.tool, '.', ':')) AS in_token,
       p.scopes IS NULL OR list_contains(p.scopes, replace(e.tool, '.', ':')) AS person_may,
       c.issue_event_id
FROM events e LEFT JOIN person p ON p.holder = e.on_behalf_of LEFT JOIN int_credential_issued c USING (credential_id)
WHERE e.activity = 'tool.invoked' AND contains(coalesce(e.on_behalf_of, ''), '@') AND e.outcome = 'success'
  AND e.tool IS NOT NULL AND e.time BETWEEN $since AND $until
  AND NOT (list_contains(coalesce(e.scope, []), replace(e.tool, '.', ':'))
           AND (p.scopes IS NULL OR list_contains(p.scopes, replace(e.tool, '.', ':'))))
ORDER BY e.time, e.event_id
"""


def detect(ctx: Context) -> list[Finding]:
    out = []
    found = ctx.rows(_SQL, ctx.window())
    # The decisions on the hits' own (trace, span), read from the decisions of those traces only. The hits carry
    # their trace and span: looking them up by event id read every file's event ids again (0.75 s CPU at 10M).
    on_span = {r["event_id"]: (r["trace_id"], r["span_id"]) for r in found
               if r["trace_id"] is not None and r["span_id"] is not None}
    decisions: dict[str, list[str]] = {}
    if on_span:
        for x in ctx.rows(
                "WITH m AS (SELECT unnest($ids) AS k, unnest($traces) AS trace_id, unnest($spans) AS span_id) "
                "SELECT m.k, d.event_id FROM m JOIN events d ON d.trace_id = m.trace_id AND d.span_id = m.span_id "
                "WHERE d.activity = 'decision' AND d.trace_id IN (SELECT unnest($traces)) ORDER BY d.time, d.event_id",
                {"ids": list(on_span), "traces": [t for t, _ in on_span.values()],
                 "spans": [s for _, s in on_span.values()]}):
            decisions.setdefault(x["k"], []).append(x["event_id"])
    for r in found:
        why = []
        if not r["in_token"]:
            why.append(f"the delegated token's scope ({' '.join(r['scope'] or []) or 'none'}) lacks {r['need']}")
        if not r["person_may"]:
            why.append(f"{r['on_behalf_of']} was never issued {r['need']}")
        dec = decisions.get(r["event_id"], [])
        out.append(make(
            DETECTION, (r["event_id"],), [r["actor_id"], r["on_behalf_of"]], [r["time"]],
            [r["issue_event_id"], *dec, r["event_id"]], r["event_id"],
            f"{r['actor_id']}, acting on behalf of {r['on_behalf_of']}, successfully called {r['tool']} on "
            f"{r['resource']} although {' and '.join(why)}. A delegated agent may do only what the person delegated "
            "and could do themselves.",
            links=[Link(r["credential_id"] or "?", r["event_id"], "used", "credential_id")]
            + [Link(d, r["event_id"], "decided", "trace_id + span_id") for d in dec],
            facts={"tool": r["tool"], "needed_scope": r["need"], "on_behalf_of": r["on_behalf_of"]},
        ))
    return out


def _tl(tool: str) -> list[dict[str, Any]]:
    return [
        ev(0, "x:p", "token.issued", category="credential", credential_id="ptok", actor_id="alice@corp.example",
           actor_type="human", scope=["kb:search", "tickets:read", "tickets:write"]),
        ev(1, "x:x", "token.exchanged", category="credential", credential_id="atok", credential_parent_id="ptok",
           actor_id="agent/support", on_behalf_of="alice@corp.example", scope=["kb:search", "tickets:read"]),
        ev(25, "x:call", "tool.invoked", category="tool_call", credential_id="atok", actor_id="agent/support",
           on_behalf_of="alice@corp.example", scope=["kb:search", "tickets:read"], tool=tool, outcome="success"),
    ]


EXAMPLES = (
    positive("tickets.write with a kb:search tickets:read token", _tl("tickets.write"), ("x:call",)),
    benign("call inside the delegated scope", _tl("tickets.read")),
)
