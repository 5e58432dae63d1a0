"""Vectorised ``sources.keycloak.parse``: an explicit ``pyarrow.json`` schema and one SQL query.

``attributes`` (the event's type, realm, client and its unmapped ``details``) come from the Python
parser's own ``sources.keycloak.attributes``, called on the decoded record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa

from ingest.sources import keycloak as kc
from ingest.sources._fields import _s

FORMAT = "keycloak"
MARKER = "type"
# Keycloak sniffs first; these are EventRepresentation's fields (admin events take the Python parser).
KEYS = frozenset({"id", "time", "type", "realmId", "realmName", "clientId", "userId", "sessionId", "ipAddress",
                  "error", "details"})

_s_t = pa.string()

SCHEMA = pa.schema([
    ("id", _s_t), ("time", pa.int64()), ("type", _s_t), ("clientId", _s_t), ("userId", _s_t),
    ("sessionId", _s_t), ("ipAddress", _s_t), ("error", _s_t),
    ("details", pa.struct([(k, _s_t) for k in (
        "actor", "act_chain", "username", "token_id", "subject_token_id", "refresh_token_id", "expires_at", "scope",
        "task_id")])),
])
EXTRA: tuple[tuple[str, pa.DataType], ...] = (("attributes", _s_t),)


def admit(rec: dict[str, Any]) -> tuple[Any, ...] | None:
    """What ``keycloak.sniff`` asks beyond types (key presence), and the attributes."""
    etype = rec.get("type")
    if type(etype) is not str or not kc._TYPE.match(etype) or type(rec.get("time")) is not int:
        return None  # (an ISO text time, seen in the wild, would fail the decode: cheaper to check here)
    if "realmId" not in rec and "realmName" not in rec:
        return None
    base = etype[: -len("_ERROR")] if etype.endswith("_ERROR") else etype
    details = rec.get("details")
    attrs = kc.attributes(rec, etype, base, _s(rec.get("userId")), details if isinstance(details, Mapping) else {})
    return (orjson.dumps(attrs, default=str).decode(),)


def _in(names: Any) -> str:
    return ", ".join(f"'{n}'" for n in sorted(names))


_CATEGORY = " ".join(f"WHEN '{b}' THEN '{c}'" for b, (c, _) in kc._ACTIVITY.items())
_ACTIVITY = " ".join(f"WHEN '{b}' THEN '{a}'" for b, (_, a) in kc._ACTIVITY.items())
_CLIENT_TYPE = ("coalesce(idtype({c}), CASE WHEN starts_with({c}, 'agent-') OR starts_with({c}, 'agent_') "
                "THEN 'agent' ELSE 'service_account' END)")

SQL = f"""
WITH y AS (
  SELECT *,
    ends_with("type", '_ERROR') AS failed,
    CASE WHEN ends_with("type", '_ERROR') THEN left("type", length("type") - 6) ELSE "type" END AS base,
    s(userId) AS user_id, s(clientId) AS client_id, s(sessionId) AS sess, s(details.actor) AS actor,
    s(details.token_id) AS token_id, s(details.username) AS username,
    jtime(s(details.expires_at)) AS expires
  FROM src
),
z AS (
  SELECT *,
    CASE WHEN base = 'CLIENT_LOGIN' THEN NULL ELSE user_id END AS person,
    CASE WHEN actor IS NOT NULL THEN actor
         WHEN base = 'CLIENT_LOGIN' AND client_id IS NOT NULL THEN client_id
         WHEN user_id IS NOT NULL THEN user_id
         WHEN base IN ('LOGIN', 'LOGOUT') THEN username
         WHEN client_id IS NOT NULL THEN client_id END AS actor_id_,
    CASE WHEN actor IS NOT NULL THEN coalesce(idtype(actor), 'unknown')
         WHEN base = 'CLIENT_LOGIN' AND client_id IS NOT NULL THEN {_CLIENT_TYPE.format(c="client_id")}
         WHEN user_id IS NOT NULL THEN coalesce(idtype(user_id), 'human')
         WHEN base IN ('LOGIN', 'LOGOUT') THEN CASE WHEN username IS NOT NULL
                                                     THEN coalesce(idtype(username), 'human') END
         WHEN client_id IS NOT NULL THEN {_CLIENT_TYPE.format(c="client_id")} END AS actor_type_,
    base = 'LOGIN' OR (base = 'LOGOUT' AND token_id IS NULL) AS session_cred,
    CASE WHEN base = 'LOGIN' OR (base = 'LOGOUT' AND token_id IS NULL) THEN NULL
         WHEN base = 'TOKEN_EXCHANGE' THEN s(details.subject_token_id)
         WHEN base = 'REFRESH_TOKEN' THEN s(details.refresh_token_id)
         WHEN base = 'CODE_TO_TOKEN' THEN sess END AS parent
  FROM y
),
w AS (
  SELECT *,
    CASE WHEN session_cred THEN sess ELSE token_id END AS cred,
    CASE WHEN actor IS NOT NULL AND person IS NOT NULL AND person <> actor THEN person END AS obo
  FROM z
)
SELECT
  i,
  (s(id) IS NOT NULL AND "time" BETWEEN 100000000001 AND 7289654399999
   AND regexp_full_match("type", '[A-Z][A-Z0-9_]*')
   AND (s(details.expires_at) IS NULL OR (expires IS NOT NULL AND year(expires) BETWEEN 1970 AND 2200))) AS ok,
  'keycloak:' || id AS event_id,
  make_timestamp("time" * 1000) AS time,
  strftime(make_timestamp("time" * 1000), '%Y-%m-%d') AS day,
  'keycloak' AS source, 'keycloak' AS format,
  CASE base {_CATEGORY} ELSE 'authentication' END AS category,
  CASE base {_ACTIVITY} ELSE 'idp.' || lower(base) END AS activity,
  actor_id_ AS actor_id,
  actor_type_ AS actor_type,
  obo AS on_behalf_of,
  coalesce(words_str(details.act_chain), CASE WHEN obo IS NOT NULL AND actor_id_ IS NOT NULL THEN [obo, actor_id_] END)
    AS delegation_chain,
  CASE WHEN base = 'CLIENT_LOGIN' THEN client_id
       WHEN base IN ({_in(kc._ISSUING | {"LOGIN"})})
         THEN coalesce(user_id, CASE WHEN base = 'LOGIN' THEN actor_id_ ELSE client_id END)
       WHEN base = 'REVOKE_GRANT' THEN user_id END AS target_id,
  s(ipAddress) AS src_ip,
  cred AS credential_id,
  CASE WHEN cred IS NULL AND parent IS NULL THEN NULL WHEN session_cred THEN 'session'
       ELSE 'oauth_access_token' END AS credential_type,
  parent AS credential_parent_id,
  expires AS credential_expires_at,
  words_str(details.scope) AS scope,
  base AS action,
  CASE WHEN failed THEN 'deny' END AS decision,
  CASE WHEN failed THEN s(error) END AS reason,
  CASE WHEN failed THEN 'failure' ELSE 'success' END AS outcome,
  s(details.task_id) AS task_id,
  sess AS session_id,
  attributes
FROM w
"""  # noqa: S608 - constant text, no input in it
