"""Prepare a lake snapshot for interactive use: every cache a first query would otherwise build.

``prepare(con)`` computes (or loads) the credential marts, the id index, the overview aggregates and
the decision-path tables of the connection's snapshot, writes them to the snapshot's cache directory
and marks it ready (``analytics.lake.mark_ready``). ``decisionpath compact`` prepares the snapshot it
creates; the dashboard prepares new snapshots in the background and serves the newest ready one
meanwhile (``dashboards.context``), so a lake under continuous ingest never makes a page wait for
whole-lake aggregates.
"""

from __future__ import annotations

import duckdb

from analytics import overview, paths  # noqa: F401 (paths registers its cached tables)
from analytics.lake import cached_table, credential_actors, index_keys, mark_ready, materialize

PATH_TABLES = ("path_lineage", "path_svids")


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Make every snapshot cache exist for this connection's snapshot, then mark the snapshot ready."""
    materialize(con)
    credential_actors(con)
    index_keys(con)
    overview.prepare(con)
    for name in PATH_TABLES:
        cached_table(con, name)
    mark_ready(con)
