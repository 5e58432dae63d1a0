"""The dashboard's server process: Streamlit's own ``streamlit run``, with a warm-up beside its start-up.

    python -m dashboards.server run dashboards/app.py [streamlit options] -- --lake DIR

(``analytics.serve.streamlit_command`` builds that line.) While Streamlit starts and the browser loads its
front end, a thread imports the pages' libraries and opens the lake connection the first page will use
(``dashboards.context.warm_up``), so the first visitor waits for neither. The lake comes from
``DECISIONPATH_LAKE``, which ``analytics.serve.start_dashboard`` sets.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


def _warm(lake: str) -> None:
    try:
        from dashboards.context import warm_up

        warm_up(lake)
    except Exception as e:  # noqa: BLE001 - a failed warm-up only means the first page does the work itself
        print(f"decisionpath: dashboard warm-up skipped: {e}", file=sys.stderr)


def main() -> None:
    from dashboards.context import LAKE_ENV

    if lake := os.environ.get(LAKE_ENV):
        threading.Thread(target=_warm, args=(str(Path(lake).resolve()),), daemon=True,
                         name="decisionpath-warm-up").start()
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
