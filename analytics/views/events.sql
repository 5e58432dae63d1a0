-- staging: one row per canonical event, with `action_key` = the tool name for tool calls, else the action
SELECT *, coalesce(tool, action) AS action_key
FROM raw_events
