-- mart: each policy version seen in decision records, in force from its first decision until the next version's
WITH v AS (
    SELECT policy_id, policy_version, min(time) AS first_seen, max(time) AS last_seen, count(*)::BIGINT AS decisions,
           count(*) FILTER (WHERE decision = 'allow')::BIGINT AS allows,
           count(*) FILTER (WHERE decision = 'deny')::BIGINT AS denies
    FROM events
    WHERE activity = 'decision' AND policy_id IS NOT NULL AND policy_version IS NOT NULL
    GROUP BY policy_id, policy_version
)
SELECT *, first_seen AS in_force_from,
       lead(first_seen) OVER (PARTITION BY policy_id ORDER BY first_seen) AS in_force_until
FROM v
