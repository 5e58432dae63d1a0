"""Real-world formats (okta, k8s_audit, gcp_audit, entra, ocsf): golden files, sniffing, robustness.

Golden files: every ``tests/fixtures/formats/<fmt>/<name>.jsonl`` is normalised with a fixed clock
and compared exactly with ``<name>.golden.json`` (events and dead-letter rows, datetimes ISO).
Regenerate with ``DP_UPDATE_GOLDEN=1 pytest tests/test_parsers_real_formats.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import sources
from ingest.errors import ParseError
from ingest.events import FIELD_NAMES
from ingest.normalize import Batch, normalize, to_tables

FORMATS = ("okta", "k8s_audit", "gcp_audit", "entra", "ocsf")
FIXTURES = Path(__file__).parent / "fixtures" / "formats"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
UPDATE = os.environ.get("DP_UPDATE_GOLDEN") == "1"


def _files() -> list[Path]:
    return sorted(p for f in FORMATS for p in (FIXTURES / f).glob("*.jsonl"))


def _lines(path: Path) -> list[tuple[bytes, str]]:
    rel = path.relative_to(FIXTURES)
    return [(line, f"file:{rel}:{i}") for i, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()]


def _records(fmt: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted((FIXTURES / fmt).glob("*.jsonl")):
        out += [orjson.loads(b) for b, _ in _lines(p)]
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _golden_of(batch: Batch) -> dict[str, Any]:
    events = [{k: _jsonable(r[k]) for k in FIELD_NAMES if r.get(k) is not None} for r in batch.events]
    for e in events:  # attributes and raw are JSON text: store them parsed, so diffs read well
        for k in ("attributes", "raw"):
            if k in e:
                e[k] = json.loads(e[k])
    dead = [{k: _jsonable(v) for k, v in sorted(r.items()) if k in ("origin", "format_hint", "reason")}
            for r in batch.dead]
    return {"read": batch.read, "events": events, "dead_letter": dead}


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_golden(path: Path) -> None:
    batch = normalize(_lines(path), now=NOW)
    got = _golden_of(batch)
    golden = path.with_suffix(".golden.json")
    if UPDATE or not golden.exists():
        golden.write_text(json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        if not UPDATE:
            pytest.fail(f"golden file written, review it: {golden}")
    assert got == json.loads(golden.read_text())
    et, _ = to_tables(batch)
    assert et.num_rows == len(got["events"])  # every row the parser made fits the Arrow schema


# --- sniffing: each fixture is claimed by its own parser and by no other ---------------------------

def _envelope_items(rec: dict[str, Any]) -> list[Any] | None:
    for p in sources.PARSERS.values():
        if p.split is not None and p.sniff(rec):
            try:
                parts = p.split(rec)
            except ParseError:
                return None  # a broken envelope: the record itself is what lands (dead)
            if parts is not None:
                return parts
    return None


def _claims(rec: Any) -> list[str]:
    return [name for name, p in sources.PARSERS.items() if p.sniff(rec)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixtures_sniffed_as_their_own_format_only(fmt: str) -> None:
    for rec in _records(fmt):
        assert _claims(rec) == [fmt], rec
        for sub in _envelope_items(rec) or []:
            owners = _claims(sub)
            # an envelope may carry records of other Azure categories: those are nobody's
            assert owners in ([fmt], []) or (fmt == "entra" and owners == ["k8s_audit"]), sub


AZURE_ACTIVITY = {
    "time": "2026-11-28T12:00:00.0000000Z", "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.COMPUTE/VIRTUALMACHINES/VM1",
    "operationName": "MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE", "category": "Administrative", "resultType": "Success",
    "callerIpAddress": "203.0.113.24", "correlationId": "7f7f7f7f-0000-4000-8000-000000000001", "level": "Information",
    "identity": {"claims": {"name": "Alice"}}, "properties": {"statusCode": "Created"},
}
KEYVAULT_AUDIT = {"time": "2026-11-28T12:00:00Z", "resourceId": "/SUBSCRIPTIONS/0000/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV",
                  "operationName": "SecretGet", "category": "AuditEvent", "resultType": "Success",
                  "properties": {"id": "https://kv.vault.example/secrets/db", "clientInfo": "agentkit"}}
OCSF_NETWORK = {"class_uid": 4001, "class_name": "Network Activity", "activity_id": 6, "time": 1764324200123,
                "metadata": {"uid": "net-1", "version": "1.1.0", "product": {"name": "VPC Flow Logs"}},
                "src_endpoint": {"ip": "10.0.0.1", "port": 443}, "dst_endpoint": {"ip": "10.0.0.2", "port": 5432}}
GENERIC_AUDIT_LOG_NOT_GKE = {"insertId": "x1", "timestamp": "2026-11-28T10:00:00Z", "resource": {"type": "k8s_cluster"},
                             "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                                              "serviceName": "container.googleapis.com",
                                              "methodName": "google.container.v1.ClusterManager.UpdateCluster"}}


@pytest.mark.parametrize("rec", [AZURE_ACTIVITY, KEYVAULT_AUDIT, OCSF_NETWORK, {"hello": "world", "n": 1},
                                 {"records": [AZURE_ACTIVITY]}, {}],
                         ids=["azure-activity", "keyvault", "ocsf-4001", "random", "activity-envelope", "empty"])
def test_unsupported_shapes_are_dead_lettered(rec: dict[str, Any]) -> None:
    assert _claims(rec) == []
    batch = normalize([(orjson.dumps(rec), "test:1")], now=NOW)
    assert batch.events == []
    assert len(batch.dead) == 1
    assert batch.dead[0]["reason"].startswith("unsupported format"), batch.dead[0]["reason"]


def test_forced_ocsf_names_the_unsupported_class() -> None:
    batch = normalize([(orjson.dumps(OCSF_NETWORK), "test:1")], fmt="ocsf", now=NOW)
    assert [d["reason"] for d in batch.dead] == ["ocsf: unsupported format: OCSF class 4001"]


def test_gke_and_generic_gcp_audit_are_split_cleanly() -> None:
    # container.googleapis.com on a k8s_cluster resource is GKE's control plane API: generic GCP audit
    assert _claims(GENERIC_AUDIT_LOG_NOT_GKE) == ["gcp_audit"]
    k8s = dict(GENERIC_AUDIT_LOG_NOT_GKE, protoPayload={**GENERIC_AUDIT_LOG_NOT_GKE["protoPayload"], "serviceName": "k8s.io",
                                                           "methodName": "io.k8s.core.v1.pods.get"})
    assert _claims(k8s) == ["k8s_audit"]


def test_request_received_and_complete_stages_both_land_with_distinct_ids() -> None:
    batch = normalize(_lines(FIXTURES / "k8s_audit" / "native.jsonl"), now=NOW)
    ids = [e["event_id"] for e in batch.events if e["request_id"] == "3f2e1d0c-aaaa-4b5c-9d8e-000000000001"]
    assert ids == ["k8s_audit:3f2e1d0c-aaaa-4b5c-9d8e-000000000001/RequestReceived",
                   "k8s_audit:3f2e1d0c-aaaa-4b5c-9d8e-000000000001"]


# --- secrets: raw tokens never reach a canonical field, and raw is redacted -------------------------

SECRETS = ("eyJhbGciOiJSUzI1NiIsImtpZCI6IksxIn0", "eyJraWQiOiJrMSIsImFsZyI6IlJTMjU2In0",
           "ya29.c.b0AXv0zTQexampleOnlyNotARealTokenButShapedLikeOne1234567890", "U2lnbmF0dXJlT2ZUaGVUb2tlbg")


def test_no_secret_in_any_field() -> None:
    for path in _files():
        batch = normalize(_lines(path), now=NOW)
        for row in batch.events + batch.dead:
            text = orjson.dumps(row, default=str).decode()
            for secret in SECRETS:
                assert secret not in text, (path.name, secret)


def test_minted_token_kept_only_as_fingerprint() -> None:
    from ingest.events import fingerprint

    batch = normalize(_lines(FIXTURES / "gcp_audit" / "iamcredentials.jsonl"), now=NOW)
    assert batch.events[2]["credential_id"] == fingerprint(SECRETS[2])


# --- robustness: nothing escapes, every record lands once, tables always build ---------------------

def _lands_once(batch: Batch, n_records: int = 1) -> None:
    assert batch.read == n_records
    assert batch.events or len(batch.dead) == 1, (batch.events, batch.dead)
    n_events, n_dead = len(batch.events), len(batch.dead)
    et, dt_ = to_tables(batch)
    assert et.num_rows + dt_.num_rows == n_events + n_dead


def _flat_records() -> list[dict[str, Any]]:
    out = []
    for fmt in FORMATS:
        for rec in _records(fmt):
            items = _envelope_items(rec)
            out += [r for r in (items or [rec]) if isinstance(r, dict)]
    return out


def _paths(v: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if depth < 5 and isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, (*prefix, k), depth + 1)
    elif depth < 5 and isinstance(v, list):
        for i, x in enumerate(v[:3]):
            out += _paths(x, (*prefix, i), depth + 1)
    return out


FLAT = _flat_records()
TARGETS = [(i, p) for i, r in enumerate(FLAT) for p in _paths(r)]
LINES = [b for p in _files() for b, _ in _lines(p)]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=20,
)
BAD = st.one_of(
    st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.just([]), st.just([1, "a", None]),
    st.just({}), st.just({"x": {"y": 1}}), st.just("x" * 200_000), st.just(""), st.booleans(),
    st.just(float("nan")), st.just(float("inf")), st.just(-1e300),
    st.sampled_from([-(10**20), 10**30, 253402300800000, "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                     "2026-13-45T99:99:99Z", "not a time", 1.5e18]),
    json_values,
)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(json_values)
def test_arbitrary_json_lands_once(value: Any) -> None:
    _lands_once(normalize([(orjson.dumps(value), "h:1")], now=NOW))


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_land_once(raw: bytes) -> None:
    _lands_once(normalize([(raw, "h:1")], now=NOW))


@FAST
@given(st.sampled_from(LINES), st.integers(min_value=0, max_value=4000))
def test_truncated_fixture_lands_once(line: bytes, cut: int) -> None:
    batch = normalize([(line[: cut % max(len(line), 1)], "h:1")], now=NOW)
    assert batch.read == 1
    to_tables(batch)
    assert batch.events or batch.dead


def _set(rec: Any, path: tuple[Any, ...], value: Any) -> None:
    cur = rec
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TARGETS), BAD)
def test_wrong_types_in_real_records_never_escape(target: tuple[int, tuple[Any, ...]], bad: Any) -> None:
    i, path = target
    rec = json.loads(json.dumps(FLAT[i]))
    _set(rec, path, bad)
    # through the parser directly (NaN and inf survive here) ...
    from ingest.normalize import parse_record

    batch = Batch(read=1)
    parse_record(rec, b"{}", "h:1", "auto", NOW, batch)
    _lands_once(batch)
    # ... and through normalize (bytes as a collector reads them)
    raw = json.dumps(rec, allow_nan=True).encode()
    _lands_once(normalize([(raw, "h:1")], now=NOW))


def test_nan_and_huge_values_are_not_copied_into_fields() -> None:
    rec = json.loads(json.dumps(FLAT[0]))
    for k in list(rec)[:6]:
        if k not in ("published", "eventType", "uuid"):
            rec[k] = float("nan")
    from ingest.normalize import parse_record

    batch = Batch(read=1)
    parse_record(rec, b"{}", "h:1", "auto", NOW, batch)
    _lands_once(batch)
    for row in batch.events:
        for v in row.values():
            assert not (isinstance(v, float) and math.isnan(v))


def test_aks_event_is_unwrapped_so_its_secret_keys_are_redacted() -> None:
    inner = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "a-1", "stage": "ResponseComplete", "verb": "create",
             "user": {"username": "system:node:n1"}, "requestReceivedTimestamp": "2026-11-28T12:00:00Z",
             "objectRef": {"resource": "serviceaccounts", "namespace": "agents", "name": "research", "subresource": "token"},
             "responseObject": {"status": {"token": "opaque-token-abcdef123456", "expirationTimestamp": "2026-11-28T13:00:00Z"}}}
    rec = {"category": "kube-audit", "properties": {"log": json.dumps(inner), "pod": "kube-apiserver-1"},
           "resourceId": "/SUBSCRIPTIONS/0/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/C", "time": "2026-11-28T12:00:01Z"}
    batch = normalize([(orjson.dumps(rec), "t:1")], now=NOW)
    (row,) = batch.events
    assert row["credential_id"].startswith("sha256:") and row["activity"] == "token.issued"
    assert "opaque-token-abcdef123456" not in orjson.dumps(row, default=str).decode()


def test_these_sniffers_claim_no_other_formats_fixture() -> None:
    others = [p for p in sorted(FIXTURES.glob("*/*.jsonl")) if p.parent.name not in FORMATS]
    for path in others:
        for raw, origin in _lines(path):
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                assert [f for f in FORMATS if sources.PARSERS[f].sniff(rec)] == [], origin
