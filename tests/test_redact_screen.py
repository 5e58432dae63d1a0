"""The chunk screen (``redact.screen``) is a superset of what redaction changes.

A record the screen clears skips the per-record redaction checks entirely, so a miss would store a
secret. Each case below is a record that ``redact_json`` changes; the screen must flag every one.
Generated records then check the implication ``not flagged ⇒ redact_json(text) is text`` broadly.
"""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.redact import redact, redact_json, screen
from tests.conftest import REPO
from tests.test_security_secrets import AWS_SECRET, FREE_TEXT, KEYED, NEEDLES, PASSWORD, STS

SECRET_WORDS = ["password", "Passwd", "secret", "token", "Token", "key", "api_key", "bearer", "Basic", "jwt",
                "session_token", "assertion", "otp", "cookie", "credentials", "stringData", "kind", "Secret",
                "eyJhbGciOi", "ghp_", "xoxb-", "hvs.", "ya29.", "IQoJ", "://", "@", ":", "=", "?", "&", "{", "[",
                "\\", "\u00e9", "\u212a", "\u2003",
                # the member shapes the screen lets through: hashed values, ids, objects under secret names
                "hmac-sha256:", "sha256:", "hmac-sha1:", "0f9a", "accessKeyId", "credentials", "Key", "client_token",
                "secretAccessKey", "-", "1"]


def _nest(depth: int) -> Any:
    v: Any = "x"
    for _ in range(depth):
        v = [v]
    return v


def _flagged(rec: Any) -> tuple[bool, bool]:
    raw = orjson.dumps(rec)
    text = raw.decode()
    return screen([raw])[0], redact_json(text, orjson.loads(raw)) is not text


@pytest.mark.parametrize("key", sorted(KEYED))
def test_every_secret_key_is_flagged(key: str) -> None:
    flagged, changed = _flagged({"outer": {key: KEYED[key]}})
    assert changed and flagged


@pytest.mark.parametrize("name", sorted(NEEDLES))
def test_every_secret_value_under_a_plain_key_is_flagged(name: str) -> None:
    flagged, changed = _flagged({"note": f"seen {NEEDLES[name]} here"})
    assert flagged or not changed, name


@pytest.mark.parametrize("rec", [
    {"note": FREE_TEXT},
    {"msg": "login password=hunter22x ok"}, {"msg": "userPassword: hunter22x"},
    {"url": "https://bob:s3cretpass@db.internal/x"}, {"url": "https://x/cb?code=abcdef123456&state=1"},
    {"hdr": "Basic dXNlcjpwYXNzd29yZA=="}, {"body": '{"password": "hunter22x"}'},
    {"kind": "Secret", "data": {"tls.crt": "LS0tLS1CRUdJTg=="}}, {"stringData": {"anything": "value1"}},
    {"n": 1, "pin": {"otp": 123456}}, {"k": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
    {"escaped": "a\\/b", "t": "Bearer\tabcdefghijkl"}, {"unicode": "to\u212aen=abcdefgh"},
    {"note": "seen IQoJb3JpZ2luX2VjE" + "A" * 60 + " here"},
    {"deep": _nest(70)},
])
def test_redacted_shapes_are_flagged(rec: dict[str, Any]) -> None:
    flagged, changed = _flagged(rec)
    assert changed and flagged


def test_plain_records_are_cleared() -> None:
    """The screen is useful: the generator's records (no secrets) are mostly cleared."""
    lines = [ln for f in sorted((REPO / "sample_data" / "sample").glob("*.jsonl.gz"))
             for ln in gzip.decompress(f.read_bytes()).splitlines() if ln]
    flags = screen(lines)
    assert len(lines) > 1000 and sum(flags) < 0.2 * len(lines)
    for raw, f in zip(lines, flags, strict=True):
        if not f:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # the sample's hostile records; they go to the dead-letter
            text = raw.decode()
            assert redact_json(text, value) is text


def test_fixture_records_obey_the_implication() -> None:
    n = 0
    for f in sorted((REPO / "tests" / "fixtures").rglob("*.jsonl")):
        lines = [ln for ln in f.read_bytes().splitlines() if ln.strip()]
        for raw, flagged in zip(lines, screen(lines), strict=True):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            text = raw.decode("utf-8", "replace")
            n += 1
            assert flagged or redact_json(text, value) is text, (f.name, raw[:200])
    assert n > 100


_word = st.sampled_from(SECRET_WORDS) | st.text(min_size=1, max_size=12)
_text = st.lists(_word, max_size=6).map("".join) | st.sampled_from(list(NEEDLES.values()) + list(KEYED.values()))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _text,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_text, kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_text, _json, min_size=1, max_size=5))
def test_redact_json_fast_path_misses_nothing(rec: dict[str, Any]) -> None:
    """``redact_json`` returns the text untouched only when ``redact`` would change nothing (its
    pre-checks once missed ``password=...`` and STS tokens in free text under plain keys)."""
    raw = orjson.dumps(rec)
    text = raw.decode()
    value = orjson.loads(raw)
    red = redact(value)
    if red != value:  # a record the redactor changes never keeps its text (taking the slow path needlessly is fine)
        assert redact_json(text, value) == orjson.dumps(red, default=str).decode(), rec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_text, _json, min_size=1, max_size=5))
