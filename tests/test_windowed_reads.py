"""Reads narrowed to some day files answer what the reads over every file answer: the windowed identity
graph, and events by id through the id index."""

from __future__ import annotations

import datetime as dt

import networkx as nx
import pytest

from analytics import lookup
from analytics.graphs import identity_graph
from analytics.lake import connect, window_files
from ingest.collect_files import ingest_files
from ingest.lake import Lake


@pytest.fixture(scope="module")
def con(scenario, tmp_path_factory):
    d = tmp_path_factory.mktemp("gw") / "lake"
    ingest_files([scenario], Lake(d))
    return connect(d)


def test_windowed_graph_equals_the_unbounded_one(con):
    busiest = con.execute("SELECT actor_id, count(*) AS n, max(time) FROM events WHERE actor_id IS NOT NULL "
                          "GROUP BY 1 ORDER BY n DESC LIMIT 4").fetchall()
    checked = 0
    for identity, _, last in busiest:
        lake_end = con.execute("SELECT max(time) FROM events").fetchone()[0]
        day = last.date()
        since = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
        files = window_files(con, since, lake_end)
        assert 0 < len(files) < len(window_files(con, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), lake_end))
        windowed = identity_graph(con, identity, since=since, until=lake_end)  # the window's day files only
        unbounded = identity_graph(con, identity, since=since)                 # every file, same rows
        assert windowed.number_of_edges() > 0
        assert nx.node_link_data(windowed, edges="links") == nx.node_link_data(unbounded, edges="links")
        checked += 1
    assert checked == 4


def test_a_window_without_files_is_an_empty_graph(con):
    first = con.execute("SELECT min(time) FROM events").fetchone()[0]
    g = identity_graph(con, "anyone", since=first - dt.timedelta(days=30), until=first - dt.timedelta(days=29))
    assert list(g.nodes) == ["identity:anyone"]


def test_events_by_id_equal_a_scan_of_every_file(con):
    sample = [r[0] for r in con.execute("SELECT event_id FROM events USING SAMPLE 40 ROWS (reservoir, 7)").fetchall()]
    ids = [*sample, "no-such-event", sample[0]]
    got = lookup.events_by_id(con, ids)
    want = con.execute(f"SELECT {lookup.EVIDENCE_COLUMNS} FROM events WHERE list_contains($ids, event_id) "  # noqa: S608
                       "ORDER BY time, event_id", {"ids": ids}).df()
    assert len(got) == len(set(sample)) == 40
    assert got.equals(want)
    assert lookup.events_by_id(con, []).empty and lookup.events_by_id(con, ["no-such-event"]).empty
