"""DuckDB over the lake: an in-memory connection whose views are the layered SQL in ``analytics/views``.

Layers (one view per file): ``events`` (staging) → ``int_credential_*`` (intermediate) → marts
``credentials``, ``delegations``, ``policy_versions``, ``decisions``, ``actions``, ``identities``.
Views are lazy: nothing is read until a query runs, and filters on ``actor_id``/``time``/``day``
are pushed into the Parquet scan so row groups are pruned on their min/max statistics.
The credential layers are also table macros ``<view>_for(ids)`` (same SQL, restricted to a list of
credential ids at the scan); the view is ``<view>_for(NULL)``, i.e. every credential.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from analytics.lakefiles import FileFacts, signatures
from analytics.lakefiles import time_range as lakefiles_time_range
from ingest.events import SCHEMA
from ingest.lake import Lake

# Views defined once as table macros over a credential-id list (NULL: all credentials).
BY_CREDENTIAL: frozenset[str] = frozenset(
    {"int_credential_issued", "int_credential_revoked", "int_credential_used", "credentials", "delegations"}
)

# Order matters: each view may read only the ones before it.
VIEWS: tuple[str, ...] = (
    "events",
    "int_credential_issued",
    "int_credential_revoked",
    "int_credential_used",
    "credentials",
    "delegations",
    "policy_versions",
    "decisions",
    "actions",
    "identities",
)


def view_sql(name: str) -> str:
    """The SQL text of one view, from ``analytics/views/<name>.sql``."""
    return resources.files("analytics.views").joinpath(f"{name}.sql").read_text()


def view_filter(name: str) -> str:
    """The ``WHERE`` condition of a view that selects plain columns ``FROM events WHERE <condition>``.

    A query reading ``events_in(files)`` once can then tell which rows each such view would return.
    """
    m = re.fullmatch(r"(?s).*\bFROM events\s+WHERE\s+(.+?)\s*", view_sql(name))
    if m is None:
        raise RuntimeError(f"view {name} must end with FROM events WHERE <condition>")
    return m.group(1)


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_list(t):
        return _duck_type(t.value_type) + "[]"
    return "VARCHAR"


def _empty_events_sql() -> str:
    # Column names and types come from the contract, never from input.
    cols = ", ".join(f'CAST(NULL AS {_duck_type(f.type)}) AS "{f.name}"' for f in SCHEMA)
    return f"SELECT {cols} WHERE false"  # noqa: S608


# `day` from each file's path (Delta keeps partition values out of the Parquet files), as hive partitioning would
# give it. Hive partitioning parsed every path at every bind: 13 ms per reference to the lake on 1,987 files, where
# the file name costs 1.2 ms (a connection binds the lake ~20 times). No query filters on `day` in SQL (file
# pruning by day is done on the file list), so nothing is lost.
_DAY_OF_FILE = r"nullif(regexp_extract(filename, '/day=([^/]+)/', 1), '')"


def _read_sql(source: str, extra: str = "") -> str:
    """A scan of Parquet files ``source`` (a parameter or macro argument) with ``day`` from the paths."""
    return (f"SELECT * EXCLUDE (filename), {_DAY_OF_FILE} AS day "  # noqa: S608 (constants)
            f"FROM read_parquet({source}, filename = true, hive_partitioning = false{extra})")
# Views that also exist as table macros ``<view>_in(files)`` over some day files of the snapshot (``day_files``,
# ``window_files``): same SQL, but binding reads only those files' footers where the view binds the whole
# snapshot (~6 ms more per reference on a 100-day lake). Point-in-time answers use them.
BY_FILES: tuple[str, ...] = ("events", "decisions", "actions")
DAY_SCAN = "events_in($files)"
_DAY_DIR = re.compile(r"[/\\]day=([0-9]{4}-[0-9]{2}-[0-9]{2})[/\\]")
_DAY_FILES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def day_files(con: duckdb.DuckDBPyConnection, days: Iterable[str]) -> list[str]:
    """The snapshot's files of these days (files outside any ``day=`` directory are always included)."""
    by_day = _DAY_FILES.get(con, {})
    return [f for d in sorted(set(days)) for f in by_day.get(d, [])] + by_day.get("", [])


