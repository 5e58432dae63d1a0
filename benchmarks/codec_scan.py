"""Scan cost by Parquet codec: the columns detections read, written once per codec, then the same scans timed.

    .venv/bin/python -m benchmarks.codec_scan --lake /tmp/l10m --out /tmp/codecs [--repeat 5] [--json]

The lake's sixteen analytic columns are copied by DuckDB, one file per day (row groups of 8,192), as zstd,
lz4_raw, snappy and uncompressed; each of four typical detection scans is then timed on each copy (median of
``--repeat``, a fresh connection per codec, footers cached). It measures the codec alone, not the lake's writer
(delta-rs sets one codec per file: benchmarks/RESULTS.md, stop 18). Writes under ``--out`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from typing import Any

CODECS = ("zstd", "lz4_raw", "snappy", "uncompressed")
COLUMNS = ("event_id, time, category, activity, actor_id, credential_id, trace_id, span_id, tool, resource, "
           "decision, src_workload, src_ip, task_id, outcome, actor_type")
SCANS = {
    "tool calls: count": "SELECT count(*) FROM ev WHERE activity = 'tool.invoked'",
    "tool calls: + max(event_id)": "SELECT count(*), max(event_id) FROM ev WHERE activity = 'tool.invoked'",
    "credential uses: 4 columns": "SELECT count(*), max(event_id), max(actor_id), max(credential_id), max(time) "
                                  "FROM ev WHERE credential_id IS NOT NULL "
                                  "AND category IN ('tool_call', 'authorization', 'api_activity')",
    "decisions: trace, span": "SELECT count(*), max(trace_id), max(span_id) FROM ev WHERE activity = 'decision'",
}


def run(lake: str, out: str, repeat: int) -> dict[str, Any]:
    import duckdb

    from analytics.lake import connect

    con = connect(lake, "4GB")
    con.execute(f"CREATE TEMP TABLE e AS SELECT {COLUMNS}, day FROM events")  # noqa: S608 (constants)
    res: dict[str, Any] = {"lake": lake, "repeat": repeat, "codecs": {}}
    for codec in CODECS:
        d = os.path.join(out, codec)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(out, exist_ok=True)
        con.execute("SELECT 1").fetchall()  # the relation API refuses a connection with a pending result
        con.sql("SELECT * FROM e ORDER BY day, actor_id, time").write_parquet(  # the lake's order
            d, compression=codec, partition_by=["day"], row_group_size=8192)
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
        c = duckdb.connect(config={"threads": 2})
        c.execute("SET parquet_metadata_cache = true")
        c.sql("SELECT * FROM read_parquet($p)", params={"p": os.path.join(d, "*", "*.parquet")}).create_view("ev")
        times = {}
        for name, sql in SCANS.items():
            ts = []
            for _ in range(repeat):
                t = time.perf_counter()
                c.execute(sql).fetchall()
                ts.append(time.perf_counter() - t)
            times[name] = round(statistics.median(ts), 3)
        res["codecs"][codec] = {"bytes": size, "seconds": times}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.codec_scan", description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--out", required=True, help="a scratch directory for the copies")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = run(a.lake, a.out, a.repeat)
    if a.json:
        print(json.dumps(res))
    else:
        print("| codec | MB | " + " | ".join(SCANS) + " |")
        for codec, r in res["codecs"].items():
            print(f"| {codec} | {r['bytes'] // 10**6:,} | " + " | ".join(f"{s:.3f} s" for s in r["seconds"].values())
                  + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
