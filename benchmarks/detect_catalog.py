"""The detection catalog on one lake: wall time per detection and in total, peak RSS, no lake writes.

    .venv/bin/python -m benchmarks.detect_catalog --lake /tmp/l10m [--rule DP-PC-1 ...] [--memory-limit 1.5GB]
        [--window 6h] [--issuance cache|memory] [--json]

Every detection runs over the lake's whole event range (or, with ``--window``, over that much time up to the
latest event: what a scheduled incremental run covers) on one shared connection, in registry order, as
``detect_findings`` does; the shared intermediates the selected detections name are computed first, on a
line of their own (``shared_seconds``; see docs/detections.md "Cost on 10M events"). Peak RSS is the process's own
(``ru_maxrss``); CPU seconds (all threads) come with the wall time, as they move less on a shared machine.
Compare two trees side by side by running this script from each checkout on the same lake.

``--issuance memory`` keeps the shared issuance in memory (and computes the revocations in their reader) as before
stop 21, instead of reading (and writing) the snapshot's caches in ``<lake>/marts/shared/`` (``analytics.shared_cache``):
the caches' baseline, in the same tree. A run with the default writes them on its first run over a snapshot; later
runs read them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
from typing import Any

from analytics import DETECT_MEMORY_LIMIT


def measure(lake: str, rules: list[str] | None = None, memory_limit: str = DETECT_MEMORY_LIMIT,
            window: dt.timedelta | None = None, issuance: str = "cache") -> dict[str, Any]:
    """Seconds and finding count per detection, the total, and peak RSS in MiB (``window``: the detections' key
    events limited to that much time before the latest event; ``issuance="memory"``: no shared caches)."""
    import analytics.lake

    carried = dict(analytics.lake._CARRIED)
    if issuance == "memory":
        analytics.lake._CARRIED.clear()  # for this measure only: the shared issuance is kept in memory
    try:
        return _timed(lake, rules, memory_limit, window, issuance)
    finally:
        analytics.lake._CARRIED.update(carried)


def _timed(lake: str, rules: list[str] | None, memory_limit: str, window: dt.timedelta | None,
           issuance: str) -> dict[str, Any]:
    from analytics.detect import _event_range, connect, share_for
    from analytics.detectors import BY_ID, REGISTRY
    from analytics.detectors.base import Context

    t0, c0 = time.perf_counter(), time.process_time()
    con = connect(lake, memory_limit)
    lo, hi = _event_range(con)
    per: dict[str, dict[str, float]] = {}
    shared = 0.0
    if lo is not None and hi is not None:
        mods = [BY_ID[r] for r in rules] if rules else list(REGISTRY)
        t = time.perf_counter()
        share_for(con, mods)  # as `detect` does: the shared intermediates first, reported on a line of their own
        shared = round(time.perf_counter() - t, 3)
        since = max(lo, hi - window) if window is not None else lo
        for m in mods:
            t = time.perf_counter()
            n = len(m.detect(Context(con, since, hi, {})))
            per[m.DETECTION.id] = {"seconds": round(time.perf_counter() - t, 2), "findings": n}
    return {"lake": lake, "memory_limit": memory_limit, "issuance": issuance,
            "window_seconds": window.total_seconds() if window else None,
            "total_seconds": round(time.perf_counter() - t0, 2),
            "cpu_seconds": round(time.process_time() - c0, 2),
            "findings": sum(int(v["findings"]) for v in per.values()), "shared_seconds": shared, "per_detection": per,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.detect_catalog", description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--rule", action="append", help="only these detection ids (repeatable)")
    ap.add_argument("--memory-limit", default=DETECT_MEMORY_LIMIT,
                    help=f"DuckDB's memory limit (default {DETECT_MEMORY_LIMIT}, as `decisionpath detect`)")
    ap.add_argument("--window", default=None,
                    help="only the last DURATION of key events (30m, 6h, 2d), as a scheduled incremental run covers")
    ap.add_argument("--issuance", choices=("cache", "memory"), default="cache",
                    help="read the snapshot's issuance cache (default, as `decisionpath detect`) or keep it in memory")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from analytics.detect import parse_duration

    res = measure(a.lake, a.rule, a.memory_limit, parse_duration(a.window) if a.window else None, a.issuance)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{'shared':9} {res['shared_seconds']:8.2f} s  (intermediates the detections read, computed first)")
        for k, v in res["per_detection"].items():
            print(f"{k:9} {v['seconds']:8.2f} s  {int(v['findings']):6} findings")
        print(f"total {res['total_seconds']:.1f} s ({res['cpu_seconds']:.1f} s CPU, all threads), {res['findings']} findings, "
              f"peak RSS {res['peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
