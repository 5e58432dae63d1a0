"""DP-PC-1: a credential chain ends with privileges its origin never held (lineage walked in SQL)."""

from __future__ import annotations

from typing import Any

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
SHARED_READS = ("int_credential_issued",)  # computed first in a catalog run (share_for)

# Each candidate (an exchanged credential with scopes, issued in the window) walks credential_parent_id up to
# its root in SQL, remembering the root-most credential that carries a scope (the origin); only chains whose
# candidate holds a scope the origin lacks come back. (A Python graph of every issued credential took 65-92 s
# at 10M events.) A parent already on the path ends the walk: lineage loops are data, not infinite.
#
# Only candidates that can escalate are walked. If every scoped credential on a chain holds no scope beyond
# its nearest scoped ancestor, the candidate holds nothing beyond its origin (subset is transitive). So a
# finding needs a "widened" credential on its chain: one with a scope its nearest scoped ancestor lacks
# (the parent when it has scopes, else the first scoped one above, found by `up` through unscoped ones).
# Candidates that are widened or descend from one (`tainted`) are walked; on 10M events that is 500 of
# 1,005,206 and the query takes 2.1-2.4 s instead of 6.0-6.7 s, with the same rows. A credential is widened when
# its ancestor's scope does not hold all of its own (`list_has_all`), tested in the one join that pairs them:
# pairing first and joining both scopes back took three joins of ~1M rows and spilled (10M events, catalog
# run: 1.0-1.3 s for the query instead of 2.0-2.4 s).
# Each join names the small side last and runs with `build_right`: a recursive step hashes the few rows of the
# walk, not the whole issuance table at every iteration (0.7 s instead of 1.1 s).
_SQL = """
WITH RECURSIVE iss AS MATERIALIZED (
    SELECT credential_id, parent_id, scope, issue_activity, issued_at FROM int_credential_issued
), up(start, cur, path) AS (
    SELECT i.credential_id, i.parent_id, [i.credential_id]
    FROM iss i JOIN iss p ON p.credential_id = i.parent_id
    WHERE len(i.scope) > 0 AND coalesce(len(p.scope), 0) = 0
    UNION ALL
    SELECT up.start, x.parent_id, list_append(up.path, up.cur)
    FROM iss x JOIN up ON x.credential_id = up.cur
    WHERE coalesce(len(x.scope), 0) = 0 AND x.parent_id IS NOT NULL AND NOT list_contains(up.path, x.parent_id)
), widened(credential_id) AS (
    SELECT i.credential_id
    FROM iss i JOIN iss p ON p.credential_id = i.parent_id
    WHERE len(i.scope) > 0 AND len(p.scope) > 0 AND NOT list_has_all(p.scope, i.scope)
    UNION ALL
    SELECT u.start
    FROM iss c JOIN (
        SELECT up.start, a.scope AS anc_scope FROM iss a JOIN up ON a.credential_id = up.cur
        WHERE len(a.scope) > 0
    ) u ON c.credential_id = u.start
    WHERE NOT list_has_all(u.anc_scope, c.scope)
), tainted(cid) AS (
    SELECT credential_id FROM widened
    UNION
    SELECT c.credential_id FROM iss c JOIN tainted t ON c.parent_id = t.cid
), cand AS (
    SELECT credential_id, scope FROM iss
    WHERE issue_activity = 'token.exchanged' AND len(scope) > 0 AND issued_at >= $since AND issued_at <= $until
      AND credential_id IN (SELECT cid FROM tainted)
), walk(start, cid, depth, path, origin) AS (
    SELECT credential_id, credential_id, 0, [credential_id], credential_id FROM cand
    UNION ALL
    SELECT s.start, s.parent_id, s.depth + 1, list_append(s.path, s.parent_id),
           CASE WHEN len(p.scope) > 0 THEN s.parent_id ELSE s.origin END
    FROM iss p RIGHT JOIN (
        SELECT w.start, w.depth, w.path, w.origin, i.parent_id
        FROM iss i JOIN walk w ON i.credential_id = w.cid
        WHERE i.parent_id IS NOT NULL AND NOT list_contains(w.path, i.parent_id)
    ) s ON p.credential_id = s.parent_id
), chains AS (
    SELECT start, arg_max({'path': path, 'origin': origin}, depth) AS c FROM walk GROUP BY start
)
SELECT x.credential_id, x.c.path AS path, x.c.origin AS origin,
       list_sort(list_distinct(list_filter(x.scope, lambda s: NOT list_contains(o.scope, s)))) AS extra
FROM iss o JOIN (
    SELECT cand.credential_id, cand.scope, ch.c FROM cand JOIN chains ch ON ch.start = cand.credential_id
) x ON o.credential_id = x.c.origin
WHERE len(list_filter(x.scope, lambda s: NOT list_contains(o.scope, s))) > 0
"""
_NODES = """
SELECT credential_id AS k, scope, issue_event_id, issued_at, issue_target AS holder, issue_activity AS issued_by
FROM int_credential_issued WHERE credential_id IN (SELECT unnest($keys))
"""
_USES = """
SELECT credential_id AS k, event_id, time, actor_id, tool FROM events
WHERE credential_id IN (SELECT unnest($keys)) AND category IN ('tool_call', 'authorization', 'api_activity')
ORDER BY time, event_id
"""


