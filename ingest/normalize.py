"""Raw records → canonical rows or dead-letter rows. Pure: no I/O, never raises on bad input."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ingest import fastpath, sources
from ingest.errors import ParseError, UnsupportedFormat
from ingest.events import DEAD_LETTER_SCHEMA, FIELD_NAMES, SCHEMA, utc
from ingest.lake import first_rows
from ingest.redact import (
    mark,
    redact,
    redact_attributes,
    redact_json,
    redact_text,
    screen,
    scrub,
    secret_values,
)
from ingest.sources.base import Parser

# Records larger than this are dead-lettered unparsed (their first bytes kept, redacted).
MAX_RECORD_BYTES = 1 << 20
DEAD_RAW_KEEP = 64 << 10
_REQUIRED_FROM_PARSER = ("event_id", "time", "source", "format", "category", "activity")


class Batch:
    """What a run of records became. ``read`` counts input records (lines, messages, array items).

    ``events`` are canonical rows as dicts. Rows the vectorised path (``ingest.fastpath``) produced
    stay Arrow columns until someone reads ``events`` (``to_tables`` never does): then they become
    dicts exactly like the Python path's, in record order.
    """

    def __init__(self, read: int = 0, events: list[dict[str, Any]] | None = None,
                 dead: list[dict[str, Any]] | None = None) -> None:
        self.read = read
        self._events: list[dict[str, Any]] = events if events is not None else []
        self.dead: list[dict[str, Any]] = dead if dead is not None else []
        # record order of each row of _events (only kept while fast rows are pending)
        self._order: list[int] = []
        self._fast: list[tuple[pa.Array, pa.Table]] = []  # (record order, SCHEMA columns [+ _pos])

    @property
    def events(self) -> list[dict[str, Any]]:
        if self._fast:
            self._materialise()
        return self._events

    @events.setter
    def events(self, rows: list[dict[str, Any]]) -> None:
        self._events, self._order, self._fast = rows, [], []

    def extend(self, other: Batch) -> None:
        self.read += other.read
        self.events.extend(other.events)
        self.dead.extend(other.dead)

    def _materialise(self) -> None:
        keyed = list(zip(self._order, range(len(self._events)), self._events, strict=True))
        for order, table in self._fast:
            rows = [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]
            keyed.extend(zip(order.to_pylist(), range(len(keyed), len(keyed) + len(rows)), rows, strict=True))
        keyed.sort(key=lambda x: (x[0], x[1]))
        self._events, self._order, self._fast = [r for _, _, r in keyed], [], []


def dead_row(raw: bytes, origin: str, reason: str, now: dt.datetime, fmt: str | None = None) -> dict[str, Any]:
    """A dead-letter row: where it came from, why, and the record (redacted, bounded)."""
    digest = hashlib.sha256(raw).hexdigest()
    kept = raw[:DEAD_RAW_KEEP].decode("utf-8", "replace")
    secrets: set[str] = set()
    try:
        if len(raw) <= DEAD_RAW_KEEP:
            value = orjson.loads(raw)
            txt = redact_json(kept, value)
            if txt is not kept:
                secrets = secret_values(value)
        else:
            txt = redact_text(kept)
    except orjson.JSONDecodeError:
        txt = redact_text(kept)
    reason = scrub(reason, secrets)
    return {
        "dl_id": hashlib.sha256(f"{origin}\x00{digest}".encode()).hexdigest()[:32],
        "received_at": now,
        "day": now.strftime("%Y-%m-%d"),
        "origin": origin,
        "format_hint": fmt,
        "reason": reason[:500],
        "raw_size": len(raw),
        "raw_sha256": digest,
        "raw": txt,
    }


def _finish(
    row: dict[str, Any], raw_text: str, origin: str, now: dt.datetime, raw_clean: bool = False
) -> dict[str, Any]:
    for k in _REQUIRED_FROM_PARSER:
        if row.get(k) in (None, ""):
            raise ParseError(f"parser produced no {k}")
    t = row["time"]
    if not isinstance(t, dt.datetime):
        t = utc(t)
        row["time"] = t
    if t.tzinfo is None:
        raise ParseError("parser produced a naive time")
    exp = row.get("credential_expires_at")
    if exp is not None and not isinstance(exp, dt.datetime):
        row["credential_expires_at"] = utc(exp)
    attrs = row.get("attributes")
    if attrs is not None and not isinstance(attrs, str):
        # Attributes are values taken from the record: when the record held no secret, neither do they.
        if raw_clean:
            row["attributes"] = orjson.dumps(attrs, default=str).decode()
        elif isinstance(attrs, str):
            row["attributes"] = redact_text(attrs)
        else:
            row["attributes"] = redact_attributes(attrs) if isinstance(attrs, dict) else orjson.dumps(
                redact(attrs), default=str).decode()
    row["day"] = t.date().isoformat()
    row["ingested_at"] = now
    row["origin"] = origin
    row["raw"] = raw_text
    return row


def _scrub_list(items: list[Any], secrets: set[str]) -> list[Any]:
    """List elements scrubbed one by one, and as a whole: a secret split on whitespace ("Bearer", "<token>")
    is found in the joined text, and the elements it swallowed are replaced by their marks."""
    out = [scrub(x, secrets) if isinstance(x, str) else x for x in items]
    strs = [x for x in out if isinstance(x, str)]
    joined = " ".join(strs)
    redacted = scrub(joined, secrets)
    if redacted == joined:
        return out
    kept = set(redacted.split())
    return [mark(x) if isinstance(x, str) and x not in kept else x for x in out]


def _scrub_row(row: dict[str, Any], secrets: set[str]) -> dict[str, Any]:
    """Every text column of a parser's row with secrets replaced (attributes are handled in _finish)."""
    for k, v in row.items():
        if k == "attributes" or k == "_pos":
            continue
        if isinstance(v, str):
            row[k] = scrub(v, secrets)
        elif isinstance(v, list):
            row[k] = _scrub_list(v, secrets)
    attrs = row.get("attributes")
    if isinstance(attrs, str):
        row["attributes"] = scrub(attrs, secrets)
    elif attrs is not None:
        row["attributes"] = _scrub_value(redact(attrs), secrets)
    return row


