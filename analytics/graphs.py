"""Per-identity decision graphs (networkx) built from DuckDB query results, and their exporters.

Nodes are typed (identity, credential, task, tool, resource, policy_version) with ids
``<type>:<value>``; edges are typed (authenticated, issued, exchanged_for, delegated_by, decided,
invoked, accessed, caused), carry ``how`` and are collapsed per (source, target, kind) into one
edge with ``count``, ``first_seen`` and ``last_seen``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import networkx as nx
import orjson

from analytics.lake import BY_FILES, materialize, window_files
from analytics.timeparse import iso, parse_instant
from ingest.errors import ConfigError

NODE_TYPES = ("identity", "credential", "task", "tool", "resource", "policy_version")
EDGE_KINDS = ("authenticated", "issued", "exchanged_for", "delegated_by", "decided", "invoked", "accessed", "caused")
FORMATS = ("json", "graphml", "dot")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_END = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)

# Each query returns (src_type, src, dst_type, dst, kind, how, count, first_seen, last_seen[, detail]).
# `{events}`, `{decisions}`, `{actions}` name the view, or its `<view>_in($files)` macro over a window's days.
_MINE = "actor_id = $identity AND time >= $since AND time <= $until"
_EDGE_QUERIES: tuple[str, ...] = (
    # the identity presented a credential (a login session is an authentication too)
    f"""SELECT 'identity', actor_id, 'credential', credential_id, 'authenticated',
           CASE WHEN activity = 'session.started' THEN 'session.started by actor_id'
                ELSE 'credential_id presented on events' END, count(*), min(time), max(time)
        FROM {{events}} WHERE {_MINE} AND credential_id IS NOT NULL
          AND activity NOT IN ('token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted', 'role.assumed')
        GROUP BY ALL""",  # noqa: S608 (fixed fragments only)
    # credentials issued to (or, for role sessions, obtained by) the identity
    f"""SELECT 'identity', actor_id, 'credential', credential_id, 'issued', activity || ' to actor_id',
           count(*), min(time), max(time)
        FROM {{events}} WHERE {_MINE} AND credential_id IS NOT NULL
          AND activity IN ('token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted', 'role.assumed')
        GROUP BY ALL""",  # noqa: S608
    f"""SELECT 'credential', credential_parent_id, 'credential', credential_id, 'exchanged_for',
           'credential_parent_id (' || activity || ')', count(*), min(time), max(time)
        FROM {{events}} WHERE {_MINE} AND credential_id IS NOT NULL AND credential_parent_id IS NOT NULL
          AND activity IN ('token.issued', 'token.exchanged', 'token.refreshed', 'role.assumed')
        GROUP BY ALL""",  # noqa: S608
    f"""SELECT 'credential', credential_id, 'task', task_id, 'issued', 'task_id on ' || activity,
           count(*), min(time), max(time)
        FROM {{events}} WHERE {_MINE} AND credential_id IS NOT NULL AND task_id IS NOT NULL
          AND activity IN ('token.issued', 'token.exchanged', 'token.refreshed', 'role.assumed')
        GROUP BY ALL""",  # noqa: S608
    f"""SELECT 'identity', actor_id, 'identity', coalesce(on_behalf_of, delegation_chain[1]), 'delegated_by',
           CASE WHEN len(coalesce(delegation_chain, [])) > 1 THEN 'act chain (delegation_chain)' ELSE 'on_behalf_of' END,
           count(*), min(time), max(time)
        FROM {{events}} WHERE {_MINE}
          AND coalesce(on_behalf_of, CASE WHEN len(coalesce(delegation_chain, [])) > 1 THEN delegation_chain[1] END)
              IS NOT NULL
          AND coalesce(on_behalf_of, delegation_chain[1]) <> actor_id
        GROUP BY ALL""",  # noqa: S608
    # others acting on behalf of the identity
    """SELECT 'identity', actor_id, 'identity', on_behalf_of, 'delegated_by', 'on_behalf_of', count(*), min(time),
           max(time)
        FROM {events} WHERE on_behalf_of = $identity AND actor_id <> $identity AND time >= $since AND time <= $until
        GROUP BY ALL""",
    f"""SELECT 'policy_version', policy_id || '@' || policy_version, 'identity', actor_id, 'decided',
           'decision record on actor_id: ' || decision, count(*), min(time), max(time), decision
        FROM {{decisions}} WHERE {_MINE} AND policy_id IS NOT NULL AND policy_version IS NOT NULL
        GROUP BY ALL""",  # noqa: S608
    f"""SELECT 'identity', actor_id, 'tool', tool, 'invoked', activity || ' by actor_id', count(*), min(time),
           max(time)
        FROM {{actions}} WHERE {_MINE} AND tool IS NOT NULL GROUP BY ALL""",  # noqa: S608
    f"""SELECT 'identity', actor_id, 'resource', resource, 'accessed', activity || ' on resource', count(*),
           min(time), max(time)
        FROM {{actions}} WHERE {_MINE} AND resource IS NOT NULL GROUP BY ALL""",  # noqa: S608
    f"""WITH mine AS (SELECT DISTINCT trace_id, span_id FROM {{events}} WHERE {_MINE} AND span_id IS NOT NULL)
        SELECT 'identity', $identity, 'identity', c.actor_id, 'caused', 'parent_span_id = span_id (same trace_id)',
               count(*), min(c.time), max(c.time)
        FROM {{events}} c JOIN mine m ON c.parent_span_id = m.span_id AND c.trace_id IS NOT DISTINCT FROM m.trace_id
        WHERE c.actor_id IS NOT NULL AND c.actor_id <> $identity AND c.activity <> 'decision'
          AND c.time >= $since AND c.time <= $until
        GROUP BY ALL""",  # noqa: S608
)


def _iso_sql(col: str) -> str:
    """SQL giving ``analytics.timeparse.iso`` of a TIMESTAMPTZ column (UTC session): the fraction only when non-zero."""
    us = f"((epoch_us({col}) % 1000000 + 1000000) % 1000000)"
    return (f"strftime({col}, '%Y-%m-%dT%H:%M:%S') || CASE WHEN {us} = 0 THEN '' "
            f"ELSE '.' || lpad({us}::VARCHAR, 6, '0') END || 'Z'")


def _ordered(q: str) -> str:
    """An edge query with its times also as ISO text, in one order whatever the scan order (threads, files),
    so that exports and merged "how" texts are reproducible. Every row gets the 10th (detail) column."""
    n = 10 if "'decided'" in q else 9
    cols = ", ".join(f"c{i}" for i in range(n))
    detail = "c9" if n == 10 else "NULL"
    return (f"SELECT c0, c1, c2, c3, c4, c5, c6, c7, c8, {detail}, {_iso_sql('c7')}, {_iso_sql('c8')} "  # noqa: S608
            f"FROM ({q}) t({cols}) ORDER BY ALL")  # (the module's own edge queries)


_ORDERED_QUERIES = tuple(_ordered(q) for q in _EDGE_QUERIES)
_CREDENTIAL_ATTRS = f"""
SELECT credential_id, credential_type,
       array_to_string(list_transform(scope, lambda x: coalesce(x, 'None')), ' ') AS scope,
       {_iso_sql('issued_at')} AS issued_at, {_iso_sql('expires_at')} AS expires_at,
       {_iso_sql('revoked_at')} AS revoked_at
