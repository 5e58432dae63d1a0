"""Identity explorer: search an identity; its decision graph, timeline, credentials and delegations."""

from __future__ import annotations

import datetime as dt

import altair as alt
import networkx as nx
import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.context import events_token, lake_dir, lake_token
from dashboards.graph_view import plural, show_graph, summarise

TOP = 8  # nodes of each type drawn in the digest graph

lake = lake_dir()
etok = events_token(lake_token(lake))
st.title("Identity explorer")

text = st.text_input("Search an identity (user, SPIFFE ID, role ARN, service account)",
                     value=st.query_params.get("identity", ""), key="id_search",
                     placeholder="e.g. agent/research or alice@")
found = q.search_identities(lake, etok, text.strip())
if found.empty:
    st.info("No identity matches." if text else "The lake has no identities yet.")
    st.stop()
options = found["identity"].tolist()
kinds = dict(zip(found["identity"], found["type"], strict=True))
counts = dict(zip(found["identity"], found["events"], strict=True))
exact = text.strip() if text.strip() in options else None
identity = st.selectbox(
    f"Identity ({len(options)} shown, most active first)", options, index=options.index(exact) if exact else 0,
    key="id_pick", format_func=lambda i: f"{i}  ·  {kinds[i]}  ·  {int(counts[i]):,} events as actor")
st.query_params["identity"] = identity

# The span comes with the search row (the cached `identities` mart), not from a scan of every event.
picked = found[found["identity"] == identity].iloc[0]
first, last = picked["first_seen"], picked["last_seen"]
if pd.isna(first):
    st.info("This identity has no events.")
    st.stop()
lo, hi = pd.Timestamp(first).date(), pd.Timestamp(last).date()
# The last active day by default: a busy identity's whole history is too much to draw or to read at once.
window = st.date_input("Window (UTC days; the last active day by default)", value=(hi, hi), min_value=lo,
                       max_value=hi, key="id_window")
if isinstance(window, tuple | list) and len(window) == 2:
    since = dt.datetime.combine(window[0], dt.time.min, tzinfo=dt.UTC)
    until = dt.datetime.combine(window[1], dt.time.max, tzinfo=dt.UTC)
else:
    since = dt.datetime.combine(window[0] if isinstance(window, tuple | list) else window, dt.time.min, tzinfo=dt.UTC)
    until = since.replace(hour=23, minute=59, second=59, microsecond=999999)

activity = q.identity_activity(lake, etok, identity, since, until)
m = st.columns([1, 1, 2])
m[0].metric("Events in window", f"{int(activity['events'].sum()) if not activity.empty else 0:,}",
            help="Events where the identity is the actor, the subject (target) or the principal (on behalf of).")
m[1].metric("Categories", f"{activity['category'].nunique() if not activity.empty else 0}")
m[2].metric("Active (UTC days)", f"{lo} → {hi}" if lo != hi else f"{lo}",
            help="First and last day with an event naming this identity (as actor, target, principal or "
                 "member of a delegation chain).")

# One section at a time: only the chosen one is queried.
section = st.segmented_control("Show", ["Decision graph", "Timeline", "Credentials", "Delegations"],
                               default="Decision graph", key="id_section") or "Decision graph"
if section == "Decision graph":
    g = nx.node_link_graph(q.identity_graph_json(lake, etok, identity, since, until), edges="links",
                           directed=True, multigraph=True)
    focus = f"identity:{identity}"
    full = st.toggle("Every node (up to 400, best connected first)", key="id_full")
    if full:
        st.caption(f"{g.number_of_nodes():,} nodes, {g.number_of_edges():,} edges. Drag to pan, scroll to zoom, "
                   "click a node or an edge for details.")
        show_graph(g, focus=[focus], height=560)
    else:
        digest, merged = summarise(g, focus, top=TOP)
        more = ", ".join(f"{n:,} {plural(t)}" for t, n in sorted(merged.items()))
        st.caption(f"{g.number_of_nodes():,} nodes, {g.number_of_edges():,} edges, drawn as a digest: credentials "
                   f"inside the task they were issued for, the {TOP} busiest of each type"
                   + (f" (merged: {more})" if more else "") + ". Click a node or an edge for its counts.")
        show_graph(digest, focus=[focus], height=620)
elif section == "Timeline":
    if not activity.empty:
        st.altair_chart(alt.Chart(activity).mark_bar().encode(
            x=alt.X("day:T", title="day"), y="events:Q", color="category:N",
            tooltip=["day:T", "category:N", "events:Q"]).properties(height=180))
    tl = q.identity_timeline(lake, etok, identity, since, until)
    st.caption(f"{len(tl):,} events (newest first, at most 2,000)")
    st.dataframe(tl, hide_index=True, height=380)
elif section == "Credentials":
    creds = q.identity_credentials(lake, etok, identity, since, until)
    st.caption(f"{len(creds):,} credentials held or presented in the window (lifecycle over all time, "
               "newest first, at most 1,000)")
    if creds.empty:
        st.info("No credential seen.")
    else:
        st.dataframe(creds, hide_index=True, height=380)
else:
    deleg = q.identity_delegations(lake, etok, identity, since, until)
    st.caption(f"{len(deleg):,} delegations acted under or granted in the window (at most 500)")
    if deleg.empty:
        st.info("No delegation seen.")
    else:
        st.dataframe(deleg, hide_index=True)
