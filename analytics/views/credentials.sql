-- mart: one row per credential, its lifecycle from issuance (or first sighting) to expiry or revocation.
-- Restrict with `credentials_for(ids)` (the scans filter on the id list). Each intermediate is read once:
-- a full outer join on the id, not a union of ids joined back to both (which held both in memory).
SELECT
    credential_id,
    coalesce(i.credential_type, u.credential_type) AS credential_type,
    coalesce(i.holder, u.used_by) AS holder,
    coalesce(i.holder_type, u.used_by_type) AS holder_type,
    i.requested_by,
    coalesce(i.on_behalf_of, u.on_behalf_of) AS on_behalf_of,
    coalesce(i.delegation_chain, u.delegation_chain) AS delegation_chain,
    coalesce(i.scope, u.scope) AS scope,
    i.parent_id,
    i.issue_activity,
    coalesce(i.task_id, u.task_id) AS task_id,
    i.issued_at,
    coalesce(i.expires_at, u.seen_expires_at) AS expires_at,
    r.revoked_at,
    least(coalesce(i.expires_at, u.seen_expires_at), r.revoked_at) AS valid_until,
    u.first_use,
    u.last_use,
    coalesce(u.uses, 0)::BIGINT AS uses,
    coalesce(u.workloads, 0)::BIGINT AS workloads,
    coalesce(u.ips, 0)::BIGINT AS ips,
    u.uses_by_origin,
    i.issue_event_id,
    r.revoke_event_id,
    i.issuer
FROM int_credential_issued_for(ids) i
FULL OUTER JOIN int_credential_used_for(ids) u USING (credential_id)
LEFT JOIN int_credential_revoked_for(ids) r USING (credential_id)
