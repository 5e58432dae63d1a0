"""Overview: events over time by source and category, alerts, hygiene figures."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.catalog import detection_threshold
from dashboards.context import lake_dir, lake_token, not_available

lake = lake_dir()
token = lake_token(lake)
st.title("Overview")

summary = q.lake_summary(lake, token)
c = st.columns(4)
c[0].metric("Events", f"{int(summary['events']):,}")
c[1].metric("Identities", f"{int(summary['identities'] or 0):,}")
c[2].metric("Sources", int(summary["sources"] or 0))
span = "—" if pd.isna(summary["first"]) else f"{summary['first']:%Y-%m-%d} → {summary['last']:%Y-%m-%d}"
c[3].metric("Time span", span)

st.subheader("Events over time")
c1, c2 = st.columns([1, 2])
by = c1.segmented_control("Split by", ["source", "category"], default="source", key="ov_by") or "source"
scope = c2.segmented_control("Range", ["busy period", "everything"], default="busy period", key="ov_range",
                             help="The busy period leaves out the first and last 2% of events (old rotations, "
                                  "stragglers), so the bars stay readable.") or "busy period"
if scope == "busy period" and pd.notna(summary["busy_from"]):
    since, until = pd.Timestamp(summary["busy_from"]), pd.Timestamp(summary["busy_to"])
    pad = max((until - since) * 0.02, pd.Timedelta(minutes=1))
    since, until = (since - pad).to_pydatetime(), (until + pad).to_pydatetime()
else:
    since, until = None, None
bucket = q.bucket_for(since or summary["first"], until or summary["last"])
ts = q.events_over_time(lake, token, bucket, by, since, until)
if since is not None:
    shown = int(ts["events"].sum()) if not ts.empty else 0
    st.caption(f"{since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC, per {bucket}: {shown:,} of "
               f"{int(summary['events']):,} events")
if ts.empty:
    st.info("The lake has no events yet.")
else:
    chart = alt.Chart(ts).mark_bar().encode(
        x=alt.X("bucket:T", title=bucket), y=alt.Y("events:Q", title="events", stack=True),
        color=alt.Color("series:N", title=by), tooltip=["bucket:T", "series:N", "events:Q"],
    ).properties(height=260)
    st.altair_chart(chart)

st.subheader("Alerts")
alerts = q.alerts_frame(lake, token)
if alerts is None:
    not_available("Alerts", "analytics.alerts")
elif alerts.empty:
    st.success("No alerts in the lake. Run `decisionpath detect` to scan it.")
else:
    a1, a2 = st.columns(2)
    sev = alerts.groupby("severity", dropna=False).size().reset_index(name="alerts")
    a1.altair_chart(alt.Chart(sev).mark_bar().encode(
        x=alt.X("alerts:Q"), y=alt.Y("severity:N", sort=["critical", "high", "medium", "low"]),
        color=alt.Color("severity:N", scale=alt.Scale(domain=["critical", "high", "medium", "low"],
                                                      range=["#7f1d1d", "#dc2626", "#f59e0b", "#64748b"]),
                        legend=None), tooltip=["severity", "alerts"]).properties(height=180, title="by severity"),
        )
    det = alerts.groupby("detection").size().reset_index(name="alerts")
    a2.altair_chart(alt.Chart(det).mark_bar().encode(
        x="alerts:Q", y=alt.Y("detection:N", sort="-x"), tooltip=["detection", "alerts"]
    ).properties(height=180, title="by detection"))

st.subheader("Hygiene")
with st.expander("Policy used for these figures"):
    max_ttl_min = st.number_input("Maximum agent credential lifetime (minutes)", min_value=1,
                                  value=int(detection_threshold("DP-CR-1", ("max_ttl_s", "max_lifetime_s",
                                                                            "max_ttl"), 3600) // 60), key="ov_ttl")
    grace_s = st.number_input("Revocation grace after task end (seconds)", min_value=0, value=300, key="ov_grace")
h = q.hygiene(lake, token, float(max_ttl_min) * 60, float(grace_s))


def share(n: int, d: int) -> str:
    return "—" if d == 0 else f"{100.0 * n / d:.1f}%"


h1, h2, h3, h4 = st.columns(4)
h1.metric("Actions with an authorization decision", share(h["mediated"], h["actions"]),
          help=f"{h['mediated']:,} of {h['actions']:,} tool calls and API actions have a decision on their "
               "path (the same request id or trace as a policy decision, or a decision recorded inline).")
h2.metric("Agent credentials within TTL policy", share(h["within_ttl"], h["agent_credentials"]),
          help=f"{h['within_ttl']:,} of {h['agent_credentials']:,} credentials issued to agents live at most "
               f"{max_ttl_min} min ({h['agent_credentials'] - h['with_expiry']:,} have no recorded expiry).")
h3.metric("Per-task credentials revoked at task end", share(h["revoked_at_end"], h["per_task"]),
          help=f"{h['revoked_at_end']:,} of {h['per_task']:,} per-task agent credentials were revoked within "
               f"{grace_s}s of their task's last event.")
inv = q.inventory_frame(lake, token)
if inv is None:
    h4.metric("Identities without an owner", "n/a", help="Needs analytics.inventory (not available yet).")
else:
    owner_col = next((col for col in ("owner", "owners", "owned_by") if col in inv.columns), None)
    if owner_col is None:
        h4.metric("Identities without an owner", "n/a", help="The inventory does not report owners.")
    else:
        nonhuman = inv[inv.get("type", inv.get("actor_type", pd.Series(index=inv.index, dtype=object))) != "human"] \
            if ("type" in inv.columns or "actor_type" in inv.columns) else inv
        missing = nonhuman[owner_col].apply(lambda v: v is None or (isinstance(v, float) and pd.isna(v))
                                            or (hasattr(v, "__len__") and len(v) == 0))
        h4.metric("Identities without an owner", f"{int(missing.sum()):,}",
                  help=f"Non-human identities in the inventory with no owner, of {len(nonhuman):,}.")

st.subheader("Events by source and category")
st.dataframe(q.events_by(lake, token), hide_index=True)
