"""Decision paths, point-in-time answers, graphs, inventory and injection safety over a small synthetic lake."""

from __future__ import annotations

import io
import json
import os
import shutil
import time

import networkx as nx
import pytest

import analytics.lake as lake_mod
from analytics import shared_cache
from analytics.allowed import allowed_at
from analytics.graphs import export_graph, identity_graph
from analytics.inventory import inventory
from analytics.lake import VIEWS, connect, day_files, key_days, mart_cache_dir, materialize
from analytics.paths import decision_path
from ingest.errors import ConfigError
from tests.analytics_factory import T0, append_events, at, ev, make_lake

ALICE = "alice@corp.example"
ORCH = "spiffe://corp.example/agent/orchestrator"
WORKER = "spiffe://corp.example/agent/research"
HELPER = "spiffe://corp.example/agent/helper"
READER = "arn:aws:iam::111122223333:role/reader"
ADMIN = "arn:aws:iam::111122223333:role/admin"
POL = "agents/authz/allow"
TOK = "oauth_access_token"


def chain_events() -> list[dict]:
    """Human login → token → exchange to orchestrator → exchange to worker → OPA → MCP → child call; role chain."""
    return [
        ev("keycloak:login", 0, "session.started", ALICE, actor_type="human", credential_id="sess-1",
           credential_type="session", target_id=ALICE),
        ev("keycloak:code", 1, "token.issued", ALICE, actor_type="human", credential_id="jti-a", credential_type=TOK,
           credential_parent_id="sess-1", scope=["tickets:read", "kb:read"], credential_expires_at=at(3600)),
        ev("keycloak:x1", 1.5, "token.exchanged", ORCH, actor_type="agent", on_behalf_of=ALICE,
           delegation_chain=[ALICE, ORCH], credential_id="jti-o", credential_type=TOK, credential_parent_id="jti-a",
           scope=["tickets:read"], credential_expires_at=at(900), task_id="task-1"),
        ev("keycloak:x2", 2, "token.exchanged", WORKER, actor_type="agent", on_behalf_of=ALICE,
           delegation_chain=[ALICE, ORCH, WORKER], credential_id="jti-w", credential_type=TOK,
           credential_parent_id="jti-o", scope=["tickets:read"], credential_expires_at=at(600), task_id="task-1"),
        ev("spire:s1", 0, "svid.minted", WORKER, actor_type="agent", credential_id="x509:1",
           credential_type="x509_svid", credential_expires_at=at(3600)),
        ev("opa:d1", 60, "decision", WORKER, actor_type="agent", on_behalf_of=ALICE, credential_id="jti-w",
           action="tools/call", tool="ticket.read", resource="tickets/1", decision="allow", policy_id=POL,
           policy_version="v7", trace_id="tr1", span_id="sp1", request_id="d1"),
        ev("mcp:c1", 60.05, "tool.invoked", WORKER, actor_type="agent", on_behalf_of=ALICE,
           delegation_chain=[ALICE, ORCH, WORKER], credential_id="jti-w", src_workload=WORKER, src_ip="10.0.0.4",
           action="tools/call", tool="ticket.read", resource="tickets/1", outcome="success", trace_id="tr1",
           span_id="sp1", task_id="task-1"),
        ev("mcp:c2", 61, "tool.invoked", HELPER, actor_type="agent", credential_id="jti-h", src_workload=HELPER,
           action="tools/call", tool="kb.search", resource="kb/1", outcome="success", trace_id="tr1", span_id="sp2",
           parent_span_id="sp1"),
        ev("mcp:c4", 90, "tool.invoked", WORKER, actor_type="agent", credential_id="jti-w", src_workload=WORKER,
           action="tools/call", tool="ticket.read", resource="tickets/1", outcome="success", trace_id="tr2",
           span_id="sp4"),
        ev("opa:d2", 120, "decision", WORKER, actor_type="agent", credential_id="jti-w", action="tools/call",
           tool="secret.read", resource="secrets/1", decision="deny", policy_id=POL, policy_version="v7",
           reason="token lacks scope secrets:read"),
        ev("mcp:c3", 121, "tool.invoked", WORKER, actor_type="agent", credential_id="jti-w", action="tools/call",
           tool="secret.read", resource="secrets/1", outcome="failure", decision="deny"),
        ev("opa:d3", 200, "decision", ORCH, actor_type="agent", credential_id="jti-o", action="tools/call",
           tool="kb.search", resource="kb/2", decision="allow", policy_id=POL, policy_version="v8"),
        ev("keycloak:r1", 300, "token.revoked", WORKER, credential_id="jti-w"),
        # role assumption lineage: JWT-SVID → AssumeRoleWithWebIdentity → AssumeRole → API call
        ev("spire:j1", 10, "svid.minted", WORKER, actor_type="agent", credential_id="jwt-1",
           credential_type="jwt_svid", credential_expires_at=at(310)),
        ev("cloudtrail:a1", 20, "role.assumed", WORKER, target_id=READER, credential_id="ASIA1",
           credential_type="aws_sts_session", credential_parent_id="jwt-1", credential_expires_at=at(920),
           task_id="task-1"),
        ev("cloudtrail:a2", 30, "role.assumed", READER, actor_type="role", target_id=ADMIN, credential_id="ASIA2",
           credential_type="aws_sts_session", credential_parent_id="ASIA1", credential_expires_at=at(930)),
        ev("cloudtrail:c1", 40, "api.call", ADMIN, actor_type="role", credential_id="ASIA2", action="GetObject",
           resource="arn:aws:s3:::b/k", outcome="success"),
    ]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    return connect(make_lake(tmp_path_factory.mktemp("lake"), chain_events()))


