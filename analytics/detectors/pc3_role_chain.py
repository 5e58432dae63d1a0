"""DP-PC-3: a role-assumption chain reaches a privileged role in two or more hops."""

from __future__ import annotations

from typing import Any

import networkx as nx

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-PC-3", title="Privilege chaining: role chain", severity="high",
    description="A chain of role assumptions, each made with the previous session's credentials, reaches a "
                "privileged role (name containing `Admin`, or one of PRIVILEGED_ROLES) after at least `min_hops` "
                "role.assumed hops. Role chaining hides the origin and reaches what no single trust allowed.",
    nhi=("NHI5",), asi=("ASI03",), attack=("T1548.005", "T1078.004", "T1098.003"), csf=("PR.AA-05", "DE.CM-09"),
    maestro=("L4",), ai_rmf=("MEASURE 2.7",),
    thresholds=(Threshold("min_hops", 2, "hops", "role.assumed events in the chain, the web-identity one included"),),
)
PRIVILEGED_ROLES = ("OrganizationAccountAccessRole", "PowerUserAccess", "BreakGlass")

# Only the privileged sessions assumed in the window and their ancestors are read: the graph the chains are
# walked in is their closure up credential_parent_id, not every role session of the lake (10M events: 155,520
# rows into Python, 1.6 s, for 500 findings). The SQL test of "privileged" is looser than `privileged` (any
# row of the session; "Admin" anywhere in the ARN), which still decides on each session's last row.
_SQL = """
WITH RECURSIVE ra AS MATERIALIZED (
    SELECT event_id, time, credential_id, credential_parent_id, target_id, actor_id FROM events
    WHERE activity = 'role.assumed' AND credential_id IS NOT NULL
), up(cid) AS (
    SELECT credential_id FROM ra
    WHERE time BETWEEN $since AND $until
      AND (contains(target_id, 'Admin') OR string_split(target_id, '/')[-1] IN (SELECT unnest($roles)))
    UNION
    SELECT ra.credential_parent_id FROM up JOIN ra ON ra.credential_id = up.cid
    WHERE ra.credential_parent_id IS NOT NULL
)
SELECT * FROM ra WHERE credential_id IN (SELECT cid FROM up) ORDER BY time, event_id
"""
# The final sessions' API calls, for all findings in one query (one query per finding scanned the lake each time).
_USES = """
SELECT credential_id AS k, event_id, time FROM events
WHERE credential_id IN (SELECT unnest($keys)) AND category = 'api_activity' AND activity <> 'role.assumed'
ORDER BY time, event_id
"""


def privileged(role_arn: str | None) -> bool:
    name = (role_arn or "").rpartition("/")[2]
    return "Admin" in name or name in PRIVILEGED_ROLES


def detect(ctx: Context) -> list[Finding]:
    g = nx.DiGraph()
    for r in ctx.rows(_SQL, {**ctx.window(), "roles": list(PRIVILEGED_ROLES)}):
        g.add_node(r["credential_id"], **r)
        if r["credential_parent_id"]:
            g.add_edge(r["credential_parent_id"], r["credential_id"])
    min_hops = int(ctx.p(DETECTION, "min_hops"))
    chains = []
    for key, n in g.nodes(data=True):
        if "event_id" not in n or not privileged(n["target_id"]) or not (ctx.since <= n["time"] <= ctx.until):
            continue
        chain = [key]
        while True:
            preds = [p for p in g.predecessors(chain[-1]) if p not in chain]
            if not preds:
                break
            chain.append(preds[0])
        hops = [g.nodes[c] for c in reversed(chain) if "event_id" in g.nodes[c]]
        if len(hops) >= min_hops:
            chains.append((key, n, hops))
    uses_of = ctx.lookup(_USES, [key for key, _n, _h in chains])
    out = []
    for key, n, hops in chains:
        uses = uses_of.get(key, [])
        roles = " → ".join((h["target_id"] or "?").rpartition("/")[2] for h in hops)
        out.append(make(
            DETECTION, (n["event_id"],), [hops[0]["actor_id"], *(h["target_id"] for h in hops)],
            [h["time"] for h in hops] + [u["time"] for u in uses],
            [h["event_id"] for h in hops] + [u["event_id"] for u in uses], n["event_id"],
            f"{hops[0]['actor_id']} reached the privileged role {n['target_id']} through {len(hops)} role "
            f"assumptions ({roles}), each made with the previous session's key; "
            f"the final session made {len(uses)} API call(s). Chained assumption reaches what no single trust granted.",
            links=[Link(a["credential_id"], b["credential_id"], "assumed", "credential_parent_id = caller access key")
                   for a, b in zip(hops, hops[1:], strict=False)],
            facts={"role": n["target_id"], "hops": str(len(hops))},
        ))
    return out


def _tl(last_role: str, hops: int) -> list[dict[str, Any]]:
    roles = ["agent-ops", "DeployRole", last_role][-hops:]
    evs, parent = [], "jwt-1"
    for i, role in enumerate(roles):
        evs.append(ev(5 * i, f"x:r{i}", "role.assumed", category="credential", credential_id=f"K{i}",
                      credential_parent_id=parent, target_id=f"arn:aws:iam::1:role/{role}", actor_id="agent/ops",
                      actor_type="agent"))
        parent = f"K{i}"
    return evs


EXAMPLES = (
    positive("3 hops to PlatformAdmin", _tl("PlatformAdmin", 3), ("x:r2",)),
    positive("2 hops (the minimum) to OrganizationAccountAccessRole", _tl("OrganizationAccountAccessRole", 2), ("x:r1",)),
    benign("1 hop to an admin role (below min_hops)", _tl("SecurityAdmin", 1)),
    benign("3 hops ending in a read-only role", _tl("ReportingReadOnly", 3)),
)
