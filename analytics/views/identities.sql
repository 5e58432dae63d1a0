-- mart: every identity seen as actor, target, delegator or delegation-chain member
WITH seen AS (
    SELECT actor_id AS identity, actor_type AS identity_type, time, 'actor' AS role FROM events WHERE actor_id IS NOT NULL
    UNION ALL
    SELECT target_id, NULL, time, 'target' FROM events WHERE target_id IS NOT NULL
    UNION ALL
    SELECT on_behalf_of, NULL, time, 'delegator' FROM events WHERE on_behalf_of IS NOT NULL
    UNION ALL
    SELECT unnest(delegation_chain), NULL, time, 'chain' FROM events WHERE len(coalesce(delegation_chain, [])) > 1
)
SELECT identity,
       coalesce(mode(identity_type), 'unknown') AS identity_type,
       min(time) AS first_seen,
       max(time) AS last_seen,
       count(*) FILTER (WHERE role = 'actor')::BIGINT AS events_as_actor,
       list(DISTINCT role ORDER BY role) AS seen_as
FROM seen
GROUP BY identity
