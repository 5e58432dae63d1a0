"""One pass over the credential uses for DP-TR-2, DP-TR-3 and DP-TR-4 in a catalog run.

Each of the three scanned every credential use of its window (~9M rows at 10M events) and joined it to the
issuance or revocation intermediate: three passes of 0.7-0.8 s. When two or more of them run on one connection
(``analytics.detect.share_for`` records the run) and the issuance intermediate is shared, one pass keeps the uses
that may be late or off-task: after their expiry, after their revocation, or carrying another task than their
credential's. Each detector then applies its own threshold to those few rows (5,000 at 10M events). The superset
holds for thresholds ≥ 0 (a use later than the expiry plus a skew is later than the expiry); a detector given a
negative threshold, or run without another reader, runs its own query.

The rows are kept per connection for one window; a detector with another window recomputes them.
"""

from __future__ import annotations

import datetime as dt
import weakref

import duckdb

from analytics.detectors._common import USE_CATEGORIES
from analytics.detectors.base import Context, _join_sides_as_written, in_run
from analytics.lake import is_shared, keep

READERS = frozenset({"DP-TR-2", "DP-TR-3", "DP-TR-4"})
NAME = "shared_suspect_uses"
# Both intermediates are hashed (`build_right`); the uses probe them.
SQL = f"""
SELECT u.credential_id, u.event_id, u.time, u.actor_id, u.task_id AS used_task,
       coalesce(c.expires_at, u.credential_expires_at) AS exp,
       c.credential_id IS NOT NULL AS issued, c.issue_event_id, c.issue_target, c.task_id AS cred_task,
       r.revoked_at, r.revoke_event_id
FROM events u
LEFT JOIN (SELECT credential_id, expires_at, task_id, issue_event_id, issue_target FROM int_credential_issued) c
    USING (credential_id)
LEFT JOIN int_credential_revoked r USING (credential_id)
WHERE u.credential_id IS NOT NULL AND u.category IN {USE_CATEGORIES!r}
  AND u.time BETWEEN $since AND $until
  AND (u.time > coalesce(c.expires_at, u.credential_expires_at)
       OR u.time > r.revoked_at
       OR (u.task_id <> c.task_id AND NOT starts_with(u.task_id, c.task_id || '.')))
"""  # noqa: S608 (constant text: the categories are the package's own tuple)

_WINDOW: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, tuple[dt.datetime, dt.datetime]] = (
    weakref.WeakKeyDictionary())


def suspect_uses(ctx: Context, threshold: float = 0.0) -> str | None:
    """The name of the shared suspect uses for ``ctx``'s window, computed on first need; None when fewer than two
    of ``READERS`` are in this run, the issuance is not shared, or the caller's ``threshold`` (a time added to
    the expiry or revocation; none for DP-TR-4) is negative: the caller then runs its own query."""
    con = ctx.con
    if threshold < 0 or len(READERS & in_run(con)) < 2 or not is_shared(con, "int_credential_issued"):
        return None
    if _WINDOW.get(con) != (ctx.since, ctx.until):
        with _join_sides_as_written(con):
            keep(con, NAME, SQL, ctx.window())
        _WINDOW[con] = (ctx.since, ctx.until)
    return NAME
