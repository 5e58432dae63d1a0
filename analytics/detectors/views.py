"""Helper views the detectors share, over the canonical ``events`` view.

Note: ``analytics.lake`` (the analytics core) owns the general views; these are the narrow
detector-side relations it did not have when the detectors were written (``dp_`` prefix so the
names never collide). Move them there if they become generally useful.
"""

from __future__ import annotations

import duckdb

ISSUING = ("token.issued", "token.exchanged", "token.refreshed", "role.assumed", "svid.minted", "session.started")
REVOKING = ("token.revoked", "secret.revoked", "session.ended")
_ISSUING_SQL = ", ".join(f"'{a}'" for a in ISSUING)
_REVOKING_SQL = ", ".join(f"'{a}'" for a in REVOKING)

# One row per credential: when and to whom it was issued, its parent, scope, expiry, task, revocation.
CREDS = f"""
CREATE OR REPLACE TEMP VIEW dp_creds AS
WITH iss AS (
  SELECT credential_id, time AS issued_at, event_id AS issue_event_id, activity AS issued_by,
         coalesce(target_id, actor_id) AS holder, actor_id, actor_type, on_behalf_of, delegation_chain,
         credential_parent_id AS parent_id, credential_type, credential_expires_at AS expires_at, scope, task_id,
         row_number() OVER (PARTITION BY credential_id ORDER BY time, event_id) AS rn
  FROM events WHERE activity IN ({_ISSUING_SQL}) AND credential_id IS NOT NULL
    AND coalesce(outcome, 'success') <> 'failure'
), rev AS (
  SELECT credential_id, min(time) AS revoked_at, arg_min(event_id, time) AS revoke_event_id
  FROM events WHERE activity IN ({_REVOKING_SQL}) AND credential_id IS NOT NULL GROUP BY credential_id
)
SELECT iss.* EXCLUDE (rn), rev.revoked_at, rev.revoke_event_id
FROM iss LEFT JOIN rev USING (credential_id) WHERE rn = 1
"""

# Every presentation of a credential: events made with it, and exchanges / role assumptions that
# presented it as their parent (subject token, caller key).
USES = f"""
CREATE OR REPLACE TEMP VIEW dp_uses AS
SELECT event_id, time, activity, credential_id, actor_id, actor_type, on_behalf_of, delegation_chain,
       src_workload, src_ip, user_agent, task_id, tool, action, resource, decision, outcome, scope,
       credential_expires_at, source, trace_id, span_id, request_id, 'used' AS how
FROM events
WHERE credential_id IS NOT NULL AND activity NOT IN ({_ISSUING_SQL}) AND activity NOT IN ({_REVOKING_SQL})
  AND activity <> 'request'
UNION ALL
SELECT event_id, time, activity, credential_parent_id, actor_id, actor_type, on_behalf_of, delegation_chain,
       src_workload, src_ip, user_agent, task_id, tool, action, resource, decision, outcome, scope,
       NULL, source, trace_id, span_id, request_id, 'presented as parent' AS how
FROM events
WHERE credential_parent_id IS NOT NULL AND activity IN ({_ISSUING_SQL})
"""


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the detector helper views on a connection that has ``events``."""
    con.execute(CREDS)
    con.execute(USES)
