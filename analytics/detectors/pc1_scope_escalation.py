"""DP-PC-1: a credential chain ends with privileges its origin never held (networkx over the lineage)."""

from __future__ import annotations

from typing import Any

import networkx as nx

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, benign, ev, positive

DETECTION = Detection(
    id="DP-PC-1", title="Privilege chaining: scope escalation", severity="critical",
    description="Following credential lineage (token exchange, refresh, role assumption: `credential_parent_id`) "
                "back to its origin, the first credential in the chain that carries a scope, a derived credential "
                "holds a scope the origin never held. Delegation and agent-to-agent exchanges may only narrow.",
    nhi=("NHI5",), asi=("ASI03", "ASI07"), attack=("T1134", "T1548"), csf=("PR.AA-05", "DE.AE-02"),
    maestro=("L3", "L7"), ai_rmf=("MEASURE 2.7", "MANAGE 4.1"),
)

_CREDS = """
SELECT credential_id, parent_id, scope, issue_event_id, issued_at, issue_target AS holder, issue_activity AS issued_by
FROM int_credential_issued
"""
_USES = """
SELECT credential_id AS k, event_id, time, actor_id, tool FROM events
WHERE credential_id IN (SELECT unnest($keys)) AND category IN ('tool_call', 'authorization', 'api_activity')
ORDER BY time
"""


def lineage_graph(ctx: Context) -> nx.DiGraph:
    """Credential lineage: parent → child edges, each carrying how it was derived."""
    g = nx.DiGraph()
    for r in ctx.rows(_CREDS):
        g.add_node(r["credential_id"], **r)
        if r["parent_id"]:
            g.add_edge(r["parent_id"], r["credential_id"], how=f"credential_parent_id ({r['issued_by']})")
    return g


def detect(ctx: Context) -> list[Finding]:
    g = lineage_graph(ctx)
    out = []
    found: list[tuple[str, dict[str, Any], list[str], str, list[str]]] = []
    for cid, n in g.nodes(data=True):
        if n.get("issued_by") != "token.exchanged" or not n.get("scope"):
            continue
        if not (ctx.since <= n["issued_at"] <= ctx.until):
            continue
        chain = [cid]
        while True:
            preds = list(g.predecessors(chain[-1]))
            if not preds or preds[0] in chain:
                break
            chain.append(preds[0])
        scoped = [c for c in chain if g.nodes[c].get("scope")]
        origin = scoped[-1]
        extra = sorted(set(n["scope"]) - set(g.nodes[origin]["scope"]))
        if not extra:
            continue
        chain.reverse()  # origin first
        found.append((cid, n, chain, origin, extra))
    uses_of = ctx.lookup(_USES, [f[0] for f in found])
    for cid, n, chain, origin, extra in found:
        uses = uses_of.get(cid, [])
        nodes = [g.nodes[c] for c in chain if "issue_event_id" in g.nodes[c]]
        out.append(make(
            DETECTION, (cid,), [x.get("holder") for x in nodes] + [u["actor_id"] for u in uses],
            [x["issued_at"] for x in nodes] + [u["time"] for u in uses],
            [x["issue_event_id"] for x in nodes] + [u["event_id"] for u in uses], n["issue_event_id"],
            f"Credential {cid} (held by {n['holder']}) carries {', '.join(extra)}, which its chain's origin "
            f"{origin} (held by {g.nodes[origin].get('holder')}) never held; the chain has {len(chain)} link(s). "
            "Exchanges and delegations may only narrow a grant, so a scope appearing along the chain is an "
            f"escalation{'; it was used ' + str(len(uses)) + ' time(s)' if uses else ''}.",
            links=[Link(a, b, "exchanged_for", g.edges[a, b]["how"]) for a, b in zip(chain, chain[1:], strict=False)],
            facts={"credential_id": cid, "origin": origin, "added_scopes": ",".join(extra)},
        ))
    return out


def _tl(worker_scope: list[str]) -> list[dict[str, Any]]:
    return [
        ev(0, "x:base", "token.issued", category="credential", credential_id="b", actor_id="agent/o",
           actor_type="agent", scope=["agents:delegate", "kb:search", "docs:read"]),
        ev(1, "x:task", "token.exchanged", category="credential", credential_id="t", credential_parent_id="b",
           actor_id="agent/o", actor_type="agent", scope=["agents:delegate", "kb:search"]),
        ev(3, "x:wk", "token.exchanged", category="credential", credential_id="w", credential_parent_id="t",
           actor_id="agent/r", actor_type="agent", scope=worker_scope),
    ]


EXAMPLES = (
    positive("worker token gains users:admin", _tl(["kb:search", "users:admin"]), ("w",)),
    positive("worker token regains a scope dropped mid-chain (origin had docs:read? no: t narrowed, origin=b)",
             _tl(["kb:search", "billing:refund"]), ("w",)),
    benign("every exchange narrows", _tl(["kb:search"])),
)
