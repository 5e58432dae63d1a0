"""Alerts: triage table with filters, each alert's explanation and evidence path, triage marks."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from analytics.triage import mark_alert
from dashboards import queries as q
from dashboards.context import events_token, lake_dir, lake_token
from dashboards.graph_view import links_graph, show_graph

SEVERITIES = ["critical", "high", "medium", "low"]
VERDICTS = {"true_positive": "True positive", "false_positive": "False positive", "benign": "Benign (expected)",
            "open": "Re-open"}
STATUS = {**VERDICTS, "open": "Open"}

lake = lake_dir()
token = lake_token(lake)
etok = events_token(token)
st.title("Alerts")

alerts = q.alerts_frame(lake, token)
if alerts.empty:
    st.success("No alerts in the lake. Run `decisionpath detect --lake DIR` to scan it.")
    st.stop()
alerts = alerts.assign(identity_list=alerts["identities"].map(", ".join))

with st.container(border=True):
    f1, f2, f3, f4 = st.columns([1, 1, 1.2, 1.4])
    sev = f1.multiselect("Severity", [s for s in SEVERITIES if s in set(alerts["severity"])], key="al_sev")
    det = f2.multiselect("Detection", sorted(alerts["detection"].dropna().unique()), key="al_det")
    who = f3.text_input("Identity contains", key="al_who")
    lo = alerts["first_seen"].min().date()
    hi = alerts["last_seen"].max().date()
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
    view = view[(view["last_seen"] >= start) & (view["last_seen"] < end)]
if verdict_filter != "all":
    view = view[view["verdict"] == verdict_filter]

rank = {s: i for i, s in enumerate(SEVERITIES)}
view = view.assign(_r=view["severity"].map(rank).fillna(9)).sort_values(["_r", "last_seen", "alert_id"],
                                                                        ascending=[True, False, True])
st.caption(f"{len(view):,} of {len(alerts):,} alerts")
st.dataframe(view[["severity", "detection", "title", "identity_list", "first_seen", "last_seen", "verdict",
                   "alert_id"]].rename(columns={"identity_list": "identities"}), hide_index=True, height=260)

if view.empty:
    st.info("No alert matches these filters.")
    st.stop()

shown = view.head(500)
labels = {r.alert_id: f"[{r.severity}] {r.detection} · {r.identity_list[:60]} · {r.alert_id.split(':')[-1][:10]}"
          for r in shown.itertuples()}
chosen = st.selectbox(f"Alert ({len(labels):,} listed)", list(labels), format_func=labels.get, key="al_pick")
alert = view[view["alert_id"] == chosen].iloc[0]

st.subheader(f"{alert['detection']} · {alert['title']} · {alert['severity']}")
st.caption(f"`{alert['alert_id']}`")
st.write(alert["explanation"] or "(no explanation recorded)")
meta = st.columns(3)
meta[0].write(f"**Identities**  \n{alert['identity_list'] or '—'}")
meta[1].write(f"**Seen**  \n{alert['first_seen']:%Y-%m-%d %H:%M:%S} → {alert['last_seen']:%Y-%m-%d %H:%M:%S} UTC")
note = alert.get("triage_note")
meta[2].write(f"**Status**  \n{STATUS.get(alert['verdict'], alert['verdict'])}"
              + (f" by {alert['triage_by']}" if isinstance(alert.get("triage_by"), str) else "")
              + (f"  \n_{note}_" if isinstance(note, str) and note else ""))

evidence = q.alert_evidence(alert)
facts = evidence.get("facts") or {}
if facts:
    st.markdown("**Facts**  \n" + "  \n".join(f"{k}: `{v}`" for k, v in facts.items()))
event_ids = tuple(alert["event_ids"])
key_event = alert.get("key_event_id") or (event_ids[-1] if event_ids else None)
links = evidence.get("links") or []
path = evidence.get("decision_path")
if not path and key_event:
    path = q.decision_path(lake, etok, str(key_event))
st.markdown(f"**Evidence path**: the detection's proof ({len(links)} links)")
if links:
    show_graph(links_graph(links), focus=list(alert["identities"]), height=340)
else:
    st.info("The detector recorded no links for this alert.")
plinks = (path or {}).get("links") or []
st.markdown(f"**Decision path of the key event** `{key_event}` ({len(plinks)} links)")
if plinks:
    show_graph(links_graph(plinks), focus=[str(key_event)], height=340)
else:
    st.info("No decision path links for the key event.")
if path and path.get("missing"):
    st.caption("Missing on the path: " + "; ".join(map(str, path["missing"])))
if event_ids:
    st.markdown(f"**Evidence events** ({len(event_ids)})")
    st.dataframe(q.events_by_id(lake, etok, event_ids), hide_index=True)

st.subheader("Triage")
with st.form("triage", clear_on_submit=True):
    verdict = st.radio("Verdict", list(VERDICTS), format_func=VERDICTS.get, horizontal=True, key="tr_verdict")
    note_in = st.text_area("Note", key="tr_note", placeholder="why: what you checked, ticket id")
    by = st.text_input("Analyst", value=os.environ.get("USER", "analyst"), key="tr_by")
    if st.form_submit_button("Save verdict", type="primary"):
        mark_alert(lake, chosen, verdict, note_in, by or "analyst")
        # The lake token changes with the new triage commit: the next run reads the new mark.
        st.session_state["al_flash"] = f"Marked {chosen} as {VERDICTS[verdict].lower()}."
        st.rerun()
if msg := st.session_state.pop("al_flash", None):
    st.success(msg)
