-- mart: what identities did (tool calls, API calls, secret access), with outcome
SELECT event_id, time, day, source, category, activity, actor_id, actor_type, on_behalf_of, delegation_chain,
       src_workload, src_ip, credential_id, credential_type, scope, action, tool, action_key, resource,
       resource_sensitivity, decision, reason, outcome, task_id, trace_id, span_id, parent_span_id, session_id,
       request_id
FROM events
WHERE (category IN ('tool_call', 'api_activity') OR activity LIKE 'secret.%')
  AND activity NOT IN ('request', 'api.request.received', 'session.started')