def _scrub_value(v: Any, secrets: set[str]) -> Any:
    if isinstance(v, str):
        return scrub(v, secrets)
    if isinstance(v, list):
        return _scrub_list([_scrub_value(x, secrets) for x in v], secrets)
    if isinstance(v, dict):
        return {k: _scrub_value(x, secrets) for k, x in v.items()}
    return v


def parse_record(
    rec: Any, raw: bytes, origin: str, fmt: str, now: dt.datetime, out: Batch, may_hold_secret: bool = True
) -> None:
    """Parse one decoded record (or envelope) into ``out``; every record lands once.

    ``may_hold_secret=False`` (the chunk screen, ``redact.screen``, cleared the raw text) skips redaction.
    """
    if not isinstance(rec, Mapping):
        out.dead.append(dead_row(raw, origin, f"unsupported format: a JSON {type(rec).__name__}, not an object", now))
        return
    parser: Parser | None = sources.PARSERS.get(fmt) if fmt != "auto" else sources.sniff(rec)
    if parser is not None and parser.split is not None:
        try:
            parts = parser.split(rec)
        except Exception as e:  # noqa: BLE001 - a broken envelope is a dead record, not a crash
            parts = None
            out.dead.append(dead_row(raw, origin, f"{parser.name}: bad envelope: {e}", now, parser.name))
            return
        if parts is not None:
            for i, sub in enumerate(parts):
                sub_raw = orjson.dumps(sub, default=str)
                parse_record(sub, sub_raw, f"{origin}#{i}", fmt, now, out, may_hold_secret)
            return
    try:
        if parser is None:
            raise UnsupportedFormat(_describe(rec))
        rows = list(parser.parse(rec))
        if not rows:
            raise ParseError("parser produced no event")
        text = raw.decode("utf-8", "replace")
        raw_text = redact_json(text, rec) if may_hold_secret else text
        clean = raw_text is text
        if not clean:  # the record held a secret: make sure no parser copied it into a column
            secrets = secret_values(rec)
            rows = [_scrub_row(r, secrets) for r in rows]
        finished = [_finish(r, raw_text, origin, now, clean) for r in rows]
    except ParseError as e:
        out.dead.append(dead_row(raw, origin, (f"{parser.name}: " if parser else "") + e.reason, now,
                                 parser.name if parser else None))
        return
    except Exception as e:  # noqa: BLE001 - a parser bug must not lose the record
        name = parser.name if parser else "?"
        out.dead.append(dead_row(raw, origin, f"{name}: parser error {type(e).__name__}: {e}", now, name))
        return
    out.events.extend(finished)


