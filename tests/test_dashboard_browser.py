"""End to end in real headless Chromium: the server started by analytics.serve, every page opened.

Checks each page's key content, that no exception box is shown, and that the browser never asks
for anything outside 127.0.0.1 (no CDN, no telemetry). Screenshots and first-render timings go to
artifacts/screenshots/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote

import networkx as nx
import pytest

from tests.conftest import CHROMIUM, dashboard_server, is_local, wait_idle
from tests.test_dashboard_app import RESEARCH, build_lake

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "artifacts" / "screenshots"
PAGES = [  # (url path, title, screenshot name)
    ("", "Overview", "overview"),
    ("alerts", "Alerts", "alerts"),
    ("identity", "Identity explorer", "identity"),
    ("investigate", "Investigate", "investigate"),
    ("coverage", "NHI inventory & framework coverage", "nhi"),
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    lake = build_lake(tmp_path_factory.mktemp("browserlake"))
    with dashboard_server(lake, tmp_path_factory.mktemp("serverlog") / "streamlit.log") as url:
        yield url, lake


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / name), full_page=True)


def _no_error(page) -> str:
    body = page.inner_text("body")
    assert page.locator('[data-testid="stException"]').count() == 0, body[:2000]
    assert "Traceback" not in body and "not available yet" not in body
    return body


def test_every_page_in_chromium(server, browser):
    from analytics.detectors import BY_ID
    from analytics.lake import connect, rows
    from analytics.triage import list_alerts

    url, lake = server
    alerts = list_alerts(lake)
    con = connect(lake)
    deny = rows(con, """SELECT actor_id, time, tool FROM decisions WHERE decision = 'deny' AND tool IS NOT NULL
        AND actor_id IS NOT NULL ORDER BY time, event_id LIMIT 1""")[0]
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1440, "height": 1700})
    outside: list[str] = []
    ctx.on("request", lambda r: None if is_local(r.url) else outside.append(r.url))
    page = ctx.new_page()
    page.on("websocket", lambda ws: None if is_local(ws.url.replace("ws", "http", 1)) else outside.append(ws.url))
    timings: dict[str, float] = {}
    musts = {  # text that proves the page shows the lake's real content
        "Overview": ["Events over time", f"{len(alerts):,} alerts", "Non-human identities without an owner"],
        "Alerts": [f"{len(alerts):,} of {len(alerts):,} alerts", "Evidence path", "Decision path of the key event"],
        "Identity explorer": ["Search an identity", "drawn as a digest"],
        "Investigate": ["Decision path of an event", "Was this identity allowed"],
        "NHI inventory & framework coverage": ["Framework coverage", sorted(BY_ID)[0], "items covered"],
    }
    for path, title, _ in PAGES:
        t0 = time.perf_counter()
        page.goto(f"{url}/{path}")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        wait_idle(page)
        timings[title] = round(time.perf_counter() - t0, 2)
        body = _no_error(page)
        for must in musts[title]:
            assert must in body, (title, must, body[:1500])
        if title == "Alerts":  # the chosen alert's id is on the page, and it is one of the lake's
            assert any(a in body for a in alerts["alert_id"]), body[:1500]
        name = title.split(" ")[0].lower().replace("&", "")
        _shot(page, f"{len(timings)}-{name}.png")

    # identity explorer: search, pick, draw, click a node
    page.goto(f"{url}/identity")
    box = page.get_by_label("Search an identity (user, SPIFFE ID, role ARN, service account)")
    box.fill("agent/research")
    box.press("Enter")
    page.get_by_text("Events in window").first.wait_for(timeout=60_000)
    wait_idle(page)
    _no_error(page)
    assert RESEARCH in unquote(page.url)  # the selection is kept in the address, for sharing
    frames = [f for f in page.frames if f.query_selector("svg#svg")]
    assert frames, "the decision graph is drawn"
    f = frames[0]
    assert f.locator("g[data-id]").count() <= 60  # the digest stays legible
    f.locator("g[data-id] circle").first.click()
    assert f.inner_text("#title") != "Click a node or an edge"
    _shot(page, "6-identity-selected.png")

    # investigate: a recorded deny is answered "denied"
    page.goto(f"{url}/investigate")
    page.get_by_role("heading", name="Investigate").first.wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_label("Identity", exact=True).fill(deny["actor_id"])
    page.get_by_label("At (ISO 8601, UTC if no zone)").fill(deny["time"].isoformat())
    page.get_by_label("Action or tool (optional)").fill(deny["tool"])
    page.get_by_role("button", name="Answer").click()
    page.get_by_text("Governing decision").first.wait_for(timeout=60_000)
    wait_idle(page)
    body = _no_error(page)
    assert f"denied: {deny['actor_id']}" in body, body[:2000]
    _shot(page, "7-investigate-answer.png")
    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=2))
    ctx.close()
    assert outside == [], f"requests left 127.0.0.1: {outside}"


def test_graph_component_offline_pan_zoom_click(browser):
    """The graph component alone: renders, pans, zooms and shows details with the network cut off."""
    from dashboards.graph_view import graph_html

    g = nx.MultiDiGraph()
    g.add_node(RESEARCH, kind="agent")
    g.add_node("jti-1", kind="credential", expires_at="2026-11-02T10:00:00Z")
    g.add_node("tool:search", kind="tool")
    g.add_edge("alice@corp.example", RESEARCH, kind="delegated_by", how="act claim")
    g.add_edge(RESEARCH, "jti-1", kind="issued", how="token jti")
    g.add_edge("jti-1", "tool:search", kind="invoked", how="trace id")
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1000, "height": 600}, offline=True)
    outside: list[str] = []
    ctx.on("request", lambda r: None if is_local(r.url) else outside.append(r.url))
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_content(graph_html(g, focus=[RESEARCH]))
    assert page.locator("g[data-id]").count() == 4
    assert page.inner_text("#title") == RESEARCH  # the focus is selected on load
    page.locator('g[data-id="jti-1"] circle').click()
    assert page.inner_text("#title") == "jti-1"
    assert "2026-11-02T10:00:00Z" in page.inner_text("#details")
    before = page.get_attribute("#vp", "transform")
    page.mouse.move(200, 300)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(100)
    zoomed = page.get_attribute("#vp", "transform")
    assert zoomed != before
    page.mouse.move(30, 560)
    page.mouse.down()
    page.mouse.move(130, 520, steps=5)
    page.mouse.up()
    assert page.get_attribute("#vp", "transform") != zoomed
    page.click("#fit")
    page.screenshot(path=str(SHOTS / "graph-component.png"))
    ctx.close()
    assert errors == [] and outside == []
