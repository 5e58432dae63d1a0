"""Cached, parameterised DuckDB queries the pages need beyond the analytics APIs.

Every function takes the lake directory and its state token (see ``context.lake_token``) first,
so ``st.cache_data`` keys on the lake's state; user text only ever reaches SQL as a bound
parameter. The SQL reads the views of ``analytics.lake.connect`` (``events`` at least).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from dashboards.context import get_db, optional, to_plain

ISSUING = ["token.issued", "token.exchanged", "token.refreshed", "role.assumed", "svid.minted"]
REVOKING = ["token.revoked", "secret.revoked", "session.ended"]
ACTION_CATEGORIES = ["tool_call", "api_activity"]
TTL = 600  # seconds a cached result lives even if the lake does not change (belt and braces)


def _df(lake: str, token: str, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    db = get_db(lake, token)
    with db.use() as con:
        return con.execute(sql, params or {}).df()


def _has_view(lake: str, token: str, name: str) -> bool:
    db = get_db(lake, token)
    with db.use() as con:
        return bool(con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = $n", {"n": name}).fetchone()[0]) or bool(
            con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = $n", {"n": name}).fetchone()[0])


@st.cache_data(ttl=TTL, show_spinner=False)
def has_events(lake: str, token: str) -> bool:
    return _has_view(lake, token, "events")


# -- overview ------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def lake_summary(lake: str, token: str) -> dict[str, Any]:
    """Event count, time span, identities and sources."""
    row = _df(lake, token, """
        SELECT count(*) AS events, min(time) AS first, max(time) AS last,
               approx_count_distinct(actor_id) AS identities, count(DISTINCT source) AS sources,
               approx_quantile(time, 0.02) AS busy_from, approx_quantile(time, 0.98) AS busy_to
        FROM events""").iloc[0]
    return {k: row[k] for k in row.index}


def bucket_for(first: Any, last: Any) -> str:
    """A time bucket giving a readable number of bars for the span."""
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return "day"
    span = pd.Timestamp(last) - pd.Timestamp(first)
    if span <= pd.Timedelta(hours=6):
        return "minute"
    if span <= pd.Timedelta(days=4):
        return "hour"
    if span <= pd.Timedelta(days=400):
        return "day"
    return "week"


@st.cache_data(ttl=TTL, show_spinner=False)
def events_over_time(lake: str, token: str, bucket: str, by: str, since: Any = None,
                     until: Any = None) -> pd.DataFrame:
    """Event counts per time bucket and per source or category, optionally within [since, until]."""
    col = {"source": "source", "category": "category"}[by]  # whitelisted column name, not user text
    return _df(lake, token, f"""
        SELECT date_trunc($bucket, time) AS bucket, {col} AS series, count(*) AS events
        FROM events WHERE ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
        GROUP BY ALL ORDER BY bucket""", {"bucket": bucket, "since": since, "until": until})  # noqa: S608


@st.cache_data(ttl=TTL, show_spinner=False)
def events_by(lake: str, token: str) -> pd.DataFrame:
    """Event counts per source and category."""
    return _df(lake, token, "SELECT source, category, count(*) AS events FROM events GROUP BY ALL ORDER BY events DESC")


def _native(lake: str, token: str) -> bool:
    return get_db(lake, token).native


@st.cache_data(ttl=TTL, show_spinner=False)
def hygiene(lake: str, token: str, max_ttl_s: float, revoke_grace_s: float) -> dict[str, Any]:
    """Hygiene figures: mediated actions, agent credentials within TTL policy, revoked at task end."""
    if _native(lake, token):
        return _hygiene_marts(lake, token, max_ttl_s, revoke_grace_s)
    mediated = _df(lake, token, """
        WITH actions AS (
          SELECT event_id, decision, request_id, trace_id FROM events WHERE category IN $cats
        ), dec AS (SELECT request_id, trace_id FROM events WHERE category = 'authorization')
        SELECT count(*) AS actions,
               count(*) FILTER (WHERE decision IS NOT NULL
                 OR request_id IN (SELECT request_id FROM dec WHERE request_id IS NOT NULL)
                 OR trace_id IN (SELECT trace_id FROM dec WHERE trace_id IS NOT NULL)) AS mediated
        FROM actions""", {"cats": ACTION_CATEGORIES}).iloc[0]
    creds = _df(lake, token, """
        WITH agents AS (SELECT DISTINCT actor_id FROM events WHERE actor_type = 'agent'),
        iss AS (
          SELECT credential_id, min(time) AS issued_at, max(credential_expires_at) AS expires_at,
                 any_value(task_id) AS task_id, any_value(coalesce(target_id, actor_id)) AS holder
          FROM events WHERE activity IN $issuing AND credential_id IS NOT NULL GROUP BY credential_id
        ), agent_creds AS (SELECT * FROM iss WHERE holder IN (SELECT actor_id FROM agents)),
        rev AS (SELECT credential_id, min(time) AS revoked_at FROM events
                WHERE activity IN $revoking AND credential_id IS NOT NULL GROUP BY credential_id),
        task_end AS (SELECT task_id, max(time) AS ended_at FROM events WHERE task_id IS NOT NULL GROUP BY task_id)
        SELECT count(*) AS agent_credentials,
               count(expires_at) AS with_expiry,
               count(*) FILTER (WHERE epoch(expires_at) - epoch(issued_at) <= $max_ttl) AS within_ttl,
               count(*) FILTER (WHERE c.task_id IS NOT NULL) AS per_task,
               count(*) FILTER (WHERE c.task_id IS NOT NULL AND r.revoked_at IS NOT NULL
                                AND epoch(r.revoked_at) <= epoch(t.ended_at) + $grace) AS revoked_at_end
        FROM agent_creds c LEFT JOIN rev r USING (credential_id) LEFT JOIN task_end t USING (task_id)
        """, {"issuing": ISSUING, "revoking": REVOKING, "max_ttl": max_ttl_s, "grace": revoke_grace_s}).iloc[0]
    return {"actions": int(mediated["actions"]), "mediated": int(mediated["mediated"]),
            **{k: int(creds[k]) for k in creds.index}}


def _hygiene_marts(lake: str, token: str, max_ttl_s: float, revoke_grace_s: float) -> dict[str, Any]:
    """The same figures over the ``actions``, ``decisions`` and ``credentials`` marts of analytics.lake."""
    m = _df(lake, token, """
        SELECT count(*) AS actions,
               count(*) FILTER (WHERE a.decision IS NOT NULL
                 OR a.request_id IN (SELECT request_id FROM decisions WHERE request_id IS NOT NULL)
                 OR a.trace_id IN (SELECT trace_id FROM decisions WHERE trace_id IS NOT NULL)) AS mediated
        FROM actions a""").iloc[0]
    c = _df(lake, token, """
        WITH task_end AS (SELECT task_id, max(time) AS ended_at FROM events WHERE task_id IS NOT NULL GROUP BY task_id),
        agent_creds AS (SELECT * FROM credentials WHERE holder_type = 'agent' AND issued_at IS NOT NULL)
        SELECT count(*) AS agent_credentials, count(expires_at) AS with_expiry,
               count(*) FILTER (WHERE epoch(expires_at) - epoch(issued_at) <= $max_ttl) AS within_ttl,
               count(*) FILTER (WHERE c.task_id IS NOT NULL) AS per_task,
               count(*) FILTER (WHERE c.task_id IS NOT NULL AND c.revoked_at IS NOT NULL
                                AND epoch(c.revoked_at) <= epoch(t.ended_at) + $grace) AS revoked_at_end
        FROM agent_creds c LEFT JOIN task_end t USING (task_id)""",
        {"max_ttl": max_ttl_s, "grace": revoke_grace_s}).iloc[0]
    return {"actions": int(m["actions"]), "mediated": int(m["mediated"]), **{k: int(c[k]) for k in c.index}}


# -- identities ----------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def identities_frame(lake: str, token: str) -> pd.DataFrame:
    """Every identity (the ``identities`` mart), read once per lake state."""
    return _df(lake, token, """SELECT identity, identity_type AS type, events_as_actor AS events, first_seen,
        last_seen FROM identities""")


@st.cache_data(ttl=TTL, show_spinner=False)
def search_identities(lake: str, token: str, text: str, limit: int = 50) -> pd.DataFrame:
    """Identities whose id contains ``text`` (case-insensitive), most active first."""
    if _native(lake, token):
        ids = identities_frame(lake, token)
        hit = ids[ids["identity"].str.contains(text, case=False, regex=False)] if text else ids
        return hit.sort_values(["events", "identity"], ascending=[False, True]).head(limit).reset_index(drop=True)
    return _df(lake, token, """
        SELECT actor_id AS identity, any_value(actor_type) AS type, count(*) AS events,
               min(time) AS first_seen, max(time) AS last_seen
        FROM events WHERE actor_id IS NOT NULL AND contains(lower(actor_id), lower($text))
        GROUP BY actor_id ORDER BY events DESC LIMIT $limit""", {"text": text, "limit": limit})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_span(lake: str, token: str, identity: str) -> tuple[Any, Any]:
    row = _df(lake, token, """SELECT min(time) AS a, max(time) AS b FROM events
        WHERE actor_id = $id OR target_id = $id OR on_behalf_of = $id""", {"id": identity}).iloc[0]
    return row["a"], row["b"]


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_timeline(lake: str, token: str, identity: str, since: dt.datetime | None,
                      until: dt.datetime | None, limit: int = 2000) -> pd.DataFrame:
    """The identity's events (as actor, subject or principal) in a window, newest first."""
    return _df(lake, token, """
        SELECT time, event_id, source, category, activity,
               CASE WHEN actor_id = $id THEN 'actor' WHEN target_id = $id THEN 'subject' ELSE 'on behalf of' END AS role,
               actor_id, on_behalf_of, credential_id, coalesce(tool, action) AS action, resource, decision, outcome,
               task_id, src_workload
        FROM events
        WHERE (actor_id = $id OR target_id = $id OR on_behalf_of = $id)
          AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
        ORDER BY time DESC LIMIT $limit""", {"id": identity, "since": since, "until": until, "limit": limit})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_activity(lake: str, token: str, identity: str, since: dt.datetime | None,
                      until: dt.datetime | None) -> pd.DataFrame:
    """The identity's events per day and category."""
    return _df(lake, token, """
        SELECT date_trunc('day', time) AS day, category, count(*) AS events FROM events
        WHERE (actor_id = $id OR target_id = $id OR on_behalf_of = $id)
          AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
        GROUP BY ALL ORDER BY day""", {"id": identity, "since": since, "until": until})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_credentials(lake: str, token: str, identity: str) -> pd.DataFrame:
    """Credentials issued to or used by the identity: lifetime, revocation, scope, uses."""
    if _native(lake, token):
        return _df(lake, token, """
            SELECT credential_id, credential_type AS type, issue_activity AS issued_by, issued_at, expires_at,
                   revoked_at, parent_id AS parent, scope, task_id, uses, last_use AS last_used,
                   workloads, ips, holder, on_behalf_of
            FROM credentials
            WHERE holder = $id OR credential_id IN (
                SELECT credential_id FROM events WHERE actor_id = $id AND credential_id IS NOT NULL)
            ORDER BY issued_at DESC NULLS LAST LIMIT 1000""", {"id": identity})
    return _df(lake, token, """
        WITH mine AS (
          SELECT DISTINCT credential_id FROM events
          WHERE credential_id IS NOT NULL AND (actor_id = $id OR target_id = $id)
        ), iss AS (
          SELECT credential_id, min(time) AS issued_at, any_value(activity) AS issued_by,
                 any_value(credential_type) AS type, max(credential_expires_at) AS expires_at,
                 any_value(credential_parent_id) AS parent, any_value(scope) AS scope, any_value(task_id) AS task_id
          FROM events WHERE activity IN $issuing AND credential_id IN (SELECT credential_id FROM mine)
          GROUP BY credential_id
        ), rev AS (
          SELECT credential_id, min(time) AS revoked_at FROM events
          WHERE activity IN $revoking AND credential_id IN (SELECT credential_id FROM mine) GROUP BY credential_id
        ), uses AS (
          SELECT credential_id, count(*) AS uses, max(time) AS last_used,
                 count(DISTINCT coalesce(src_workload, src_ip)) AS origins
          FROM events WHERE activity NOT IN $issuing AND activity NOT IN $revoking
            AND credential_id IN (SELECT credential_id FROM mine) GROUP BY credential_id
        )
        SELECT m.credential_id, iss.type, iss.issued_by, iss.issued_at, iss.expires_at, rev.revoked_at,
               iss.parent, iss.scope, iss.task_id, coalesce(uses.uses, 0) AS uses, uses.last_used, uses.origins
        FROM mine m LEFT JOIN iss USING (credential_id) LEFT JOIN rev USING (credential_id)
             LEFT JOIN uses USING (credential_id)
        ORDER BY iss.issued_at DESC NULLS LAST LIMIT 1000""",
        {"id": identity, "issuing": ISSUING, "revoking": REVOKING})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_delegations(lake: str, token: str, identity: str) -> pd.DataFrame:
    """Delegations the identity acted under, or granted to others."""
    if _native(lake, token):
        return _df(lake, token, """
            SELECT CASE WHEN delegate = $id THEN 'acted for' ELSE 'delegated to' END AS direction,
                   delegate, delegator, delegation_chain, delegated_scope, credential_id, task_id,
                   valid_from, valid_until, how
            FROM delegations
            WHERE delegate = $id OR delegator = $id OR list_contains(delegation_chain, $id)
            ORDER BY valid_from DESC NULLS LAST LIMIT 500""", {"id": identity})
    return _df(lake, token, """
        SELECT CASE WHEN actor_id = $id THEN 'acted for' ELSE 'delegated to' END AS direction,
               actor_id AS agent, on_behalf_of AS principal, delegation_chain AS chain,
               count(*) AS events, min(time) AS first_seen, max(time) AS last_seen
        FROM events
        WHERE on_behalf_of IS NOT NULL AND (actor_id = $id OR on_behalf_of = $id
              OR list_contains(delegation_chain, $id))
        GROUP BY ALL ORDER BY events DESC LIMIT 500""", {"id": identity})


