"""Shared fixtures: the real embedded broker, one generated scenario per session, lake readers, and the
dashboard server and headless Chromium used by the browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest

from ingest.broker import EmbeddedBroker, create_topics
from ingest.lake import Lake

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker():
    """A real Tansu broker on a free loopback port for the whole session."""
    b = EmbeddedBroker(log_path=None)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topic(broker) -> str:
    """A fresh 3-partition topic."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topics(broker.bootstrap, [name], partitions=3)
    return name


@pytest.fixture(scope="session")
def scenario(tmp_path_factory) -> Path:
    """The default generated scenario (seed 7), written once per session."""
    from sample_data.generator import generate

    out = tmp_path_factory.mktemp("scenario")
    generate(out, seed=7, scale=3000)
    return out


def lake_counts(lake: Lake) -> dict[str, int]:
    """Rows and distinct event ids in events, and rows in the dead-letter."""
    con = duckdb.connect()
    ev = lake.files("events")
    dl = lake.files("dead_letter")
    n, d = (0, 0)
    if ev:
        n, d = con.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($f)", {"f": ev}).fetchone()
    dn = con.execute("SELECT count(*) FROM read_parquet($f)", {"f": dl}).fetchone()[0] if dl else 0
    dd = con.execute("SELECT count(DISTINCT origin) FROM read_parquet($f)", {"f": dl}).fetchone()[0] if dl else 0
    return {"events": n, "distinct": d, "dead": dn, "dead_distinct_origins": dd}


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300,
        ) -> subprocess.CompletedProcess[str]:
    """Run the real `decisionpath` command line in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "analytics.cli", *args], capture_output=True, text=True,
                       env=full_env, cwd=REPO, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"decisionpath {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def wait_until(pred, timeout: float = 60.0, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False


# --- browser tests: Debian's Chromium driven by Playwright (never `playwright install`) ---

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_local(url: str) -> bool:
    """Whether a URL the browser asks for stays on this machine (loopback, or no network at all)."""
    p = urlparse(url)
    if p.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    return (p.hostname or "") in LOCAL_HOSTS


@contextmanager
def dashboard_server(lake: Path, log: Path, port: int | None = None, **popen: object) -> Iterator[str]:
    """The dashboard started by ``analytics.serve.start_dashboard`` on a loopback port (a free one by
    default), once healthy. Yields its base URL; ``popen`` goes to the child (e.g. ``cwd``, a directory
    with a ``.streamlit/secrets.toml``).
    """
    from analytics.serve import start_dashboard

    port = port or free_port()
    with open(log, "wb") as out:
        proc = start_dashboard(lake, port=port, address="127.0.0.1", stdout=out, stderr=subprocess.STDOUT,
                               **popen)
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
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM),
                               args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


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


@pytest.fixture(autouse=True)
def _no_snapshot_preparation_left_running() -> Iterator[None]:
    """Wait for the dashboard's background snapshot preparations a test started (AppTest runs them in this
    process): a daemon thread still inside DuckDB when the interpreter exits aborts the whole run."""
    yield
    ctx = sys.modules.get("dashboards.context")
    if ctx is not None:
        for _, t in list(ctx._RUNNING.values()):
            t.join(120)
