"""Keycloak user events as ``EventRepresentation`` (Events REST API, JSON event listeners).

``{"id","time" (epoch ms),"type","realmId","clientId","userId","sessionId","ipAddress","error",
"details":{...}}``. ``*_ERROR`` types are the failed variant of their base type. ``details.actor``,
``details.act_chain``, ``details.expires_at`` and ``details.task_id`` are deployment extensions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError
from ingest.events import record_event_id, utc
from ingest.sources._fields import _s, _time_or_none, _words
from ingest.sources.base import Parser, Record, Row, need
from ingest.sources.spire import identity_type

FORMAT = "keycloak"
_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*$")

# base type -> (category, activity)
_ACTIVITY: dict[str, tuple[str, str]] = {
    "LOGIN": ("authentication", "session.started"),
    "CLIENT_LOGIN": ("credential", "token.issued"),
    "CODE_TO_TOKEN": ("credential", "token.issued"),
    "TOKEN_EXCHANGE": ("credential", "token.exchanged"),
    "REFRESH_TOKEN": ("credential", "token.refreshed"),
    "REVOKE_GRANT": ("credential", "token.revoked"),
    "LOGOUT": ("credential", "token.revoked"),
    "INTROSPECT_TOKEN": ("credential", "token.introspected"),
    "USER_INFO_REQUEST": ("authentication", "userinfo.requested"),
    "PERMISSION_TOKEN": ("credential", "token.issued"),
}
_ISSUING = {"CLIENT_LOGIN", "CODE_TO_TOKEN", "TOKEN_EXCHANGE", "REFRESH_TOKEN", "PERMISSION_TOKEN"}
# details keys mapped to canonical fields (the rest go to attributes)
_MAPPED = {
    "token_id",
    "subject_token_id",
    "refresh_token_id",
    "scope",
    "actor",
    "act_chain",
    "expires_at",
    "task_id",
}


def sniff(rec: Record) -> bool:
    t = rec.get("type")
    return (
        isinstance(t, str)
        and bool(_TYPE.match(t))
        and ("realmId" in rec or "realmName" in rec)
        and "time" in rec
    )


def _client_actor_type(client_id: str) -> str:
    t = identity_type(client_id)
    if t:
        return t
    return "agent" if client_id.startswith("agent-") or client_id.startswith("agent_") else "service_account"


def attributes(rec: Record, etype: str, base: str, user_id: str | None, details: Mapping[str, Any]) -> dict[str, Any]:
    """The event's attributes; shared with the vectorised path (ingest.fastpath.keycloak)."""
    attrs: dict[str, Any] = {"keycloak_type": etype}
    if base == "CLIENT_LOGIN" and user_id:
        attrs["service_account_user_id"] = user_id
    for k in ("realmId", "realmName", "clientId"):
        v = _s(rec.get(k))
        if v:
            attrs[k] = v
    for k, v in details.items():
        if k not in _MAPPED and v not in (None, ""):
            attrs[str(k)] = v
    return attrs


def parse(rec: Record) -> list[Row]:
    etype = need(rec, "type")
    if not isinstance(etype, str) or not _TYPE.match(etype):
        raise ParseError("type is not a Keycloak event type")
    raw_time = need(rec, "time")
    if isinstance(raw_time, bool) or not isinstance(raw_time, int | float | str):
        raise ParseError("time is not epoch milliseconds")
    try:
        t = utc(raw_time)
    except ValueError as e:
        raise ParseError(f"bad time: {e}") from e
    if t is None:
        raise ParseError("missing required field time")
    failed = etype.endswith("_ERROR")
    base = etype[: -len("_ERROR")] if failed else etype
    category, activity = _ACTIVITY.get(base, ("authentication", "idp." + base.lower()))

    details_raw = rec.get("details")
    details: Mapping[str, Any] = details_raw if isinstance(details_raw, Mapping) else {}
    user_id = _s(rec.get("userId"))
    client_id = _s(rec.get("clientId"))
    session_id = _s(rec.get("sessionId"))
    actor = _s(details.get("actor"))

    # CLIENT_LOGIN's userId is the client's own service-account user, not a person it acts for
    person = None if base == "CLIENT_LOGIN" else user_id
    actor_id: str | None
    actor_type: str | None
    if actor:
        actor_id, actor_type = actor, identity_type(actor) or "unknown"
    elif base == "CLIENT_LOGIN" and client_id:
        actor_id, actor_type = client_id, _client_actor_type(client_id)
    elif user_id:
        actor_id, actor_type = user_id, identity_type(user_id) or "human"
    elif base in ("LOGIN", "LOGOUT"):
        # a failed login names only what was typed; never blame the client application
        actor_id = _s(details.get("username"))
        actor_type = (identity_type(actor_id) or "human") if actor_id else None
    elif client_id:
        actor_id, actor_type = client_id, _client_actor_type(client_id)
    else:
        actor_id, actor_type = None, None
    on_behalf_of = person if actor and person and person != actor else None
    chain = _words(details.get("act_chain"))
    if chain is None and on_behalf_of and actor_id:
        chain = [on_behalf_of, actor_id]

    token_id = _s(details.get("token_id"))
    parent: str | None = None
    cred_type: str | None = "oauth_access_token"
    if base == "LOGIN":
        cred_id, cred_type = session_id, "session"
    elif base == "LOGOUT" and not token_id:
        cred_id, cred_type = session_id, "session"
    else:
        cred_id = token_id
        if base == "TOKEN_EXCHANGE":
            parent = _s(details.get("subject_token_id"))
        elif base == "REFRESH_TOKEN":
            parent = _s(details.get("refresh_token_id"))
        elif base == "CODE_TO_TOKEN":
            parent = session_id  # the login session the code was issued in
    if cred_id is None and parent is None:
        cred_type = None

    if base == "CLIENT_LOGIN":
        target = client_id
    elif base in _ISSUING or base == "LOGIN":
        target = user_id or (actor_id if base == "LOGIN" else client_id)
    elif base == "REVOKE_GRANT":
        target = user_id  # whose grant was revoked
    else:
        target = None

    attrs = attributes(rec, etype, base, user_id, details)

    row: Row = {
        "event_id": f"{FORMAT}:{native}" if (native := _s(rec.get("id"))) else record_event_id(FORMAT, rec),
        "time": t,
        "source": "keycloak",
        "format": FORMAT,
        "category": category,
        "activity": activity,
        "actor_id": actor_id,
        "actor_type": actor_type,
        "on_behalf_of": on_behalf_of,
        "delegation_chain": chain,
        "target_id": target,
        "src_ip": _s(rec.get("ipAddress")),
        "credential_id": cred_id,
        "credential_type": cred_type,
        "credential_parent_id": parent,
        "credential_expires_at": _time_or_none(details.get("expires_at")),
        "scope": _words(details.get("scope")),
        "action": base,
        "decision": "deny" if failed else None,
        "reason": _s(rec.get("error")) if failed else None,
        "outcome": "failure" if failed else "success",
        "task_id": _s(details.get("task_id")),
        "session_id": session_id,
        "attributes": attrs,
    }
    return [{k: v for k, v in row.items() if v is not None}]


PARSER = Parser(
    name=FORMAT,
    family="identity_provider",
    sniff=sniff,
    parse=parse,
    description="Keycloak EventRepresentation (login, token issuance, RFC 8693 exchange, refresh, revoke).",
)
