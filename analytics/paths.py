"""Decision paths: the chain of events that made one action possible, each link saying how it was made.

root authentication → credential lineage (issuance, exchange, refresh, role assumption, SVID) →
delegation → authorization decision(s) → the action and its outcome → the actions it caused.
Links come from shared ids (credential_id/credential_parent_id, trace+span, request id, SPIFFE ID)
and, only when no id links them, from a ±5 s time match on the credential; what cannot be found is
listed in ``missing``, never invented.
"""

from __future__ import annotations

import datetime as dt
import weakref
from dataclasses import dataclass, field
from typing import Any

import duckdb

from analytics.lake import DAY_SCAN, day_files, jsonable, key_days, rows, window_files
from analytics.timeparse import iso
from ingest.errors import ConfigError

MATCH_WINDOW = dt.timedelta(seconds=5)
ID_WINDOW = dt.timedelta(hours=1)  # bounds id-linked lookups in time so day/row-group stats prune
MAX_LINEAGE = 12
MAX_DOWNSTREAM = 200

ISSUING = ("session.started", "token.issued", "token.exchanged", "token.refreshed", "svid.minted", "role.assumed")
_LINEAGE_KIND = {"token.exchanged": "exchanged_for", "token.refreshed": "refreshed_to", "role.assumed": "role_assumed",
                 "svid.minted": "issued", "token.issued": "issued", "session.started": "authenticated"}

_COLS = """event_id, time, source, category, activity, actor_id, actor_type, on_behalf_of, delegation_chain,
       src_workload, credential_id, credential_type, credential_parent_id, credential_expires_at, scope, action,
       tool, resource, decision, policy_id, policy_version, reason, outcome, task_id, trace_id, span_id,
       parent_span_id, request_id"""

_BY_ID = f"SELECT {_COLS} FROM {DAY_SCAN} WHERE event_id = $id"  # noqa: S608 (constant)
_ISSUANCE = f"""SELECT {_COLS} FROM {DAY_SCAN}
WHERE credential_id = $cid AND activity IN $issuing
  AND coalesce(outcome, 'success') <> 'failure'
ORDER BY time, event_id LIMIT 1"""  # noqa: S608
# SVID mints are few; they are copied once per connection (`path_svids`, sorted by SPIFFE ID) because a
# "valid at t" lookup cannot be bounded in time (an SVID may never expire) and would open every earlier day.
_SVIDS = f"""CREATE OR REPLACE TEMP TABLE path_svids AS
SELECT {_COLS} FROM events WHERE activity = 'svid.minted' ORDER BY actor_id, time"""  # noqa: S608
_SVID = """SELECT * FROM path_svids
WHERE actor_id = $spiffe AND time <= $t AND (credential_expires_at IS NULL OR credential_expires_at > $t)
ORDER BY (credential_type = 'x509_svid') DESC NULLS LAST, time DESC, event_id LIMIT 1"""
_SVIDS_BUILT: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
_DEC_SPAN = f"""SELECT {_COLS} FROM {DAY_SCAN} WHERE activity = 'decision' AND trace_id = $trace AND span_id = $span
  AND time >= $lo AND time <= $hi ORDER BY time, event_id"""  # noqa: S608
_DEC_REQ = f"""SELECT {_COLS} FROM {DAY_SCAN} WHERE activity = 'decision' AND request_id = $rid
  AND time >= $lo AND time <= $hi ORDER BY time, event_id"""  # noqa: S608
_DEC_CRED = f"""SELECT {_COLS} FROM {DAY_SCAN} WHERE activity = 'decision' AND credential_id = $cid
  AND time >= $lo AND time <= $hi AND coalesce(tool, action) = $key ORDER BY time, event_id"""  # noqa: S608
_CHILDREN = f"""SELECT {_COLS} FROM {DAY_SCAN} WHERE parent_span_id = $span AND activity <> 'decision' AND (trace_id = $trace OR $trace IS NULL)
  AND time >= $lo AND time <= $hi ORDER BY time, event_id"""  # noqa: S608


@dataclass(frozen=True)
class PathLink:
    """One directed link of a decision path and how it was established."""

    src: str
    dst: str
    kind: str
    how: str

    def to_json(self) -> dict[str, str]:
        """``{"from", "to", "kind", "how"}``."""
        return {"from": self.src, "to": self.dst, "kind": self.kind, "how": self.how}


