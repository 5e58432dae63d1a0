"""Cached calls to the analytics APIs and the few parameterised queries the pages need beyond them.

Every function takes the lake directory and a state token first (see ``context.lake_token``), so
``st.cache_data`` keys on the lake's state: event queries take the events part of the token only
(a triage mark does not re-run them), alert queries the whole token. User text only ever reaches
SQL as a bound parameter. The SQL reads the views of ``analytics.lake.connect`` (``events``,
``actions``, ``decisions``, ``identities``, the credential layers and their ``*_for(ids)`` macros).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import networkx as nx
import orjson
import pandas as pd
import streamlit as st

from analytics import allowed, graphs, inventory, lookup, overview, paths, triage
from analytics.lake import window_files
from dashboards.context import db_for, to_plain

ACTION_CATEGORIES = ["tool_call", "api_activity"]
TTL = 3600  # seconds a cached result lives even if the lake does not change (belt and braces)


def _df(lake: str, token: str, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with db_for(lake, token).use() as con:
        return con.execute(sql, params or {}).df()


# -- overview (analytics.overview: aggregates cached per snapshot) ---------------------------
def _with(lake: str, token: str, fn: Any, *args: Any) -> Any:
    with db_for(lake, token).use() as con:
        return fn(con, *args)


@st.cache_data(ttl=TTL, show_spinner=False)
def events_by(lake: str, token: str) -> pd.DataFrame:
    """Event counts and time span per source and category."""
    return _with(lake, token, overview.events_by)


@st.cache_data(ttl=TTL, show_spinner=False)
def lake_summary(lake: str, token: str) -> dict[str, Any]:
    """Event count, time span, sources, and the busy period (the hours holding the 2nd to 98th percentile)."""
    by = events_by(lake, token)
    busy_from, busy_to = _with(lake, token, overview.busy_period)
    return {"events": int(by["events"].sum()), "first": by["first"].min() if not by.empty else None,
            "last": by["last"].max() if not by.empty else None, "sources": int(by["source"].nunique()),
            "busy_from": busy_from, "busy_to": busy_to}


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_figures(lake: str, token: str) -> dict[str, int]:
    """Identities, non-human ones, and non-human ones without an owner (``analytics.overview``)."""
    return _with(lake, token, overview.identity_figures)


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
    """Event counts per time bucket and per source or category, for events in [since, until)."""
    return _with(lake, token, overview.events_over_time, bucket, by, since, until)


@st.cache_data(ttl=TTL, show_spinner=False)
def hygiene(lake: str, token: str, max_ttl_s: float, revoke_grace_s: float) -> dict[str, int]:
    """Mediated actions and the agent-credential hygiene figures (``analytics.overview.hygiene``)."""
    return _with(lake, token, overview.hygiene, max_ttl_s, revoke_grace_s)


# -- identities ----------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def identities_frame(lake: str, token: str) -> pd.DataFrame:
    """The ``identities`` mart (one row per identity), read once per events snapshot (cached with it)."""
    return _with(lake, token, overview.identities)


@st.cache_data(ttl=TTL, show_spinner=False)
def search_identities(lake: str, token: str, text: str, limit: int = 50) -> pd.DataFrame:
    """Identities whose id contains ``text`` (case-insensitive), most active first.

    The mart is aggregated once per snapshot and searched in memory: a new search text costs a
    substring scan of a few thousand ids, not a re-aggregation of every event.
    """
    ids = identities_frame(lake, token)
    hit = ids[ids["identity"].str.contains(text, case=False, regex=False)] if text else ids
    return hit.head(limit).reset_index(drop=True)


_MINE = "(actor_id = $id OR target_id = $id OR on_behalf_of = $id)"
_FAR_PAST, _FAR_FUTURE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _in_window(lake: str, token: str, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """Run ``sql``, which reads ``events_in($files)``, over the day files of [since, until] only (an open
    bound reaches the lake's first or last day); a window with no files is empty."""
    with db_for(lake, token).use() as con:
        files = window_files(con, params.get("since") or _FAR_PAST, params.get("until") or _FAR_FUTURE)
        if not files:
            return pd.DataFrame()
        return con.execute(sql, {**params, "files": files}).df()


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_timeline(lake: str, token: str, identity: str, since: dt.datetime | None,
                      until: dt.datetime | None, limit: int = 2000) -> pd.DataFrame:
    """The identity's events (as actor, subject or principal) in a window, newest first."""
    return _in_window(lake, token, f"""
        SELECT time, event_id, source, category, activity,
               CASE WHEN actor_id = $id THEN 'actor' WHEN target_id = $id THEN 'subject' ELSE 'on behalf of' END AS role,
               actor_id, on_behalf_of, credential_id, action_key AS action, resource, decision, outcome,
               task_id, src_workload
        FROM events_in($files)
        WHERE {_MINE} AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
        ORDER BY time DESC LIMIT $limit""",  # noqa: S608
        {"id": identity, "since": since, "until": until, "limit": limit})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_activity(lake: str, token: str, identity: str, since: dt.datetime | None,
                      until: dt.datetime | None) -> pd.DataFrame:
    """The identity's events per day and category."""
    return _in_window(lake, token, f"""
        SELECT date_trunc('day', time) AS day, category, count(*) AS events FROM events_in($files)
        WHERE {_MINE} AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
        GROUP BY ALL ORDER BY day""", {"id": identity, "since": since, "until": until})  # noqa: S608


# Credentials the identity held or presented (a role session belongs to the role it assumed).
_CRED_IDS = """
SELECT list(DISTINCT credential_id) FROM events_in($files)
WHERE credential_id IS NOT NULL AND (actor_id = $id OR (target_id = $id AND activity = 'role.assumed'))
  AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
"""
# Credentials that carried a delegation to or from the identity.
_DELEG_IDS = """
SELECT list(DISTINCT credential_id) FROM events_in($files)
WHERE credential_id IS NOT NULL
  AND (actor_id = $id OR on_behalf_of = $id OR list_contains(delegation_chain, $id))
  AND (on_behalf_of IS NOT NULL OR len(coalesce(delegation_chain, [])) > 1)
  AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time <= $until)
"""


def _ids(lake: str, token: str, sql: str, identity: str, since: dt.datetime | None,
         until: dt.datetime | None) -> list[str]:
    df = _in_window(lake, token, sql, {"id": identity, "since": since, "until": until})
    ids = None if df.empty else df.iloc[0, 0]
    return [] if ids is None else sorted(str(i) for i in ids)


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_credentials(lake: str, token: str, identity: str, since: dt.datetime | None,
                         until: dt.datetime | None) -> pd.DataFrame:
    """Credentials the identity held or presented in the window (the ``credentials`` mart over just those ids)."""
    ids = _ids(lake, token, _CRED_IDS, identity, since, until)
    if not ids:
        return pd.DataFrame()
    return _df(lake, token, """
        SELECT credential_id, credential_type AS type, issue_activity AS issued_by, issued_at, expires_at,
               revoked_at, parent_id AS parent, scope, task_id, uses, last_use AS last_used,
               workloads + ips AS origins, holder, on_behalf_of
        FROM credentials_for($ids)
        ORDER BY issued_at DESC NULLS LAST, credential_id LIMIT 1000""", {"ids": ids})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_delegations(lake: str, token: str, identity: str, since: dt.datetime | None,
                         until: dt.datetime | None) -> pd.DataFrame:
    """Delegations the identity acted under or granted in the window (the ``delegations`` mart over those credentials)."""
    ids = _ids(lake, token, _DELEG_IDS, identity, since, until)
    if not ids:
        return pd.DataFrame()
    return _df(lake, token, """
        SELECT CASE WHEN delegate = $id THEN 'acted for' ELSE 'delegated to' END AS direction,
               delegate, delegator, delegation_chain, delegated_scope, credential_id, task_id,
               valid_from, valid_until, how
        FROM delegations_for($ids)
        WHERE delegate = $id OR delegator = $id OR list_contains(delegation_chain, $id)
        ORDER BY valid_from DESC NULLS LAST LIMIT 500""", {"ids": ids, "id": identity})


@st.cache_data(ttl=TTL, show_spinner=False)
def identity_graph_json(lake: str, token: str, identity: str, since: dt.datetime | None,
                        until: dt.datetime | None) -> dict[str, Any]:
    """``analytics.graphs.identity_graph`` as node-link data (cacheable)."""
    with db_for(lake, token).use() as con:
        g = graphs.identity_graph(con, identity, since=since, until=until)
    return nx.node_link_data(g, edges="links")


# -- events --------------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def events_by_id(lake: str, token: str, event_ids: tuple[str, ...]) -> pd.DataFrame:
    """The given events (for evidence tables), in time order (``analytics.lookup``: the id index's days only)."""
    return _with(lake, token, lookup.events_by_id, list(event_ids))


@st.cache_data(ttl=TTL, show_spinner=False)
def recent_actions(lake: str, token: str, limit: int = 5) -> pd.DataFrame:
    """The latest actions (``actions`` mart), as examples for the investigate forms."""
    return _df(lake, token, """SELECT event_id, time, actor_id, action_key AS action, resource, decision
        FROM actions ORDER BY time DESC LIMIT $limit""", {"limit": limit})


@st.cache_data(ttl=TTL, show_spinner=False)
def decision_path(lake: str, token: str, event_id: str) -> dict[str, Any]:
    """``analytics.paths.decision_path`` as JSON."""
    with db_for(lake, token).use() as con:
        return to_plain(paths.decision_path(con, event_id))


@st.cache_data(ttl=TTL, show_spinner=False)
def allowed_at(lake: str, token: str, identity: str, at: dt.datetime, action: str | None,
               resource: str | None) -> dict[str, Any]:
    """``analytics.allowed.allowed_at`` as JSON."""
    with db_for(lake, token).use() as con:
        return to_plain(allowed.allowed_at(con, identity, at, action=action, resource=resource))


# -- alerts, inventory ---------------------------------------------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def alerts_frame(lake: str, token: str) -> pd.DataFrame:
    """Every alert with its latest triage mark (``analytics.triage.list_alerts``), newest first."""
    df = triage.list_alerts(lake)
    for col in ("first_seen", "last_seen", "triaged_at"):
        df[col] = pd.to_datetime(df[col], utc=True, errors="coerce")
    df["identities"] = df["identities"].map(lambda v: [] if v is None else [str(x) for x in v])
    df["event_ids"] = df["event_ids"].map(lambda v: [] if v is None else [str(x) for x in v])
    return df


def alert_evidence(alert: pd.Series) -> dict[str, Any]:
    """The alert's stored evidence: links, facts, key, decision path of its key event."""
    raw = alert.get("evidence")
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        out = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


@st.cache_data(ttl=TTL, show_spinner=False)
def inventory_frame(lake: str, token: str) -> pd.DataFrame:
    """``analytics.inventory.inventory`` flattened to one row per identity."""
    with db_for(lake, token).use() as con:
        inv = inventory.inventory(con)
    return pd.DataFrame([{
        "identity": r.identity, "type": r.identity_type, "owners": ", ".join(r.owners),
        "workloads": ", ".join(r.workloads), "credentials": len(r.credentials),
        "last rotation (h ago)": None if r.rotation_age_s is None else round(r.rotation_age_s / 3600, 1),
        "scopes granted": " ".join(r.scopes_granted), "scopes unused": " ".join(r.scopes_unused),
        "actions used": len(r.actions_used), "events": r.events, "first seen": r.first_seen,
        "last seen": r.last_seen,
    } for r in inv])
