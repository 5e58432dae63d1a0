"""Every detector against its own labelled timelines (positive and benign), written to a tmp lake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from analytics.detect import connect, detect_findings
from analytics.detectors import REGISTRY
from ingest.events import SCHEMA

BASE = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
_TIME_FIELDS = ("credential_expires_at",)


def canonical(events: Iterable[Mapping[str, Any]], base: dt.datetime = BASE) -> pa.Table:
    """Relative-time example events → canonical rows (required columns filled in)."""
    rows = []
    for e in events:
        r = {k: v for k, v in e.items() if k != "t"}
        t = base + dt.timedelta(seconds=float(e["t"]))
        for f in _TIME_FIELDS:
            if isinstance(r.get(f), int | float):
                r[f] = base + dt.timedelta(seconds=float(r[f]))
        r.update(time=t, day=t.date().isoformat(), ingested_at=base, source="test", format="test",
                 origin="test", raw="{}")
        r.setdefault("category", "tool_call")
        rows.append(r)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def write_lake(lake: Path, events: Iterable[Mapping[str, Any]], base: dt.datetime = BASE) -> Path:
    write_deltalake(str(lake / "events"), canonical(events, base), mode="append", partition_by=["day"])
    return lake


CASES = [pytest.param(m, ex, id=f"{m.DETECTION.id}:{ex.name}") for m in REGISTRY for ex in m.EXAMPLES]


@pytest.mark.parametrize(("mod", "example"), CASES)
def test_labelled_example(tmp_path: Path, mod: Any, example: Any) -> None:
    con = connect(write_lake(tmp_path, example.events))
    found = detect_findings(con, [mod.DETECTION.id], example.overrides)
    assert {f.key for f in found} == set(example.expect)
    for f in found:
        assert f.detection == mod.DETECTION.id
        assert f.event_ids and f.key_event_id in f.event_ids
        assert f.first_seen <= f.last_seen
        assert len(f.explanation) > 60


def test_tr1_fidelity_score_grows_with_spread() -> None:
    from analytics.detectors.tr1_token_origins import score

    one_net = score(1, ["10.0.0.1", "10.0.0.2"], 1)
    two_nets = score(1, ["10.0.0.1", "198.51.100.10"], 2)
    two_wl = score(2, ["10.0.0.1", "198.51.100.10"], 2)
    assert one_net < two_nets < two_wl <= 1.0


def test_threshold_override_moves_the_edge(tmp_path: Path) -> None:
    from analytics.detectors import tr2_after_expiry as m

    events = m.EXAMPLES[1].events  # 1 s over the 60 s skew
    con = connect(write_lake(tmp_path, events))
    assert {f.key for f in detect_findings(con, ["DP-TR-2"])} == {("jti-2",)}
    assert detect_findings(con, ["DP-TR-2"], {"DP-TR-2.clock_skew_s": 61}) == []


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tr1_origin_threshold_is_count_distinct(tmp_path: Path, n: int) -> None:
    """The threshold's SQL (min/max for n <= 2, count(DISTINCT) above) finds exactly the credentials with >= n
    origins, one per credential here with 1, 2 and 3 origins (workload, else address; NULL origins not counted);
    and every use is listed, including those on another day than the first (the uses pass reads day files)."""
    from analytics.detectors.base import ev

    def use(t: float, eid: str, cid: str, wl: str | None, ip: str | None) -> dict[str, Any]:
        return ev(t, eid, "tool.invoked", category="tool_call", credential_id=cid, actor_id="agent/a",
                  actor_type="agent", src_workload=wl, src_ip=ip, tool="kb.search")

    day = 86_400.0
    events = [use(0, "a1", "c1", "wl/a", "10.0.0.1"), use(day, "a2", "c1", "wl/a", "10.0.0.2"),
              use(0, "b0", "c2", None, None),
              use(0, "b1", "c2", "wl/a", None), use(2 * day, "b2", "c2", None, "10.0.0.9"),
              use(0, "d1", "c3", "wl/a", None), use(day, "d2", "c3", "wl/b", None),
              use(3 * day, "d3", "c3", None, "198.51.100.7")]
    origins = {"c1": 1, "c2": 2, "c3": 3}
    con = connect(write_lake(tmp_path, events))
    found = {f.key[0]: f for f in detect_findings(con, ["DP-TR-1"], {"min_origins": n})}
    assert set(found) == {c for c, k in origins.items() if k >= n}
    known = {"c1": ["wl/a"], "c2": ["10.0.0.9", "wl/a"], "c3": ["198.51.100.7", "wl/a", "wl/b"]}
    for cid, f in found.items():
        assert set(f.event_ids) >= {e["event_id"] for e in events if e["credential_id"] == cid}
        # a use with neither workload nor address is evidence, not an origin ("None" was listed as one)
        assert dict(f.facts)["origins"].split(",") == known[cid] and "None" not in f.explanation
        assert f"from {len(known[cid])} origins" in f.explanation


def test_tr2_own_issuance_aggregate_matches_the_issuance_view(tmp_path: Path) -> None:
    """DP-TR-2 alone restates "the first successful issuance record" as an aggregate; it must give the expiry, event
    and target of `int_credential_issued`, row for row: every issuing activity, a failed record, two records of one
    credential, a tie on time, a role session, a use that issues nothing, no credential."""
    from analytics.detectors import tr2_after_expiry as m
    from analytics.detectors.base import ev

    def iss(t: float, eid: str, act: str, cid: str | None, **kw: Any) -> dict[str, Any]:
        return ev(t, eid, act, category="credential", credential_id=cid, actor_id="agent/a",
                  credential_expires_at=t + 300, **kw)

    events = [iss(0, f"e-{a}", a, f"c-{a}") for a in ("session.started", "token.issued", "token.exchanged",
                                                       "token.refreshed", "svid.minted")]
    events += [iss(0, "r1", "role.assumed", "c-role", target_id="arn:aws:iam::1:role/R"),
               iss(0, "f1", "token.issued", "c-two", outcome="failure"), iss(5, "f2", "token.issued", "c-two"),
               iss(9, "f3", "token.refreshed", "c-two"),
               iss(7, "t-b", "token.issued", "c-tie"), iss(7, "t-a", "token.exchanged", "c-tie"),
               iss(0, "n1", "token.issued", None),
               ev(3, "u1", "tool.invoked", category="tool_call", credential_id="c-use", actor_id="agent/a",
                  credential_expires_at=50)]
    con = connect(write_lake(tmp_path, events))
    alone = con.execute(f"SELECT credential_id, i.expires_at, i.event_id, i.target FROM ({m._ISSUED_ALONE}) "  # noqa: S608 (the module's constant)
                        "ORDER BY credential_id").fetchall()
    view = con.execute("SELECT credential_id, expires_at, issue_event_id, issue_target FROM int_credential_issued "
                       "ORDER BY credential_id").fetchall()
    assert alone == view
    assert {r[0]: r[2] for r in alone}["c-two"] == "f2" and {r[0]: r[2] for r in alone}["c-tie"] == "t-a"
    assert len(alone) == 8


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_id1_workload_threshold_is_count_distinct(tmp_path: Path, n: int) -> None:
    """DP-ID-1's two passes find exactly the identities acting from >= n workloads (humans never), and list all of
    their calls and decisions, on every day, in time order (ties by event id)."""
    from analytics.detectors.base import ev

    def act(t: float, eid: str, actor: str, wl: str, kind: str = "tool.invoked", typ: str = "agent") -> dict[str, Any]:
        cat = "tool_call" if kind == "tool.invoked" else "authorization"
        return ev(t, eid, kind, category=cat, actor_id=actor, actor_type=typ, src_workload=wl)

    day = 86_400.0
    events = [act(0, "a1", "agent/one", "wl/a"), act(day, "a2", "agent/one", "wl/a", "decision"),
              act(0, "b2", "agent/two", "wl/a"), act(0, "b1", "agent/two", "wl/b", "decision"),
              act(0, "c1", "agent/three", "wl/a"), act(day, "c2", "agent/three", "wl/b"),
              act(3 * day, "c3", "agent/three", "wl/c", "decision"),
              act(0, "h1", "alice", "wl/a", typ="human"), act(day, "h2", "alice", "wl/b", typ="human"),
              act(2 * day, "h3", "alice", "wl/c", typ="human")]
    workloads = {"agent/one": 1, "agent/two": 2, "agent/three": 3}
    con = connect(write_lake(tmp_path, events))
    found = {f.key[0]: f for f in detect_findings(con, ["DP-ID-1"], {"min_workloads": n})}
    assert set(found) == {a for a, k in workloads.items() if k >= n}
    for actor, f in found.items():
        mine = sorted((e["t"], e["event_id"]) for e in events if e["actor_id"] == actor)
        assert list(f.event_ids[:len(mine)]) == [eid for _t, eid in mine]  # then the issuance, none here
        assert f.key_event_id == mine[0][1]


def test_dg2_counts_a_call_once_whatever_its_decision_records(tmp_path: Path) -> None:
    """A call with two decision records (a retry logged twice) is one call: listed, linked and counted once."""
    from analytics.detectors import dg2_agent_as_human as m

    ex = next(x for x in m.EXAMPLES if x.name == "one call whose decision was logged twice")
    con = connect(write_lake(tmp_path, ex.events))
    (f,) = detect_findings(con, ["DP-DG-2"])
    assert list(f.event_ids).count("x:call") == 1
    assert {"x:dec1", "x:dec2"} <= set(f.event_ids)
    assert len(f.links) == 1 and "in 1 call(s)" in f.explanation


@pytest.mark.parametrize("cached", [True, False])
def test_shared_issuance_serves_the_few_credentials_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           cached: bool) -> None:
    """Once ``int_credential_issued`` is shared, ``int_credential_issued_for(ids)`` reads the shared rows (the
    snapshot's cached file, or kept in memory when the cache cannot serve) and gives the same rows as before (and
    as the whole view restricted to those ids), without the lake's files."""
    import analytics.lake as lake
    from analytics.detectors import tr1_token_origins as m

    if not cached:
        monkeypatch.setattr(lake, "_CARRIED", {})
    con = connect(write_lake(tmp_path, [e for ex in m.EXAMPLES for e in ex.events if ex.name.startswith("two")]))
    q = "SELECT * FROM int_credential_issued_for(['jti-1', 'nope']) ORDER BY ALL"
    before = con.execute(q).fetchall()
    whole = con.execute("SELECT * FROM int_credential_issued WHERE credential_id IN ('jti-1', 'nope') ORDER BY ALL"
                        ).fetchall()
    lake.share(con, "int_credential_issued")
    # in memory: in the compressed in-memory database, not a temp table
    assert con.execute("SELECT database_name FROM duckdb_tables() WHERE table_name = 'shared_int_credential_issued'"
                       ).fetchall() == ([] if cached else [("dp_kept",)])
    (tmp_path / "events").rename(tmp_path / "gone")  # not another scan of the lake
    assert con.execute(q).fetchall() == before == whole != []