def test_full_chain_path(con):
    p = decision_path(con, "mcp:c1")
    assert p.link_set() == {
        ("keycloak:x2", "mcp:c1", "used_credential", "shared credential_id"),
        (f"identity:{ALICE}", "keycloak:x2", "delegated_by", "act chain (delegation_chain) on token.exchanged"),
        ("keycloak:x1", "keycloak:x2", "exchanged_for", "credential_parent_id (token.exchanged)"),
        ("keycloak:code", "keycloak:x1", "exchanged_for", "credential_parent_id (token.exchanged)"),
        ("keycloak:login", "keycloak:code", "authenticated", "credential_parent_id (token.issued)"),
        ("spire:s1", "mcp:c1", "workload_svid", "src_workload = SVID spiffe_id, minted ≤ t < expiry"),
        ("opa:d1", "mcp:c1", "decided", "shared trace_id+span_id"),
        ("mcp:c1", "mcp:c2", "caused", "parent_span_id = span_id (same trace_id)"),
    }
    assert p.missing == ()
    j = p.to_json()
    assert set(j) >= {"event_id", "links", "missing", "nodes"}
    assert {n["id"]: n["role"] for n in j["nodes"]}["keycloak:login"] == "root_authentication"
    assert {lk["kind"] for lk in j["links"]} >= {"decided", "caused"} and all(lk["how"] for lk in j["links"])
    text = p.render()
    assert "mcp:c1" in text and "shared trace_id+span_id" in text and "[decision]" in text


def test_missing_decision_and_issuance_listed_not_invented(con):
    p = decision_path(con, "mcp:c2")
    assert p.links == ()
    assert set(p.missing) == {"no issuance record for credential jti-h", "no SVID valid at the time for workload "
                              + HELPER, "no authorization decision found"}


def test_time_matched_decision_says_so(con):
    p = decision_path(con, "mcp:c3")
    assert ("opa:d2", "mcp:c3", "decided", "time match within 5s on credential_id and action") in p.link_set()


def test_role_assumption_lineage(con):
    p = decision_path(con, "cloudtrail:c1")
    assert p.link_set() == {
        ("cloudtrail:a2", "cloudtrail:c1", "used_credential", "shared credential_id"),
        ("cloudtrail:a1", "cloudtrail:a2", "role_assumed", "credential_parent_id (role.assumed)"),
        ("spire:j1", "cloudtrail:a1", "role_assumed", "credential_parent_id (role.assumed)"),
    }
    assert p.missing == ("no authorization decision found",)


