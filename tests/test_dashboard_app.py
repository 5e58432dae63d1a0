"""Dashboard pages and forms under Streamlit's AppTest, against a small generated lake.

Pages are run twice over: with whatever analytics modules this build has (each page must render,
saying "not available yet" for a missing one), and with small stand-ins that honour the documented
contracts (``list_alerts``/``mark_alert``, ``decision_path``, ``identity_graph``, ``allowed_at``,
``inventory``, the detector registry), so the forms are exercised before every module has landed.
"""

from __future__ import annotations

import datetime as dt
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ingest.lake import Lake

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "dashboards" / "app.py")
PAGES = {
    "overview": ("pages/overview.py", "Overview"),
    "alerts": ("pages/alerts.py", "Alerts"),
    "identity": ("pages/identity.py", "Identity explorer"),
    "investigate": ("pages/investigate.py", "Investigate"),
    "coverage": ("pages/coverage.py", "NHI inventory & framework coverage"),
}
RESEARCH = "spiffe://corp.example/agent/research"


def build_lake(root: Path, scale: int = 1500) -> Path:
    """Generate a seeded scenario and ingest it: the lake every dashboard test reads."""
    from ingest.collect_files import ingest_files
    from sample_data.generator import generate

    gen, lake = root / "gen", root / "lake"
    generate(gen, seed=7, scale=scale)
    ingest_files([str(gen)], Lake(lake))
    return lake


@pytest.fixture(scope="session")
def dash_lake(tmp_path_factory) -> Path:
    return build_lake(tmp_path_factory.mktemp("dashlake"))


@pytest.fixture
def app(dash_lake, monkeypatch):
    """A fresh AppTest of the router with the lake passed through the environment."""
    monkeypatch.setenv("DECISIONPATH_LAKE", str(dash_lake))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    yield at
    st.cache_data.clear()
    st.cache_resource.clear()


def open_page(at: AppTest, page: str) -> AppTest:
    at.run()
    if page != "overview":
        at.switch_page(PAGES[page][0])
        at.run()
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [t.value for t in at.title] + [s.value for s in at.subheader]
    for kind in ("info", "success", "warning", "error", "caption"):
        parts += [str(x.value) for x in getattr(at, kind)]
    return "\n".join(parts)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def sample_events(lake: Path, n: int = 3) -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect()
    rel = con.read_parquet(Lake(lake).files("events"))
    rel.create_view("events")
    cur = con.execute("""SELECT event_id, actor_id, credential_id, task_id, time FROM events
        WHERE actor_id = $id AND category = 'tool_call' ORDER BY time LIMIT $n""", {"id": RESEARCH, "n": n})
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# -- stand-ins honouring the contracts ------------------------------------------------------
@dataclass
class _Json:
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.data


