"""Run-time context of the dashboard: which lake, its state token, the shared read-only DuckDB connection.

The lake comes from ``--lake DIR`` after ``--`` on the ``streamlit run`` command line, else from
``DECISIONPATH_LAKE``, else ``./lake``; it is read on every run, never at import time.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import streamlit as st

from analytics.lake import connect

LAKE_ENV = "DECISIONPATH_LAKE"
MEMORY_LIMIT_ENV = "DECISIONPATH_MEMORY_LIMIT"
# Delta tables whose newest commit makes up the lake state token.
STATE_TABLES = ("events", "alerts", "triage")


def lake_dir() -> str:
    """The lake this dashboard serves (absolute path)."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--lake")
    args, _ = ap.parse_known_args(sys.argv[1:])
    return str(Path(args.lake or os.environ.get(LAKE_ENV) or "lake").resolve())


def table_version(lake: str, table: str) -> str:
    """The newest Delta commit of one table (``-`` when the table does not exist yet)."""
    log = Path(lake) / table / "_delta_log"
    try:
        return max((p.name.split(".")[0] for p in log.iterdir() if p.name.endswith(".json")), default="-")
    except OSError:
        return "-"


def lake_token(lake: str) -> str:
    """Cheap fingerprint of the lake's state: the newest Delta commit of each table the pages read.

    Cached queries take it as an argument, so new events, alerts or triage marks show up on the
    next rerun without re-reading anything when nothing changed.
    """
    return ";".join(f"{t}={table_version(lake, t)}" for t in STATE_TABLES)


def events_token(token: str) -> str:
    """The part of the token that concerns ``events`` only (event queries need not rerun on a triage mark)."""
    return token.split(";", 1)[0]


@dataclass
class Db:
    """A shared DuckDB connection and the lock that serialises its use across sessions."""

    con: duckdb.DuckDBPyConnection
    lock: threading.Lock

    @contextmanager
    def use(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.lock:
            yield self.con


@st.cache_resource(max_entries=2, show_spinner=False)
def get_db(lake: str, events_version: str) -> Db:
    """One ``analytics.lake`` connection per events snapshot, shared by every session (read-only use)."""
    return Db(connect(lake, memory_limit=os.environ.get(MEMORY_LIMIT_ENV, "2GB")), threading.Lock())


def db_for(lake: str, token: str) -> Db:
    """The connection for a lake state token."""
    return get_db(lake, events_token(token))


def to_plain(obj: Any) -> Any:
    """An API result as JSON-able data (``to_json()`` when it has one)."""
    if hasattr(obj, "to_json"):
        return obj.to_json()
    return obj