def test_tr2_reads_shared_issuance_or_its_own_with_the_same_findings(tmp_path: Path) -> None:
    """DP-TR-2 alone aggregates the expiry at issuance itself; in a catalog run it reads the materialized
    issuance rows. Both give the same findings, evidence included, on every one of its examples."""
    import dataclasses

    from analytics.detect import share_for
    from analytics.detectors import tr2_after_expiry as m
    from analytics.detectors.base import ev
    from analytics.lake import is_shared, share

    events = [dict(e, event_id=f"{i}:{e['event_id']}", credential_id=f"{i}:{e.get('credential_id')}")
              for i, ex in enumerate(m.EXAMPLES) for e in ex.events]
    # no issuance record: the expiry the use carries; and two issuances, the failed one first
    events += [ev(900, "solo:use", "tool.invoked", category="tool_call", credential_id="solo", actor_id="agent/s",
                  credential_expires_at=300),
               ev(0, "two:iss-failed", "token.exchanged", category="credential", credential_id="two",
                  actor_id="agent/t", outcome="failure", credential_expires_at=5000),
               ev(1, "two:iss", "token.exchanged", category="credential", credential_id="two", actor_id="agent/t",
                  target_id="agent/holder", credential_expires_at=300),
               ev(900, "two:use", "tool.invoked", category="tool_call", credential_id="two", actor_id="agent/t")]
    con = connect(write_lake(tmp_path, events))
    share_for(con, [m])  # declares no shared reads: nothing is materialized for it alone
    assert not is_shared(con, "int_credential_issued")
    alone = [dataclasses.asdict(f) for f in detect_findings(con, ["DP-TR-2"])]
    share(con, "int_credential_issued")
    assert is_shared(con, "int_credential_issued")
    shared = [dataclasses.asdict(f) for f in detect_findings(con, ["DP-TR-2"])]
    assert alone == shared
    assert {f["key"][0] for f in alone} == {f"{i}:{k[0]}" for i, ex in enumerate(m.EXAMPLES) for k in ex.expect} | {
        "solo", "two"}
    assert next(f for f in alone if f["key"] == ("two",))["event_ids"][0] == "two:iss"


