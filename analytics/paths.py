"""Decision paths: the chain of events that made one action possible, each link saying how it was made.

root authentication → credential lineage (issuance, exchange, refresh, role assumption, SVID) →
delegation → authorization decision(s) → the action and its outcome → the actions it caused.
Links come from shared ids (credential_id/credential_parent_id, trace+span, request id, SPIFFE ID)
and, only when no id links them, from a ±5 s time match on the credential; what cannot be found is
listed in ``missing``, never invented.

Paths are built set-wise (``decision_paths``): each step is one query for a whole batch of paths (a join of
the day files covering all their windows with a probe of per-path ids and time bounds, passed as list
parameters), and the lineage and downstream walks advance one level at a time for every path at once.
``decision_path`` is a batch of one.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from analytics.lake import (
    CACHEABLE,
    DAY_SCAN,
    cached_at_hand,
    cached_table,
    day_files,
    index_at_hand,
    index_keys,
    is_shared,
    jsonable,
    rows,
    snapshot_files,
    spans_files,
)
from analytics.timeparse import iso
from ingest.errors import ConfigError

MATCH_WINDOW = dt.timedelta(seconds=5)
ID_WINDOW = dt.timedelta(hours=1)  # bounds id-linked lookups in time so day/row-group stats prune
MAX_LINEAGE = 12
MAX_DOWNSTREAM = 200
BATCH = 2000  # paths built together: bounds the probe lists and the days one query reads

ISSUING = ("session.started", "token.issued", "token.exchanged", "token.refreshed", "svid.minted", "role.assumed")
_LINEAGE_KIND = {"token.exchanged": "exchanged_for", "token.refreshed": "refreshed_to", "role.assumed": "role_assumed",
                 "svid.minted": "issued", "token.issued": "issued", "session.started": "authenticated"}

_COLS = """event_id, time, source, category, activity, actor_id, actor_type, on_behalf_of, delegation_chain,
       src_workload, credential_id, credential_type, credential_parent_id, credential_expires_at, scope, action,
       tool, resource, decision, policy_id, policy_version, reason, outcome, task_id, trace_id, span_id,
       parent_span_id, request_id"""
# The same columns of the joined scan `e`, in the same order: node summaries (and so the JSON) keep it.
_E_COLS = ", ".join(f"e.{c.strip()}" for c in _COLS.split(","))
_KEY = "path_key"


def _probe(**cols: str) -> str:
    """A subquery of one row per probe, zipped from list parameters of the same names: ``path_key`` (the
    probe's position) plus the typed columns. Only constant names and types go into the SQL text."""
    typed = {_KEY: "BIGINT", **cols}
    return "(SELECT " + ", ".join(f"unnest(CAST(${c} AS {t}[])) AS {c}" for c, t in typed.items()) + ")"


_WINDOW = {"lo": "TIMESTAMPTZ", "hi": "TIMESTAMPTZ"}

_KEY_DAYS = "SELECT day FROM key_days WHERE h IN (SELECT hash(unnest($keys)))"  # day_files dedups
_BY_IDS = f"""SELECT {_COLS} FROM {DAY_SCAN}
WHERE list_contains(CAST($ids AS VARCHAR[]), event_id)"""  # noqa: S608 (constant; a filter of the scan, no join)
# The same by a hash join: for many ids (10M events, 7,000 ids over the index's 209 day files: 1.16 s against
# 1.74 s) and for a scan of every file.
_BY_IDS_JOIN = f"""SELECT {_COLS} FROM {DAY_SCAN}
WHERE event_id IN (SELECT unnest(CAST($ids AS VARCHAR[])))"""  # noqa: S608 (constant)
_JOIN_IDS = 1000
_ISSUANCES = f"""SELECT {_COLS} FROM {DAY_SCAN}
WHERE credential_id IN (SELECT unnest($cids)) AND activity IN $issuing
  AND coalesce(outcome, 'success') <> 'failure'
QUALIFY row_number() OVER (PARTITION BY credential_id ORDER BY time, event_id) = 1"""  # noqa: S608
# Every issuance record reduced to (hash of its credential, hash of its parent, day), cached per snapshot. The
# lineage walk follows it (an in-memory lookup per level) to the days of all ancestors' issuances, then reads
# those days once (`_ISSUANCES_H`), where a scan per level read the same day files again at every level.
_ISSUING_SQL = ", ".join(f"'{a}'" for a in ISSUING)  # the constant activity names above
_LINEAGE = f"""SELECT DISTINCT hash(credential_id) AS h,
  CASE WHEN credential_parent_id IS NOT NULL THEN hash(credential_parent_id) END AS parent_h, day
FROM raw_events WHERE credential_id IS NOT NULL AND activity IN ({_ISSUING_SQL})
  AND coalesce(outcome, 'success') <> 'failure' ORDER BY h"""  # noqa: S608 (constants)
CACHEABLE["path_lineage"] = _LINEAGE
_LINEAGE_BUILT: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
_LINEAGE_ROOTS = """SELECT h, parent_h, day FROM path_lineage
WHERE list_contains(list_transform(CAST($cids AS VARCHAR[]), lambda c: hash(c)), h)"""
_LINEAGE_UP = "SELECT h, parent_h, day FROM path_lineage WHERE list_contains(CAST($hs AS UBIGINT[]), h)"
_ISSUANCES_H = f"""SELECT {_COLS} FROM {DAY_SCAN}
WHERE list_contains(CAST($hs AS UBIGINT[]), hash(credential_id)) AND activity IN $issuing
  AND coalesce(outcome, 'success') <> 'failure'
QUALIFY row_number() OVER (PARTITION BY credential_id ORDER BY time, event_id) = 1"""  # noqa: S608
# SVID mints are few; they are copied once per connection (`path_svids`) because a "valid at t" lookup cannot be
# bounded in time (an SVID may never expire) and would open every earlier day. Sorted by `actor_h = hash(actor_id)`:
# the join's key range prunes to the probes' row groups, where SPIFFE ID statistics (8-byte prefixes) prune none.
_SVIDS = f"""SELECT hash(actor_id) AS actor_h, {_COLS} FROM events WHERE activity = 'svid.minted'
ORDER BY actor_h, actor_id, time"""  # noqa: S608
CACHEABLE["path_svids"] = _SVIDS
_SVID_SQL = f"""SELECT p.path_key, s.* EXCLUDE (actor_h) FROM {_probe(spiffe="VARCHAR", t="TIMESTAMPTZ")} p
  JOIN path_svids s ON s.actor_h = hash(p.spiffe) AND s.actor_id = p.spiffe AND s.time <= p.t{{recent}}
  AND (s.credential_expires_at IS NULL OR s.credential_expires_at > p.t)
QUALIFY row_number() OVER (PARTITION BY p.path_key
  ORDER BY (s.credential_type = 'x509_svid') DESC NULLS LAST, s.time DESC, s.event_id) = 1"""  # noqa: S608
_SVID = _SVID_SQL.format(recent="")
# When every SVID expires, none minted more than the longest lifetime before t is still valid at t: the join
# then reads only the mints of that span (a workload has tens of thousands of SVIDs).
_SVID_RECENT = _SVID_SQL.format(recent=" AND s.time >= p.t - to_microseconds($life_us)")
_SVID_LIFE = """SELECT max(epoch_us(credential_expires_at) - epoch_us(time)),
  count(*) FILTER (WHERE credential_expires_at IS NULL) FROM path_svids"""
# Per connection: the longest SVID lifetime in µs, or None when some SVID never expires (no bound).
_SVIDS_BUILT: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, int | None] = weakref.WeakKeyDictionary()
# Window joins: each probe row carries its own [lo, hi]; the scan covers the day files of all the windows.
_DEC_SPAN = f"""SELECT p.path_key, {_E_COLS} FROM {DAY_SCAN} e JOIN {_probe(trace="VARCHAR", span="VARCHAR", **_WINDOW)} p
  ON e.trace_id = p.trace AND e.span_id = p.span AND e.time BETWEEN p.lo AND p.hi
WHERE e.activity = 'decision' ORDER BY p.path_key, e.time, e.event_id"""  # noqa: S608
_DEC_REQ = f"""SELECT p.path_key, {_E_COLS} FROM {DAY_SCAN} e JOIN {_probe(rid="VARCHAR", **_WINDOW)} p
  ON e.request_id = p.rid AND e.time BETWEEN p.lo AND p.hi
WHERE e.activity = 'decision' ORDER BY p.path_key, e.time, e.event_id"""  # noqa: S608
_DEC_CRED = f"""SELECT p.path_key, {_E_COLS} FROM {DAY_SCAN} e JOIN {_probe(cid="VARCHAR", key="VARCHAR", **_WINDOW)} p
  ON e.credential_id = p.cid AND coalesce(e.tool, e.action) = p.key AND e.time BETWEEN p.lo AND p.hi
WHERE e.activity = 'decision' ORDER BY p.path_key, e.time, e.event_id"""  # noqa: S608
_CHILDREN = f"""SELECT p.path_key, {_E_COLS} FROM {DAY_SCAN} e JOIN {_probe(span="VARCHAR", trace="VARCHAR", **_WINDOW)} p
  ON e.parent_span_id = p.span AND e.time BETWEEN p.lo AND p.hi
WHERE e.activity <> 'decision' AND (e.trace_id = p.trace OR p.trace IS NULL)
ORDER BY p.path_key, e.time, e.event_id"""  # noqa: S608

