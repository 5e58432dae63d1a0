"""Small helpers shared by detector modules (row → finding plumbing; no detection logic)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from analytics.detectors.base import Detection, Finding, Link, iso

USE_CATEGORIES = ("tool_call", "authorization", "api_activity")
# The records `int_credential_issued` reads; its row per credential is the first of them by (time, event_id).
# A detector run alone may aggregate them itself rather than compute that whole intermediate (DP-TR-1, DP-TR-2):
# `arg_min(..., (time, event_id))` over rows passing ISSUING; tests pin each such aggregate to the view.
ISSUING = """activity IN ('session.started', 'token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted',
                   'role.assumed')
  AND coalesce(outcome, 'success') <> 'failure'"""


def uniq(xs: Iterable[Any]) -> tuple[str, ...]:
    """Distinct non-null strings in first-seen order."""
    out: dict[str, None] = {}
    for x in xs:
        if x is None:
            continue
        if isinstance(x, list | tuple):
            for y in x:
                if y is not None:
                    out[str(y)] = None
        else:
            out[str(x)] = None
    return tuple(out)


def make(det: Detection, key: Sequence[str], identities: Iterable[Any], times: Iterable[dt.datetime],
         event_ids: Iterable[Any], key_event_id: str, explanation: str, *, score: float = 1.0,
         links: Sequence[Link] = (), facts: dict[str, Any] | None = None) -> Finding:
    ts = sorted(t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in times)
    return Finding(
        detection=det.id, key=tuple(str(k) for k in key), identities=uniq(identities), first_seen=ts[0],
        last_seen=ts[-1], event_ids=uniq(event_ids), key_event_id=key_event_id, explanation=explanation,
        score=score, links=tuple(links),
        facts=tuple(sorted((k, v if isinstance(v, str) else str(v)) for k, v in (facts or {}).items() if v is not None)),
    )


def fmt(t: dt.datetime) -> str:
    return iso(t) or "?"


def several(n: int, expr: str, param: str = "min_origins") -> str:
    """SQL for ``count(DISTINCT expr) >= n`` (``$<param>`` = n when it is named): min and max answer n <= 2
    without hashing every distinct value (a third of DP-TR-1's first pass at 1M events)."""
    if n <= 0:
        return "true"
    if n == 1:
        return f"max({expr}) IS NOT NULL"
    if n == 2:
        return f"min({expr}) <> max({expr})"
    return f"count(DISTINCT {expr}) >= ${param}"