def test_tr1_alone_and_in_a_catalog_run_give_the_same_findings(tmp_path: Path) -> None:
    """DP-TR-1 alone aggregates its hits' issuance in the scan that lists their uses; in a catalog run it reads the
    materialized issuance. Both give the same findings, evidence included: its examples, plus an issuance days
    before the uses, a failed issuance first, two issuances tied on time, a credential never issued, a use
    logged before its issuance, and two sign-in sessions (the second pass of each key reads only its spans' day files)."""
    import dataclasses

    from analytics.detectors import tr1_token_origins as m
    from analytics.detectors.base import ev
    from analytics.lake import is_shared, share

    def use(t: float, eid: str, cid: str, wl: str) -> dict[str, Any]:
        return ev(t, eid, "tool.invoked", category="tool_call", credential_id=cid, actor_id="agent/u",
                  src_workload=wl, src_ip="10.0.0.1")

    def iss(t: float, eid: str, cid: str, act: str = "token.exchanged", **kw: Any) -> dict[str, Any]:
        return ev(t, eid, act, category="credential", credential_id=cid, actor_id="agent/i", **kw)

    day = 86_400.0
    events = [dict(e, event_id=f"{i}:{e['event_id']}", credential_id=f"{i}:{e.get('credential_id')}",
                   session_id=e.get("session_id") and f"{i}:{e['session_id']}")
              for i, ex in enumerate(m.EXAMPLES) for e in ex.events]
    events += [iss(0, "old:iss", "old", target_id="agent/holder"), use(5 * day, "old:u1", "old", "wl/a"),
               use(5 * day + 9, "old:u2", "old", "wl/b"),
               iss(0, "f:iss-failed", "f", outcome="failure"), iss(1, "f:iss", "f", "token.issued"),
               use(9, "f:u1", "f", "wl/a"), use(10, "f:u2", "f", "wl/b"),
               iss(3, "tie:b", "tie"), iss(3, "tie:a", "tie", "token.refreshed"),
               use(9, "tie:u1", "tie", "wl/a"), use(day, "tie:u2", "tie", "wl/b"),
               use(9, "none:u1", "none", "wl/a"), use(10, "none:u2", "none", "wl/b"),
               use(5, "early:u1", "early", "wl/a"), iss(8, "early:iss", "early"), use(9, "early:u2", "early", "wl/b")]
    con = connect(write_lake(tmp_path, events))
    assert not is_shared(con, "int_credential_issued")
    alone = [dataclasses.asdict(f) for f in detect_findings(con, ["DP-TR-1"])]
    assert not is_shared(con, "int_credential_issued")  # alone, it never computes the whole intermediate
    share(con, "int_credential_issued")
    shared = [dataclasses.asdict(f) for f in detect_findings(con, ["DP-TR-1"])]
    assert alone == shared
    expected = {(f"{i}:{k[0]}" if not k[0].startswith("session:") else f"session:{i}:{k[0][8:]}",)
                for i, ex in enumerate(m.EXAMPLES) for k in ex.expect}
    assert {f["key"] for f in alone} == expected | {("old",), ("f",), ("tie",), ("none",), ("early",)}
    first = {f["key"][0]: f["event_ids"][0] for f in alone}  # the issuance, then the uses in time order
    assert [first[k] for k in ("old", "f", "tie", "none", "early")] == ["old:iss", "f:iss", "tie:a", "none:u1",
                                                                        "early:iss"]
    assert "agent/holder" in next(f for f in alone if f["key"] == ("old",))["identities"]