Row = dict[str, Any]


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
    """Accumulates the nodes, links and gaps of one action's path while it is walked."""

    def __init__(self, action: Row) -> None:
        self.action = action
        self.nodes: dict[str, PathNode] = {}
        self.links: list[PathLink] = []
        self.missing: list[str] = []
        self.node(action, "action")

    def node(self, ev: Row, role: str) -> str:
        self.nodes.setdefault(ev["event_id"], PathNode(ev["event_id"], role, ev))
        return str(ev["event_id"])

    def link(self, src: str, dst: str, kind: str, how: str) -> None:
        lk = PathLink(src, dst, kind, how)
        if lk not in self.links:
            self.links.append(lk)

    def path(self) -> DecisionPath:
        return DecisionPath(self.action["event_id"], tuple(self.nodes.values()), tuple(self.links),
                            tuple(self.missing))


# --- set-wise lookups ------------------------------------------------------------------------------------

def _per_probe(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any], n: int) -> list[list[Row]]:
    """Run a probe query over ``n`` probes; its rows grouped by ``path_key``, in query order, the key removed."""
    out: list[list[Row]] = [[] for _ in range(n)]
    for r in rows(con, sql, {_KEY: list(range(n)), **params}):
        out[r.pop(_KEY)].append(r)
    return out


