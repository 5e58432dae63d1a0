"""MCP gateway audit log: one JSON-RPC exchange (request and response as on the wire) per record.

``{"log_id","timestamp","server","session_id","peer":{ip,user_agent,spiffe_id},
"auth":{sub,act,jti,scope,exp},"request":{jsonrpc,id,method,params},"response":{...}}``.
``auth`` holds the bearer token's claims, never the token; should a gateway log the token anyway,
only its fingerprint reaches a canonical field. ``act`` follows RFC 8693 §4.1: the outermost
``act`` is the current actor, nested ones are prior actors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError
from ingest.events import fingerprint, record_event_id, utc
from ingest.sources._fields import _m, _s, _time_or_none, _words
from ingest.sources.base import Parser, Record, Row, need
from ingest.sources.spire import identity_type

FORMAT = "mcp"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_DENIED = re.compile(
    r"forbidden|permission denied|access denied|unauthori[sz]ed|not allowed|insufficient[_ ]scope",
    re.IGNORECASE,
)
_ACTIVITY = {"tools/call": "tool.invoked", "resources/read": "resource.read", "prompts/get": "prompt.read"}
_MAX_ACT_DEPTH = 16


def sniff(rec: Record) -> bool:
    req = rec.get("request")
    if not isinstance(req, Mapping):
        return False
    return req.get("jsonrpc") == "2.0" or (isinstance(req.get("method"), str) and "log_id" in rec)


def _bearer(v: Any) -> str | None:
    s = _s(v)
    if s is None:
        return None
    head, _, rest = s.partition(" ")
    return rest.strip() or None if head.lower() == "bearer" and rest else s


def parse(rec: Record) -> list[Row]:
    try:
        t = utc(need(rec, "timestamp"))
    except ValueError as e:
        raise ParseError(f"bad timestamp: {e}") from e
    if t is None:
        raise ParseError("missing required field timestamp")
    req = need(rec, "request")
    if not isinstance(req, Mapping):
        raise ParseError("request is not an object")
    method = need(req, "method")
    if not isinstance(method, str):
        raise ParseError("request.method is not a string")
    params = _m(req.get("params"))
    meta = _m(params.get("_meta"))
    auth = _m(rec.get("auth"))
    peer = _m(rec.get("peer"))

    sub = _s(auth.get("sub"))
    acts: list[str] = []
    cur = auth.get("act")
    while isinstance(cur, Mapping) and len(acts) < _MAX_ACT_DEPTH:
        a = _s(cur.get("sub"))
        if a:
            acts.append(a)
        cur = cur.get("act")
    actor = acts[0] if acts else sub  # outermost act is the current actor
    chain: list[str] | None = None
    if acts:
        chain = ([sub] if sub else []) + list(reversed(acts))
    on_behalf_of = sub if acts and sub and sub != actor else None

    cred_id = _s(auth.get("jti"))
    if cred_id is None:
        for raw in (auth.get("token"), auth.get("access_token"), _m(rec.get("headers")).get("authorization")):
            tok = _bearer(raw)
            if tok:
                cred_id = fingerprint(tok)
                break

    trace_id = span_id = None
    tp = _s(meta.get("traceparent"))
    if tp and (m := _TRACEPARENT.match(tp.strip().lower())):
        trace_id, span_id = m.group(1), m.group(2)

    resp = _m(rec.get("response"))
    err = resp.get("error")
    result = _m(resp.get("result"))
    decision = reason = None
    attrs: dict[str, Any] = {"method": method}
    if err is not None:
        outcome = "failure"
        em = _m(err)
        reason = _s(em.get("message")) or _s(err) or "JSON-RPC error"
        if em.get("code") is not None:
            attrs["error_code"] = em.get("code")
        if _DENIED.search(reason) or em.get("code") in (401, 403):
            decision = "deny"
    elif result.get("isError") is True:
        outcome = "failure"
        content = result.get("content")
        texts = [_s(_m(c).get("text")) for c in content] if isinstance(content, list) else []
        reason = next((x[:500] for x in texts if x), "tool returned isError")
    elif resp:
        outcome = "success"
    else:
        outcome = "unknown"

    for k in ("server",):
        if _s(rec.get(k)):
            attrs[k] = rec[k]
    if req.get("id") is not None and not isinstance(req.get("id"), Mapping | list):
        attrs["jsonrpc_id"] = req.get("id")
    for k in ("iss", "aud", "client_id"):
        if auth.get(k) not in (None, ""):
            attrs["token_" + k] = auth[k]

    tool = _s(params.get("name")) if method == "tools/call" else None
    resource = _s(meta.get("resource")) or (_s(params.get("uri")) if method == "resources/read" else None)
    actor_type = identity_type(actor) or ("unknown" if actor else None)
    row: Row = {
        "event_id": f"{FORMAT}:{native}"
        if (native := _s(rec.get("log_id")))
        else record_event_id(FORMAT, rec),
        "time": t,
        "source": "mcp",
        "format": FORMAT,
        "category": "tool_call",
        "activity": _ACTIVITY.get(method, "mcp." + method.replace("/", ".")),
        "actor_id": actor,
        "actor_type": actor_type,
        "on_behalf_of": on_behalf_of,
        "delegation_chain": chain,
        "src_workload": _s(peer.get("spiffe_id")) or _s(peer.get("workload")),
        "src_ip": _s(peer.get("ip")),
        "user_agent": _s(peer.get("user_agent")),
        "credential_id": cred_id,
        "credential_type": "oauth_access_token" if cred_id else None,
        "credential_expires_at": _time_or_none(auth.get("exp")) if cred_id else None,
        "scope": _words(auth.get("scope")) or _words(auth.get("scp")),
        "action": method,
        "tool": tool,
        "resource": resource,
        "resource_sensitivity": _s(meta.get("resource_sensitivity")),
        "decision": decision,
        "reason": reason,
        "outcome": outcome,
        "task_id": _s(meta.get("task_id")),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": _s(meta.get("parent_span_id")),
        "session_id": _s(rec.get("session_id")),
        "attributes": attrs,
    }
    return [{k: v for k, v in row.items() if v is not None}]


PARSER = Parser(
    name=FORMAT,
    family="tool_call",
    sniff=sniff,
    parse=parse,
    description="MCP gateway tool-call audit log (JSON-RPC tools/call exchange with caller claims).",
)
