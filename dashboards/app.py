"""decisionpath dashboard: the router. Run with ``decisionpath dashboard --lake DIR``.

Pages live in ``dashboards/app_pages/``; shared state (the lake, the DuckDB connection) in
``dashboards.context``; queries in ``dashboards.queries``.

The folder must not be called ``pages/``: Streamlit then runs in its legacy multipage mode until some
session calls ``st.navigation``, serving ``/overview`` etc. straight from the page scripts, without
this router and so without its sign-in gate.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboards/app.py` puts dashboards/ on sys.path, not the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboards.context import lake_dir, serving  # noqa: E402

# A local file: emoji and material page icons make the browser fetch the favicon from a CDN.
_ICON = Path(__file__).with_name("favicon.png")
st.set_page_config(page_title="decisionpath", page_icon=str(_ICON) if _ICON.exists() else None, layout="wide")


def _auth_required() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all: Streamlit raises rather than returning empty
        return False


if _auth_required() and not st.user.is_logged_in:
    st.title("decisionpath")
    st.write("Sign in to see identity and authorization evidence.")
    st.button("Sign in", on_click=st.login)
    st.stop()

lake = lake_dir()
if not (Path(lake) / "events").exists():
    st.title("decisionpath")
    st.error(f"No lake at `{lake}`. Ingest something first (`decisionpath ingest file PATH --lake {lake}`) "
             "or start the dashboard with `--lake DIR`.")
    st.stop()

pages = [
    st.Page("app_pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("app_pages/alerts.py", title="Alerts", icon=":material/notifications_active:"),
    st.Page("app_pages/identity.py", title="Identity explorer", icon=":material/hub:"),
    st.Page("app_pages/investigate.py", title="Investigate", icon=":material/manage_search:"),
    st.Page("app_pages/coverage.py", title="NHI inventory & coverage", icon=":material/inventory_2:"),
]
nav = st.navigation(pages)
with st.sidebar:
    st.caption(f"Lake: `{lake}`")
    if (now := serving(lake)).behind:
        st.caption(f"Showing events as of commit {int(now.version)}, {now.behind} commit(s) behind the newest, "
                   "which is being indexed in the background: it appears on a later refresh.")
    if _auth_required() and st.user.is_logged_in:
        st.caption(f"Signed in as {st.user.get('email') or st.user.get('name')}")
        st.button("Sign out", on_click=st.logout)
nav.run()
