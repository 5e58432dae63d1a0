"""What reading a detect run's state costs after many runs, with the run tables compacted and without.

    .venv/bin/python -m benchmarks.run_tables --runs 1000 [--at 100,300,1000] [--json]

A scheduled detect (``schedule --every 5m``: 288 runs a day) appends a file of watermarks to ``detect_state`` per run
and reads the whole table at the start of the next (``analytics.detect.watermarks``). This appends ``--runs`` runs'
rows (one per detection of the catalog) to two fresh tables in a temporary directory, one as the product writes them
(``analytics.alerts.append``: compacted past ``SMALL_FILES_MAX`` files) and one never compacted (the baseline, as
before stop 23), and reports at each of ``--at`` the median of 3 ``watermarks`` reads for each, and the mean time
of an append. No assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(runs: int, at: list[int]) -> dict[str, Any]:
    from analytics import alerts as al

    out: dict[str, Any] = {"runs": runs, "small_files_max": al.SMALL_FILES_MAX, "at": []}
    keep = al.SMALL_FILES_MAX
    try:
        with tempfile.TemporaryDirectory() as d:
            _append_and_read({"tidied": Path(d) / "tidied", "baseline": Path(d) / "baseline"}, runs, at, keep, out)
    finally:
        al.SMALL_FILES_MAX = keep  # the baseline's appends set it out of reach
    return out


def _append_and_read(lakes: dict[str, Path], runs: int, at: list[int], keep: int, out: dict[str, Any]) -> None:
    from analytics import alerts as al
    from analytics.detect import watermarks
    from analytics.detectors import REGISTRY

    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    spent = {k: 0.0 for k in lakes}
    for i in range(1, runs + 1):
        u = start + dt.timedelta(minutes=5 * i)
        rows = [{"detection": m.DETECTION.id, "detector_version": m.DETECTION.version,
                 "since": u - dt.timedelta(minutes=5), "until": u, "run_id": f"r{i}", "ran_at": u,
                 "findings": 0, "new_alerts": 0} for m in REGISTRY]
        for k, lake in lakes.items():
            al.SMALL_FILES_MAX = keep if k == "tidied" else 1 << 62
            t = time.perf_counter()
            al.append(lake / "detect_state", rows, al.STATE_SCHEMA)
            spent[k] += time.perf_counter() - t
        if i not in at:
            continue
        point: dict[str, Any] = {"runs": i}
        for k, lake in lakes.items():
            times = []
            for _ in range(3):
                t = time.perf_counter()
                watermarks(lake)
                times.append(time.perf_counter() - t)
            table = al.table(lake / "detect_state")
            point[k] = {"watermarks_s": round(statistics.median(times), 4),
                        "files": len(table.file_uris()) if table is not None else 0,
                        "append_mean_s": round(spent[k] / i, 4)}
        point["baseline_over_tidied"] = round(point["baseline"]["watermarks_s"] /
                                              max(point["tidied"]["watermarks_s"], 1e-9), 2)
        out["at"].append(point)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run_tables", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--at", default="100,300,1000", help="comma-separated run counts to measure at")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    at = sorted({int(x) for x in a.at.split(",") if x.strip()} | {a.runs})
    res = measure(a.runs, [x for x in at if x <= a.runs])
    if a.json:
        print(json.dumps(res))
        return 0
    print("| runs | watermarks, tidied s (files) | watermarks, never compacted s (files) | ratio | append mean s tidied / not |")
    print("|---:|---:|---:|---:|---:|")
    for p in res["at"]:
        t, b = p["tidied"], p["baseline"]
        print(f"| {p['runs']} | {t['watermarks_s']} ({t['files']}) | {b['watermarks_s']} ({b['files']}) | "
              f"{p['baseline_over_tidied']}× | {t['append_mean_s']} / {b['append_mean_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
