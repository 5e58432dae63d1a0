"""Run-time context of the dashboard: which lake, its state token, the shared read-only DuckDB connection.

The lake comes from ``--lake DIR`` after ``--`` on the ``streamlit run`` command line, else from
``DECISIONPATH_LAKE``, else ``./lake``; it is read on every run, never at import time.

Which events snapshot the pages read (``serving``): the newest one, once its caches are prepared
(``analytics.snapshot``). A newer snapshot than the newest prepared one is prepared in a background
thread; a page waits up to ``DECISIONPATH_PREPARE_WAIT`` seconds (default 1) for it and otherwise reads
the newest prepared snapshot, saying how many commits behind it is. One preparation runs at a time; when
it ends, the next page run starts the newest snapshot's. A small lake is prepared within the wait, so its
pages are always current; a large one under continuous ingest (10M events: ~1.5 minutes of whole-lake
aggregates per new snapshot) stays responsive and catches up. With no prepared snapshot at all, the first
page waits for the first preparation (it builds what the pages would otherwise build themselves).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import streamlit as st

from analytics import snapshot
from analytics.lake import connect, ready_versions

LAKE_ENV = "DECISIONPATH_LAKE"
MEMORY_LIMIT_ENV = "DECISIONPATH_MEMORY_LIMIT"
PREPARE_WAIT_ENV = "DECISIONPATH_PREPARE_WAIT"
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
        # commit files only (`<20 digits>.json`): a stray file in the log must not pass for a version
        return max((p.name[:-5] for p in log.iterdir() if p.name.endswith(".json") and p.name[:-5].isdigit()),
                   default="-")
    except OSError:
        return "-"


@dataclass(frozen=True)
class Serving:
    """The events snapshot the pages read: its commit (``-``: no events table) and how far behind the newest."""

    version: str
    behind: int = 0


_PREP_LOCK = threading.Lock()
_RUNNING: dict[str, tuple[int, threading.Thread]] = {}  # per lake, the one preparation running (or last run)
_FAILED: set[tuple[str, int]] = set()                   # snapshots whose preparation failed: tried once only
_WAITED: dict[str, int] = {}                            # per lake, the snapshot a reader has already waited for


def _memory_limit() -> str:
    return os.environ.get(MEMORY_LIMIT_ENV, "2GB")


def _prepare(lake: str, version: int) -> None:
    try:  # below the pages' priority: DuckDB's worker threads, created by `connect` here, inherit it (Linux)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
    try:
        con = connect(lake, memory_limit=_memory_limit(), version=version)
        try:
            snapshot.prepare(con)
        finally:
            con.close()
    except Exception as e:  # noqa: BLE001 - a failed preparation only means pages build what they need
        _FAILED.add((lake, version))
        print(f"decisionpath: could not prepare snapshot {version} of {lake}: {e}", file=sys.stderr)


def _preparing(lake: str, version: int) -> threading.Thread | None:
    """The preparation of this snapshot, started if none is running for the lake; None while an older snapshot's
    preparation is still running (one at a time: under continuous ingest each new commit would otherwise start
    another whole-lake computation) or when this snapshot's preparation already failed."""
    with _PREP_LOCK:
        running = _RUNNING.get(lake)
        if running is not None and running[1].is_alive():
            return running[1] if running[0] == version else None
        if (lake, version) in _FAILED:
            return None
        if running is not None and running[0] == version:
            return running[1]  # finished
        t = threading.Thread(target=_prepare, args=(lake, version), daemon=True, name=f"decisionpath-prepare-{version}")
        _RUNNING[lake] = (version, t)
        t.start()
        return t


def serving(lake: str) -> Serving:
    """The snapshot to read now (see the module docstring)."""
    lake = str(lake)
    newest = table_version(lake, "events")
    if newest == "-":
        return Serving(newest)
    v = int(newest)
    ready = ready_versions(lake)
    if ready and ready[-1] >= v:
        return Serving(newest)
    t = _preparing(lake, v)
    if not ready:
        # Nothing prepared to fall back on: wait for the first preparation, which builds every table the pages
        # would otherwise build themselves, at the same time (twice the work on the same cores).
        if t is not None:
            t.join()
        return Serving(newest)
    if t is not None and _WAITED.get(lake) != v:  # the first reader after a new commit waits a little
        _WAITED[lake] = v
        t.join(float(os.environ.get(PREPARE_WAIT_ENV, "1")))
    if v in ready_versions(lake):
        return Serving(newest)
    return Serving(f"{ready[-1]:020d}", behind=v - ready[-1])


def lake_token(lake: str) -> str:
    """Cheap fingerprint of the lake's state: the commit of each table the pages read (for ``events``, the
    snapshot being served).

    Cached queries take it as an argument, so new events, alerts or triage marks show up on the
    next rerun without re-reading anything when nothing changed.
    """
    return ";".join(f"{t}={serving(lake).version if t == 'events' else table_version(lake, t)}"
                    for t in STATE_TABLES)


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


def _open_db(lake: str, events_version: str) -> Db:
    commit = events_version.split("=", 1)[-1]
    version = int(commit) if commit.isdigit() else None
    return Db(connect(lake, memory_limit=_memory_limit(), version=version), threading.Lock())


_WARM_LOCK = threading.Lock()
_WARM: dict[tuple[str, str], Future[Db]] = {}  # connections opened at server start, for the first page to take


def warm_up(lake: str) -> None:
    """At server start (``dashboards.server``), beside Streamlit's own start-up: import the pages' libraries and
    open the connection the first page will ask for, so the first visitor does not wait for either."""
    import altair  # noqa: F401  (the pages' heavy imports, kept in sys.modules for every later run)
    import networkx  # noqa: F401

    from dashboards import graph_view, queries  # noqa: F401

    if table_version(lake, "events") == "-":
        return
    key = (lake, events_token(lake_token(lake)))
    fut: Future[Db] = Future()
    with _WARM_LOCK:
        if key in _WARM:
            return
        _WARM[key] = fut
    try:
        fut.set_result(_open_db(*key))
    except Exception as e:  # noqa: BLE001 - the page then opens its own and shows the error itself
        fut.set_exception(e)


@st.cache_resource(max_entries=2, show_spinner=False)
def get_db(lake: str, events_version: str) -> Db:
    """One ``analytics.lake`` connection per events snapshot (``events=<commit>``), shared by every session
    (the one ``warm_up`` opened at server start, when it is for this snapshot)."""
    with _WARM_LOCK:
        warm = _WARM.pop((lake, events_version), None)
        for k in [k for k in _WARM if k[0] == lake]:  # an older snapshot's: nobody will ask for it
            _WARM.pop(k)
    if warm is not None:
        try:
            return warm.result()
        except Exception:  # noqa: BLE001 - opened again below, so the page shows the error
            pass
    return _open_db(lake, events_version)


def db_for(lake: str, token: str) -> Db:
    """The connection for a lake state token."""
    return get_db(lake, events_token(token))


def to_plain(obj: Any) -> Any:
    """An API result as JSON-able data (``to_json()`` when it has one)."""
    if hasattr(obj, "to_json"):
        return obj.to_json()
    return obj
