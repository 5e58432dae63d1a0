"""The canonical event: the one contract every stage depends on.

Names follow OCSF where OCSF has one. ``event_id``, ``time``, ``actor_id`` and
``credential_id`` are fixed names that scripts rely on. Credential fields hold
fingerprints (a token's ``jti``, an access key id, or ``sha256:<hex>`` of the
secret), never the secret itself. Bump ``SCHEMA_VERSION`` on any change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = "1.0"

CATEGORIES = ("authentication", "credential", "authorization", "tool_call", "api_activity")
ACTOR_TYPES = ("human", "agent", "workload", "service_account", "role", "unknown")
DECISIONS = ("allow", "deny", "error")

_ts = pa.timestamp("us", tz="UTC")
_list = pa.list_(pa.string())


@dataclass(frozen=True)
class Field:
    """One canonical column: its name, Arrow type, whether required, and what it means."""

    name: str
    type: pa.DataType
    required: bool
    doc: str


FIELDS: tuple[Field, ...] = (
    # identity of the event
    Field("event_id", pa.string(), True, "Stable id: `<format>:<source's own id>`, else `<format>:sha256(raw)[:32]`."),
    Field("time", _ts, True, "When the event happened, UTC, microseconds."),
    Field("day", pa.string(), True, "Partition key, `YYYY-MM-DD` of `time` (UTC)."),
    Field("ingested_at", _ts, True, "When the collector wrote it."),
    Field("source", pa.string(), True, "The system that wrote it (keycloak, spire, opa, mcp, cloudtrail, vault, okta, ...)."),
    Field("format", pa.string(), True, "The parser that read it (one per native format)."),
    Field("category", pa.string(), True, "OCSF-like category: " + ", ".join(CATEGORIES) + "."),
    Field("activity", pa.string(), True, "What happened: token.issued, token.exchanged, token.revoked, token.refreshed, "
          "session.started, svid.minted, decision, tool.invoked, api.call, role.assumed, secret.read, secret.rotated, "
          "secret.revoked, ..."),
    # who
    Field("actor_id", pa.string(), False, "The identity that acted (user id, SPIFFE ID, ARN, service principal)."),
    Field("actor_type", pa.string(), False, "One of " + ", ".join(ACTOR_TYPES) + "."),
    Field("on_behalf_of", pa.string(), False, "The person (or identity) the actor acted for, when delegated."),
    Field("delegation_chain", _list, False, "Delegation chain, outermost (the origin) first, the actor last."),
    Field("target_id", pa.string(), False, "The identity acted upon: the subject a credential was issued for, the role "
          "assumed, the user impersonated."),
    Field("src_workload", pa.string(), False, "The workload the request came from (SPIFFE ID, pod, instance)."),
    Field("src_ip", pa.string(), False, "Source address as recorded (may be a service name)."),
    Field("user_agent", pa.string(), False, "Client user agent."),
    # with what
    Field("credential_id", pa.string(), False, "Fingerprint of the credential used or, for issuance events, issued."),
    Field("credential_type", pa.string(), False, "oauth_access_token, refresh_token, x509_svid, jwt_svid, "
          "aws_access_key, aws_sts_session, session, vault_token, secret, ..."),
    Field("credential_parent_id", pa.string(), False, "For issuance: the credential presented to obtain this one."),
    Field("credential_expires_at", _ts, False, "Expiry of `credential_id`, when known."),
    Field("scope", _list, False, "Scopes, permissions or policies carried by the credential or requested."),
    # on what
    Field("action", pa.string(), False, "The operation (tool name, API eventName, verb, permission)."),
    Field("tool", pa.string(), False, "The tool called, for tool calls."),
    Field("resource", pa.string(), False, "The resource acted on (ARN, URI, path, object ref)."),
    Field("resource_sensitivity", pa.string(), False, "low, medium, high, critical, when the source says."),
    # decided how
    Field("decision", pa.string(), False, "Authorization result: allow, deny, error."),
    Field("policy_id", pa.string(), False, "The policy (OPA path, IAM policy, CA policy) that decided."),
    Field("policy_version", pa.string(), False, "Its version (OPA bundle revision, policy hash)."),
    Field("reason", pa.string(), False, "Why, as the source says (deny reason, error code)."),
    Field("outcome", pa.string(), False, "success, failure, unknown: whether the action itself succeeded."),
    # correlation
    Field("task_id", pa.string(), False, "The agent task this belongs to."),
    Field("trace_id", pa.string(), False, "W3C trace id."),
    Field("span_id", pa.string(), False, "W3C span id."),
    Field("parent_span_id", pa.string(), False, "Parent span id."),
    Field("session_id", pa.string(), False, "Login or agent session id."),
    Field("request_id", pa.string(), False, "Request id shared between systems (OPA decision id, API request id)."),
    # evidence
    Field("attributes", pa.string(), False, "Format-specific extras worth keeping, as a JSON object."),
    Field("origin", pa.string(), True, "Source position: `file:<path>:<line>` or `kafka:<topic>/<partition>@<offset>`."),
    Field("raw", pa.string(), True, "The original record, secrets redacted, as JSON text."),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED: frozenset[str] = frozenset(f.name for f in FIELDS if f.required)
# Filled in by parsers; the collector fills the rest (ingested_at, day, origin, raw).
COLLECTOR_FIELDS: frozenset[str] = frozenset({"ingested_at", "day", "origin", "raw"})

SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=not f.required) for f in FIELDS],
    metadata={b"decisionpath.schema_version": SCHEMA_VERSION.encode()},
)

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("dl_id", pa.string(), nullable=False),
        pa.field("received_at", _ts, nullable=False),
        pa.field("day", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("format_hint", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw_size", pa.int64(), nullable=False),
        pa.field("raw_sha256", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ],
    metadata={b"decisionpath.schema_version": SCHEMA_VERSION.encode()},
)


def fingerprint(secret: str | bytes) -> str:
    """Credential fingerprint of a secret (token, key, password): ``sha256:<hex>``."""
    data = secret.encode() if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(data).hexdigest()


def content_event_id(fmt: str, raw: bytes | str) -> str:
    """Event id for a record whose source gives no id of its own."""
    data = raw.encode() if isinstance(raw, str) else raw
    return f"{fmt}:{hashlib.sha256(data).hexdigest()[:32]}"


def utc(value: Any) -> dt.datetime | None:
    """Parse an ISO 8601 string, epoch seconds/ms/ns, or datetime into an aware UTC datetime.

    Returns None for None/""; raises ValueError for anything it cannot read or that is out of range.
    """
    if value is None or value == "":
        return None
    if type(value) is str:  # the common case: Python 3.11 reads "Z" and long fractions itself
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            d = None
        if d is not None and d.tzinfo is not None and d.tzinfo.utcoffset(d) == dt.timedelta(0):
            if not (1970 <= d.year <= 2200):
                raise ValueError(f"timestamp out of range: {value!r}")
            return d if d.tzinfo is dt.UTC else d.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a timestamp: {value!r}")
        v = float(value)
        if abs(v) > 1e17:
            v /= 1e9
        elif abs(v) > 1e14:
            v /= 1e6
        elif abs(v) > 1e11:
            v /= 1e3
        try:
            d = dt.datetime.fromtimestamp(v, tz=dt.UTC)
        except (OverflowError, OSError, ValueError) as e:
            raise ValueError(f"timestamp out of range: {value!r}") from e
    elif isinstance(value, str):
        s = value.strip()
        if s.endswith("Z") or s.endswith("z"):
            s = s[:-1] + "+00:00"
        # Python < 3.12 fromisoformat rejects more than 6 fractional digits (OPA, k8s write 9).
        if "." in s:
            head, _, tail = s.partition(".")
            frac = ""
            i = 0
            while i < len(tail) and tail[i].isdigit():
                i += 1
            frac, rest = tail[:i], tail[i:]
            s = f"{head}.{frac[:6].ljust(6, '0')}{rest}" if frac else head + rest
        try:
            d = dt.datetime.fromisoformat(s)
        except ValueError as e:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from e
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    d = d.astimezone(dt.UTC)
    if not (1970 <= d.year <= 2200):
        raise ValueError(f"timestamp out of range: {value!r}")
    return d


def record_event_id(fmt: str, rec: Any) -> str:
    """Event id from a decoded record's content (sorted keys), for formats with no id of their own."""
    import orjson

    return content_event_id(fmt, orjson.dumps(rec, option=orjson.OPT_SORT_KEYS, default=str))