@pytest.fixture
def contracts(dash_lake, monkeypatch) -> dict[str, Any]:
    """Install contract stand-ins for the analytics modules; returns what they recorded."""
    from analytics.detectors.base import Detection, Threshold

    evs = sample_events(dash_lake)
    e0 = evs[0]
    marks: list[tuple[str, ...]] = []
    alerts = [
        {"alert_id": "DP-TR-1:aaaa1111", "detection": "DP-TR-1", "severity": "high", "identities": [RESEARCH],
         "first_seen": e0["time"], "last_seen": evs[-1]["time"], "event_ids": [e["event_id"] for e in evs],
         "explanation": "credential used from two workloads", "verdict": None, "note": None,
         "links": [{"from": e0["credential_id"], "to": e0["event_id"], "kind": "used_by", "how": "token jti"},
                   {"from": RESEARCH, "to": e0["credential_id"], "kind": "holds", "how": "issuance"}]},
        {"alert_id": "DP-CR-1:bbbb2222", "detection": "DP-CR-1", "severity": "medium",
         "identities": ["svc-batch"], "first_seen": e0["time"], "last_seen": e0["time"],
         "event_ids": [e0["event_id"]], "explanation": "long-lived credential", "verdict": "open", "note": None},
    ]

    def list_alerts(lake_dir, **kw):
        return [dict(a, verdict=next((m[2] for m in reversed(marks) if m[1] == a["alert_id"]), a["verdict"]))
                for a in alerts]

    def mark_alert(lake_dir, alert_id, verdict, note, by):
        marks.append((str(lake_dir), alert_id, verdict, note, by))

    def decision_path(con, event_id):
        return _Json({"event_id": event_id, "missing": ["authorization decision"],
                      "links": [{"from": "session:s1", "to": "credential:c1", "kind": "issued", "how": "session id"},
                                {"from": "credential:c1", "to": event_id, "kind": "used", "how": "token jti"}]})

    def identity_graph(con, identity, since=None, until=None):
        g = nx.MultiDiGraph()
        g.add_node(identity, kind="identity")
        g.add_node("cred-1", kind="credential", expires_at="2026-11-02T10:00:00Z")
        g.add_node("tool:search", kind="tool")
        g.add_edge(identity, "cred-1", kind="issued", how="token jti")
        g.add_edge("cred-1", "tool:search", kind="invoked", how="trace id")
        return g

    calls: list[tuple[Any, ...]] = []

    def allowed_at(con, identity, at, action=None, resource=None):
        calls.append((identity, at, action, resource))
        return _Json({"answer": "allowed", "identity": identity, "at": at.isoformat(),
                      "evidence": {"credentials": [{"credential_id": "cred-1"}], "delegations": [],
                                   "policy_version": "bundle-42", "decisions": [{"decision": "allow"}],
                                   "actions": []}})

    def inventory(con):
        return [_Json({"identity": RESEARCH, "type": "agent", "owner": "alice@corp.example", "credentials": 3}),
                _Json({"identity": "svc-batch", "type": "service_account", "owner": None, "credentials": 1}),
                _Json({"identity": "alice@corp.example", "type": "human", "owner": None, "credentials": 2})]

    dets = [
        Detection("DP-TR-1", "token reuse: several origins", "high", "one credential, several origins",
                  nhi=("NHI9",), asi=("ASI03",), attack=("T1550.001",), csf=("DE.CM-03",)),
        Detection("DP-CR-1", "long-lived credential", "medium", "agent credential beyond TTL",
                  nhi=("NHI7",), asi=("ASI03",), attack=("T1078",), csf=("PR.AA-01",),
                  thresholds=(Threshold("max_ttl_s", 7200, "s", "policy"),)),
    ]
    mods = {
        "analytics.alerts": {"list_alerts": list_alerts, "mark_alert": mark_alert},
        "analytics.paths": {"decision_path": decision_path},
        "analytics.graphs": {"identity_graph": identity_graph},
        "analytics.allowed": {"allowed_at": allowed_at},
        "analytics.inventory": {"inventory": inventory},
        "analytics.detectors.registry": {"DETECTIONS": dets},
    }
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(m, k, v)
        monkeypatch.setitem(sys.modules, name, m)
    return {"marks": marks, "calls": calls, "events": evs}


# -- every page, with this build's modules ---------------------------------------------------
@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_with_this_build(app, page):
    at = open_page(app, page)
    assert_clean(at)
    assert at.title[0].value == PAGES[page][1]
    assert "Traceback" not in texts(at)


def test_overview_figures(app, dash_lake):
    at = open_page(app, "overview")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Events"].replace(",", "")) > 1000
    for label in ("Actions with an authorization decision", "Agent credentials within TTL policy",
                  "Per-task credentials revoked at task end"):
        assert metrics[label].endswith("%"), (label, metrics[label])
    # switching the split re-renders from cache without error
    at.segmented_control(key="ov_by").set_value("category").run()
    assert_clean(at)
    assert any(" events" in c.value and " of " in c.value for c in at.caption)  # busy period by default
    at.segmented_control(key="ov_range").set_value("everything").run()
    assert_clean(at)


def test_missing_lake_is_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DECISIONPATH_LAKE", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert_clean(at)
    assert "No lake at" in at.error[0].value


# -- pages and forms against the contracts ---------------------------------------------------
def test_overview_with_contracts(app, contracts):
    at = open_page(app, "overview")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Identities without an owner"] == "1"  # svc-batch; the human is not counted
    assert at.number_input(key="ov_ttl").value == 120  # DP-CR-1's max_ttl_s of 7200 s, in minutes


def test_alerts_filters_and_triage(app, contracts, dash_lake):
    at = open_page(app, "alerts")
    assert_clean(at)
    assert "2 of 2 alerts" in texts(at)
    at.multiselect(key="al_sev").set_value(["high"]).run()
    assert "1 of 2 alerts" in texts(at)
    assert "credential used from two workloads" in texts(at)
    assert at.get("iframe"), "the evidence path is drawn"
    at.multiselect(key="al_sev").set_value([]).run()
    at.text_input(key="al_who").set_value("svc-").run()
    assert "1 of 2 alerts" in texts(at)
    at.text_input(key="al_who").set_value("nobody-matches").run()
    assert "No alert matches these filters." in texts(at)
    at.text_input(key="al_who").set_value("").run()
    at.multiselect(key="al_det").set_value(["DP-TR-1"]).run()
    at.radio(key="tr_verdict").set_value("false_positive")
    at.text_area(key="tr_note").input("benign: blue/green deploy")
    at.text_input(key="tr_by").input("tester")
    next(b for b in at.button if b.label == "Save verdict").click()
    at.run()
    assert_clean(at)
    assert contracts["marks"] == [(str(dash_lake), "DP-TR-1:aaaa1111", "false_positive",
                                   "benign: blue/green deploy", "tester")]
    assert "Marked DP-TR-1:aaaa1111 as false positive." in texts(at)
    at.radio(key="al_status").set_value("false_positive").run()
    assert "1 of 2 alerts" in texts(at)