def test_not_flagged_implies_nothing_to_redact(rec: dict[str, Any]) -> None:
    flagged, changed = _flagged(rec)
    assert flagged or not changed, rec



# --- the narrowed member pattern: CloudTrail and Vault shapes --------------------------------------------
# The screen lets through secret-named members whose value redaction never replaces (an object, an
# array, null, a boolean, a source's own HMAC) and keys that only end in "key" (S3's "key"). Each
# record below holds a secret in one position those sources use: it must still be flagged and redacted.

_CT_ASSUME = {
    "eventVersion": "1.08", "eventSource": "sts.amazonaws.com", "eventName": "AssumeRoleWithWebIdentity",
    "eventTime": "2026-11-02T08:06:59Z", "userIdentity": {"type": "WebIdentityUser", "userName": "spiffe://x/a"},
    "requestParameters": {"roleArn": "arn:aws:iam::1:role/r", "roleSessionName": "s", "durationSeconds": 900},
    "responseElements": {"credentials": {"accessKeyId": "ASIABI4JKMI75NDPNDLW", "expiration": "2026-11-02T08:21:59Z"},
                         "assumedRoleUser": {"arn": "arn:aws:sts::1:assumed-role/r/s"}},
}
_CT_S3 = {
    "eventVersion": "1.08", "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
    "eventTime": "2026-11-02T08:08:41Z",
    "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIASF34ISADXX3WGS4V",
                     "sessionContext": {"attributes": {"creationDate": "2026-11-02T08:08:41Z", "mfaAuthenticated": "false"}}},
    "requestParameters": {"bucketName": "corp-analytics", "key": "task-0000-00088/part-948.parquet"},
    "responseElements": None,
}
_H = "hmac-sha256:a6cc58ac8ae27b72e91e2e1835fc9da1b34052f44f58c114eef231a270e4a9f2"
_VAULT = {
    "time": "2026-06-07T22:05:59.600Z", "type": "response",
    "auth": {"client_token": _H, "accessor": _H, "display_name": "approle-x", "policies": ["default"],
             "token_type": "service", "token_ttl": 300, "token_issue_time": "2026-06-07T22:05:58Z"},
    "request": {"id": "5c7de74e", "operation": "update", "path": "auth/approle/login", "client_token": _H,
                "data": {"role_id": "hmac-sha256:0f0f", "secret_id": "hmac-sha256:e1e1"}},
    "response": {"auth": {"client_token": _H, "accessor": _H}, "data": {"version": "hmac-sha256:885d"}},
}


