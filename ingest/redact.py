"""Secrets never reach the lake: redact them in ``raw`` (and anywhere else we write text).

A secret-looking key has its value replaced by ``[REDACTED sha256:<first 16 hex>]`` so the same
secret still correlates across records; secret-looking values (JWTs, bearer tokens, AWS secret
keys, PEM private keys) are replaced wherever they stand, whatever their key.
Values that sources already hash (Vault's ``hmac-sha256:...``) are left as they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

SECRET_KEYS = re.compile(
    r"(^|[_\-.])(pass(word|wd|phrase)?|secret|client_?secret|secret_?access_?key|session_?token|"
    r"access_?token|refresh_?token|id_?token|subject_?token|actor_?token|bearer|authorization|"
    r"api_?key|private_?key|credentials?|cookie|set-cookie|x-api-key|token|client_token|jwt|svid_?pem|"
    r"assertion|code_verifier|otp)$",
    re.IGNORECASE,
)
# Keys that contain "token"/"key" but hold ids or fingerprints, not secrets.
SAFE_KEYS = re.compile(
    r"(^|[_\-.])(token_?id|jti|access_?key_?id|accesskeyid|key_?id|kid|token_?type|token_?ttl|"
    r"token_?policies|token_?issue_?time|unique_?token_?identifier|uniquetokenidentifier|"
    r"token_?accessor|accessor|credential_?id|credential_?type|credentials?_?fingerprint|"
    r"requested_token_type|subject_token_type|actor_token_type|issued_token_type|token_?endpoint|"
    r"subject_?from_?web_?identity_?token|token_?source|token_?issuer|token_?audience|token_?expiry|"
    r"token_?expires_?at|token_?lifetime)$",
    re.IGNORECASE,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# a private key block; a cut-off one (truncated record) is redacted up to the end of its string
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.*?-----END [A-Z ]*PRIVATE KEY-----|[^\"]*)", re.DOTALL)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])")
_GH_TOKEN = re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|xox[baprs]-[A-Za-z0-9-]{10,}|hvs\.[A-Za-z0-9_-]{20,})")
_GOOGLE_TOKEN = re.compile(r"\bya29\.[A-Za-z0-9_-]{20,}")
_URL_SECRET_PARAM = re.compile(
    r"(?i)([?&#](?:access_token|id_token|refresh_token|token|code|client_secret|password|passwd|pwd|api_key|apikey|"
    r"key|sig|signature|x-amz-security-token|x-amz-signature|assertion)=)([^&#\s\"]{6,})"
)
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@\"]+):([^/\s@\"]+)@")
# key=value / key: value pairs of secret-named keys inside free text (query strings, headers, messages)
_KV_SECRET = re.compile(
    r"(?i)\b((?:client_|db_|user_)?pass(?:word|wd|phrase)?|pwd|client_?secret|secret|access_?token|refresh_?token|"
    r"id_?token|token|api_?key|x-amz-security-token|session_?token|aws_secret_access_key|secret_?access_?key)"
    r"(\\?\"?\s*[=:]\s*\\?\"?)(?!\[REDACTED)([^\s&;,'\"<>\\]{4,})"
)
# the same with camelCase keys (userPassword="...", "authToken": "...") as JSON text or logs carry them
_KV_CAMEL = re.compile(
    r"\b([a-z][a-zA-Z0-9]*(?:Password|Passwd|Secret|Token))(\\?\"?\s*[=:]\s*\\?\"?)(?!\[REDACTED)([^\s&;,'\"<>\\]{4,})"
)
# AWS STS session tokens: long base64 with a recognisable prefix, wherever they stand
_STS = re.compile(r"\b(?:IQoJb3JpZ2lu|FwoGZXIvYXdz|IQoJ|FQoGZXIvYXdz)[A-Za-z0-9/+=]{40,}")
_HASHED = re.compile(r"^(hmac-sha256|sha256|hmac-sha1):[0-9a-fA-F]+$|^\[REDACTED")


def mark(secret: str) -> str:
    """The fingerprint mark that stands in for a redacted secret."""
    return _mark(secret)


def _mark(secret: str) -> str:
    return "[REDACTED sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:16] + "]"


def _aws_secret(m: re.Match[str]) -> str:
    s = m.group(0)
    # 40 chars of base64 alphabet with mixed classes: an AWS secret access key shape. Ids that are
    # base64 of text (OPA bundle revisions, encoded JSON) decode to printable bytes; keys are random.
    if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() or c in "/+" for c in s):
        if _base64_of_text(s):
            return s
        return _mark(s)
    return s


def _base64_of_text(s: str) -> bool:
    try:
        raw = base64.b64decode(s.rstrip("=") + "=" * (-len(s.rstrip("=")) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(raw) and sum(32 <= b < 127 for b in raw) >= 0.95 * len(raw)


def redact_text(s: str) -> str:
    """Replace secret-looking substrings of free text (cheap substring checks gate each regex)."""
    n = len(s)
    if n < 8 or _HASHED.match(s):
        return s
    if "PRIVATE KEY" in s:
        s = _PEM.sub(lambda m: _mark(m.group(0)), s)
    if "eyJ" in s:
        s = _JWT.sub(lambda m: _mark(m.group(0)), s)
    low = s.lower()
    if "bearer" in low or "basic" in low:
        s = _BEARER.sub(lambda m: m.group(1) + " " + _mark(m.group(0)), s)
    if "gh" in s or "xox" in s or "hvs." in s:
        s = _GH_TOKEN.sub(lambda m: _mark(m.group(0)), s)
    if "://" in s and "@" in s:
        s = _URL_PASSWORD.sub(lambda m: m.group(1) + ":" + _mark(m.group(2)) + "@", s)
    if "=" in s and ("?" in s or "&" in s or "#" in s):
        s = _URL_SECRET_PARAM.sub(lambda m: m.group(1) + _mark(m.group(2)), s)
    if "IQoJ" in s or "FwoG" in s or "FQoG" in s:
        s = _STS.sub(lambda m: _mark(m.group(0)), s)
    if "=" in s or ":" in s:
        s = _KV_SECRET.sub(lambda m: m.group(1) + m.group(2) + _mark(m.group(3)), s)
        s = _KV_CAMEL.sub(lambda m: m.group(1) + m.group(2) + _mark(m.group(3)), s)
    if "ya29." in s:
        s = _GOOGLE_TOKEN.sub(lambda m: _mark(m.group(0)), s)
    if n >= 16 and s[0] in "{[" and s[-1] in "}]":
        s = _embedded_json(s)
    if n >= 40:
        s = _AWS_SECRET.sub(_aws_secret, s)
    return s


def _embedded_json(s: str) -> str:
    """A JSON document carried as a string (AKS ``properties.log``, escaped payloads): redact inside it."""
    try:
        inner = orjson.loads(s)
    except orjson.JSONDecodeError:
        return s
    if not isinstance(inner, dict | list) or not needs_redaction(inner):
        return s
    return orjson.dumps(redact(inner)).decode()


# Members whose every value is secret material, whatever the keys inside are called:
# Kubernetes Secret ``stringData`` (always) and ``data`` (when the object is a Secret).
_ALL_SECRET_CHILDREN = frozenset({"stringData"})


def _secret_container(key: str, parent: dict[str, Any]) -> bool:
    return key in _ALL_SECRET_CHILDREN or (key == "data" and parent.get("kind") == "Secret")


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# Secret members that only one source's exact spelling gives away: Vault AppRole's SecretID is ``secret_id``
# (login requests, secret-id responses), while CloudTrail's ``secretId`` names a Secrets Manager secret (a name
# or ARN the detections read), so neither word list can hold it.
EXACT_SECRET_KEYS: frozenset[str] = frozenset({"secret_id"})


def _secret_leaves(value: list[Any], _depth: int = 0) -> list[str]:
    """The strings and numbers of an array held under a secret name (nested arrays included, objects not: their
    members are judged by their own names): every one of them is a secret (``"password": ["..."]``)."""
    out: list[str] = []
    for v in value:
        tv = type(v)
        if tv is str or tv is int:
            sv = str(v)
            if sv and not _HASHED.match(sv):
                out.append(sv)
        elif tv is list and _depth < 64:
            out.extend(_secret_leaves(v, _depth + 1))
    return out


@lru_cache(maxsize=65_536)
def is_secret_key(key: str) -> bool:
    """Does a member named ``key`` hold a secret (cached: keys repeat across records)?

    camelCase and PascalCase keys are split into words first (``webIdentityToken``,
    ``SAMLAssertion``), so the word patterns apply to every naming style.
    """
    if key in EXACT_SECRET_KEYS:
        return True
    k = _CAMEL.sub("_", key)
    return bool(SECRET_KEYS.search(k)) and not SAFE_KEYS.search(k)


def needs_redaction(value: Any, _depth: int = 0) -> bool:
    """Whether ``redact(value)`` would change anything (a read-only, allocation-free pass).

    Exact ``type() is`` checks: decoded JSON holds only builtin types, and isinstance with
    unions or ABCs costs several times more on this hot path.
    """
    t = type(value)
    if t is str:
        return len(value) >= 8 and redact_text(value) != value
    if t is dict:
        if _depth > 64:
            return True
        for k, v in value.items():
            tv = type(v)
            if tv is str:
                if (is_secret_key(k) and v and not _HASHED.match(v)) or (len(v) >= 8 and redact_text(v) != v):
                    return True
            elif tv is dict or tv is list:
                if (tv is dict and v and _secret_container(k, value)) or needs_redaction(v, _depth + 1):
                    return True
                if tv is list and is_secret_key(k) and _secret_leaves(v):
                    return True
            elif tv is int and is_secret_key(k):
                return True
        return False
    if t is list:
        if _depth > 64:
            return True
        return any(needs_redaction(v, _depth + 1) for v in value if type(v) in (str, dict, list))
    return False


def _text_may_hold_secret_value(text: str) -> bool:
    """A whole-document pre-check for secret-looking values: C-speed substring tests and a few scans.

    False means no string value of the document can match a value pattern; True means look closer.
    """
    if "PRIVATE KEY" in text or "eyJ" in text or "ya29." in text or "hvs." in text or "xox" in text:
        return True
    low = text.lower()
    if "bearer" in low or "basic " in low:
        return True
    if "gh" in text and _GH_TOKEN.search(text):
        return True
    if "@" in text and "://" in text and _URL_PASSWORD.search(text):
        return True
    if "=" in text and _URL_SECRET_PARAM.search(text):
        return True
    if "IQoJ" in text or "FwoG" in text or "FQoG" in text:  # STS session tokens
        return True
    if _KV_SECRET.search(text) or _KV_CAMEL.search(text):  # password=..., userPassword: ... in free text
        return True
    # a string value that is itself a JSON document
    return '"{' in text or '"[' in text


def _has_secret_key(value: Any, _depth: int = 0) -> bool:
    """Whether a member is named like a secret and holds a value, or a long string looks like a secret key.

    (AWS secret access keys have no marker to search the whole text for; only strings of 40
    characters or more can hold one, and there are few of those.)
    """
    t = type(value)
    if t is dict:
        if _depth > 64:
            return True
        for k, v in value.items():
            tv = type(v)
            if tv is str:
                if v and is_secret_key(k) and not _HASHED.match(v):
                    return True
                if len(v) >= 40 and _AWS_SECRET.search(v) and _AWS_SECRET.sub(_aws_secret, v) != v:
                    return True
            elif tv is dict:
                if (v and _secret_container(k, value)) or _has_secret_key(v, _depth + 1):
                    return True
            elif tv is list:
                if (is_secret_key(k) and _secret_leaves(v)) or _has_secret_key(v, _depth + 1):
                    return True
            elif tv is int and is_secret_key(k):
                return True
        return False
    if t is list:
        if _depth > 64:
            return True
        return any(_has_secret_key(v, _depth + 1) for v in value
                   if type(v) is dict or type(v) is list or (type(v) is str and len(v) >= 40))
    if t is str:
        return len(value) >= 40 and _AWS_SECRET.sub(_aws_secret, value) != value
    return False


# --- the chunk screen ----------------------------------------------------------------------------------
# One RE2 pass (Arrow compute, C++) over a chunk's raw records finds those that may hold a secret: a
# superset of everything ``redact_json`` would change. The rest skip the per-record Python checks.
# Soundness: the patterns match raw JSON text, so records whose text differs from their decoded strings
# (any backslash escape) or that need Unicode-aware matching (any non-ASCII byte) are always flagged.
# Without escapes a JSON string holds no quote, so a pattern that stops at quotes stays inside one string.
_B64 = "A-Za-z0-9/+="
# The last word of every SECRET_KEYS alternative, any case, underscores optional (``is_secret_key`` splits
# camelCase with underscores, so the raw key holds the same letters). "key" only in the compounds that
# SECRET_KEYS names (api/private/secret access key): S3's "key", "accessKeyId" and the like hold no secret.
_SECRET_KEY_END = (r"(?i:pass|passwd|password|passphrase|pwd|secret|token|bearer|authorization|"
                   r"api_?key|api-key|private_?key|access_?key|credential|credentials|cookie|jwt|pem|assertion|"
                   r"verifier|otp)")
# A member named like a secret whose value is one that ``redact`` replaces: a string, a number, or an array (its
# strings and numbers). (Objects under such a name are walked member by member, and the patterns here see their
# members; null, true and false are never replaced.)
_SECRET_MEMBER = (rf'"(?:[^"]*{_SECRET_KEY_END}|{"|".join(map(re.escape, sorted(EXACT_SECRET_KEYS)))})"'
                  r'\s*:\s*[-"0-9\[]')
# A string a source already hashed (Vault's audit HMACs) is kept as it is (``_HASHED``): before the member
# pattern runs on a record it flagged, such strings become null. Only a whole string token matches: a quote
# followed by a letter opens a string, and the token ends at the next quote.
_HASHED_STRING = r'"(?:hmac-sha256|sha256|hmac-sha1):[0-9a-fA-F]+"'
_SCREEN_OTHER = "|".join(f"(?:{p})" for p in (
    r"\\",                                   # any escape: decoded text differs from the raw text
    r'"stringData"', r'"kind"\s*:\s*"Secret"',  # secret containers
    r"PRIVATE KEY", r"eyJ", r"(?i:bearer|basic)", r"gh[pousr]_", r"xox[baprs]-", r"hvs\.", r"ya29\.",
    r"IQoJ|FwoG|FQoG",                          # PEM, JWT, auth headers, GitHub/Slack/Vault/Google, STS
    r"://[^/\s:@\"]+:[^/\s@\"]+@",            # URL with a password
    r"[?&#](?i:access_token|id_token|refresh_token|token|code|client_secret|password|passwd|pwd|api_key|"
    r"apikey|key|sig|signature|x-amz-security-token|x-amz-signature|assertion)=",
    # key=value / key: value pairs in free text (_KV_SECRET, _KV_CAMEL): inside one string, so no quote
    # between the word and the separator (a member name and its colon are the member pattern's)
    r"(?i:pass|passwd|password|passphrase|pwd|secret|token|key)\s*[=:]",
    r'"[{\[]',                                 # a string that is itself a JSON document
    rf"(?:^|[^{_B64}])[{_B64}]{{40}}(?:[^{_B64}]|$)",  # AWS secret access key shape
))
_SCREEN = f"(?:{_SCREEN_OTHER})|(?:{_SECRET_MEMBER})"


def screen(raws: list[bytes]) -> list[bool]:
    """Per raw record: may it hold a secret? ``False`` is a guarantee that ``redact_json`` changes nothing."""
    # non-ASCII needs Unicode-aware matching; deep nesting (> 64 levels) is cut by ``redact``
    flags = [not r.isascii() or r.count(b"{") + r.count(b"[") > 64 for r in raws]
    ascii_idx = [i for i, f in enumerate(flags) if not f]
    if not ascii_idx:
        return flags
    arr = pa.array([raws[i] for i in ascii_idx], pa.binary()).cast(pa.string())
    hits = pc.match_substring_regex(arr, _SCREEN).to_pylist()
    # Second look at the few records hit: is a secret-named member's value only a source's hash?
    again = [j for j, h in enumerate(hits) if h]
    if again:
        sub = arr.take(pa.array(again, pa.int64()))
        other = pc.match_substring_regex(sub, _SCREEN_OTHER)
        member = pc.match_substring_regex(pc.replace_substring_regex(sub, _HASHED_STRING, "null"), _SECRET_MEMBER)
        for j, h in zip(again, pc.or_(other, member).to_pylist(), strict=True):
            hits[j] = h
    for i, h in zip(ascii_idx, hits, strict=True):
        flags[i] = bool(h)
    return flags


def redact_json(text: str, value: Any) -> str:
    """The JSON text of ``value`` (already decoded from ``text``) with secrets redacted.

    Most records hold no secret: then ``text`` itself is returned, with no re-serialisation.
    """
    if not _has_secret_key(value) and not (_text_may_hold_secret_value(text) and needs_redaction(value)):
        return text
    return orjson.dumps(redact(value), default=str).decode()


def redact_attributes(value: dict[str, Any]) -> str:
    """JSON text of a parser's ``attributes`` dict, secrets redacted."""
    text = orjson.dumps(value, default=str).decode()
    return redact_json(text, value)


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of a decoded JSON value with secrets replaced by fingerprint marks."""
    if _depth > 64:
        return "[TRUNCATED: nested deeper than 64]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            ks = str(k)
            if isinstance(v, str | bytes | int) and not isinstance(v, bool) and is_secret_key(ks):
                sv = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                out[ks] = sv if (not sv or _HASHED.match(sv)) else _mark(sv)
            elif isinstance(v, list) and is_secret_key(ks):
                out[ks] = _redact_secret_list(v, _depth + 1)
            elif isinstance(v, dict) and _secret_container(ks, value):
                out[ks] = {str(ck): _mark(str(cv)) if isinstance(cv, str | int) and not isinstance(cv, bool)
                           else redact(cv, _depth + 2) for ck, cv in v.items()}
            else:
                out[ks] = redact(v, _depth + 1)
        return out
    if isinstance(value, list):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _redact_secret_list(value: list[Any], _depth: int) -> list[Any]:
    """An array under a secret name: its strings and numbers marked (``_secret_leaves``), objects walked."""
    if _depth > 64:
        return ["[TRUNCATED: nested deeper than 64]"]
    out: list[Any] = []
    for v in value:
        if isinstance(v, str | int) and not isinstance(v, bool):
            sv = str(v)
            out.append(sv if (not sv or _HASHED.match(sv)) else _mark(sv))
        elif isinstance(v, list):
            out.append(_redact_secret_list(v, _depth + 1))
        else:
            out.append(redact(v, _depth + 1))
    return out


def secret_values(value: Any, _depth: int = 0) -> set[str]:
    """The values held under secret-named keys (and in secret containers) anywhere in ``value``."""
    out: set[str] = set()
    if _depth > 64:
        return out
    if type(value) is dict:
        for k, v in value.items():
            tv = type(v)
            if (tv is str or tv is int) and is_secret_key(str(k)):
                sv = str(v)
                if len(sv) >= 4 and not _HASHED.match(sv):
                    out.add(sv)
            elif tv is dict and _secret_container(str(k), value):
                out.update(str(cv) for cv in v.values() if type(cv) in (str, int) and len(str(cv)) >= 4)
            elif tv is dict or tv is list:
                if tv is list and is_secret_key(str(k)):
                    out.update(x for x in _secret_leaves(v) if len(x) >= 4)
                out |= secret_values(v, _depth + 1)
            elif tv is str and len(v) >= 16 and v[0] in "{[":
                try:
                    out |= secret_values(orjson.loads(v), _depth + 1)
                except orjson.JSONDecodeError:
                    pass
    elif type(value) is list:
        for v in value:
            if type(v) is dict or type(v) is list:
                out |= secret_values(v, _depth + 1)
    return out


def scrub(s: str, secrets: set[str] | frozenset[str] = frozenset()) -> str:
    """Text with the given secret values and any secret-looking substrings replaced by marks."""
    for sv in secrets:
        if sv in s:
            s = s.replace(sv, _mark(sv))
    return redact_text(s)
