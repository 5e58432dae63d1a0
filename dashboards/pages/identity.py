"""Identity explorer: search an identity; its timeline, credentials, delegations and decision graph."""

from __future__ import annotations

import datetime as dt

import altair as alt
import networkx as nx
import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.context import lake_dir, lake_token, not_available
from dashboards.graph_view import show_graph

lake = lake_dir()
token = lake_token(lake)
st.title("Identity explorer")

text = st.text_input("Search an identity (user, SPIFFE ID, role ARN, service account)",
                     value=st.query_params.get("identity", ""), key="id_search",
                     placeholder="e.g. agent/research or alice@")
found = q.search_identities(lake, token, text.strip())
if found.empty:
    st.info("No identity matches." if text else "The lake has no identities yet.")
    st.stop()
options = found["identity"].tolist()
exact = text.strip() if text.strip() in options else None
identity = st.selectbox(
    f"Identity ({len(options)} shown, most active first)", options,
    index=options.index(exact) if exact else 0, key="id_pick",
    format_func=lambda i: f"{i}  ·  {found.loc[found['identity'] == i, 'type'].iloc[0] or '?'}  ·  "
                          f"{int(found.loc[found['identity'] == i, 'events'].iloc[0]):,} events")
st.query_params["identity"] = identity

first, last = q.identity_span(lake, token, identity)
if pd.isna(first):
    st.info("This identity has no events.")
    st.stop()
lo, hi = pd.Timestamp(first).date(), pd.Timestamp(last).date()
window = st.date_input("Window (UTC days)", value=(lo, hi), min_value=lo, max_value=hi, key="id_window")
if isinstance(window, tuple | list) and len(window) == 2:
    since = dt.datetime.combine(window[0], dt.time.min, tzinfo=dt.UTC)
    until = dt.datetime.combine(window[1], dt.time.max, tzinfo=dt.UTC)
else:
    since, until = None, None

activity = q.identity_activity(lake, token, identity, since, until)
m = st.columns(3)
m[0].metric("Events in window", f"{int(activity['events'].sum()) if not activity.empty else 0:,}")
m[1].metric("Categories", f"{activity['category'].nunique() if not activity.empty else 0}")
m[2].metric("Active", f"{lo} → {hi}")

# One section at a time: only the chosen one is queried (the credential and delegation marts are
# the expensive part on a large lake).
section = st.segmented_control("Show", ["Decision graph", "Timeline", "Credentials", "Delegations"],
                               default="Decision graph", key="id_section") or "Decision graph"
if section == "Decision graph":
    data = q.identity_graph_json(lake, token, identity, since, until)
    if data is None:
        not_available("The decision graph", "analytics.graphs")
    else:
        g = nx.node_link_graph(data, edges="links", directed=True, multigraph=True)
        st.caption(f"{g.number_of_nodes():,} nodes, {g.number_of_edges():,} edges. Drag to pan, scroll to zoom, "
                   "click a node or an edge for details.")
        show_graph(g, focus=[identity], height=560)
elif section == "Timeline":
    if not activity.empty:
        st.altair_chart(alt.Chart(activity).mark_bar().encode(
            x=alt.X("day:T", title="day"), y="events:Q", color="category:N",
            tooltip=["day:T", "category:N", "events:Q"]).properties(height=180))
    tl = q.identity_timeline(lake, token, identity, since, until)
    st.caption(f"{len(tl):,} events (newest first, at most 2,000)")
    st.dataframe(tl, hide_index=True, height=380)
elif section == "Credentials":
    creds = q.identity_credentials(lake, token, identity)
    st.caption(f"{len(creds):,} credentials issued to or used by this identity")
    if creds.empty:
        st.info("No credential seen.")
    else:
        st.dataframe(creds, hide_index=True, height=380)
else:
    deleg = q.identity_delegations(lake, token, identity)
    st.caption(f"{len(deleg):,} delegations")
    if deleg.empty:
        st.info("No delegation seen.")
    else:
        st.dataframe(deleg, hide_index=True)
