"""Identity inventory: every identity seen, who owns or delegates to it, where it ran, what it holds and uses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb

from analytics.lake import jsonable, rows
from analytics.timeparse import iso

_IDENTITIES = "SELECT identity, identity_type, first_seen, last_seen, events_as_actor FROM identities ORDER BY identity"
_OWNERS = """
SELECT actor_id AS identity, list(DISTINCT coalesce(on_behalf_of, delegation_chain[1]) ORDER BY 1) AS owners
FROM events
WHERE coalesce(on_behalf_of, CASE WHEN len(coalesce(delegation_chain, [])) > 1 THEN delegation_chain[1] END) IS NOT NULL
  AND coalesce(on_behalf_of, delegation_chain[1]) <> actor_id
GROUP BY actor_id
"""
_WORKLOADS = """
SELECT actor_id AS identity, list(DISTINCT src_workload ORDER BY src_workload) AS workloads
FROM events WHERE src_workload IS NOT NULL AND actor_id IS NOT NULL GROUP BY actor_id
"""
_ACTIONS = """
SELECT actor_id AS identity, list(DISTINCT action_key ORDER BY action_key) AS actions
FROM actions WHERE action_key IS NOT NULL AND actor_id IS NOT NULL GROUP BY actor_id
"""
_CREDENTIALS = """
SELECT holder AS identity, credential_id, credential_type, scope, issued_at, expires_at, revoked_at, first_use,
       last_use, uses
FROM credentials WHERE holder IS NOT NULL
ORDER BY holder, issued_at NULLS LAST, credential_id
"""
_LAKE_END = "SELECT max(time) FROM events"


@dataclass(frozen=True)
class CredentialSummary:
    """One credential an identity held: lifetime and use."""

    credential_id: str
    credential_type: str | None
    scope: tuple[str, ...]
    issued_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    lifetime_s: float | None
    first_use: dt.datetime | None
    last_use: dt.datetime | None
    uses: int

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        out: dict[str, Any] = jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})
        return out


@dataclass(frozen=True)
class IdentityRecord:
    """One identity in the inventory."""

    identity: str
    identity_type: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    events: int
    owners: tuple[str, ...]
    workloads: tuple[str, ...]
    credentials: tuple[CredentialSummary, ...]
    rotation_age_s: float | None
    scopes_granted: tuple[str, ...]
    scopes_used: tuple[str, ...]
    scopes_unused: tuple[str, ...]
    actions_used: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (credentials nested)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "credentials"}
        return {**jsonable(d), "credentials": [c.to_json() for c in self.credentials]}


def _group(rs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {r["identity"]: r[key] for r in rs}


def inventory(con: duckdb.DuckDBPyConnection) -> list[IdentityRecord]:
    """Every identity seen in the lake with its owners, workloads, credentials and scopes granted vs used."""
    owners = _group(rows(con, _OWNERS), "owners")
    workloads = _group(rows(con, _WORKLOADS), "workloads")
    actions = _group(rows(con, _ACTIONS), "actions")
    end = con.execute(_LAKE_END).fetchone()
    lake_end = end[0] if end else None
    creds: dict[str, list[CredentialSummary]] = {}
    for c in rows(con, _CREDENTIALS):
        life = (c["expires_at"] - c["issued_at"]).total_seconds() if c["expires_at"] and c["issued_at"] else None
        creds.setdefault(c["identity"], []).append(CredentialSummary(
            c["credential_id"], c["credential_type"], tuple(c["scope"] or ()), c["issued_at"], c["expires_at"],
            c["revoked_at"], life, c["first_use"], c["last_use"], int(c["uses"])))
    out: list[IdentityRecord] = []
    for r in rows(con, _IDENTITIES):
        cs = creds.get(r["identity"], [])
        granted = sorted({s for c in cs for s in c.scope})
        used = sorted({s for c in cs if c.uses > 0 for s in c.scope})
        issued = [c.issued_at for c in cs if c.issued_at is not None]
        rot = (lake_end - max(issued)).total_seconds() if issued and lake_end else None
        out.append(IdentityRecord(
            identity=r["identity"], identity_type=r["identity_type"], first_seen=r["first_seen"],
            last_seen=r["last_seen"], events=int(r["events_as_actor"]),
            owners=tuple(owners.get(r["identity"]) or ()), workloads=tuple(workloads.get(r["identity"]) or ()),
            credentials=tuple(cs), rotation_age_s=rot, scopes_granted=tuple(granted), scopes_used=tuple(used),
            scopes_unused=tuple(s for s in granted if s not in used), actions_used=tuple(actions.get(r["identity"]) or ()),
        ))
    return out


def render_inventory(inv: list[IdentityRecord]) -> str:
    """A text table for people."""
    from io import StringIO

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{len(inv)} identities")
    for col in ("identity", "type", "owners", "workloads", "credentials", "rotation age", "scopes unused", "last seen"):
        t.add_column(col)
    for r in inv:
        age = f"{r.rotation_age_s / 3600:.1f} h" if r.rotation_age_s is not None else "-"
        t.add_row(escape(r.identity), r.identity_type, escape(", ".join(r.owners)), escape(", ".join(r.workloads)),
                  str(len(r.credentials)), age, escape(" ".join(r.scopes_unused)), iso(r.last_seen) or "")
    buf = StringIO()
    Console(file=buf, width=200, color_system=None).print(t)
    return buf.getvalue()