@dataclass(frozen=True)
class PathNode:
    """An event (or, for delegators, an identity) on a path, with its summary."""

    node_id: str
    role: str
    summary: dict[str, Any] = field(hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The node id, its role in the path and its event summary."""
        return {"id": self.node_id, "role": self.role, **jsonable({k: v for k, v in self.summary.items() if v is not None})}


@dataclass(frozen=True)
class DecisionPath:
    """The decision path of one event."""

    event_id: str
    nodes: tuple[PathNode, ...]
    links: tuple[PathLink, ...]
    missing: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """DESIGN's ``path --json`` object plus the nodes' summaries."""
        return {"event_id": self.event_id, "links": [x.to_json() for x in self.links], "missing": list(self.missing),
                "nodes": [n.to_json() for n in self.nodes]}

    def link_set(self) -> set[tuple[str, str, str, str]]:
        """Links as (from, to, kind, how) tuples."""
        return {(x.src, x.dst, x.kind, x.how) for x in self.links}

    def render(self) -> str:
        """A text tree: lineage down to the action, then what it caused, then what is missing."""
        from io import StringIO

        from rich.console import Console
        from rich.markup import escape
        from rich.tree import Tree

        nodes = {n.node_id: n for n in self.nodes}
        children: dict[str, list[PathLink]] = {}
        has_parent = set()
        for lk in self.links:
            children.setdefault(lk.src, []).append(lk)
            has_parent.add(lk.dst)
        roots = [n.node_id for n in self.nodes if n.node_id not in has_parent] or [self.event_id]
        tree = Tree(f"decision path of {self.event_id}")
        seen: set[str] = set()

        def label(nid: str) -> str:
            n = nodes.get(nid)
            if n is None or n.role == "delegator":
                return escape(nid)
            s = n.summary
            bits = [iso(s.get("time")) or "", s.get("activity") or "", s.get("actor_id") or ""]
            for k in ("tool", "resource", "credential_id", "decision", "policy_version", "outcome"):
                if s.get(k):
                    bits.append(f"{k}={s[k]}")
            return escape(f"[{n.role}] " + " ".join(b for b in bits if b) + f"  ({nid})")

        def add(parent: Tree, nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for lk in children.get(nid, []):
                add(parent.add(escape(f"─{lk.kind}─ ({lk.how}) → ") + label(lk.dst)), lk.dst)

        for r in roots:
            add(tree.add(label(r)), r)
        if self.missing:
            miss = tree.add("missing")
            for m in self.missing:
                miss.add(escape(m))
        buf = StringIO()
        Console(file=buf, width=160, color_system=None, legacy_windows=False).print(tree)
        return buf.getvalue()


class _Builder:
    """Accumulates nodes, links and gaps while the path is walked."""

    def __init__(self) -> None:
        self.nodes: dict[str, PathNode] = {}
        self.links: list[PathLink] = []
        self.missing: list[str] = []

    def node(self, ev: dict[str, Any], role: str) -> str:
        self.nodes.setdefault(ev["event_id"], PathNode(ev["event_id"], role, ev))
        return str(ev["event_id"])

    def link(self, src: str, dst: str, kind: str, how: str) -> None:
        lk = PathLink(src, dst, kind, how)
        if lk not in self.links:
            self.links.append(lk)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
    r = rows(con, sql, params)
    return r[0] if r else None


def _in_window(con: duckdb.DuckDBPyConnection, sql: str, lo: dt.datetime, hi: dt.datetime,
               params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a ``{DAY_SCAN}`` query over the day files of ``[lo, hi]`` only."""
    files = window_files(con, lo, hi)
    return rows(con, sql, {**params, "lo": lo, "hi": hi, "files": files}) if files else []


def _by_id(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any] | None:
    """One event by id, reading only the day partition(s) the event-id index names."""
    files = day_files(con, key_days(con, event_id))
    return _one(con, _BY_ID, {"id": event_id, "files": files}) if files else None


def _issuance(con: duckdb.DuckDBPyConnection, cid: str) -> dict[str, Any] | None:
    """The first (time, event_id) successful issuance record of a credential."""
    files = day_files(con, key_days(con, cid))
    return _one(con, _ISSUANCE, {"cid": cid, "issuing": list(ISSUING), "files": files}) if files else None


def _lineage(con: duckdb.DuckDBPyConnection, b: _Builder, action: dict[str, Any]) -> None:
    """Walk credential_parent_id from the action's credential up to the root authentication."""
    cid = action.get("credential_id")
    if not cid:
        b.missing.append("the event carries no credential: no credential lineage")
        _delegation(b, None, action)  # GCP delegation chains, k8s impersonation: on the action itself
        return
    issuance = _issuance(con, cid)
    if issuance is None:
        b.missing.append(f"no issuance record for credential {cid}")
        _delegation(b, None, action)
        return
    if issuance["event_id"] != action["event_id"]:
        b.node(issuance, "credential")
        b.link(issuance["event_id"], action["event_id"], "used_credential", "shared credential_id")
    _delegation(b, issuance, action)
    child, seen = issuance, {cid}
    for _ in range(MAX_LINEAGE):
        parent_id = child.get("credential_parent_id")
        if not parent_id:
            if child["activity"] not in ("session.started", "svid.minted") and child.get("actor_type") == "human":
                b.missing.append(f"no root authentication (login) found before credential {child['credential_id']}")
            return
        if parent_id in seen:
            b.missing.append(f"credential lineage loops at {parent_id}")
            return
        seen.add(parent_id)
        parent = _issuance(con, parent_id)
        if parent is None:
            b.missing.append(f"no issuance record for parent credential {parent_id} of {child['credential_id']}")
            return
        role = "root_authentication" if parent["activity"] == "session.started" else "credential"
        b.node(parent, role)
        kind = "authenticated" if parent["activity"] == "session.started" else _LINEAGE_KIND.get(
            child["activity"], "issued")
        b.link(parent["event_id"], child["event_id"], kind, f"credential_parent_id ({child['activity']})")
        child = parent


def _delegation(b: _Builder, issuance: dict[str, Any] | None, action: dict[str, Any]) -> None:
    """On whose behalf, from the issuance's act chain / on_behalf_of, else from the action record."""
    sources = [(issuance, str(issuance["activity"]))] if issuance is not None else []
    for ev, where in (*sources, (action, "the action record")):
        chain = ev.get("delegation_chain") or []
        obo = ev.get("on_behalf_of") or (chain[0] if len(chain) > 1 else None)
        if obo and obo != ev.get("actor_id"):
            nid = f"identity:{obo}"
            b.nodes.setdefault(nid, PathNode(nid, "delegator", {"identity": obo, "delegation_chain": chain,
                                                                  "delegated_scope": ev.get("scope")}))
            how = "act chain (delegation_chain)" if len(chain) > 1 else "on_behalf_of"
            b.link(nid, ev["event_id"], "delegated_by", f"{how} on {where}")
            return


def _svid(con: duckdb.DuckDBPyConnection, b: _Builder, action: dict[str, Any]) -> None:
    """The SVID minted for the workload the request came from, valid at the time."""
    wl = action.get("src_workload")
    if not wl or not str(wl).startswith("spiffe://"):
        return
    if con not in _SVIDS_BUILT:
        con.execute(_SVIDS)
        _SVIDS_BUILT.add(con)
    svid = _one(con, _SVID, {"spiffe": wl, "t": action["time"]})
    if svid is None:
        b.missing.append(f"no SVID valid at the time for workload {wl}")
        return
    b.node(svid, "workload_identity")
    b.link(svid["event_id"], action["event_id"], "workload_svid", "src_workload = SVID spiffe_id, minted ≤ t < expiry")


def _decisions(con: duckdb.DuckDBPyConnection, b: _Builder, action: dict[str, Any]) -> None:
    """The authorization decision(s) for this request: by trace+span, else request id, else time on credential."""
    t = action["time"]
    found: list[dict[str, Any]] = []
    how = ""
    if action.get("trace_id") and action.get("span_id"):
        found = _in_window(con, _DEC_SPAN, t - ID_WINDOW, t + ID_WINDOW,
                           {"trace": action["trace_id"], "span": action["span_id"]})
        how = "shared trace_id+span_id"
    if not found and action.get("request_id"):
        found = _in_window(con, _DEC_REQ, t - ID_WINDOW, t + ID_WINDOW, {"rid": action["request_id"]})
        how = "shared request_id"
    key = action.get("tool") or action.get("action")
    if not found and action.get("credential_id") and key:
        found = _in_window(con, _DEC_CRED, t - MATCH_WINDOW, t + MATCH_WINDOW,
                           {"cid": action["credential_id"], "key": key})
        how = "time match within 5s on credential_id and action"
    if not found:
        b.missing.append("no authorization decision found")
        return
    for d in found:
        b.node(d, "decision")
        b.link(d["event_id"], action["event_id"], "decided", how)


def _downstream(con: duckdb.DuckDBPyConnection, b: _Builder, action: dict[str, Any]) -> None:
    """Actions whose parent_span_id is this action's span, recursively (other agents included)."""
    frontier = [action]
    while frontier and len(b.nodes) < MAX_DOWNSTREAM:
        ev = frontier.pop(0)
        if not ev.get("span_id"):
            continue
        kids = _in_window(con, _CHILDREN, ev["time"] - ID_WINDOW, ev["time"] + ID_WINDOW,
                          {"span": ev["span_id"], "trace": ev.get("trace_id")})
        for k in kids:
            if k["event_id"] in b.nodes:
                continue
            b.node(k, "caused")
            how = "parent_span_id = span_id" + (" (same trace_id)" if ev.get("trace_id") else "")
            b.link(ev["event_id"], k["event_id"], "caused", how)
            frontier.append(k)


def decision_path(con: duckdb.DuckDBPyConnection, event_id: str) -> DecisionPath:
    """Reconstruct the decision path of one event (normally a tool call or API action)."""
    ev = _by_id(con, event_id)
    if ev is None:
        raise ConfigError(f"no event {event_id!r} in the lake: check the id (e.g. from `decisionpath detect --json`)")
    b = _Builder()
    b.node(ev, "action")
    _lineage(con, b, ev)
    _svid(con, b, ev)
    if ev["activity"] not in ISSUING and ev["activity"] != "decision":
        _decisions(con, b, ev)
    _downstream(con, b, ev)
    return DecisionPath(event_id, tuple(b.nodes.values()), tuple(b.links), tuple(b.missing))
