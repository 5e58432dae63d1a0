"""Run-time context of the dashboard: which lake, the shared read-only DuckDB connection, optional APIs.

The lake comes from ``--lake DIR`` after ``--`` on the ``streamlit run`` command line, else from
``DECISIONPATH_LAKE``, else ``./lake``; it is read on every run, never at import time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import streamlit as st

LAKE_ENV = "DECISIONPATH_LAKE"
MEMORY_LIMIT_ENV = "DECISIONPATH_MEMORY_LIMIT"


def lake_dir() -> str:
    """The lake this dashboard serves (absolute path)."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--lake")
    args, _ = ap.parse_known_args(sys.argv[1:])
    return str(Path(args.lake or os.environ.get(LAKE_ENV) or "lake").resolve())


def lake_token(lake: str) -> str:
    """Cheap fingerprint of the lake's current state: the newest commit of each Delta table.

    Cached queries take it as an argument, so new events, alerts or triage marks show up on the
    next rerun without re-reading anything when nothing changed.
    """
    parts = []
    root = Path(lake)
    for table in ("events", "alerts", "alert_triage", "triage"):
        log = root / table / "_delta_log"
        try:
            newest = max((p.name for p in log.iterdir() if p.name.endswith(".json")), default="-")
        except OSError:
            newest = "-"
        parts.append(f"{table}={newest}")
    return ";".join(parts)


def optional(module: str) -> ModuleType | None:
    """Import a colleague's analytics module, or None while it has not landed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".") or e.name.startswith("analytics")):
            return None
        raise


@dataclass
class Db:
    """A shared DuckDB connection and the lock that serialises its use across sessions."""

    con: duckdb.DuckDBPyConnection
    lock: threading.Lock
    native: bool  # True: views from analytics.lake.connect; False: fallback with `events` only

    @contextmanager
    def use(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.lock:
            yield self.con


def _fallback_connect(lake: str, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """Only an ``events`` view over the current Delta snapshot, for builds without analytics.lake."""
    from ingest.lake import Lake

    con = duckdb.connect(config={"memory_limit": memory_limit})
    files = Lake(lake).files("events")
    if files:
        con.read_parquet(files, hive_partitioning=True).create_view("events")
    return con


@st.cache_resource(max_entries=2, show_spinner=False)
def get_db(lake: str, token: str) -> Db:
    """One connection per lake state, shared by every session (read-only use)."""
    memory_limit = os.environ.get(MEMORY_LIMIT_ENV, "2GB")
    mod = optional("analytics.lake")
    if mod is not None:
        con = mod.connect(lake, memory_limit=memory_limit)
        return Db(con, threading.Lock(), True)
    return Db(_fallback_connect(lake, memory_limit), threading.Lock(), False)


def db() -> Db:
    lake = lake_dir()
    return get_db(lake, lake_token(lake))


def not_available(what: str, module: str) -> None:
    """The standard message for a feature whose analytics module has not landed yet."""
    st.info(f"{what} is not available yet in this build (`{module}` is missing).", icon=":material/construction:")


def to_plain(obj: Any) -> Any:
    """An API result as JSON-able data (``to_json()`` when it has one)."""
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "__dict__"):
        return dict(vars(obj))
    return obj
