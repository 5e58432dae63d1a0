"""The detect run's shared credential intermediates, cached per snapshot and carried forward.

Seven detections read the first issuance record of every credential (``int_credential_issued``: 1.73M rows on
10M events) and the token-reuse detections the first revocation (``int_credential_revoked``). Computed from the
whole lake they cost ~2.5 s of every detect run, most of a scheduled run over the last hours. Both only grow as
the lake grows: a data file of a Delta table is never rewritten, and a credential's first record over more files
is the first of its first record so far and the new files' records.

So a run writes each one's rows to ``<lake>/marts/shared/<view>/v<version>-<SQL fingerprint>.parquet`` with the
list of the snapshot's data files beside it (``.files.json``), and reads them through a view over that file
(``shared_<view>``). A later snapshot whose files include every file of a cached one reads that file too and
computes only the rows of the files added since (``carried``): the credentials they name are ranked again with
their cached row, in memory; once they hold more than ``REBASE`` of the cached rows, the merged rows are written
for the new snapshot. Same snapshot, same file (``cached``).

A compaction (``Lake.compact``) replaces a day's files with one holding the same rows, so a snapshot after one no
longer holds the cached snapshot's files, though it holds all their rows. The Delta log says which files each
commit removed and added: a file ``compact`` wrote from cached files only holds cached rows and is not read again;
one it wrote from cached and newer files is read as a new file (a credential's first record is the same counted
twice). Any other commit that removed a cached file (a delete, another tool's rewrite), or a commit missing from
the log, makes the run compute everything again (``computed``).

Best effort, like every cache of the lake: a read-only or full disk, or a damaged file, makes ``attach`` return
None (the caller keeps the issuance in memory as before, and computes the revocations inside the pass that reads
them). Files stay for the newest ``KEEP`` snapshots, and any file used within ``GRACE_S`` seconds (a run touches
the file it reads), so another writer's prune never removes the file under a running detect. Another
fingerprint's files (another install's) stay until unused for ``IDLE_S`` (a day).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow.parquet as pq

ROOT = "shared"  # under <lake>/<MART_CACHE>, a directory per view
KEEP = 2
GRACE_S = 600.0
# Files of another fingerprint (another install's SQL or DuckDB, e.g. a dashboard not yet upgraded beside a
# scheduler that is) are its to prune; this run removes them only once nothing has used them for this long.
IDLE_S = 86_400.0
REBASE = 0.1  # rows ranked again in memory, as a fraction of the cached rows, before a new file is written
# Commits read from the Delta log to carry a cache through a compaction; beyond it computing anew costs less (a
# collector commits every few seconds: a week's log would take minutes to read, ~2.5 s computes 10M events).
MAX_WALK = 5_000
_NAME = re.compile(r"^v([0-9]{12})-([0-9a-f]+)\.parquet$")
# The views carried forward, each with the columns of its one record per credential that rank it (as the view does).
RANKED: dict[str, tuple[str, str]] = {"int_credential_issued": ("issued_at", "issue_event_id"),
                                      "int_credential_revoked": ("revoked_at", "revoke_event_id")}
log = logging.getLogger(__name__)

# The credentials named in the new files: their cached row and their new records' first, ranked as the view ranks.
_CARRY = """
WITH n AS MATERIALIZED (SELECT * FROM dp_{name}_in($files, CAST(NULL AS VARCHAR[]))),
b AS (SELECT * FROM read_parquet($base))
SELECT * FROM (SELECT * FROM b SEMI JOIN n USING (credential_id) UNION ALL SELECT * FROM n)
QUALIFY row_number() OVER (PARTITION BY credential_id ORDER BY {t}, {e}) = 1
"""
CARRY_SQL: dict[str, str] = {n: _CARRY.format(name=n, t=t, e=e) for n, (t, e) in RANKED.items()}


def attach(con: duckdb.DuckDBPyConnection, name: str = "int_credential_issued") -> str | None:
    """Make ``shared_<name>`` (a view of ``RANKED``) a view over this snapshot's cached rows; how they were had
    (``"cached"``, ``"carried"`` or ``"computed"``), or None when the cache cannot serve (nothing created)."""
    from analytics.lake import _FACTS, _SNAPSHOT, MART_CACHE

    if name not in RANKED:
        raise ValueError(f"{name} is not carried forward (one of {', '.join(RANKED)})")
    snap, facts = _SNAPSHOT.get(con), _FACTS.get(con)
    if snap is None or snap[1] < 0 or facts is None or not facts.uris:
        return None
    root, version, fp = snap[0] / MART_CACHE / ROOT / name, snap[1], fingerprint(name)
    base: tuple[Path, list[str]] | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        base = _base(root, fp, version, facts.uris, snap[0] / "events" / "_delta_log")
        how = _attach(con, name, root, version, fp, facts.uris, base)
    except (OSError, ValueError, duckdb.Error) as e:
        if base is None:
            _unused(con, name, root, e)
            return None
        # The cached file could not be read (truncated, overwritten): drop it, so that no later run trusts it
        # either, and compute the rows again.
        log.info("cached %s unreadable (%s); computing it again", base[0], e)
        for p in (base[0], base[0].with_suffix(".files.json")):
            p.unlink(missing_ok=True)
        try:
            how = _attach(con, name, root, version, fp, facts.uris, None)
        except (OSError, ValueError, duckdb.Error) as e2:
            _unused(con, name, root, e2)
            return None
    _prune(root, fp)
    return how


@functools.cache
def fingerprint(name: str) -> str:
    """Changes whenever the rows of ``name``'s cache could: its SQL, the ``events`` view it reads, how it is
    carried, DuckDB's version. Other views' SQL is not in it (the marts' fingerprint covers them all), so changing one
    of those does not recompute these caches."""
    from analytics.lake import view_sql

    text = "\n".join([view_sql("events"), view_sql(name), CARRY_SQL[name], duckdb.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _attach(con: duckdb.DuckDBPyConnection, name: str, root: Path, version: int, fp: str, uris: list[str],
            base: tuple[Path, list[str]] | None) -> str:
    """``attach`` from ``base`` (a cached file and the files added since), or computing the rows when it is None."""
    view = f"shared_{name}"
    if base is None:
        path = _write(con, root, version, fp, uris, f"SELECT * FROM {name}")  # noqa: S608 - RANKED's
        _view(con, view, path, carried=False)
        return "computed"
    path, added = base
    _touch(path)
    _touch(path.with_suffix(".files.json"))
    if not added:
        _view(con, view, path, carried=False)
        return "cached"
    _carry(con, name, path, added)
    (rows,) = con.execute(f"SELECT count(*) FROM {view}_delta").fetchall()[0]  # noqa: S608 - RANKED's
    if rows > REBASE * max(pq.ParquetFile(path).metadata.num_rows, 1):
        path = _write(con, root, version, fp, uris, f"SELECT * FROM {view}")  # noqa: S608 - RANKED's
        _view(con, view, path, carried=False)
    return "carried"


def _unused(con: duckdb.DuckDBPyConnection, name: str, root: Path, e: Exception) -> None:
    log.info("cache of %s under %s not used (%s)", name, root, e)
    con.execute(f"DROP VIEW IF EXISTS shared_{name}")  # noqa: S608 - RANKED's


def _base(root: Path, fp: str, version: int, uris: list[str], log_dir: Path) -> tuple[Path, list[str]] | None:
    """The newest cached file of a snapshot at or before ``version`` whose rows are all in this snapshot's files
    (``uris``), with the files whose rows it may lack (snapshot order does not matter: the view ranks by time and
    id). Its rows are when every file it lists is still here, or when only ``compact`` removed them since."""
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and m.group(2) == fp and int(m.group(1)) <= version:
            found.append((int(m.group(1)), p))
    current = set(uris)
    for v, p in sorted(found, reverse=True)[:3]:
        try:
            listed = set(json.loads(p.with_suffix(".files.json").read_text()))
        except (OSError, ValueError):
            continue
        if listed <= current:
            return p, sorted(current - listed)
        covered = _covered(log_dir, v, version, {_file(u) for u in listed})
        if covered is not None:
            return p, sorted(u for u in current if _file(u) not in covered)
    return None


def _file(path: str) -> str:
    """A data file's name, from a uri or a log path (relative, maybe percent-encoded): unique, a UUID each."""
    return unquote(path.rsplit("/", 1)[-1])


def _covered(log_dir: Path, since: int, until: int, listed: set[str]) -> set[str] | None:
    """The data files (by name) holding only rows of the snapshot at version ``since``, whose files were
    ``listed``: those and what ``compact`` made of only those in the commits up to ``until``. None when one of
    those commits removed such a file otherwise, or is not in the log as a JSON commit, or there are more than
    ``MAX_WALK`` of them."""
    if until - since > MAX_WALK:
        return None
    covered = set(listed)
    for v in range(since + 1, until + 1):
        try:
            actions = [json.loads(line) for line in (log_dir / f"{v:020d}.json").read_text().splitlines()
                       if line.strip()]
            removed = {_file(a["remove"]["path"]) for a in actions if "remove" in a}
            added = {_file(a["add"]["path"]) for a in actions if "add" in a}
            compact = any(a.get("commitInfo", {}).get("decisionpath.operation") == "compact" for a in actions)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unreadable, or not a Delta commit
            return None
        if not removed & covered:
            continue  # an append, or a compaction of newer files only
        if not compact:
            return None  # rows of the cached snapshot may be gone
        if removed <= covered:
            covered |= added
    return covered


def _write(con: duckdb.DuckDBPyConnection, root: Path, version: int, fp: str, uris: list[str], sql: str) -> Path:
    """The rows of ``sql`` as this snapshot's file (its file list first: a file without its list is never used)."""
    path = root / f"v{version:012d}-{fp}.parquet"
    tmp = root / f".{uuid.uuid4().hex[:12]}.tmp"
    try:
        tmp.write_text(json.dumps(uris))
        os.replace(tmp, path.with_suffix(".files.json"))
        con.execute("SELECT 1").fetchall()  # the relation API refuses a connection with a pending result
        con.sql(sql).write_parquet(str(tmp), compression="lz4_raw")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _carry(con: duckdb.DuckDBPyConnection, name: str, base: Path, added: list[str]) -> None:
    """The cached rows, with the credentials named in ``added`` ranked again with their new records."""
    from analytics.lake import keep, view_sql

    body, n = re.subn(r"\bFROM events\b", "FROM events_in(files)", view_sql(name))
    if n != 1:
        raise ValueError(f"{name} must read events exactly once to be carried forward")
    con.execute(f"CREATE OR REPLACE TEMP MACRO dp_{name}_in(files, ids) AS TABLE {body}")
    keep(con, f"shared_{name}_delta", CARRY_SQL[name], {"files": added, "base": str(base)})
    _view(con, f"shared_{name}", base, carried=True)


def _view(con: duckdb.DuckDBPyConnection, view: str, path: Path, carried: bool) -> None:
    sql = (f"SELECT * FROM read_parquet($p) ANTI JOIN {view}_delta USING (credential_id) "  # noqa: S608 - RANKED's
           f"UNION ALL SELECT * FROM {view}_delta") if carried else "SELECT * FROM read_parquet($p)"
    con.execute("SELECT 1").fetchall()
    con.sql(sql, params={"p": str(path)}).create_view(view, replace=True)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _prune(root: Path, fp: str) -> None:
    """Remove this fingerprint's files of all but the newest ``KEEP`` snapshots, and stray temporary files, unless
    used within ``GRACE_S``; another fingerprint's files once unused for ``IDLE_S``.

    Another install reading the same lake with other SQL keeps its own newest files (its runs prune them and
    touch what they read), so each install's caches survive the other's runs; after an upgrade, the old
    install's last files go a day after its last run.
    """
    now = time.time()
    mine = sorted((int(m.group(1)) for p in root.iterdir() if (m := _NAME.match(p.name)) and m.group(2) == fp),
                  reverse=True)[:KEEP]
    for p in root.iterdir():
        m = _NAME.match(p.name.replace(".files.json", ".parquet"))
        if m and m.group(2) == fp and int(m.group(1)) in mine:
            continue
        idle = IDLE_S if m and m.group(2) != fp else GRACE_S
        try:
            if now - p.stat().st_mtime > idle:
                p.unlink()
        except OSError:
            pass
