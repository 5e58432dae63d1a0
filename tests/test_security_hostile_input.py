"""Hostile input: no crash, no hang, bounded memory, every record accounted for.

Through ``ingest.normalize.normalize`` (pure) and ``ingest file`` (the collector). A record is
accounted for when its origin appears in the events or in the dead-letter, and ``read`` counts it.
With ``RELIABILITY_FUZZ_OUT`` set, the number of fuzzed records per parser is written there.
"""

from __future__ import annotations

import collections
import os
import random
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import sources
from ingest.collect_files import ingest_files
from ingest.lake import Lake
from ingest.normalize import MAX_RECORD_BYTES, normalize, to_tables
from tests.conftest import REPO, lake_counts

FIXTURES = REPO / "tests" / "fixtures" / "formats"
FUZZED: collections.Counter[str] = collections.Counter()

pytestmark = pytest.mark.timeout(180)


def _accounted(items: list[tuple[bytes, str]], fmt: str = "auto") -> None:
    """Normalise ``items``; both Arrow tables build; every origin lands in events or dead-letter."""
    b = normalize(items, fmt=fmt)
    assert b.read == len(items)
    ev, dl = to_tables(b)
    landed = {o.split("#", 1)[0] for o in ev.column("origin").to_pylist() + dl.column("origin").to_pylist()}
    assert landed == {o for _, o in items}
    for r in dl.column("raw").to_pylist():
        assert r is None or len(r.encode()) <= 4 * (64 << 10)  # dead-letter raw stays bounded


DEEP = b"[" * 10_000 + b"]" * 10_000
HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "arbitrary bytes": bytes(range(256)) * 4,
    "nul bytes": b"\x00" * 100,
    "truncated object": b'{"id": "x", "time": 17958598800',
    "truncated string": b'{"id": "x',
    "deep array 10k": DEEP,
    "deep object 10k": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "deep object 200 (parses)": b'{"a":' * 200 + b"1" + b"}" * 200,
    "huge string 900 KiB": b'{"msg": "' + b"A" * (900 << 10) + b'"}',
    "huge array 200k": b'{"Records": [' + b",".join([b"1"] * 200_000) + b"]}",
    "invalid utf-8": b'{"id": "\xff\xfe\xc3\x28", "time": 1}',
    "lone surrogate escape": b'{"decision_id": "\\ud800", "timestamp": "2026-11-28T10:00:00Z", "path": "a/b"}',
    "NaN literal": b'{"id": "x", "time": NaN}',
    "Infinity literal": b'{"time": Infinity, "type": "LOGIN", "id": "y"}',
    "number too big": b'{"id": "k", "time": 1' + b"0" * 400 + b', "type": "LOGIN", "realmId": "r"}',
    "scalar": b"42",
    "string": b'"hello"',
    "null": b"null",
    "array of junk": b'[1, "a", null, {}]',
    "keycloak year 99999": orjson.dumps({"id": "k1", "time": 3_093_527_980_800_000_000, "type": "LOGIN",
                                          "realmId": "corp", "userId": "u", "clientId": "c"}),
    "keycloak negative time": orjson.dumps({"id": "k2", "time": -62_135_596_800_001, "type": "LOGIN",
                                             "realmId": "corp", "userId": "u", "clientId": "c"}),
    "opa time year 0": orjson.dumps({"decision_id": "d", "path": "a/b", "timestamp": "0000-01-01T00:00:00Z",
                                      "input": {}, "result": True}),
    "opa time garbage": orjson.dumps({"decision_id": "d2", "path": "a/b", "timestamp": "yesterday",
                                       "input": {}, "result": True}),
    "wrong types everywhere": orjson.dumps({"decision_id": ["x"], "path": {"a": 1}, "timestamp": [],
                                             "input": "str", "result": {"allow": "maybe"}}),
    "cloudtrail records not a list": b'{"Records": {"eventID": "x"}}',
    "cloudtrail records of junk": b'{"Records": [1, null, "x", {"eventVersion": 5}]}',
    "oversized 1 MiB + 1": b'{"msg": "' + b"B" * MAX_RECORD_BYTES + b'"}',
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_record_through_normalize(name):
    _accounted([(HOSTILE[name], f"t:{name}")])
    if len(HOSTILE[name]) > 100_000:
        return
    for fmt in sorted(sources.PARSERS):  # and forced through every parser
        _accounted([(HOSTILE[name], f"t:{name}")], fmt=fmt)


def test_depth_10k_is_dead_lettered_not_crashing():
    b = normalize([(DEEP, "t:deep")])
    assert not b.events and len(b.dead) == 1
    assert b.dead[0]["reason"].startswith("invalid JSON")