def _key_days(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> list[str]:
    """The days whose partitions may hold any of ``keys`` as an event id or credential id (one index query)."""
    index_keys(con)
    return [r[0] for r in con.execute(_KEY_DAYS, {"keys": list(keys)}).fetchall()]


def _in_windows(con: duckdb.DuckDBPyConnection, sql: str, keys: list[dict[str, Any]], times: list[dt.datetime],
                window: dt.timedelta) -> list[list[Row]]:
    """Per probe (its string ids ``keys[i]`` and time ``times[i]``): the rows of a window join within
    ±``window``, reading the day files of all the windows once."""
    if not keys:
        return []
    lo = [t - window for t in times]
    hi = [t + window for t in times]
    files = spans_files(con, zip(lo, hi, strict=True))
    if not files:
        return [[] for _ in keys]
    cols = {c: [k[c] for k in keys] for c in keys[0]}
    return _per_probe(con, sql, {**cols, "lo": lo, "hi": hi, "files": files}, len(keys))


# A connection whose snapshot lacks a whole-lake lookup table (the id index, `path_lineage`) answers this many
# batches without it (a scan of every file, a walk of the shared issuance); the next builds the table. A detect run
# asks once or twice; a connection that goes on asking gets the table.
ASKS_BEFORE_TABLE = 2
_ASKED: dict[str, weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, int]] = {
    "key_days": weakref.WeakKeyDictionary(), "path_lineage": weakref.WeakKeyDictionary()}


