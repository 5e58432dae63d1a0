"""Which events snapshot the dashboard reads: the newest once prepared, else the newest prepared one meanwhile."""

from __future__ import annotations

import threading

import pytest

from analytics import snapshot
from analytics.lake import KEPT_DB, MART_CACHE, connect, materialize, ready_versions
from dashboards import context
from tests.analytics_factory import append_events, ev

ALICE = "alice@corp.example"


def _grow(lake, n: int, tag: str) -> None:
    append_events(lake, [ev(f"test:{tag}{i}", i, "token.issued", ALICE, credential_id=f"jti-{tag}{i}")
                         for i in range(n)], app_id=f"test-{tag}")


def _join(lake) -> None:
    """Wait for the lake's running (or last) preparation."""
    context._RUNNING[str(lake)][1].join(60)


def _events(con) -> int:
    return con.execute("SELECT count(*) FROM events").fetchone()[0]


@pytest.fixture
def lake(tmp_path):
    d = tmp_path / "lake"
    _grow(d, 3, "a")  # events version 0
    return d


def test_connect_reads_the_snapshot_it_is_given(lake):
    _grow(lake, 2, "b")
    assert _events(connect(lake)) == 5
    assert _events(connect(lake, version=0)) == 3
    assert _events(connect(lake, version=1)) == 5


def _snapshot_dirs(lake) -> list:
    """The snapshots' cache directories (``marts/shared`` holds the detections' shared caches, pruned on their own)."""
    return [p for p in (lake / MART_CACHE).iterdir() if p.name.startswith("v")]


def test_a_prepared_snapshot_stays_until_a_newer_one_is_prepared(lake):
    snapshot.prepare(connect(lake))
    assert ready_versions(lake) == [0]
    _grow(lake, 2, "b")
    materialize(connect(lake))  # the newer snapshot's marts are cached, but it is not prepared
    assert ready_versions(lake) == [0]
    assert len(_snapshot_dirs(lake)) == 2
    snapshot.prepare(connect(lake))
    # the previous prepared snapshot stays: connections reading its cache as files may still be on it
    assert ready_versions(lake) == [0, 1]
    assert len(_snapshot_dirs(lake)) == 2
    _grow(lake, 2, "c")
    snapshot.prepare(connect(lake))
    assert ready_versions(lake) == [1, 2]
    assert len(_snapshot_dirs(lake)) == 2  # older ones are dropped


def _kinds(con) -> dict[str, str]:
    """'table': loaded into the connection's memory (kept tables are read through a view of the same name);
    'view': read in place (a view over the cached files)."""
    kinds = dict(con.execute("SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal").fetchall())
    kinds.update(con.execute("SELECT table_name, 'table' FROM duckdb_tables() WHERE temporary OR database_name = $db",
                             {"db": KEPT_DB}).fetchall())
    return kinds


def test_the_cache_of_a_snapshot_not_prepared_is_loaded_not_read_in_place(lake):
    materialize(connect(lake))  # cached, but not prepared: the next writer may drop it
    con = connect(lake)
    materialize(con)
    assert _kinds(con)["mat_credentials"] == "table"


def test_a_connection_reading_cached_files_outlives_the_next_preparation(lake):
    snapshot.prepare(connect(lake))
    served = connect(lake, version=0)  # the dashboard's default: cached tables read as files
    materialize(served)
    kinds = _kinds(served)
    assert kinds["mat_credentials"] == "view" and kinds["mat_delegations"] == "view"
    loaded = connect(lake, version=0, cached="memory")
    materialize(loaded)
    q = "SELECT * FROM credentials ORDER BY credential_id"
    assert served.execute(q).fetchall() == loaded.execute(q).fetchall() != []
    _grow(lake, 2, "b")
    snapshot.prepare(connect(lake))
    assert served.execute(q).fetchall() == loaded.execute(q).fetchall()  # its files are still there


def test_serving_waits_for_a_quick_preparation_and_reads_the_newest(lake, monkeypatch):
    monkeypatch.setenv(context.PREPARE_WAIT_ENV, "60")
    # nothing prepared yet: the first page waits for the first preparation, then reads the newest
    assert context.serving(lake) == context.Serving(f"{0:020d}")
    assert ready_versions(lake) == [0]
    _grow(lake, 2, "b")
    assert context.serving(lake) == context.Serving(f"{1:020d}")  # prepared within the wait
    assert ready_versions(lake) == [0, 1]


