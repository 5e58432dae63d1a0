"""Lake-wide figures for the overview: event counts over time, identities, and the hygiene figures.

Each figure is a small aggregate of a whole snapshot. On 10M events computing them all takes ~35 s
(the agent-credential layer alone ~19 s). So each one is a ``cached_table`` of the snapshot: computed
once, then read by later connections on the same snapshot. ``decisionpath compact`` prepares them
(``prepare``). Parameters (a time range, a TTL policy) apply to the cached rows, never to the SQL
text:

- ``ov_hourly``: events per hour × source × category, with first and last event time. Event counts
  by source, the busy period and the bars for any bucket of an hour or more come from it.
- ``ov_mediated``: actions, and actions with an authorization decision on their path.
- ``ov_agent_credentials``: one row per credential issued to an agent: its lifetime, its task, and
  how long after the task's last event it was revoked.
- ``ov_identities`` and ``ov_owned``: the ``identities`` mart, and the identities that have an owner
  (as the inventory defines owners).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pandas as pd

from analytics import inventory
from analytics.lake import CACHEABLE, cached_table

CACHEABLE["ov_hourly"] = """
SELECT date_trunc('hour', time) AS hour, source, category, count(*) AS events, min(time) AS first, max(time) AS last
FROM events GROUP BY ALL ORDER BY hour, source, category
"""
CACHEABLE["ov_mediated"] = """
SELECT count(*) AS actions,
       count(*) FILTER (WHERE a.decision IS NOT NULL
         OR a.request_id IN (SELECT request_id FROM decisions WHERE request_id IS NOT NULL)
         OR a.trace_id IN (SELECT trace_id FROM decisions WHERE trace_id IS NOT NULL)) AS mediated
FROM actions a
"""
# The issuance and revocation layers suffice here; the full `credentials` mart would also aggregate
# every use of every credential, which these figures do not need.
CACHEABLE["ov_agent_credentials"] = """
WITH agent_creds AS (SELECT credential_id, task_id, issued_at, expires_at
                     FROM int_credential_issued WHERE holder_type = 'agent'),
task_end AS (SELECT task_id, max(time) AS ended_at FROM events
             WHERE task_id IN (SELECT task_id FROM agent_creds) GROUP BY task_id)
SELECT epoch(c.expires_at) - epoch(c.issued_at) AS lifetime_s, c.expires_at IS NOT NULL AS has_expiry,
       c.task_id IS NOT NULL AS per_task, epoch(r.revoked_at) - epoch(t.ended_at) AS revoked_after_end_s