def _without_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether this batch on ``con`` goes without ``table`` (``ASKS_BEFORE_TABLE``), counting it if so."""
    asked = _ASKED[table].get(con, 0)
    if asked >= ASKS_BEFORE_TABLE:
        return False
    _ASKED[table][con] = asked + 1
    return True


def _key_files(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> tuple[list[str], bool]:
    """The files that may hold ``keys`` (event or credential ids), and whether the id index chose them.

    The index's days when the snapshot has the index (built or loaded on this connection, or cached for the
    snapshot: prepared snapshots, an earlier query); else every file, without building it, for the first
    ``ASKS_BEFORE_TABLE`` lookups of the connection: one scan of the ids costs less than the index (10M events:
    0.8 s for 10 ids against ~4 s), which every snapshot would build again for the few paths of each scheduled
    detect run. A connection that goes on asking (a batch of questions, an API user) then builds it once, and
    its lookups read the ids' days only (``path`` p50 33 ms instead of 82 ms at 1M).
    """
    if not index_at_hand(con) and _without_table(con, "key_days"):
        return snapshot_files(con), False
    return day_files(con, _key_days(con, keys)), True


def _by_ids(con: duckdb.DuckDBPyConnection, ids: Sequence[str],
            near: Iterable[tuple[dt.datetime, dt.datetime]] = ()) -> dict[str, Row]:
    """Events by id: first from the day files of the ``near`` windows (where the caller knows they lie, e.g. a
    finding's first and last seen), then the ids not found there through ``_key_files`` (the id index's days, or
    every file)."""
    found: dict[str, Row] = {}
    windows = list(near)
    if ids and windows and (files := spans_files(con, windows)):
        found = {r["event_id"]: r for r in rows(con, _BY_IDS if len(ids) < _JOIN_IDS else _BY_IDS_JOIN,
                                                 {"ids": list(ids), "files": files})}
    rest = [i for i in ids if i not in found]
    if not rest:
        return found
    files, indexed = _key_files(con, rest)
    if files:
        sql = _BY_IDS if indexed and len(rest) < _JOIN_IDS else _BY_IDS_JOIN
        found.update((r["event_id"], r) for r in rows(con, sql, {"ids": rest, "files": files}))
    return found


def _issuances(con: duckdb.DuckDBPyConnection, cids: Iterable[str], known: dict[str, Row | None]) -> None:
    """Add to ``known`` each credential's first (time, event_id) successful issuance record, or None."""
    todo = sorted({c for c in cids if c not in known})
    if not todo:
        return
    files, _ = _key_files(con, todo)
    got = {r["credential_id"]: r for r in rows(con, _ISSUANCES, {"cids": todo, "issuing": list(ISSUING),
                                                                    "files": files})} if files else {}
    known.update({c: got.get(c) for c in todo})


def _prefetch_lineage(con: duckdb.DuckDBPyConnection, cids: Iterable[str], known: dict[str, Row | None]) -> None:
    """Add to ``known`` the first successful issuance of each credential and of its ancestors (``_issuances``'s
    rows), reading the day files of all their issuances in one scan.

    ``path_lineage`` names, per credential hash, every parent hash and day of its issuance records; following
    parent hashes from ``cids`` reaches every ancestor's hash (collisions only add some), so the days read hold
    every issuance record of each credential returned: its first is the lake-wide first. A credential of
    ``cids`` with none returned has no issuance record (None); an ancestor not returned is left to ``_issuances``.
    """
    todo = sorted({c for c in cids if c not in known})
    if not todo:
        return
    if con not in _LINEAGE_BUILT and is_shared(con, "int_credential_issued") \
            and not cached_at_hand(con, "path_lineage") and _without_table(con, "path_lineage"):
        # A detect run's batch: walk the shared issuance. A connection that goes on asking (queries after
        # `materialize` share it too) builds the table instead: a walk per query reads the issuance a level at a
        # time (1M events: `path` p50 57-60 ms against 38-40 ms with the table).
        _prefetch_shared(con, todo, known)
        return
    if con not in _LINEAGE_BUILT:
        cached_table(con, "path_lineage")  # a scan of the issuance records (~3 s on 10M events), cached per snapshot
        _LINEAGE_BUILT.add(con)
    reached: set[int] = set()
    days: set[str] = set()
    found = con.execute(_LINEAGE_ROOTS, {"cids": todo}).fetchall()
    for level in range(MAX_LINEAGE + 1):
        reached.update(h for h, _, _ in found)
        days.update(d for *_, d in found if d is not None)  # files outside day directories: always read
        up = {p for _, p, _ in found if p is not None} - reached
        if not up or level == MAX_LINEAGE:
            break
        found = con.execute(_LINEAGE_UP, {"hs": sorted(up)}).fetchall()
    files = day_files(con, days) if reached else []
    got = {r["credential_id"]: r for r in rows(con, _ISSUANCES_H, {"hs": sorted(reached), "issuing": list(ISSUING),
                                                                      "files": files})} if files else {}
    known.update(got)
    known.update({c: None for c in todo if c not in got})