# A small mixed timeline used by the run tests: one TR-2 and one TR-3 positive.
def _run_events() -> tuple[dict[str, Any], ...]:
    """A TR-2 positive (used 10 min after expiry) and a TR-3 positive (used 5 min after revocation)."""
    from analytics.detectors.base import ev

    return (
        ev(0, "r:iss2", "token.exchanged", category="credential", credential_id="jti-2", actor_id="agent/c",
           actor_type="agent", credential_expires_at=300),
        ev(900, "r:use2", "decision", category="authorization", credential_id="jti-2", actor_id="agent/c",
           decision="allow"),
        ev(0, "r:iss3", "token.exchanged", category="credential", credential_id="jti-3", actor_id="agent/s",
           actor_type="agent", credential_expires_at=900),
        ev(60, "r:rev3", "token.revoked", category="credential", credential_id="jti-3", actor_id="agent/s"),
        ev(360, "r:use3", "decision", category="authorization", credential_id="jti-3", actor_id="agent/s",
           decision="allow"),
    )


REPO_EVENTS = _run_events()


@pytest.mark.parametrize("before", ["", "compressed_materialization"])
def test_build_right_holds_for_its_query_only(before: str) -> None:
    """`Context.rows(build_right=True)`: DuckDB's build-side swap is off while the query runs, and the
    connection's own setting is back afterwards, also when the query fails."""
    import duckdb

    from analytics.detectors.base import Context

    con = duckdb.connect()
    con.execute("SET disabled_optimizers = $v", {"v": before})
    ctx = Context(con, BASE, BASE)
    probe = "SELECT current_setting('disabled_optimizers') AS v"
    during = ctx.rows(probe, build_right=True)[0]["v"]
    assert "build_side_probe_side" in during.split(",")
    assert (before in during.split(",")) if before else during == "build_side_probe_side"
    assert ctx.rows(probe)[0]["v"] == before
    with pytest.raises(duckdb.Error):
        ctx.rows("SELECT * FROM no_such_table", build_right=True)
    assert ctx.rows(probe)[0]["v"] == before