def test_alert_time_filter(app, contracts):
    at = open_page(app, "alerts")
    lo, hi = at.date_input(key="al_when").value
    at.date_input(key="al_when").set_value((hi + dt.timedelta(days=1), hi + dt.timedelta(days=2))).run()
    assert_clean(at)
    assert "No alert matches these filters." in texts(at)


def test_identity_explorer(app, contracts):
    at = open_page(app, "identity")
    at.text_input(key="id_search").input("agent/research").run()
    assert_clean(at)
    assert at.selectbox(key="id_pick").value == RESEARCH
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Events in window"].replace(",", "")) > 10
    assert at.get("iframe"), "the decision graph is drawn"
    assert "3 nodes, 2 edges" in texts(at)
    at.segmented_control(key="id_section").set_value("Timeline").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) > 10
    at.segmented_control(key="id_section").set_value("Credentials").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) > 0 and "credential_id" in at.dataframe[0].value.columns
    at.segmented_control(key="id_section").set_value("Delegations").run()
    assert_clean(at)
    at.text_input(key="id_search").input("'; DROP VIEW events; --").run()
    assert_clean(at)
    assert "No identity matches." in texts(at)


def test_identity_window(app, contracts):
    at = open_page(app, "identity")
    at.text_input(key="id_search").input(RESEARCH).run()
    lo, hi = at.date_input(key="id_window").value
    at.date_input(key="id_window").set_value((hi, hi)).run()
    assert_clean(at)


def test_investigate_allowed_form(app, contracts):
    at = open_page(app, "investigate")
    at.text_input(key="inv_identity").input(RESEARCH)
    at.text_input(key="inv_at").input("2026-11-02T09:14:03")
    at.text_input(key="inv_action").input("search")
    next(b for b in at.button if b.label == "Answer").click()
    at.run()
    assert_clean(at)
    assert any("allowed" in s.value for s in at.success)
    assert "Policy version in force: `bundle-42`" in texts(at)
    ident, when, action, resource = contracts["calls"][-1]
    assert (ident, action, resource) == (RESEARCH, "search", None)
    assert when == dt.datetime(2026, 11, 2, 9, 14, 3, tzinfo=dt.UTC)


def test_investigate_bad_time(app, contracts):
    at = open_page(app, "investigate")
    at.text_input(key="inv_identity").input(RESEARCH)
    at.text_input(key="inv_at").input("yesterday-ish")
    next(b for b in at.button if b.label == "Answer").click()
    at.run()
    assert_clean(at)
    assert "Cannot read the time" in at.error[0].value
    assert contracts["calls"] == []


def test_investigate_decision_path(app, contracts):
    eid = contracts["events"][0]["event_id"]
    at = open_page(app, "investigate")
    at.text_input(key="inv_event").input(eid)
    next(b for b in at.button if b.label == "Show path").click()
    at.run()
    assert_clean(at)
    assert f"2 links on the path of `{eid}`." in texts(at)
    assert "authorization decision" in texts(at)
    assert at.get("iframe")
    at.text_input(key="inv_event").input("no-such:event")
    next(b for b in at.button if b.label == "Show path").click()
    at.run()
    assert "No event 'no-such:event' in the lake." in at.error[0].value


def test_coverage_and_inventory(app, contracts):
    at = open_page(app, "coverage")
    assert_clean(at)
    cov = at.dataframe[0].value
    assert set(cov["detection"]) == {"DP-TR-1", "DP-CR-1"}
    assert dict(zip(cov["detection"], cov["alerts"], strict=True)) == {"DP-TR-1": 1, "DP-CR-1": 1}
    items = at.dataframe[1].value.set_index("item")
    assert items.loc["NHI9", "covered by"] == "DP-TR-1"
    assert items.loc["NHI1", "detections"] == 0  # a known gap is listed, not hidden
    at.radio(key="cov_fw").set_value("attack").run()
    assert_clean(at)
    assert "T1550.001" in set(at.dataframe[1].value["item"])
    inv = at.dataframe[2].value
    assert set(inv["identity"]) == {RESEARCH, "svc-batch"}  # humans hidden by default
