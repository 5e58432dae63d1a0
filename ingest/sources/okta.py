"""Okta System Log (``LogEvent``), as the System Log API and log streaming write it.

Also reads an Okta event hook delivery (``{"eventType": "com.okta.event_hook", "data": {"events":
[...]}}``) by splitting it into its LogEvents. Humans are identified by their login
(``actor.alternateId``), clients and apps by their Okta id. The Okta session
(``authenticationContext.externalSessionId``) is the credential of events done inside a session.
"""

from __future__ import annotations

from typing import Any

from ingest.events import record_event_id
from ingest.sources._lenient import chain, d, get, gs, lst, opt_time, prune, req_str, req_time, strs
from ingest.sources.base import Parser, Record, Row

FORMAT = "okta"
HOOK = "com.okta.event_hook"

_HUMAN = {"user"}
_SERVICE = {"publicclientapp", "appinstance", "clientapp", "app", "systemprincipal", "client", "oauth2client"}
_TOKEN_TYPES = {
    "access_token": "oauth_access_token",
    "id_token": "id_token",
    "refresh_token": "refresh_token",
    "id_jag": "id_jag",
}
_EXCHANGE_GRANTS = {
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
}


def sniff(rec: Record) -> bool:
    et = rec.get("eventType")
    if not isinstance(et, str):
        return False
    if et == HOOK:
        return isinstance(get(rec, "data", "events"), list)
    # "published" + "eventType" is Okta's pair (CloudTrail has eventType but eventTime); a record
    # that lost "published" is still Okta's when it keeps its uuid and actor.
    return "published" in rec or ("uuid" in rec and isinstance(rec.get("actor"), dict))


def split(rec: Record) -> list[Record] | None:
    """An event hook delivery carries several LogEvents under ``data.events``."""
    if rec.get("eventType") == HOOK:
        events = get(rec, "data", "events")
        if isinstance(events, list) and events:
            return events
    return None


def _ident(ent: Any) -> str | None:
    """Login for users, Okta id for everything else."""
    ent = d(ent)
    alt = gs(ent, "alternateId")
    if str(ent.get("type", "")).lower() in _HUMAN and alt and alt.lower() != "unknown":
        return alt
    return gs(ent, "id") or (alt if alt and alt.lower() != "unknown" else None)


def _actor_type(t: str | None) -> str | None:
    if t is None:
        return None
    t = t.lower()
    if t in _HUMAN:
        return "human"
    if t in _SERVICE:
        return "service_account"
    return "unknown"


def _outcome(result: str | None) -> tuple[str | None, str | None]:
    """(outcome, decision) from ``outcome.result``."""
    r = (result or "").upper()
    if r == "SUCCESS":
        return "success", None
    if r == "ALLOW":
        return "success", "allow"
    if r == "DENY":
        return "failure", "deny"
    if r == "FAILURE":
        return "failure", None
    return ("unknown", None) if r else (None, None)


def _kind(et: str, grant_type: str | None) -> tuple[str, str]:
    """(category, activity) for an eventType."""
    if et == "user.session.start":
        return "authentication", "session.started"
    if et == "user.session.end":
        return "authentication", "session.ended"
    if et.startswith("user.session.impersonation"):
        return "authentication", "impersonation." + et.rsplit(".", 1)[-1]
    if et.startswith(("user.authentication.", "user.mfa.")):
        return "authentication", "authenticated"
    if et.startswith(("app.oauth2.as.token.revoke", "app.oauth2.token.revoke")):
        return "credential", "token.revoked"
    if et == "app.oauth2.as.token.detect_reuse":
        return "credential", "token.reuse_detected"
    if et.startswith(("app.oauth2.as.token.grant", "app.oauth2.token.grant")):
        if et.endswith(".grant"):
            return "credential", "token.requested"  # the failure variant carries no token
        if grant_type == "refresh_token":
            return "credential", "token.refreshed"
        if grant_type in _EXCHANGE_GRANTS:
            return "credential", "token.exchanged"
        return "credential", "token.issued"
    if et.startswith("policy.") and "evaluate" in et:
        return "authorization", "decision"
    return "api_activity", "api.call"