def window_files(con: duckdb.DuckDBPyConnection, lo: dt.datetime, hi: dt.datetime) -> list[str]:
    """The snapshot's files whose day lies in the UTC days of ``[lo, hi]``."""
    b = day_bounds(lo, hi)
    return day_files(con, (d for d in _DAY_FILES.get(con, {}) if d and b["dlo"] <= d <= b["dhi"]))


def spans_files(con: duckdb.DuckDBPyConnection, windows: Iterable[tuple[dt.datetime, dt.datetime]]) -> list[str]:
    """The snapshot's files covering the union of the windows (each distinct span of UTC days looked up once).

    Rows whose ``time`` lies in one of the windows are all in these files: ``day`` is the UTC date of ``time``.
    """
    spans: dict[tuple[str, str], tuple[dt.datetime, dt.datetime]] = {}
    for lo, hi in windows:
        b = day_bounds(lo, hi)
        spans.setdefault((b["dlo"], b["dhi"]), (lo, hi))
    return sorted({f for lo, hi in spans.values() for f in window_files(con, lo, hi)})


def _by_schema(con: duckdb.DuckDBPyConnection, lake_dir: str | Path, facts: FileFacts) -> list[list[str]]:
    """The files grouped by Parquet schema (``lakefiles.signatures``: cached per file), each group in snapshot order."""
    sig = signatures(con, lake_dir, facts)
    groups: dict[str, list[str]] = {}
    for f in facts.uris:
        groups.setdefault(sig.get(f, ""), []).append(f)
    return list(groups.values())


_FACTS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, FileFacts] = weakref.WeakKeyDictionary()


def time_range(con: duckdb.DuckDBPyConnection) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The earliest and latest event time of the connection's snapshot (exact; ``lakefiles.time_range`` reads
    only the files whose Delta statistics say they can hold them)."""
    return lakefiles_time_range(con, _FACTS.get(con))


def connect(lake_dir: str | Path, memory_limit: str = "2GB", threads: int | None = None,
            version: int | None = None, cached: str = "files") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the analytics views over the lake's current snapshot (or the events
    table's snapshot at ``version``, e.g. the newest one whose caches are prepared: ``ready_versions``).

    ``cached`` says how the snapshot's cached tables (marts, id index, overview and path tables) are read when
    the snapshot is prepared (``READY``): ``"files"`` (views over the cached Parquet: nothing loaded, no load
    time per connection, each query reads the row groups it needs; for one-shot commands and the dashboard)
    or ``"memory"`` (loaded once, compressed: ~5 s and ~0.5 GB of DuckDB memory on 10M events, then the
    fastest repeated queries; for long batches of point-in-time questions). The caches of a snapshot that is
    not prepared are always loaded (another writer may drop them), and tables computed on this connection stay
    in memory.
    """
    if cached not in ("files", "memory"):
        raise ValueError(f"cached must be 'files' or 'memory', not {cached!r}")
    con = duckdb.connect(config={"memory_limit": memory_limit, **({"threads": threads} if threads else {})})
    _IN_MEMORY[con] = cached == "memory"
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # DuckDB's own bar went to stdout (into --json output)
    # A lake's data files are never rewritten (Delta adds and removes whole files), so their footers can be
    # kept for the connection's life: each scan of the lake read every footer again (~70 ms a scan of 2,000
    # files, and a detection run makes ~25 of them).
    con.execute("SET parquet_metadata_cache = true")
    table = Lake(lake_dir).events_table()
    if table is not None and version is not None and version != table.version():
        table = DeltaTable(str(Path(lake_dir) / "events"), version=version)
    # File list and version from one snapshot: the mart cache is keyed by the version the views read.
    facts = FileFacts.of(table) if table is not None else None
    files = facts.uris if facts is not None else []
    _SNAPSHOT[con] = (Path(lake_dir), table.version() if table is not None else -1)
    if facts is not None:
        _FACTS[con] = facts
    if facts is not None and files:
        groups = _by_schema(con, lake_dir, facts)
        # One scan per distinct file schema, united by name: `union_by_name` would re-read every footer at
        # every bind (~100 ms per view reference on a 100-file lake); a fixed schema binds from one file.
        sql = " UNION ALL BY NAME ".join(
            _read_sql(f"$f{i}") for i in range(len(groups)))
        con.sql(sql, params={f"f{i}": g for i, g in enumerate(groups)}).create_view("raw_events")
        by_day: dict[str, list[str]] = {}
        for f in files:
            m = _DAY_DIR.search(f)
            by_day.setdefault(m.group(1) if m else "", []).append(f)
        _DAY_FILES[con] = by_day
    else:
        con.sql(_empty_events_sql()).create_view("raw_events")
    for name in BY_FILES:
        # The package's own SQL with its one source swapped for the same source over a file list.
        src, to = ("raw_events", f"({_read_sql('files', ', union_by_name = true')})") if name == "events" \
            else ("events", "events_in(files)")
        body, n = re.subn(rf"\bFROM {src}\b", f"FROM {to}".replace("\\", "\\\\"), view_sql(name))  # literal text
        if n != 1:
            raise RuntimeError(f"view {name} must read {src} exactly once to have a {name}_in macro")
        con.execute(f"CREATE MACRO {name}_in(files) AS TABLE {body}")
    for name in VIEWS:
        if name in BY_CREDENTIAL:
            # The SQL text is the package's own file, never input.
            con.execute(f"CREATE MACRO {name}_for(ids) AS TABLE {view_sql(name)}")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_for(CAST(NULL AS VARCHAR[]))")  # noqa: S608
        else:
            # SQL rather than the relation API, which binds the view once more in Python (~2 ms a view per connect)
            con.execute(f"CREATE VIEW {name} AS {view_sql(name)}")  # the package's own SQL file, never input
    return con


