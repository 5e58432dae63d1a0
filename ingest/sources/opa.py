"""OPA decision logs, as the decision log plugin uploads them or prints them to the console.

``{"decision_id","path","input","result","bundles":{name:{"revision"}},"labels","timestamp",
"requested_by","metrics","req_id","erased","masked","trace_id","span_id"}``; OPA before 0.13 wrote
a top-level ``revision``; the console logger adds ``level``/``msg``/``time``. The ``input`` shape
is the policy's own: ``input.subject`` (or ``user``/``principal``), ``action``, ``tool``,
``resource``, ``task_id``, ``trace_id``, ``span_id`` as docs/formats.md describes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError
from ingest.events import ACTOR_TYPES, record_event_id, utc
from ingest.sources._fields import _m, _s, _words
from ingest.sources.base import Parser, Record, Row, need
from ingest.sources.spire import identity_type

FORMAT = "opa"
_SUBJECT_KEYS = ("subject", "user", "principal")


def sniff(rec: Record) -> bool:
    return (
        isinstance(rec.get("decision_id"), str)
        and any(k in rec for k in ("path", "query", "result", "input", "bundles"))
        and "eventSource" not in rec
    )


def _decision(rec: Record) -> tuple[str | None, str | None]:
    """(decision, reason) from ``result`` (bool, "true"/"false", or an object) or ``error``."""
    err = rec.get("error")
    if err not in (None, "", {}):
        msg = _s(_m(err).get("message")) or _s(_m(err).get("code")) or _s(err)
        return "error", msg or "evaluation error"
    if "result" not in rec:
        # OPA omits result when the decision is undefined; enforcement points deny by default.
        return "deny", "result undefined"
    res = rec.get("result")
    verdict: Any = None
    reason: str | None = None
    if isinstance(res, bool):
        verdict = res
    elif isinstance(res, str) and res.lower() in ("true", "false", "allow", "deny"):
        verdict = res.lower() in ("true", "allow")
    elif isinstance(res, Mapping):
        for k in ("allow", "allowed"):
            if isinstance(res.get(k), bool):
                verdict = res[k]
                break
        else:
            d = res.get("decision")
            if isinstance(d, str) and d.lower() in ("allow", "deny"):
                verdict = d.lower() == "allow"
            elif isinstance(res.get("deny"), list):
                verdict = not res["deny"]
        reasons = res.get("reasons", res.get("reason", res.get("deny")))
        if isinstance(reasons, list):
            reason = "; ".join(r for r in (_s(x) for x in reasons) if r) or None
        else:
            reason = _s(reasons)
    if verdict is None:
        return None, reason
    return ("allow" if verdict else "deny"), reason


def _addr(v: Any) -> str | None:
    """``requested_by`` is ``host:port`` (``[::1]:59943``); keep the host."""
    s = _s(v)
    if s is None:
        return None
    if s.startswith("["):
        host = s[1:].partition("]")[0]
        return host or None
    if s.count(":") == 1:
        return s.partition(":")[0] or None
    return s


def attributes(rec: Record) -> tuple[dict[str, Any] | None, str | None]:
    """(attributes, policy version) of a decision; shared with the vectorised path (ingest.fastpath.opa)."""
    bundles = _m(rec.get("bundles"))
    revisions = {str(k): r for k, v in bundles.items() if (r := _s(_m(v).get("revision")))}
    version = next(iter(revisions.values()), None) or _s(rec.get("revision"))
    attrs: dict[str, Any] = {}
    if revisions:
        attrs["bundles"] = revisions
    for k in ("labels", "query", "req_id", "requested_by", "erased", "masked", "metrics"):
        v = rec.get(k)
        if v not in (None, "", [], {}):
            attrs[k] = v
    for k in ("trace_id", "span_id"):
        if _s(rec.get(k)):
            attrs["opa_" + k] = rec[k]
    if "result" in rec and not isinstance(rec.get("result"), bool):
        attrs["result"] = rec.get("result")
    return attrs or None, version


def parse(rec: Record) -> list[Row]:
    decision_id = _s(need(rec, "decision_id"))
    ts = rec.get("timestamp") if rec.get("timestamp") not in (None, "") else rec.get("time")
    if ts in (None, ""):
        raise ParseError("missing required field timestamp")
    try:
        t = utc(ts)
    except ValueError as e:
        raise ParseError(f"bad timestamp: {e}") from e
    if t is None:
        raise ParseError("missing required field timestamp")
    inp = _m(rec.get("input"))
    subj_raw: Any = None
    for k in _SUBJECT_KEYS:
        if inp.get(k) not in (None, ""):
            subj_raw = inp[k]
            break
    subj = _m(subj_raw)
    actor = _s(subj_raw) if not subj else _s(subj.get("id")) or _s(subj.get("sub")) or _s(subj.get("name"))
    stype = _s(subj.get("type"))
    actor_type = stype if stype in ACTOR_TYPES else identity_type(actor) or ("unknown" if actor else None)
    obo = _s(subj.get("on_behalf_of"))
    chain = _words(subj.get("delegation_chain")) or _words(subj.get("act_chain"))
    if chain is None and obo and actor:
        chain = [obo, actor]

    res_raw = inp.get("resource")
    res = _m(res_raw)
    resource = _s(res.get("id")) if res else _s(res_raw)
    if resource is None:
        p = inp.get("path")
        if isinstance(p, list):
            resource = "/".join(x for x in (_s(i) for i in p) if x) or None
        else:
            resource = _s(p)
    jti = _s(subj.get("token_jti")) or _s(subj.get("jti"))

    attrs, version = attributes(rec)
    decision, reason = _decision(rec)

    row: Row = {
        "event_id": f"{FORMAT}:{decision_id}" if decision_id else record_event_id(FORMAT, rec),
        "time": t,
        "source": "opa",
        "format": FORMAT,
        "category": "authorization",
        "activity": "decision",
        "actor_id": actor,
        "actor_type": actor_type,
        "on_behalf_of": obo,
        "delegation_chain": chain,
        "src_workload": _s(subj.get("workload")),
        "src_ip": _addr(rec.get("requested_by")),
        "credential_id": jti,
        "credential_type": "oauth_access_token" if jti else None,
        "scope": _words(subj.get("scopes")) or _words(subj.get("scope")),
        "action": _s(inp.get("action")) or _s(inp.get("method")),
        "tool": _s(inp.get("tool")),
        "resource": resource,
        "resource_sensitivity": _s(res.get("sensitivity")) or _s(inp.get("resource_sensitivity")),
        "decision": decision,
        "policy_id": _s(rec.get("path")) or _s(rec.get("query")),
        "policy_version": version,
        "reason": reason,
        "task_id": _s(inp.get("task_id")),
        "trace_id": _s(inp.get("trace_id")) or _s(rec.get("trace_id")),
        "span_id": _s(inp.get("span_id")) or _s(rec.get("span_id")),
        "parent_span_id": _s(inp.get("parent_span_id")),
        "session_id": _s(inp.get("session_id")),
        "request_id": decision_id,
        "attributes": attrs,
    }
    return [{k: v for k, v in row.items() if v is not None}]


PARSER = Parser(
    name=FORMAT,
    family="policy_decision",
    sniff=sniff,
    parse=parse,
    description="OPA decision log events (decision_id, path, input, result, bundle revisions).",
)