def test_int_credential_issued_is_each_credentials_first_successful_issuance(tmp_path: Path) -> None:
    """The intermediate ranks only the credentials with several issuance records (the view's fast path): whatever
    the mix of single and repeated records, failures and ties on time, each credential's row is its first successful
    issuance by (time, event_id), through the whole view and through ``int_credential_issued_for``."""
    import random

    from analytics.detectors.base import ev

    rnd = random.Random(20261130)
    acts = ("token.issued", "token.exchanged", "token.refreshed", "svid.minted", "role.assumed", "session.started")
    events: list[dict[str, Any]] = []
    for c in range(300):
        for k in range(rnd.choice((1, 1, 1, 2, 3, 5))):  # mostly one record, as in real lakes
            events.append({"t": float(rnd.randrange(0, 40)), "event_id": f"e{rnd.randrange(10**6):06d}-{c}-{k}",
                           "activity": rnd.choice(acts), "category": "credential", "credential_id": f"c{c}",
                           "actor_id": f"agent/{k}", "target_id": f"role/{c}",
                           "outcome": rnd.choice(("success", None, "failure"))})
    events.append(ev(1, "use", "tool.invoked", credential_id="c0", actor_id="agent/u"))  # a use issues nothing
    want: dict[str, str] = {}
    for e in sorted(events, key=lambda e: (e["t"], e["event_id"])):
        if e["activity"] in acts and e.get("outcome") != "failure":
            want.setdefault(e["credential_id"], e["event_id"])
    ok = [e["credential_id"] for e in events if e["activity"] in acts and e.get("outcome") != "failure"]
    assert len(want) > 200 and sum(ok.count(c) > 1 for c in want) > 30  # both branches of the view are exercised
    con = connect(write_lake(tmp_path, events))
    got = dict(con.execute("SELECT credential_id, issue_event_id FROM int_credential_issued").fetchall())
    assert got == want
    some = sorted(want)[:40]
    got_for = dict(con.execute("SELECT credential_id, issue_event_id FROM int_credential_issued_for($ids)",
                               {"ids": some}).fetchall())
    assert got_for == {k: want[k] for k in some}


@pytest.mark.parametrize("rid", ["DP-TR-2", "DP-TR-3", "DP-TR-4"])
@pytest.mark.parametrize("threshold", [None, 0.0, 600.0, -30.0])
def test_tr2_tr3_tr4_from_the_shared_suspect_uses_match_their_own_queries(tmp_path: Path, rid: str,
                                                                          threshold: float | None) -> None:
    """In a catalog run DP-TR-2, DP-TR-3 and DP-TR-4 read one shared pass over the uses (`_suspect_uses`); in a run
    of one of them, it runs its own query. Both give the same findings, evidence included, over the three detections' examples
    plus uses without an issuance record, sub-tasks, a use before its revocation and a credential both late and
    off-task; with the default threshold, zero, a larger one, and a negative one (which runs the own query)."""
    import dataclasses

    from analytics.detect import _event_range, share_for
    from analytics.detectors import BY_ID, _suspect_uses
    from analytics.detectors.base import Context, ev

    mods = [BY_ID[r] for r in ("DP-TR-2", "DP-TR-3", "DP-TR-4")]
    events = [dict(e, event_id=f"{i}:{e['event_id']}", credential_id=f"{i}:{e.get('credential_id')}")
              for i, ex in enumerate(x for m in mods for x in m.EXAMPLES) for e in ex.events]

    def use(t: float, eid: str, cid: str, **kw: Any) -> dict[str, Any]:
        return ev(t, eid, "tool.invoked", category="tool_call", credential_id=cid, actor_id="agent/u", **kw)

    def iss(t: float, eid: str, cid: str, **kw: Any) -> dict[str, Any]:
        return ev(t, eid, "token.exchanged", category="credential", credential_id=cid, actor_id="agent/i",
                  target_id="agent/holder", **kw)

    events += [use(900, "solo:use", "solo", credential_expires_at=300),  # no issuance: the use's own expiry
               iss(0, "sub:iss", "sub", task_id="t1", credential_expires_at=5000),
               use(10, "sub:u1", "sub", task_id="t1.2"), use(11, "sub:u2", "sub", task_id="t10"),
               use(6000, "sub:u3", "sub", task_id="t1.3"),  # a sub-task, but late: among the suspect uses
               iss(0, "both:iss", "both", task_id="t7", credential_expires_at=100),
               ev(200, "both:rev", "token.revoked", category="credential", credential_id="both", actor_id="agent/i"),
               use(150, "both:u1", "both", task_id="t7"), use(400, "both:u2", "both", task_id="t8"),
               use(900, "norev:u", "norev", task_id="t9")]  # revoked never, issued never
    lake = write_lake(tmp_path, events)
    overrides = {} if threshold is None else {"clock_skew_s": threshold, "revocation_grace_s": threshold}

    alone_con = connect(lake)
    share_for(alone_con, [BY_ID[rid]])  # a run of this detection only: the pass would have no second reader
    lo, hi = _event_range(alone_con)
    alone = [dataclasses.asdict(f) for f in BY_ID[rid].detect(Context(alone_con, lo, hi, overrides))]
    assert alone_con not in _suspect_uses._WINDOW  # its own query

    con = connect(lake)
    share_for(con, list(REGISTRY))
    shared = [dataclasses.asdict(f) for f in BY_ID[rid].detect(Context(con, lo, hi, overrides))]
    assert (con in _suspect_uses._WINDOW) == (rid == "DP-TR-4" or threshold is None or threshold >= 0)  # no threshold
    assert shared == alone
    assert alone or (rid != "DP-TR-4" and threshold == 600.0)
    if rid == "DP-TR-4":
        assert {f["key"] for f in alone} >= {("sub",), ("both",)}
        assert next(f for f in alone if f["key"] == ("sub",))["event_ids"] == ("sub:iss", "sub:u2")