def test_unknown_event_is_a_clear_error(con):
    with pytest.raises(ConfigError, match="no event"):
        decision_path(con, "mcp:nope")


@pytest.mark.parametrize(("identity", "t", "action", "resource", "answer"), [
    (WORKER, 60, "ticket.read", "tickets/1", "allowed"),            # exactly at the decision
    (WORKER, 55, "ticket.read", "tickets/1", "allowed"),            # decision 5 s after: clock skew
    (WORKER, 54.999, "ticket.read", "tickets/1", "unknown"),        # 5.001 s before, action 5.051 s after
    (WORKER, 360, "ticket.read", "tickets/1", "allowed"),           # 5 min after the decision
    (WORKER, 360.001, "ticket.read", "tickets/1", "unknown"),
    (WORKER, 120, "secret.read", "secrets/1", "denied"),
    (WORKER, 120, "tools/call", None, "denied"),                    # action matches the action column too
    (HELPER, 61, "kb.search", "kb/1", "not_mediated"),
    (HELPER, 66, "kb.search", "kb/1", "not_mediated"),              # exactly 5 s after the call
    (HELPER, 66.001, "kb.search", "kb/1", "unknown"),
    (HELPER, 61, "kb.search", "kb/9", "unknown"),                   # other resource
])
def test_allowed_answers_at_edges(con, identity, t, action, resource, answer):
    a = allowed_at(con, identity, at(t).isoformat(), action=action, resource=resource)
    assert a.answer == answer, a.why


def _creds(con, identity, t):
    return {c["credential_id"] for c in allowed_at(con, identity, at(t)).to_json()["evidence"]["credentials"]}


def test_credentials_valid_at_issue_expiry_and_revocation(con):
    assert "jti-w" not in _creds(con, WORKER, 1.999)
    assert "jti-w" in _creds(con, WORKER, 2)            # exactly at issue
    assert "jti-w" in _creds(con, WORKER, 299.999)
    assert "jti-w" not in _creds(con, WORKER, 300)      # exactly at revocation
    assert "jti-o" in _creds(con, ORCH, 899.999)
    assert "jti-o" not in _creds(con, ORCH, 900)        # exactly at expiry
    assert _creds(con, WORKER, 60) == {"jti-w", "x509:1", "jwt-1"}
    assert _creds(con, ADMIN, 40) == {"ASIA2"}


def test_allowed_evidence(con):
    j = allowed_at(con, WORKER, "2026-11-02T11:01:00+01:00", action="ticket.read").to_json()
    assert (j["answer"], j["identity"], j["at"]) == ("allowed", WORKER, "2026-11-02T10:01:00Z")
    ev_ = j["evidence"]
    assert [(d["delegator"], d["credential_id"]) for d in ev_["delegations"]] == [(ALICE, "jti-w")]
    assert (ev_["policy_version"]["policy_id"], ev_["policy_version"]["policy_version"]) == (POL, "v7")
    assert [d["event_id"] for d in ev_["decisions"]] == ["opa:d1"]
    assert [a["event_id"] for a in ev_["actions"]] == ["mcp:c1"]
    assert allowed_at(con, ORCH, at(250)).to_json()["evidence"]["policy_version"]["policy_version"] == "v8"
    assert "ALLOWED" in allowed_at(con, WORKER, at(60), action="ticket.read").render()


@pytest.mark.parametrize("bad", ["2026-11-02T10:00:00", "yesterday", "", "2026-13-01T00:00:00Z"])
def test_allowed_rejects_naive_or_unparseable_times(con, bad):
    with pytest.raises(ConfigError):
        allowed_at(con, WORKER, bad)