# Marts that aggregate the whole lake; `materialize` computes them once per connection.
MATERIALIZED: tuple[str, ...] = ("credentials", "policy_versions")

# Who held or presented each credential (role sessions: the role) and since when, with the credential's
# columns a point-in-time answer shows (a semi-join on credential ids scanned all of `mat_credentials` per
# question). Sorted by `actor_h = hash(actor)`: a filter `actor_h = hash($id) AND actor = $id` reads one
# zonemap segment, where string statistics (8-byte prefixes: every SPIFFE ID starts alike) prune nothing.
_CREDENTIAL_ACTORS = """
WITH a AS (
    SELECT CASE WHEN activity = 'role.assumed' THEN target_id ELSE actor_id END AS actor, credential_id,
           min(time) AS first_time
    FROM events
    WHERE credential_id IS NOT NULL
      AND CASE WHEN activity = 'role.assumed' THEN target_id ELSE actor_id END IS NOT NULL
    GROUP BY ALL
)
SELECT hash(a.actor) AS actor_h, a.*, c.issued_at, c.valid_until, c.credential_type, c.holder, c.scope, c.parent_id,
       c.task_id, c.expires_at, c.revoked_at, c.issue_event_id
FROM a LEFT JOIN mat_credentials c USING (credential_id)
ORDER BY actor_h, actor, credential_id
"""


_MATERIALIZED: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
_SNAPSHOT: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, tuple[Path, int]] = weakref.WeakKeyDictionary()
_IN_MEMORY: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, bool] = weakref.WeakKeyDictionary()  # `connect(cached=)`
MART_TABLES: tuple[str, ...] = ("mat_credentials", "mat_policy_versions", "credential_actors", "mat_delegations")
_CORE_MARTS: tuple[str, ...] = ("mat_credentials", "mat_policy_versions", "mat_delegations")  # `materialize`
MART_CACHE = "marts"  # under the lake directory: <lake>/marts/v<events version>-<SQL fingerprint>/<table>.parquet
# (the marts below and the `key_days` index)
log = logging.getLogger(__name__)


