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
from tests.test_security_secrets import FREE_TEXT, KEYED, NEEDLES

SECRET_WORDS = ["password", "Passwd", "secret", "token", "Token", "key", "api_key", "bearer", "Basic", "jwt",
                "session_token", "assertion", "otp", "cookie", "credentials", "stringData", "kind", "Secret",
                "eyJhbGciOi", "ghp_", "xoxb-", "hvs.", "ya29.", "IQoJ", "://", "@", ":", "=", "?", "&", "{", "[",
                "\\", "\u00e9", "\u212a", "\u2003"]


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

