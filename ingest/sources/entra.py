"""Microsoft Entra ID sign-in and audit logs, as Azure Monitor diagnostic settings export them.

Categories read: ``SignInLogs``, ``NonInteractiveUserSignInLogs``, ``ServicePrincipalSignInLogs``,
``ManagedIdentitySignInLogs`` and ``AuditLogs`` (the envelope: ``time``, ``resourceId``,
``operationName``, ``category``, ``resultType``, ``callerIpAddress``, ``correlationId``,
``identity``, ``properties``). Also the ``{"records": [...]}`` envelope written by Event Hub and
storage exports (split into records, each sniffed again, so AKS audit records in the same
envelope reach ``k8s_audit``), and a bare Microsoft Graph ``signIn`` object.
Other Azure Monitor categories (Activity log ``Administrative``, Key Vault ``AuditEvent``, ...)
are not claimed. ``uniqueTokenIdentifier`` identifies the issued token; it is an id, not a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError, UnsupportedFormat
from ingest.events import record_event_id
from ingest.sources._lenient import chain, d, get, gs, lst, prune, req_time, s
from ingest.sources.base import Parser, Record, Row

FORMAT = "entra"
SIGNIN = {
    "SignInLogs": ("authentication", "session.started", "human"),
    "NonInteractiveUserSignInLogs": ("credential", "token.issued", "human"),
    "ServicePrincipalSignInLogs": ("credential", "token.issued", "service_account"),
    "ManagedIdentitySignInLogs": ("credential", "token.issued", "workload"),
}
AUDIT = "AuditLogs"
_AGENT_TYPES = {"agenticapp", "agentidentity", "agentiduser", "agenticappinstance", "agentuser"}


def _is_record(rec: Mapping[str, Any]) -> bool:
    cat = rec.get("category")
    props = rec.get("properties")
    if not isinstance(props, Mapping):
        return False
    if cat in SIGNIN:
        return True
    if cat == AUDIT:
        # "AuditLogs" alone is too generic a category name: require Entra's provider or shape.
        rid = rec.get("resourceId")
        return (isinstance(rid, str) and "microsoft.aadiam" in rid.lower()) or "initiatedBy" in props \
            or "activityDisplayName" in props
    return False


def _is_graph_signin(rec: Mapping[str, Any]) -> bool:
    return ("createdDateTime" in rec and "appId" in rec and isinstance(rec.get("status"), Mapping)
            and ("userPrincipalName" in rec or "servicePrincipalId" in rec) and "id" in rec)


def _envelope(rec: Mapping[str, Any]) -> bool:
    recs = rec.get("records")
    return isinstance(recs, list) and any(isinstance(r, Mapping) and _is_record(r) for r in recs[:3])


def sniff(rec: Record) -> bool:
    return _is_record(rec) or _envelope(rec) or _is_graph_signin(rec)


def split(rec: Record) -> list[Record] | None:
    recs = rec.get("records")
    if "category" not in rec and isinstance(recs, list) and recs:
        return recs
    return None


def _ca(policies: list[Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The deciding Conditional Access policy (the first failure, else the first success) and all applied."""
    applied = [prune({"id": gs(p, "id"), "name": gs(p, "displayName"), "result": gs(p, "result")})
               for p in policies if isinstance(p, Mapping)]
    applied = [p for p in applied if p]
    deciding = next((p for p in applied if p.get("result") == "failure"), None) \
        or next((p for p in applied if p.get("result") == "success"), None)
    return (deciding.get("id") if deciding else None), (applied or None)


