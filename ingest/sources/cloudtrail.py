"""AWS CloudTrail records: one per line, ``{"Records": [...]}`` log files, or event-history items.

Record fields as CloudTrail writes them: ``eventVersion``, ``eventID``, ``eventTime``,
``eventSource``, ``eventName``, ``awsRegion``, ``sourceIPAddress`` (an address or a service name
such as ``ec2.amazonaws.com``), ``userAgent``, ``userIdentity`` (with ``sessionContext``),
``requestParameters``, ``responseElements``, ``errorCode``/``errorMessage``, ``requestID``,
``resources``. Any of the optional ones may be missing or null. STS responses carry the new
session token; it is never copied (the normaliser redacts it in ``raw``), only the new access key id.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import orjson

from ingest.errors import ParseError
from ingest.events import fingerprint, record_event_id, utc
from ingest.sources._fields import _m, _s
from ingest.sources.base import Parser, Record, Row, need
from ingest.sources.spire import identity_type

FORMAT = "cloudtrail"
# STS calls that mint temporary credentials: eventName -> activity
_ISSUING = {
    "AssumeRole": "role.assumed",
    "AssumeRoleWithWebIdentity": "role.assumed",
    "AssumeRoleWithSAML": "role.assumed",
    "GetSessionToken": "token.issued",
    "GetFederationToken": "token.issued",
}
# errorCodes meaning "the caller was not allowed" (authorization or authentication refusal)
_DENY_CODES = {
    "accessdenied",
    "accessdeniedexception",
    "unauthorizedoperation",
    "client.unauthorizedoperation",
    "unauthorizedaccess",
    "unauthorizedexception",
    "forbidden",
    "forbiddenexception",
    "authorizationerror",
    "notauthorized",
    "authfailure",
    "expiredtoken",
    "expiredtokenexception",
    "invalidclienttokenid",
    "signaturedoesnotmatch",
    "invalididentitytoken",
    "idpcommunicationerror",
    "idprejectedclaim",
}
_TASK = re.compile(r"^task[-_][A-Za-z0-9._-]+$")
_EXPIRATION_FORMATS = ("%b %d, %Y, %I:%M:%S %p", "%b %d, %Y %I:%M:%S %p")
_HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
_AGENTISH = re.compile(r"(^|[-_.])agents?([-_.]|$)", re.IGNORECASE)
_SERVICEISH = re.compile(r"(^|[-_.])(svc|service|bot|ci|automation|deploy)([-_.]|$)", re.IGNORECASE)


def _looks_like_record(r: Any) -> bool:
    if not isinstance(r, Mapping) or not isinstance(r.get("eventName"), str):
        return False
    src = r.get("eventSource")
    if isinstance(src, str):
        return src.endswith(".amazonaws.com") and ("eventTime" in r or "eventVersion" in r)
    return "eventVersion" in r and "eventID" in r and "eventTime" in r


def sniff(rec: Record) -> bool:
    recs = rec.get("Records")
    if isinstance(recs, list):
        return not recs or any(_looks_like_record(r) for r in recs[:16])
    if isinstance(rec.get("CloudTrailEvent"), str) and "EventId" in rec:
        return True  # an item of LookupEvents (event history) output
    return _looks_like_record(rec)


def split(rec: Record) -> list[Record] | None:
    """A ``{"Records": [...]}`` log file into its records; an event-history item into its record."""
    recs = rec.get("Records")
    if isinstance(recs, list):
        return list(recs) or None  # an empty file is parsed (and dead-lettered) as one record
    inner = rec.get("CloudTrailEvent")
    if isinstance(inner, str) and "EventId" in rec:
        decoded = orjson.loads(inner)
        if not isinstance(decoded, Mapping):
            raise ParseError("CloudTrailEvent is not a JSON object")
        return [decoded]
    return None


def _expiration(v: Any) -> dt.datetime | None:
    """STS ``credentials.expiration``: CloudTrail writes ``"Oct 2, 2019, 11:12:29 PM"`` (UTC); accept ISO too."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return utc(v)
    except ValueError:
        pass
    s = _s(v)
    if s is None:
        return None
    for fmt in _EXPIRATION_FORMATS:
        try:
            d = dt.datetime.strptime(s.strip(), fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        return d if 1970 <= d.year <= 2200 else None
    return None


def _role_from_session_arn(arn: str) -> str | None:
    # arn:aws:sts::123456789012:assumed-role/RoleName/SessionName -> arn:aws:iam::123456789012:role/RoleName
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        segs = parts[5].split("/")
        if len(segs) >= 3:
            return f"{parts[0]}:{parts[1]}:iam::{parts[4]}:role/{'/'.join(segs[1:-1])}"
    return None


def _actor(ui: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(actor_id, actor_type, role session name) from ``userIdentity``."""
    typ = _s(ui.get("type"))
    arn = _s(ui.get("arn"))
    user = _s(ui.get("userName"))
    principal = _s(ui.get("principalId"))
    if typ == "AssumedRole":
        issuer = _m(_m(ui.get("sessionContext")).get("sessionIssuer"))
        role = _s(issuer.get("arn")) or (arn and _role_from_session_arn(arn)) or arn or principal
        session = None
        if arn and ":assumed-role/" in arn:
            session = arn.rsplit("/", 1)[-1]
        elif principal and ":" in principal:
            session = principal.split(":", 1)[1]
        return role, "role" if role else None, session or None
    if typ == "IAMUser":
        ident = arn or user or principal
        if user == _HIDDEN:
            return None, None, None
        kind = "human"
        if user and _AGENTISH.search(user):
            kind = "agent"
        elif user and _SERVICEISH.search(user):
            kind = "service_account"
        return ident, kind if ident else None, None
    if typ == "Root":
        ident = arn or (f"root:{ui['accountId']}" if _s(ui.get("accountId")) else None)
        return ident, "human" if ident else None, None
    if typ == "AWSService":
        ident = _s(ui.get("invokedBy")) or principal
        return ident, "service_account" if ident else None, None
    if typ == "WebIdentityUser":
        ident = user or principal
        return ident, (identity_type(ident) or "unknown") if ident else None, None
    if typ in ("SAMLUser", "FederatedUser", "IdentityCenterUser"):
        ident = arn or user or _s(_m(ui.get("onBehalfOf")).get("userId")) or principal
        return ident, "human" if ident else None, None
    ident = arn or user or principal or _s(ui.get("accountId"))
    return ident, ("unknown" if ident else None), None


def _key_type(key: str | None) -> str | None:
    if not key:
        return None
    return "aws_sts_session" if key.startswith("ASIA") else "aws_access_key"


def _web_identity_jti(ui: Mapping[str, Any]) -> str | None:
    for wid in (ui.get("webIdFederationData"), _m(ui.get("sessionContext")).get("webIdFederationData")):
        for k, v in _m(_m(wid).get("attributes")).items():
            if isinstance(k, str) and (k == "jti" or k.endswith(":jti")) and _s(v):
                return _s(v)
    return None


def _resource(rec: Record, req: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    arns: list[str] = []
    res = rec.get("resources")
    if isinstance(res, list):
        for r in res:
            a = _s(_m(r).get("ARN")) or _s(_m(r).get("arn"))
            if a:
                arns.append(a)
    if arns:
        return arns[0], arns
    bucket = _s(req.get("bucketName"))
    if bucket:
        key = _s(req.get("key"))
        return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else ""), arns
    for k in ("roleArn", "secretId", "functionName", "tableName", "keyId", "name", "userName", "roleName"):
        v = _s(req.get(k))
        if v:
            return v, arns
    return None, arns


def parse(rec: Record) -> list[Row]:
    if "Records" in rec:
        raise ParseError(
            "empty CloudTrail Records envelope" if rec.get("Records") == [] else "Records is not a list"
        )
    name = need(rec, "eventName")
    if not isinstance(name, str) or not name:
        raise ParseError("eventName is not a string")
    try:
        t = utc(need(rec, "eventTime"))
    except ValueError as e:
        raise ParseError(f"bad eventTime: {e}") from e
    if t is None:
        raise ParseError("missing required field eventTime")
    ui = _m(rec.get("userIdentity"))
    req = _m(rec.get("requestParameters"))
    resp = _m(rec.get("responseElements"))
    sc = _m(ui.get("sessionContext"))

    actor_id, actor_type, session_name = _actor(ui)
    caller_key = _s(ui.get("accessKeyId"))
    source_identity = _s(ui.get("sourceIdentity")) or _s(sc.get("sourceIdentity"))
    error = _s(rec.get("errorCode"))
    attrs: dict[str, Any] = {}

    activity = _ISSUING.get(name)
    if activity:
        category = "credential"
        creds = _m(resp.get("credentials"))
        cred_id = _s(creds.get("accessKeyId"))
        cred_type: str | None = "aws_sts_session"
        parent = caller_key or _web_identity_jti(ui)
        if parent is None:
            tok = _s(req.get("webIdentityToken"))
            if tok and tok != _HIDDEN:
                parent = fingerprint(tok)
        expires = _expiration(creds.get("expiration"))
        if creds.get("expiration") is not None and expires is None:
            attrs["credential_expiration_raw"] = creds.get("expiration")
        target = _s(req.get("roleArn")) or _s(_m(resp.get("federatedUser")).get("arn"))
        rsn = _s(req.get("roleSessionName"))
        task = rsn if rsn and _TASK.match(rsn) else None
        if task is None and session_name and _TASK.match(session_name):
            task = session_name  # a role chain hop made from inside a task's session
        source_identity = source_identity or _s(req.get("sourceIdentity"))
        for k_out, v in (
            ("role_session_name", rsn),
            ("assumed_role_arn", _s(_m(resp.get("assumedRoleUser")).get("arn"))),
            ("duration_seconds", req.get("durationSeconds")),
            ("web_identity_provider", _s(resp.get("provider"))),
            ("web_identity_subject", _s(resp.get("subjectFromWebIdentityToken"))),
            ("web_identity_audience", _s(resp.get("audience"))),
        ):
            if v is not None and not isinstance(v, Mapping | list):
                attrs[k_out] = v
    else:
        category = "authentication" if name == "ConsoleLogin" else "api_activity"
        activity = "session.started" if name == "ConsoleLogin" else "api.call"
        cred_id, cred_type = caller_key, _key_type(caller_key)
        parent = expires = target = None
        task = session_name if session_name and _TASK.match(session_name) else None

    login_failed = name == "ConsoleLogin" and resp.get("ConsoleLogin") == "Failure"
    deny = error is not None and error.lower() in _DENY_CODES
    resource, arns = _resource(rec, req)
    on_behalf_of = source_identity if source_identity and source_identity != actor_id else None

    for k_out, v in (
        ("event_source", rec.get("eventSource")),
        ("aws_region", rec.get("awsRegion")),
        ("event_type", rec.get("eventType")),
        ("read_only", rec.get("readOnly")),
        ("recipient_account_id", rec.get("recipientAccountId")),
        ("account_id", ui.get("accountId")),
        ("identity_type", ui.get("type")),
        ("session_arn", ui.get("arn") if ui.get("type") == "AssumedRole" else None),
        ("session_name", session_name),
        ("invoked_by", ui.get("invokedBy") if ui.get("type") != "AWSService" else None),
        ("mfa_authenticated", _m(sc.get("attributes")).get("mfaAuthenticated")),
        ("web_id_provider", _m(sc.get("webIdFederationData")).get("federatedProvider")),
        ("error_message", rec.get("errorMessage")),
        ("shared_event_id", rec.get("sharedEventID")),
        ("vpc_endpoint_id", rec.get("vpcEndpointId")),
    ):
        if v not in (None, "") and not isinstance(v, Mapping | list):
            attrs[k_out] = v
    if len(arns) > 1:
        attrs["resources"] = arns

    row: Row = {
        "event_id": f"{FORMAT}:{native}"
        if (native := _s(rec.get("eventID")))
        else record_event_id(FORMAT, rec),
        "time": t,
        "source": "cloudtrail",
        "format": FORMAT,
        "category": category,
        "activity": activity,
        "actor_id": actor_id,
        "actor_type": actor_type,
        "on_behalf_of": on_behalf_of,
        "target_id": target,
        "src_ip": _s(rec.get("sourceIPAddress")),
        "user_agent": _s(rec.get("userAgent")),
        "credential_id": cred_id,
        "credential_type": cred_type if (cred_id or parent) else None,
        "credential_parent_id": parent,
        "credential_expires_at": expires,
        "action": name,
        "resource": resource,
        "decision": "deny" if deny else None,
        "reason": error or (_s(rec.get("errorMessage")) if login_failed else None),
        "outcome": "failure" if (error or login_failed) else "success",
        "task_id": task,
        "request_id": _s(rec.get("requestID")),
        "attributes": attrs or None,
    }
    return [{k: v for k, v in row.items() if v is not None}]


PARSER = Parser(
    name=FORMAT,
    family="api_audit",
    sniff=sniff,
    parse=parse,
    description='AWS CloudTrail records (single, {"Records": [...]} files, event-history items).',
    split=split,
)
