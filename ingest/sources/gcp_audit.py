"""GCP Cloud Audit Logs: a Cloud Logging ``LogEntry`` whose ``protoPayload`` is an ``AuditLog``.

GKE's Kubernetes API audit entries are LogEntries too (``serviceName: k8s.io``,
``resource.type: k8s_cluster``); those belong to the ``k8s_audit`` parser, and ``is_gke_k8s``
is the one rule both sniffers use so that exactly one of them claims a record.
IAM Credentials ``GenerateAccessToken`` / ``GenerateIdToken`` / ``SignJwt`` are credential
issuance; STS ``ExchangeToken`` is a token exchange.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError
from ingest.events import fingerprint, record_event_id
from ingest.sources._lenient import chain, d, get, gs, lst, opt_time, prune, req_str, req_time, s, strs
from ingest.sources.base import Parser, Record, Row

FORMAT = "gcp_audit"
AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"

_ISSUE = {
    "generateaccesstoken": "gcp_access_token",
    "generateidtoken": "gcp_id_token",
    "signjwt": "gcp_signed_jwt",
}
_DENIED_CODES = {7, 16}  # PERMISSION_DENIED, UNAUTHENTICATED


def is_audit_entry(rec: Mapping[str, Any]) -> bool:
    """A LogEntry carrying an AuditLog (also abbreviated entries whose payload lost ``@type``)."""
    pp = rec.get("protoPayload")
    if not isinstance(pp, Mapping):
        return False
    t = pp.get("@type")
    if isinstance(t, str):
        return t.endswith("google.cloud.audit.AuditLog")
    return isinstance(pp.get("methodName"), str) and isinstance(pp.get("serviceName"), str)


def is_gke_k8s(rec: Mapping[str, Any]) -> bool:
    """A GKE Kubernetes API audit entry: service ``k8s.io`` (or, without a service name, a k8s_cluster)."""
    pp = rec.get("protoPayload")
    if not isinstance(pp, Mapping):
        return False
    svc = pp.get("serviceName")
    if isinstance(svc, str):
        return svc == "k8s.io"
    res = rec.get("resource")
    return isinstance(res, Mapping) and res.get("type") == "k8s_cluster"


def sniff(rec: Record) -> bool:
    return is_audit_entry(rec) and not is_gke_k8s(rec)


def actor_type(principal: str | None) -> str | None:
    """Kind of GCP principal from its email or subject."""
    if not principal:
        return None
    p = principal.lower()
    if p.endswith(".gserviceaccount.com") or p.startswith("serviceaccount:"):
        return "service_account"
    if p.startswith(("principal://", "principalset://")) or "workloadidentitypools" in p:
        return "workload"
    if p.startswith("system:serviceaccount:"):
        return "service_account"
    if p.startswith("system:node:"):
        return "workload"
    if p.startswith("system:"):
        return "service_account" if p != "system:anonymous" else "unknown"
    if p.startswith("arn:aws:"):
        return "role" if ":assumed-role/" in p or ":role/" in p else "unknown"
    if "@" in p:
        return "human"
    return "unknown"


def delegation_origin_first(auth: Any) -> list[str]:
    """Principals of ``serviceAccountDelegationInfo``, in the order GCP records them (origin first)."""
    out: list[str] = []
    for item in lst(get(auth, "serviceAccountDelegationInfo")):
        item = d(item)
        who = (gs(item, "firstPartyPrincipal", "principalEmail")
               or gs(item, "principalSubject")
               or gs(item, "thirdPartyPrincipal", "thirdPartyClaims", "sub"))
        if who:
            out.append(who)
    return out


def decision_from_authz(authz: list[Any]) -> tuple[str | None, list[str] | None]:
    """(decision, permissions) from ``authorizationInfo``: deny if any check was not granted."""
    granted: list[bool] = []
    perms: list[str] = []
    for a in authz:
        a = d(a)
        p = gs(a, "permission")
        if p and p not in perms:
            perms.append(p)
        g = a.get("granted")
        if isinstance(g, bool):
            granted.append(g)
        elif a:
            granted.append(False)  # proto3 omits false: a check listed without "granted" was not granted
    decision = None if not granted else ("allow" if all(granted) else "deny")
    return decision, perms or None


def status(pp: Any) -> tuple[str | None, int | None, str | None]:
    """(outcome, code, message) from ``protoPayload.status`` (absent or code 0 is OK)."""
    st = pp.get("status") if isinstance(pp, Mapping) else None
    if st is None:
        return "success", None, None
    st = d(st)
    code = st.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else (0 if "code" not in st else None)
    msg = gs(st, "message")
    if code is None:
        return "unknown", None, msg
    return ("success" if code == 0 else "failure"), code, msg


def trace_id(rec: Any) -> str | None:
    """The 32-hex trace id from ``trace`` (``projects/P/traces/<id>``)."""
    tr = gs(rec, "trace")
    return tr.rsplit("/", 1)[-1] if tr else None


def parse(rec: Record) -> list[Row]:
    pp = get(rec, "protoPayload")
    if not isinstance(pp, Mapping):
        raise ParseError("missing required field protoPayload")
    method = req_str(pp, "methodName")
    service = gs(pp, "serviceName")
    t = req_time(rec.get("timestamp") or rec.get("receiveTimestamp"), "timestamp")
    insert_id = gs(rec, "insertId")
    auth = d(pp.get("authenticationInfo"))
    meta = d(pp.get("requestMetadata"))
    request = d(pp.get("request"))
    response = d(pp.get("response"))
    principal = gs(auth, "principalEmail") or gs(auth, "principalSubject")
    origin = delegation_origin_first(auth)
    decision, perms = decision_from_authz(lst(pp.get("authorizationInfo")))
    outcome, code, message = status(pp)
    if code in _DENIED_CODES and decision is None:
        decision = "deny"

    short = method.rsplit(".", 1)[-1].lower()
    category, activity = "api_activity", "api.call"
    row: dict[str, Any] = {
        "event_id": f"{FORMAT}:{insert_id}" if insert_id else record_event_id(FORMAT, rec),
        "time": t,
        "source": "gcp",
        "format": FORMAT,
        "actor_id": principal,
        "actor_type": actor_type(principal),
        "on_behalf_of": origin[0] if origin else None,
        "delegation_chain": chain(*origin, principal) if origin else None,
        "src_ip": gs(meta, "callerIp"),
        "user_agent": gs(meta, "callerSuppliedUserAgent"),
        "action": method,
        "resource": gs(pp, "resourceName"),
        "decision": decision,
        "scope": perms,
        "reason": message if outcome == "failure" or decision == "deny" else None,
        "outcome": outcome,
        "trace_id": trace_id(rec),
        "span_id": gs(rec, "spanId"),
        "request_id": gs(meta, "requestAttributes", "id"),
    }
    key = gs(auth, "serviceAccountKeyName")
    if key:
        row["credential_id"], row["credential_type"] = key, "gcp_sa_key"

    if short in _ISSUE and (service or "").startswith("iamcredentials"):
        category, activity = "credential", "token.issued"
        target = gs(request, "name") or gs(pp, "resourceName")
        if target and "/serviceAccounts/" in target:
            target = target.rsplit("/serviceAccounts/", 1)[-1]
        row["target_id"] = target
        row["credential_parent_id"] = key
        row["credential_type"] = _ISSUE[short]
        token = s(response.get("accessToken")) or s(response.get("token")) or s(response.get("signedJwt"))
        row["credential_id"] = fingerprint(token) if token else None
        row["credential_expires_at"] = opt_time(response.get("expireTime"))
        row["scope"] = strs(request.get("scope")) or perms
    elif short == "exchangetoken" and (service or "").startswith("sts"):
        category, activity = "credential", "token.exchanged"
        row["target_id"] = gs(pp, "metadata", "mapped_principal")
        row["credential_type"] = "gcp_federated_token"
        row["credential_id"] = None
        row["scope"] = strs(request.get("scope")) or perms
    elif short == "accesssecretversion" and (service or "").startswith("secretmanager"):
        category, activity = "credential", "secret.read"
    elif short.startswith(("setiampolicy",)):
        activity = "policy.changed"

    row["category"], row["activity"] = category, activity
    res = d(rec.get("resource"))
    attrs = {
        "service": service,
        "log_name": gs(rec, "logName"),
        "severity": gs(rec, "severity"),
        "resource_type": gs(res, "type"),
        "resource_labels": {k: s(v) for k, v in d(res.get("labels")).items() if s(v)} or None,
        "principal_subject": gs(auth, "principalSubject") if gs(auth, "principalSubject") != principal else None,
        "authority_selector": gs(auth, "authoritySelector"),
        "oauth_client_id": gs(auth, "oauthInfo", "oauthClientId"),
        "status_code": code if code else None,
        "operation_id": gs(rec, "operation", "id"),
        "operation_first": get(rec, "operation", "first") if isinstance(get(rec, "operation", "first"), bool) else None,
        "operation_last": get(rec, "operation", "last") if isinstance(get(rec, "operation", "last"), bool) else None,
        "request_delegates": strs(request.get("delegates")),
        "token_lifetime": gs(request, "lifetime"),
        "caller_network": gs(meta, "callerNetwork"),
        "num_response_items": gs(pp, "numResponseItems"),
        "receive_timestamp": gs(rec, "receiveTimestamp"),
        "labels": {k: s(v) for k, v in d(rec.get("labels")).items() if s(v)} or None,
    }
    row["attributes"] = prune(attrs) or None
    return [prune(row)]


PARSER = Parser(
    name=FORMAT,
    family="api_audit",
    sniff=sniff,
    parse=parse,
    description="GCP Cloud Audit Logs LogEntry (AuditLog protoPayload), except GKE Kubernetes API entries",
)
