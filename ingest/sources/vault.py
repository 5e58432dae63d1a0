"""HashiCorp Vault audit device entries (file/socket/syslog devices all write the same JSON).

``{"time","type":"request"|"response","auth":{client_token,accessor,display_name,policies,
entity_id,token_type,token_ttl,token_issue_time,metadata,policy_results},"request":{id,operation,
mount_type,path,client_token,remote_address,headers,data,namespace},"response":{...},"error"}``.
Vault HMACs tokens and secret values (``hmac-sha256:...``); those are kept as fingerprints. Raw
values (``log_raw``) are fingerprinted here, never copied. Request entries are kept as events
(activity ``request``) so every audit line lands once; the response entry is the one to analyse.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError
from ingest.events import fingerprint, record_event_id, utc
from ingest.sources._fields import _m, _s, _words
from ingest.sources.base import Parser, Record, Row, need
from ingest.sources.spire import identity_type

FORMAT = "vault"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# display_name prefix (the auth method) -> actor type
_METHOD_TYPES = {
    "approle": "service_account",
    "userpass": "human",
    "ldap": "human",
    "okta": "human",
    "github": "human",
    "radius": "human",
    "oidc": "human",
    "kubernetes": "workload",
    "cert": "workload",
    "aws": "workload",
    "gcp": "workload",
    "azure": "workload",
    "root": "human",
}
_SECRET_OPS = {
    "read": "secret.read",
    "create": "secret.rotated",
    "update": "secret.rotated",
    "delete": "secret.deleted",
    "list": "secret.listed",
}
_MAX_TTL = 100 * 365 * 86400


def _fp(v: Any) -> str | None:
    """A token as a fingerprint: Vault's own HMAC as is, a raw value hashed."""
    s = _s(v)
    if s is None:
        return None
    return s if s.startswith("hmac-sha256:") else fingerprint(s)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == name:
            return _s(v[0]) if isinstance(v, list) and v else _s(v)
    return None