def test_identity_graph_types_counts_and_exports(con):
    g = identity_graph(con, WORKER)
    types = {d["type"] for _, d in g.nodes(data=True)}
    assert types == {"identity", "credential", "task", "tool", "resource", "policy_version"}
    kinds = {d["kind"] for _, _, d in g.edges(data=True)}
    assert kinds == {"authenticated", "issued", "exchanged_for", "delegated_by", "decided", "invoked", "accessed",
                     "caused"}
    w = f"identity:{WORKER}"
    assert g.edges[w, "tool:ticket.read", "invoked"]["count"] == 2
    assert g.edges[w, "resource:tickets/1", "accessed"]["count"] == 2
    # presented on d1, c1, c4, d2, c3 and its revocation r1
    assert g.edges[w, "credential:jti-w", "authenticated"]["count"] == 6
    assert g.edges[f"policy_version:{POL}@v7", w, "decided:allow"]["count"] == 1
    assert g.edges[f"policy_version:{POL}@v7", w, "decided:deny"]["count"] == 1
    assert g.edges[w, f"identity:{HELPER}", "caused"]["how"] == "parent_span_id = span_id (same trace_id)"
    assert g.edges["credential:jti-o", "credential:jti-w", "exchanged_for"]["count"] == 1
    assert all(d["how"] for _, _, d in g.edges(data=True))
    g2 = nx.read_graphml(io.StringIO(export_graph(g, "graphml")))
    assert (g2.number_of_nodes(), g2.number_of_edges()) == (g.number_of_nodes(), g.number_of_edges())
    j = json.loads(export_graph(g, "json"))
    assert len(j["nodes"]) == g.number_of_nodes() and len(j["links"]) == g.number_of_edges()
    dot = export_graph(g, "dot")
    assert dot.startswith("digraph") and dot.count(" -> ") == g.number_of_edges()
    with pytest.raises(ConfigError):
        export_graph(g, "png")
    window = identity_graph(con, WORKER, since=at(100).isoformat(), until=at(130).isoformat())
    assert {(a, b, k) for a, b, k in window.edges(keys=True) if k == "invoked"} == {(w, "tool:secret.read", "invoked")}


def test_inventory_fields(con):
    inv = {r.identity: r for r in inventory(con)}
    assert set(inv) >= {ALICE, ORCH, WORKER, HELPER, READER, ADMIN}
    w = inv[WORKER]
    assert (w.identity_type, w.owners, w.workloads) == ("agent", (ALICE,), (WORKER,))
    assert {c.credential_id for c in w.credentials} == {"jti-w", "x509:1", "jwt-1"}
    jw = next(c for c in w.credentials if c.credential_id == "jti-w")
    assert (jw.lifetime_s, jw.uses, jw.revoked_at) == (598.0, 5, at(300))
    assert w.scopes_granted == ("tickets:read",) and w.scopes_used == ("tickets:read",)
    assert set(w.actions_used) == {"ticket.read", "secret.read"}
    assert inv[READER].credentials[0].credential_id == "ASIA1"
    assert inv[ALICE].identity_type == "human"
    j = w.to_json()
    assert j["first_seen"] == "2026-11-02T10:00:00Z" and j["credentials"][0]["credential_id"]


@pytest.mark.parametrize("evil", ["' OR 1=1 --", '"; DROP TABLE events; --', "x') UNION SELECT * FROM events --"])
def test_injection_strings_are_data(con, evil):
    before = con.execute("SELECT count(*) FROM events").fetchone()[0]
    a = allowed_at(con, evil, at(60), action=evil, resource=evil)
    assert a.answer == "unknown" and not a.decisions and not a.actions and not a.credentials
    g = identity_graph(con, evil)
    assert list(g.nodes) == [f"identity:{evil}"]
    with pytest.raises(ConfigError):
        decision_path(con, evil)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == before


def test_empty_lake_has_typed_views(tmp_path):
    c = connect(tmp_path)
    for v in VIEWS:
        assert c.execute(f"SELECT count(*) FROM {v}").fetchone()[0] == 0  # noqa: S608
    cols = {r[0]: r[1] for r in c.execute("DESCRIBE events").fetchall()}
    assert cols["time"] == "TIMESTAMP WITH TIME ZONE" and cols["scope"] == "VARCHAR[]" and cols["day"] == "VARCHAR"
    assert allowed_at(c, WORKER, T0).answer == "unknown"
    assert inventory(c) == []


