"""Point-in-time answers: was this identity allowed to do this, at that instant, and on what evidence?

Semantics (shared with the scenario generator's ground truth): the governing decision for
(identity, action[, resource]) is the latest one at or before ``t`` within 5 minutes, else the
first one within 5 s after ``t`` (clock skew). With none, ``not_mediated`` if the identity did
that action within ±5 s of ``t``, else ``unknown``. ``action`` matches the tool name or the action.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb

from analytics.lake import credential_actors, jsonable, rows, view_filter, window_files
from analytics.timeparse import iso, parse_instant

LOOKBACK = dt.timedelta(minutes=5)
SKEW = dt.timedelta(seconds=5)
ANSWERS = ("allowed", "denied", "not_mediated", "unknown")

# Fixed fragments chosen by which arguments were given; values always travel as parameters.
_MATCH = {
    (False, False): "",
    (True, False): " AND (action = $action OR tool = $action)",
    (False, True): " AND resource = $resource",
    (True, True): " AND (action = $action OR tool = $action) AND resource = $resource",
}

# Columns of the decisions and the actions shown as evidence, in this order.
DECISION_COLS = ("event_id", "time", "decision", "policy_id", "policy_version", "action", "tool", "resource", "reason",
                 "credential_id", "on_behalf_of", "trace_id", "span_id", "request_id")
ACTION_COLS = ("event_id", "time", "activity", "action", "tool", "resource", "outcome", "decision", "credential_id",
               "src_workload", "src_ip", "trace_id", "span_id")
_COLS = ", ".join(dict.fromkeys((*DECISION_COLS, *ACTION_COLS)))
_IS_DECISION, _IS_ACTION = view_filter("decisions"), view_filter("actions")

# The identity's rows of the `decisions` and `actions` marts around t, from one scan of the window's day files
# (each row flagged with the marts it belongs to, by the marts' own conditions): a query per mart decoded the
# same row groups twice.
_EVIDENCE = f"""
SELECT ({_IS_DECISION}) AS is_decision, ({_IS_ACTION}) AS is_action, {_COLS}
FROM events_in($files)
WHERE actor_id = $identity AND time >= $lo AND time <= $hi{{match}} AND (({_IS_DECISION}) OR ({_IS_ACTION}))
ORDER BY time, event_id
"""  # noqa: S608 (the package's own view conditions and column names)

# Credentials held (role sessions: by the role) or presented by the identity at or before t.
_MINE = ("SELECT credential_id FROM credential_actors WHERE actor_h = hash($identity) AND actor = $identity"
         " AND first_time <= $t")

# `credential_actors` carries the credential's columns, one row per (actor, credential), read by actor.
_CREDENTIALS = """
SELECT credential_id, credential_type, holder, scope, parent_id, task_id, issued_at, expires_at, revoked_at,
       issue_event_id
FROM credential_actors
WHERE actor_h = hash($identity) AND actor = $identity AND first_time <= $t AND issued_at <= $t AND (valid_until IS NULL OR $t < valid_until)
ORDER BY issued_at, credential_id
"""

# Delegations to the identity in force at t; kept if the identity held or presented their credential (`_MINE`).
# Two small lookups: a semi-join on `_MINE` hashed all of a busy identity's credentials (tens of thousands).
_DELEGATIONS = """
SELECT delegator, delegation_chain, delegated_scope, credential_id, task_id, valid_from, valid_until, how
FROM mat_delegations
WHERE delegate_h = hash($identity) AND delegate = $identity
  AND valid_from <= $t AND (valid_until IS NULL OR $t < valid_until)
ORDER BY valid_from, credential_id
"""
_MINE_OF = _MINE + " AND list_contains(CAST($cids AS VARCHAR[]), credential_id)"

_POLICY = """
SELECT policy_id, policy_version, in_force_from, in_force_until
FROM policy_versions
WHERE in_force_from <= $t AND (in_force_until IS NULL OR $t < in_force_until){policy}
ORDER BY (policy_id = $prefer) DESC, in_force_from DESC
LIMIT 1
"""


@dataclass(frozen=True)
class AllowedAnswer:
    """The answer for one (identity, instant, action, resource) with the evidence it rests on."""

    answer: str
    identity: str
    at: dt.datetime
    action: str | None
    resource: str | None
    governing_decision: str | None
    credentials: tuple[dict[str, Any], ...]
    delegations: tuple[dict[str, Any], ...]
    policy_version: dict[str, Any] | None
    decisions: tuple[dict[str, Any], ...]
    actions: tuple[dict[str, Any], ...]
    why: str

    def to_json(self) -> dict[str, Any]:
        """DESIGN's ``allowed --json`` object."""
        return {
            "answer": self.answer,
            "identity": self.identity,
            "at": iso(self.at),
            "action": self.action,
            "resource": self.resource,
            "why": self.why,
            "governing_decision": self.governing_decision,
            "evidence": {
                "credentials": jsonable(list(self.credentials)),
                "delegations": jsonable(list(self.delegations)),
                "policy_version": jsonable(self.policy_version),
                "decisions": jsonable(list(self.decisions)),
                "actions": jsonable(list(self.actions)),
            },
        }

    def render(self) -> str:
        """Plain-text rendering for people."""
        what = " ".join(x for x in (self.action, self.resource) if x) or "anything"
        out = [f"{self.identity} at {iso(self.at)} for {what}: {self.answer.upper()}", f"  why: {self.why}"]
        pv = self.policy_version
        out.append(f"  policy in force: {pv['policy_id']} {pv['policy_version']}" if pv else "  policy in force: unknown")
        for c in self.credentials:
            out.append(f"  credential {c['credential_id']} ({c['credential_type']}) scopes {c['scope'] or []} "
                       f"valid {iso(c['issued_at'])} → {iso(c['expires_at'])}"
                       + (f", revoked {iso(c['revoked_at'])}" if c["revoked_at"] else ""))
        for d in self.delegations:
            out.append(f"  on behalf of {d['delegator']} via {d['credential_id']} scopes {d['delegated_scope'] or []}")
        for d in self.decisions:
            mark = "*" if d["event_id"] == self.governing_decision else " "
            out.append(f" {mark}decision {iso(d['time'])} {d['decision']} {d['tool'] or d['action']} "
                       f"{d['resource'] or ''} [{d['policy_version']}] {d['event_id']}")
        for a in self.actions:
            out.append(f"  action {iso(a['time'])} {a['tool'] or a['action']} {a['resource'] or ''} "
                       f"→ {a['outcome']} {a['event_id']}")
        return "\n".join(out)