def parse(rec: Record) -> list[Row]:
    et = req_str(rec, "eventType")
    t = req_time(rec.get("published"), "published")
    uuid = gs(rec, "uuid")
    actor = d(rec.get("actor"))
    client = d(rec.get("client"))
    auth = d(rec.get("authenticationContext"))
    debug = d(get(rec, "debugContext", "debugData"))
    outcome_obj = d(rec.get("outcome"))
    targets = [d(x) for x in lst(rec.get("target"))]
    grant_type = gs(debug, "grantType")
    category, activity = _kind(et, grant_type)
    outcome, decision = _outcome(gs(outcome_obj, "result"))
    reason = gs(outcome_obj, "reason")

    actor_id = _ident(actor)
    actor_type = _actor_type(gs(actor, "type"))
    session = gs(auth, "externalSessionId")
    if session and session.lower() == "unknown":
        session = None

    by_type: dict[str, dict[str, Any]] = {}
    for tg in targets:
        tt = (gs(tg, "type") or "").lower()
        by_type.setdefault(tt, dict(tg))
    user_target = by_type.get("user")
    user_id = _ident(user_target) if user_target else None

    row: dict[str, Any] = {
        "event_id": f"{FORMAT}:{uuid}" if uuid else record_event_id(FORMAT, rec),
        "time": t,
        "source": "okta",
        "format": FORMAT,
        "category": category,
        "activity": activity,
        "actor_id": actor_id,
        "actor_type": actor_type,
        "src_ip": gs(client, "ipAddress"),
        "user_agent": gs(client, "userAgent", "rawUserAgent"),
        "action": et,
        "outcome": outcome,
        "decision": decision,
        "reason": reason,
        "session_id": session,
        "request_id": gs(debug, "requestId"),
    }
    if session:
        row["credential_id"], row["credential_type"] = session, "session"
    elif gs(rec, "transaction", "detail", "requestApiTokenId"):
        # Okta API token *id* (SSWS tokens are referenced by id in the log, never by value).
        row["credential_id"] = gs(rec, "transaction", "detail", "requestApiTokenId")
        row["credential_type"] = "okta_api_token"

    if category == "credential":
        _credential(row, et, targets, debug, actor_id, user_id, outcome, reason)
    elif category == "authorization":
        policy = by_type.get("policyentity") or next(
            (tg for tt, tg in by_type.items() if tt.startswith("policy") and tt != "policyrule"), None)
        rule = by_type.get("policyrule")
        row["policy_id"] = gs(policy, "id") if policy else None
        row["resource"] = gs(rec, "debugContext", "debugData", "url")
        if rule:
            row["attributes_rule"] = {"policy_rule_id": gs(rule, "id"), "policy_rule": gs(rule, "displayName")}
        if policy:
            row["attributes_policy"] = {"policy_name": gs(policy, "displayName"),
                                        "policy_type": gs(policy, "detailEntry", "policyType")}
        if decision is None and (gs(outcome_obj, "result") or "").upper() == "CHALLENGE":
            row["reason"] = reason or "CHALLENGE"
    elif activity.startswith("impersonation.") and user_id:
        row["target_id"] = user_id
    elif category == "api_activity" and targets:
        first = targets[0]
        row["target_id"] = _ident(first) if (gs(first, "type") or "").lower() in _HUMAN else None
        row["resource"] = gs(first, "id") or gs(first, "alternateId")

    attrs = {
        "event_type": et,
        "legacy_event_type": gs(rec, "legacyEventType"),
        "display_message": gs(rec, "displayMessage"),
        "severity": gs(rec, "severity"),
        "actor_okta_id": gs(actor, "id"),
        "actor_display_name": gs(actor, "displayName"),
        "actor_kind": gs(actor, "type"),
        "client_id": gs(client, "id"),
        "device": gs(client, "device"),
        "zone": gs(client, "zone") if gs(client, "zone") != "null" else None,
        "geo_country": gs(client, "geographicalContext", "country"),
        "geo_city": gs(client, "geographicalContext", "city"),
        "auth_provider": gs(auth, "authenticationProvider"),
        "credential_provider": gs(auth, "credentialProvider"),
        "auth_credential_type": gs(auth, "credentialType"),
        "transaction_id": gs(rec, "transaction", "id"),
        "transaction_type": gs(rec, "transaction", "type"),
        "grant_type": grant_type,
        "requested_scopes": strs(debug.get("requestedScopes")),
        "authorization_server": gs(debug, "authorizationServer"),
        "authorization_server_name": gs(debug, "authorizationServerName"),
        "client_auth_type": gs(debug, "clientAuthType"),
        "threat_suspected": gs(debug, "threatSuspected"),
        "risk": gs(debug, "risk"),
        "behaviors": gs(debug, "behaviors"),
        "target_types": [x for x in (gs(tg, "type") for tg in targets) if x] or None,
    }
    attrs.update(row.pop("attributes_rule", {}) or {})
    attrs.update(row.pop("attributes_policy", {}) or {})
    attrs.update(row.pop("attributes_extra", {}) or {})
    row["attributes"] = prune(attrs) or None
    return [prune(row)]


def _credential(row: dict[str, Any], et: str, targets: list[Any], debug: Any, actor_id: str | None,
                user_id: str | None, outcome: str | None, reason: str | None) -> None:
    """Token grants and revocations: the token target is the credential; the user target its subject."""
    token = next((tg for tg in targets if (gs(tg, "type") or "").lower() in _TOKEN_TYPES), None)
    if token is not None:
        row["credential_id"] = gs(token, "id")
        row["credential_type"] = _TOKEN_TYPES[(gs(token, "type") or "").lower()]
        row["credential_expires_at"] = opt_time(get(token, "detailEntry", "expires"))
        subject = gs(token, "detailEntry", "subject")
    else:
        row.pop("credential_id", None)
        row.pop("credential_type", None)
        suffix = et.rsplit(".", 1)[-1]
        if suffix in _TOKEN_TYPES:
            row["credential_type"] = _TOKEN_TYPES[suffix]
        subject = None
    granted = strs(debug.get("grantedScopes"))
    row["scope"] = granted if outcome == "success" else (granted or strs(debug.get("requestedScopes")))
    row["resource"] = gs(debug, "authorizationServer")
    # The token's subject: a user target, else the token's own detailEntry.subject (an Okta user id).
    subj = user_id or subject
    if subj and actor_id and subj != actor_id and subject != actor_id:
        row["target_id"] = subj
        row["on_behalf_of"] = subj
        row["delegation_chain"] = chain(subj, actor_id)
    if outcome == "failure" and reason and any(w in reason.lower() for w in ("policy", "scope", "access_denied")):
        row["decision"] = "deny"
    if row.get("credential_expires_at") is None:
        row.pop("credential_expires_at", None)


PARSER = Parser(
    name=FORMAT,
    family="identity_provider",
    sniff=sniff,
    parse=parse,
    split=split,
    description="Okta System Log LogEvent (API, log streaming) and event hook deliveries",
)
