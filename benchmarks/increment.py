"""A lake one scheduled step later: a copy of a lake with the next hours of events appended, for timing the step.

    .venv/bin/python -m benchmarks.increment --lake /tmp/l10m --out /tmp/l10m-next [--hours 6] [--compact] [--json]

The copy hard-links the data files (a Delta table never rewrites one) and copies the log. The events of the
lake's last ``--hours`` are appended once more, ``--hours`` later (times and expiries), with new event, credential,
session and trace ids (suffix ``+1``): a step of the same size and mix as the lake's latest hours, in one commit. Before
appending, the detect run's issuance and revocation caches (``analytics.shared_cache``) are made for the copy's
first snapshot,
as the previous scheduled step would have left it. Then time the step from each side, alternating:

    .venv/bin/python -m benchmarks.detect_catalog --lake /tmp/l10m-next --window 6h --json                   # carried
    .venv/bin/python -m benchmarks.detect_catalog --lake /tmp/l10m-next --window 6h --issuance memory --json

A run that carries the caches writes nothing back unless the new files name more than ``REBASE`` of the cached
credentials, so every run of the first command carries the same step.

``--compact`` then compacts the days the step wrote into (their files before the step and the step's in one file
each), as the first ``schedule --compact`` step after midnight compacts the day that has just become settled: the
step after a compaction, which carries the caches through the Delta log since stop 22.

``--state`` also copies the lake's alerts and detect state (the watermarks of its last ``decisionpath detect``), so
that the whole scheduled step can be timed as it runs, alerts with their decision paths included (the catalog
figures above leave those out; stop 23 found them costing more than the catalog on each new snapshot):

    .venv/bin/decisionpath detect --lake /tmp/l10m --full --json > /dev/null    # once: alerts and watermarks
    .venv/bin/python -m benchmarks.increment --lake /tmp/l10m --out /tmp/l10m-next --state
    /usr/bin/time -v .venv/bin/decisionpath detect --lake /tmp/l10m-next --json

A run writes its alerts and state into the copy: time each run on a fresh copy (``cp -al`` of a pristine one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

_SHIFT = """
SELECT * REPLACE (
    time + $d AS time, strftime(time + $d, '%Y-%m-%d') AS day, credential_expires_at + $d AS credential_expires_at,
    event_id || '+1' AS event_id,
    credential_id || '+1' AS credential_id, credential_parent_id || '+1' AS credential_parent_id,
    session_id || '+1' AS session_id, trace_id || '+1' AS trace_id)
FROM events WHERE time > $since
"""


# The lake's own tables besides events that a scheduled detect run reads and extends (`--state`).
STATE_TABLES = ("alerts", "detect_state")


def make(lake: str | Path, out: str | Path, hours: float, compact: bool = False,
         state: bool = False) -> dict[str, Any]:
    """Copy ``lake`` to ``out`` (data files hard-linked), cache its issuance, append its last ``hours`` shifted
    (and with ``compact``, compact the days appended to; with ``state``, copy its alerts and detect state)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from analytics import shared_cache
    from analytics.lake import connect, time_range
    from ingest.events import SCHEMA
    from ingest.lake import Lake

    src, dst = Path(lake), Path(out)
    if dst.exists():
        raise SystemExit(f"{dst} exists: remove it or choose another --out")
    shutil.copytree(src / "events", dst / "events", copy_function=os.link,
                    ignore=shutil.ignore_patterns("_delta_log"))
    shutil.copytree(src / "events" / "_delta_log", dst / "events" / "_delta_log")
    copied = []
    for name in STATE_TABLES if state else ():
        if (src / name / "_delta_log").is_dir():
            shutil.copytree(src / name, dst / name, copy_function=os.link, ignore=shutil.ignore_patterns("_delta_log"))
            shutil.copytree(src / name / "_delta_log", dst / name / "_delta_log")
            copied.append(name)
    if state and "detect_state" not in copied:
        raise SystemExit(f"{src} has no detect state: run `decisionpath detect --lake {src}` on it first")
    first = Lake(dst).events_table().version()
    con = connect(dst)
    how = {n: shared_cache.attach(con, n) for n in shared_cache.RANKED}
    _, hi = time_range(con)
    d = dt.timedelta(hours=hours)
    con.execute("SELECT 1").fetchall()  # the relation API refuses a connection with a pending result
    rows = con.sql(_SHIFT, params={"d": d, "since": hi - d}).to_arrow_table()
    con.close()
    rows = pa.Table.from_batches(rows.to_batches(), rows.schema).select(SCHEMA.names).cast(SCHEMA)
    write_deltalake(str(dst / "events"), rows, mode="append", partition_by=["day"])
    compacted = Lake(dst).compact(sorted(set(rows.column("day").to_pylist())))["rewritten"] if compact else 0
    return {"lake": str(dst), "cached_version": first, "cache": how, "appended_rows": rows.num_rows,
            "compacted_days": compacted, "version": Lake(dst).events_table().version(), "state": copied}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.increment", description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--compact", action="store_true", help="then compact the days appended to")
    ap.add_argument("--state", action="store_true",
                    help="also copy the alerts and detect state, to time a whole `decisionpath detect` step")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = make(a.lake, a.out, a.hours, a.compact, a.state)
    print(json.dumps(res) if a.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
