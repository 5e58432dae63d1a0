"""NHI inventory and framework coverage: which detections cover which framework items, with alert counts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.catalog import FRAMEWORKS, detections, framework_names
from dashboards.context import events_token, lake_dir, lake_token

lake = lake_dir()
token = lake_token(lake)
st.title("NHI inventory & framework coverage")

# One section at a time: the inventory is the expensive part on a large lake, built only when shown.
section = st.segmented_control("Show", ["Framework coverage", "NHI inventory"], default="Framework coverage",
                               key="cov_section") or "Framework coverage"

if section == "Framework coverage":
    dets = detections()
    alerts = q.alerts_frame(lake, token)
    counts = alerts.groupby("detection").size().to_dict() if not alerts.empty else {}
    open_counts = alerts[alerts["verdict"] == "open"].groupby("detection").size().to_dict() if not alerts.empty else {}
    st.caption(f"{len(dets)} detections registered in `analytics.detectors`; alert counts as of the lake's current "
               "state (open: not triaged yet).")
    st.dataframe(pd.DataFrame([{
        "detection": d.id, "title": d.title, "severity": d.severity,
        "alerts": int(counts.get(d.id, 0)), "open": int(open_counts.get(d.id, 0)),
        **{FRAMEWORKS[k]: ", ".join(v) for k, v in d.refs.items()},
    } for d in dets]), hide_index=True)
    pick = st.selectbox("Detection", [d.id for d in dets], key="cov_det",
                        format_func=lambda i: f"{i} · {next(d.title for d in dets if d.id == i)}")
    d = next(d for d in dets if d.id == pick)
    st.markdown(f"**{d.id} · {d.title}** ({d.severity}): {d.description}  \n"
                + "  \n".join(f"{FRAMEWORKS[k]}: " + ", ".join(f"{i} {framework_names(k).get(i, '')}".strip()
                                                               for i in v) for k, v in d.refs.items() if v)
                + f"  \nAlerts: {int(counts.get(d.id, 0)):,} ({int(open_counts.get(d.id, 0)):,} open)")
    fw = st.radio("Framework", list(FRAMEWORKS), format_func=FRAMEWORKS.get, horizontal=True, key="cov_fw")
    names = framework_names(fw)
    items = sorted(set(names) | {i for d in dets for i in d.refs[fw]},
                   key=lambda s: (s.split(".")[0].rstrip("0123456789"), len(s.split(".")[0]), s))
    rows = []
    for item in items:
        covering = [d.id for d in dets if item in d.refs[fw]]
        rows.append({"item": item, "name": names.get(item, ""), "covered by": ", ".join(covering),
                     "detections": len(covering), "alerts": int(sum(counts.get(c, 0) for c in covering))})
    cov = pd.DataFrame(rows)
    covered = int((cov["detections"] > 0).sum())
    st.metric(f"{FRAMEWORKS[fw]} items covered", f"{covered} of {len(cov)}")
    st.dataframe(cov, hide_index=True, column_config={"detections": st.column_config.ProgressColumn(
        "detections", min_value=0, max_value=max(1, int(cov["detections"].max())), format="%d")})
    gaps = cov[cov["detections"] == 0]["item"].tolist()
    if gaps:
        st.caption("Known gaps (no detection yet): " + ", ".join(gaps))

else:
    inv = q.inventory_frame(lake, events_token(token))
    if inv.empty:
        st.info("No identity in the inventory.")
    else:
        kinds = sorted(inv["type"].astype(str).unique())
        pick = st.multiselect("Identity types", kinds, default=[k for k in kinds if k != "human"] or kinds,
                              key="inv_types")
        text = st.text_input("Filter identities", key="inv_filter")
        view = inv[inv["type"].astype(str).isin(pick)] if pick else inv
        if text:
            view = view[view["identity"].str.contains(text, case=False, regex=False)]
        no_owner = int((view["owners"] == "").sum())
        st.caption(f"{len(view):,} identities, {no_owner:,} without an owner (never acted on anyone's behalf)")
        st.dataframe(view, hide_index=True, height=480)