def test_materialized_marts_equal_the_lazy_views(tmp_path):
    c = connect(make_lake(tmp_path / "lake", chain_events()))
    lazy = {v: sorted(map(repr, c.execute(f"SELECT * FROM {v}").fetchall())) for v in  # noqa: S608
            ("credentials", "delegations", "policy_versions")}
    materialize(c)
    materialize(c)  # idempotent
    for v, want in lazy.items():
        assert sorted(map(repr, c.execute(f"SELECT * FROM {v}").fetchall())) == want  # noqa: S608
    # A cursor is another context (its own time zone setting): it keeps the lazy views and gets the same rows.
    q = "SELECT * FROM credentials ORDER BY credential_id"
    assert c.cursor().execute(q).fetchall() == c.execute(q).fetchall()


def _marts(c) -> dict[str, list[str]]:
    return {v: sorted(map(repr, c.execute(f"SELECT * FROM {v}").fetchall()))  # noqa: S608
            for v in ("credentials", "delegations", "policy_versions")}


def test_mart_cache_serves_the_next_connection_on_the_same_snapshot_only(tmp_path, monkeypatch):
    lake = make_lake(tmp_path / "lake", chain_events())
    c1 = connect(lake)
    lazy = _marts(c1)
    materialize(c1)
    cache = mart_cache_dir(c1)
    assert cache is not None and not (cache / "credential_actors.parquet").exists()  # made on demand only
    lake_mod.credential_actors(c1)
    assert all((cache / f"{t}.parquet").is_file() for t in lake_mod.MART_TABLES)

    # A new connection on the same snapshot loads the cache: computing is not even possible here.
    def no_compute(con):
        raise AssertionError("the marts were recomputed although the snapshot's cache exists")

    monkeypatch.setattr(lake_mod, "_compute_marts", no_compute)
    c2 = connect(lake)
    assert mart_cache_dir(c2) == cache
    materialize(c2)
    assert _marts(c2) == lazy
    monkeypatch.undo()

    # A commit makes a new snapshot: its marts are computed (the new credential is there) and the old cache goes.
    late = [ev("keycloak:late", 50, "token.issued", ALICE, actor_type="human", credential_id="jti-late",
               credential_type=TOK, credential_expires_at=at(4000))]
    append_events(lake, late, app_id="late")
    c3 = connect(lake)
    assert mart_cache_dir(c3) != cache
    materialize(c3)
    assert c3.execute("SELECT count(*) FROM credentials WHERE credential_id = 'jti-late'").fetchone()[0] == 1
    assert _marts(c3) == _marts(connect(lake))  # a connection that has not materialized: the lazy views
    assert not cache.exists() and (mart_cache_dir(c3) / "mat_credentials.parquet").is_file()
    # Marts of this snapshot under other SQL (another install) stay while that install uses them, and go once
    # unused for a day; a newer snapshot's are kept.
    other = mart_cache_dir(c3).with_name(mart_cache_dir(c3).name.split("-")[0] + "-0ldsq1")
    idle = mart_cache_dir(c3).with_name(mart_cache_dir(c3).name.split("-")[0] + "-1dlesq")
    newer = mart_cache_dir(c3).with_name("v999999999999-" + mart_cache_dir(c3).name.split("-")[1])
    for d in (other, idle, newer):
        d.mkdir()
    long_ago = time.time() - 2 * lake_mod.OTHER_SQL_IDLE_S
    os.utime(idle, (long_ago, long_ago))
    shutil.rmtree(mart_cache_dir(c3))
    materialize(c4 := connect(lake))
    # (besides the snapshots' directories, the detections' shared caches: analytics.shared_cache, its own pruning)
    assert sorted(p.name for p in (lake / "marts").iterdir() if p.name != shared_cache.ROOT) \
        == sorted([mart_cache_dir(c4).name, other.name, newer.name])
    # Reading a snapshot's marts marks them in use (what keeps them from another install's writer).
    os.utime(mart_cache_dir(c4), (long_ago, long_ago))
    materialize(connect(lake))
    assert time.time() - mart_cache_dir(c4).stat().st_mtime < lake_mod.OTHER_SQL_IDLE_S / 2