@pytest.mark.parametrize(("overrides", "pc2", "az2"), [
    ({}, {("d3", "a3")}, set()),
    ({"window_s": 1000}, {("d1", "a1"), ("d3", "a3")}, {("d1", "a2")}),
    ({"DP-PC-2.window_s": 1000}, {("d1", "a1"), ("d3", "a3")}, set()),
    ({"DP-AZ-2.window_s": 1000}, {("d3", "a3")}, {("d1", "a2")}),
])
def test_pc2_and_az2_share_their_denial_pairs(tmp_path: Path, overrides: dict[str, float],
                                              pc2: set[tuple[str, str]], az2: set[tuple[str, str]]) -> None:
    """DP-PC-2 and DP-AZ-2 read one set of denial/allow pairs, computed for the wider of their two windows
    (`_denials`): each finds the same alone and in one run with the other, whichever window is overridden; a NULL
    resource pairs for DP-PC-2 (same trace) and never for DP-AZ-2."""
    from analytics.detectors.base import ev

    def dec(t: float, eid: str, actor: str, decision: str, trace: str, span: str, resource: str | None = "db/r"
            ) -> dict[str, Any]:
        return ev(t, eid, "decision", category="authorization", actor_id=actor, decision=decision, tool="db.query",
                  resource=resource, trace_id=trace, span_id=span)

    def call(t: float, eid: str, actor: str, trace: str, span: str, parent: str | None = None,
             resource: str | None = "db/r") -> dict[str, Any]:
        return ev(t, eid, "tool.invoked", category="tool_call", actor_id=actor, tool="db.query", resource=resource,
                  trace_id=trace, span_id=span, parent_span_id=parent, outcome="success")

    events = [dec(0, "d1", "agent/a", "deny", "t1", "s1"), call(0.1, "d1c", "agent/a", "t1", "s1"),
              call(5, "dlg", "agent/a", "t1", "s2"),
              dec(700, "a1", "agent/b", "allow", "t1", "s3"), call(700.1, "a1c", "agent/b", "t1", "s3", "s2"),
              dec(950, "a2", "agent/c", "allow", "t2", "s4"), call(950.1, "a2c", "agent/c", "t2", "s4"),
              dec(2000, "d3", "agent/a", "deny", "t3", "s5", None), call(2000.1, "d3c", "agent/a", "t3", "s5", None, None),
              dec(2010, "a3", "agent/b", "allow", "t3", "s6", None),
              call(2010.1, "a3c", "agent/b", "t3", "s6", "s5", None)]
    lake = write_lake(tmp_path, events)
    both = detect_findings(connect(lake), ["DP-PC-2", "DP-AZ-2"], overrides)
    assert {f.key for f in both if f.detection == "DP-PC-2"} == pc2
    assert {f.key for f in both if f.detection == "DP-AZ-2"} == az2
    for rid, want in (("DP-AZ-2", az2), ("DP-PC-2", pc2)):
        assert {f.key for f in detect_findings(connect(lake), [rid], overrides)} == want


@pytest.mark.parametrize("amy_first_in_file", [False, True])
def test_dg2_names_the_first_caller_whatever_the_row_order(tmp_path: Path, amy_first_in_file: bool) -> None:
    """DP-DG-2 groups calls without a credential id per workload; the person it names is the first caller by time,
    not whichever row the scan met first."""
    from analytics.detectors.dg2_agent_as_human import _call

    bob = _call(None, None, "bob@corp.example", "human") | {"credential_id": None, "event_id": "x:b"}
    amy = _call(None, None, "amy@corp.example", "human") | {"credential_id": None, "event_id": "x:a", "t": 11}
    found = detect_findings(connect(write_lake(tmp_path, [amy, bob] if amy_first_in_file else [bob, amy])),
                            ["DP-DG-2"])
    assert [dict(f.facts)["person"] for f in found] == ["bob@corp.example"]
    assert found[0].event_ids[-2:] == ("x:b", "x:a")


