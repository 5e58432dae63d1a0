"""Vectorised ``sources.opa.parse``: an explicit ``pyarrow.json`` schema and one SQL query.

``attributes`` (bundles, labels, metrics, result: the record's own JSON values) and the policy
version come from the Python parser's own ``sources.opa.attributes``, called on the decoded record.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from ingest.events import ACTOR_TYPES
from ingest.fastpath._sql import struct as _st
from ingest.sources import opa as opa_parser

FORMAT = "opa"
MARKER = "decision_id"
# No ``error`` (the Python parser's error branch), no ``time`` (its timestamp fallback), and nothing
# an earlier parser sniffs on (keycloak's ``type``, spire's ``msg``, cloudtrail's ``eventSource``).
KEYS = frozenset({"decision_id", "path", "query", "input", "result", "bundles", "labels", "timestamp",
                  "requested_by", "metrics", "req_id", "erased", "masked", "trace_id", "span_id", "revision"})

_s = pa.string()
_ls = pa.list_(_s)


SCHEMA = pa.schema([
    ("decision_id", _s), ("timestamp", _s), ("path", _s), ("query", _s), ("requested_by", _s),
    ("trace_id", _s), ("span_id", _s),
    ("input", _st(
        subject=_st(id=_s, sub=_s, name=_s, type=_s, on_behalf_of=_s, delegation_chain=_ls, act_chain=_ls,
                    workload=_s, token_jti=_s, jti=_s, scopes=_ls, scope=_s),
        resource=_st(id=_s, sensitivity=_s), path=_s, resource_sensitivity=_s, action=_s, method=_s, tool=_s,
        task_id=_s, trace_id=_s, span_id=_s, parent_span_id=_s, session_id=_s)),
    ("result", _st(allow=pa.bool_(), reasons=_ls)),
])
EXTRA: tuple[tuple[str, pa.DataType], ...] = (("attributes", _s), ("policy_version", _s))


def admit(rec: dict[str, Any]) -> tuple[Any, ...] | None:
    """Shapes the schema cannot tell apart, and the values taken from the Python parser.

    The subject must be ``input.subject`` (an object); ``result`` an object whose ``allow`` is a
    boolean and whose ``reasons`` is a list (so ``opa._decision`` reads exactly those two).
    """
    inp = rec.get("input")
    if type(inp) is not dict or type(inp.get("subject")) is not dict:
        return None
    res = rec.get("result")
    if type(res) is not dict or type(res.get("allow")) is not bool or type(res.get("reasons")) is not list:
        return None
    attrs, version = opa_parser.attributes(rec)
    return (orjson.dumps(attrs, default=str).decode() if attrs is not None else None, version)


_ACTOR_TYPES = ", ".join(f"'{t}'" for t in ACTOR_TYPES)

SQL = f"""
WITH y AS (
  SELECT *,
    jtime("timestamp") AS t,
    "input".subject AS subj,
    coalesce(s("input".subject.id), s("input".subject.sub), s("input".subject.name)) AS actor,
    s("input".subject.on_behalf_of) AS obo,
    coalesce(s("input".subject.token_jti), s("input".subject.jti)) AS jti,
    s(requested_by) AS rb
  FROM src
)
SELECT
  i,
  (s(decision_id) IS NOT NULL AND t IS NOT NULL AND year(t) BETWEEN 1970 AND 2200) AS ok,
  'opa:' || decision_id AS event_id,
  t AS time,
  strftime(t, '%Y-%m-%d') AS day,
  'opa' AS source, 'opa' AS format, 'authorization' AS category, 'decision' AS activity,
  actor AS actor_id,
  CASE WHEN s(subj.type) IN ({_ACTOR_TYPES}) THEN subj.type
       ELSE coalesce(idtype(actor), CASE WHEN actor IS NOT NULL THEN 'unknown' END) END AS actor_type,
  obo AS on_behalf_of,
  coalesce(words_list(subj.delegation_chain), words_list(subj.act_chain),
           CASE WHEN obo IS NOT NULL AND actor IS NOT NULL THEN [obo, actor] END) AS delegation_chain,
  s(subj.workload) AS src_workload,
  CASE WHEN rb IS NULL THEN NULL
       WHEN starts_with(rb, '[') THEN nullif(split_part(substr(rb, 2), ']', 1), '')
       WHEN length(rb) - length(replace(rb, ':', '')) = 1 THEN nullif(split_part(rb, ':', 1), '')
       ELSE rb END AS src_ip,
  jti AS credential_id,
  CASE WHEN jti IS NOT NULL THEN 'oauth_access_token' END AS credential_type,
  coalesce(words_list(subj.scopes), words_str(subj.scope)) AS scope,
  coalesce(s("input".action), s("input".method)) AS action,
  s("input".tool) AS tool,
  coalesce(s("input".resource.id), s("input".path)) AS resource,
  coalesce(s("input".resource.sensitivity), s("input".resource_sensitivity)) AS resource_sensitivity,
  CASE WHEN result.allow THEN 'allow' ELSE 'deny' END AS decision,
  coalesce(s(path), s(query)) AS policy_id,
  policy_version,
  nullif(array_to_string(list_filter(result.reasons, lambda x: x IS NOT NULL AND x <> ''), '; '), '') AS reason,
  s("input".task_id) AS task_id,
  coalesce(s("input".trace_id), s(trace_id)) AS trace_id,
  coalesce(s("input".span_id), s(span_id)) AS span_id,
  s("input".parent_span_id) AS parent_span_id,
  s("input".session_id) AS session_id,
  decision_id AS request_id,
  attributes
FROM y
"""  # noqa: S608 - constant text, no input in it