def _signin(rec: Mapping[str, Any], p: Mapping[str, Any], cat: str) -> Row:
    category, activity, kind = SIGNIN.get(cat, SIGNIN["SignInLogs"])
    t = req_time(p.get("createdDateTime") or rec.get("time"), "properties.createdDateTime")
    err = get(p, "status", "errorCode")
    err_s = s(err)
    if err_s is None:
        err_s = s(rec.get("resultType"))
    outcome = None if err_s is None else ("success" if err_s == "0" else "failure")
    reason = None
    if outcome == "failure":
        reason = gs(p, "status", "failureReason") or gs(rec, "resultDescription") or f"AADSTS{err_s}"
    ca_status = gs(p, "conditionalAccessStatus")
    decision = {"success": "allow", "failure": "deny"}.get(ca_status or "")
    policy_id, applied = _ca(lst(p.get("appliedConditionalAccessPolicies")))
    if decision is None:
        policy_id = None
    upn = gs(p, "userPrincipalName")
    user = upn or gs(p, "userId")
    sp = gs(p, "servicePrincipalId") or gs(p, "appId")
    agent = d(p.get("agent"))
    agent_type = (gs(agent, "agentType") or "").lower()
    is_agent = agent_type in _AGENT_TYPES
    actor: str | None
    actor_type: str | None
    behalf: str | None
    if kind == "human" and is_agent and user and sp and user != sp:
        actor, actor_type, behalf = sp, "agent", user  # an agent signed in on behalf of a user
    elif kind == "human":
        actor, actor_type, behalf = user, "human", None
    else:
        actor, actor_type, behalf = sp, ("agent" if is_agent else kind), None
    incoming = gs(p, "incomingTokenType")
    if activity == "token.issued" and incoming and "refresh" in incoming.lower():
        activity = "token.refreshed"
    token_id = gs(p, "uniqueTokenIdentifier")
    row: dict[str, Any] = {
        "time": t,
        "category": category,
        "activity": activity,
        "actor_id": actor,
        "actor_type": actor_type,
        "on_behalf_of": behalf,
        "delegation_chain": chain(behalf, actor) if behalf else None,
        "src_ip": gs(p, "ipAddress") or gs(rec, "callerIpAddress"),
        "user_agent": gs(p, "userAgent"),
        "credential_id": token_id,
        "credential_type": "entra_token" if token_id else None,
        "credential_parent_id": gs(p, "servicePrincipalCredentialKeyId") or gs(p, "federatedCredentialId"),
        "action": gs(rec, "operationName") or "Sign-in activity",
        "resource": gs(p, "resourceId") or gs(p, "resourceDisplayName"),
        "decision": decision,
        "policy_id": policy_id,
        "reason": reason,
        "outcome": outcome,
        "session_id": gs(p, "sessionId"),
        "request_id": gs(p, "correlationId") or gs(rec, "correlationId"),
    }
    attrs = {
        "category": cat,
        "user_id": gs(p, "userId") if upn else None,
        "user_display_name": gs(p, "userDisplayName"),
        "app_id": gs(p, "appId"),
        "app_display_name": gs(p, "appDisplayName"),
        "service_principal_name": gs(p, "servicePrincipalName"),
        "resource_display_name": gs(p, "resourceDisplayName"),
        "is_interactive": p.get("isInteractive") if isinstance(p.get("isInteractive"), bool) else None,
        "client_app_used": gs(p, "clientAppUsed"),
        "authentication_requirement": gs(p, "authenticationRequirement"),
        "authentication_protocol": gs(p, "authenticationProtocol"),
        "incoming_token_type": incoming,
        "token_issuer_type": gs(p, "tokenIssuerType"),
        "conditional_access_status": ca_status,
        "conditional_access_policies": applied,
        "risk_level_during_signin": gs(p, "riskLevelDuringSignIn"),
        "risk_state": gs(p, "riskState"),
        "cross_tenant_access_type": gs(p, "crossTenantAccessType"),
        "error_code": err_s if outcome == "failure" else None,
        "tenant_id": gs(rec, "tenantId") or gs(p, "homeTenantId"),
        "original_request_id": gs(p, "originalRequestId"),
        "managed_identity_type": gs(p, "managedIdentityType"),
        "agent_type": gs(agent, "agentType"),
        "agent_parent_app_id": gs(agent, "parentAppId"),
        "device_id": gs(p, "deviceDetail", "deviceId"),
        "device_os": gs(p, "deviceDetail", "operatingSystem"),
        "geo_country": gs(p, "location", "countryOrRegion"),
        "geo_city": gs(p, "location", "city"),
    }
    row["attributes"] = prune(attrs) or None
    return row


_AUDIT_KINDS = (
    ("add service principal credentials", "credential", "credential.added"),
    ("remove service principal credentials", "credential", "credential.removed"),
    ("certificates and secrets management", "credential", "credential.changed"),
    ("consent to application", "authorization", "consent.granted"),
    ("add delegated permission grant", "authorization", "permission.granted"),
    ("add app role assignment", "authorization", "permission.granted"),
    ("add member to role", "authorization", "role.granted"),
    ("add eligible member to role", "authorization", "role.granted"),
    ("remove member from role", "authorization", "role.revoked"),
)