def test_incremental_windows_still_see_context_before_them(tmp_path: Path) -> None:
    """A run over a short window reads only the decisions that can matter to its key events (DP-AZ-1: within ±5 s
    of a call; DP-PC-2 / DP-AZ-2: denials up to their window before an allow), and still sees those that lie
    before the window's start."""
    from analytics.detect import share_for
    from analytics.detectors import az1_unmediated, az2_denied_elsewhere
    from analytics.detectors.base import Context

    def at(s: float) -> dt.datetime:
        return BASE + dt.timedelta(seconds=s)

    call = az1_unmediated._tl(4.2)  # the call at 40 s, its decision 4.2 s earlier
    late = [dict(e, event_id=f"late:{e['event_id']}", trace_id="t9", t=e["t"] + 100) for e in az1_unmediated._tl(6)]
    denied = [dict(e, t=e["t"] + 1000) for e in az2_denied_elsewhere._tl(243)]  # denial at 1,003 s, allow at 1,243 s
    con = connect(write_lake(tmp_path, [*call, *late, *denied]))
    share_for(con, list(REGISTRY))
    az1 = {f.key for f in az1_unmediated.detect(Context(con, at(40), at(140), {}))}
    assert az1 == {("late:x:call",)}  # the call at 40 s is mediated by the decision at 35.8 s, before the window
    az2 = {f.key for f in az2_denied_elsewhere.detect(Context(con, at(1200), at(1300), {}))}
    assert az2 == {("x:deny", "x:allow")}  # the denial lies 197 s before the window
    assert az2_denied_elsewhere.detect(Context(con, at(1244), at(1300), {})) == []  # the allow is before this one


def test_dg2_in_a_short_window_keeps_each_key_whole(tmp_path: Path) -> None:
    """DP-DG-2 over a short window finds the keys whose calls span it (even with no call inside it) and lists every
    call of such a key; a key whose calls all lie before the window is not found."""
    from analytics.detect import share_for
    from analytics.detectors import dg2_agent_as_human as m
    from analytics.detectors.base import Context

    def call(t: float, eid: str, cred: str) -> dict[str, Any]:
        return m._call(None, None, "bob@corp.example", "human") | {"t": t, "event_id": eid, "credential_id": cred}

    events = [call(10, "a1", "span"), call(500, "a2", "span"), call(20, "b1", "before"), call(30, "b2", "before")]
    con = connect(write_lake(tmp_path, events))
    share_for(con, list(REGISTRY))
    at = [BASE + dt.timedelta(seconds=s) for s in (100, 200)]
    found = m.detect(Context(con, at[0], at[1], {}))
    assert [(f.key[0], f.event_ids[-2:]) for f in found] == [("span", ("a1", "a2"))]


@pytest.mark.parametrize("start", [0.0, 50.0, 3_000.0, 5_000.0, 9_000.0])
def test_tr1_in_a_recent_window_finds_what_the_whole_aggregate_finds(tmp_path: Path, monkeypatch: Any,
                                                                      start: float) -> None:
    """DP-TR-1 over the lake's last part first chooses the keys with an event from the window's start on
    (`_RECENT`), then counts their origins over their whole life: the same findings as aggregating every key.
    Among the events: a credential used from one origin long before the window and from a second inside it, one
    used from two origins before the window only, and a sign-in session whose second origin is in the window."""
    import dataclasses

    from analytics.detect import _event_range, share_for
    from analytics.detectors import tr1_token_origins as m
    from analytics.detectors.base import Context, ev

    def use(t: float, eid: str, cid: str, wl: str) -> dict[str, Any]:
        return ev(t, eid, "tool.invoked", category="tool_call", credential_id=cid, actor_id="agent/u",
                  src_workload=wl, src_ip="10.0.0.1")

    events = [dict(e, event_id=f"{i}:{e['event_id']}", credential_id=f"{i}:{e.get('credential_id')}",
                   session_id=e.get("session_id") and f"{i}:{e['session_id']}")
              for i, ex in enumerate(m.EXAMPLES) for e in ex.events]
    events += [use(10, "span:u1", "span", "wl/a"), use(8_000, "span:u2", "span", "wl/b"),
               use(20, "old:u1", "old", "wl/a"), use(30, "old:u2", "old", "wl/b"),
               use(8_500, "one:u1", "one", "wl/a"), use(8_600, "one:u2", "one", "wl/a"),
               ev(9_500, "late:s", "token.refreshed", category="credential", credential_id="tok-9",
                  session_id="4:sess-1", actor_id="carol@corp.example", actor_type="human", src_ip="192.0.2.99")]
    con = connect(write_lake(tmp_path, events))
    share_for(con, list(REGISTRY))
    lo, hi = _event_range(con)
    since = lo + dt.timedelta(seconds=start)
    chosen = [dataclasses.asdict(f) for f in m.detect(Context(con, since, hi, {}))]
    monkeypatch.setattr(m, "_RECENT", "")
    whole = [dataclasses.asdict(f) for f in m.detect(Context(con, since, hi, {}))]
    assert chosen == whole
    keys = {f["key"][0] for f in chosen}
    assert ("span" in keys) == (start <= 8_000) and ("old" in keys) == (start <= 30) and "one" not in keys
    assert "session:4:sess-1" in keys  # a benign example's session, made a hit by a refresh from a second address


