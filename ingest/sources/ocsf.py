"""OCSF JSON events, passed through: Authentication (3002), Authorize Session (3003) and
API Activity (6003). The canonical event already follows OCSF names, so this is mostly renaming.

``time`` is epoch milliseconds (``time_dt`` is read when ``time`` is absent). Other classes are
not claimed by the sniffer (they land in the dead-letter as "unsupported format"); parsing one
with ``--format ocsf`` fails with ``unsupported format: OCSF class N``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError, UnsupportedFormat
from ingest.events import record_event_id
from ingest.sources._lenient import d, get, gs, lst, opt_time, prune, req_time, strs
from ingest.sources.base import Parser, Record, Row

FORMAT = "ocsf"
SUPPORTED = {3002: "Authentication", 3003: "Authorize Session", 6003: "API Activity"}
_AUTH_ACTIVITY = {1: "session.started", 2: "session.ended", 3: "token.issued", 4: "token.issued",
                  5: "token.refreshed", 6: "authenticated"}
_AUTHZ_ACTIVITY = {1: "privileges.assigned", 2: "groups.assigned"}
_USER_TYPES = {"user": "human", "admin": "human", "iamuser": "human", "root": "human",
               "system": "service_account", "service": "service_account", "awsservice": "service_account",
               "serviceaccount": "service_account", "assumedrole": "role", "role": "role",
               "agent": "agent", "workload": "workload"}
_USER_TYPE_IDS = {1: "human", 2: "human", 3: "service_account"}


def _class(rec: Mapping[str, Any]) -> int | None:
    c = rec.get("class_uid")
    return c if isinstance(c, int) and not isinstance(c, bool) else None


def sniff(rec: Record) -> bool:
    return _class(rec) in SUPPORTED and isinstance(rec.get("metadata"), Mapping)


def _user_id(u: Any) -> str | None:
    """Login first (email, then user name), then uid: the same rule the IdP parsers use."""
    return gs(u, "email_addr") or gs(u, "name") or gs(u, "uid")


def _user_type(u: Any) -> str | None:
    if not isinstance(u, Mapping) or not u:
        return None
    t = (gs(u, "type") or "").lower().replace(" ", "")
    if t in _USER_TYPES:
        return _USER_TYPES[t]
    tid = u.get("type_id")
    return _USER_TYPE_IDS.get(tid, "unknown") if isinstance(tid, int) else "unknown"


def _cred_type(cred: str) -> str:
    """OCSF ``credential_uid`` is free-form; AWS key ids say what they are by their prefix."""
    if cred.startswith("ASIA"):
        return "aws_sts_session"
    if cred.startswith("AKIA"):
        return "aws_access_key"
    return "session_credential"


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _authz(actor: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(decision, policy_id, policy_version, reason) from ``actor.authorizations``."""
    for a in lst(get(actor, "authorizations")):
        a = d(a)
        dec = (gs(a, "decision") or "").lower()
        decision = "allow" if dec.startswith("allow") or dec == "granted" else \
            "deny" if dec.startswith("den") or dec in ("forbid", "rejected") else None
        pol = d(a.get("policy"))
        if decision or pol:
            return decision, gs(pol, "uid") or gs(pol, "name"), gs(pol, "version"), gs(pol, "desc")
    return None, None, None, None


