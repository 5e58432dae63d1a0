"""Vectorised parse path: the dominant formats' records decoded and mapped a chunk at a time.

``ingest.normalize`` hands this module the records the secret screen cleared. Per format
(``fastpath.mcp``, ``fastpath.opa``, ``fastpath.keycloak``) the admitted records are decoded together by ``pyarrow.json``
with an explicit schema (a value of another type fails the decode: that record goes back), and one
DuckDB query over those typed columns builds the canonical columns. A record is admitted only when
every condition under which the mapping gives exactly the Python parser's row holds:

* ASCII (the screen requires it), compact JSON that ``orjson`` reads and writes back byte for byte
  (so no duplicate keys, no whitespace, canonical numbers), with no backslash (no escapes) and no
  float anywhere;
* a JSON object carrying the format's marker key, whose top-level keys are all known to the mapping,
  and which the format's ``admit`` accepts (shapes a schema cannot tell apart);
* the query's ``ok`` column holds (required fields present, times in range, ...).

Every other record goes through the Python parsers, which remain the reference
(``tests/test_ingest_fastpath.py`` compares the two paths on whole corpora).
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ingest.events import SCHEMA
from ingest.fastpath import _sql, keycloak, mcp, opa

FORMATS: dict[str, ModuleType] = {keycloak.FORMAT: keycloak, opa.FORMAT: opa, mcp.FORMAT: mcp}  # sniffing order
# Columns the query produces; the collector's own (ingested_at, origin, raw) are added by the caller.
PARSED_COLUMNS: tuple[str, ...] = tuple(n for n in SCHEMA.names if n not in ("ingested_at", "origin", "raw"))
# a backslash (an escape), or a float token of compact JSON ("08:00:14.382Z" in a string ends no token)
_REFUSE = r'\\|[:,\[]-?[0-9]+(\.[0-9]+([eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)[,}\]]'
_MIN_RECORDS = 64  # below this, the decode and the query cost more than the Python parsers
_BLOCK = 2048  # lines per decode once a chunk has held a record of an unexpected type
_ROW = re.compile(r"in row (\d+)")

_local = threading.local()  # one connection per thread (and per process: see _connection)


@dataclass(frozen=True)
class FastRows:
    """Canonical columns for the records the fast path parsed, one row each.

    ``index`` is each row's record position in the list given to ``parse``; ``table`` has the columns
    of ``PARSED_COLUMNS`` with ``SCHEMA``'s types.
    """

    index: pa.Array
    table: pa.Table


def _connection() -> duckdb.DuckDBPyConnection:
    """A single-threaded in-memory DuckDB per thread; a forked worker never reuses its parent's."""
    held: tuple[int, duckdb.DuckDBPyConnection] | None = getattr(_local, "con", None)
    if held is None or held[0] != os.getpid():
        con = duckdb.connect(config={"threads": 1})
        for m in _sql.MACROS:
            con.execute(m)
        held = _local.con = (os.getpid(), con)
    return held[1]


def parse(raws: Sequence[bytes], fmt: str = "auto") -> FastRows | None:
    """Parse what the fast path can of ``raws`` (all cleared by the screen); None when it takes nothing."""
    if fmt != "auto" and fmt not in FORMATS or len(raws) < _MIN_RECORDS:
        return None
    refused = pc.match_substring_regex(pa.array(raws, pa.binary()), _REFUSE).to_pylist()
    groups: dict[str, tuple[list[int], list[tuple[Any, ...]]]] = {n: ([], []) for n in FORMATS}
    mods = [m for n, m in FORMATS.items() if fmt in ("auto", n)]
    loads, dumps = orjson.loads, orjson.dumps
    for i, raw in enumerate(raws):
        if refused[i]:
            continue
        try:
            rec = loads(raw)
        except orjson.JSONDecodeError:
            continue
        if type(rec) is not dict:
            continue
        for mod in mods:
            if mod.MARKER in rec and rec.keys() <= mod.KEYS:
                if dumps(rec) == raw and (extra := mod.admit(rec)) is not None:
                    groups[mod.FORMAT][0].append(i)
                    groups[mod.FORMAT][1].append(extra)
                break
    parts: list[pa.Table] = []
    for name, (idx, extras) in groups.items():
        if len(idx) >= _MIN_RECORDS:
            parts.extend(_run(FORMATS[name], [raws[i] for i in idx], idx, extras))
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return None
    return FastRows(pa.concat_arrays([p["i"].combine_chunks() for p in parts]),
                    pa.concat_tables([_canonical(p) for p in parts]))


def _run(mod: ModuleType, lines: list[bytes], idx: list[int], extras: list[tuple[Any, ...]]) -> list[pa.Table]:
    """Decode ``lines`` with the format's schema, then map them; the rows whose ``ok`` holds."""
    out = []
    for lo, hi, decoded in _decode(lines, mod.SCHEMA):
        cols = {"i": pa.array(idx[lo:hi], pa.int64())}
        for k, (name, typ) in enumerate(mod.EXTRA):
            cols[name] = pa.array([e[k] for e in extras[lo:hi]], typ)
        src = decoded
        for name, arr in cols.items():
            src = src.append_column(name, arr)
        con = _connection()
        con.register("src", src)
        try:
            res = con.sql(mod.SQL).to_arrow_table()
        finally:
            con.unregister("src")
        out.append(res.filter(pc.fill_null(res["ok"], False)))
    return out


def _decode(lines: list[bytes], schema: pa.Schema) -> list[tuple[int, int, pa.Table]]:
    """``(lo, hi, table)`` for runs of ``lines`` that decode with ``schema``.

    A record with a value of another type fails the whole decode. Arrow names its row: the rows
    before it are decoded again, the record is left out (it goes to the Python parser), and the rest
    is decoded in blocks of ``_BLOCK`` lines so that each further failure costs one block, not the
    rest of the chunk. A failure without a row number sends that block to the Python parser.
    """
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    runs: list[tuple[int, int, pa.Table]] = []
    lo, step, n = 0, len(lines), len(lines)
    while lo < n:
        hi = min(n, lo + step)
        try:
            runs.append((lo, hi, _read(lines[lo:hi], opts)))
            lo = hi
            continue
        except pa.ArrowInvalid as e:
            m = _ROW.search(str(e))
        if m is None:
            if step > _BLOCK:  # retry the same rows in blocks
                step = _BLOCK
                continue
            lo = hi  # this block goes to the Python parser
            continue
        bad = lo + int(m.group(1))
        if bad > lo:
            try:
                runs.append((lo, bad, _read(lines[lo:bad], opts)))
            except pa.ArrowInvalid:
                bad = hi - 1  # not as Arrow said: this block goes to the Python parser
        lo, step = bad + 1, _BLOCK
    return runs


def _read(lines: list[bytes], opts: pj.ParseOptions) -> pa.Table:
    data = b"\n".join(lines)
    # one block: the row an error names is then the row in ``lines``
    ro = pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1))
    return pj.read_json(io.BytesIO(data), read_options=ro, parse_options=opts)


def _canonical(out: pa.Table) -> pa.Table:
    """The SQL's columns in ``PARSED_COLUMNS`` order and ``SCHEMA``'s types; columns it does not set are null."""
    cols = []
    for name in PARSED_COLUMNS:
        f = SCHEMA.field(name)
        if name in out.column_names:
            cols.append(out[name].cast(f.type))
        else:
            cols.append(pa.nulls(out.num_rows, f.type))
    return pa.table(cols, schema=pa.schema([SCHEMA.field(n) for n in PARSED_COLUMNS]))
