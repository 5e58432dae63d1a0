"""Set-wise decision paths (``analytics.paths.decision_paths``) equal one-event paths, and detect uses them.

``decision_path`` is a batch of one, so the key check is batch-of-many == batch-of-one for every event:
a set-wise query that mixes up two events' rows (a join without the probe key, a window or cap shared
between paths, a fallback applied to the whole batch) shows up as a difference. The edge-case lake pins
the semantics the generated scenario rarely or never reaches (lineage loops and the lineage cap, request-id
and time-match decisions, SVID choice, children without a trace, windows across midnight, the node cap);
its expected paths were produced by the one-event implementation this replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

import analytics.paths as paths_mod
from analytics.detect import DetectSettings, run
from analytics.lake import connect
from analytics.paths import MAX_DOWNSTREAM, MAX_LINEAGE, DecisionPath, decision_path, decision_paths
from ingest.collect_files import ingest_files
from ingest.errors import ConfigError
from ingest.lake import Lake
from tests.analytics_factory import at, ev, make_lake

HUMAN = "bob@corp.example"
WL = "spiffe://corp.example/agent/edge"
FAN = 150  # children of the fan-out root, each with one grandchild: the node cap bites inside level 2
LINEAGE = 16  # credentials in the long chain, more than MAX_LINEAGE
ACTION_LIKE = ("tool.invoked", "api.call", "decision", "secret.read", "request")
USED, SVID_HOW = "shared credential_id", "src_workload = SVID spiffe_id, minted ≤ t < expiry"
TIME_HOW, NO_DECISION = "time match within 5s on credential_id and action", "no authorization decision found"
NO_CRED = "the event carries no credential: no credential lineage"


def edge_events() -> list[dict[str, Any]]:
    """Small timelines, one per edge of the path semantics, sharing a lake so batches can mix them up."""
    out = [
        ev("idp:loop1", 0, "token.exchanged", "agent-a", credential_id="L1", credential_parent_id="L2"),
        ev("idp:loop2", 1, "token.exchanged", "agent-a", credential_id="L2", credential_parent_id="L1"),
        ev("mcp:loop", 5, "tool.invoked", "agent-a", credential_id="L1", tool="t.loop", action="tools/call"),
        ev("idp:orphan", 2, "token.exchanged", "agent-b", credential_id="O1", credential_parent_id="ghost"),
        ev("mcp:orphan", 6, "tool.invoked", "agent-b", credential_id="O1", tool="t.orphan", action="tools/call"),
        ev("idp:nologin", 3, "token.issued", HUMAN, actor_type="human", credential_id="H1"),
        ev("mcp:nologin", 7, "tool.invoked", HUMAN, actor_type="human", credential_id="H1", tool="t.h",
           action="tools/call", on_behalf_of="carol@corp.example"),
        ev("idp:failed", 1, "token.issued", "agent-c", credential_id="F1", outcome="failure"),
        ev("mcp:failed", 8, "tool.invoked", "agent-c", credential_id="F1", tool="t.f", action="tools/call"),
        ev("mcp:nocred", 9, "tool.invoked", "agent-c", tool="t.n", action="tools/call",
           delegation_chain=[HUMAN, "agent-c"]),
    ]
    out += [ev(f"idp:long{i:02d}", 10 + i, "token.exchanged", "agent-d", credential_id=f"G{i}",
               credential_parent_id=f"G{i - 1}" if i else None) for i in range(LINEAGE)]
    out.append(ev("mcp:long", 40, "tool.invoked", "agent-d", credential_id=f"G{LINEAGE - 1}", tool="t.l",
                  action="tools/call"))
    out += [
        # decisions: by span, else request id (mcp:req's span has none), else ±5 s on credential + tool/action
        ev("idp:d", 0, "token.issued", "agent-e", credential_id="D1"),
        ev("opa:span", 100, "decision", "agent-e", credential_id="D1", tool="t.d", trace_id="tr-d", span_id="sp-d",
           request_id="rq-d", decision="allow"),
        ev("opa:req", 101, "decision", "agent-e", credential_id="D1", tool="t.d", request_id="rq-d", decision="allow"),
        ev("mcp:span", 102, "tool.invoked", "agent-e", credential_id="D1", tool="t.d", trace_id="tr-d",
           span_id="sp-d", request_id="rq-d"),
        ev("mcp:req", 103, "tool.invoked", "agent-e", credential_id="D1", tool="t.d", trace_id="tr-x",
           span_id="sp-x", request_id="rq-d"),
        ev("opa:time1", 200, "decision", "agent-e", credential_id="D1", tool="t.time", decision="deny"),
        ev("opa:time2", 203, "decision", "agent-e", credential_id="D1", action="t.time", decision="allow"),
        ev("opa:late", 210, "decision", "agent-e", credential_id="D1", tool="t.time", decision="allow"),
        ev("mcp:time", 204, "tool.invoked", "agent-e", credential_id="D1", tool="t.time", request_id="rq-none"),
        ev("api:time", 205, "api.call", "agent-e", credential_id="D1", action="t.time"),
        ev("opa:far", 100 + 7200, "decision", "agent-e", credential_id="D1", trace_id="tr-d", span_id="sp-d",
           decision="allow"),
        # SVIDs: x509 is preferred over a later JWT-SVID; an expired one does not count
        ev("spire:x509", 0, "svid.minted", WL, credential_id="x-1", credential_type="x509_svid",
           credential_expires_at=at(3600)),
        ev("spire:jwt", 50, "svid.minted", WL, credential_id="j-1", credential_type="jwt_svid",
           credential_expires_at=at(3600)),
        ev("spire:old", 0, "svid.minted", WL + "/old", credential_id="x-0", credential_type="x509_svid",
           credential_expires_at=at(10)),
        ev("mcp:svid", 300, "tool.invoked", WL, credential_id="D1", src_workload=WL, tool="t.s"),
        ev("mcp:svid-old", 301, "tool.invoked", WL + "/old", credential_id="D1", src_workload=WL + "/old",
           tool="t.s"),
        # downstream: a parent without a trace (children of any trace), a child > 1 h away (reached through
        # nt-again, which repeats the parent's span), a decision (never a child)
        ev("mcp:notrace", 400, "tool.invoked", "agent-f", span_id="nt"),
        ev("mcp:nt-kid", 401, "tool.invoked", "agent-f", trace_id="any", span_id="nt2", parent_span_id="nt"),
        ev("mcp:nt-far", 400 + 3601, "tool.invoked", "agent-f", trace_id="any", parent_span_id="nt"),
        ev("mcp:nt-again", 402, "tool.invoked", "agent-f", trace_id="any", span_id="nt", parent_span_id="nt"),
        ev("opa:nt-dec", 401, "decision", "agent-f", trace_id="any", span_id="nt3", parent_span_id="nt"),
        # a child on the next UTC day (T0 is 10:00 UTC) and one in another trace
        ev("mcp:eve", 14 * 3600 - 1800, "tool.invoked", "agent-g", trace_id="tr-m", span_id="m0"),
        ev("mcp:midnight", 14 * 3600 + 1200, "tool.invoked", "agent-g", trace_id="tr-m", span_id="m1",
           parent_span_id="m0"),
        ev("mcp:other-trace", 14 * 3600 - 1700, "tool.invoked", "agent-g", trace_id="tr-z", span_id="m2",
           parent_span_id="m0"),
        ev("mcp:fan", 1000, "tool.invoked", "agent-h", trace_id="tr-f", span_id="f"),
    ]
    for i in range(FAN):  # children in reverse id order by time, so time (not id) must decide what is kept
        out.append(ev(f"mcp:fan-{i:03d}", 1001 + (FAN - i) * 0.01, "tool.invoked", "agent-h", trace_id="tr-f",
                      span_id=f"f{i}", parent_span_id="f"))
        out.append(ev(f"mcp:fan-{i:03d}-kid", 1010 + i * 0.01, "tool.invoked", "agent-h", trace_id="tr-f",
                      span_id=f"g{i}", parent_span_id=f"f{i}"))
    return out


# (nodes as (id, role), links as (from, to, kind, how), missing), all in order, as the one-event walk gave them.
EXPECTED: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str, str, str]], list[str]]] = {
    "mcp:loop": (
        [("mcp:loop", "action"), ("idp:loop1", "credential"), ("idp:loop2", "credential")],
        [("idp:loop1", "mcp:loop", "used_credential", USED),
         ("idp:loop2", "idp:loop1", "exchanged_for", "credential_parent_id (token.exchanged)")],
        ["credential lineage loops at L1", NO_DECISION]),
    "mcp:orphan": (
        [("mcp:orphan", "action"), ("idp:orphan", "credential")],
        [("idp:orphan", "mcp:orphan", "used_credential", USED)],
        ["no issuance record for parent credential ghost of O1", NO_DECISION]),
    "mcp:nologin": (
        [("mcp:nologin", "action"), ("idp:nologin", "credential"), ("identity:carol@corp.example", "delegator")],
        [("idp:nologin", "mcp:nologin", "used_credential", USED),
         ("identity:carol@corp.example", "mcp:nologin", "delegated_by", "on_behalf_of on the action record")],
        ["no root authentication (login) found before credential H1", NO_DECISION]),
    "mcp:failed": ([("mcp:failed", "action")], [], ["no issuance record for credential F1", NO_DECISION]),
    "mcp:nocred": (
        [("mcp:nocred", "action"), (f"identity:{HUMAN}", "delegator")],
        [(f"identity:{HUMAN}", "mcp:nocred", "delegated_by", "act chain (delegation_chain) on the action record")],
        [NO_CRED, NO_DECISION]),
    "mcp:span": (
        [("mcp:span", "action"), ("idp:d", "credential"), ("opa:span", "decision")],
        [("idp:d", "mcp:span", "used_credential", USED), ("opa:span", "mcp:span", "decided", "shared trace_id+span_id")],
        []),
    "mcp:req": (
        [("mcp:req", "action"), ("idp:d", "credential"), ("opa:span", "decision"), ("opa:req", "decision")],
        [("idp:d", "mcp:req", "used_credential", USED), ("opa:span", "mcp:req", "decided", "shared request_id"),
         ("opa:req", "mcp:req", "decided", "shared request_id")],
        []),
    "mcp:time": (
        [("mcp:time", "action"), ("idp:d", "credential"), ("opa:time1", "decision"), ("opa:time2", "decision")],
        [("idp:d", "mcp:time", "used_credential", USED), ("opa:time1", "mcp:time", "decided", TIME_HOW),
         ("opa:time2", "mcp:time", "decided", TIME_HOW)],
        []),
    "api:time": (
        [("api:time", "action"), ("idp:d", "credential"), ("opa:time1", "decision"), ("opa:time2", "decision"),
         ("opa:late", "decision")],
        [("idp:d", "api:time", "used_credential", USED), ("opa:time1", "api:time", "decided", TIME_HOW),
         ("opa:time2", "api:time", "decided", TIME_HOW), ("opa:late", "api:time", "decided", TIME_HOW)],
        []),
    "mcp:svid": (
        [("mcp:svid", "action"), ("idp:d", "credential"), ("spire:x509", "workload_identity")],
        [("idp:d", "mcp:svid", "used_credential", USED), ("spire:x509", "mcp:svid", "workload_svid", SVID_HOW)],
        [NO_DECISION]),
    "mcp:svid-old": (
        [("mcp:svid-old", "action"), ("idp:d", "credential")],
        [("idp:d", "mcp:svid-old", "used_credential", USED)],
        [f"no SVID valid at the time for workload {WL}/old", NO_DECISION]),
    "mcp:notrace": (
        [("mcp:notrace", "action"), ("mcp:nt-kid", "caused"), ("mcp:nt-again", "caused"), ("mcp:nt-far", "caused")],
        [("mcp:notrace", "mcp:nt-kid", "caused", "parent_span_id = span_id"),
         ("mcp:notrace", "mcp:nt-again", "caused", "parent_span_id = span_id"),
         ("mcp:nt-again", "mcp:nt-far", "caused", "parent_span_id = span_id (same trace_id)")],
        [NO_CRED, NO_DECISION]),
    "mcp:eve": (
        [("mcp:eve", "action"), ("mcp:midnight", "caused")],
        [("mcp:eve", "mcp:midnight", "caused", "parent_span_id = span_id (same trace_id)")],
        [NO_CRED, NO_DECISION]),
}


def _shape(p: DecisionPath) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str]], list[str]]:
    return ([(n.node_id, n.role) for n in p.nodes], [(x.src, x.dst, x.kind, x.how) for x in p.links],
            list(p.missing))


def _json(p: DecisionPath) -> str:
    return json.dumps(p.to_json(), default=str, ensure_ascii=False)


def _all_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT event_id FROM events ORDER BY time, event_id").fetchall()]


@pytest.fixture(scope="module")
def edge_con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(make_lake(tmp_path_factory.mktemp("edge"), edge_events()))
    yield con
    con.close()


@pytest.fixture(scope="module")
def edge_batch(edge_con: duckdb.DuckDBPyConnection) -> dict[str, DecisionPath]:
    """Every event of the edge lake, in one batch."""
    return decision_paths(edge_con, _all_ids(edge_con))


@pytest.mark.parametrize("event_id", sorted(EXPECTED))
def test_edge_paths_match_the_one_event_walk(edge_batch: dict[str, DecisionPath], event_id: str) -> None:
    assert _shape(edge_batch[event_id]) == EXPECTED[event_id]


def test_lineage_stops_after_max_lineage_levels(edge_batch: dict[str, DecisionPath]) -> None:
    nodes, links, missing = _shape(edge_batch["mcp:long"])
    last = LINEAGE - 1
    assert nodes == [("mcp:long", "action")] + [(f"idp:long{i:02d}", "credential")
                                                 for i in range(last, last - MAX_LINEAGE - 1, -1)]
    assert links[0] == (f"idp:long{last:02d}", "mcp:long", "used_credential", USED)
    assert len(links) == MAX_LINEAGE + 1 and missing == [NO_DECISION]


def test_node_cap_keeps_what_the_fifo_walk_keeps(edge_batch: dict[str, DecisionPath]) -> None:
    """Level 1 is added whole (the cap is checked per parent); level 2 stops once the cap is reached,
    keeping the grandchildren of the earliest children."""
    p = edge_batch["mcp:fan"]
    kept = MAX_DOWNSTREAM - 1 - FAN
    assert [n.node_id for n in p.nodes] == (["mcp:fan"] + [f"mcp:fan-{i:03d}" for i in range(FAN - 1, -1, -1)]
                                            + [f"mcp:fan-{i:03d}-kid" for i in range(FAN - 1, FAN - 1 - kept, -1)])
    assert {x.kind for x in p.links} == {"caused"} and len(p.links) == len(p.nodes) - 1
    # the same subtree, reached from one of the children, is not capped by the root's walk
    assert _shape(edge_batch["mcp:fan-000"])[1] == [
        ("mcp:fan-000", "mcp:fan-000-kid", "caused", "parent_span_id = span_id (same trace_id)")]


def test_edge_batch_equals_batch_of_one(edge_con: duckdb.DuckDBPyConnection,
                                        edge_batch: dict[str, DecisionPath]) -> None:
    ids = _all_ids(edge_con)
    assert list(edge_batch) == ids
    assert {i: _json(p) for i, p in edge_batch.items()} == {i: _json(decision_path(edge_con, i)) for i in ids}


def test_small_batches_equal_one_batch(edge_con: duckdb.DuckDBPyConnection, edge_batch: dict[str, DecisionPath],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths_mod, "BATCH", 7)
    ids = list(reversed(_all_ids(edge_con)))
    small = decision_paths(edge_con, ids)
    assert list(small) == ids  # keys follow the request, not the time order batches are cut in
    assert {i: _json(p) for i, p in small.items()} == {i: _json(p) for i, p in edge_batch.items()}


def test_queries_per_step_not_per_event(edge_con: duckdb.DuckDBPyConnection,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch runs a bounded number of lake queries (steps × levels), whatever the number of events."""
    calls: list[str] = []
    real = paths_mod.rows

    def counting(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        calls.append(sql)
        return real(con, sql, params)

    monkeypatch.setattr(paths_mod, "rows", counting)
    ids = _all_ids(edge_con)
    decision_paths(edge_con, ids)
    # by id 1, issuance 1 + MAX_LINEAGE levels, SVIDs 1, decisions 3, downstream one per BFS level (here 4)
    assert len(calls) <= 1 + 1 + MAX_LINEAGE + 1 + 3 + 4 < len(ids) / 10


def _forget_cached(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Remove ``name``'s cached file for the connection's snapshot (other tests' connections may have made it)."""
    import analytics.lake as lake_mod

    cache = lake_mod.mart_cache_dir(con)
    assert cache is not None
    for f in cache.glob(f"{name}-*.parquet"):
        f.unlink()
    assert not lake_mod.cached_at_hand(con, name)


def test_a_detect_connection_walks_the_lineage_in_the_shared_issuance(edge_con: duckdb.DuckDBPyConnection,
                                                                     edge_batch: dict[str, DecisionPath],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ``int_credential_issued`` is shared (a detect run), the lineage is walked in it instead of the
    whole-lake ``path_lineage`` table: the same paths, loops, orphans, failed issuance and the lineage cap included."""
    import analytics.lake as lake_mod

    con = connect(lake_mod._SNAPSHOT[edge_con][0])
    _forget_cached(con, "path_lineage")  # the edge batch's connection cached it for the snapshot
    lake_mod.share(con, "int_credential_issued")
    assert lake_mod.is_shared(con, "int_credential_issued")
    built: list[str] = []
    real = paths_mod.cached_table
    monkeypatch.setattr(paths_mod, "cached_table", lambda c, name: (built.append(name), real(c, name))[1])
    lookups: list[str] = []
    real_rows = paths_mod.rows
    monkeypatch.setattr(paths_mod, "rows", lambda c, sql, params=None: (lookups.append(sql), real_rows(c, sql, params))[1])
    ids = _all_ids(con)
    shared = decision_paths(con, ids)
    assert "path_lineage" not in built and con not in paths_mod._LINEAGE_BUILT
    assert paths_mod._ISSUANCES not in lookups  # every ancestor was reached by the walk, none looked up after it
    assert {i: _json(p) for i, p in shared.items()} == {i: _json(p) for i, p in edge_batch.items()}
    # A connection that goes on asking builds the table after ASKS_BEFORE_TABLE walks (one query per level each).
    again = [decision_paths(con, ids) for _ in range(paths_mod.ASKS_BEFORE_TABLE)]
    assert built.count("path_lineage") == 1 and con in paths_mod._LINEAGE_BUILT
    assert all({i: _json(p) for i, p in g.items()} == {i: _json(p) for i, p in shared.items()} for g in again)
    con.close()


def test_unknown_and_repeated_ids(edge_con: duckdb.DuckDBPyConnection) -> None:
    got = decision_paths(edge_con, ["mcp:nope", "mcp:loop", "mcp:loop", "x' OR 1=1 --", "mcp:span"])
    assert list(got) == ["mcp:loop", "mcp:span"]
    assert decision_paths(edge_con, []) == {}
    with pytest.raises(ConfigError, match="no event 'mcp:nope' in the lake"):
        decision_path(edge_con, "mcp:nope")


# --- a generated scenario: a few hundred action-like events, each equal to its batch of one ------------------

@pytest.fixture(scope="module")
def scenario_con(scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    lake = tmp_path_factory.mktemp("paths_batch_lake")
    ingest_files(sorted(p for p in scenario.glob("*.jsonl") if p.name not in ("labels.jsonl", "truth.jsonl")),
                 Lake(lake))
    con = connect(lake)
    yield con
    con.close()


def test_scenario_batch_equals_batch_of_one(scenario_con: duckdb.DuckDBPyConnection) -> None:
    """A contiguous run of action-like events (so tool calls, their decisions and their children share
    traces, spans and credentials inside the batch) plus the events the detectors raise alerts on."""
    from analytics.detect import detect_findings

    actions = [r[0] for r in scenario_con.execute(
        "SELECT event_id FROM events WHERE activity IN (SELECT unnest($a)) ORDER BY time, event_id",
        {"a": list(ACTION_LIKE)}).fetchall()]
    mid = len(actions) // 2
    ids = list(dict.fromkeys(actions[mid:mid + 250] + [f.key_event_id for f in detect_findings(scenario_con)]))
    assert len(ids) > 250
    batch = decision_paths(scenario_con, ids)
    assert list(batch) == ids
    assert {i: _json(p) for i, p in batch.items()} == {i: _json(decision_path(scenario_con, i)) for i in ids}
    kinds = {x.kind for p in batch.values() for x in p.links}
    assert kinds >= {"used_credential", "exchanged_for", "authenticated", "decided", "caused", "workload_svid"}


def test_paths_read_the_same_rows_with_the_id_index_and_without(scenario_con: duckdb.DuckDBPyConnection,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot without the id index is scanned whole (no index is built for a batch); with it, only the days it
    names are read, by a filter or, for many ids, a join. Every path is the same each way."""
    import analytics.lake as lake_mod
    from analytics.detect import detect_findings

    lake = lake_mod._SNAPSHOT[scenario_con][0]
    con = connect(lake)
    cache = lake_mod.mart_cache_dir(con)
    assert cache is not None
    for f in cache.glob("key_days-*.parquet"):  # another test's lookup may have cached it
        f.unlink()
    actions = [r[0] for r in con.execute("SELECT event_id FROM events WHERE activity IN (SELECT unnest($a)) "
                                         "ORDER BY time, event_id", {"a": list(ACTION_LIKE)}).fetchall()]
    ids = list(dict.fromkeys(actions[::7] + [f.key_event_id for f in detect_findings(con)] + ["mcp:absent"]))
    monkeypatch.setattr(paths_mod, "ASKS_BEFORE_TABLE", 1000)
    scanned = decision_paths(con, ids)
    assert not lake_mod.index_at_hand(con) and not list(cache.glob("key_days-*.parquet"))
    lake_mod.index_keys(con)
    assert lake_mod.index_at_hand(con)
    read: list[tuple[str, int]] = []
    real = paths_mod.rows

    def recording(c: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if sql in (paths_mod._BY_IDS, paths_mod._BY_IDS_JOIN) and list((params or {})["ids"]) == ids:
            read.append((sql, len((params or {})["files"])))  # the actions' lookup (not the issuance records')
        return real(c, sql, params)

    monkeypatch.setattr(paths_mod, "rows", recording)
    indexed = decision_paths(con, ids)
    monkeypatch.setattr(paths_mod, "_JOIN_IDS", 2)
    joined = decision_paths(con, ids)
    assert [sql for sql, _ in read] == [paths_mod._BY_IDS, paths_mod._BY_IDS_JOIN]
    assert all(0 < n <= len(lake_mod.snapshot_files(con)) for _, n in read)
    assert "mcp:absent" not in scanned and len(scanned) > 100
    assert {i: _json(p) for i, p in indexed.items()} == {i: _json(p) for i, p in scanned.items()} \
        == {i: _json(p) for i, p in joined.items()}
    con.close()


def test_scenario_paths_with_the_shared_issuance_equal_those_without(scenario_con: duckdb.DuckDBPyConnection) -> None:
    import analytics.lake as lake_mod
    from analytics.detect import detect_findings

    con = connect(lake_mod._SNAPSHOT[scenario_con][0])
    _forget_cached(con, "path_lineage")
    lake_mod.share(con, "int_credential_issued")
    ids = list(dict.fromkeys([f.key_event_id for f in detect_findings(con)] + [r[0] for r in con.execute(
        "SELECT event_id FROM events WHERE credential_id IS NOT NULL ORDER BY time, event_id").fetchall()[::25]]))
    shared = decision_paths(con, ids)
    plain = decision_paths(scenario_con, ids)
    assert len(shared) == len(ids) > 100 and con not in paths_mod._LINEAGE_BUILT
    assert {i: _json(p) for i, p in shared.items()} == {i: _json(p) for i, p in plain.items()}
    con.close()


def test_time_hints_read_their_days_first_and_never_lose_an_event(scenario_con: duckdb.DuckDBPyConnection,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``near`` windows (a finding's first and last seen) are read first; ids not found there are looked up as
    without hints. Right, wrong or partial hints give the same paths."""
    import datetime as dt

    import analytics.lake as lake_mod

    lake = lake_mod._SNAPSHOT[scenario_con][0]
    con = connect(lake)
    rows_ = con.execute("SELECT event_id, time FROM events WHERE activity IN (SELECT unnest($a)) "
                        "ORDER BY time, event_id", {"a": list(ACTION_LIKE)}).fetchall()[::40]
    ids = [r[0] for r in rows_]
    right = [(t - dt.timedelta(minutes=1), t + dt.timedelta(minutes=1)) for _, t in rows_]
    far = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    wrong = [(far, far + dt.timedelta(hours=1))]
    lookups: list[int] = []
    real = paths_mod.rows

    def recording(c: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if sql in (paths_mod._BY_IDS, paths_mod._BY_IDS_JOIN):
            lookups.append(len((params or {})["ids"]))
        return real(c, sql, params)

    monkeypatch.setattr(paths_mod, "rows", recording)
    plain = decision_paths(con, ids)
    lookups.clear()
    hinted = decision_paths(con, ids, right)
    assert lookups == [len(ids)]  # every event found in its window's days: no second lookup
    lookups.clear()
    misled = decision_paths(con, ids, wrong)
    assert lookups == [len(ids)]  # no file for the window: straight to the lookup without hints
    lookups.clear()
    # a hint for the first event only: its day's events are found there, the others looked up after
    first_day = rows_[0][1].astimezone(dt.UTC).date()
    elsewhere = [i for i, t in rows_ if t.astimezone(dt.UTC).date() != first_day]
    assert 0 < len(elsewhere) < len(ids)  # the scenario spans several days
    half = decision_paths(con, ids, [(rows_[0][1], rows_[0][1])])
    assert lookups == [len(ids), len(elsewhere)]
    assert len(plain) == len(ids) > 5
    assert {i: _json(p) for i, p in plain.items()} == {i: _json(p) for i, p in hinted.items()} \
        == {i: _json(p) for i, p in misled.items()} == {i: _json(p) for i, p in half.items()}
    con.close()


def test_a_connection_that_goes_on_asking_builds_the_id_index(scenario_con: duckdb.DuckDBPyConnection) -> None:
    """The first ASKS_BEFORE_TABLE lookups by id on a snapshot without the index scan every file; the next one
    builds the index (and caches it for the snapshot), so a long-lived connection's lookups read one day each."""
    import analytics.lake as lake_mod

    lake = lake_mod._SNAPSHOT[scenario_con][0]
    con = connect(lake)
    cache = lake_mod.mart_cache_dir(con)
    assert cache is not None
    for f in cache.glob("key_days-*.parquet"):
        f.unlink()
    ids = [r[0] for r in con.execute("SELECT event_id FROM events ORDER BY time, event_id LIMIT 3").fetchall()]
    got = []
    for i in range(paths_mod.ASKS_BEFORE_TABLE + 1):
        assert not lake_mod.index_at_hand(con), f"index built before lookup {i + 1}"
        got.append(paths_mod._by_ids(con, ids))
    assert lake_mod.index_at_hand(con) and con in lake_mod._INDEXED and list(cache.glob("key_days-*.parquet"))
    assert all(g == got[0] for g in got) and sorted(got[0]) == sorted(ids)
    # another connection on the snapshot finds it cached: no scans
    other = connect(lake)
    assert lake_mod.index_at_hand(other)
    con.close()
    other.close()


# --- detect builds the paths of a run's new alerts together ---------------------------------------------------

@pytest.fixture
def alert_lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    fix = Path(__file__).parent / "fixtures" / "cross_format"
    ingest_files([fix / "a_keycloak_to_cloudtrail.jsonl", fix / "b1_cloudtrail_key_two_addresses.jsonl",
                  fix / "b2_okta_session_two_addresses.jsonl"], Lake(lake))
    return lake


def _evidence_paths(res: Any) -> dict[str, dict[str, Any]]:
    return {a.alert_id: a.evidence["decision_path"] for a in res.new_alerts}


def _one_by_one(lake: Path, res: Any) -> dict[str, dict[str, Any]]:
    """Each alert's key event path, built alone on a fresh connection."""
    con = connect(lake)
    try:
        return {a.alert_id: decision_path(con, a.key_event_id).to_json() for a in res.new_alerts}
    finally:
        con.close()


def test_detect_builds_paths_in_one_call(alert_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[list[str]] = []
    hints: list[list[Any]] = []
    real = paths_mod.decision_paths

    def spy(con: duckdb.DuckDBPyConnection, ids: Any, near: Any = ()) -> dict[str, DecisionPath]:
        batches.append(list(ids))
        hints.append(list(near))
        return real(con, ids, near)

    monkeypatch.setattr(paths_mod, "decision_paths", spy)
    res = run(DetectSettings(lake_dir=alert_lake))
    assert len(res.new_alerts) >= 2
    assert len(batches) == 1 and sorted(batches[0]) == sorted({a.key_event_id for a in res.new_alerts})
    # each alert's first and last seen, where its key event lies, are given as hints
    assert sorted(hints[0]) == sorted((a.first_seen, a.last_seen) for a in res.new_alerts)
    assert _evidence_paths(res) == _one_by_one(alert_lake, res)


def test_detect_keeps_alerts_when_paths_fail(alert_lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(con: duckdb.DuckDBPyConnection, ids: Any, near: Any = ()) -> dict[str, DecisionPath]:
        raise RuntimeError("lake unreadable")

    monkeypatch.setattr(paths_mod, "decision_paths", broken)
    res = run(DetectSettings(lake_dir=alert_lake))
    assert len(res.new_alerts) >= 2
    for a in res.new_alerts:
        assert a.evidence["decision_path"] == {"event_id": a.key_event_id, "links": [],
                                               "missing": ["decision path unavailable: lake unreadable"]}


def test_detect_retries_alone_what_a_failed_batch_did_not_build(alert_lake: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch failure costs no path that can be built alone."""
    real = paths_mod.decision_paths

    def only_single(con: duckdb.DuckDBPyConnection, ids: Any, near: Any = ()) -> dict[str, DecisionPath]:
        if len(ids) > 1:
            raise MemoryError("batch too big")
        return real(con, ids, near)

    monkeypatch.setattr(paths_mod, "decision_paths", only_single)
    res = run(DetectSettings(lake_dir=alert_lake))
    assert len(res.new_alerts) >= 2
    assert _evidence_paths(res) == _one_by_one(alert_lake, res)


def test_svid_that_never_expires_is_found_long_after_its_mint(tmp_path: Path) -> None:
    """The SVID join is bounded by the longest SVID lifetime only when every SVID expires."""
    day = 86_400
    con = connect(make_lake(tmp_path / "lake", [
        ev("spire:forever", 0, "svid.minted", WL, credential_id="x-f", credential_type="x509_svid"),
        ev("spire:short", 50, "svid.minted", WL, credential_id="j-s", credential_type="jwt_svid",
           credential_expires_at=at(350)),
        ev("mcp:late", 10 * day, "tool.invoked", WL, src_workload=WL, tool="t.s"),
    ]))
    got = decision_path(con, "mcp:late")
    assert ("spire:forever", "mcp:late", "workload_svid", SVID_HOW) in {
        (x.src, x.dst, x.kind, x.how) for x in got.links}
