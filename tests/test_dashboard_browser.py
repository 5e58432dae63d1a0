"""End to end in real headless Chromium: the server started by analytics.serve, every page opened.

Checks each page's key content, that no exception box is shown, and that the browser never asks
for anything outside 127.0.0.1 (no CDN, no telemetry). Screenshots and first-render timings go to
artifacts/screenshots/.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import networkx as nx
import pytest

from tests.test_dashboard_app import RESEARCH, build_lake

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "artifacts" / "screenshots"
PAGES = [  # (url path, title, text that must be on the page)
    ("", "Overview", "Events over time"),
    ("alerts", "Alerts", ""),
    ("identity", "Identity explorer", "Search an identity"),
    ("investigate", "Investigate", "Decision path of an event"),
    ("coverage", "NHI inventory & framework coverage", "Framework coverage"),
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from analytics.serve import start_dashboard

    lake = build_lake(tmp_path_factory.mktemp("browserlake"))
    port = free_port()
    log = tmp_path_factory.mktemp("serverlog") / "streamlit.log"
    with open(log, "wb") as out:
        proc = start_dashboard(lake, port=port, address="127.0.0.1", stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("dashboard did not come up:\n" + log.read_text())
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM),
                               args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def _is_local(url: str) -> bool:
    p = urlparse(url)
    if p.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    return (p.hostname or "") in LOCAL_HOSTS


IDLE_JS = """() => {
  const busy = document.querySelector('[data-testid="stStatusWidgetRunningIcon"], [data-testid^="stSkeleton"],'
    + ' [data-testid="stAppSkeleton"], [data-stale="true"]');
  const now = performance.now();
  if (busy) { window.__dpIdleSince = null; return false; }
  window.__dpIdleSince = window.__dpIdleSince || now;
  return now - window.__dpIdleSince > 700;
}"""


def wait_idle(page, timeout: float = 60_000) -> None:
    """Until Streamlit has finished the run: no running icon, skeleton or stale element for 0.7 s."""
    page.wait_for_function(IDLE_JS, timeout=timeout, polling=100)


def test_every_page_in_chromium(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1440, "height": 1700})
    outside: list[str] = []
    ctx.on("request", lambda r: None if _is_local(r.url) else outside.append(r.url))
    page = ctx.new_page()
    page.on("websocket", lambda ws: None if _is_local(ws.url.replace("ws", "http", 1)) else outside.append(ws.url))
    timings: dict[str, float] = {}
    for path, title, must in PAGES:
        t0 = time.perf_counter()
        page.goto(f"{server}/{path}")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        wait_idle(page)
        timings[title] = round(time.perf_counter() - t0, 2)
        body = page.inner_text("body")
        assert page.locator('[data-testid="stException"]').count() == 0, body[:2000]
        assert "Traceback" not in body
        if must:
            assert must in body, (title, body[:1000])
        name = title.split(" ")[0].lower().replace("&", "")
        page.screenshot(path=str(SHOTS / f"{len(timings)}-{name}.png"), full_page=True)

    # identity explorer: search, pick, draw
    page.goto(f"{server}/identity")
    box = page.get_by_label("Search an identity (user, SPIFFE ID, role ARN, service account)")
    box.fill("agent/research")
    box.press("Enter")
    page.get_by_text("Events in window").first.wait_for(timeout=60_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert RESEARCH in unquote(page.url)  # the selection is kept in the address, for sharing
    assert "Events in window" in page.inner_text("body")
    frames = [f for f in page.frames if f.query_selector("svg#svg")]
    if frames:  # analytics.graphs is in this build: click a node, read its details
        f = frames[0]
        f.locator("g[data-id] circle").first.click()
        assert f.inner_text("#title") != "Click a node or an edge"
    page.screenshot(path=str(SHOTS / "6-identity-selected.png"), full_page=True)
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
    ctx.on("request", lambda r: None if _is_local(r.url) else outside.append(r.url))
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
