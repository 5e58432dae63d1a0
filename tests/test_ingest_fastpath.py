"""The vectorised parse path (``ingest.fastpath``) gives exactly the Python parsers' rows.

Every input is normalised twice, ``fast=False`` (the Python parsers: the reference) and ``fast=True``,
and the Arrow tables (events and dead-letter, every column including ``raw``, ``attributes``, times,
lists, ``origin``), the row positions (``_pos``) and the dict rows ``Batch.events`` hands out must be
the same, row by row and in order. Corpora: a generated 10k scenario, every fixture under
``tests/fixtures`` (with the fast path's minimum chunk size lifted so that small files take it
too), and targeted records it must hand back (secrets, odd types, invalid JSON, oversized records).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import ingest.fastpath as fastpath
from ingest.collect_files import expand, records
from ingest.normalize import MAX_RECORD_BYTES, Batch, normalize, to_tables_with_positions
from ingest.redact import screen

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
FIXTURES = Path(__file__).parent / "fixtures"
Item = tuple[bytes, str, int]


@pytest.fixture(scope="module")
def corpus_10k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sample_data.generator import generate

    out = tmp_path_factory.mktemp("fastpath") / "g10k"
    generate(out, seed=7, scale=10_000)
    return out


def _taken(batch: Batch) -> set[int]:
    """Record numbers (in the chunk) whose rows came from the fast path."""
    return {k for order, _ in batch._fast for k in order.to_pylist()}


def _diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            cols = {k: (x.get(k), y.get(k)) for k in set(x) | set(y) if x.get(k) != y.get(k)}
            return f"row {i} ({x.get('origin')}): {cols}"
    return f"{len(a)} rows vs {len(b)} rows"


def assert_same(items: Sequence[tuple[bytes, str] | Item], fmt: str = "auto") -> set[int]:
    """Both paths on ``items``; returns the records the fast path took."""
    ref = normalize(items, fmt=fmt, now=NOW, fast=False)
    got = normalize(items, fmt=fmt, now=NOW, fast=True)
    taken = _taken(got)
    assert not ref._fast
    ref_dicts, got_dicts = normalize(items, fmt=fmt, now=NOW, fast=False), normalize(items, fmt=fmt, now=NOW)
    e1, d1, p1, q1 = to_tables_with_positions(ref)
    e2, d2, p2, q2 = to_tables_with_positions(got)
    assert e1.schema == e2.schema and d1.schema == d2.schema
    r1, r2 = e1.to_pylist(), e2.to_pylist()
    assert r1 == r2, _diff(r1, r2)
    assert e1.equals(e2)
    assert d1.to_pylist() == d2.to_pylist(), _diff(d1.to_pylist(), d2.to_pylist())
    assert p1.to_pylist() == p2.to_pylist() and q1.to_pylist() == q2.to_pylist()
    # the dict rows callers of normalize() read (Batch.events), fast rows turned into dicts
    assert ref_dicts.events == got_dicts.events, _diff(ref_dicts.events, got_dicts.events)
    assert ref_dicts.dead == got_dicts.dead and ref.read == got.read == len(items)
    return taken


def test_generated_10k_corpus_both_ways(corpus_10k: Path) -> None:
    share: dict[str, float] = {}
    for path in expand([corpus_10k]):
        items = list(records(path))
        taken = assert_same(items)
        share[path.stem] = len(taken) / len(items)
    # the fast path really ran: it took nearly every MCP, OPA and Keycloak record (all but the malformed ones)
    assert share["mcp"] > 0.99 and share["opa"] > 0.99 and share["idp"] > 0.99, share


def test_generated_corpus_as_one_mixed_chunk(corpus_10k: Path) -> None:
    """All files in one chunk, interleaved: rows keep record order across the two paths."""
    per_file = [list(records(p)) for p in expand([corpus_10k])]
    mixed: list[Item] = []
    for i in range(max(len(x) for x in per_file)):
        mixed.extend(x[i] for x in per_file if i < len(x))
    mixed = [(raw, origin, n) for n, (raw, origin, _) in enumerate(mixed, 1)]
    assert len(assert_same(mixed)) > 6000
    assert len(assert_same([(raw, origin) for raw, origin, _ in mixed[:3000]])) > 1000  # Kafka-like: no positions


@pytest.mark.parametrize("path", expand([FIXTURES]), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "_MIN_RECORDS", 1)
    assert_same(list(records(path)))


def test_fixtures_take_the_fast_path_when_their_shape_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "_MIN_RECORDS", 1)
    items = list(records(FIXTURES / "formats" / "opa" / "decisions.jsonl"))
    items += list(records(FIXTURES / "formats" / "mcp" / "gateway.jsonl"))
    assert assert_same(items)


@pytest.mark.parametrize("fmt", ["mcp", "opa", "keycloak"])
def test_forced_format_both_ways(corpus_10k: Path, fmt: str) -> None:
    for name in ("mcp", "opa"):
        items = list(records(corpus_10k / f"{name}.jsonl"))[:500]
        taken = assert_same(items, fmt=fmt)
        assert bool(taken) == (fmt == name)


# -- targeted records, each in a chunk of ordinary ones (so the fast path is running) -------------------

def _mcp(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "log_id": f"log-{i:05d}", "timestamp": f"2026-11-02T08:{i // 60 % 60:02d}:{i % 60:02d}.{i:03d}Z",
        "server": "kb-mcp", "session_id": "mcp-a5ea7ce5f3c2",
        "peer": {"ip": "10.20.14.12", "user_agent": "agentkit/1.4", "spiffe_id": "spiffe://corp.example/agent/coder"},
        "auth": {"sub": "frank@corp.example", "act": {"sub": "spiffe://corp.example/agent/coder"},
                 "jti": "jti-8c633405", "scope": "ci:run docs:read", "exp": 1793607313},
        "request": {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
            "name": "docs.read", "arguments": {"ref": "page-1004"},
            "_meta": {"traceparent": "00-1881c43581b17cf2d756a3bbafe46643-3975b596412d3fe9-01",
                      "task_id": "task-1", "resource": "docs/page-1004", "resource_sensitivity": "low"}}},
        "response": {"jsonrpc": "2.0", "id": i, "result": {"content": [{"type": "text", "text": "ok"}],
                                                           "isError": False}},
    }
    rec.update(over)
    return rec


def _opa(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "decision_id": f"dec-{i:05d}", "path": "agents/authz/allow",
        "timestamp": f"2026-11-02T08:00:{i % 60:02d}.320298716Z",
        "labels": {"id": "opa-3", "version": "0.70.0"}, "bundles": {"authz": {"revision": "policy-v1"}},
        "input": {"subject": {"id": "spiffe://corp.example/agent/coder", "type": "agent",
                              "on_behalf_of": "frank@corp.example", "token_jti": "jti-8c633405",
                              "scopes": ["ci:run", "docs:read"], "workload": "spiffe://corp.example/agent/coder"},
                  "action": "tools/call", "tool": "docs.read", "resource": {"id": "docs/page-1", "sensitivity": "low"},
                  "task_id": "task-1", "trace_id": "1881c43581b17cf2d756a3bbafe46643", "span_id": "3975b596412d3fe9"},
        "result": {"allow": i % 3 != 0, "reasons": ["scope docs:read grants docs.read"]},
        "metrics": {"timer_server_handler_ns": 255556}, "req_id": i,
    }
    rec.update(over)
    return rec


def _kc(i: int, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": f"kc-{i:05d}", "time": 1796047200000 + i * 1001, "type": "TOKEN_EXCHANGE", "realmId": "corp",
        "clientId": "agent-research", "userId": "alice@corp.example", "ipAddress": "10.20.1.11",
        "details": {"token_id": f"jti-{i}", "subject_token_id": "jti-alice", "scope": "tickets:read",
                    "audience": "mcp-gateway", "actor": "spiffe://corp.example/agent/research",
                    "act_chain": "alice@corp.example spiffe://corp.example/agent/research",
                    "expires_at": "2026-11-30T14:10:00Z", "task_id": "task-0303"},
    }
    rec.update(over)
    return rec


def _chunk(odd: Sequence[bytes | dict[str, Any]], n: int = 200) -> list[Item]:
    """``n`` ordinary MCP, OPA and Keycloak records with the ``odd`` ones spread among them."""
    raws = [orjson.dumps((_mcp, _opa, _kc)[i % 3](i)) for i in range(n)]
    for j, rec in enumerate(odd):
        raws.insert(1 + j * (n // max(1, len(odd))), rec if isinstance(rec, bytes) else orjson.dumps(rec))
    return [(raw, f"test:{n}", n) for n, raw in enumerate(raws, 1)]


def test_ordinary_records_take_the_fast_path() -> None:
    items = _chunk([])
    assert assert_same(items) == set(range(len(items)))


def test_a_record_with_a_secret_goes_through_redaction() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmcmFuayJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    odd = [
        _mcp(1001, auth={"sub": "frank@corp.example", "token": f"Bearer {jwt}"}),  # fingerprinted credential
        _mcp(1002, server=jwt),
        _opa(1003, input={"subject": {"id": "svc", "password": "hunter22hunter"}, "action": "read"}),
    ]
    items = _chunk(odd)
    taken = assert_same(items)
    secret_rows = {k for k, (raw, _, _) in enumerate(items) if b"eyJ" in raw or b"hunter22" in raw}
    assert len(secret_rows) == 3 and not secret_rows & taken
    events, _, _, _ = to_tables_with_positions(normalize(items, now=NOW))
    for raw in events.column("raw").to_pylist():
        assert "hunter22" not in raw and jwt not in raw
    assert jwt not in str(events.to_pylist())


# Shapes the fast path does take, beyond what the generator writes: each must be taken and come out the same.
VARIETY: list[dict[str, Any]] = [
    _mcp(101, request={"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "kb://a/b"}}),
    _mcp(102, request={"jsonrpc": "2.0", "method": "prompts/get", "params": {"name": "p", "_meta": {}}}),
    _mcp(103, request={"jsonrpc": "2.0", "id": 9, "method": "tools/list"}, response={"result": {"tools": []}}),
    _mcp(104, response={"error": {"code": 403, "message": "nope"}}),
    _mcp(105, response={"error": {"code": -32000, "message": "Permission Denied by policy"}}),
    _mcp(106, response={"error": {"message": ""}}),
    _mcp(107, response={"result": {"isError": True, "content": [{"type": "text"}, {"text": ""}, {"text": "boom"}]}}),
    _mcp(108, response={"result": {"isError": True}}),
    _mcp(109, auth={"sub": "alice@corp.example", "act": {"sub": "spiffe://corp.example/agent/a",
                                                         "act": {"sub": "spiffe://corp.example/spire/x"}},
                    "jti": "j1", "scp": "a,b  c", "iss": "https://idp", "aud": "mcp", "client_id": "cli"}),
    _mcp(110, auth={"sub": "system:serviceaccount:ns:sa", "act": {}, "scope": ""}),
    _mcp(111, auth={"act": {"sub": "bot"}}, peer={"workload": "pod/x"}),
    _mcp(112, auth={"sub": "svc@x", "act": {"sub": "svc@x"}, "jti": "j", "exp": 0}),
    _mcp(113, auth=None, peer=None, response=None),
    _mcp(114, request={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": {
        "traceparent": " 00-ABCDEF0123456789ABCDEF0123456789-0123456789ABCDEF-01 "}}}),
    _mcp(115, request={"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "t", "_meta": {
        "traceparent": "bogus", "resource": ""}}}, server="", session_id=""),
    _mcp(116, timestamp="2026-11-02T08:00:00Z"),
    _mcp(117, timestamp="2026-11-02T08:00:00.1Z"),
    _opa(201, result={"allow": False, "reasons": ["a", "", "b"]}),
    _opa(202, result={"allow": True, "reasons": []}, bundles={}, revision="r-top"),
    _opa(203, requested_by="[::1]:59943", trace_id="t-top", span_id="s-top",
         input={"subject": {"sub": "alice@corp.example", "type": "robot", "delegation_chain": ["x", "", "y"],
                            "jti": "j2", "scope": "a, b"}, "path": "v1/data/x", "method": "GET",
                "resource_sensitivity": "high", "parent_span_id": "p", "session_id": "s"}),
    _opa(204, requested_by="10.0.0.1:80", query="data.x.allow", path=None,
         input={"subject": {"name": "system:serviceaccount:a:b", "act_chain": ["p", "q"]}, "resource": {}}),
    _opa(205, requested_by="a:b:c", input={"subject": {}}, labels={}, metrics=None, erased=["/input/x"],
         masked=[], req_id=0),
    _opa(206, input={"subject": {"id": "spiffe://corp.example/spire/agent/x", "on_behalf_of": "bob"}},
         bundles={"a": {"revision": ""}, "b": {"revision": "rb"}, "c": "x"}),
    _opa(207, timestamp="2026-11-02T08:00:00Z", requested_by="", path=""),
    _kc(301, type="CLIENT_LOGIN", clientId="agent-x", userId="service-account-x", details={"grant_type": "cc"}),
    _kc(302, type="CLIENT_LOGIN", clientId="svc", userId=None, details=None),
    _kc(303, type="LOGIN_ERROR", userId=None, error="invalid_user_credentials", details={"username": "bob"}),
    _kc(304, type="LOGIN", sessionId="sess-1", details={"auth_method": "openid-connect"}),
    _kc(305, type="LOGOUT", sessionId="sess-1", details={}),
    _kc(306, type="LOGOUT", sessionId="sess-1", details={"token_id": "t"}),
    _kc(307, type="REFRESH_TOKEN", details={"token_id": "t2", "refresh_token_id": "r1", "expires_at": ""}),
    _kc(308, type="CODE_TO_TOKEN", sessionId="sess-2", details={"token_id": "t3", "scope": "openid,profile email",
                                                                  "expires_at": "2026-11-30T14:10:00.123456789Z"}),
    _kc(309, type="REVOKE_GRANT", clientId="", details={"revoked_by": "admin"}),
    _kc(310, type="UPDATE_PROFILE", realmId=None, realmName="corp", clientId=None),
    _kc(311, type="TOKEN_EXCHANGE_ERROR", error="access_denied", details={"actor": "alice@corp.example"}),
    _kc(312, type="INTROSPECT_TOKEN", userId="system:serviceaccount:ns:sa", details={"token_id": "t4"}),
    _kc(313, type="CLIENT_LOGIN", clientId="spiffe://corp.example/agent/a", userId="u"),
    _kc(314, type="LOGIN_ERROR", userId=None, clientId="portal", details={}),
    _kc(315, type="LOGIN", userId="4c1f2a9e-uuid", details={}),
    _kc(316, type="REFRESH_TOKEN", userId=None, clientId="portal", details={"token_id": "t5"}),
    _kc(317, type="LOGOUT", userId=None, clientId=None, details={"username": "spiffe://corp.example/x"}),
]


def test_shapes_the_fast_path_takes() -> None:
    items = _chunk(VARIETY)
    taken = assert_same(items)
    cleared = {k for k, flagged in enumerate(screen([raw for raw, _, _ in items])) if not flagged}
    assert len(cleared) >= len(items) - 2 and taken == cleared, sorted(cleared - taken)


@pytest.mark.parametrize("odd", [
    _mcp(1, request={"jsonrpc": "2.0", "id": "req-1", "method": "tools/call"}),  # a string id
    _mcp(2, auth={"sub": 42, "jti": "j"}),  # a number where a string is expected
    _mcp(3, auth={"sub": "a@b.example", "jti": "j", "exp": 1.5}),  # a float
    _mcp(4, auth={"sub": "a@b.example", "jti": "j", "exp": "2026-11-02T09:00:00Z"}),  # a text expiry
    _mcp(5, auth={"sub": "a", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d"}}}}),  # deep act chain
    _mcp(6, response={}),  # an empty response
    _mcp(7, response={"error": {"code": 403, "message": "Forbidden: insufficient scope"}}),
    _mcp(8, response={"result": {"isError": True, "content": [{"type": "text", "text": "x" * 600}]}}),
    _mcp(9, timestamp="2026-11-02T08:00:00+01:00"),  # an offset the fast path does not read
    _mcp(10, timestamp="2026-02-30T08:00:00Z"),  # no such day: dead-lettered
    _mcp(11, headers={"authorization": "x"}),  # an unknown top-level key
    _mcp(12, request={"jsonrpc": "2.0", "id": 1}),  # no method: dead-lettered
    _mcp(13, log_id=""),  # no id of its own: content hash
    _mcp(14, timestamp=None),  # missing required field: dead-lettered
    _mcp(15, peer="10.0.0.1"),  # a string where an object is expected
    _mcp(16, server="a\"quoted\\server"),  # escapes
    _opa(17, input={"subject": "alice@corp.example", "action": "read"}),  # a subject that is a string
    _opa(18, result=True),
    _opa(19, result={"allowed": False}),
    _opa(20, error={"message": "eval failed"}),
    _opa(21, timestamp=1793607313),  # epoch seconds
    _opa(22, decision_id=7),
    _opa(23, input={"subject": {"id": "x", "scopes": "a,b c"}, "resource": "str-resource"}),
    _opa(24, metrics={"timer": 0.25}),
    _opa(25, result={"allow": True, "reasons": [1, "two"]}),
    _opa(26, bundles={"a": {"revision": "r1"}, "b": {"revision": 2}}),
    _kc(27, time="2026-11-30T14:00:00Z"),  # a text time
    _kc(28, time=1796047200),  # seconds, not milliseconds
    _kc(29, details={"act_chain": ["a", "b"]}),  # a list where the fast path reads text
    _kc(30, type="login"),  # not a Keycloak type: no parser
    _kc(31, realmId=None),  # realmId present but null still sniffs
    _kc(32, details={"expires_at": "2026-11-30T15:10:00+01:00"}),  # an offset
    _kc(33, details={"expires_at": "2301-01-01T00:00:00Z"}),  # out of range: absent
    _kc(34, id=None),  # no id of its own: content hash
    _kc(35, time=True),
], ids=lambda r: str(r.get("log_id") or r.get("decision_id") or r.get("id")))
def test_odd_records_both_ways(odd: dict[str, Any]) -> None:
    items = _chunk([odd, odd])
    taken = assert_same(items)
    assert len(taken) >= 190  # the ordinary records still took the fast path


@pytest.mark.parametrize("odd", [
    b'{"log_id":"x","timestamp":"2026-11-02T08:00:00Z"',  # invalid JSON
    b'<14>Nov  2 08:00:00 gateway audit: connection reset',
    b'{"log_id":"d","log_id":"e","timestamp":"2026-11-02T08:00:00Z","request":{"method":"tools/call"}}',  # duplicate key
    b'{"log_id": "w", "timestamp": "2026-11-02T08:00:00Z", "request": {"method": "tools/call"}}',  # whitespace
    b'[1,2,3]', b'"text"', b'{}',
    b'{"log_id":"big","timestamp":"2026-11-02T08:00:00Z","request":{"method":"tools/call"},"x":"'
    + b"a" * (MAX_RECORD_BYTES + 10) + b'"}',  # oversized
    '{"log_id":"u","timestamp":"2026-11-02T08:00:00Z","server":"caf\u00e9","request":{"method":"m"}}'.encode(),
], ids=["truncated", "syslog", "duplicate-key", "whitespace", "array", "string", "empty", "oversized", "non-ascii"])
def test_invalid_and_oversized_records_are_dead_lettered_exactly(odd: bytes) -> None:
    items = _chunk([odd])
    taken = assert_same(items)
    k = next(k for k, (raw, _, _) in enumerate(items) if raw == odd)
    assert k not in taken


def test_a_repeated_event_id_keeps_the_first_record() -> None:
    """A Python-path row before a fast-path row with the same event_id stays first (the lake keeps it)."""
    first = _mcp(1000, request={"jsonrpc": "2.0", "id": "str-id", "method": "tools/call"})  # Python path
    items = _chunk([first, _mcp(1000)])
    taken = assert_same(items)
    events, _, pos, _ = to_tables_with_positions(normalize(items, now=NOW))
    ids = events.column("event_id").to_pylist()
    at = [i for i, e in enumerate(ids) if e == "mcp:log-01000"]
    assert len(at) == 2 and len(taken) == len(items) - 1  # the second one took the fast path
    assert pos.to_pylist() == sorted(pos.to_pylist())  # rows in record order
    assert '"jsonrpc_id":"str-id"' in events.column("attributes")[at[0]].as_py()


def test_every_record_lands_once_with_its_position() -> None:
    items = _chunk([b"not json", _mcp(1, timestamp=None), _opa(2, result=True)])
    batch = normalize(items, now=NOW)
    events, dead, ev_pos, dead_pos = to_tables_with_positions(batch)
    assert events.num_rows + dead.num_rows == len(items)
    assert sorted(ev_pos.to_pylist() + dead_pos.to_pylist()) == [p for _, _, p in items]
    want = pa.array([f"test:{p}" for p in ev_pos.to_pylist()])
    assert pc.all(pc.equal(events.column("origin"), want)).as_py()


def test_many_odd_typed_records_in_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode failures: each odd record goes back alone, or its block when Arrow names no row."""
    monkeypatch.setattr(fastpath, "_BLOCK", 64)
    odd: list[dict[str, Any]] = []
    for i in range(30):
        odd.append(_mcp(2000 + i, request={"jsonrpc": "2.0", "id": f"s{i}", "method": "tools/call"}))
        odd.append(_opa(3000 + i, input={"subject": {"id": 5}}))
    odd.append(_mcp(4000, auth={"sub": "a@b.example", "jti": "j", "exp": 18446744073709551615}))  # no row named
    items = _chunk(odd, n=3000)
    taken = assert_same(items)
    assert len(taken) >= len(items) - len(odd) - 64, len(items) - len(taken)
