"""Baselines measured beside the product in the same run.

Raw ceilings (what the bytes alone cost, with no parsing into the canonical event):
  * ``duckdb_json_to_parquet``: DuckDB ``read_json`` of the generated files straight to Parquet.
  * ``kafka_bare``: kafka-python fetching a topic, values batch-parsed by DuckDB ``read_json`` and
    written to Parquet, with no normalisation and no lake.

Detection baselines (same findings as the product's DP-TR-1, DP-TR-2 and DP-PC-3 on the same lake,
written independently from the detector definitions): one in pandas, one hand-written DuckDB query each.
Each returns a set of finding keys, comparable with the product's ``Finding.key``.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

USE_CATEGORIES = ("tool_call", "authorization", "api_activity")
ISSUING = ("token.issued", "token.exchanged", "token.refreshed", "role.assumed", "svid.minted", "session.started")
TR1_SKIP = ("token.issued", "token.exchanged", "token.refreshed", "svid.minted", "role.assumed")
PRIVILEGED_ROLES = ("OrganizationAccountAccessRole", "PowerUserAccess", "BreakGlass")
CLOCK_SKEW_S = 60
MIN_ORIGINS = 2
MIN_HOPS = 2


# -- raw ceilings ------------------------------------------------------------------------------
def _copy_sql(dst: Path) -> str:
    # COPY ... TO takes no parameter for its target; the path is ours (quoted), never input.
    target = str(dst).replace("'", "''")
    src = ("SELECT * FROM read_json($f, format = 'newline_delimited', ignore_errors = true, "
           "union_by_name = true, maximum_object_size = 16777216)")
    return f"COPY ({src}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"  # noqa: S608


def duckdb_json_to_parquet(files: Sequence[str | Path], out_dir: Path) -> int:
    """Each JSON Lines file → one zstd Parquet file via DuckDB ``read_json``; returns rows written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    total = 0
    try:
        for i, f in enumerate(files):
            dst = out_dir / f"{i:03d}-{Path(f).stem}.parquet"
            n = con.execute(_copy_sql(dst), {"f": str(f)}).fetchone()
            total += int(n[0]) if n else 0
    finally:
        con.close()
    return total


