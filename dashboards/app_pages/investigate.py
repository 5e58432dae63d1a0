"""Investigate: the point-in-time answer (allowed at) with its evidence, and any event's decision path."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.context import events_token, lake_dir, lake_token
from dashboards.graph_view import links_graph, show_graph

ANSWER_STYLE = {"allowed": st.success, "denied": st.error, "not_mediated": st.warning, "unknown": st.info}

lake = lake_dir()
etok = events_token(lake_token(lake))
st.title("Investigate")

recent = q.recent_actions(lake, etok)
if not recent.empty:
    with st.expander("Latest actions in the lake (examples to ask about)"):
        st.dataframe(recent, hide_index=True)

st.subheader("Was this identity allowed, at that moment, and why?")
with st.form("allowed_form"):
    c1, c2 = st.columns([2, 1])
    identity = c1.text_input("Identity", key="inv_identity", placeholder="spiffe://corp.example/agent/research")
    at_text = c2.text_input("At (ISO 8601, UTC if no zone)", key="inv_at", placeholder="2026-11-02T09:14:03Z")
    c3, c4 = st.columns(2)
    action = c3.text_input("Action or tool (optional)", key="inv_action")
    resource = c4.text_input("Resource (optional)", key="inv_resource")
    asked = st.form_submit_button("Answer", type="primary")

if asked:
    at = None
    try:
        ts = pd.Timestamp(at_text.strip())
        at = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
    except (ValueError, TypeError):
        st.error(f"Cannot read the time {at_text!r}: use ISO 8601, e.g. 2026-11-02T09:14:03Z.")
    if not identity.strip():
        st.error("Enter an identity.")
    elif at is not None:
        ans = q.allowed_at(lake, etok, identity.strip(), at, action.strip() or None, resource.strip() or None)
        verdict = str(ans["answer"])
        ANSWER_STYLE.get(verdict, st.info)(
            f"**{verdict.replace('_', ' ')}**: {identity.strip()} at {ans['at']}"
            + (f", {action.strip()}" if action.strip() else "") + (f" on {resource.strip()}" if resource.strip() else ""))
        st.write(f"Why: {ans['why']}")
        ev = ans["evidence"]
        pv = ev.get("policy_version")
        st.write(f"Policy version in force: `{pv['policy_id']} {pv['policy_version']}`" if pv
                 else "Policy version in force: unknown")
        if ans.get("governing_decision"):
            st.write(f"Governing decision: `{ans['governing_decision']}`")
        for key, title in (("credentials", "Credentials valid at that instant"),
                           ("delegations", "Delegations in force"),
                           ("decisions", "Decisions recorded from 5 min before to 5 s after"),
                           ("actions", "What the identity actually did (same window)")):
            rows = ev.get(key) or []
            st.markdown(f"**{title}** ({len(rows)})")
            if rows:
                st.dataframe(pd.DataFrame(rows), hide_index=True)
        with st.expander("Answer as JSON"):
            st.json(ans)

st.divider()
st.subheader("Decision path of an event")
with st.form("path_form"):
    event_id = st.text_input("Event id", key="inv_event",
                             placeholder=str(recent["event_id"].iloc[0]) if not recent.empty else "mcp:…")
    traced = st.form_submit_button("Show path", type="primary")
if traced:
    eid = event_id.strip()
    found = q.events_by_id(lake, etok, (eid,)) if eid else pd.DataFrame()
    if not eid:
        st.error("Enter an event id.")
    elif found.empty:
        st.error(f"No event {eid!r} in the lake.")
    else:
        st.dataframe(found, hide_index=True)
        path = q.decision_path(lake, etok, eid)
        links = path.get("links") or []
        st.write(f"{len(links)} links on the path of `{eid}`.")
        if links:
            show_graph(links_graph(links), focus=[eid], height=420)
            st.dataframe(pd.DataFrame(links), hide_index=True)
        if path.get("missing"):
            st.warning("Missing on this path: " + "; ".join(map(str, path["missing"])))
        with st.expander("Path as JSON"):
            st.json(path)