FROM agent_creds c LEFT JOIN int_credential_revoked r USING (credential_id) LEFT JOIN task_end t USING (task_id)
"""
CACHEABLE["ov_identities"] = """
SELECT identity, identity_type AS type, events_as_actor AS events, first_seen, last_seen
FROM identities ORDER BY events_as_actor DESC, identity
"""
CACHEABLE["ov_owned"] = f"SELECT identity FROM ({inventory._OWNERS})"  # noqa: S608 (module constant)

TABLES: tuple[str, ...] = ("ov_hourly", "ov_mediated", "ov_agent_credentials", "ov_identities", "ov_owned")
_COARSE = ("hour", "day", "week", "month", "year")  # buckets whose boundaries are whole hours


def prepare(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = TABLES) -> None:
    """Make the overview tables exist on this connection (loaded from the snapshot's cache when there)."""
    for name in names:
        if not _exists(con, name):
            cached_table(con, name)


def _exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute("SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = $n "
                       "UNION ALL SELECT 1 FROM duckdb_views() WHERE view_name = $n", {"n": name}).fetchall()
    return bool(rows)


def _df(con: duckdb.DuckDBPyConnection, table: str, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    prepare(con, (table,))
    return con.execute(sql, params or {}).df()


def events_by(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Event counts and time span per source and category, busiest first."""
    return _df(con, "ov_hourly", """SELECT source, category, sum(events)::BIGINT AS events, min(first) AS first,
        max(last) AS last FROM ov_hourly GROUP BY ALL ORDER BY events DESC, source, category""")


def busy_period(con: duckdb.DuckDBPyConnection) -> tuple[Any, Any]:
    """The hours holding the 2nd to 98th percentile of events (from the hourly histogram's running total)."""
    row = _df(con, "ov_hourly", """
        WITH h AS (SELECT hour AS b, sum(events) AS n FROM ov_hourly GROUP BY 1),
        c AS (SELECT b, sum(n) OVER (ORDER BY b) AS cum, sum(n) OVER () AS tot FROM h)
        SELECT min(b) FILTER (WHERE cum >= 0.02 * tot) AS busy_from,
               min(b) FILTER (WHERE cum >= 0.98 * tot) + INTERVAL 1 HOUR AS busy_to FROM c""").iloc[0]
    return row["busy_from"], row["busy_to"]


def _on_hour(t: Any) -> bool:
    return t is None or pd.Timestamp(t) == pd.Timestamp(t).floor("h")


# Bars per split (a whitelisted column: the key is never interpolated), from the hourly table or the events.
_HOURLY_BARS = {by: f"""
    SELECT date_trunc($bucket, hour) AS bucket, {by} AS series, sum(events)::BIGINT AS events
    FROM ov_hourly WHERE ($since IS NULL OR hour >= $since) AND ($until IS NULL OR hour < $until)
    GROUP BY ALL ORDER BY bucket, series""" for by in ("source", "category")}  # noqa: S608 (constant)
_EVENT_BARS = {by: f"""
    SELECT date_trunc($bucket, time) AS bucket, {by} AS series, count(*) AS events
    FROM events WHERE ($since IS NULL OR time >= $since) AND ($until IS NULL OR time < $until)
    GROUP BY ALL ORDER BY bucket, series""" for by in ("source", "category")}  # noqa: S608 (constant)


def events_over_time(con: duckdb.DuckDBPyConnection, bucket: str, by: str, since: dt.datetime | None = None,
                     until: dt.datetime | None = None) -> pd.DataFrame:
    """Event counts per time bucket and per ``by`` (source or category), for events in [since, until).

    Buckets of an hour or more over a range of whole hours come from ``ov_hourly``; others (minutes,
    or a range that cuts an hour) read the events themselves.
    """
    params = {"bucket": bucket, "since": since, "until": until}
    if bucket in _COARSE and _on_hour(since) and _on_hour(until):
        return _df(con, "ov_hourly", _HOURLY_BARS[by], params)
    return con.execute(_EVENT_BARS[by], params).df()


def hygiene(con: duckdb.DuckDBPyConnection, max_ttl_s: float, revoke_grace_s: float) -> dict[str, int]:
    """Mediated actions; agent credentials with an expiry, within the TTL policy, issued per task, and
    revoked by the end of their task (within ``revoke_grace_s``)."""
    m = _df(con, "ov_mediated", "SELECT actions, mediated FROM ov_mediated").iloc[0]
    c = _df(con, "ov_agent_credentials", """
        SELECT count(*) AS agent_credentials, count(*) FILTER (WHERE has_expiry) AS with_expiry,
               count(*) FILTER (WHERE lifetime_s <= $max_ttl) AS within_ttl,
               count(*) FILTER (WHERE per_task) AS per_task,
               count(*) FILTER (WHERE per_task AND revoked_after_end_s <= $grace) AS revoked_at_end
        FROM ov_agent_credentials""", {"max_ttl": max_ttl_s, "grace": revoke_grace_s}).iloc[0]
    return {"actions": int(m["actions"]), "mediated": int(m["mediated"]), **{k: int(c[k]) for k in c.index}}


def identities(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per identity (the ``identities`` mart), most active first."""
    return _df(con, "ov_identities", "SELECT * FROM ov_identities ORDER BY events DESC, identity")


def identity_figures(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Identities, non-human ones, and non-human ones without an owner (an owner as the inventory defines it:
    whoever the identity acted on behalf of, or the head of its delegation chain)."""
    prepare(con, ("ov_identities", "ov_owned"))
    row = con.execute("""
        SELECT count(*) AS identities, count(*) FILTER (WHERE type <> 'human') AS nonhuman,
               count(*) FILTER (WHERE type <> 'human' AND identity NOT IN (SELECT identity FROM ov_owned WHERE identity IS NOT NULL))
                 AS nonhuman_no_owner
        FROM ov_identities""").fetchone()
    assert row is not None  # an aggregate always returns one row
    return {"identities": int(row[0]), "nonhuman": int(row[1]), "nonhuman_no_owner": int(row[2])}