def _describe(rec: Mapping[str, Any]) -> str:
    keys = sorted(str(k) for k in list(rec.keys())[:8])
    return "no parser recognises a record with keys " + ", ".join(keys) if keys else "empty object"


def normalize(
    items: Iterable[tuple[bytes, str]] | Iterable[tuple[bytes, str, int]],
    fmt: str = "auto",
    now: dt.datetime | None = None,
    fast: bool = True,
) -> Batch:
    """Decode and parse ``(raw bytes, origin[, position])`` items. Never raises on bad input.

    With a position, every row it yields carries it as ``_pos`` (the lake uses it to resume).
    ``fast``: records the screen cleared are offered to the vectorised path first (``ingest.fastpath``);
    it takes the ones whose shape it covers and the Python parsers take every other record.
    """
    now = now or dt.datetime.now(dt.UTC)
    out = Batch()
    if fmt != "auto":
        sources.get(fmt)  # unknown format names are a usage error, raised before reading
    rows: list[tuple[bytes, str] | tuple[bytes, str, int]] = list(items)
    # One vectorised screen per chunk: only records it flags go through the (slow) redaction walk.
    flags = screen([b"" if len(r[0]) > MAX_RECORD_BYTES else r[0] for r in rows])
    fast_part = _fast_rows(rows, flags, fmt, now) if fast else None
    taken = fast_part[0] if fast_part is not None else None
    for k, (item, may_hold_secret) in enumerate(zip(rows, flags, strict=True)):
        out.read += 1
        if taken is not None and taken[k]:
            continue
        raw, origin = item[0], item[1]
        pos = item[2] if len(item) == 3 else None
        ne, nd = len(out._events), len(out.dead)
        _one(raw, origin, fmt, now, out, may_hold_secret)
        if taken is not None:
            out._order.extend([k] * (len(out._events) - ne))
        if pos is not None:
            for r in out._events[ne:]:
                r["_pos"] = pos
            for r in out.dead[nd:]:
                r["_pos"] = pos
    if fast_part is not None:  # attached last: the Python path above appends to a plain list
        out._fast.append(fast_part[1])
    return out


def _fast_rows(rows: list[tuple[bytes, str] | tuple[bytes, str, int]], flags: list[bool], fmt: str,
               now: dt.datetime) -> tuple[list[bool], tuple[pa.Array, pa.Table]] | None:
    """Give the vectorised path the records the screen cleared: which records it took, and their rows
    (record order, table)."""
    if fmt != "auto" and fmt not in fastpath.FORMATS:
        return None
    cand = [k for k, f in enumerate(flags) if not f and len(rows[k][0]) <= MAX_RECORD_BYTES]
    got = fastpath.parse([rows[k][0] for k in cand], fmt)
    if got is None:
        return None
    order = [cand[i] for i in got.index.to_pylist()]
    collector = {
        "ingested_at": pa.array([now] * len(order), SCHEMA.field("ingested_at").type),
        "origin": pa.array([rows[k][1] for k in order], pa.string()),
        "raw": pa.array([rows[k][0] for k in order], pa.binary()).cast(pa.string()),  # ASCII: decodes as is
    }
    cols = [got.table[n] if n in got.table.column_names else collector[n] for n in SCHEMA.names]
    full = pa.Table.from_arrays(cols, schema=SCHEMA).append_column(
        "_pos", pa.array([rows[k][2] if len(rows[k]) == 3 else None for k in order], pa.int64()))
    taken = [False] * len(rows)
    for k in order:
        taken[k] = True
    return taken, (pa.array(order, pa.int64()), full)


def _one(raw: bytes, origin: str, fmt: str, now: dt.datetime, out: Batch, may_hold_secret: bool = True) -> None:
    if len(raw) > MAX_RECORD_BYTES:
        out.dead.append(dead_row(raw, origin, f"record too large: {len(raw)} bytes > {MAX_RECORD_BYTES}", now))
        return
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        out.dead.append(dead_row(raw, origin, f"invalid JSON: {e}", now))
        return
    parse_record(rec, raw, origin, fmt, now, out, may_hold_secret)


