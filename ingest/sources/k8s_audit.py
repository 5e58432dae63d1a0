"""Kubernetes API server audit events (``audit.k8s.io/v1`` ``Event``), as written by the log or
webhook backend, and the same events inside two cloud wrappers:

- GKE: a Cloud Logging ``LogEntry`` with an ``AuditLog`` ``protoPayload`` and ``serviceName:
  k8s.io`` (see ``gcp_audit.is_gke_k8s``, the one rule that splits GKE from other GCP audit);
  impersonation shows as ``authenticationInfo.authoritySelector``.
- AKS: an Azure Monitor diagnostic record, category ``kube-audit`` / ``kube-audit-admin``, whose
  ``properties.log`` is the Event as a JSON string. ``split`` unwraps it into the Event itself (with
  the envelope's cluster id, category and pod under ``_azure_diagnostic``) so that the redactor sees
  the Event's keys: inside a JSON string a ``token`` or ``password`` key would escape key redaction.

Every stage lands as an event. ``ResponseComplete``/``ResponseStarted``/``Panic`` are
``api.call`` with ``event_id`` = ``k8s_audit:<auditID>``; ``RequestReceived`` (written before
authorization, so it has no decision) is ``api.request.received`` with ``event_id``
``k8s_audit:<auditID>/RequestReceived`` so that it never dedups away the completed stage.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from ingest.errors import ParseError
from ingest.events import fingerprint, record_event_id
from ingest.sources import gcp_audit
from ingest.sources._lenient import chain, d, get, gs, lst, opt_time, prune, req_str, req_time, s, strs
from ingest.sources.base import Parser, Record, Row

FORMAT = "k8s_audit"
AKS_KEY = "_azure_diagnostic"
AKS_CATEGORIES = ("kube-audit", "kube-audit-admin")
_CRED_ID = "authentication.kubernetes.io/credential-id"
_ISSUED_CRED_ID = "authentication.kubernetes.io/issued-credential-id"
_RBAC = re.compile(r'^(\w+): allowed by (ClusterRoleBinding|RoleBinding) "([^"]+)" of (ClusterRole|Role) "([^"]+)"')


def _is_native(rec: Mapping[str, Any]) -> bool:
    if rec.get("kind") == "Event" and str(rec.get("apiVersion", "")).startswith("audit.k8s.io/"):
        return True
    return "auditID" in rec and "verb" in rec and "stage" in rec


def _is_aks(rec: Mapping[str, Any]) -> bool:
    props = rec.get("properties")
    return rec.get("category") in AKS_CATEGORIES and isinstance(props, Mapping) and "log" in props


def _is_envelope(rec: Mapping[str, Any]) -> str | None:
    """``EventList`` (items) or an Azure Monitor ``records`` envelope of AKS audit records."""
    if rec.get("kind") == "EventList" and isinstance(rec.get("items"), list):
        return "items"
    recs = rec.get("records")
    if isinstance(recs, list) and any(isinstance(r, Mapping) and _is_aks(r) for r in recs[:3]):
        return "records"
    return None


def sniff(rec: Record) -> bool:
    if _is_native(rec) or _is_aks(rec) or _is_envelope(rec) or isinstance(rec.get(AKS_KEY), Mapping):
        return True
    return gcp_audit.is_audit_entry(rec) and gcp_audit.is_gke_k8s(rec)


def split(rec: Record) -> list[Record] | None:
    if _is_aks(rec):
        return [_unwrap_aks(rec)]
    key = _is_envelope(rec)
    if key is None and isinstance(rec.get("records"), list):
        key = "records"  # forced --format k8s_audit on an Azure Monitor envelope
    if key:
        items = rec.get(key)
        if isinstance(items, list) and items:
            return items
    return None


def actor_type(username: str | None) -> str | None:
    if not username:
        return None
    if username.startswith("system:serviceaccount:"):
        return "service_account"
    if username.startswith("system:node:"):
        return "workload"
    if username == "system:anonymous":
        return "unknown"
    if username.startswith("system:"):
        return "service_account"
    return "human"


def resource_path(ref: Any) -> str | None:
    """``<group|core>/<version>/namespaces/<ns>/<resource>/<name>[/<sub>]``, the shape GKE's
    ``resourceName`` uses, so self-hosted and GKE events name resources the same way."""
    ref = d(ref)
    res = gs(ref, "resource")
    if not res:
        return None
    parts = [gs(ref, "apiGroup") or "core", gs(ref, "apiVersion") or "v1"]
    ns = gs(ref, "namespace")
    if ns:
        parts += ["namespaces", ns]
    parts.append(res)
    if gs(ref, "name"):
        parts.append(gs(ref, "name") or "")
    if gs(ref, "subresource"):
        parts.append(gs(ref, "subresource") or "")
    return "/".join(parts)


def policy_from_reason(reason: str | None) -> tuple[str | None, dict[str, Any]]:
    """The RBAC binding that allowed a request (``RBAC: allowed by RoleBinding "b/ns" of Role "r" ...``)."""
    if not reason:
        return None, {}
    m = _RBAC.match(reason)
    if m:
        return f"{m.group(2)}/{m.group(3)}", {"authorizer": m.group(1), "role": f"{m.group(4)}/{m.group(5)}"}
    head = reason.split(":", 1)[0].strip()
    return None, ({"authorizer": head} if head and head.isalnum() and head != reason else {})


def _decision(value: str | None) -> str | None:
    v = (value or "").lower()
    return "allow" if v == "allow" else "deny" if v in ("forbid", "deny") else None


def _cred_type(cred: str | None) -> str | None:
    if not cred:
        return None
    prefix = cred.split("=", 1)[0].upper()
    return {"JTI": "k8s_sa_token", "X509SHA256": "x509_cert"}.get(prefix, "k8s_credential")


def _workload(username: str | None, extra: Mapping[str, Any]) -> str | None:
    pod = s((lst(extra.get("authentication.kubernetes.io/pod-name")) or [None])[0])
    if not pod:
        return None
    ns = username.split(":")[2] if username and username.startswith("system:serviceaccount:") and username.count(":") >= 3 else None
    return f"pod:{ns}/{pod}" if ns else f"pod:{pod}"


def _token_request(row: dict[str, Any], ref: Any, annotations: Mapping[str, Any], resp: Any, req: Any) -> None:
    """``serviceaccounts/token`` create (TokenRequest): a service account token was minted."""
    ref = d(ref)
    ns, name = gs(ref, "namespace"), gs(ref, "name")
    row["category"], row["activity"] = "credential", "token.issued"
    row["target_id"] = f"system:serviceaccount:{ns}:{name}" if ns and name else None
    row["credential_parent_id"] = row.get("credential_id")
    issued = s(annotations.get(_ISSUED_CRED_ID))
    token = s(get(resp, "status", "token"))
    row["credential_id"] = issued or (fingerprint(token) if token else None)
    row["credential_type"] = "k8s_sa_token"
    row["credential_expires_at"] = opt_time(get(resp, "status", "expirationTimestamp"))
    row["scope"] = strs(get(req, "spec", "audiences"))


def parse_event(ev: Mapping[str, Any], extra_attrs: dict[str, Any] | None = None) -> list[Row]:
    """One native audit Event."""
    audit_id = req_str(ev, "auditID")
    stage = gs(ev, "stage")
    verb = req_str(ev, "verb")
    t = req_time(ev.get("requestReceivedTimestamp") or ev.get("stageTimestamp"), "requestReceivedTimestamp")
    user = d(ev.get("user"))
    username = gs(user, "username")
    extra = d(user.get("extra"))
    imp = d(ev.get("impersonatedUser"))
    imp_name = gs(imp, "username")
    annotations = d(ev.get("annotations"))
    ref = ev.get("objectRef")
    code = get(ev, "responseStatus", "code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    decision = _decision(gs(annotations, "authorization.k8s.io/decision"))
    if decision is None and code in (401, 403):
        decision = "deny"
    reason = gs(annotations, "authorization.k8s.io/reason")
    policy_id, pattrs = policy_from_reason(reason)
    if code is not None and code >= 400:
        reason = reason or gs(ev, "responseStatus", "message") or gs(ev, "responseStatus", "reason")
    final = stage != "RequestReceived"
    ips = strs(ev.get("sourceIPs"))
    cred = s((lst(extra.get(_CRED_ID)) or [None])[0])

    row: dict[str, Any] = {
        "event_id": f"{FORMAT}:{audit_id}" if final else f"{FORMAT}:{audit_id}/{stage}",
        "time": t,
        "source": "kubernetes",
        "format": FORMAT,
        "category": "api_activity",
        "activity": "api.call" if final else "api.request.received",
        "actor_id": imp_name or username,
        "actor_type": actor_type(imp_name or username),
        "on_behalf_of": username if imp_name else None,
        "delegation_chain": chain(username, imp_name) if imp_name else None,
        "target_id": imp_name,
        "src_workload": _workload(username, extra),
        "src_ip": ips[0] if ips else None,
        "user_agent": gs(ev, "userAgent"),
        "credential_id": cred,
        "credential_type": _cred_type(cred),
        "action": verb,
        "resource": resource_path(ref) or gs(ev, "requestURI"),
        "decision": decision,
        "policy_id": policy_id,
        "reason": reason,
        "outcome": None if code is None else ("success" if code < 400 else "failure"),
        "request_id": audit_id,
    }
    if (verb == "create" and gs(ref, "resource") == "serviceaccounts" and gs(ref, "subresource") == "token"):
        _token_request(row, ref, annotations, ev.get("responseObject"), ev.get("requestObject"))

    attrs: dict[str, Any] = dict(extra_attrs or {})
    attrs.update({
        "stage": stage,
        "level": gs(ev, "level"),
        "stage_timestamp": gs(ev, "stageTimestamp"),
        "request_uri": gs(ev, "requestURI"),
        "response_code": code,
        "user_uid": gs(user, "uid"),
        "groups": strs(user.get("groups")),
        "impersonated_groups": strs(imp.get("groups")),
        "source_ips": ips if ips and len(ips) > 1 else None,
        "node": s((lst(extra.get("authentication.kubernetes.io/node-name")) or [None])[0]),
        "annotations": {k: s(v) for k, v in annotations.items()
                        if s(v) and not k.startswith("authorization.k8s.io/")} or None,
        **pattrs,
    })
    if not final:  # written before authorization and before any response
        row["decision"] = row["outcome"] = None
    row["attributes"] = prune(attrs) or None
    return [prune(row)]


def _parse_gke(rec: Mapping[str, Any]) -> list[Row]:
    pp = d(rec.get("protoPayload"))
    method = req_str(pp, "methodName")
    t = req_time(rec.get("timestamp") or rec.get("receiveTimestamp"), "timestamp")
    insert_id = gs(rec, "insertId")
    auth = d(pp.get("authenticationInfo"))
    meta = d(pp.get("requestMetadata"))
    labels = d(rec.get("labels"))
    principal = gs(auth, "principalEmail") or gs(auth, "principalSubject")
    imp = gs(auth, "authoritySelector")
    decision = _decision(gs(labels, "authorization.k8s.io/decision"))
    authz_decision, perms = gcp_audit.decision_from_authz(lst(pp.get("authorizationInfo")))
    decision = decision or authz_decision
    outcome, code, message = gcp_audit.status(pp)
    if decision is None and code == 7:
        decision = "deny"
    reason = gs(labels, "authorization.k8s.io/reason")
    policy_id, pattrs = policy_from_reason(reason)
    if outcome == "failure":
        reason = reason or message
    verb = method.rsplit(".", 1)[-1] if method.startswith("io.k8s.") else method
    resource = gs(pp, "resourceName")
    origin = gcp_audit.delegation_origin_first(auth)
    actor = imp or principal
    delegators = [*origin, principal] if imp else origin
    row: dict[str, Any] = {
        "event_id": f"{FORMAT}:{insert_id}" if insert_id else record_event_id(FORMAT, rec),
        "time": t,
        "source": "gke",
        "format": FORMAT,
        "category": "api_activity",
        "activity": "api.call",
        "actor_id": actor,
        "actor_type": gcp_audit.actor_type(actor),
        "on_behalf_of": delegators[0] if delegators else None,
        "delegation_chain": chain(*delegators, actor) if delegators else None,
        "target_id": imp,
        "src_ip": gs(meta, "callerIp"),
        "user_agent": gs(meta, "callerSuppliedUserAgent"),
        "credential_id": s(labels.get(_CRED_ID)),
        "credential_type": _cred_type(s(labels.get(_CRED_ID))),
        "action": verb,
        "resource": resource,
        "decision": decision,
        "policy_id": policy_id,
        "reason": reason,
        "outcome": outcome,
        "trace_id": gcp_audit.trace_id(rec),
        "request_id": insert_id,  # GKE sets insertId (and operation.id) to the request's auditID
    }
    if method.endswith(".serviceaccounts.token.create") and resource:
        parts = resource.split("/")
        ref = {"namespace": parts[3], "name": parts[5]} if len(parts) >= 6 and parts[2] == "namespaces" else {}
        _token_request(row, ref, labels, pp.get("response"), pp.get("request"))
    res = d(rec.get("resource"))
    attrs = {
        "method": method,
        "log_name": gs(rec, "logName"),
        "cluster": gs(res, "labels", "cluster_name"),
        "location": gs(res, "labels", "location"),
        "project_id": gs(res, "labels", "project_id"),
        "permissions": perms,
        "status_code": code if code else None,
        "labels": {k: s(v) for k, v in labels.items() if s(v) and not k.startswith("authorization.k8s.io/")} or None,
        **pattrs,
    }
    row["attributes"] = prune(attrs) or None
    return [prune(row)]


def _unwrap_aks(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The Event inside an AKS diagnostic record, with the envelope's facts under ``AKS_KEY``."""
    log = get(rec, "properties", "log")
    if isinstance(log, str):
        try:
            ev = orjson.loads(log)
        except orjson.JSONDecodeError as e:
            raise ParseError(f"AKS properties.log is not JSON: {str(e)[:80]}") from e
    else:
        ev = log
    if not isinstance(ev, Mapping):
        raise ParseError("AKS properties.log is not a JSON object")
    env = prune({
        "azure_category": gs(rec, "category"),
        "cluster_resource_id": gs(rec, "resourceId"),
        "apiserver_pod": gs(rec, "properties", "pod"),
        "time": gs(rec, "time"),
    })
    return {**ev, AKS_KEY: env}


def parse(rec: Record) -> list[Row]:
    if _is_aks(rec):
        rec = _unwrap_aks(rec)  # only reached when split was bypassed
    if isinstance(rec.get(AKS_KEY), Mapping):
        rows = parse_event(rec, {k: v for k, v in rec[AKS_KEY].items() if k != "time"})
        for r in rows:
            r["source"] = "aks"
        return rows
    if isinstance(rec.get("protoPayload"), Mapping):
        return _parse_gke(rec)
    return parse_event(rec)


PARSER = Parser(
    name=FORMAT,
    family="api_audit",
    sniff=sniff,
    parse=parse,
    split=split,
    description="Kubernetes audit.k8s.io Event (log/webhook backend, EventList), GKE LogEntry, AKS kube-audit",
)
