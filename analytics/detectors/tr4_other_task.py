"""DP-TR-4: a per-task credential used for another task."""

from __future__ import annotations

from typing import Any

from analytics.detectors import _suspect_uses
from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, benign, ev, positive

DETECTION = Detection(
    id="DP-TR-4", title="Token reuse: outside its task", severity="medium",
    description="A credential issued for one agent task is presented in a request that carries another task id "
                "(sub-tasks `<task>.<n>` of the same task excepted). Per-task credentials bound blast radius to one "
                "task; crossing tasks defeats that binding.",
    nhi=("NHI9", "NHI5"), asi=("ASI03", "ASI02"), attack=("T1550.001",), csf=("PR.AA-05", "DE.CM-03"),
    maestro=("L3",), ai_rmf=("MEASURE 2.7",),
)
SHARED_READS = ("int_credential_issued",)  # computed first in a catalog run (share_for)

# One pass over the uses, each joined to its credential's issuance task: the credentials with a task are hashed
# (`build_right`: DuckDB hashed the ~9M uses otherwise and spilled). At 10M events 1.2 s for the query, against
# 1.8 s for listing the distinct (credential, task) pairs first and then the uses of the mismatched ones.
_SQL = """
SELECT u.credential_id, u.event_id, u.time, u.actor_id, u.task_id AS used_task, c.task_id AS cred_task,
       c.issue_event_id, c.issue_target AS holder
FROM events u JOIN (
    SELECT credential_id, task_id, issue_event_id, issue_target FROM int_credential_issued WHERE task_id IS NOT NULL
) c ON c.credential_id = u.credential_id
WHERE u.category IN ('tool_call', 'authorization', 'api_activity') AND u.time BETWEEN $since AND $until
  AND u.task_id IS NOT NULL AND u.task_id <> c.task_id AND NOT starts_with(u.task_id, c.task_id || '.')
ORDER BY u.credential_id, u.time, u.event_id
"""
# In a catalog run: the off-task uses among the shared suspect uses (`_suspect_uses`), the same rows.
_SHARED_SQL = """
SELECT credential_id, event_id, time, actor_id, used_task, cred_task, issue_event_id, issue_target AS holder
FROM {view}
WHERE time BETWEEN $since AND $until AND cred_task IS NOT NULL AND used_task IS NOT NULL
  AND used_task <> cred_task AND NOT starts_with(used_task, cred_task || '.')
ORDER BY credential_id, time, event_id
"""


def detect(ctx: Context) -> list[Finding]:
    by: dict[str, list[dict[str, Any]]] = {}
    view = _suspect_uses.suspect_uses(ctx)
    sql = _SQL if view is None else _SHARED_SQL.format(view=view)
    for r in ctx.rows(sql, ctx.window(), build_right=True):
        by.setdefault(r["credential_id"], []).append(r)
    out = []
    for cid, rs in by.items():
        tasks = sorted({r["used_task"] for r in rs})
        out.append(make(
            DETECTION, (cid,), [*(r["actor_id"] for r in rs), rs[0]["holder"]], [r["time"] for r in rs],
            [rs[0]["issue_event_id"], *(r["event_id"] for r in rs)], rs[0]["event_id"],
            f"Credential {cid} was issued for task {rs[0]['cred_task']} but presented {len(rs)} time(s) in requests "
            f"for task(s) {', '.join(tasks)}. A per-task credential must stay within its task; reuse across tasks "
            "lets one task act with another's grant.",
            links=[Link(rs[0]["issue_event_id"], r["event_id"], "used_for_other_task",
                        "credential_id; use task_id differs from issuance task_id") for r in rs],
            facts={"credential_id": cid, "issued_for_task": rs[0]["cred_task"], "used_for_tasks": ",".join(tasks)},
        ))
    return out


def _tl(task: str) -> list[dict[str, Any]]:
    return [
        ev(0, "x:iss", "token.exchanged", category="credential", credential_id="jti-4", actor_id="agent/a",
           actor_type="agent", task_id="task-X"),
        ev(30, "x:use", "tool.invoked", category="tool_call", credential_id="jti-4", actor_id="agent/a",
           task_id=task),
    ]


EXAMPLES = (
    positive("task X token used for task Y", _tl("task-Y"), ("jti-4",)),
    benign("used for its own task", _tl("task-X")),
    benign("used for a sub-task of its task", _tl("task-X.1")),
    positive("a task whose name only starts like its task", _tl("task-X2"), ("jti-4",)),
    positive("used for its own task, then for another", [*_tl("task-X"), ev(60, "x:use2", "decision",
             category="authorization", credential_id="jti-4", actor_id="agent/a", task_id="task-Z")], ("jti-4",)),
)