@st.cache_data(ttl=TTL, show_spinner=False)
def events_by_id(lake: str, token: str, event_ids: tuple[str, ...]) -> pd.DataFrame:
    """The given events (for evidence tables), in time order."""
    if not event_ids:
        return pd.DataFrame()
    return _df(lake, token, """
        SELECT time, event_id, source, activity, actor_id, on_behalf_of, credential_id,
               coalesce(tool, action) AS action, resource, decision, outcome, task_id, src_workload, reason
        FROM events WHERE event_id IN $ids ORDER BY time""", {"ids": list(event_ids)})


@st.cache_data(ttl=TTL, show_spinner=False)
def recent_action_ids(lake: str, token: str, limit: int = 200) -> list[str]:
    """Ids of the latest actions, as suggestions for the decision-path form."""
    df = _df(lake, token, """SELECT event_id FROM events WHERE category IN $cats
        ORDER BY time DESC LIMIT $limit""", {"cats": ACTION_CATEGORIES, "limit": limit})
    return df["event_id"].tolist()


# -- analytics APIs, cached --------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def alerts_frame(lake: str, token: str) -> pd.DataFrame | None:
    """All alerts with their triage state, or None while analytics.alerts has not landed."""
    mod = optional("analytics.alerts")
    if mod is None or not hasattr(mod, "list_alerts"):
        return None
    rows = mod.list_alerts(lake)
    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
    else:
        df = pd.DataFrame([to_plain(r) for r in rows])
    for col in ("alert_id", "detection", "severity", "identities", "first_seen", "last_seen", "event_ids",
                "explanation", "verdict", "note"):
        if col not in df.columns:
            df[col] = None
    for col in ("first_seen", "last_seen"):
        df[col] = pd.to_datetime(df[col], utc=True, errors="coerce")
    return df


