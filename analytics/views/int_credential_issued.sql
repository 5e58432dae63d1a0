-- intermediate: the first issuance record of each credential (login session, token, exchange, refresh, SVID, role session)
-- The first record by (time, event_id), whole: every column comes from the same record. Nearly every credential
-- has one issuance record, which is its own first: only the credentials with several are ranked. Ranking every
-- credential's records (one window over all of them) took 2.1-2.6 s and 4.1-4.9 s CPU on 10M events and 1.73M
-- credentials; finding the few with several first and ranking only theirs, 1.1-1.5 s and 2.1-2.8 s CPU. (Keeping
-- row 1 of each partition already beat aggregating the record into a struct with arg_min: 6.6-7.9 s; one arg_min
-- per column was 37 s.) `iss` is read again by each branch rather than materialized: cheaper, and less memory.
WITH iss AS NOT MATERIALIZED (
    SELECT credential_id, time AS issued_at, event_id, activity, credential_type, credential_parent_id, actor_id,
           actor_type, target_id, on_behalf_of, delegation_chain, scope, credential_expires_at, task_id, src_workload,
           source
    FROM events
    WHERE credential_id IS NOT NULL AND (ids IS NULL OR credential_id IN (SELECT unnest(ids)))
      AND activity IN ('session.started', 'token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted', 'role.assumed')
      AND coalesce(outcome, 'success') <> 'failure'
), several AS MATERIALIZED (
    SELECT credential_id FROM iss GROUP BY credential_id HAVING count(*) > 1
), first AS (
    SELECT iss.* FROM iss ANTI JOIN several USING (credential_id)
    UNION ALL
    SELECT * FROM (SELECT iss.* FROM iss SEMI JOIN several USING (credential_id))
    QUALIFY row_number() OVER (PARTITION BY credential_id ORDER BY issued_at, event_id) = 1
)
SELECT
    credential_id,
    issued_at,
    event_id AS issue_event_id,
    activity AS issue_activity,
    credential_type AS credential_type,
    credential_parent_id AS parent_id,
    -- a role session belongs to the role it assumed; every other credential to the actor it was issued to
    CASE WHEN activity = 'role.assumed' THEN coalesce(target_id, actor_id) ELSE actor_id END AS holder,
    CASE WHEN activity = 'role.assumed' THEN 'role' ELSE actor_type END AS holder_type,
    actor_id AS requested_by,
    -- the record's own target (subject, audience or assumed role), else its actor: whom the issuer named
    coalesce(target_id, actor_id) AS issue_target,
    on_behalf_of AS on_behalf_of,
    delegation_chain AS delegation_chain,
    scope AS scope,
    credential_expires_at AS expires_at,
    task_id AS task_id,
    src_workload AS issued_to_workload,
    source AS issuer
FROM first
