"""The canonical event contract: schema, documentation in step, redaction, time parsing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from ingest.events import FIELD_NAMES, REQUIRED, SCHEMA, fingerprint, utc
from ingest.redact import redact, redact_text
from ingest.schema_doc import render

REPO = Path(__file__).resolve().parent.parent


def test_schema_doc_is_current():
    assert (REPO / "docs" / "schema.md").read_text() == render(), "run: python -m ingest.schema_doc > docs/schema.md"


def test_fixed_names_exist():
    for name in ("event_id", "time", "actor_id", "credential_id"):
        assert name in FIELD_NAMES
    assert {"event_id", "time", "origin", "raw"} <= REQUIRED
    assert SCHEMA.metadata[b"decisionpath.schema_version"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T10:00:00Z", dt.datetime(2026, 11, 28, 10, tzinfo=dt.UTC)),
        ("2026-11-28T11:00:00.123456789+01:00", dt.datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=dt.UTC)),
        (1764324000, dt.datetime(2025, 11, 28, 10, tzinfo=dt.UTC)),
        (1764324000000, dt.datetime(2025, 11, 28, 10, tzinfo=dt.UTC)),
        (None, None),
    ],
)
def test_utc(value, expected):
    assert utc(value) == expected


@pytest.mark.parametrize("bad", ["yesterday", float("nan"), 1e300, "9999-01-01T00:00:00Z", True, [1]])
def test_utc_rejects(bad):
    with pytest.raises(ValueError):
        utc(bad)


def test_redaction_keeps_ids_and_hides_secrets():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz"
    rec = {
        "jti": "jti-1", "accessKeyId": "ASIAEXAMPLE123", "uniqueTokenIdentifier": "utid",
        "sessionToken": "FQoGZXIvYXdzEXAMPLE", "client_secret": "s3cr3t-value", "password": "hunter22",
        "headers": {"Authorization": f"Bearer {jwt}"}, "note": f"token={jwt}",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    out = redact(rec)
    text = str(out)
    for secret in (jwt, "FQoGZXIvYXdzEXAMPLE", "s3cr3t-value", "hunter22", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"):
        assert secret not in text
    assert out["jti"] == "jti-1" and out["accessKeyId"] == "ASIAEXAMPLE123" and out["uniqueTokenIdentifier"] == "utid"
    # the same secret gives the same mark, so records still correlate
    assert redact_text(f"Bearer {jwt}") == redact_text(f"Bearer {jwt}")
    assert fingerprint("x") == "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_redaction_of_embedded_documents_k8s_secrets_and_url_tokens():
    inner = orjson.dumps({"user": {"password": "hunter22"}}).decode()
    rec = {
        "requestObject": {"kind": "Secret", "data": {"db-url": "cG9zdGdyZXM6Ly91OnBAaA=="}},
        "configmap": {"kind": "ConfigMap", "data": {"colour": "blue-green"}},
        "stringData": {"tls.key": "plain-secret-text"},
        "log": inner,
        "url": "https://app/cb?code=abcdef123456&state=ok",
        "gcp": "Authorization header ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxxxxx",
    }
    text = str(redact(rec))
    for secret in ("cG9zdGdyZXM6Ly91OnBAaA==", "plain-secret-text", "hunter22", "abcdef123456", "ya29.a0AfH6SM"):
        assert secret not in text
    assert "blue-green" in text and "state=ok" in text
