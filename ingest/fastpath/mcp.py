"""Vectorised ``sources.mcp.parse``: an explicit ``pyarrow.json`` schema and one SQL query.

A record whose values do not have the schema's types fails the decode and takes the Python parser;
so do the shapes ``admit`` or the query's ``ok`` column turn away.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ingest.fastpath._sql import struct as _st

FORMAT = "mcp"
MARKER = "log_id"
# Top-level keys the fast path accepts: none lets an earlier parser sniff the record, and
# ``headers`` (a bearer token the Python parser fingerprints) is not among them.
KEYS = frozenset({"log_id", "timestamp", "server", "session_id", "peer", "auth", "request", "response"})

_s, _i = pa.string(), pa.int64()


SCHEMA = pa.schema([
    ("log_id", _s), ("timestamp", _s), ("server", _s), ("session_id", _s),
    ("peer", _st(ip=_s, user_agent=_s, spiffe_id=_s, workload=_s)),
    # act nests at most twice here (a third level that is an object fails the decode)
    ("auth", _st(sub=_s, act=_st(sub=_s, act=_st(sub=_s, act=_s)), jti=_s, token=_s, access_token=_s, exp=_i,
                 scope=_s, scp=_s, iss=_s, aud=_s, client_id=_s)),
    ("request", _st(id=_i, method=_s, params=_st(name=_s, uri=_s, _meta=_st(
        traceparent=_s, resource=_s, resource_sensitivity=_s, task_id=_s, parent_span_id=_s)))),
    ("response", _st(error=_st(message=_s, code=_i),
                     result=_st(isError=pa.bool_(), content=pa.list_(_st(text=_s))))),
])
EXTRA: tuple[tuple[str, pa.DataType], ...] = ()


def admit(rec: dict[str, Any]) -> tuple[Any, ...] | None:
    """Shapes the schema cannot tell apart: ``response`` must be absent/null or a non-empty object."""
    resp = rec.get("response")
    if resp is not None and not (type(resp) is dict and resp):
        return None
    return ()


_DENIED = "forbidden|permission denied|access denied|unauthori[sz]ed|not allowed|insufficient[_ ]scope"
_TP = "^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}"

SQL = f"""
WITH y AS (
  SELECT i,
    log_id, server, session_id, peer, auth, request,
    request.method AS m,
    request.params AS params,
    request.params._meta AS meta,
    jtime("timestamp") AS t,
    s(auth.sub) AS s_sub,
    CASE WHEN auth.act IS NULL THEN []
         WHEN auth.act.act IS NULL THEN list_filter([s(auth.act.sub)], lambda a: a IS NOT NULL)
         ELSE list_filter([s(auth.act.sub), s(auth.act.act.sub)], lambda a: a IS NOT NULL) END AS acts,
    coalesce(s(auth.jti), CASE WHEN s(auth.token) IS NULL AND s(auth.access_token) IS NULL THEN NULL
                               ELSE '!' END) AS cred,
    response IS NOT NULL AS has_resp,
    response.error IS NOT NULL AS has_err,
    response.error AS err,
    response.error IS NULL AND response.result.isError IS TRUE AS tool_err,
    response.result.content AS content,
    lower(trim(s(request.params._meta.traceparent))) AS tp
  FROM src
),
z AS (
  SELECT *,
    CASE WHEN len(acts) > 0 THEN acts[1] ELSE s_sub END AS actor,
    CASE WHEN has_err THEN coalesce(s(err.message), 'JSON-RPC error')
         WHEN tool_err THEN coalesce(list_filter(list_transform(coalesce(content, []), lambda c: s(c.text)),
                                                 lambda x: x IS NOT NULL)[1][1:500], 'tool returned isError')
    END AS reason_
  FROM y
)
SELECT
  i,
  (s(log_id) IS NOT NULL AND t IS NOT NULL AND year(t) BETWEEN 1970 AND 2200 AND s(m) IS NOT NULL
   AND (cred IS NULL OR (cred <> '!' AND (auth.exp IS NULL OR auth.exp BETWEEN 0 AND 7289654399)))) AS ok,
  'mcp:' || log_id AS event_id,
  t AS time,
  strftime(t, '%Y-%m-%d') AS day,
  'mcp' AS source, 'mcp' AS format, 'tool_call' AS category,
  CASE m WHEN 'tools/call' THEN 'tool.invoked' WHEN 'resources/read' THEN 'resource.read'
         WHEN 'prompts/get' THEN 'prompt.read' ELSE 'mcp.' || replace(m, '/', '.') END AS activity,
  actor AS actor_id,
  coalesce(idtype(actor), CASE WHEN actor IS NOT NULL THEN 'unknown' END) AS actor_type,
  CASE WHEN len(acts) > 0 AND s_sub IS NOT NULL AND s_sub <> actor THEN s_sub END AS on_behalf_of,
  CASE WHEN len(acts) > 0 THEN (CASE WHEN s_sub IS NOT NULL THEN [s_sub] ELSE [] END) || list_reverse(acts)
  END AS delegation_chain,
  coalesce(s(peer.spiffe_id), s(peer.workload)) AS src_workload,
  s(peer.ip) AS src_ip,
  s(peer.user_agent) AS user_agent,
  cred AS credential_id,
  CASE WHEN cred IS NOT NULL THEN 'oauth_access_token' END AS credential_type,
  CASE WHEN cred IS NOT NULL THEN make_timestamp(auth.exp * 1000000) END AS credential_expires_at,
  coalesce(words_str(auth.scope), words_str(auth.scp)) AS scope,
  m AS action,
  CASE WHEN m = 'tools/call' THEN s(params.name) END AS tool,
  coalesce(s(meta.resource), CASE WHEN m = 'resources/read' THEN s(params.uri) END) AS resource,
  s(meta.resource_sensitivity) AS resource_sensitivity,
  CASE WHEN has_err AND (regexp_matches(reason_, '{_DENIED}', 'i') OR err.code IN (401, 403))
       THEN 'deny' END AS decision,
  reason_ AS reason,
  CASE WHEN has_err OR tool_err THEN 'failure' WHEN has_resp THEN 'success' ELSE 'unknown' END AS outcome,
  s(meta.task_id) AS task_id,
  nullif(regexp_extract(tp, '{_TP}', 1), '') AS trace_id,
  nullif(regexp_extract(tp, '{_TP}', 2), '') AS span_id,
  s(meta.parent_span_id) AS parent_span_id,
  s(session_id) AS session_id,
  concat('{{"method":"', m, '"',
    CASE WHEN has_err AND err.code IS NOT NULL THEN ',"error_code":' || CAST(err.code AS VARCHAR) END,
    jstr_member('server', s(server)),
    CASE WHEN request.id IS NOT NULL THEN ',"jsonrpc_id":' || CAST(request.id AS VARCHAR) END,
    jstr_member('token_iss', s(auth.iss)), jstr_member('token_aud', s(auth.aud)),
    jstr_member('token_client_id', s(auth.client_id)),
  '}}') AS attributes
FROM z
"""  # noqa: S608 - constant text, no input in it
