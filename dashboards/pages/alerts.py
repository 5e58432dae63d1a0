"""Alerts: triage table with filters, each alert's explanation and evidence path, true/false positive marks."""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.context import lake_dir, lake_token, not_available, optional
from dashboards.graph_view import links_graph, show_graph

SEVERITIES = ["critical", "high", "medium", "low"]
VERDICTS = {"true_positive": "True positive", "false_positive": "False positive", "benign": "Benign (expected)",
            "open": "Re-open"}

lake = lake_dir()
token = lake_token(lake)
st.title("Alerts")

alerts = q.alerts_frame(lake, token)
if alerts is None:
    not_available("Alert triage", "analytics.alerts")
    st.stop()
if alerts.empty:
    st.success("No alerts in the lake. Run `decisionpath detect --lake DIR` to scan it.")
    st.stop()


def ids_text(v: object) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return ", ".join(map(str, v)) if not isinstance(v, str) else v


alerts = alerts.assign(identity_list=alerts["identities"].map(ids_text),
                       verdict=alerts["verdict"].fillna("open"))

with st.container(border=True):
    f1, f2, f3, f4 = st.columns([1, 1, 1.2, 1.4])
    sev = f1.multiselect("Severity", [s for s in SEVERITIES if s in set(alerts["severity"])], key="al_sev")
    det = f2.multiselect("Detection", sorted(alerts["detection"].dropna().unique()), key="al_det")
    who = f3.text_input("Identity contains", key="al_who")
    first = alerts["first_seen"].min()
    last = alerts["last_seen"].max()
    lo = first.date() if pd.notna(first) else dt.date.today()
    hi = last.date() if pd.notna(last) else dt.date.today()
    window = f4.date_input("Last seen between", value=(lo, hi), key="al_when")
    verdict_filter = st.radio("Status", ["all", "open", "true_positive", "false_positive", "benign"],
                              horizontal=True, key="al_status")

view = alerts
if sev:
    view = view[view["severity"].isin(sev)]
if det:
    view = view[view["detection"].isin(det)]
if who:
    view = view[view["identity_list"].str.contains(who, case=False, regex=False)]
if isinstance(window, tuple | list) and len(window) == 2:
    start = pd.Timestamp(window[0], tz="UTC")
    end = pd.Timestamp(window[1], tz="UTC") + pd.Timedelta(days=1)
    view = view[(view["last_seen"].isna()) | ((view["last_seen"] >= start) & (view["last_seen"] < end))]
if verdict_filter != "all":
    view = view[view["verdict"] == verdict_filter]

rank = {s: i for i, s in enumerate(SEVERITIES)}
view = view.assign(_r=view["severity"].map(rank).fillna(9)).sort_values(["_r", "last_seen"], ascending=[True, False])
st.caption(f"{len(view):,} of {len(alerts):,} alerts")
st.dataframe(view[["severity", "detection", "identity_list", "first_seen", "last_seen", "verdict", "alert_id"]]
             .rename(columns={"identity_list": "identities"}), hide_index=True, height=260)

if view.empty:
    st.info("No alert matches these filters.")
    st.stop()

labels = {r.alert_id: f"[{r.severity}] {r.detection} · {r.identity_list[:60]} · {r.alert_id[-8:]}"
          for r in view.head(500).itertuples()}
chosen = st.selectbox("Alert", list(labels), format_func=labels.get, key="al_pick")
alert = view[view["alert_id"] == chosen].iloc[0]

st.subheader(f"{alert['detection']} · {alert['severity']}")
st.write(alert["explanation"] or "(no explanation recorded)")
meta = st.columns(3)
meta[0].write(f"**Identities**  \n{alert['identity_list'] or '—'}")
meta[1].write(f"**Seen**  \n{alert['first_seen']} → {alert['last_seen']}")
meta[2].write(f"**Status**  \n{VERDICTS.get(alert['verdict'], alert['verdict'])}"
              + (f"  \n_{alert['note']}_" if isinstance(alert.get("note"), str) and alert.get("note") else ""))

event_ids = tuple(str(e) for e in (alert["event_ids"] if alert["event_ids"] is not None else ()))
links = alert.get("links") if "links" in alert.index else None
st.markdown("**Evidence path**")
if isinstance(links, list | tuple) and len(links) > 0:
    g = links_graph([dict(x) for x in links])
    show_graph(g, focus=[str(i) for i in alert["identities"]] if alert["identities"] is not None else [], height=420)
elif event_ids:
    path = q.decision_path(lake, token, event_ids[-1])
    if path is None:
        not_available("The decision path of this alert's key event", "analytics.paths")
    elif path.get("links"):
        show_graph(links_graph(path["links"]), focus=[event_ids[-1]], height=420)
        if path.get("missing"):
            st.caption("Missing links: " + "; ".join(map(str, path["missing"])))
    else:
        st.info("No links recorded on this alert's path.")
else:
    st.info("This alert carries no evidence events.")
if event_ids:
    st.markdown("**Evidence events**")
    st.dataframe(q.events_by_id(lake, token, event_ids), hide_index=True)

st.subheader("Triage")
alerts_mod = optional("analytics.alerts")
if alerts_mod is None or not hasattr(alerts_mod, "mark_alert"):
    not_available("Marking alerts", "analytics.alerts.mark_alert")
else:
    with st.form("triage", clear_on_submit=True):
        verdict = st.radio("Verdict", list(VERDICTS), format_func=VERDICTS.get, horizontal=True, key="tr_verdict")
        note = st.text_area("Note", key="tr_note", placeholder="why: what you checked, ticket id")
        by = st.text_input("Analyst", value=os.environ.get("USER", "analyst"), key="tr_by")
        if st.form_submit_button("Save verdict", type="primary"):
            alerts_mod.mark_alert(lake, chosen, verdict, note, by)
            q.alerts_frame.clear()
            st.session_state["al_flash"] = f"Marked {chosen} as {VERDICTS[verdict].lower()}."
            st.rerun()
if msg := st.session_state.pop("al_flash", None):
    st.success(msg)