_SHARED_ISSUED = """SELECT credential_id, issue_event_id, issued_at, parent_id
FROM int_credential_issued_for(CAST($cids AS VARCHAR[]))"""


def _prefetch_shared(con: duckdb.DuckDBPyConnection, todo: list[str], known: dict[str, Row | None]) -> None:
    """``_prefetch_lineage`` in a detect run, whose connection shares ``int_credential_issued`` (cached and carried
    forward per snapshot, ``analytics.shared_cache``): its row per credential is the record ``_issuances`` finds
    (the first successful issuance by time, event id), so the walk follows its ``parent_id`` level by level in
    it, then reads those records by id from the days they were issued on. No whole-lake table is built for the
    few paths of a scheduled run (``path_lineage``: 0.7-1.5 s on each new snapshot at 10M). A credential (or
    ancestor) without a row has no issuance record: None, as ``_issuances`` would find."""
    first: dict[str, tuple[str, dt.datetime]] = {}
    ask = todo
    for _ in range(MAX_LINEAGE + 1):
        found = con.execute(_SHARED_ISSUED, {"cids": ask}).fetchall()
        first.update((c, (e, t)) for c, e, t, _ in found)
        known.update({c: None for c in ask if c not in first})
        ask = sorted({str(p) for *_, p in found if p is not None} - first.keys() - known.keys())
        if not ask:
            break
    by_id = _by_ids(con, [e for e, _ in first.values()], [(t, t) for _, t in first.values()])
    known.update({c: by_id[e] for c, (e, _) in first.items() if e in by_id})  # (else `_issuances` looks)


# --- the steps, each over all paths of a batch -------------------------------------------------------------

def _lineage(con: duckdb.DuckDBPyConnection, paths: list[_Builder], known: dict[str, Row | None]) -> None:
    """Walk credential_parent_id from each action's credential up to its root authentication, one level of
    every path at a time (the issuance records of every level read at once, by ``_prefetch_lineage``)."""
    _prefetch_lineage(con, (b.action["credential_id"] for b in paths if b.action.get("credential_id")), known)
    walks: list[tuple[_Builder, Row, set[str]]] = []  # (path, credential record reached, credentials seen)
    for b in paths:
        issuance = _first_hop(b, known)
        if issuance is not None:
            walks.append((b, issuance, {b.action["credential_id"]}))
    for _ in range(MAX_LINEAGE):
        asks = [(b, child, seen, parent_id) for b, child, seen in walks
                if (parent_id := _next_parent(b, child, seen)) is not None]
        _issuances(con, (parent_id for *_, parent_id in asks), known)
        walks = [(b, parent, seen) for b, child, seen, parent_id in asks
                 if (parent := _parent_hop(b, child, parent_id, known)) is not None]
        if not walks:
            return


def _first_hop(b: _Builder, known: dict[str, Row | None]) -> Row | None:
    """Link the action to its credential's issuance and its delegator; the issuance, if the walk goes on."""
    action = b.action
    cid = action.get("credential_id")
    if not cid:
        b.missing.append("the event carries no credential: no credential lineage")
        _delegation(b, None, action)  # GCP delegation chains, k8s impersonation: on the action itself
        return None
    issuance = known[cid]
    if issuance is None:
        b.missing.append(f"no issuance record for credential {cid}")
        _delegation(b, None, action)
        return None
    if issuance["event_id"] != action["event_id"]:
        b.node(issuance, "credential")
        b.link(issuance["event_id"], action["event_id"], "used_credential", "shared credential_id")
    _delegation(b, issuance, action)
    return issuance