def governing(decisions: list[dict[str, Any]], t: dt.datetime) -> dict[str, Any] | None:
    """The decision that governed ``t``: latest at or before it (within 5 min), else first within 5 s after."""
    before = [d for d in decisions if t - LOOKBACK <= d["time"] <= t]
    if before:
        return max(before, key=lambda d: (d["time"], d["event_id"]))
    after = [d for d in decisions if t < d["time"] <= t + SKEW]
    return min(after, key=lambda d: (d["time"], d["event_id"])) if after else None


def _delegations(con: duckdb.DuckDBPyConnection, identity: str, t: dt.datetime) -> list[dict[str, Any]]:
    """Delegations to ``identity`` in force at ``t`` whose credential it held or presented by then."""
    found = rows(con, _DELEGATIONS, {"identity": identity, "t": t})
    if not found:
        return []
    cids = sorted({d["credential_id"] for d in found if d["credential_id"] is not None})
    mine = {r[0] for r in con.execute(_MINE_OF, {"identity": identity, "t": t, "cids": cids}).fetchall()}
    return [d for d in found if d["credential_id"] in mine]


def allowed_at(
    con: duckdb.DuckDBPyConnection,
    identity: str,
    at: str | dt.datetime,
    action: str | None = None,
    resource: str | None = None,
) -> AllowedAnswer:
    """Answer allowed / denied / not_mediated / unknown for ``identity`` at ``at``, with evidence."""
    t = parse_instant(at, "--at")
    match = _MATCH[(action is not None, resource is not None)]
    # Only the day files of the window are bound and read.
    files = window_files(con, t - LOOKBACK, t + SKEW)
    p: dict[str, Any] = {"identity": identity, "lo": t - LOOKBACK, "hi": t + SKEW, "files": files}
    if action is not None:
        p["action"] = action
    if resource is not None:
        p["resource"] = resource
    evidence = rows(con, _EVIDENCE.format(match=match), p) if files else []
    decisions = [{c: r[c] for c in DECISION_COLS} for r in evidence if r["is_decision"]]
    acts = [{c: r[c] for c in ACTION_COLS} for r in evidence if r["is_action"]]
    gov = governing(decisions, t)
    if gov is not None:
        answer = "allowed" if gov["decision"] == "allow" else "denied"
        why = f"{gov['policy_id']} {gov['policy_version']} decided {gov['decision']} at {iso(gov['time'])}" + (
            f": {gov['reason']}" if gov["reason"] else "")
    elif any(abs(a["time"] - t) <= SKEW for a in acts):
        answer, why = "not_mediated", "no authorization decision within 5 min before or 5 s after, yet the action ran"
    else:
        answer, why = "unknown", "no authorization decision and no matching action around that instant"

    # Credential lifecycles come from the connection's materialized mart (built on first use).
    credential_actors(con)  # (and the marts it joins)
    creds = rows(con, _CREDENTIALS, {"identity": identity, "t": t})
    dels = _delegations(con, identity, t)

    prefer = gov["policy_id"] if gov else next((d["policy_id"] for d in decisions if d["policy_id"]), None)
    policy = rows(con, _POLICY.format(policy=" AND policy_id = $prefer" if prefer else ""),
                  {"t": t, "prefer": prefer})
    return AllowedAnswer(
        answer=answer, identity=identity, at=t, action=action, resource=resource,
        governing_decision=gov["event_id"] if gov else None,
        credentials=tuple(creds), delegations=tuple(dels), policy_version=policy[0] if policy else None,
        decisions=tuple(decisions), actions=tuple(acts), why=why,
    )