@st.cache_data(ttl=TTL, show_spinner=False)
def inventory_frame(lake: str, token: str) -> pd.DataFrame | None:
    mod = optional("analytics.inventory")
    if mod is None:
        return None
    db = get_db(lake, token)
    with db.use() as con:
        inv = mod.inventory(con)
    if isinstance(inv, pd.DataFrame):
        return inv
    return pd.DataFrame([to_plain(r) for r in inv])


@st.cache_data(ttl=TTL, show_spinner=False)
def decision_path(lake: str, token: str, event_id: str) -> dict[str, Any] | None:
    mod = optional("analytics.paths")
    if mod is None:
        return None
    db = get_db(lake, token)
    with db.use() as con:
        return to_plain(mod.decision_path(con, event_id))


@st.cache_data(ttl=TTL, show_spinner=False)
def allowed_at(lake: str, token: str, identity: str, at: dt.datetime, action: str | None,
               resource: str | None) -> dict[str, Any] | None:
    mod = optional("analytics.allowed")
    if mod is None:
        return None
    db = get_db(lake, token)
    with db.use() as con:
        return to_plain(mod.allowed_at(con, identity, at, action=action, resource=resource))


@st.cache_data(ttl=TTL, show_spinner=False, hash_funcs={})
def identity_graph_json(lake: str, token: str, identity: str, since: dt.datetime | None,
                        until: dt.datetime | None) -> dict[str, Any] | None:
    """The identity's decision graph as node-link data (networkx), or None while graphs is missing."""
    mod = optional("analytics.graphs")
    if mod is None:
        return None
    import networkx as nx

    db = get_db(lake, token)
    with db.use() as con:
        g = mod.identity_graph(con, identity, since=since, until=until)
    return nx.node_link_data(g, edges="links")