def parse(rec: Record) -> list[Row]:
    cls = _class(rec)
    if cls is None:
        raise ParseError("missing required field class_uid")
    if cls not in SUPPORTED:
        raise UnsupportedFormat(f"OCSF class {cls}")
    t = req_time(rec.get("time") if rec.get("time") is not None else rec.get("time_dt"), "time")
    meta = d(rec.get("metadata"))
    actor = d(rec.get("actor"))
    user = d(rec.get("user"))
    actor_user = d(actor.get("user"))
    session = d(rec.get("session")) or d(actor.get("session"))
    src = d(rec.get("src_endpoint"))
    http = d(rec.get("http_request"))
    activity_id = _int(rec.get("activity_id"))
    status_id = _int(rec.get("status_id"))
    outcome = {1: "success", 2: "failure"}.get(status_id or -1, "unknown" if status_id is not None else None)
    if outcome is None and gs(rec, "status"):
        st = (gs(rec, "status") or "").lower()
        outcome = "success" if st == "success" else "failure" if st == "failure" else "unknown"
    reason = (gs(rec, "status_detail") or gs(rec, "status_code") or gs(rec, "status")) \
        if outcome == "failure" else None

    # 3002/3003 name the subject in ``user``; ``actor.user`` (when different) initiated it for them.
    subject = _user_id(user)
    initiator = _user_id(actor_user)
    actor_id = initiator or subject
    actor_kind = _user_type(actor_user) if initiator else _user_type(user)
    if actor_kind in (None, "unknown") and initiator == subject:
        actor_kind = _user_type(user) or actor_kind
    target = subject if (initiator and subject and subject != initiator) else None

    cred = gs(session, "credential_uid")
    sess = gs(session, "uid")
    trace = d(rec.get("trace"))
    decision, policy_id, policy_version, policy_reason = _authz(actor)
    resources = [d(r) for r in lst(rec.get("resources"))]
    product = d(meta.get("product"))
    row: dict[str, Any] = {
        "event_id": f"{FORMAT}:{gs(meta, 'uid')}" if gs(meta, "uid") else record_event_id(FORMAT, rec),
        "time": t,
        "source": gs(product, "name") or gs(product, "vendor_name") or FORMAT,
        "format": FORMAT,
        "actor_id": actor_id,
        "actor_type": actor_kind,
        "target_id": target,
        "src_ip": gs(src, "ip") or gs(src, "hostname") or gs(src, "svc_name"),
        "user_agent": gs(http, "user_agent"),
        "credential_id": cred or sess,
        "credential_type": _cred_type(cred) if cred else ("session" if sess else None),
        "credential_expires_at": opt_time(session.get("expiration_time")) if (cred or sess) else None,
        "outcome": outcome,
        "reason": reason or (policy_reason if decision == "deny" else None),
        "decision": decision,
        "policy_id": policy_id,
        "policy_version": policy_version,
        "session_id": sess,
        "request_id": gs(http, "uid") or gs(rec, "api", "request", "uid") or gs(meta, "correlation_uid"),
        "trace_id": gs(trace, "uid"),
        "span_id": gs(trace, "span", "uid"),
        "parent_span_id": gs(trace, "span", "parent_uid"),
    }
    if cls == 3002:
        row["category"] = "authentication"
        row["activity"] = _AUTH_ACTIVITY.get(activity_id or -1, "authenticated")
        row["action"] = gs(rec, "activity_name") or gs(rec, "auth_protocol")
        row["resource"] = gs(rec, "service", "name") or gs(rec, "dst_endpoint", "svc_name") \
            or gs(rec, "dst_endpoint", "hostname")
    elif cls == 3003:
        row["category"] = "authorization"
        row["activity"] = _AUTHZ_ACTIVITY.get(activity_id or -1, "privileges.assigned")
        row["action"] = gs(rec, "activity_name")
        row["scope"] = strs(rec.get("privileges")) or ([gs(rec, "group", "name")] if gs(rec, "group", "name") else None)
        if row["decision"] is None:
            row["decision"] = {"success": "allow", "failure": "deny"}.get(outcome or "")
    else:
        row["category"] = "api_activity"
        row["activity"] = "api.call"
        row["action"] = gs(rec, "api", "operation") or gs(rec, "activity_name")
        first = resources[0] if resources else {}
        row["resource"] = gs(first, "uid") or gs(first, "name")
        if outcome == "failure":
            row["reason"] = gs(rec, "api", "response", "error") or gs(rec, "api", "response", "message") \
                or row["reason"]
    attrs = {
        "class_uid": cls,
        "class_name": gs(rec, "class_name") or SUPPORTED[cls],
        "activity_id": activity_id,
        "activity_name": gs(rec, "activity_name"),
        "type_uid": _int(rec.get("type_uid")),
        "severity": gs(rec, "severity"),
        "ocsf_version": gs(meta, "version"),
        "vendor": gs(product, "vendor_name"),
        "event_code": gs(meta, "event_code"),
        "correlation_uid": gs(meta, "correlation_uid"),
        "message": gs(rec, "message"),
        "auth_protocol": gs(rec, "auth_protocol"),
        "logon_type": gs(rec, "logon_type"),
        "is_mfa": rec.get("is_mfa") if isinstance(rec.get("is_mfa"), bool) else None,
        "user_uid": gs(user, "uid") or gs(actor_user, "uid"),
        "session_issuer": gs(session, "issuer"),
        "invoked_by": gs(actor, "invoked_by"),
        "actor_app": gs(actor, "app_name"),
        "idp": gs(actor, "idp", "name"),
        "api_service": gs(rec, "api", "service", "name"),
        "response_code": _int(get(rec, "api", "response", "code")),
        "resources": [x for x in (gs(r, "uid") or gs(r, "name") for r in resources) if x] or None,
        "cloud_provider": gs(rec, "cloud", "provider"),
        "cloud_region": gs(rec, "cloud", "region"),
        "dst": gs(rec, "dst_endpoint", "ip") or gs(rec, "dst_endpoint", "hostname"),
    }
    row["attributes"] = prune(attrs) or None
    return [prune(row)]


PARSER = Parser(
    name=FORMAT,
    family="identity_provider",
    sniff=sniff,
    parse=parse,
    description="OCSF JSON: Authentication 3002, Authorize Session 3003, API Activity 6003",
)
