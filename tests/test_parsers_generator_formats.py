"""Parsers of the six formats the scenario generator writes: golden files, sniffing, robustness.

Golden files: every ``tests/fixtures/formats/<fmt>/*.jsonl`` (one record a line) or ``*.json``
(one document, e.g. a CloudTrail ``{"Records": [...]}`` file) is normalised with ``--format auto``
and compared with ``expected/<file stem>.json``. Regenerate with ``DP_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import sources
from ingest.events import FIELD_NAMES, fingerprint
from ingest.normalize import Batch, normalize, parse_record, to_tables

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
FORMATS = ("keycloak", "spire", "opa", "mcp", "cloudtrail", "vault")
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
UPDATE = os.environ.get("DP_UPDATE_GOLDEN") == "1"


def _inputs(fmt: str) -> list[Path]:
    d = FIXTURES / fmt
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".jsonl", ".json"))


def _items(path: Path) -> list[tuple[bytes, str]]:
    rel = path.relative_to(FIXTURES).as_posix()
    if path.suffix == ".json":
        return [(path.read_bytes(), f"file:{rel}:1")]
    return [
        (line, f"file:{rel}:{i}") for i, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()
    ]


def _records(fmt: str) -> list[Mapping[str, Any]]:
    """Every decoded fixture record of a format (envelopes as they are)."""
    return [orjson.loads(raw) for p in _inputs(fmt) for raw, _ in _items(p)]


ALL_RECORDS = {fmt: _records(fmt) for fmt in FORMATS}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v


def _golden(batch: Batch) -> dict[str, Any]:
    events = []
    for r in batch.events:
        row = {k: _jsonable(r[k]) for k in FIELD_NAMES if r.get(k) is not None and k != "ingested_at"}
        for k in ("attributes", "raw"):
            if k in row:
                row[k] = json.loads(row[k])
        events.append(row)
    dead = [
        {"origin": d["origin"], "format_hint": d["format_hint"], "reason": d["reason"]} for d in batch.dead
    ]
    return {"events": events, "dead": dead}


GOLDEN_CASES = [(fmt, p.name) for fmt in FORMATS for p in _inputs(fmt)]


@pytest.mark.parametrize(("fmt", "name"), GOLDEN_CASES)
def test_golden(fmt: str, name: str) -> None:
    path = FIXTURES / fmt / name
    batch = normalize(_items(path), now=NOW)
    to_tables(batch)
    got = _golden(batch)
    expected = FIXTURES / fmt / "expected" / (path.stem + ".json")
    text = json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE:
        expected.parent.mkdir(exist_ok=True)
        expected.write_text(text)
    assert expected.exists(), f"no golden file {expected}; run with DP_UPDATE_GOLDEN=1"
    assert json.loads(expected.read_text()) == got
    # every event and dead row was produced by this format's parser
    assert {e["format"] for e in got["events"]} <= {fmt}
    assert {d["format_hint"] for d in got["dead"]} <= {fmt}


def test_every_format_has_fixtures_events_and_rejections() -> None:
    for fmt in FORMATS:
        assert fmt in sources.PARSERS, fmt
        batch = Batch()
        for p in _inputs(fmt):
            batch.extend(normalize(_items(p), now=NOW))
        assert len(batch.events) >= 5, fmt
        assert batch.dead, f"{fmt}: fixtures should include records rejected for a reason"
        assert not [d["reason"] for d in batch.dead if "parser error" in d["reason"]]


# --- sniffing ---------------------------------------------------------------------------------


def _leaves(rec: Mapping[str, Any], parser_name: str) -> Iterator[Mapping[str, Any]]:
    p = sources.PARSERS[parser_name]
    parts = p.split(rec) if p.split is not None else None
    if parts is None:
        yield rec
    else:
        for sub in parts:
            if isinstance(sub, Mapping):
                yield sub


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixtures_sniffed_as_their_format_only(fmt: str) -> None:
    for rec in ALL_RECORDS[fmt]:
        for r in [rec, *_leaves(rec, fmt)]:
            claims = {name for name, p in sources.PARSERS.items() if p.sniff(r)}
            assert claims == {fmt}, (claims, str(r)[:200])
            assert sources.sniff(r) is sources.PARSERS[fmt]


FOREIGN: list[dict[str, Any]] = [
    # generic logrus JSON lines, including SPIRE's own non-issuance lines
    {"level": "info", "msg": "Starting Server APIs", "time": "2026-11-28T10:00:00Z"},
    {"level": "debug", "msg": "Signed X509 SVID", "time": "2026-11-28T10:00:00Z"},
    {
        "level": "error",
        "msg": "Failed to sign X509 SVID",
        "spiffe_id": "spiffe://corp.example/agent/x",
        "time": "2026-11-28T10:00:00Z",
    },
    # S3 event notification: also {"Records": [...]}, but not CloudTrail
    {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-28T10:00:00.000Z",
                "s3": {"bucket": {"name": "b"}},
            }
        ]
    },
    {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": {"Message": "hi"}}]},
    # Okta System Log
    {
        "uuid": "f1",
        "published": "2026-11-28T10:00:00.000Z",
        "eventType": "user.session.start",
        "version": "0",
        "severity": "INFO",
        "actor": {"id": "00u1", "type": "User"},
        "outcome": {"result": "SUCCESS"},
        "transaction": {"type": "WEB", "id": "t1"},
    },
    # Kubernetes audit event
    {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/agents/secrets",
        "verb": "list",
        "user": {"username": "system:serviceaccount:agents:research"},
        "sourceIPs": ["10.0.0.1"],
        "requestReceivedTimestamp": "2026-11-28T10:00:00.000000Z",
        "stageTimestamp": "2026-11-28T10:00:00.1Z",
    },
    # GCP audit log entry
    {
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "GetSecret",
            "authenticationInfo": {"principalEmail": "a@corp.example"},
        },
        "insertId": "x1",
        "resource": {"type": "secretmanager.googleapis.com/Secret"},
        "timestamp": "2026-11-28T10:00:00Z",
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
    },
    # Entra ID sign-in
    {
        "id": "66ea54eb",
        "createdDateTime": "2026-11-28T10:00:00Z",
        "userPrincipalName": "alice@corp.example",
        "appId": "de8bc8b5",
        "ipAddress": "10.0.0.1",
        "status": {"errorCode": 0},
    },
    # OCSF authentication event
    {
        "class_uid": 3002,
        "category_uid": 3,
        "activity_id": 1,
        "type_uid": 300201,
        "time": 1795860000000,
        "metadata": {"product": {"name": "x"}, "version": "1.1.0"},
        "user": {"name": "alice"},
    },
    # Keycloak admin event (not an EventRepresentation)
    {
        "time": 1795860000000,
        "realmId": "corp",
        "operationType": "CREATE",
        "resourceType": "USER",
        "resourcePath": "users/1",
        "authDetails": {"realmId": "master", "userId": "admin"},
    },
    # JSON-RPC without a gateway wrapper, and a Vault-like record with a JSON-RPC request
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}},
    # a CloudTrail-looking record that carries a decision_id-less OPA shape and vice versa
    {"path": "agents/authz/allow", "result": True, "timestamp": "2026-11-28T10:00:00Z"},
    {},
]


@pytest.mark.parametrize("rec", FOREIGN, ids=range(len(FOREIGN)))
def test_foreign_records_not_claimed(rec: dict[str, Any]) -> None:
    mine = {name for name in FORMATS if sources.PARSERS[name].sniff(rec)}
    assert mine == set()


@pytest.mark.parametrize(
    ("fmt", "other"),
    [(f, o) for f in FORMATS for o in FORMATS if f != o],
)
def test_sniffers_are_disjoint_on_fixtures(fmt: str, other: str) -> None:
    for rec in ALL_RECORDS[fmt]:
        assert not sources.PARSERS[other].sniff(rec)


# --- semantics the goldens would hide in bulk -------------------------------------------------


def _events(fmt: str, name: str) -> dict[str, dict[str, Any]]:
    batch = normalize(_items(FIXTURES / fmt / name), now=NOW)
    return {e["event_id"]: e for e in batch.events}


def test_keycloak_token_exchange_lineage() -> None:
    ev = _events("keycloak", "events.jsonl")["keycloak:5b0d7e21-9a3c-4c1d-8e2f-aa11bb22cc33"]
    assert ev["activity"] == "token.exchanged"
    assert ev["actor_id"] == "spiffe://corp.example/agent/research" and ev["actor_type"] == "agent"
    assert ev["on_behalf_of"] == "alice@corp.example"
    assert ev["delegation_chain"] == [
        "alice@corp.example",
        "spiffe://corp.example/agent/orchestrator",
        "spiffe://corp.example/agent/research",
    ]
    assert (ev["credential_id"], ev["credential_parent_id"]) == ("jti-9f2b6d", "jti-41a7c2")
    assert ev["credential_expires_at"] == dt.datetime(2026, 11, 28, 10, 5, tzinfo=dt.UTC)
    assert ev["task_id"] == "task-0042" and ev["scope"] == ["tickets:read", "kb:read"]
    assert ev["time"] == dt.datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=dt.UTC)


def test_mcp_nested_act_outermost_is_current_actor() -> None:
    ev = _events("mcp", "gateway.jsonl")["mcp:c0a80101-0000-4000-8000-000000000002"]
    assert ev["actor_id"] == "spiffe://corp.example/agent/research"
    assert ev["delegation_chain"] == [
        "alice@corp.example",
        "spiffe://corp.example/agent/orchestrator",
        "spiffe://corp.example/agent/research",
    ]
    assert (ev["trace_id"], ev["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "b7ad6b7169203331")
    assert (ev["decision"], ev["outcome"]) == ("deny", "failure")


def test_cloudtrail_assume_role_chain() -> None:
    evs = _events("cloudtrail", "records.jsonl")
    first = evs["cloudtrail:d1e2f3a4-ac7f-466c-a608-4ac8dexample01"]
    assert first["activity"] == "role.assumed"
    assert first["credential_id"] == "ASIAQRSTUVW0TASK0042"
    assert first["credential_parent_id"] == "AKIAQRSTUVWXYZEXAMPLE"
    assert first["target_id"] == "arn:aws:iam::111122223333:role/ResearchReadOnly"
    assert first["credential_expires_at"] == dt.datetime(2026, 11, 28, 10, 15, 5, tzinfo=dt.UTC)
    assert first["task_id"] == "task-0042"
    hop = evs["cloudtrail:d1e2f3a4-ac7f-466c-a608-4ac8dexample02"]
    assert hop["actor_id"] == first["target_id"] and hop["actor_type"] == "role"
    assert hop["credential_parent_id"] == first["credential_id"]
    assert hop["credential_expires_at"] == dt.datetime(2026, 11, 28, 11, 3, tzinfo=dt.UTC)
    web = evs["cloudtrail:d1e2f3a4-ac7f-466c-a608-4ac8dexample03"]
    assert web["credential_parent_id"] == "jwtsvid-7b2c1d" and web["actor_type"] == "agent"
    denied = evs["cloudtrail:d1e2f3a4-ac7f-466c-a608-4ac8dexample04"]
    assert (denied["decision"], denied["outcome"], denied["reason"]) == ("deny", "failure", "AccessDenied")
    svc = evs["cloudtrail:d1e2f3a4-ac7f-466c-a608-4ac8dexample05"]
    assert svc["src_ip"] == "athena.amazonaws.com" and svc["credential_id"] == "ASIAQRSTUVW0WEBID001"


def test_vault_request_and_response_both_land() -> None:
    evs = _events("vault", "audit.jsonl")
    req = evs["vault:request:3c1f9a2b-7d6e-4c5b-8a9f-0e1d2c3b4a01"]
    resp = evs["vault:response:3c1f9a2b-7d6e-4c5b-8a9f-0e1d2c3b4a01"]
    assert req["activity"] == "request" and resp["activity"] == "secret.rotated"
    assert resp["credential_id"] == "hmac-sha256:1b9e0c5f2a7d4e8b"
    assert resp["credential_expires_at"] == dt.datetime(2026, 11, 28, 10, 14, 30, tzinfo=dt.UTC)


# --- secrets ----------------------------------------------------------------------------------

SECRETS = [
    "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENzZ2luX2VjEB4aCXVzLXdlc3QtMSJHMEUCIQDexampleexampleexample0042",
    "FwoGZXIvYXdzEXAMPLEHOP2SESSIONTOKENaDMrh6E0UOExampleexampleexample",
    "IQoJb3JpZ2luX2VjEXAMPLECISESSIONTOKENexampleexampleexampleexample",
    "opaque-at-Zx81QmV0eTZ3d1pPSnV0cUxvY2tlZA",
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBsYWNlaG9sZGVy",
    "hvs.CAESIJT2KM9n2KJqg_E267EHJSY0c4NWtTRnBsNWhzUDkQZQ",
    "hunter2-oops",
    "s3cr3t-plain",
]


def test_no_secret_reaches_the_lake() -> None:
    batch = Batch()
    for fmt in FORMATS:
        for p in _inputs(fmt):
            batch.extend(normalize(_items(p), now=NOW))
    events, dead = to_tables(batch)
    blob = json.dumps(events.to_pylist(), default=str) + json.dumps(dead.to_pylist(), default=str)
    for s in SECRETS:
        assert s in "".join(p.read_text() for f in FORMATS for p in _inputs(f)), s  # the fixture has it
        assert s not in blob, s
    # a raw Vault token is kept only as its fingerprint
    assert fingerprint("hvs.CAESIJT2KM9n2KJqg_E267EHJSY0c4NWtTRnBsNWhzUDkQZQ") in blob


def test_cloudtrail_raw_web_identity_token_redacted() -> None:
    rec = orjson.loads(_items(FIXTURES / "cloudtrail" / "records.jsonl")[2][0])
    rec["requestParameters"]["webIdentityToken"] = "opaque-web-identity-Q2xvdWRUcmFpbFRva2Vu"
    rec["userIdentity"].pop("webIdFederationData")
    batch = normalize([(orjson.dumps(rec), "t:1")], now=NOW)
    (ev,) = batch.events
    assert ev["credential_parent_id"] == fingerprint("opaque-web-identity-Q2xvdWRUcmFpbFRva2Vu")
    assert "opaque-web-identity-Q2xvdWRUcmFpbFRva2Vu" not in ev["raw"]


# --- robustness: nothing escapes, every record lands once --------------------------------------

MINE = set(FORMATS)


def _check(batch: Batch, origins: list[str]) -> None:
    """read == landed records; each leaf record: >= 1 event and no dead row, or exactly 1 dead row."""
    assert batch.read == len(origins)
    ev = Counter(r["origin"] for r in batch.events)
    dd = Counter(r["origin"] for r in batch.dead)
    for o in origins:
        leaves = {k for k in (ev.keys() | dd.keys()) if k == o or k.startswith(o + "#")}
        assert leaves, f"{o} vanished"
        for leaf in leaves:
            assert (ev[leaf] >= 1 and dd[leaf] == 0) or (ev[leaf] == 0 and dd[leaf] == 1), leaf
    for d in batch.dead:
        if d.get("format_hint") in MINE:  # our parsers reject with a reason, never crash
            assert "parser error" not in d["reason"], d["reason"]
            assert "invalid canonical row" not in d["reason"], d["reason"]


def _run(raws: list[bytes]) -> None:
    origins = [f"t:{i}" for i in range(len(raws))]
    batch = normalize(list(zip(raws, origins, strict=True)), now=NOW)
    _check(batch, origins)
    to_tables(batch)
    _check(batch, origins)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=20,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(_json, min_size=1, max_size=4))
def test_arbitrary_json(values: list[Any]) -> None:
    _run([orjson.dumps(v) for v in values])


_KEYS = sorted({k for recs in ALL_RECORDS.values() for r in recs for k in r} | {"Records"})


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _json, max_size=8), min_size=1, max_size=3))
def test_arbitrary_objects_with_real_keys(values: list[dict[str, Any]]) -> None:
    _run([orjson.dumps(v) for v in values])


@FUZZ
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=4))
def test_arbitrary_bytes(raws: list[bytes]) -> None:
    _run(raws)


_LINES = [raw for fmt in FORMATS for p in _inputs(fmt) for raw, _ in _items(p)]


@FUZZ
@given(st.sampled_from(_LINES), st.floats(0, 1))
def test_truncated_fixtures(raw: bytes, frac: float) -> None:
    _run([raw[: int(len(raw) * frac)]])


# --- wrong types in every field of every real record, one field at a time -----------------------

BAD_VALUES: list[Any] = [
    None,
    0,
    -1,
    2**63 - 1,
    True,
    "",
    "x" * 20_000,
    [],
    [1, "a", None],
    {},
    {"x": {"y": [1]}},
    math.nan,
    math.inf,
    1e300,
    -1e18,
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "not a value",
]


def _paths(v: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> Iterator[tuple[Any, ...]]:
    if depth > 6:
        return
    if isinstance(v, Mapping):
        for k, sub in v.items():
            yield (*prefix, k)
            yield from _paths(sub, (*prefix, k), depth + 1)
    elif isinstance(v, list):
        for i, sub in enumerate(v[:3]):
            yield (*prefix, i)
            yield from _paths(sub, (*prefix, i), depth + 1)


def _mutate(rec: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = orjson.loads(orjson.dumps(rec))
    cur = out
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_field_wrong_type(fmt: str) -> None:
    """Each field of each fixture record replaced by each bad value: a row or a reasoned rejection."""
    batch = Batch()
    origins: list[str] = []
    n = 0
    for rec in ALL_RECORDS[fmt]:
        for i, path in enumerate(_paths(rec)):
            for j, bad in enumerate(BAD_VALUES):
                # every field gets None and an object; the other values rotate over the fields
                # (all of them on top-level fields) to keep the sweep a few seconds long
                if bad is not None and j != 10 and len(path) > 1 and (i + j) % 4:
                    continue
                if isinstance(bad, str) and len(bad) > 1000 and len(path) > 1:
                    continue
                m = _mutate(rec, path, bad)
                origin = f"m:{n}:{j}"
                n += 1
                origins.append(origin)
                batch.read += 1
                parse_record(m, b"{}", origin, "auto", NOW, batch)
    _check(batch, origins)
    to_tables(batch)
    _check(batch, origins)
    # and through the byte path (NaN/inf become null there) on a sample
    raws = []
    for rec in ALL_RECORDS[fmt][:4]:
        for path in list(_paths(rec))[:40]:
            raws.append(orjson.dumps(_mutate(rec, path, [1, {"a": None}])))
    _run(raws)


def test_vault_does_not_claim_a_json_rpc_request() -> None:
    rec = {
        "time": "2026-11-28T10:00:00Z",
        "type": "request",
        "request": {"jsonrpc": "2.0", "id": 1, "method": "x"},
    }
    assert not sources.PARSERS["vault"].sniff(rec)


def test_timestamps_out_of_range_are_rejected_with_reason() -> None:
    cases = {
        "keycloak": ("time", [-(10**20), 10**30, "2026-13-01T00:00:00Z"]),
        "spire": ("time", ["1969-12-31T23:59:59Z", "2300-01-01T00:00:00Z"]),
        "opa": ("timestamp", ["0001-01-01T00:00:00Z", 1e300]),
        "mcp": ("timestamp", ["9999-12-31T23:59:59Z"]),
        "cloudtrail": ("eventTime", ["2300-01-01T00:00:00Z", "Nov 28, 2026"]),
        "vault": ("time", [-1, "tomorrow"]),
    }
    for fmt, (key, values) in cases.items():
        rec = next(r for r in ALL_RECORDS[fmt] if key in r)
        batch = Batch()
        for i, v in enumerate(values):
            parse_record({**rec, key: v}, b"{}", f"t:{i}", "auto", NOW, batch)
        assert not batch.events, fmt
        assert all(d["format_hint"] == fmt and "time" in d["reason"].lower() for d in batch.dead), batch.dead
