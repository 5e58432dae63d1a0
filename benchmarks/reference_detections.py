"""The three reference detections on one lake: the product against pandas and hand-written DuckDB, side by side.

    .venv/bin/python -m benchmarks.reference_detections --lake /tmp/l1m [--repeat 3] [--json]

For DP-TR-1 (token reuse, several origins), DP-TR-2 (use after expiry) and DP-PC-3 (role chains), each
implementation runs ``--repeat`` times in turn over the lake's whole event range: the product through
``benchmarks.product.run_detections`` (connection, views, detection, evidence), the baselines from
``benchmarks.baselines`` (reading the same Parquet files). Reports median seconds, finding counts, and the
issue's two ratios: pandas time / product time (target ≥ 3) and product time / DuckDB time (target ≤ 1.5).
Both are given twice: whole (the product opens its connection, DuckDB makes its view; pandas always reads the
files), and on a connection already open (the detection's own queries against the hand-written query alone:
what each detection adds to a catalog run, where one connection serves them all).
The suite's detect group (``python -m benchmarks run --only detect``) measures the same in worker processes
with peak RSS; this is the quick form for one existing lake. No assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

REFERENCE = ("DP-TR-1", "DP-TR-2", "DP-PC-3")


def measure(lake: Path, repeat: int) -> dict[str, Any]:
    from analytics.detect import connect as detect_connect
    from analytics.detect import detect_findings
    from analytics.lake import connect
    from benchmarks.baselines import DETECTION_BASELINES, _duck
    from benchmarks.product import lake_window, run_detections
    from ingest.lake import Lake

    con = connect(lake)
    since, until = lake_window(con)
    con.close()
    files = Lake(lake).files("events")
    out: dict[str, Any] = {}
    for did in REFERENCE:
        times: dict[str, list[float]] = {k: [] for k in ("product", "pandas", "duckdb", "product_query", "duckdb_query")}
        found: dict[str, int] = {}
        for _ in range(repeat):
            for impl in ("product", "pandas", "duckdb"):
                t = time.perf_counter()
                if impl == "product":
                    found[impl] = len(run_detections(lake, [did])[did])
                else:
                    found[impl] = len(DETECTION_BASELINES[did][impl](files, since, until))
                times[impl].append(time.perf_counter() - t)
            # the same work on a connection already open: the detection's queries, the hand-written query
            pcon, dcon = detect_connect(lake), _duck(files)
            t = time.perf_counter()
            detect_findings(pcon, [did])
            times["product_query"].append(time.perf_counter() - t)
            t = time.perf_counter()
            DETECTION_BASELINES[did]["duckdb"](files, since, until, con=dcon)
            times["duckdb_query"].append(time.perf_counter() - t)
            pcon.close()
            dcon.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        out[did] = {"seconds": {k: round(v, 3) for k, v in med.items()}, "findings": found,
                    "pandas_over_product": round(med["pandas"] / med["product"], 2),
                    "product_over_duckdb": round(med["product"] / med["duckdb"], 2),
                    "pandas_over_product_query": round(med["pandas"] / med["product_query"], 2),
                    "product_query_over_duckdb_query": round(med["product_query"] / med["duckdb_query"], 2)}
    return {"lake": str(lake), "repeat": repeat, "detections": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reference_detections", description=__doc__.splitlines()[0])
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = measure(a.lake, a.repeat)
    if a.json:
        print(json.dumps(res))
        return 0
    print("| detection | product s | pandas s | DuckDB s | pandas / product (≥ 3) | product / DuckDB (≤ 1.5) | "
          "product, open connection s | DuckDB query alone s | pandas / product | product / DuckDB | findings |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for did, r in res["detections"].items():
        s = r["seconds"]
        print(f"| {did} | {s['product']} | {s['pandas']} | {s['duckdb']} | {r['pandas_over_product']} | "
              f"{r['product_over_duckdb']} | {s['product_query']} | {s['duckdb_query']} | "
              f"{r['pandas_over_product_query']} | {r['product_query_over_duckdb_query']} | {r['findings']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