def _ttl(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_TTL:
        return v
    return None


def _lease_from_path(path: str) -> str | None:
    for prefix in (
        "sys/leases/revoke-prefix/",
        "sys/leases/revoke-force/",
        "sys/leases/revoke/",
        "sys/revoke/",
        "sys/leases/renew/",
        "sys/renew/",
    ):
        if path.startswith(prefix):
            return path[len(prefix) :] or None
    return None


def sniff(rec: Record) -> bool:
    req = rec.get("request")
    return (
        rec.get("type") in ("request", "response")
        and isinstance(req, Mapping)
        and "time" in rec
        and "jsonrpc" not in req
        and any(k in req for k in ("operation", "path", "id"))
    )


def _classify(path: str, op: str | None) -> tuple[str, str]:
    """(category, activity) of a request path and operation."""
    if path.startswith(("sys/leases/revoke", "sys/revoke")):
        return "credential", "secret.revoked"
    if path.startswith("auth/token/revoke"):
        return "credential", "token.revoked"
    if path.startswith("auth/token/create") or (path.startswith("auth/") and "/login" in path):
        return "credential", "token.issued"
    if path.startswith("auth/token/renew"):
        return "credential", "token.refreshed"
    if path.startswith(("sys/leases/renew", "sys/renew")):
        return "credential", "secret.renewed"
    if path.startswith(("sys/", "auth/", "identity/")) or op is None:
        return "api_activity", "api.call"
    act = _SECRET_OPS.get(op)
    return ("credential", act) if act else ("api_activity", "api.call")


def parse(rec: Record) -> list[Row]:
    typ = need(rec, "type")
    if typ not in ("request", "response"):
        raise ParseError("type is neither request nor response")
    try:
        t = utc(need(rec, "time"))
    except ValueError as e:
        raise ParseError(f"bad time: {e}") from e
    if t is None:
        raise ParseError("missing required field time")
    req = need(rec, "request")
    if not isinstance(req, Mapping):
        raise ParseError("request is not an object")
    path = _s(req.get("path")) or ""
    op = _s(req.get("operation"))
    auth = _m(rec.get("auth"))
    resp = _m(rec.get("response"))
    resp_auth = _m(resp.get("auth"))
    headers = _m(req.get("headers"))
    data = _m(req.get("data"))
    error = _s(rec.get("error"))
    category, activity = _classify(path, op)

    ident = resp_auth if activity == "token.issued" and resp_auth else auth
    display = _s(ident.get("display_name")) or _s(auth.get("display_name"))
    actor = _s(auth.get("entity_id")) or _s(auth.get("display_name"))
    actor_type = identity_type(actor) or identity_type(display)
    if actor_type is None and display:
        actor_type = _METHOD_TYPES.get(re.split(r"[-_]", display, maxsplit=1)[0].lower())
    if actor and actor_type is None:
        actor_type = "unknown"

    used = _fp(auth.get("client_token")) or _fp(req.get("client_token"))
    cred_type: str | None = "vault_token"
    parent: str | None = None
    target: str | None = None
    expires: dt.datetime | None = None
    if activity == "token.issued":
        cred_id = _fp(resp_auth.get("client_token")) or (used if typ == "response" else None)
        parent = _fp(req.get("client_token"))
        if parent == cred_id:
            parent = None
        target = _s(ident.get("entity_id")) or _s(ident.get("display_name"))
        ttl = _ttl(ident.get("token_ttl")) or _ttl(ident.get("lease_duration")) or _ttl(auth.get("token_ttl"))
        expires = t + dt.timedelta(seconds=ttl) if ttl and typ == "response" else None
    elif activity == "token.revoked":
        cred_id = _fp(data.get("token")) or _s(data.get("accessor")) or None
        parent = used
    elif activity in ("secret.revoked", "secret.renewed"):
        lease = _s(data.get("lease_id")) or _lease_from_path(path)
        cred_id, cred_type, parent = lease, "lease", used
    else:
        cred_id = used
    if cred_id is None:
        if parent is None:
            cred_type = None
    if activity != "token.issued" and used and cred_id == used:
        issued = _s(auth.get("token_issue_time"))
        ttl = _ttl(auth.get("token_ttl"))
        if issued and ttl:
            try:
                start = utc(issued)
            except ValueError:
                start = None
            expires = start + dt.timedelta(seconds=ttl) if start else None

    pr = _m(auth.get("policy_results"))
    decision: str | None = None
    if isinstance(pr.get("allowed"), bool):
        decision = "allow" if pr["allowed"] else "deny"
    if error and "permission denied" in error.lower():
        decision = "deny"
    granting = pr.get("granting_policies")
    policy_id = None
    if isinstance(granting, list) and granting:
        policy_id = _s(_m(granting[0]).get("name")) or _s(granting[0])

    ns_path = _s(_m(req.get("namespace")).get("path"))
    resource = (ns_path + path if ns_path and ns_path != "root" else path) or None
    trace_id = span_id = None
    tp = _header(headers, "traceparent")
    if tp and (m := _TRACEPARENT.match(tp.strip().lower())):
        trace_id, span_id = m.group(1), m.group(2)

    native = _s(req.get("id"))
    attrs: dict[str, Any] = {"audit_type": typ}
    for k_out, v in (
        ("display_name", display),
        ("operation", op),
        ("mount_type", req.get("mount_type") or resp.get("mount_type")),
        ("mount_point", req.get("mount_point")),
        ("token_type", auth.get("token_type")),
        ("accessor", auth.get("accessor")),
        ("remote_port", req.get("remote_port")),
        ("forwarded_from", rec.get("forwarded_from")),
        ("lease_id", _m(resp.get("secret")).get("lease_id")),
        ("error", error),
    ):
        if v not in (None, "") and not isinstance(v, Mapping | list):
            attrs[k_out] = v
    meta = auth.get("metadata")
    if isinstance(meta, Mapping) and meta:
        attrs["metadata"] = dict(meta)

    row: Row = {
        "event_id": f"{FORMAT}:{typ}:{native}" if native else record_event_id(FORMAT, rec),
        "time": t,
        "source": "vault",
        "format": FORMAT,
        "category": category,
        "activity": activity if typ == "response" else "request",
        "actor_id": actor,
        "actor_type": actor_type,
        "target_id": target,
        "src_ip": _s(req.get("remote_address")),
        "user_agent": _header(headers, "user-agent"),
        "credential_id": cred_id,
        "credential_type": cred_type,
        "credential_parent_id": parent,
        "credential_expires_at": expires,
        "scope": _words(ident.get("policies"))
        or _words(auth.get("policies"))
        or _words(auth.get("token_policies")),
        "action": op,
        "resource": resource,
        "decision": decision,
        "policy_id": policy_id,
        "reason": error,
        "outcome": ("failure" if error else "success") if typ == "response" else None,
        "task_id": _s(_m(auth.get("metadata")).get("task_id")) or _header(headers, "x-task-id"),
        "trace_id": trace_id,
        "span_id": span_id,
        "request_id": native,
        "attributes": attrs,
    }
    return [{k: v for k, v in row.items() if v is not None}]


PARSER = Parser(
    name=FORMAT,
    family="secrets",
    sniff=sniff,
    parse=parse,
    description="HashiCorp Vault audit log entries (secret read/rotate/revoke, token issuance).",
)