def test_first_revocation_breaks_ties_on_time_by_event_id(tmp_path: Path) -> None:
    """Two records at the same instant: the first is the one with the smaller event id, whatever order the rows
    come in (DuckDB's `arg_min` by time alone picked either, so a finding's evidence could change between runs)."""
    from analytics.detectors.base import ev

    events = []
    for c in range(40):  # several row groups' worth of ties, ids in both orders
        a, b = (f"r{c}-a", f"r{c}-b") if c % 2 else (f"r{c}-b", f"r{c}-a")
        events += [ev(5, a, "token.revoked", category="credential", credential_id=f"c{c}", actor_id="admin"),
                   ev(5, b, "token.revoked", category="credential", credential_id=f"c{c}", actor_id="admin")]
    con = connect(write_lake(tmp_path, events))
    got = dict(con.execute("SELECT credential_id, revoke_event_id FROM int_credential_revoked").fetchall())
    assert got == {f"c{c}": f"r{c}-a" for c in range(40)}


def test_first_use_breaks_ties_on_time_by_event_id(tmp_path: Path) -> None:
    """Two uses of a credential at the same instant, by two callers from two origins: the first use (its caller
    and its origin) is the one whose event id hashes lower, whatever order the rows come in (time alone picked
    either, so the credentials mart could name another first user on the same lake)."""
    from analytics.detectors.base import ev

    events = []
    for c in range(40):  # several row groups' worth of ties, ids in both orders
        order = ("a", "b") if c % 2 else ("b", "a")
        events += [ev(5, f"u{c}-{k}", "tool.invoked", credential_id=f"c{c}", actor_id=f"agent/{k}",
                      src_workload=f"spiffe://corp.example/{k}", src_ip=f"10.0.0.{1 + (k == 'b')}") for k in order]
    con = connect(write_lake(tmp_path, events))
    got = con.execute("SELECT credential_id, used_by, uses FROM int_credential_used").fetchall()
    first = {c: min("ab", key=lambda k, c=c: con.execute("SELECT hash($e)", {"e": f"u{c}-{k}"}).fetchone()[0])
             for c in range(40)}
    assert 0 < sum(k == "a" for k in first.values()) < 40  # both sides of the tie win somewhere
    assert sorted(got) == sorted((f"c{c}", f"agent/{first[c]}", 2) for c in range(40))


def test_uses_by_origin_lists_most_uses_first_then_workload_and_address_nulls_last(tmp_path: Path) -> None:
    """A credential's origins in the credentials mart: by uses (most first), then workload, then address, a missing
    workload or address after the present ones."""
    from analytics.detectors.base import ev

    origins = [(None, "10.0.0.9", 2), ("spiffe://c/b", None, 2), ("spiffe://c/a", None, 2), ("spiffe://c/a", "10.0.0.2", 2),
               ("spiffe://c/a", "10.0.0.1", 2), (None, None, 2), ("spiffe://c/z", "10.0.0.5", 3), (None, "10.0.0.1", 1)]
    events = [ev(10 + k, f"o{n}-{k}", "tool.invoked", credential_id="c1", actor_id="agent/x", src_workload=w, src_ip=i)
              for n, (w, i, uses) in enumerate(origins) for k in range(uses)]
    con = connect(write_lake(tmp_path, events))
    (got,) = con.execute("SELECT uses_by_origin FROM int_credential_used").fetchone()
    last = (1, "~")  # sorts after every present value here
    want = sorted(origins, key=lambda o: (-o[2], (0, o[0]) if o[0] else last, (0, o[1]) if o[1] else last))
    assert [(o["workload"], o["ip"], o["uses"]) for o in got] == want
    assert con.execute("SELECT workloads, ips, uses FROM int_credential_used").fetchone() == (3, 4, 16)
