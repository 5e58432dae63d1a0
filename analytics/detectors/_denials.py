"""Denials and the allows that follow them: one pass for DP-PC-2 and DP-AZ-2.

Both detections pair a denied decision with an allowed one for the same tool and resource by another identity
within a window after it; DP-PC-2 keeps the pairs on the denial's trace, DP-AZ-2 those on another trace. Each
read the lake's 3.3M decisions twice (denials, then allows) and the tool calls of the pairs' traces once (10M
events: 0.95 s and 0.85 s). Here the pairs are computed once, for the widest window of the two and on any trace,
and with them the tool calls of their traces (0.88 s for both); each detection filters its own (a few ms).

The rows are kept per connection for one window of key events and one widest window; a run with another
recomputes them.
"""

from __future__ import annotations

import datetime as dt
import weakref

import duckdb

from analytics.detectors.base import Context, _join_sides_as_written
from analytics.lake import keep

USERS = ("DP-PC-2", "DP-AZ-2")  # the detections whose `window_s` thresholds the pairs must cover
PAIRS = "shared_denial_pairs"
CALLS = "shared_denial_calls"
# Every denial of a tool (the 1 % of decisions) is hashed; the allows probe it (`build_right`).
_PAIRS_SQL = """
WITH d AS (  -- a denial pairs with an allow of the window only if it lies within the window before it
  SELECT event_id, time, actor_id, tool, resource, trace_id, span_id FROM events
  WHERE activity = 'decision' AND decision = 'deny' AND tool IS NOT NULL
    AND time >= $since - to_microseconds(CAST($window * 1e6 AS BIGINT)) AND time < $until
)
SELECT d.event_id AS deny_id, d.time AS deny_time, d.actor_id AS a_actor, d.tool, d.resource,
       d.trace_id AS d_trace, d.span_id AS d_span,
       a.event_id AS allow_id, a.time AS allow_time, a.actor_id AS b_actor, a.trace_id AS a_trace, a.span_id AS a_span
FROM events a JOIN d ON a.tool = d.tool AND a.resource IS NOT DISTINCT FROM d.resource AND a.actor_id <> d.actor_id
    AND a.time > d.time AND a.time <= d.time + to_microseconds(CAST($window * 1e6 AS BIGINT))
WHERE a.activity = 'decision' AND a.decision = 'allow' AND a.time BETWEEN $since AND $until
"""
_CALLS_SQL = f"""
SELECT event_id, time, trace_id, span_id, parent_span_id, actor_id, outcome FROM events
WHERE activity = 'tool.invoked'
  AND trace_id IN (SELECT a_trace FROM {PAIRS} UNION ALL SELECT d_trace FROM {PAIRS})
"""  # noqa: S608 (constant text)

_KEY: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, tuple[dt.datetime, dt.datetime, float]] = (
    weakref.WeakKeyDictionary())


def denial_pairs(ctx: Context) -> tuple[str, str]:
    """The names of the shared (pairs, calls) for ``ctx``'s window, computed on first need.

    ``pairs``: each denial of a tool and each allow of the same tool and resource (NULL matching NULL) to another
    identity after it, within the widest ``window_s`` of ``USERS`` and with the allow in ``ctx``'s window.
    ``calls``: the tool calls on the traces of either side of a pair.
    """
    from analytics.detectors import BY_ID  # the registry imports this module's users

    con = ctx.con
    widest = max(ctx.p(BY_ID[u].DETECTION, "window_s") for u in USERS)
    key = (ctx.since, ctx.until, widest)
    if _KEY.get(con) != key:
        with _join_sides_as_written(con):
            keep(con, PAIRS, _PAIRS_SQL, {**ctx.window(), "window": widest})
        keep(con, CALLS, _CALLS_SQL)
        _KEY[con] = key
    return PAIRS, CALLS