def kafka_bare(bootstrap: str, topic: str, group: str, out_dir: Path, batch_records: int = 50_000,
               on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Consume ``topic`` from the beginning to its end offsets; each batch of values → DuckDB read_json → Parquet.

    Returns ``{"records", "rows", "t0", "t_end"}`` (wall-clock epoch seconds, comparable across processes).
    """
    from kafka import KafkaConsumer, TopicPartition

    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    # No consumer group: the ceiling is the fetch itself (the collector's group join is part of its cost).
    c = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", max_poll_records=5_000, fetch_max_bytes=50 << 20,
                      max_partition_fetch_bytes=16 << 20)
    parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    end = c.end_offsets(parts)
    want = sum(end.values())
    t_first = None
    con = duckdb.connect()
    tmp = Path(tempfile.mkdtemp(prefix="dp-bare-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    buf: list[bytes] = []
    got = rows = batches = 0

    def flush() -> None:
        nonlocal rows, batches, buf
        if not buf:
            return
        src = tmp / "batch.jsonl"
        src.write_bytes(b"\n".join(buf) + b"\n")
        dst = out_dir / f"batch-{batches:05d}.parquet"
        n = con.execute(_copy_sql(dst), {"f": str(src)}).fetchone()
        rows += int(n[0]) if n else 0
        batches += 1
        buf = []
        if on_batch:
            on_batch(got)

    try:
        while got < want:
            polled = c.poll(timeout_ms=500, max_records=5_000)
            if polled and t_first is None:
                t_first = time.time()
            for msgs in polled.values():
                for m in msgs:
                    buf.append(m.value or b"null")
                got += sum(1 for _ in msgs)
            if len(buf) >= batch_records:
                flush()
        flush()
    finally:
        c.close(autocommit=False)
        con.close()
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return {"records": got, "rows": rows, "t0": t0, "t_first": t_first, "t_end": time.time()}


# -- detection baselines: pandas ---------------------------------------------------------------
def _pd_events(files: Sequence[str], columns: Sequence[str]) -> Any:
    import pyarrow.parquet as pq

    tables = [pq.read_table(f, columns=list(columns)) for f in files]
    import pyarrow as pa

    return pa.concat_tables(tables).to_pandas() if tables else None


def pandas_tr1(files: Sequence[str], since: dt.datetime, until: dt.datetime) -> set[tuple[str, ...]]:
    """DP-TR-1 in pandas: credentials used from >= 2 origins (workload, else source address)."""
    df = _pd_events(files, ["credential_id", "category", "activity", "src_workload", "src_ip", "time"])
    if df is None:
        return set()
    df = df[df["credential_id"].notna() & df["category"].isin(USE_CATEGORIES) & ~df["activity"].isin(TR1_SKIP)]
    df = df.assign(origin=df["src_workload"].fillna(df["src_ip"]))
    g = df.groupby("credential_id").agg(n=("origin", "nunique"), lo=("time", "min"), hi=("time", "max"))
    g = g[(g["n"] >= MIN_ORIGINS) & (g["hi"] >= since) & (g["lo"] <= until)]
    return {(c,) for c in g.index}


def pandas_tr2(files: Sequence[str], since: dt.datetime, until: dt.datetime) -> set[tuple[str, ...]]:
    """DP-TR-2 in pandas: credentials used after expiry (recorded at issuance, else on the use) + skew."""
    import pandas as pd

    df = _pd_events(files, ["event_id", "time", "credential_id", "category", "activity", "outcome",
                            "credential_expires_at"])
    if df is None:
        return set()
    df = df[df["credential_id"].notna()]
    iss = df[df["activity"].isin(ISSUING) & (df["outcome"].fillna("success") != "failure")]
    iss = iss.sort_values(["credential_id", "time", "event_id"]).drop_duplicates("credential_id", keep="first")
    exp = iss.set_index("credential_id")["credential_expires_at"].rename("iss_exp")
    u = df[df["category"].isin(USE_CATEGORIES) & (df["time"] >= since) & (df["time"] <= until)]
    u = u.join(exp, on="credential_id")
    e = u["iss_exp"].fillna(u["credential_expires_at"]) if "iss_exp" in u else u["credential_expires_at"]
    late = u[e.notna() & (u["time"] > e + pd.Timedelta(seconds=CLOCK_SKEW_S))]
    return {(c,) for c in late["credential_id"].unique()}


def _privileged(role: Any) -> bool:
    name = str(role or "").rpartition("/")[2]
    return "Admin" in name or name in PRIVILEGED_ROLES


def pandas_pc3(files: Sequence[str], since: dt.datetime, until: dt.datetime) -> set[tuple[str, ...]]:
    """DP-PC-3 in pandas: follow credential_parent_id up from each privileged role.assumed; >= 2 hops."""
    df = _pd_events(files, ["event_id", "time", "credential_id", "credential_parent_id", "target_id", "activity"])
    if df is None:
        return set()
    ra = df[(df["activity"] == "role.assumed") & df["credential_id"].notna()]
    # the last row per credential wins (as in the product's graph), parents from the first row
    last = ra.drop_duplicates("credential_id", keep="last").set_index("credential_id")
    parent = ra[ra["credential_parent_id"].notna()].drop_duplicates("credential_id").set_index(
        "credential_id")["credential_parent_id"].to_dict()
    out: set[tuple[str, ...]] = set()
    cand = last[last["target_id"].map(_privileged) & (last["time"] >= since) & (last["time"] <= until)]
    for cid, eid in zip(cand.index, cand["event_id"], strict=True):
        chain = [cid]
        while (p := parent.get(chain[-1])) is not None and p not in chain:
            chain.append(p)
        if sum(1 for c in chain if c in last.index) >= MIN_HOPS:
            out.add((eid,))
    return out


# -- detection baselines: hand-written DuckDB ---------------------------------------------------
def _duck(files: Sequence[str]) -> duckdb.DuckDBPyConnection:
    """A connection with view ``ev`` over the files (the functions below take one to time their query alone)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.sql("SELECT * FROM read_parquet($f, union_by_name = true)", params={"f": list(files)}).create_view("ev")
    return con


def duckdb_tr1(files: Sequence[str], since: dt.datetime, until: dt.datetime,
              con: duckdb.DuckDBPyConnection | None = None) -> set[tuple[str, ...]]:
    con = con or _duck(files)
    rows = con.execute(f"""
        SELECT credential_id FROM ev
        WHERE credential_id IS NOT NULL AND category IN {USE_CATEGORIES} AND activity NOT IN {TR1_SKIP}
        GROUP BY credential_id
        HAVING count(DISTINCT coalesce(src_workload, src_ip)) >= {MIN_ORIGINS}
           AND max(time) >= $since AND min(time) <= $until""", {"since": since, "until": until}).fetchall()  # noqa: S608
    return {(r[0],) for r in rows}


def duckdb_tr2(files: Sequence[str], since: dt.datetime, until: dt.datetime,
              con: duckdb.DuckDBPyConnection | None = None) -> set[tuple[str, ...]]:
    con = con or _duck(files)
    rows = con.execute(f"""
        WITH iss AS (
          SELECT credential_id, arg_min(credential_expires_at, (time, event_id)) AS exp FROM ev
          WHERE credential_id IS NOT NULL AND activity IN {ISSUING} AND coalesce(outcome, 'success') <> 'failure'
          GROUP BY credential_id)
        SELECT DISTINCT u.credential_id FROM ev u LEFT JOIN iss USING (credential_id)
        WHERE u.credential_id IS NOT NULL AND u.category IN {USE_CATEGORIES} AND u.time BETWEEN $since AND $until
          AND u.time > coalesce(iss.exp, u.credential_expires_at) + INTERVAL {CLOCK_SKEW_S} SECOND""",  # noqa: S608
                       {"since": since, "until": until}).fetchall()
    return {(r[0],) for r in rows}


def duckdb_pc3(files: Sequence[str], since: dt.datetime, until: dt.datetime,
              con: duckdb.DuckDBPyConnection | None = None) -> set[tuple[str, ...]]:
    con = con or _duck(files)
    priv = ", ".join(f"'{r}'" for r in PRIVILEGED_ROLES)
    rows = con.execute(f"""
        WITH RECURSIVE ra AS (
          SELECT credential_id, arg_max(event_id, rn) AS event_id, arg_max(time, rn) AS time,
                 arg_max(target_id, rn) AS target_id,
                 arg_min(credential_parent_id, rn) FILTER (WHERE credential_parent_id IS NOT NULL) AS parent
          FROM (SELECT *, row_number() OVER () AS rn FROM ev
                WHERE activity = 'role.assumed' AND credential_id IS NOT NULL)
          GROUP BY credential_id),
        up(start_id, cur, hops, path) AS (
          SELECT credential_id, parent, 1, [credential_id] FROM ra
          WHERE (string_split(coalesce(target_id, ''), '/')[-1] LIKE '%Admin%'
                 OR string_split(coalesce(target_id, ''), '/')[-1] IN ({priv}))
            AND time BETWEEN $since AND $until
          UNION ALL
          SELECT up.start_id, ra.parent, up.hops + 1, list_append(up.path, ra.credential_id)
          FROM up JOIN ra ON ra.credential_id = up.cur
          WHERE NOT list_contains(up.path, ra.credential_id) AND up.hops < 64)
        SELECT ra.event_id FROM up JOIN ra ON ra.credential_id = up.start_id
        GROUP BY ra.event_id HAVING max(up.hops) >= {MIN_HOPS}""",  # noqa: S608
                       {"since": since, "until": until}).fetchall()
    return {(r[0],) for r in rows}


DETECTION_BASELINES: dict[str, dict[str, Callable[[Sequence[str], dt.datetime, dt.datetime], set[tuple[str, ...]]]]] = {
    "DP-TR-1": {"pandas": pandas_tr1, "duckdb": duckdb_tr1},
    "DP-TR-2": {"pandas": pandas_tr2, "duckdb": duckdb_tr2},
    "DP-PC-3": {"pandas": pandas_pc3, "duckdb": duckdb_pc3},
}
