"""SPIRE server JSON log (logrus, ``log_format = "json"``): the CA's SVID issuance lines.

Real lines look like ``{"level":"debug","msg":"Signed X509 SVID","spiffe_id":...,"expiration":...,
"serial_num":...,"subsystem_name":"ca","time":...}``. Older servers write ``expires_at`` instead of
``expiration``. SPIRE logs have no id of their own, so the event id hashes the record.
Also home of the SPIFFE ID helpers the other parsers use to type an identity.
"""

from __future__ import annotations

from typing import Any

from ingest.errors import ParseError
from ingest.events import record_event_id, utc
from ingest.sources._fields import _s, _time_or_none
from ingest.sources.base import Parser, Record, Row, need

FORMAT = "spire"
_MESSAGES = {
    "Signed X509 SVID": "x509_svid",
    "Signed X509 CA SVID": "x509_svid",
    "Signed JWT SVID": "jwt_svid",
}


def is_spiffe_id(value: Any) -> bool:
    """True for a ``spiffe://trust-domain/path`` string."""
    return isinstance(value, str) and value.startswith("spiffe://") and len(value) > len("spiffe://")


def spiffe_actor_type(spiffe_id: str) -> str:
    """``agent`` when the path has an ``/agent/`` segment (AI agents), else ``workload``.

    SPIRE's own node agents (``/spire/agent/...``) and servers are workloads, not AI agents.
    """
    path = "/" + spiffe_id[len("spiffe://") :].partition("/")[2]
    if path.startswith("/spire/"):
        return "workload"
    return "agent" if "/agent/" in path + "/" else "workload"


def identity_type(identity: Any) -> str | None:
    """Best honest guess of an identity's type from its shape alone (None when it says nothing)."""
    if not isinstance(identity, str) or not identity:
        return None
    if is_spiffe_id(identity):
        return spiffe_actor_type(identity)
    if identity.startswith("system:serviceaccount:"):
        return "workload"
    if "@" in identity and "." in identity.rpartition("@")[2] and " " not in identity:
        return "human"
    return None


def sniff(rec: Record) -> bool:
    return rec.get("msg") in _MESSAGES and isinstance(rec.get("spiffe_id"), str)


def parse(rec: Record) -> list[Row]:
    msg = need(rec, "msg")
    cred_type = _MESSAGES.get(msg) if isinstance(msg, str) else None
    if cred_type is None:
        raise ParseError(f"not an SVID issuance line: msg {str(msg)[:80]!r}")
    spiffe_id = need(rec, "spiffe_id")
    if not is_spiffe_id(spiffe_id):
        raise ParseError("spiffe_id is not a SPIFFE ID")
    try:
        t = utc(need(rec, "time"))
    except ValueError as e:
        raise ParseError(f"bad time: {e}") from e
    if t is None:
        raise ParseError("missing required field time")
    if cred_type == "x509_svid":
        serial = _s(rec.get("serial_num"))
        cred_id = f"x509:{serial}" if serial else None
    else:
        cred_id = _s(rec.get("jwt_id")) or _s(rec.get("jti"))
    attrs: dict[str, Any] = {}
    for k in ("entry_id", "caller_id", "subsystem_name", "level", "audience", "ttl", "revision_number"):
        v = rec.get(k)
        if v not in (None, ""):
            attrs[k] = v
    sel = rec.get("selectors")
    if isinstance(sel, str) and sel:
        attrs["selectors"] = [s.strip() for s in sel.split(",") if s.strip()]
    elif isinstance(sel, list):
        attrs["selectors"] = [s for s in sel if isinstance(s, str)]
    if msg == "Signed X509 CA SVID":
        attrs["ca"] = True
    row: Row = {
        "event_id": record_event_id(FORMAT, rec),
        "time": t,
        "source": "spire",
        "format": FORMAT,
        "category": "credential",
        "activity": "svid.minted",
        "actor_id": spiffe_id,
        "actor_type": spiffe_actor_type(spiffe_id),
        "target_id": spiffe_id,
        "credential_id": cred_id,
        "credential_type": cred_type,
        "credential_expires_at": _time_or_none(rec.get("expiration") or rec.get("expires_at")),
        "outcome": "success",
        "attributes": attrs or None,
    }
    return [{k: v for k, v in row.items() if v is not None}]


PARSER = Parser(
    name=FORMAT,
    family="workload_identity",
    sniff=sniff,
    parse=parse,
    description="SPIRE server JSON log: Signed X509/JWT SVID lines (svid.minted).",
)
