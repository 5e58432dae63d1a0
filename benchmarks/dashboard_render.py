"""First render of every dashboard page in real headless Chromium, cold and warm, on one lake.

    .venv/bin/python -m benchmarks.dashboard_render --lake LAKE [--identity ID] [--repeat 3] [--settle S]
        [--json OUT]

Cold: for each page a fresh server (``analytics.serve.start_dashboard`` on a free loopback port, empty
caches), the page opened first, so it pays the session start, the connection and every query it needs.
First: one server, every page opened once in navigation order, each timed as its first render on a
running server with its queries not cached yet (for the first page this is a cold render). Warm: then
every page again. A page is rendered when Streamlit is idle (no running icon, skeleton or stale element) and stays so for 0.7 s; the figure is the moment it
became idle, measured in the page from navigation start (``performance.now()``), so the 0.7 s settling
window is not counted. ``--identity`` opens the identity explorer on that identity (default: the busiest
one by events, found with one query). Medians over ``--repeat`` runs; no assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import IDLE_JS, dashboard_server  # noqa: E402  (the browser tests' server and idle check)

CHROMIUM = Path("/usr/bin/chromium")
PAGES = [  # (url path, heading that proves the page is there)
    ("", "Overview"),
    ("alerts", "Alerts"),
    ("identity", "Identity explorer"),
    ("investigate", "Investigate"),
    ("coverage", "NHI inventory & framework coverage"),
]



def _busiest(lake: Path) -> str:
    from analytics.lake import connect, rows

    con = connect(lake)
    return str(rows(con, "SELECT actor_id FROM events WHERE actor_id IS NOT NULL GROUP BY 1 "
                         "ORDER BY count(*) DESC, 1 LIMIT 1")[0]["actor_id"])


def _open(page: Any, url: str, heading: str, timeout_ms: float) -> float:
    """Seconds from navigation start until the page was idle (and stayed so)."""
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(IDLE_JS, timeout=timeout_ms, polling=100)
    if page.locator('[data-testid="stException"]').count():
        raise SystemExit(f"{url}: the page shows an exception:\n{page.inner_text('body')[:2000]}")
    return float(page.evaluate("window.__dpIdleSince")) / 1000


def measure(lake: Path, identity: str, repeat: int, timeout_s: float, settle_s: float = 0.0) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    q = "?" + urllib.parse.urlencode({"identity": identity})
    urls = {h: p + (q if p == "identity" else "") for p, h in PAGES}
    cold: dict[str, list[float]] = {h: [] for _, h in PAGES}
    warm: dict[str, list[float]] = {h: [] for _, h in PAGES}
    first: dict[str, list[float]] = {h: [] for _, h in PAGES}
    log = Path(tempfile.mkdtemp(prefix="dp-render-")) / "streamlit.log"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM),
                               args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for r in range(repeat):
            for _, h in PAGES:
                with dashboard_server(lake, log) as url:
                    time.sleep(settle_s)  # 0: opened the instant the server is healthy, racing its warm-up
                    ctx = b.new_context(viewport={"width": 1440, "height": 1700})
                    cold[h].append(_open(ctx.new_page(), f"{url}/{urls[h]}", h, timeout_s * 1000))
                    ctx.close()
                print(f"run {r + 1}: {h}: cold {cold[h][-1]:.2f} s", file=sys.stderr)
            with dashboard_server(lake, log) as url:
                ctx = b.new_context(viewport={"width": 1440, "height": 1700})
                page = ctx.new_page()
                for _, h in PAGES:
                    first[h].append(_open(page, f"{url}/{urls[h]}", h, timeout_s * 1000))
                    print(f"run {r + 1}: {h}: first {first[h][-1]:.2f} s", file=sys.stderr)
                for _, h in PAGES:
                    warm[h].append(_open(page, f"{url}/{urls[h]}", h, timeout_s * 1000))
                    print(f"run {r + 1}: {h}: warm {warm[h][-1]:.2f} s", file=sys.stderr)
                ctx.close()
        b.close()

    def stat(xs: list[float]) -> dict[str, float]:
        return {"median_s": round(statistics.median(xs), 2), "min_s": round(min(xs), 2), "max_s": round(max(xs), 2)}

    return {"lake": str(lake), "identity": identity, "repeat": repeat, "settle_s": settle_s,
            "pages": {h: {"cold": stat(cold[h]), "first": stat(first[h]), "warm": stat(warm[h])} for _, h in PAGES}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_render", description=__doc__.split("\n")[0])
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--identity", help="identity for the explorer page (default: the busiest)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300, help="seconds one page may take")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds between the server reporting healthy and the cold page being opened")
    ap.add_argument("--json", type=Path, help="also write the result here")
    a = ap.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit("Debian's chromium is needed at /usr/bin/chromium (apt-get install chromium)")
    res = measure(a.lake, a.identity or _busiest(a.lake), a.repeat, a.timeout, a.settle)
    print("| page | cold median (min–max) s | first on a running server | warm median (min–max) s |\n"
          "|---|---:|---:|---:|")
    for h, v in res["pages"].items():
        c, f, w = v["cold"], v["first"], v["warm"]
        print(f"| {h} | {c['median_s']} ({c['min_s']}–{c['max_s']}) | {f['median_s']} ({f['min_s']}–{f['max_s']}) "
              f"| {w['median_s']} ({w['min_s']}–{w['max_s']}) |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