def _next_parent(b: _Builder, child: Row, seen: set[str]) -> str | None:
    """The parent credential to look up next, or None when the walk ends here (noting why, if it is a gap)."""
    parent_id = child.get("credential_parent_id")
    if not parent_id:
        if child["activity"] not in ("session.started", "svid.minted") and child.get("actor_type") == "human":
            b.missing.append(f"no root authentication (login) found before credential {child['credential_id']}")
        return None
    if parent_id in seen:
        b.missing.append(f"credential lineage loops at {parent_id}")
        return None
    seen.add(parent_id)
    return str(parent_id)


def _parent_hop(b: _Builder, child: Row, parent_id: str, known: dict[str, Row | None]) -> Row | None:
    """Link the parent credential's issuance to the child's; the parent, or None if it has no issuance."""
    parent = known[parent_id]
    if parent is None:
        b.missing.append(f"no issuance record for parent credential {parent_id} of {child['credential_id']}")
        return None
    role = "root_authentication" if parent["activity"] == "session.started" else "credential"
    b.node(parent, role)
    kind = "authenticated" if parent["activity"] == "session.started" else _LINEAGE_KIND.get(child["activity"], "issued")
    b.link(parent["event_id"], child["event_id"], kind, f"credential_parent_id ({child['activity']})")
    return parent


def _delegation(b: _Builder, issuance: Row | None, action: Row) -> None:
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


def _svids(con: duckdb.DuckDBPyConnection, paths: list[_Builder]) -> None:
    """The SVID minted for the workload each request came from, valid at the time (one join for all)."""
    asks = [(b, str(wl)) for b in paths if (wl := b.action.get("src_workload")) and str(wl).startswith("spiffe://")]
    if not asks:
        return
    if con not in _SVIDS_BUILT:
        cached_table(con, "path_svids")  # a full scan (4-6 s on 10M events), cached per snapshot
        life, forever = con.execute(_SVID_LIFE).fetchone() or (None, 0)
        _SVIDS_BUILT[con] = None if forever else life
    probe: dict[str, Any] = {"spiffe": [wl for _, wl in asks], "t": [b.action["time"] for b, _ in asks]}
    life = _SVIDS_BUILT[con]
    found = _per_probe(con, _SVID, probe, len(asks)) if life is None else \
        _per_probe(con, _SVID_RECENT, {**probe, "life_us": life}, len(asks))
    for (b, wl), svid in zip(asks, found, strict=True):
        if not svid:
            b.missing.append(f"no SVID valid at the time for workload {wl}")
            continue
        b.node(svid[0], "workload_identity")
        b.link(svid[0]["event_id"], b.action["event_id"], "workload_svid",
               "src_workload = SVID spiffe_id, minted ≤ t < expiry")


def _span_keys(a: Row) -> dict[str, Any] | None:
    return {"trace": a["trace_id"], "span": a["span_id"]} if a.get("trace_id") and a.get("span_id") else None


def _request_keys(a: Row) -> dict[str, Any] | None:
    return {"rid": a["request_id"]} if a.get("request_id") else None


def _credential_keys(a: Row) -> dict[str, Any] | None:
    key = a.get("tool") or a.get("action")
    return {"cid": a["credential_id"], "key": key} if a.get("credential_id") and key else None


# How a decision is found, in order; a rule is tried for an action only if the ones before found nothing.
_DECISION_RULES: tuple[tuple[str, Callable[[Row], dict[str, Any] | None], dt.timedelta, str], ...] = (
    (_DEC_SPAN, _span_keys, ID_WINDOW, "shared trace_id+span_id"),
    (_DEC_REQ, _request_keys, ID_WINDOW, "shared request_id"),
    (_DEC_CRED, _credential_keys, MATCH_WINDOW, "time match within 5s on credential_id and action"),
)


def _decisions(con: duckdb.DuckDBPyConnection, paths: list[_Builder]) -> None:
    """The authorization decision(s) of each request: by trace+span, else request id, else time on credential."""
    found: dict[int, tuple[list[Row], str]] = {}
    for sql, keys_of, window, how in _DECISION_RULES:
        asks = [(i, k) for i, b in enumerate(paths) if i not in found and (k := keys_of(b.action)) is not None]
        hits = _in_windows(con, sql, [k for _, k in asks], [paths[i].action["time"] for i, _ in asks], window)
        found.update((i, (h, how)) for (i, _), h in zip(asks, hits, strict=True) if h)
    for i, b in enumerate(paths):
        if i not in found:
            b.missing.append("no authorization decision found")
            continue
        decisions, how = found[i]
        for d in decisions:
            b.node(d, "decision")
            b.link(d["event_id"], b.action["event_id"], "decided", how)


