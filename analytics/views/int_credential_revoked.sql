-- intermediate: the first revocation of each credential
SELECT credential_id, min(time) AS revoked_at, arg_min(event_id, (time, event_id)) AS revoke_event_id
FROM events
WHERE credential_id IS NOT NULL AND (ids IS NULL OR credential_id IN (SELECT unnest(ids))) AND activity IN ('token.revoked', 'secret.revoked', 'session.ended')
  AND coalesce(outcome, 'success') <> 'failure'
GROUP BY credential_id