def test_oversized_record_is_dead_lettered_with_reason_and_not_loaded(tmp_path):
    big = orjson.dumps({"id": "kc-big", "time": 1795859880000, "type": "LOGIN", "realmId": "corp",
                        "userId": "u", "clientId": "c", "details": {"note": "C" * (MAX_RECORD_BYTES + 10)}})
    (tmp_path / "big.jsonl").write_bytes(big + b"\n")
    lake = Lake(tmp_path / "lake")
    s = ingest_files([tmp_path / "big.jsonl"], lake)
    assert (s.read, s.events, s.dead_letter) == (1, 0, 1)
    import duckdb

    reason, raw_len, size = duckdb.execute(
        "SELECT reason, length(raw), raw_size FROM read_parquet($f)", {"f": lake.files("dead_letter")}).fetchone()
    assert reason.startswith("record too large") and size == len(big) and raw_len <= 64 << 10
    assert lake.files("events") == []


# -- property-based: every parser, records mutated from its own fixtures --------------------
def _templates() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(sources.PARSERS):
        recs = []
        d = FIXTURES / name
        for f in sorted(d.glob("*.jsonl")) if d.exists() else []:
            for line in f.read_bytes().splitlines():
                try:
                    r = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(r, dict):
                    recs.append(r)
        if not recs:
            from tests.test_reliability_corpus import _keycloak, _mcp, _opa

            recs = [m(1) for m in {"keycloak": (_keycloak,), "opa": (_opa,), "mcp": (_mcp,)}.get(name, ())]
        if recs:
            out[name] = recs
    return out


TEMPLATES = _templates()
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "9999-99-99T99:99:99Z", "2026-11-28T10:00:00Z", "eyJhbGciOi.x.y", "\u0000", "💥" * 10]),
)
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12)


def _paths(v: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v[:5]):
            out += _paths(x, prefix + (i,))
    return out


def _mutate(rec: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    rec = orjson.loads(orjson.dumps(rec))
    cur = rec
    for k in path[:-1]:
        cur = cur[k]
    if delete and isinstance(cur, dict):
        cur.pop(path[-1], None)
    else:
        cur[path[-1]] = value
    return rec


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_parser_with_mutated_fixture_records(name, data):
    tpl = data.draw(st.sampled_from(TEMPLATES[name]))
    recs = []
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(tpl)[1:] or [()]))
        tpl2 = _mutate(tpl, path, data.draw(_json), data.draw(st.booleans()))
        recs.append(tpl2)
    items = [(orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS), f"fz:{i}") for i, r in enumerate(recs)]
    _accounted(items, fmt=data.draw(st.sampled_from(["auto", name])))
    FUZZED[name] += len(items)


def test_zz_report_fuzz_counts():
    """Runs last in this module: the per-parser counts of the fuzz run above."""
    out = os.environ.get("RELIABILITY_FUZZ_OUT")
    if out and FUZZED:
        Path(out).write_bytes(orjson.dumps(dict(sorted(FUZZED.items())), option=orjson.OPT_INDENT_2))
    assert all(FUZZED[n] > 0 for n in TEMPLATES) or not FUZZED


# -- a 50 MB hostile file through the collector: bounded memory ------------------------------
MEMORY_BOUND = 200 << 20  # Python-heap peak (tracemalloc) for a 50 MB hostile file: 4x its size (measured 83 MiB)


def _hostile_file(path: Path, size: int = 50 << 20) -> int:
    rnd = random.Random(7)
    kinds = [v for k, v in HOSTILE.items() if b"\n" not in v and v.strip()]
    n = 0
    with open(path, "wb") as f:
        f.write(b'{"first": "valid json line so the file streams as JSONL"}\n')
        n += 1
        written = 0
        while written < size:
            k = rnd.random()
            if k < 0.02:
                line = b'{"msg": "' + b"Z" * (2 << 20) + b'"}'  # oversized
            elif k < 0.5:
                line = rnd.choice(kinds)
            else:
                line = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 400))).replace(b"\n", b" ")
            if not line.strip():
                line = b"x"
            f.write(line + b"\n")
            written += len(line) + 1
            n += 1
    return n


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_50mb_hostile_file_bounded_memory_every_record_accounted(tmp_path):
    p = tmp_path / "hostile.jsonl"
    n = _hostile_file(p)
    lake = Lake(tmp_path / "lake")
    tracemalloc.start()
    try:
        s = ingest_files([p], lake, chunk_records=5_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    c = lake_counts(lake)
    assert s.read == n
    # every line lands once: in events or dead-letter, or counted as a duplicate event_id
    import duckdb

    f_ev, f_dl = lake.files("events"), lake.files("dead_letter")
    origins = set()
    for files in (f_ev, f_dl):
        if files:
            origins |= {r[0].split("#", 1)[0] for r in duckdb.execute(
                "SELECT DISTINCT origin FROM read_parquet($f)", {"f": files}).fetchall()}
    # repeated hostile records that parse share an event_id: dedup skips them, and counts them
    assert len(origins) + s.duplicates == n
    assert s.events + s.dead_letter + s.duplicates >= n
    assert c["events"] == c["distinct"]
    print(f"50 MB hostile file: {n} records, tracemalloc peak {peak / 2**20:.0f} MiB")
    assert peak < MEMORY_BOUND