def _with(rec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = orjson.loads(orjson.dumps(rec))
    cur = out
    for k in path[:-1]:
        if not isinstance(cur.get(k), dict):
            cur[k] = {}
        cur = cur[k]
    cur[path[-1]] = value
    return out


@pytest.mark.parametrize("rec", [_CT_ASSUME, _CT_S3, _VAULT], ids=["ct-assume-role", "ct-s3", "vault"])
def test_common_cloudtrail_and_vault_shapes_are_cleared(rec: dict[str, Any]) -> None:
    flagged, changed = _flagged(rec)
    assert not changed and not flagged


_PLAIN_TOKEN = "s.PLANTEDlegacyVaultToken42"  # no marker of its own: only its key name gives it away


@pytest.mark.parametrize(("rec", "path", "value"), [
    # CloudTrail: STS responses carrying the key pair, request parameters, additional data
    (_CT_ASSUME, ("responseElements", "credentials", "sessionToken"), STS),
    (_CT_ASSUME, ("responseElements", "credentials", "sessionToken"), "opaqueSessionToken1234"),
    (_CT_ASSUME, ("responseElements", "credentials", "secretAccessKey"), AWS_SECRET),
    (_CT_ASSUME, ("responseElements", "credentials", "secretAccessKey"), "short-secret-key"),
    (_CT_ASSUME, ("responseElements", "credentials", "SecretAccessKey"), "short-secret-key"),
    (_CT_ASSUME, ("responseElements", "credentials"), "ASIAXX:plain-credential-string"),
    (_CT_ASSUME, ("responseElements", "credentials"), 123456789),
    (_CT_ASSUME, ("responseElements", "credential"), "plain-credential"),
    (_CT_ASSUME, ("requestParameters", "webIdentityToken"), "opaque-web-identity-token"),
    (_CT_ASSUME, ("requestParameters", "SAMLAssertion"), "PHNhbWw+plantedassertion"),
    (_CT_S3, ("requestParameters", "apiKey"), "k-1234567"),
    (_CT_S3, ("requestParameters", "api_key"), "k-1234567"),
    (_CT_S3, ("requestParameters", "x-api-key"), "k-1234567"),
    (_CT_S3, ("requestParameters", "privateKey"), "pk-1234567"),
    (_CT_S3, ("requestParameters", "PRIVATE_KEY"), "pk-1234567"),
    (_CT_S3, ("requestParameters", "secret_access_key"), "sak-1234567"),
    (_CT_S3, ("requestParameters", "password"), PASSWORD),
    (_CT_S3, ("requestParameters", "password"), -1234),
    (_CT_S3, ("requestParameters", "key"), "reports/login?password=hunter22x"),
    (_CT_S3, ("requestParameters", "key"), "notes password: hunter22x"),
    (_CT_S3, ("additionalEventData", "x-amz-security-token"), "opaque-amz-token-1"),
    (_CT_S3, ("userIdentity", "sessionContext", "sessionToken"), "opaque-token-2"),
    # Vault: a token logged in clear (hmac_accessor off, log_raw), by key name only; an HMAC look-alike
    (_VAULT, ("auth", "client_token"), _PLAIN_TOKEN),
    (_VAULT, ("request", "client_token"), _PLAIN_TOKEN),
    (_VAULT, ("response", "auth", "client_token"), _PLAIN_TOKEN),
    (_VAULT, ("auth", "client_token"), "hmac-sha256:not-hex-at-all"),
    (_VAULT, ("auth", "client_token"), "hmac-sha256:"),
    (_VAULT, ("auth", "client_token"), "sha512:0f0f0f0f"),
    (_VAULT, ("auth", "client_token"), " hmac-sha256:0f0f"),
    (_VAULT, ("auth", "client_token"), 987654321),
    (_VAULT, ("request", "data", "password"), PASSWORD),
    (_VAULT, ("response", "data", "password"), PASSWORD),
    (_VAULT, ("response", "data", "token"), _PLAIN_TOKEN),
    (_VAULT, ("response", "wrap_info", "token"), _PLAIN_TOKEN),
    (_VAULT, ("response", "data", "private_key"), "pk-material-1234"),
    (_VAULT, ("response", "data", "credentials"), "user:pass-1234"),
    # an array under a secret name: its strings and numbers are secrets (nested arrays too)
    (_CT_S3, ("requestParameters", "password"), ["hunter22x-PLANTED"]),
    (_VAULT, ("request", "data", "token"), [_PLAIN_TOKEN]),
    (_VAULT, ("request", "data", "secret_id"), [["9f1c6d2e-PLANTED-in-nested-array"]]),
    (_VAULT, ("request", "data", "password"), [1234567890]),
    # Vault AppRole's SecretID in clear (log_raw): at login, and in the response that generates one
    (_VAULT, ("request", "data", "secret_id"), "9f1c6d2e-4b7a-4c1d-8e2f-PLANTED00001"),
    (_VAULT, ("response", "data", "secret_id"), "9f1c6d2e-4b7a-4c1d-8e2f-PLANTED00002"),
])
def test_a_secret_in_a_cloudtrail_or_vault_position_is_flagged(rec: dict[str, Any], path: tuple[str, ...],
                                                                value: Any) -> None:
    planted = _with(rec, path, value)
    flagged, changed = _flagged(planted)
    assert changed and flagged, (path, value)
    # and alongside a hashed value of the same name (the second look must not clear the record)
    flagged2, changed2 = _flagged({**planted, "client_token": _H})
    assert changed2 and flagged2
    # redacted in the text that would be stored: only its fingerprint is left in that position
    raw = orjson.dumps(planted)
    stored = orjson.loads(redact_json(raw.decode(), orjson.loads(raw)))
    for k in path:
        stored = stored[k]
    leaves, todo = [], [stored]
    while todo:  # an array under a secret name: every leaf is a mark
        x = todo.pop()
        if isinstance(x, list):
            todo.extend(x)
        else:
            leaves.append(x)
    assert leaves and all(isinstance(x, str) and "[REDACTED sha256:" in x for x in leaves), (path, stored)
    assert not any(part in str(stored) for part in ("hunter22x", "PLANTED", "secret-key", "1234")), (path, stored)


_KEY_NAMES = st.sampled_from([
    "key", "Key", "accessKeyId", "credentials", "credential", "client_token", "token", "sessionToken",
    "secretAccessKey", "apiKey", "api-key", "privateKey", "password", "secret", "secret_id", "role_id",
    "token_type", "token_ttl", "otp", "jwt", "cookie", "Authorization", "data", "kind", "note",
])
_HASHLIKE = st.sampled_from(["hmac-sha256:", "sha256:", "hmac-sha1:", "hmac-sha512:", "sha1:", ""]).flatmap(
    lambda p: st.text("0123456789abcdefABCDEFxz:- ", max_size=10).map(lambda t: p + t))
_MEMBER_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | _HASHLIKE | st.sampled_from(["", "Secret", "x"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEY_NAMES, kids, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEY_NAMES, _MEMBER_VALUE, min_size=1, max_size=5))
def test_member_shapes_not_flagged_imply_nothing_to_redact(rec: dict[str, Any]) -> None:
    """Secret-named members holding objects, arrays, null, booleans, numbers and (near-)hashes."""
    flagged, changed = _flagged(rec)
    assert flagged or not changed, rec


def test_vault_secret_id_is_a_secret_but_cloudtrail_secret_id_is_a_name() -> None:
    """``secret_id`` (Vault AppRole, snake_case) is redacted; ``secretId`` (CloudTrail: the Secrets Manager secret
    a call read, by name or ARN) is kept, and so is Vault's ``secret_id_accessor``."""
    vault = _with(_VAULT, ("request", "data", "secret_id"), "9f1c6d2e-4b7a-4c1d-8e2f-PLANTED00003")
    raw = orjson.dumps(vault)
    assert screen([raw]) == [True]
    assert "PLANTED00003" not in redact_json(raw.decode(), vault)
    for rec in (_with(_CT_S3, ("requestParameters", "secretId"), "prod/db/password"),
                _with(_VAULT, ("response", "data", "secret_id_accessor"), "84896a0c-1347-aa90-a4f6-aca8b7558780")):
        raw = orjson.dumps(rec)
        assert screen([raw]) == [False]
        assert redact_json(raw.decode(), rec) == raw.decode()


def test_screen_of_a_chunk_matches_record_by_record() -> None:
    """The second look runs on the records the first pass hit: a chunk gives each record's own answer."""
    recs = [_CT_ASSUME, _CT_S3, _VAULT, _with(_VAULT, ("auth", "client_token"), _PLAIN_TOKEN),
            _with(_CT_ASSUME, ("responseElements", "credentials", "sessionToken"), STS), {"note": "x"}]
    raws = [orjson.dumps(r) for r in recs] * 3
    assert screen(raws) == [screen([r])[0] for r in raws] == [False, False, False, True, True, False] * 3