def detect(ctx: Context) -> list[Finding]:
    found = ctx.rows(_SQL, ctx.window(), build_right=True)
    nodes = {k: v[0] for k, v in ctx.lookup(_NODES, [c for f in found for c in f["path"]]).items()}
    uses_of = ctx.lookup(_USES, [f["credential_id"] for f in found])
    out = []
    for f in found:
        cid, origin, extra = f["credential_id"], f["origin"], list(f["extra"])
        chain = list(reversed(f["path"]))  # origin side first
        n = nodes[cid]
        uses = uses_of.get(cid, [])
        issued = [nodes[c] for c in chain if c in nodes]
        out.append(make(
            DETECTION, (cid,), [x.get("holder") for x in issued] + [u["actor_id"] for u in uses],
            [x["issued_at"] for x in issued] + [u["time"] for u in uses],
            [x["issue_event_id"] for x in issued] + [u["event_id"] for u in uses], n["issue_event_id"],
            f"Credential {cid} (held by {n['holder']}) carries {', '.join(extra)}, which its chain's origin "
            f"{origin} (held by {nodes[origin].get('holder')}) never held; the chain has {len(chain)} link(s). "
            "Exchanges and delegations may only narrow a grant, so a scope appearing along the chain is an "
            f"escalation{'; it was used ' + str(len(uses)) + ' time(s)' if uses else ''}.",
            links=[Link(a, b, "exchanged_for", f"credential_parent_id ({nodes[b]['issued_by']})")
                   for a, b in zip(chain, chain[1:], strict=False)],
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


def _via_unscoped(worker_scope: list[str]) -> list[dict[str, Any]]:
    """base (scoped) → an SVID-bound token with no scope → worker: the worker's origin is still base."""
    return [
        ev(0, "x:base", "token.issued", category="credential", credential_id="b", actor_id="agent/o",
           actor_type="agent", scope=["kb:search", "docs:read"]),
        ev(1, "x:mid", "token.exchanged", category="credential", credential_id="u", credential_parent_id="b",
           actor_id="agent/o", actor_type="agent"),
        ev(3, "x:wk", "token.exchanged", category="credential", credential_id="w", credential_parent_id="u",
           actor_id="agent/r", actor_type="agent", scope=worker_scope),
    ]


def _loop() -> list[dict[str, Any]]:
    """A lineage loop t1 → t3 → t2 → t1 (parent links); t2 holds files:write, which t1 and t3 lack."""
    return [ev(i, f"x:t{i}", "token.exchanged", category="credential", credential_id=f"t{i}",
               credential_parent_id=f"t{p}", actor_id="agent/o", actor_type="agent", scope=sc)
            for i, p, sc in ((1, 3, ["kb:search"]), (2, 1, ["kb:search", "files:write"]), (3, 2, ["kb:search"]))]


EXAMPLES = (
    positive("worker token gains users:admin", _tl(["kb:search", "users:admin"]), ("w",)),
    positive("through a credential without scopes, the worker gains users:admin", _via_unscoped(["users:admin"]),
             ("w",)),
    benign("through a credential without scopes, the worker narrows", _via_unscoped(["docs:read"])),
    positive("escalated mid-chain: the task token and the worker token below it (which only narrows it)",
             [ev(0, "x:base", "token.issued", category="credential", credential_id="b", actor_id="agent/o",
                 actor_type="agent", scope=["kb:search"]),
              ev(1, "x:task", "token.exchanged", category="credential", credential_id="t", credential_parent_id="b",
                 actor_id="agent/o", actor_type="agent", scope=["kb:search", "users:admin"]),
              ev(3, "x:wk", "token.exchanged", category="credential", credential_id="w", credential_parent_id="t",
                 actor_id="agent/r", actor_type="agent", scope=["users:admin"])], ("t",), ("w",)),
    positive("a lineage loop: only the credential holding more than the loop's root-most scoped one",
             _loop(), ("t2",)),
    positive("worker token regains a scope dropped mid-chain (origin had docs:read? no: t narrowed, origin=b)",
             _tl(["kb:search", "billing:refund"]), ("w",)),
    benign("every exchange narrows", _tl(["kb:search"])),
)
