"""Run worker tasks in fresh processes and record their wall time and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class WorkerFailed(RuntimeError):
    """A measurement process exited non-zero; the message names its log."""


@dataclass
class Handle:
    task: str
    proc: subprocess.Popen[bytes]
    result: Path
    started: float


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any]
    wall_s: float          # process wall time, start-up included
    peak_rss_mb: float     # the process's own peak resident set (and its waited-for children)
    cpu_s: float = 0.0     # user + system CPU seconds of the process and its waited-for children (parsing pools)


class Runner:
    """Spawns ``python -m benchmarks.worker``; results and logs go under ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = work / "workers.log"
        self._n = 0

    def spawn(self, task: str, args: dict[str, Any]) -> Handle:
        self._n += 1
        result = self.work / f"result-{os.getpid()}-{self._n}.json"
        result.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"\n== {time.strftime('%H:%M:%S')} {task} {json.dumps(args)}\n".encode())
            log.flush()
            env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", task, json.dumps(args), str(result)],
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env)
        return Handle(task, proc, result, time.perf_counter())

    def wait(self, h: Handle) -> Outcome:
        _pid, status, usage = os.wait4(h.proc.pid, 0)
        h.proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - h.started
        if h.proc.returncode != 0 or not h.result.exists():
            raise WorkerFailed(f"benchmark task {h.task!r} exited with {h.proc.returncode}; see {self.log}")
        res = json.loads(h.result.read_text())
        h.result.unlink()
        return Outcome(res, wall, usage.ru_maxrss / 1024.0,  # Linux reports KiB
                       usage.ru_utime + usage.ru_stime)

    def call(self, task: str, args: dict[str, Any]) -> Outcome:
        return self.wait(self.spawn(task, args))
