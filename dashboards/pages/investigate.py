"""Investigate: the point-in-time answer (allowed at) with its evidence, and any event's decision path."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.context import lake_dir, lake_token, not_available
from dashboards.graph_view import links_graph, show_graph

ANSWER_STYLE = {"allowed": st.success, "denied": st.error, "not_mediated": st.warning, "unknown": st.info}

lake = lake_dir()
token = lake_token(lake)
st.title("Investigate")

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
        at = pd.Timestamp(at_text.strip())
        at = (at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")).to_pydatetime()
    except (ValueError, TypeError):
        st.error(f"Cannot read the time {at_text!r}: use ISO 8601, e.g. 2026-11-02T09:14:03Z.")
    if not identity.strip():
        st.error("Enter an identity.")
    elif at is not None:
        ans = q.allowed_at(lake, token, identity.strip(), at, action.strip() or None, resource.strip() or None)
        if ans is None:
            not_available("The point-in-time answer", "analytics.allowed")
        else:
            verdict = str(ans.get("answer", "unknown"))
            ANSWER_STYLE.get(verdict, st.info)(f"**{verdict.replace('_', ' ')}**: {identity.strip()} at "
                                               f"{at.isoformat()}" + (f", {action}" if action else "")
                                               + (f" on {resource}" if resource else ""))
            if ans.get("reason") or ans.get("explanation"):
                st.write(ans.get("reason") or ans.get("explanation"))
            ev = ans.get("evidence") or {}
            if ev.get("policy_version"):
                st.write(f"Policy version in force: `{ev['policy_version']}`")
            for key, title in (("credentials", "Credentials valid at that instant"),
                               ("delegations", "Delegations in force"), ("decisions", "Decisions recorded around t"),
                               ("actions", "What the identity actually did")):
                rows = ev.get(key) or []
                st.markdown(f"**{title}** ({len(rows)})")
                if rows:
                    st.dataframe(pd.DataFrame([r if isinstance(r, dict) else {"value": r} for r in rows]),
                                 hide_index=True)
            if ans.get("links"):
                show_graph(links_graph(ans["links"]), focus=[identity.strip()], height=380)
            with st.expander("Answer as JSON"):
                st.json(ans)

st.divider()
st.subheader("Decision path of an event")
suggest = q.recent_action_ids(lake, token)
with st.form("path_form"):
    event_id = st.text_input("Event id", key="inv_event", placeholder=suggest[0] if suggest else "mcp:…")
    if suggest:
        st.caption("Latest actions: " + ", ".join(f"`{e}`" for e in suggest[:3]))
    traced = st.form_submit_button("Show path", type="primary")
if traced:
    eid = event_id.strip()
    if not eid:
        st.error("Enter an event id.")
    elif q.events_by_id(lake, token, (eid,)).empty:
        st.error(f"No event {eid!r} in the lake.")
    else:
        st.dataframe(q.events_by_id(lake, token, (eid,)), hide_index=True)
        path = q.decision_path(lake, token, eid)
        if path is None:
            not_available("The decision path", "analytics.paths")
        else:
            links = path.get("links") or []
            st.write(f"{len(links)} links on the path of `{eid}`.")
            if links:
                show_graph(links_graph(links), focus=[eid], height=420)
                st.dataframe(pd.DataFrame(links), hide_index=True)
            if path.get("missing"):
                st.warning("Missing on this path: " + "; ".join(map(str, path["missing"])))
            with st.expander("Path as JSON"):
                st.json(path)
