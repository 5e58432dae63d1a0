-- intermediate: how each credential was used (every event presenting it that neither issues nor revokes it)
WITH per_origin AS (
    SELECT credential_id, src_workload, src_ip, count(*) AS uses, min(time) AS first_use, max(time) AS last_use,
           max(credential_expires_at) AS seen_expires_at,
           arg_min(actor_id, time) AS actor_id, arg_min(actor_type, time) AS actor_type,
           arg_min(credential_type, time) AS credential_type,
           arg_min(on_behalf_of, time) AS on_behalf_of, arg_min(delegation_chain, time) AS delegation_chain,
           arg_min(scope, time) AS scope, arg_min(task_id, time) AS task_id
    FROM events
    WHERE credential_id IS NOT NULL AND (ids IS NULL OR list_contains(ids, credential_id))
      AND activity NOT IN ('session.started', 'token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted',
                           'role.assumed', 'token.revoked', 'secret.revoked', 'session.ended', 'request')
    GROUP BY credential_id, src_workload, src_ip
)
SELECT
    credential_id,
    sum(uses)::BIGINT AS uses,
    min(first_use) AS first_use,
    max(last_use) AS last_use,
    max(seen_expires_at) AS seen_expires_at,
    arg_min(actor_id, first_use) AS used_by,
    arg_min(actor_type, first_use) AS used_by_type,
    arg_min(credential_type, first_use) AS credential_type,
    arg_min(on_behalf_of, first_use) AS on_behalf_of,
    arg_min(delegation_chain, first_use) AS delegation_chain,
    arg_min(scope, first_use) AS scope,
    arg_min(task_id, first_use) AS task_id,
    list({'workload': src_workload, 'ip': src_ip, 'uses': uses} ORDER BY uses DESC, src_workload, src_ip)
        AS uses_by_origin,
    count(DISTINCT src_workload)::BIGINT AS workloads,
    count(DISTINCT src_ip)::BIGINT AS ips
FROM per_origin
GROUP BY credential_id
