"""NHI inventory and framework coverage: which detections cover which framework items, with alert counts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import queries as q
from dashboards.catalog import FRAMEWORKS, detections, framework_names
from dashboards.context import lake_dir, lake_token, not_available

lake = lake_dir()
token = lake_token(lake)
st.title("NHI inventory & framework coverage")

tab_cov, tab_inv = st.tabs(["Framework coverage", "NHI inventory"])

with tab_cov:
    dets = detections()
    alerts = q.alerts_frame(lake, token)
    counts: dict[str, int] = {}
    open_counts: dict[str, int] = {}
    if alerts is not None and not alerts.empty:
        counts = alerts.groupby("detection").size().to_dict()
        still_open = alerts[alerts["verdict"].fillna("open") == "open"]
        open_counts = still_open.groupby("detection").size().to_dict()
    if not dets:
        not_available("The detection catalog", "analytics.detectors registry")
    else:
        st.dataframe(pd.DataFrame([{
            "detection": d.id, "title": d.title, "severity": d.severity,
            "alerts": counts.get(d.id, 0), "open": open_counts.get(d.id, 0),
            **{FRAMEWORKS[k]: ", ".join(v) for k, v in d.refs.items()},
        } for d in dets]), hide_index=True)
        fw = st.radio("Framework", list(FRAMEWORKS), format_func=FRAMEWORKS.get, horizontal=True, key="cov_fw")
        names = framework_names(fw)
        items = sorted(set(names) | {i for d in dets for i in d.refs[fw]},
                       key=lambda s: (len(s.split(".")[0]), s))
        rows = []
        for item in items:
            covering = [d.id for d in dets if item in d.refs[fw]]
            rows.append({"item": item, "name": names.get(item, ""), "covered by": ", ".join(covering),
                         "detections": len(covering), "alerts": sum(counts.get(c, 0) for c in covering)})
        cov = pd.DataFrame(rows)
        covered = int((cov["detections"] > 0).sum()) if not cov.empty else 0
        st.metric(f"{FRAMEWORKS[fw]} items covered", f"{covered} of {len(cov)}")
        st.dataframe(cov, hide_index=True,
                     column_config={"detections": st.column_config.ProgressColumn(
                         "detections", min_value=0, max_value=max(1, int(cov["detections"].max() or 1)),
                         format="%d")} if not cov.empty else None)
        gaps = cov[cov["detections"] == 0]["item"].tolist() if not cov.empty else []
        if gaps:
            st.caption("Known gaps (no detection yet): " + ", ".join(gaps))

with tab_inv:
    inv = q.inventory_frame(lake, token)
    if inv is None:
        not_available("The NHI inventory", "analytics.inventory")
    elif inv.empty:
        st.info("No identity in the inventory.")
    else:
        type_col = next((c for c in ("type", "actor_type", "kind") if c in inv.columns), None)
        if type_col:
            kinds = sorted(inv[type_col].dropna().astype(str).unique())
            default = [k for k in kinds if k != "human"] or kinds
            pick = st.multiselect("Identity types", kinds, default=default, key="inv_types")
            inv = inv[inv[type_col].astype(str).isin(pick)] if pick else inv
        text = st.text_input("Filter identities", key="inv_filter")
        if text:
            id_col = next((c for c in ("identity", "id", "actor_id") if c in inv.columns), inv.columns[0])
            inv = inv[inv[id_col].astype(str).str.contains(text, case=False, regex=False)]
        st.caption(f"{len(inv):,} identities")
        st.dataframe(inv.map(lambda v: ", ".join(map(str, v)) if isinstance(v, list | tuple) else v),
                     hide_index=True, height=480)
