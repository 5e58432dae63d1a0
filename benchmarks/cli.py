"""``python -m benchmarks run [--scale 10k|1m|3m|10m[,...]] [--repeat N] [--json OUT]``."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from benchmarks.report import scale_md, scaling, scaling_md
from benchmarks.runner import REPO, Runner
from benchmarks.stats import scale_label
from benchmarks.suite import GROUPS, Scale, run_scale
from sample_data.scale import parse_scale


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description="decisionpath benchmark suite")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate (cached), measure, write benchmarks/out/<scale>.md and .json")
    r.add_argument("--scale", default="1m", help="10k, 1m, 3m, 10m or a number; comma-separated for several")
    r.add_argument("--repeat", type=int, default=3, help="runs per figure (median, min–max reported)")
    r.add_argument("--seed", type=int, default=7)
    r.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    r.add_argument("--out", default=str(REPO / "benchmarks" / "out"), help="results and cached data")
    r.add_argument("--query-budget", type=float, default=120.0,
                   help="seconds per query kind (allowed, path) per run before it stops issuing queries")
    r.add_argument("--queries", type=int, default=200, help="random allowed / path queries per run")
    r.add_argument("--json", dest="json_out", default=None, help="also write the whole run as JSON here; quiet")
    return ap


@contextlib.contextmanager
def _display(quiet: bool) -> Iterator[Any]:
    if quiet or not sys.stderr.isatty():
        def step(msg: str) -> None:
            if not quiet:
                print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)
        yield step
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False) as p:
        state: dict[str, Any] = {"task": None}

        def step(msg: str) -> None:
            if state["task"] is not None:
                p.update(state["task"], completed=1, total=1)
            state["task"] = p.add_task(msg, total=None)
        yield step
        if state["task"] is not None:
            p.update(state["task"], completed=1, total=1)


def run(a: argparse.Namespace) -> int:
    scales = [parse_scale(s) for s in a.scale.split(",") if s.strip()]
    groups = tuple(g.strip() for g in a.only.split(",") if g.strip())
    bad = [g for g in groups if g not in GROUPS]
    if bad or a.repeat < 1:
        print(f"error: unknown group(s) {bad} (known: {', '.join(GROUPS)}) or --repeat < 1", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    machine = describe()
    runner = Runner(out / "work")
    docs: list[dict[str, Any]] = []
    quiet = a.json_out is not None
    with _display(quiet) as step:
        for n in scales:
            sc = Scale(out, a.seed, n)
            t0 = time.perf_counter()
            doc = run_scale(sc, a.repeat, runner, groups, lambda m, lab=sc.label: step(f"[{lab}] {m}"),
                            budget_s=a.query_budget, n_queries=a.queries)
            doc.update(machine=machine, command=command, seconds=round(time.perf_counter() - t0, 1))
            (out / f"{sc.label}.json").write_text(json.dumps(doc, indent=2, default=str))
            (out / f"{sc.label}.md").write_text(scale_md(doc, machine, command))
            docs.append(doc)
    labels = [scale_label(n) for n in scales]
    grow = scaling(docs)
    if grow:
        name = "scaling-" + "-".join(labels)
        (out / f"{name}.json").write_text(json.dumps(grow, indent=2))
        (out / f"{name}.md").write_text(scaling_md(grow, labels))
    whole = {"machine": machine, "command": command, "scales": labels, "runs": {d["label"]: d for d in docs},
             "scaling": grow}
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(whole, indent=2, default=str))
    else:
        for d in docs:
            print(scale_md(d, machine, command))
        if grow:
            print(scaling_md(grow, labels))
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    return run(a)