FROM credentials WHERE credential_id IN (SELECT unnest($ids))"""  # noqa: S608 (constant)


def build_graph(edges: list[tuple[Any, ...]], identity: str) -> nx.MultiDiGraph:
    """A typed, counted MultiDiGraph from edge rows (pure: no I/O).

    A row is (src_type, src, dst_type, dst, kind, how, count, first, last[, detail[, first_iso, last_iso]]);
    rows of one edge (same ends and key) are merged: counts added, the earliest first and latest last kept.
    """
    g = nx.MultiDiGraph(identity=identity)
    g.add_node(f"identity:{identity}", type="identity", label=identity)
    span: dict[tuple[str, str, str], list[Any]] = {}  # merged edges' [first, last], compared as times, not text
    for row in edges:
        st, s, tt, t, kind, how, count, first, last = row[:9]
        if s is None or t is None:
            continue
        a, b = f"{st}:{s}", f"{tt}:{t}"
        for nid, typ, lab in ((a, st, s), (b, tt, t)):
            if nid not in g:
                g.add_node(nid, type=typ, label=str(lab))
        detail = row[9] if len(row) >= 10 else None
        key = kind if detail is None else f"{kind}:{detail}"
        if g.has_edge(a, b, key):
            e = g.edges[a, b, key]
            e["count"] += int(count)
            sp = span.setdefault((a, b, key), [_parse(e["first_seen"]), _parse(e["last_seen"])])
            sp[0] = first if sp[0] is None or (first is not None and first < sp[0]) else sp[0]
            sp[1] = last if sp[1] is None or (last is not None and last > sp[1]) else sp[1]
            if how not in e["how"].split("; "):
                e["how"] += "; " + how
        else:
            f_iso, l_iso = (row[10], row[11]) if len(row) >= 12 else (iso(first), iso(last))
            attrs = {"kind": kind, "how": how, "count": int(count), "first_seen": f_iso or "",
                     "last_seen": l_iso or ""}
            if detail is not None:
                attrs["decision"] = detail
            g.add_edge(a, b, key=key, **attrs)
    for (a, b, key), (first, last) in span.items():
        g.edges[a, b, key].update(first_seen=iso(first) or "", last_seen=iso(last) or "")
    return g


def _parse(text: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def identity_graph(
    con: duckdb.DuckDBPyConnection,
    identity: str,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
) -> nx.MultiDiGraph:
    """The decision graph of ``identity`` over ``[since, until]`` (unbounded when None)."""
    lo = parse_instant(since, "--since") if since is not None else _EPOCH
    hi = parse_instant(until, "--until") if until is not None else _END
    p: dict[str, Any] = {"identity": identity, "since": lo, "until": hi}
    views = {v: v for v in BY_FILES}
    if since is not None and until is not None:  # a window: read only the files of its UTC days
        p["files"] = window_files(con, lo, hi)
        views = {v: f"{v}_in($files)" for v in BY_FILES}
    edges: list[tuple[Any, ...]] = []
    if p.get("files") != []:  # (files outside any day directory are always listed)
        for q in _ORDERED_QUERIES:
            for v, src in views.items():
                q = q.replace("{" + v + "}", src)
            edges += con.execute(q, p).fetchall()
    g = build_graph(edges, identity)
    creds = [n[len("credential:"):] for n, d in g.nodes(data=True) if d["type"] == "credential"]
    if creds:
        # The materialized mart (built once per connection) joined to the id list: an agent holds thousands.
        materialize(con)
        cur = con.execute(_CREDENTIAL_ATTRS, {"ids": sorted(creds)})
        names = [d[0] for d in cur.description][1:]
        nodes = g.nodes
        for cid, *vals in cur.fetchall():
            nodes[f"credential:{cid}"].update({k: v for k, v in zip(names, vals, strict=True) if v is not None})
    return g


def _dot_id(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: nx.MultiDiGraph) -> str:
    """Graphviz DOT text (quoted, escaped ids; no pydot needed)."""
    shapes = {"identity": "ellipse", "credential": "note", "task": "folder", "tool": "box", "resource": "cylinder",
              "policy_version": "hexagon"}
    out = ["digraph decision_graph {", "  rankdir=LR;"]
    for n, d in g.nodes(data=True):
        out.append(f"  {_dot_id(n)} [label={_dot_id(str(d.get('label', n)))}, shape={shapes.get(d.get('type'), 'ellipse')}, "
                   f"type={_dot_id(str(d.get('type')))}];")
    for a, b, d in g.edges(data=True):
        lab = d["kind"] + (f" x{d['count']}" if d.get("count", 1) > 1 else "")
        out.append(f"  {_dot_id(a)} -> {_dot_id(b)} [label={_dot_id(lab)}, how={_dot_id(d['how'])}];")
    out.append("}")
    return "\n".join(out) + "\n"


def export_graph(g: nx.MultiDiGraph, fmt: str) -> str:
    """The graph as node-link JSON, GraphML or DOT text."""
    if fmt == "json":
        data = nx.node_link_data(g, edges="links")
        return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"
    if fmt == "graphml":
        return "\n".join(nx.generate_graphml(g)) + "\n"
    if fmt == "dot":
        return to_dot(g)
    raise ConfigError(f"unknown graph format {fmt!r}: use one of {', '.join(FORMATS)}")