def _audit(rec: Mapping[str, Any], p: Mapping[str, Any]) -> Row:
    t = req_time(p.get("activityDateTime") or rec.get("time"), "properties.activityDateTime")
    op = gs(p, "activityDisplayName") or gs(rec, "operationName")
    low = (op or "").lower()
    category, activity = "api_activity", "api.call"
    for needle, cat, act in _AUDIT_KINDS:
        if needle in low:
            category, activity = cat, act
            break
    by = d(p.get("initiatedBy"))
    user, app = d(by.get("user")), d(by.get("app"))
    if user:
        actor = gs(user, "userPrincipalName") or gs(user, "id")
        actor_type = "human" if actor else None
    else:
        actor = gs(app, "servicePrincipalId") or gs(app, "appId") or gs(app, "displayName")
        actor_type = "service_account" if actor else None
    targets = [d(x) for x in lst(p.get("targetResources"))]
    first = targets[0] if targets else {}
    result = (gs(p, "result") or "").lower()
    outcome = {"success": "success", "failure": "failure", "timeout": "failure"}.get(result)
    if outcome is None and result:
        outcome = "unknown"
    ua = gs(p, "userAgent")
    if ua is None:
        ua = next((gs(x, "value") for x in lst(p.get("additionalDetails"))
                   if gs(x, "key") in ("User-Agent", "UserAgent")), None)
    row: dict[str, Any] = {
        "time": t,
        "category": category,
        "activity": activity,
        "actor_id": actor,
        "actor_type": actor_type,
        "target_id": gs(first, "userPrincipalName") or gs(first, "id"),
        "src_ip": gs(user, "ipAddress") or gs(app, "ipAddress") or gs(rec, "callerIpAddress"),
        "user_agent": ua,
        "action": op,
        "resource": gs(first, "id"),
        "reason": gs(p, "resultReason") if outcome != "success" else None,
        "outcome": outcome,
        "request_id": gs(p, "correlationId") or gs(rec, "correlationId"),
    }
    attrs = {
        "category": AUDIT,
        "audit_category": gs(p, "category"),
        "operation_type": gs(p, "operationType"),
        "logged_by_service": gs(p, "loggedByService"),
        "initiated_by_display_name": gs(app, "displayName") or gs(user, "displayName"),
        "initiated_by_app_id": gs(app, "appId"),
        "target_type": gs(first, "type"),
        "target_display_name": gs(first, "displayName"),
        "modified_properties": [x for x in (gs(m, "displayName") for m in lst(first.get("modifiedProperties"))) if x]
        or None,
        "tenant_id": gs(rec, "tenantId"),
        "identity": gs(rec, "identity"),
    }
    row["attributes"] = prune(attrs) or None
    return row


def parse(rec: Record) -> list[Row]:
    p: Mapping[str, Any]
    env: Mapping[str, Any]
    cat: str | None
    if _is_graph_signin(rec) and "properties" not in rec:
        p, cat, env = rec, "SignInLogs" if rec.get("isInteractive") is not False else "NonInteractiveUserSignInLogs", {}
        if gs(rec, "servicePrincipalId") and not gs(rec, "userPrincipalName"):
            cat = "ServicePrincipalSignInLogs"
    else:
        cat = s(rec.get("category"))
        props = rec.get("properties")
        if not isinstance(props, Mapping):
            raise ParseError("missing required field properties")
        p, env = props, rec
        if cat not in SIGNIN and cat != AUDIT:
            raise UnsupportedFormat(f"Azure Monitor category {cat!r} is not an Entra log")
    row = _audit(env, p) if cat == AUDIT else _signin(env, p, cat or "SignInLogs")
    native = gs(p, "id")
    row["event_id"] = f"{FORMAT}:{native}" if native else record_event_id(FORMAT, rec)
    row["source"] = "entra"
    row["format"] = FORMAT
    return [prune(row)]


PARSER = Parser(
    name=FORMAT,
    family="identity_provider",
    sniff=sniff,
    parse=parse,
    split=split,
    description="Microsoft Entra ID sign-in and audit logs (Azure Monitor diagnostic export, records envelope)",
)