def test_key_index_is_cached_per_snapshot(tmp_path):
    lake = make_lake(tmp_path / "lake", chain_events())
    c1 = connect(lake)
    assert key_days(c1, "keycloak:login") == [c1.execute("SELECT day FROM events WHERE event_id = 'keycloak:login'").fetchall()[0][0]]
    [cached] = mart_cache_dir(c1).glob("key_days-*.parquet")  # the name carries a digest of the index's SQL
    # A planted row proves the next connection on this snapshot reads the cached index instead of rebuilding it.
    c1.sql("SELECT * FROM key_days UNION ALL SELECT hash('planted-id'), '2099-01-01'").write_parquet(str(cached))
    assert key_days(connect(lake), "planted-id") == ["2099-01-01"]
    append_events(lake, [ev("keycloak:late", 50, "token.issued", ALICE, credential_id="jti-late")], app_id="late")
    c3 = connect(lake)  # a new snapshot builds its own index
    assert key_days(c3, "planted-id") == [] and key_days(c3, "keycloak:late") != []


def test_mart_cache_that_cannot_be_written_or_read_only_costs_a_recompute(tmp_path, monkeypatch):
    lake = make_lake(tmp_path / "lake", chain_events())
    c1 = connect(lake)
    lazy = _marts(c1)

    def read_only(*_a, **_k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(lake_mod.Path, "mkdir", read_only)
    materialize(c1)  # no error: the marts are in memory, just not cached
    assert _marts(c1) == lazy and not (lake / "marts").exists()
    monkeypatch.undo()

    materialize(c2 := connect(lake))
    cache = mart_cache_dir(c2)
    (cache / "mat_credentials.parquet").write_bytes(b"not parquet")  # damaged: recomputed, not trusted
    materialize(c3 := connect(lake))
    assert _marts(c3) == lazy


def test_key_index_and_day_macros_find_what_the_views_find(tmp_path):
    c = connect(make_lake(tmp_path / "lake", chain_events()))
    for eid, cid, day in c.execute("SELECT event_id, credential_id, day FROM events").fetchall():
        assert day in key_days(c, eid)
        if cid is not None:
            assert day in key_days(c, cid)
    days = [r[0] for r in c.execute("SELECT DISTINCT day FROM events").fetchall()]
    files = day_files(c, days)
    for v in ("events", "decisions", "actions"):
        whole = sorted(map(repr, c.execute(f"SELECT * FROM {v}").fetchall()))  # noqa: S608
        assert sorted(map(repr, c.execute(f"SELECT * FROM {v}_in($f)", {"f": files}).fetchall())) == whole  # noqa: S608
    assert key_days(c, "no-such-id") == []


def test_build_graph_merges_rows_of_one_edge_by_time_not_text():
    import datetime as dt

    from analytics.graphs import build_graph

    t = dt.datetime(2026, 11, 2, 14, 3, 7, tzinfo=dt.UTC)
    half = t + dt.timedelta(microseconds=500_000)
    # ISO text sorts "…07.500000Z" before "…07Z"; the merged edge must still start at 07 and end at 07.5
    rows = [("identity", "a", "tool", "x", "invoked", "one", 2, half, half),
            ("identity", "a", "tool", "x", "invoked", "two", 3, t, t)]
    e = build_graph(rows, "a").edges["identity:a", "tool:x", "invoked"]
    assert (e["count"], e["how"]) == (5, "one; two")
    assert (e["first_seen"], e["last_seen"]) == ("2026-11-02T14:03:07Z", "2026-11-02T14:03:07.500000Z")


def test_connections_print_no_duckdb_progress_bar(tmp_path):
    """DuckDB draws its own progress bar on stdout for queries over ~2 s, which corrupted `--json` output and
    benchmark logs on a 10M lake; analytics connections switch it off. Checked in a fresh interpreter: under
    pytest DuckDB starts with the bar off anyway."""
    import subprocess
    import sys

    lake = make_lake(tmp_path / "lake", chain_events())
    code = ("import sys; from analytics.lake import connect; "
            "print(connect(sys.argv[1]).execute(\"SELECT current_setting('enable_progress_bar')\").fetchone()[0])")
    out = subprocess.run([sys.executable, "-c", code, str(lake)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
