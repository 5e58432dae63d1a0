"""Named crash points for the crash-matrix tests: ``DECISIONPATH_FAULT=<point>[:<n>]`` kills the
process with SIGKILL the n-th time (default first) it passes ``point``. Unset in production."""

from __future__ import annotations

import os
import signal
from functools import cache

POINTS = (
    "while_reading",                 # a file's first record read, nothing of it committed
    "after_dead_letter_commit",      # dead-letter committed, events not yet
    "after_lake_commit",             # both lake commits done, Kafka offset not yet committed
    "after_offset_commit",           # everything done for the chunk
    "detect_after_alerts_write",     # alerts written, detection state not yet advanced
)
_counts: dict[str, int] = {}


@cache
def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("DECISIONPATH_FAULT")
    if not spec:
        return None
    name, _, n = spec.partition(":")
    return name, int(n or 1)


def point(name: str) -> None:
    """Die here, abruptly, if the environment asks for it."""
    armed = _armed()
    if armed is None or armed[0] != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
