"""Dashboard pages and forms under Streamlit's AppTest, against the real analytics APIs.

The lake is the generator's seed-7 scenario at its default scale, ingested and scanned by
``analytics.detect.run``, so every page shows real events, alerts, answers and paths; figures are
checked against the analytics functions themselves.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from analytics import inventory, paths
from analytics.detectors import BY_ID
from analytics.lake import connect, rows
from analytics.triage import latest_marks, list_alerts
from ingest.lake import Lake

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "dashboards" / "app.py")
PAGES = {
    "overview": ("app_pages/overview.py", "Overview"),
    "alerts": ("app_pages/alerts.py", "Alerts"),
    "identity": ("app_pages/identity.py", "Identity explorer"),
    "investigate": ("app_pages/investigate.py", "Investigate"),
    "coverage": ("app_pages/coverage.py", "NHI inventory & framework coverage"),
}
RESEARCH = "spiffe://corp.example/agent/research"


def build_lake(root: Path) -> Path:
    """Generate the seed-7 scenario (default scale), ingest it and run every detection: the lake the tests read."""
    from analytics.detect import DetectSettings, run
    from ingest.collect_files import ingest_files
    from sample_data.generator import generate

    gen, lake = root / "gen", root / "lake"
    generate(gen, seed=7)
    ingest_files([str(gen)], Lake(lake))
    run(DetectSettings(lake_dir=lake))
    return lake


@pytest.fixture(scope="session")
def dash_lake(tmp_path_factory) -> Path:
    return build_lake(tmp_path_factory.mktemp("dashlake"))


def _app(lake: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("DECISIONPATH_LAKE", str(lake))
    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(APP, default_timeout=90)


@pytest.fixture
def app(dash_lake, monkeypatch):
    """A fresh AppTest of the router over the shared (read-only) lake."""
    yield _app(dash_lake, monkeypatch)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def lake_copy(dash_lake, tmp_path) -> Path:
    """A private copy of the lake, for tests that write triage marks."""
    return Path(shutil.copytree(dash_lake, tmp_path / "lake"))


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


def q(lake: Path, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return rows(connect(lake), sql, params)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# -- every page ------------------------------------------------------------------------------
@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders(app, page):
    at = open_page(app, page)
    assert_clean(at)
    assert at.title[0].value == PAGES[page][1]
    assert "not available yet" not in texts(at)


def test_missing_lake_is_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DECISIONPATH_LAKE", str(tmp_path / "nowhere"))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert_clean(at)
    assert "No lake at" in at.error[0].value


# -- overview --------------------------------------------------------------------------------
def test_overview_figures_agree_with_the_analytics(app, dash_lake):
    at = open_page(app, "overview")
    assert_clean(at)
    m = metrics(at)
    con = connect(dash_lake)
    assert int(m["Events"].replace(",", "")) == con.execute("SELECT count(*) FROM events").fetchone()[0]
    n_ids = con.execute("SELECT count(*) FROM identities").fetchone()[0]
    assert int(m["Identities"].replace(",", "")) == n_ids
    inv = inventory.inventory(con)
    nonhuman = [r for r in inv if r.identity_type != "human"]
    no_owner = [r for r in nonhuman if not r.owners]
    assert m["Non-human identities without an owner"] == f"{len(no_owner):,} of {len(nonhuman):,}"
    assert len(no_owner) <= len(nonhuman) <= n_ids
    for label in ("Actions with an authorization decision", "Agent credentials within TTL policy",
                  "Per-task credentials revoked at task end"):
        assert m[label].endswith("%"), (label, m[label])
    # every figure is defined in its tooltip
    assert all(x.help for x in at.metric)
    assert at.number_input(key="ov_ttl").value == BY_ID["DP-CR-1"].DETECTION.default("max_lifetime_s") // 60
    n_alerts = len(list_alerts(dash_lake))
    assert f"{n_alerts:,} alerts" in texts(at)


def test_overview_controls(app):
    at = open_page(app, "overview")
    at.segmented_control(key="ov_by").set_value("category").run()
    assert_clean(at)
    assert any(" events" in c.value and " of " in c.value for c in at.caption)  # busy period by default
    at.segmented_control(key="ov_range").set_value("everything").run()
    assert_clean(at)
    before = metrics(at)["Agent credentials within TTL policy"]
    at.number_input(key="ov_ttl").set_value(1).run()
    assert_clean(at)
    assert metrics(at)["Agent credentials within TTL policy"] != before


# -- alerts ----------------------------------------------------------------------------------
def test_alerts_are_the_lakes(app, dash_lake):
    alerts = list_alerts(dash_lake)
    assert len(alerts) > 0
    at = open_page(app, "alerts")
    assert_clean(at)
    assert f"{len(alerts):,} of {len(alerts):,} alerts" in texts(at)
    table = at.dataframe[0].value
    assert set(table["alert_id"]) == set(alerts["alert_id"])
    # the chosen alert: explanation, its id, both graphs, its evidence events
    chosen = at.selectbox(key="al_pick").value
    row = alerts[alerts["alert_id"] == chosen].iloc[0]
    assert row["explanation"] in texts(at)
    assert f"`{chosen}`" in texts(at)
    assert len(at.get("iframe")) >= 1
    assert set(at.dataframe[1].value["event_id"]) == set(row["event_ids"])


def test_alert_filters(app, dash_lake):
    alerts = list_alerts(dash_lake)
    total = len(alerts)
    at = open_page(app, "alerts")
    det = sorted(alerts["detection"].unique())[0]
    at.multiselect(key="al_det").set_value([det]).run()
    assert_clean(at)
    assert f"{int((alerts['detection'] == det).sum()):,} of {total:,} alerts" in texts(at)
    at.multiselect(key="al_det").set_value([]).run()
    sev = alerts["severity"].iloc[0]
    at.multiselect(key="al_sev").set_value([sev]).run()
    assert f"{int((alerts['severity'] == sev).sum()):,} of {total:,} alerts" in texts(at)
    at.multiselect(key="al_sev").set_value([]).run()
    at.text_input(key="al_who").set_value("agent/research").run()
    n = int(alerts["identities"].map(lambda ids: any("agent/research" in i for i in ids)).sum())
    assert f"{n:,} of {total:,} alerts" in texts(at)
    at.text_input(key="al_who").set_value("'; DROP VIEW events; --").run()
    assert_clean(at)
    assert "No alert matches these filters." in texts(at)
    at.text_input(key="al_who").set_value("").run()
    lo, hi = at.date_input(key="al_when").value
    at.date_input(key="al_when").set_value((hi + dt.timedelta(days=1), hi + dt.timedelta(days=2))).run()
    assert_clean(at)
    assert "No alert matches these filters." in texts(at)


def test_alert_triage_mark(lake_copy, monkeypatch):
    at = open_page(_app(lake_copy, monkeypatch), "alerts")
    chosen = at.selectbox(key="al_pick").value
    at.radio(key="tr_verdict").set_value("false_positive")
    at.text_area(key="tr_note").input("benign: blue/green deploy")
    at.text_input(key="tr_by").input("tester")
    next(b for b in at.button if b.label == "Save verdict").click()
    at.run()
    assert_clean(at)
    mark = latest_marks(lake_copy)[chosen]
    assert (mark["verdict"], mark["note"], mark["by"]) == ("false_positive", "benign: blue/green deploy", "tester")
    assert f"Marked {chosen} as false positive." in texts(at)
    at.radio(key="al_status").set_value("false_positive").run()
    assert_clean(at)
    assert f"1 of {len(list_alerts(lake_copy)):,} alerts" in texts(at)
    assert "False positive by tester" in texts(at)


# -- identity explorer -----------------------------------------------------------------------
def test_identity_explorer(app, dash_lake):
    at = open_page(app, "identity")
    at.text_input(key="id_search").input("agent/research").run()
    assert_clean(at)
    assert at.selectbox(key="id_pick").value == RESEARCH
    assert int(metrics(at)["Events in window"].replace(",", "")) > 10
    assert at.get("iframe"), "the decision graph is drawn"
    assert "drawn as a digest" in texts(at)
    at.toggle(key="id_full").set_value(True).run()
    assert_clean(at)
    assert at.get("iframe")
    at.segmented_control(key="id_section").set_value("Timeline").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) > 10
    at.segmented_control(key="id_section").set_value("Credentials").run()
    assert_clean(at)
    creds = at.dataframe[0].value
    assert len(creds) > 0 and {"credential_id", "issued_at", "expires_at", "revoked_at", "uses"} <= set(creds.columns)
    at.segmented_control(key="id_section").set_value("Delegations").run()
    assert_clean(at)
    at.text_input(key="id_search").input("'; DROP VIEW events; --").run()
    assert_clean(at)
    assert "No identity matches." in texts(at)


def test_identity_window_and_graph_digest(app, dash_lake):
    at = open_page(app, "identity")
    at.text_input(key="id_search").input(RESEARCH).run()
    lo, hi = at.date_input(key="id_window").value
    assert lo == hi  # the last active day by default
    span = q(dash_lake, "SELECT min(first_seen)::DATE AS a, max(last_seen)::DATE AS b FROM identities "
                        "WHERE identity = $id", {"id": RESEARCH})[0]
    active = f"{span['a']} → {span['b']}" if span["a"] != span["b"] else f"{span['a']}"
    assert hi == span["b"] and metrics(at)["Active (UTC days)"] == active
    first = q(dash_lake, "SELECT min(time)::DATE AS d FROM events WHERE actor_id = $id", {"id": RESEARCH})[0]["d"]
    at.date_input(key="id_window").set_value((first, hi)).run()
    assert_clean(at)
    assert "drawn as a digest" in texts(at)


def test_graph_digest_groups_credentials_per_task():
    import networkx as nx

    from dashboards.graph_view import summarise

    g = nx.MultiDiGraph()
    me = "identity:a"
    g.add_node(me, type="identity", label="a")
    for t in range(20):
        g.add_node(f"task:t{t}", type="task", label=f"t{t}")
        for c in range(3):
            cid = f"credential:c{t}-{c}"
            g.add_node(cid, type="credential", label=cid)
            g.add_edge(me, cid, key="issued", kind="issued", how="x", count=t + 1, first_seen="a", last_seen="b")
            g.add_edge(cid, f"task:t{t}", key="issued", kind="issued", how="y", count=1, first_seen="a", last_seen="b")
    d, merged = summarise(g, me, top=5)
    assert merged == {"task": 15}
    assert d.number_of_nodes() == 1 + 5 + 1  # me, the 5 busiest tasks, "+15 more tasks"
    assert d.nodes["task:t19"]["label"] == "t19 · 3 cred."
    assert d.edges[me, "more:task", "issued"]["count"] == 3 * sum(range(1, 16))


# -- investigate -----------------------------------------------------------------------------
def _decision(lake: Path, decision: str) -> dict[str, Any]:
    return q(lake, """SELECT actor_id, time, tool, action_key, decision FROM decisions
        WHERE decision = $d AND tool IS NOT NULL AND actor_id IS NOT NULL ORDER BY time, event_id LIMIT 1""",
             {"d": decision})[0]


@pytest.mark.parametrize(("decision", "answer"), [("allow", "allowed"), ("deny", "denied")])
def test_investigate_allowed_form(app, dash_lake, decision, answer):
    from analytics.allowed import allowed_at

    d = _decision(dash_lake, decision)
    at_time = d["time"].astimezone(dt.UTC)
    expected = allowed_at(connect(dash_lake), d["actor_id"], at_time, action=d["tool"]).answer
    assert expected == answer
    at = open_page(app, "investigate")
    at.text_input(key="inv_identity").input(d["actor_id"])
    at.text_input(key="inv_at").input(at_time.isoformat())
    at.text_input(key="inv_action").input(d["tool"])
    next(b for b in at.button if b.label == "Answer").click()
    at.run()
    assert_clean(at)
    box = at.success if answer == "allowed" else at.error
    assert any(x.value.startswith(f"**{answer}**") for x in box), texts(at)
    assert "Policy version in force: `" in texts(at)
    assert "Governing decision: `" in texts(at)


def test_investigate_bad_time(app):
    at = open_page(app, "investigate")
    at.text_input(key="inv_identity").input(RESEARCH)
    at.text_input(key="inv_at").input("yesterday-ish")
    next(b for b in at.button if b.label == "Answer").click()
    at.run()
    assert_clean(at)
    assert "Cannot read the time" in at.error[0].value


def test_investigate_decision_path(app, dash_lake):
    eid = q(dash_lake, """SELECT event_id FROM actions WHERE actor_id = $id AND category = 'tool_call'
        ORDER BY time LIMIT 1""", {"id": RESEARCH})[0]["event_id"]
    path = paths.decision_path(connect(dash_lake), eid)
    assert path.links
    at = open_page(app, "investigate")
    at.text_input(key="inv_event").input(eid)
    next(b for b in at.button if b.label == "Show path").click()
    at.run()
    assert_clean(at)
    assert f"{len(path.links)} links on the path of `{eid}`." in texts(at)
    assert at.get("iframe")
    at.text_input(key="inv_event").input("no-such:event")
    next(b for b in at.button if b.label == "Show path").click()
    at.run()
    assert "No event 'no-such:event' in the lake." in at.error[0].value


# -- coverage and inventory ------------------------------------------------------------------
def test_coverage_and_inventory(app, dash_lake):
    alerts = list_alerts(dash_lake)
    at = open_page(app, "coverage")
    assert_clean(at)
    cov = at.dataframe[0].value
    assert set(cov["detection"]) == set(BY_ID)
    want = alerts.groupby("detection").size().to_dict()
    assert {d: int(n) for d, n in zip(cov["detection"], cov["alerts"], strict=True) if n} == want
    items = at.dataframe[1].value.set_index("item")
    covering = sorted(d for d, m in BY_ID.items() if "NHI7" in m.DETECTION.nhi)
    assert items.loc["NHI7", "covered by"] == ", ".join(covering)
    at.radio(key="cov_fw").set_value("attack").run()
    assert_clean(at)
    assert "T1550.001" in set(at.dataframe[1].value["item"])
    at.segmented_control(key="cov_section").set_value("NHI inventory").run()
    assert_clean(at)
    inv = at.dataframe[0].value
    records = inventory.inventory(connect(dash_lake))
    assert set(inv["identity"]) == {r.identity for r in records if r.identity_type != "human"}
    at.text_input(key="inv_filter").input("agent/research").run()
    assert_clean(at)
    assert list(at.dataframe[0].value["identity"]) == [RESEARCH]
