"""Point-in-time query latency on one lake: ``allowed_at`` and ``decision_path`` over N random queries.

    .venv/bin/python -m benchmarks.query_latency --lake /tmp/an1m-lake [-n 200] [--seed 7]
        [--cached memory|files] [--json]

Queries are drawn with a fixed seed from the lake's own actions (identity, time, action key, and the
event id for paths), so two runs on the same lake ask the same questions. One connection is opened
(not timed) and reused; the first ``--warmup`` queries of each kind are run but not counted (the very first
call loads or builds the connection's marts / id index and is reported apart as ``first_ms``). ``--cached``
says how the snapshot's cached tables are read: loaded into memory (default: a process answering many
questions) or as files (the one-shot CLI and the dashboard: a fast first call, slower repeated ones).
Reports median, p95, min and max in milliseconds. No assertions: targets live in docs/analytics.md.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

_SAMPLE = """
SELECT actor_id, time, action_key, event_id FROM actions
WHERE actor_id IS NOT NULL
ORDER BY event_id
"""


def pct(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``xs`` (q in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(timing: tuple[Sequence[float], float]) -> dict[str, float]:
    """Median, p95, min and max of latencies in ms, and the first (per-connection set-up) call."""
    ms, first = timing
    return {"n": len(ms), "first_ms": round(first, 1), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(pct(ms, 95), 1),
            "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1)}


def timed(warmup: int, calls: list[Callable[[], Any]]) -> tuple[list[float], float]:
    """Run every call, timing each in ms; the first ``warmup`` are not counted (the first is returned apart)."""
    out, first = [], 0.0
    for i, c in enumerate(calls):
        t0 = time.perf_counter()
        c()
        dt_ms = (time.perf_counter() - t0) * 1000
        if i == 0:
            first = dt_ms
        if i >= warmup:
            out.append(dt_ms)
    return out, first


def run(lake: Path, n: int, seed: int, warmup: int, kinds: Sequence[str], cached: str = "memory") -> dict[str, Any]:
    """Sample queries from the lake, time them, and return the summary per query kind."""
    import datetime as dt

    from analytics.allowed import allowed_at
    from analytics.lake import connect
    from analytics.paths import decision_path

    t0 = time.perf_counter()
    con = connect(lake, cached=cached)
    connect_s = time.perf_counter() - t0
    population = con.execute(_SAMPLE).fetchall()
    events = (con.execute("SELECT count(*) FROM events").fetchone() or (0,))[0]
    rng = random.Random(seed)
    picks = rng.sample(population, min(n + warmup, len(population)))
    res: dict[str, Any] = {"lake": str(lake), "events": events, "queries": n, "seed": seed, "warmup": warmup,
                           "cached": cached, "connect_s": round(connect_s, 3)}
    if "allowed" in kinds:
        # Half ask about the exact instant and action, half about a shifted instant with no action filter.
        calls: list[Callable[[], Any]] = []
        for i, (actor, t, key, _eid) in enumerate(picks):
            if i % 2:
                calls.append(partial(allowed_at, con, actor, t, key))
            else:
                calls.append(partial(allowed_at, con, actor, t + dt.timedelta(seconds=37)))
        res["allowed_at"] = summary(timed(warmup, calls))
    if "path" in kinds:
        paths: list[Callable[[], Any]] = [partial(decision_path, con, eid) for (_a, _t, _k, eid) in picks]
        res["decision_path"] = summary(timed(warmup, paths))
    con.close()
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True, type=Path)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", choices=("allowed", "path"), action="append")
    ap.add_argument("--cached", choices=("memory", "files"), default="memory",
                    help="how the snapshot's cached tables are read (analytics.lake.connect): loaded once, as a "
                         "long-lived process answering many questions would (default), or as files, as the "
                         "one-shot CLI and the dashboard do")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.lake, a.n, a.seed, a.warmup, a.only or ("allowed", "path"), a.cached)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"lake {res['lake']}: {res['events']} events, cached tables in {res['cached']}, connect {res['connect_s']} s, "
              f"{res['queries']} queries (seed {res['seed']}, {res['warmup']} warm-up)")
        for k in ("allowed_at", "decision_path"):
            if k in res:
                s = res[k]
                print(f"  {k:14s} p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f} ms  "
                      f"min {s['min_ms']:8.1f}  max {s['max_ms']:8.1f} ms  (first call {s['first_ms']:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