def test_serving_a_slow_snapshot_reads_the_prepared_one_meanwhile(lake, monkeypatch):
    snapshot.prepare(connect(lake))
    _grow(lake, 2, "b")
    release = threading.Event()
    real = snapshot.prepare

    def slow(con):  # type: ignore[no-untyped-def]
        release.wait(60)
        real(con)

    monkeypatch.setattr(snapshot, "prepare", slow)
    monkeypatch.setenv(context.PREPARE_WAIT_ENV, "0.2")
    stale = context.serving(lake)
    assert stale == context.Serving(f"{0:020d}", behind=1)
    token = context.lake_token(str(lake))
    assert token.startswith(f"events={0:020d};")
    assert _events(context.get_db(str(lake), context.events_token(token)).con) == 3  # what the pages read
    assert context.serving(lake) == stale  # later readers do not wait again
    release.set()
    _join(lake)
    assert context.serving(lake) == context.Serving(f"{1:020d}")
    token = context.lake_token(str(lake))
    assert _events(context.get_db(str(lake), context.events_token(token)).con) == 5


def test_a_snapshot_that_cannot_be_prepared_is_tried_once(lake, monkeypatch, capsys):
    calls = []

    def broken(con):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise OSError("read-only file system")

    monkeypatch.setattr(snapshot, "prepare", broken)
    for _ in range(3):
        assert context.serving(lake) == context.Serving(f"{0:020d}")
    assert calls == [1]
    assert "could not prepare snapshot 0" in capsys.readouterr().err


def test_one_preparation_at_a_time_then_the_newest(lake, monkeypatch):
    snapshot.prepare(connect(lake))
    _grow(lake, 2, "b")
    release = threading.Event()
    real = snapshot.prepare
    started = []

    began = threading.Event()

    def slow(con):  # type: ignore[no-untyped-def]
        started.append(1)
        began.set()
        release.wait(60)
        real(con)

    monkeypatch.setattr(snapshot, "prepare", slow)
    monkeypatch.setenv(context.PREPARE_WAIT_ENV, "0.1")
    assert context.serving(lake) == context.Serving(f"{0:020d}", behind=1)  # preparing commit 1
    assert began.wait(60)  # (its connection may take longer than the wait on a loaded machine)
    _grow(lake, 2, "c")
    _grow(lake, 2, "d")
    # commits 2 and 3 arrive: the prepared snapshot 0 is served, and no second preparation starts meanwhile
    assert context.serving(lake) == context.Serving(f"{0:020d}", behind=3)
    assert len(started) == 1 and context._RUNNING[str(lake)][0] == 1
    release.set()
    _join(lake)
    assert ready_versions(lake) == [0, 1]
    context.serving(lake)  # the next page run starts the newest snapshot's preparation
    assert context._RUNNING[str(lake)][0] == 3
    _join(lake)
    assert ready_versions(lake) == [1, 3] and len(started) == 2
    assert context.serving(lake) == context.Serving(f"{3:020d}")


def test_a_stray_file_in_the_delta_log_is_not_a_version(lake):
    (lake / "events" / "_delta_log" / "notes.json").write_text("{}")
    assert context.table_version(str(lake), "events") == f"{0:020d}"
    assert context.serving(lake).version == f"{0:020d}"


def test_the_first_page_takes_the_connection_opened_at_server_start(lake, monkeypatch):
    snapshot.prepare(connect(lake))
    _grow(lake, 2, "b")
    monkeypatch.setenv(context.PREPARE_WAIT_ENV, "0")
    context.warm_up(str(lake))  # for snapshot 0: snapshot 1 is being prepared
    _join(lake)
    stale = next(iter(context._WARM))
    context.warm_up(str(lake))  # now for snapshot 1
    key = (str(lake), context.events_token(context.lake_token(str(lake))))
    assert key != stale and set(context._WARM) == {stale, key}
    warmed = context._WARM[key].result()
    context.get_db.clear()
    assert context.get_db(*key) is warmed
    assert context._WARM == {}  # taken, and the older snapshot's dropped
    assert _events(warmed.con) == 5