def to_tables(batch: Batch) -> tuple[pa.Table, pa.Table]:
    """Arrow tables for a batch; rows a parser got wrong go to the dead-letter instead."""
    events, dead, _, _ = to_tables_with_positions(batch)
    return events, dead


def to_tables_with_positions(batch: Batch) -> tuple[pa.Table, pa.Table, pa.Array, pa.Array]:
    """``to_tables`` plus each row's ``_pos`` (null where the items carried no position).

    Rows stay in record order (the lake keeps the first row of a repeated ``event_id``), fast-path
    rows included.
    """
    et, dt_, ev_pos, dead_pos, ix = _unordered(batch)
    if ix is not None:
        et, ev_pos = et.take(ix).combine_chunks(), ev_pos.take(ix)  # sort_indices is stable
    return et, dt_, ev_pos, dead_pos


def to_lake_tables(batch: Batch) -> tuple[pa.Table, pa.Table, pa.Array, pa.Array, int]:
    """The chunk as ``Lake.commit`` writes it, reordered once: the first row of each ``event_id`` in record order,
    sorted by actor then time (stable), with its ``_pos``; the dead-letter and its positions; and how many
    repeated rows were left out. ``Lake.commit(presorted=True)`` writes the rows as they are (they used to be put
    in record order here, then deduplicated and sorted there: two copies of every column, ``raw`` included)."""
    et, dt_, ev_pos, dead_pos, ix = _unordered(batch)
    n = et.num_rows
    rec = ix if ix is not None else pa.array(range(n), pa.int64())  # record order
    keep = first_rows(et["event_id"].take(rec))
    if len(keep) != n:
        rec = rec.take(keep)
    keys = pa.table({"a": et["actor_id"].take(rec), "t": et["time"].take(rec)})
    final = rec.take(pc.sort_indices(keys, sort_keys=[("a", "ascending"), ("t", "ascending")]))
    return et.take(final), dt_, ev_pos.take(final), dead_pos, n - len(keep)


def _unordered(batch: Batch) -> tuple[pa.Table, pa.Table, pa.Array, pa.Array, pa.Array | None]:
    """The tables, Python-path rows first then fast-path ones, and the permutation to record order (None: they are
    in record order already)."""
    events, order = batch._events, batch._order
    et, good = _valid_table(batch, events)
    if len(good) != len(events) and order:
        keep = {id(r) for r in good}
        order = [o for o, r in zip(order, events, strict=True) if id(r) in keep]
    batch._events, batch._order = good, order if batch._fast else []
    ev_pos: pa.Array = pa.array([r.get("_pos") for r in good], pa.int64())
    ix = None
    if batch._fast:
        fast = [t for _, t in batch._fast]
        et = pa.concat_tables([et] + [t.select(SCHEMA.names) for t in fast])
        ev_pos = pa.concat_arrays([ev_pos] + [t["_pos"].combine_chunks() if "_pos" in t.column_names
                                              else pa.nulls(t.num_rows, pa.int64()) for t in fast])
        ix = pc.sort_indices(pa.concat_arrays([pa.array(order, pa.int64())] + [o for o, _ in batch._fast]))
    dt_ = pa.Table.from_pylist(batch.dead, schema=DEAD_LETTER_SCHEMA)
    return et, dt_, ev_pos, pa.array([r.get("_pos") for r in batch.dead], pa.int64()), ix


def _valid_table(batch: Batch, events: list[dict[str, Any]]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The Python path's rows as a table; rows Arrow refuses are dead-lettered with their position."""
    try:
        return pa.Table.from_pylist(events, schema=SCHEMA), events
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    good: list[dict[str, Any]] = []
    for r in events:
        try:
            pa.Table.from_pylist([r], schema=SCHEMA)
            good.append(r)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raw = (r.get("raw") or "").encode()
            d = dead_row(raw, str(r.get("origin")), f"{r.get('format')}: invalid canonical row: {e}",
                         dt.datetime.now(dt.UTC), r.get("format"))
            if "_pos" in r:
                d["_pos"] = r["_pos"]
            batch.dead.append(d)
    return pa.Table.from_pylist(good, schema=SCHEMA), good


assert set(_REQUIRED_FROM_PARSER) <= set(FIELD_NAMES)
