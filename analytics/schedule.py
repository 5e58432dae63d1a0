"""``decisionpath schedule --every 5m [--compact]``: run detect in a loop; SIGTERM/SIGINT stop it cleanly between runs.

A signal during a run lets that run finish its commits (a half-finished run is safe anyway: alerts are
merged on their stable ids and state only moves forward after they are written).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable

from analytics.detect import DetectResult, DetectSettings, emit, parse_duration, run, settings_from_args


def loop(step: Callable[[], DetectResult], every_s: float, stop: threading.Event, max_runs: int | None = None,
         on_result: Callable[[DetectResult], None] | None = None) -> int:
    """Call ``step`` every ``every_s`` seconds until ``stop`` is set or ``max_runs`` ran; returns runs made."""
    runs = 0
    while not stop.is_set():
        t0 = time.monotonic()
        res = step()
        runs += 1
        if on_result is not None:
            on_result(res)
        if max_runs is not None and runs >= max_runs:
            break
        stop.wait(max(0.0, every_s - (time.monotonic() - t0)))
    return runs


def compact_then_run(settings: DetectSettings, quiet: bool = False) -> DetectResult:
    """``schedule --compact``'s step: compact the lake's settled days (``Lake.settled_days``), then one detect run.

    Compaction is one commit per day and safe beside running collectors (a chunk they commit meanwhile stays);
    a day compacted before is skipped, so a run after a quiet interval costs a listing of the days. Compaction only
    speeds detection up: when it fails (another compaction replaced a day first), the step says so and detects
    anyway; the next step compacts again."""
    from ingest.errors import DecisionPathError
    from ingest.lake import Lake

    lake = Lake(settings.lake_dir)
    if lake.events_table() is not None:
        try:
            res = lake.compact(days=lake.settled_days())
        except DecisionPathError as e:
            print(f"decisionpath schedule: compaction skipped this run: {e}", file=sys.stderr)
        else:
            if res["rewritten"] and not quiet:
                print(f"decisionpath schedule: compacted {res['rewritten']} day(s): "
                      f"{res['files_before']} → {res['files_after']} files", file=sys.stderr)
    return run(settings)


def run_schedule_cli(args: argparse.Namespace) -> int:
    every = parse_duration(args.every).total_seconds()
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        print(f"decisionpath schedule: {signal.Signals(signum).name} received, stopping after this run",
              file=sys.stderr)
        stop.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    def _emit(r: DetectResult) -> None:
        emit(r, args)
        sys.stdout.flush()

    try:
        settings = settings_from_args(args)
        step = (lambda: compact_then_run(settings, quiet=bool(getattr(args, "json", False)))) \
            if getattr(args, "compact", False) else (lambda: run(settings))
        runs = loop(step, every, stop, getattr(args, "max_runs", None), on_result=_emit)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(f"decisionpath schedule: stopped after {runs} run(s)", file=sys.stderr)
    return 0
