"""Helper views the detectors share, over the canonical ``events`` view of ``analytics.lake``.

Note: ``analytics.lake`` (the analytics core) owns the general views; ``dp_creds`` is the narrow
detector-side relation it lacks (issuance event id, holder and task of each credential in one row;
``dp_`` prefix so the names never collide). Move it there if it becomes generally useful.
"""

from __future__ import annotations

import duckdb

# One row per credential: when and to whom it was issued, its parent, scope, expiry, task, first revocation.
CREDS = """
CREATE OR REPLACE TEMP VIEW dp_creds AS
WITH iss AS (
  SELECT credential_id, time AS issued_at, event_id AS issue_event_id, activity AS issued_by,
         coalesce(target_id, actor_id) AS holder, actor_id, actor_type, on_behalf_of, delegation_chain,
         credential_parent_id AS parent_id, credential_type, credential_expires_at AS expires_at, scope, task_id,
         row_number() OVER (PARTITION BY credential_id ORDER BY time, event_id) AS rn
  FROM events
  WHERE activity IN ('token.issued', 'token.exchanged', 'token.refreshed', 'role.assumed', 'svid.minted',
                     'session.started')
    AND credential_id IS NOT NULL AND coalesce(outcome, 'success') <> 'failure'
), rev AS (
  SELECT credential_id, min(time) AS revoked_at, arg_min(event_id, time) AS revoke_event_id
  FROM events WHERE activity IN ('token.revoked', 'secret.revoked', 'session.ended') AND credential_id IS NOT NULL
  GROUP BY credential_id
)
SELECT iss.* EXCLUDE (rn), rev.revoked_at, rev.revoke_event_id
FROM iss LEFT JOIN rev USING (credential_id) WHERE rn = 1
"""


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the detector helper views on a connection that has ``events``."""
    con.execute(CREDS)
