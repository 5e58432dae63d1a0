"""One measurement in a fresh process: ``python -m benchmarks.worker TASK ARGS_JSON RESULT_PATH``.

The parent reads the result JSON and this process's peak RSS (``os.wait4``); times reported here
exclude interpreter start-up and imports.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.stats import percentile

Task = Callable[[dict[str, Any]], dict[str, Any]]
TASKS: dict[str, Task] = {}


def task(fn: Task) -> Task:
    TASKS[fn.__name__] = fn
    return fn


@task
def gen(a: dict[str, Any]) -> dict[str, Any]:
    from sample_data.generator import generate

    m = generate(Path(a["out"]), seed=int(a["seed"]), scale=int(a["scale"]))
    return {"events": m.events_expected, "lines": sum(m.files.values()), "seconds": m.seconds,
            "manifest": m.to_json()}


@task
def file_ingest(a: dict[str, Any]) -> dict[str, Any]:
    from ingest.collect_files import default_workers, ingest_files
    from ingest.lake import Lake

    t0 = time.perf_counter()
    # the product's default, as `decisionpath ingest file` runs it: one parsing process per core
    s = ingest_files([a["data"]], Lake(a["lake"]), workers=int(a.get("workers") or default_workers()))
    return {"seconds": time.perf_counter() - t0, **s.to_json()}


@task
def duckdb_ceiling(a: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.baselines import duckdb_json_to_parquet
    from ingest.collect_files import expand

    files = [str(p) for p in expand([a["data"]])]
    t0 = time.perf_counter()
    rows = duckdb_json_to_parquet(files, Path(a["out"]))
    return {"seconds": time.perf_counter() - t0, "rows": rows}


@task
def kafka_produce(a: dict[str, Any]) -> dict[str, Any]:
    from ingest.collect_kafka import produce

    t0 = time.perf_counter()
    n = produce([a["data"]], a["bootstrap"], a["topic"])
    return {"seconds": time.perf_counter() - t0, "records": n}


@task
def kafka_collect(a: dict[str, Any]) -> dict[str, Any]:
    from ingest.collect_kafka import KafkaCollector, KafkaSettings
    from ingest.lake import Lake

    last = {"t": time.time()}

    def on_chunk(_s: Any) -> None:
        last["t"] = time.time()

    assigned: dict[str, float] = {}

    def on_assigned(_n: int) -> None:  # the group's first assignment ends the join
        assigned.setdefault("t", time.time())

    t0 = time.time()
    c = KafkaCollector(KafkaSettings(bootstrap=a["bootstrap"], topics=(a["topic"],), group=a["group"],
                                     until_idle_s=float(a.get("until_idle_s", 4.0)), idle_flush_s=1.0,
                                     workers=int(a.get("workers") or 1)),
                       Lake(a["lake"]), on_chunk=on_chunk, on_assigned=on_assigned)
    s = c.run()
    return {"t0": t0, "t_assigned": assigned.get("t", t0), "t_end": last["t"], **s.to_json()}


@task
def kafka_bare(a: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.baselines import kafka_bare as bare

    return bare(a["bootstrap"], a["topic"], a["group"], Path(a["out"]))


@task
def detect(a: dict[str, Any]) -> dict[str, Any]:
    import analytics.detect  # noqa: F401 - imported before the clock starts, as the docstring says
    from benchmarks.product import run_detections

    t0 = time.perf_counter()
    found = run_detections(a["lake"], a.get("rules"))
    return {"seconds": time.perf_counter() - t0,
            "findings": {k: sorted(list(x) for x in v) for k, v in found.items()}}


@task
def detect_full(a: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.product import run_detect_full

    return run_detect_full(a["lake"])


@task
def baseline_detect(a: dict[str, Any]) -> dict[str, Any]:
    import pandas  # noqa: F401 - imported before the clock starts (pyarrow's to_pandas would import it)
    import pyarrow.parquet  # noqa: F401

    from analytics.lake import connect
    from benchmarks.baselines import DETECTION_BASELINES
    from benchmarks.product import lake_window
    from ingest.lake import Lake

    con = connect(a["lake"])  # only for the window, which every implementation shares
    since, until = lake_window(con)
    con.close()
    files = Lake(a["lake"]).files("events")
    t0 = time.perf_counter()
    keys = DETECTION_BASELINES[a["detection"]][a["impl"]](files, since, until)
    return {"seconds": time.perf_counter() - t0, "findings": sorted(list(k) for k in keys)}


@task
def compact(a: dict[str, Any]) -> dict[str, Any]:
    from ingest.lake import Lake

    t0 = time.perf_counter()
    r = Lake(a["lake"]).compact()
    return {"seconds": time.perf_counter() - t0, **r}


@task
def rowgroups(a: dict[str, Any]) -> dict[str, Any]:
    from analytics.lake import connect, scan_stats

    con = connect(a["lake"])
    ranked = con.execute("SELECT actor_id, count(*) n FROM events WHERE actor_id IS NOT NULL "
                         "GROUP BY 1 ORDER BY n DESC, actor_id").fetchall()
    out: dict[str, Any] = {}
    for label, (ident, n) in (("busiest", ranked[0]), ("median", ranked[len(ranked) // 2])):
        sql = "SELECT * FROM events WHERE actor_id = $a"
        t0 = time.perf_counter()
        con.execute(sql, {"a": ident}).fetchall()
        secs = time.perf_counter() - t0
        st = scan_stats(con, sql, {"a": ident})
        out[label] = {"identity": ident, "events": n, "row_groups_scanned": st.row_groups_scanned,
                      "row_groups_total": st.row_groups_total, "rows_scanned": st.rows_scanned,
                      "files_read": st.files_read, "seconds": secs}
    return out


def _sample(con: Any, sql: str, n: int, seed: int) -> list[tuple[Any, ...]]:
    # Deterministic in (lake, seed): order by a seeded hash of the event id.
    return con.execute(f"{sql} ORDER BY hash(event_id || $seed) LIMIT {int(n)}", {"seed": str(seed)}).fetchall()  # noqa: S608


def _timed(con: Any, calls: list[Callable[[], Any]], budget: float, lat: list[float],
           answers: dict[str, int]) -> int:
    """Time each call until ``budget`` seconds are spent; a call still running then is interrupted.

    An interrupted call counts with the time it had run (a lower bound); returns how many were.
    """
    import threading

    import duckdb

    deadline = time.perf_counter() + budget
    for call in calls:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        timer = threading.Timer(left, con.interrupt)
        timer.start()
        t0 = time.perf_counter()
        try:
            ans = call()
        except (duckdb.InterruptException, RuntimeError):
            lat.append(time.perf_counter() - t0)
            return 1
        finally:
            timer.cancel()
        lat.append(time.perf_counter() - t0)
        k = str(getattr(ans, "answer", "path"))
        answers[k] = answers.get(k, 0) + 1
    return 0


@task
def queries(a: dict[str, Any]) -> dict[str, Any]:
    import importlib

    from analytics.lake import connect

    con = connect(a["lake"], cached="memory")  # a process answering many questions loads the marts once
    n, seed = int(a.get("n", 200)), int(a.get("seed", 7))
    budget = float(a.get("budget_s", 120.0))  # per query kind: stop issuing queries after this long
    out: dict[str, Any] = {}
    acts = "FROM events WHERE category IN ('tool_call', 'api_activity') AND actor_id IS NOT NULL"
    try:
        allowed_at = importlib.import_module("analytics.allowed").allowed_at
    except (ModuleNotFoundError, AttributeError) as e:
        out["allowed"] = {"error": f"analytics.allowed.allowed_at unavailable: {e}"}
    else:
        qs = _sample(con, f"SELECT actor_id, time, action_key {acts}", n, seed)
        lat = []
        answers: dict[str, int] = {}
        censored = _timed(con, [lambda q=q: allowed_at(con, q[0], q[1], q[2]) for q in qs], budget, lat, answers)
        out["allowed"] = {"n": len(lat), "censored": censored, "p50": percentile(lat, 50),
                          "p95": percentile(lat, 95), "answers": answers}
    try:
        decision_path = importlib.import_module("analytics.paths").decision_path
    except (ModuleNotFoundError, AttributeError) as e:
        out["path"] = {"error": f"analytics.paths.decision_path unavailable: {e}"}
    else:
        ids = [r[0] for r in _sample(con, f"SELECT event_id {acts}", n, seed + 1)]
        lat = []
        censored = _timed(con, [lambda e=e: decision_path(con, e) for e in ids], budget, lat, {})
        out["path"] = {"n": len(lat), "censored": censored, "p50": percentile(lat, 50), "p95": percentile(lat, 95)}
    try:
        identity_graph = importlib.import_module("analytics.graphs").identity_graph
    except (ModuleNotFoundError, AttributeError) as e:
        out["graph"] = {"error": f"analytics.graphs.identity_graph unavailable: {e}"}
    else:
        ident, cnt = con.execute("SELECT actor_id, count(*) n FROM events WHERE actor_id IS NOT NULL "
                                 "GROUP BY 1 ORDER BY n DESC, actor_id LIMIT 1").fetchone()
        built: list[Any] = []
        lat: list[float] = []
        censored = _timed(con, [lambda: built.append(identity_graph(con, ident))], budget, lat, {})
        g = built[0] if built else None
        nodes = g.number_of_nodes() if g is not None else None
        edges = g.number_of_edges() if g is not None else None
        out["graph"] = {"identity": ident, "events": cnt, "seconds": lat[0], "nodes": nodes, "edges": edges,
                        "censored": censored}
    return out


def main(argv: list[str]) -> int:
    name, args, result = argv[0], json.loads(argv[1]), Path(argv[2])
    gc.collect()
    res = TASKS[name](args)
    result.write_text(json.dumps(res, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