@functools.cache
def _mart_fingerprint() -> str:
    """Changes whenever the SQL that defines the marts changes, so an upgraded install never reads old rows.

    DuckDB's version is part of it: the cached ``actor_h`` / ``delegate_h`` are its ``hash()`` values.
    """
    text = "\n".join([*(view_sql(v) for v in VIEWS), _CREDENTIAL_ACTORS, *MART_TABLES, duckdb.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def mart_cache_dir(con: duckdb.DuckDBPyConnection) -> Path | None:
    """Where this connection's snapshot keeps its computed marts (None: an empty lake has nothing to cache)."""
    snap = _SNAPSHOT.get(con)
    if snap is None or snap[1] < 0:
        return None
    return snap[0] / MART_CACHE / f"v{snap[1]:012d}-{_mart_fingerprint()}"


# Snapshot-derived tables that `cached_table` builds: name -> the registering module's own constant SQL.
CACHEABLE: dict[str, str] = {}


KEPT_DB = "dp_kept"  # the attached, compressed in-memory database of each connection's computed tables


def keep(con: duckdb.DuckDBPyConnection, name: str, sql: str, params: dict[str, Any] | None = None) -> None:
    """``name`` as the rows of ``sql``, kept in this connection's memory, compressed (read through a temp view).

    DuckDB compresses an attached in-memory database at its checkpoint: on 10M events the detections' shared
    issuance and revocation took 838 MB of DuckDB memory as temp tables and ~180 MB compressed. ``name`` and
    ``sql`` are the package's constants, never input (tests/test_security_injection.py checks every call);
    ``params`` carries any value.
    """
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {KEPT_DB} (COMPRESS)")
    con.execute(f"DROP TABLE IF EXISTS {KEPT_DB}.{name}")
    con.execute("SELECT 1").fetchall()  # the relation API refuses a connection with a pending result
    con.sql(sql, params=params).create(f"{KEPT_DB}.{name}")
    con.execute(f"CHECKPOINT {KEPT_DB}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {KEPT_DB}.{name}")  # noqa: S608


def cached_table(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """``name`` as ``CACHEABLE[name]`` over this connection's snapshot, kept in memory (``keep``), loaded from
    the snapshot's cache when a connection already computed it (the file name carries a digest of the SQL, so
    other SQL never matches)."""
    _cached(con, name, _stem(name))


def _stem(name: str) -> str:
    """The file name of ``CACHEABLE[name]`` in a snapshot's cache: a digest of its SQL in it."""
    return f"{name}-{hashlib.sha256(CACHEABLE[name].encode()).hexdigest()[:10]}"


def _cached(con: duckdb.DuckDBPyConnection, name: str, stem: str) -> None:
    """``name`` as ``CACHEABLE[name]``, kept in memory (``keep``), loaded from or saved to
    ``<cache>/<stem>.parquet``."""
    cache = mart_cache_dir(con)
    if cache is None or not _load_cached(con, cache, (name,), (stem,)):
        keep(con, name, CACHEABLE[name])
        if cache is not None:
            _save_cached(con, cache, (name,), (stem,))


READY = "READY"  # in a snapshot's cache directory: every table `analytics.snapshot.prepare` makes is there


def mark_ready(con: duckdb.DuckDBPyConnection) -> None:
    """Record that this connection's snapshot has all its caches, and drop older snapshots' caches (best effort)."""
    cache = mart_cache_dir(con)
    if cache is None:
        return
    try:
        (cache / READY).touch()
        _prune(cache, keep_ready=1)
    except OSError as e:
        log.info("could not mark %s ready (%s)", cache, e)


# Caches of other SQL (another install on the same lake: a dashboard not yet upgraded beside a scheduler that is)
# are that install's to prune; a writer drops them only once unused this long (a connection reading a cache
# touches its directory).
OTHER_SQL_IDLE_S = 86_400.0


def _prune(cache: Path, keep_ready: int | None) -> None:
    """Drop the caches of older snapshots (a newer snapshot's cache is another reader's). Of the older prepared
    ones, the newest ``keep_ready`` stay (None: all): a dashboard serves one meanwhile, and connections reading a
    cache as files (``connect(cached="files")``) need it until they move on. Caches of other SQL, at this snapshot
    or older, go once unused for ``OTHER_SQL_IDLE_S``.
    """
    mine = cache.name.split("-")[0]
    older = sorted((old for old in cache.parent.iterdir()
                    if old.name.startswith("v") and old.name != cache.name and old.name.split("-")[0] <= mine),
                   key=lambda d: d.name)
    sql = cache.name.partition("-")[2]
    ready = [d for d in older if d.name.split("-")[0] < mine and d.name.partition("-")[2] == sql and (d / READY).exists()]
    kept = set(ready if keep_ready is None else ready[len(ready) - keep_ready:] if keep_ready else [])
    now = time.time()
    for old in older:
        if old in kept:
            continue
        with contextlib.suppress(OSError):
            if old.name.partition("-")[2] != sql and now - old.stat().st_mtime < OTHER_SQL_IDLE_S:
                continue
            shutil.rmtree(old, ignore_errors=True)


def ready_versions(lake_dir: str | Path) -> list[int]:
    """Events versions of this lake whose caches are prepared for the running code, oldest first."""
    root = Path(lake_dir) / MART_CACHE
    suffix = f"-{_mart_fingerprint()}"
    try:
        return sorted(int(d.name[1:-len(suffix)]) for d in root.iterdir()
                      if d.name.startswith("v") and d.name.endswith(suffix) and (d / READY).is_file())
    except (OSError, ValueError):
        return []


def _load_cached(con: duckdb.DuckDBPyConnection, cache: Path, names: tuple[str, ...],
                 stems: tuple[str, ...] | None = None) -> bool:
    """Load these tables from the snapshot's cache if all are there; False (none trusted) otherwise."""
    files = [cache / f"{n}.parquet" for n in (stems or names)]
    if not all(f.is_file() for f in files):
        return False
    with contextlib.suppress(OSError):
        os.utime(cache)  # in use: another install's writer keeps it (`_prune`)
    try:
        for name, f in zip(names, files, strict=True):
            # Only a prepared snapshot's files are read in place: pruning keeps the newest two prepared ones, while
            # any other snapshot's cache may be dropped by the next writer (`_prune`).
            if _IN_MEMORY.get(con, False) or not (cache / READY).is_file():
                keep(con, name, "SELECT * FROM read_parquet($p)", {"p": str(f)})
            else:  # a view over the cached file: nothing loaded, each query reads what it needs
                con.execute("SELECT 1").fetchall()  # the relation API refuses a connection with a pending result
                con.sql("SELECT * FROM read_parquet($p)", params={"p": str(f)}).create_view(name, replace=True)
    except (duckdb.Error, OSError) as e:  # damaged, or removed by a newer snapshot's writer while we read it
        log.info("cache %s unreadable (%s); computing %s", cache, e, ", ".join(names))
        return False
    return True


def _save_cached(con: duckdb.DuckDBPyConnection, cache: Path, names: tuple[str, ...],
                 stems: tuple[str, ...] | None = None) -> None:
    """Write these tables for the next connection on this snapshot; drop older snapshots' caches.

    Best effort: a read-only lake, a full disk or a concurrent writer only cost the next caller a recompute.
    Each file appears whole or not at all (written aside, then renamed over); two writers of one snapshot
    write the same rows.
    """
    tmp = cache / f".{uuid.uuid4().hex[:8]}.parquet"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for name, stem in zip(names, stems or names, strict=True):
            con.table(name).write_parquet(str(tmp), compression="zstd")
            os.replace(tmp, cache / f"{stem}.parquet")
        _prune(cache, keep_ready=None)
    except (duckdb.Error, OSError) as e:
        tmp.unlink(missing_ok=True)
        log.info("could not cache %s in %s (%s); the next connection recomputes them", ", ".join(names), cache, e)


_INDEXED: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def materialize(con: duckdb.DuckDBPyConnection) -> None:
    """Compute the whole-lake marts once on this connection (idempotent); later queries read them from memory.

    ``credentials`` (and so ``credentials_for`` / ``delegations_for``), ``delegations`` (sorted by delegate) and
    ``policy_versions`` are replaced by in-memory tables of the same rows. The snapshot is the connection's, so
    nothing goes stale; the tables are cached per snapshot (``MART_CACHE``). ``credential_actors`` is made on
    demand (``credential_actors``): only point-in-time answers read it.
    """
    if con in _MATERIALIZED:
        return
    cache = mart_cache_dir(con)
    if cache is None or not _load_cached(con, cache, _CORE_MARTS):
        _compute_marts(con)
        if cache is not None:
            _save_cached(con, cache, _CORE_MARTS)
    _shadow(con)
    con.execute("CREATE OR REPLACE TEMP VIEW delegations AS SELECT * EXCLUDE (delegate_h) FROM mat_delegations")
    _MATERIALIZED.add(con)


_ACTORS: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
CACHEABLE["credential_actors"] = _CREDENTIAL_ACTORS


def credential_actors(con: duckdb.DuckDBPyConnection) -> None:
    """Make the ``credential_actors`` table (who held or presented each credential, since when, with the
    credential's lifecycle columns; sorted by ``hash(actor)``) exist on this connection, cached per snapshot."""
    if con in _ACTORS:
        return
    materialize(con)  # it joins the in-memory credentials
    _cached(con, "credential_actors", "credential_actors")  # its name is in the mart fingerprint
    _ACTORS.add(con)


def _shadow(con: duckdb.DuckDBPyConnection) -> None:
    # Temp objects shadow the catalog's in this connection only (a cursor keeps the lazy views).
    con.execute("CREATE OR REPLACE TEMP MACRO credentials_for(ids) AS TABLE "
                "SELECT * FROM mat_credentials WHERE ids IS NULL OR credential_id IN (SELECT unnest(ids))")
    con.execute("CREATE OR REPLACE TEMP VIEW policy_versions AS SELECT * FROM mat_policy_versions")


def _compute_marts(con: duckdb.DuckDBPyConnection) -> None:
    # The credentials mart reads the issuance and revocations that detect runs share: from the snapshot's cache
    # (computed and cached here for the next detect run when none serves), never kept in memory for this one read.
    share(con, " ".join(SHARED), cached_only=frozenset(SHARED))
    keep(con, "mat_credentials", "SELECT * FROM credentials ORDER BY holder, credential_id")
    keep(con, "mat_policy_versions", "SELECT * FROM policy_versions")
    _shadow(con)  # `delegations` below reads the in-memory credentials
    # Sorted by hash(delegate), as `credential_actors` by hash(actor): one identity's delegations, one segment.
    keep(con, "mat_delegations",
         "SELECT hash(delegate) AS delegate_h, * FROM delegations ORDER BY delegate_h, delegate, credential_id")


# Intermediates that several detectors read: each is had once per connection, when a query first names it.
SHARED: tuple[str, ...] = ("int_credential_issued", "int_credential_revoked")
# Shared only where the snapshot's cache serves it (`analytics.shared_cache`); otherwise the view is left as it is:
# keeping the revocations in memory cost more (0.6 s at 10M events) than computing them in their one reader.
_CACHED_ONLY: frozenset[str] = frozenset({"int_credential_revoked"})
_SHARED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, set[str]] = weakref.WeakKeyDictionary()
_TRIED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, set[str]] = weakref.WeakKeyDictionary()


def _carried(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    from analytics.shared_cache import attach

    return attach(con, name)


# Shared views cached per snapshot and carried forward to later snapshots (None: the cache cannot serve here).
_CARRIED: dict[str, Callable[[duckdb.DuckDBPyConnection, str], str | None]] = {
    "int_credential_issued": _carried, "int_credential_revoked": _carried}


def share(con: duckdb.DuckDBPyConnection, sql: str, cached_only: frozenset[str] = _CACHED_ONLY) -> None:
    """Share, once on this connection, each ``SHARED`` view that ``sql`` reads (shadowed by a temp view): read from
    the snapshot's cache (``analytics.shared_cache``), or else kept in memory, except the ``cached_only`` views,
    which are then left as they are.

    Without it every detector reading ``int_credential_issued`` re-aggregates the whole lake's issuance records
    (seven of the catalog do). The rows are the same; the snapshot is the connection's, so nothing goes stale.
    """
    done, tried = _SHARED.setdefault(con, set()), _TRIED.setdefault(con, set())
    for name in SHARED:
        if name not in tried and re.search(rf"\b{name}\b", sql):
            tried.add(name)
            # A view over the snapshot's cached rows (`analytics.shared_cache`), else kept compressed (`keep`):
            # the detect run's queries get the rest of its 1.5 GB instead of spilling. Names are the constants
            # above, never input.
            how = _CARRIED[name](con, name) if name in _CARRIED else None
            log.info("%s: %s", name, how or ("not shared" if name in cached_only else "kept in memory"))
            if how is None:
                if name in cached_only:
                    continue
                keep(con, f"shared_{name}", f"SELECT * FROM {name}")  # noqa: S608
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM shared_{name}")  # noqa: S608
            if name in BY_CREDENTIAL:
                # `<name>_for(ids)` (a few credentials' rows) now reads the materialized rows, not the lake again.
                con.execute(f"CREATE OR REPLACE TEMP MACRO {name}_for(ids) AS TABLE SELECT * FROM shared_{name} "  # noqa: S608
                            "WHERE ids IS NULL OR credential_id IN (SELECT unnest(ids))")
            done.add(name)


def is_shared(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether ``share`` has materialized ``name`` on this connection (as ``shared_<name>``)."""
    return name in _SHARED.get(con, ())


_KEY_DAYS = """SELECT DISTINCT h, day FROM (
    SELECT hash(event_id) AS h, day FROM raw_events UNION ALL
    SELECT hash(credential_id), day FROM raw_events WHERE credential_id IS NOT NULL) ORDER BY h"""


CACHEABLE["key_days"] = _KEY_DAYS


def index_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Build, once per connection, ``key_days(h, day)``: the days holding each event id and credential id.

    ``h`` is ``hash(event_id)`` or ``hash(credential_id)``. Neither id is clustered, so ``event_id = $e`` opens
    and scans every file; with the index a lookup reads only the day files that hold the id (``key_days``).
    Sorted by ``h``, a lookup touches one zonemap segment. Collisions only add days, never drop one.
    """
    if con in _INDEXED:
        return
    cached_table(con, "key_days")  # cached per snapshot like the marts (9-10 s to build on 10M events)
    _INDEXED.add(con)


def cached_at_hand(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether ``CACHEABLE[name]`` is cached for this connection's snapshot (``cached_table`` loads, not builds):
    ``analytics.snapshot.prepare`` or an earlier query on the snapshot made it."""
    cache = mart_cache_dir(con)
    return cache is not None and (cache / f"{_stem(name)}.parquet").is_file()


def index_at_hand(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``key_days`` costs no build on this connection: built or loaded here, or cached for its snapshot."""
    return con in _INDEXED or cached_at_hand(con, "key_days")


def snapshot_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every data file of this connection's snapshot (for ``DAY_SCAN``)."""
    facts = _FACTS.get(con)
    return list(facts.uris) if facts is not None else []


def key_days(con: duckdb.DuckDBPyConnection, key: str) -> list[str]:
    """The days whose partition may hold ``key`` as an event id or credential id (``list_contains($days, day)``)."""
    index_keys(con)
    return [r[0] for r in con.execute("SELECT day FROM key_days WHERE h = hash($k) ORDER BY day", {"k": key}).fetchall()]


@dataclass(frozen=True)
class ScanStats:
    """What the Parquet scans of one query read: row groups scanned out of those in the files."""

    row_groups_scanned: int
    row_groups_total: int
    rows_scanned: int
    files_read: int


def scan_stats(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> ScanStats:
    """Run ``sql`` with DuckDB's JSON profiler and sum its Parquet scans' row-group counters."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "profile.json")
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute("SET profiling_output = $p", {"p": out})
        try:
            con.execute(sql, params or {}).fetchall()
        finally:
            con.execute("PRAGMA disable_profiling")
        prof = json.loads(Path(out).read_text())
    scanned = total = rows = nfiles = 0
    stack = list(prof.get("operator", prof.get("children", [])))
    while stack:
        op = stack.pop()
        stack.extend(op.get("children", []))
        if op.get("name") == "READ_PARQUET" or op.get("extra_info", {}).get("Function") == "READ_PARQUET":
            scanned += int(op.get("row_groups_scanned", 0))
            total += int(op.get("total_row_groups_to_scan", 0))
            rows += int(op.get("rows_scanned", 0))
            nfiles += int(op.get("extra_info", {}).get("Total Files Read", 0) or 0)
    return ScanStats(scanned, total, rows, nfiles)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a parameterised query and return its rows as dicts."""
    cur = con.execute(sql, params or {})
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def day_bounds(lo: Any, hi: Any) -> dict[str, str]:
    """``$dlo``/``$dhi`` for ``day >= $dlo AND day <= $dhi``: the UTC days of a time window.

    ``day`` is the UTC date of ``time`` (the contract), and a filter on the partition column skips whole files
    before their footers are opened (a ``time`` filter alone opens every file of the snapshot).
    """
    return {"dlo": lo.astimezone(dt.UTC).strftime("%Y-%m-%d"), "dhi": hi.astimezone(dt.UTC).strftime("%Y-%m-%d")}


def jsonable(v: Any) -> Any:
    """A query value as plain JSON: datetimes to ISO 8601 UTC, tuples to lists."""
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v