_SpanKey = tuple[str, str | None, dt.datetime]


def _span_of(ev: Row) -> _SpanKey:
    """What an event's children are looked up by: its span, its trace (may be None) and its time."""
    return ev["span_id"], ev.get("trace_id"), ev["time"]


def _downstream(con: duckdb.DuckDBPyConnection, paths: list[_Builder]) -> None:
    """Actions whose parent_span_id is an action's span, recursively (other agents included), breadth first.

    Each round queries the children of one whole BFS level of every path; a path's level is then consumed
    in queue order with the node cap checked before each parent, so the kept nodes are those a one-path
    FIFO walk keeps.
    """
    frontiers = [(b, [b.action]) for b in paths]
    while frontiers:
        spans = list(dict.fromkeys(_span_of(ev) for _, level in frontiers for ev in level if ev.get("span_id")))
        found = _in_windows(con, _CHILDREN, [{"span": s, "trace": t} for s, t, _ in spans],
                            [when for *_, when in spans], ID_WINDOW)
        kids = dict(zip(spans, found, strict=True))
        frontiers = [(b, nxt) for b, level in frontiers if (nxt := _caused(b, level, kids))]


def _caused(b: _Builder, level: list[Row], kids: dict[_SpanKey, list[Row]]) -> list[Row]:
    """Add the children of one BFS level of a path; the next level ([] once the node cap is reached)."""
    nxt: list[Row] = []
    for ev in level:
        if len(b.nodes) >= MAX_DOWNSTREAM:
            return []
        if not ev.get("span_id"):
            continue
        how = "parent_span_id = span_id" + (" (same trace_id)" if ev.get("trace_id") else "")
        for k in kids[_span_of(ev)]:
            if k["event_id"] in b.nodes:
                continue
            b.node(k, "caused")
            b.link(ev["event_id"], k["event_id"], "caused", how)
            nxt.append(k)
    return nxt


# --- entry points -------------------------------------------------------------------------------------------

def _build(con: duckdb.DuckDBPyConnection, actions: list[Row], known: dict[str, Row | None]) -> list[DecisionPath]:
    """The paths of a batch of actions, step by step for all of them (the step order of a path matters: it is
    the order of its nodes, links and gaps)."""
    paths = [_Builder(a) for a in actions]
    _lineage(con, paths, known)
    _svids(con, paths)
    _decisions(con, [b for b in paths if b.action["activity"] not in ISSUING and b.action["activity"] != "decision"])
    _downstream(con, paths)
    return [b.path() for b in paths]


def decision_paths(con: duckdb.DuckDBPyConnection, event_ids: Sequence[str],
                   near: Iterable[tuple[dt.datetime, dt.datetime]] = ()) -> dict[str, DecisionPath]:
    """The decision paths of many events (normally tool calls or API actions), built set-wise.

    Each step is one query per batch of up to ``BATCH`` paths (batches are cut in time order so each reads
    few days), never one per event; every path equals the one-event walk. Ids with no event in the lake are
    absent from the result (``decision_path`` turns that into a ``ConfigError``). Keys follow ``event_ids``.
    ``near``: time windows the events probably lie in (a hint: the day files of those windows are read first;
    ids not found there are looked up as without it).
    """
    ids = list(dict.fromkeys(event_ids))
    found = _by_ids(con, ids, near)
    actions = sorted(found.values(), key=lambda e: (e["time"], e["event_id"]))
    known: dict[str, Row | None] = {}  # issuance per credential id, shared by the batches
    built: dict[str, DecisionPath] = {}
    for i in range(0, len(actions), BATCH):
        built.update((p.event_id, p) for p in _build(con, actions[i:i + BATCH], known))
    return {e: built[e] for e in ids if e in built}


def decision_path(con: duckdb.DuckDBPyConnection, event_id: str) -> DecisionPath:
    """Reconstruct the decision path of one event (normally a tool call or API action)."""
    path = decision_paths(con, [event_id]).get(event_id)
    if path is None:
        raise ConfigError(f"no event {event_id!r} in the lake: check the id (e.g. from `decisionpath detect --json`)")
    return path
