-- mart: a delegation is in force while the credential that carries it is valid
SELECT
    holder AS delegate,
    coalesce(on_behalf_of, delegation_chain[1]) AS delegator,
    delegation_chain,
    scope AS delegated_scope,
    credential_id,
    task_id,
    coalesce(issued_at, first_use) AS valid_from,
    valid_until,
    issue_event_id,
    CASE WHEN issue_event_id IS NOT NULL THEN 'on_behalf_of/act chain on ' || issue_activity
         ELSE 'on_behalf_of/act chain seen on use' END AS how
FROM credentials_for(ids)
WHERE holder IS NOT NULL
  AND (on_behalf_of IS NOT NULL OR len(coalesce(delegation_chain, [])) > 1)
  AND coalesce(on_behalf_of, delegation_chain[1]) <> holder
