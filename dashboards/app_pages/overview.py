"""Overview: events over time by source and category, alerts, hygiene figures."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.catalog import detection_threshold
from dashboards.context import events_token, lake_dir, lake_token

SEVERITY_ORDER = ["critical", "high", "medium", "low"]
SEVERITY_COLOURS = ["#7f1d1d", "#dc2626", "#f59e0b", "#64748b"]

lake = lake_dir()
token = lake_token(lake)
etok = events_token(token)
st.title("Overview")

summary = q.lake_summary(lake, etok)
ids = q.identity_figures(lake, etok)
c = st.columns(4)
c[0].metric("Events", f"{int(summary['events']):,}", help="Rows in the lake's `events` table (current snapshot).")
c[1].metric("Identities", f"{ids['identities']:,}",
            help="Distinct identities in the `identities` view: seen as actor, target, delegator or member of a "
                 f"delegation chain. {ids['nonhuman']:,} of them are not humans.")
c[2].metric("Sources", int(summary["sources"] or 0), help="Distinct `source` values (systems that logged events).")
if pd.isna(summary["first"]):
    c[3].metric("Time span", "—")
else:
    days = (pd.Timestamp(summary["last"]) - pd.Timestamp(summary["first"])).total_seconds() / 86400
    c[3].metric("Time span", f"{days:,.0f} days" if days >= 2 else f"{days * 24:,.1f} hours",
                help=f"From the first event ({summary['first']:%Y-%m-%d %H:%M}) to the last "
                     f"({summary['last']:%Y-%m-%d %H:%M}) UTC.")
    st.caption(f"Events from {summary['first']:%Y-%m-%d %H:%M} to {summary['last']:%Y-%m-%d %H:%M} UTC.")

st.subheader("Events over time")
c1, c2 = st.columns([1, 2])
by = c1.segmented_control("Split by", ["source", "category"], default="source", key="ov_by") or "source"
scope = c2.segmented_control("Range", ["busy period", "everything"], default="busy period", key="ov_range",
                             help="The busy period leaves out the first and last 2% of events (old rotations, "
                                  "stragglers), so the bars stay readable.") or "busy period"
if scope == "busy period" and pd.notna(summary["busy_from"]):
    since, until = pd.Timestamp(summary["busy_from"]), pd.Timestamp(summary["busy_to"])
    pad = max((until - since) * 0.02, pd.Timedelta(minutes=1))
    if until - since > pd.Timedelta(hours=6):  # hourly or coarser bars: whole hours read the cached counts
        pad = pad.ceil("h")
    since, until = (since - pad).to_pydatetime(), (until + pad).to_pydatetime()
else:
    since, until = None, None
bucket = q.bucket_for(since or summary["first"], until or summary["last"])
ts = q.events_over_time(lake, etok, bucket, by, since, until)
if since is not None:
    shown = int(ts["events"].sum()) if not ts.empty else 0
    st.caption(f"{since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC, per {bucket}: {shown:,} of "
               f"{int(summary['events']):,} events")
if ts.empty:
    st.info("The lake has no events yet.")
else:
    st.altair_chart(alt.Chart(ts).mark_bar().encode(
        x=alt.X("bucket:T", title=bucket), y=alt.Y("events:Q", title="events", stack=True),
        color=alt.Color("series:N", title=by), tooltip=["bucket:T", "series:N", "events:Q"],
    ).properties(height=260))

st.subheader("Alerts")
alerts = q.alerts_frame(lake, token)
if alerts.empty:
    st.success("No alerts in the lake. Run `decisionpath detect --lake DIR` to scan it.")
else:
    open_n = int((alerts["verdict"] == "open").sum())
    st.caption(f"{len(alerts):,} alerts, {open_n:,} open (not triaged yet)")
    a1, a2 = st.columns(2)
    sev = alerts.groupby("severity").size().reset_index(name="alerts")
    a1.altair_chart(alt.Chart(sev).mark_bar().encode(
        x=alt.X("alerts:Q"), y=alt.Y("severity:N", sort=SEVERITY_ORDER),
        color=alt.Color("severity:N", scale=alt.Scale(domain=SEVERITY_ORDER, range=SEVERITY_COLOURS), legend=None),
        tooltip=["severity", "alerts"]).properties(height=180, title="by severity"))
    det = alerts.groupby("detection").size().reset_index(name="alerts")
    a2.altair_chart(alt.Chart(det).mark_bar().encode(
        x="alerts:Q", y=alt.Y("detection:N", sort="-x"), tooltip=["detection", "alerts"]
    ).properties(height=max(180, 22 * len(det)), title="by detection"))

st.subheader("Hygiene")
default_ttl_min = int(detection_threshold("DP-CR-1", "max_lifetime_s") // 60)
with st.expander("Policy used for these figures"):
    max_ttl_min = st.number_input("Maximum agent credential lifetime (minutes; DP-CR-1's policy by default)",
                                  min_value=1, value=default_ttl_min, key="ov_ttl")
    grace_s = st.number_input("Revocation grace after task end (seconds)", min_value=0, value=300, key="ov_grace")
h = q.hygiene(lake, etok, float(max_ttl_min) * 60, float(grace_s))


def share(n: int, d: int) -> str:
    return "—" if d == 0 else f"{100.0 * n / d:.1f}%"


h1, h2 = st.columns(2)
h3, h4 = st.columns(2)
h1.metric("Actions with an authorization decision", share(h["mediated"], h["actions"]),
          help=f"{h['mediated']:,} of {h['actions']:,} rows of the `actions` view (tool calls, API calls, secret "
               "access) carry a decision inline or share a request id or trace id with a row of `decisions`.")
h2.metric("Agent credentials within TTL policy", share(h["within_ttl"], h["agent_credentials"]),
          help=f"{h['within_ttl']:,} of {h['agent_credentials']:,} credentials issued to agents "
               f"(`int_credential_issued`, holder type agent) expire at most {max_ttl_min} min after issuance "
               f"({h['agent_credentials'] - h['with_expiry']:,} have no recorded expiry and count as outside).")
h3.metric("Per-task credentials revoked at task end", share(h["revoked_at_end"], h["per_task"]),
          help=f"{h['revoked_at_end']:,} of {h['per_task']:,} agent credentials issued for a task were revoked "
               f"(`int_credential_revoked`) no later than {grace_s}s after the task's last event.")
h4.metric("Non-human identities without an owner", f"{ids['nonhuman_no_owner']:,} of {ids['nonhuman']:,}",
          help="Identities of the `identities` view whose type is not human and that never acted on behalf of "
               "anyone (no `on_behalf_of`, no delegation chain): the inventory's `owners` is empty.")

st.subheader("Events by source and category")
st.dataframe(q.events_by(lake, etok)[["source", "category", "events"]], hide_index=True)
