-- mart: authorization decisions
SELECT event_id, time, day, source, actor_id, actor_type, on_behalf_of, delegation_chain, src_workload, credential_id,
       scope, action, tool, action_key, resource, resource_sensitivity, decision, policy_id, policy_version, reason,
       task_id, trace_id, span_id, parent_span_id, request_id
FROM events
WHERE activity = 'decision'
