-- intermediate: the first issuance record of each credential (login session, token, exchange, refresh, SVID, role session)
-- `first` orders by (time, event_id), so ties pick one record for every column
SELECT
    credential_id,
    min(time) AS issued_at,
    arg_min(event_id, first) AS issue_event_id,
    arg_min(activity, first) AS issue_activity,
    arg_min(credential_type, first) AS credential_type,
    arg_min(credential_parent_id, first) AS parent_id,
    -- a role session belongs to the role it assumed; every other credential to the actor it was issued to
    arg_min(CASE WHEN activity = 'role.assumed' THEN coalesce(target_id, actor_id) ELSE actor_id END, first) AS holder,
    arg_min(CASE WHEN activity = 'role.assumed' THEN 'role' ELSE actor_type END, first) AS holder_type,
    arg_min(actor_id, first) AS requested_by,
    -- the record's own target (subject, audience or assumed role), else its actor: whom the issuer named
    arg_min(coalesce(target_id, actor_id), first) AS issue_target,
    arg_min(on_behalf_of, first) AS on_behalf_of,
    arg_min(delegation_chain, first) AS delegation_chain,
    arg_min(scope, first) AS scope,
    arg_min(credential_expires_at, first) AS expires_at,
    arg_min(task_id, first) AS task_id,
    arg_min(src_workload, first) AS issued_to_workload,
    arg_min(source, first) AS issuer
FROM (SELECT *, {'t': time, 'e': event_id} AS first FROM events)
WHERE credential_id IS NOT NULL AND (ids IS NULL OR list_contains(ids, credential_id))
  AND activity IN ('session.started', 'token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted', 'role.assumed')
  AND coalesce(outcome, 'success') <> 'failure'
GROUP BY credential_id
