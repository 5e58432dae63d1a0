"""DP-ID-1: one non-human identity used from several workloads."""

from __future__ import annotations

from typing import Any

from analytics.detectors._common import make, several
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive
from analytics.lake import spans_files

DETECTION = Detection(
    id="DP-ID-1", title="Shared identity", severity="medium",
    description="One non-human identity (agent, workload, service account) acts from two or more distinct "
                "workloads (tool calls and policy decisions carrying `src_workload`). Replicas share one SPIFFE ID "
                "and count once; different workloads sharing an account lose attribution and least privilege.",
    nhi=("NHI9",), asi=("ASI03",), attack=("T1078",), csf=("PR.AA-01", "PR.AA-02"), maestro=("L4",),
    ai_rmf=("GOVERN 1.4",), match="identity",
    thresholds=(Threshold("min_workloads", 2, "workloads", "distinct workloads that make an identity shared"),),
)
SHARED_READS = ("int_credential_issued",)  # computed first in a catalog run (share_for)

# Two passes, as DP-TR-1: a cheap aggregate finds the identities with several workloads and the span of their
# events, then only their events are listed, from the day files of those spans (listing every identity's events,
# sorted, before HAVING filtered them cost 1.8-2.0 s of the catalog at 10M events).
_WHERE = """activity IN ('tool.invoked', 'decision') AND src_workload IS NOT NULL AND actor_id IS NOT NULL
  AND coalesce(actor_type, '') <> 'human'"""
_HITS = f"""
SELECT actor_id, min(time) AS lo, max(time) AS hi FROM events WHERE {_WHERE}
GROUP BY actor_id
HAVING {{several}} AND max(time) >= $since AND min(time) <= $until
"""  # noqa: S608 (constant text)
_EVENTS_OF = f"""
SELECT actor_id, list(DISTINCT src_workload) AS workloads, list(event_id ORDER BY time, event_id) AS ids,
       list(time ORDER BY time, event_id) AS times
FROM events_in($files)
WHERE {_WHERE} AND actor_id IN (SELECT unnest($keys))
GROUP BY actor_id
ORDER BY actor_id
"""  # noqa: S608 (constant text)


def detect(ctx: Context) -> list[Finding]:
    out = []
    n = int(ctx.p(DETECTION, "min_workloads"))
    cond = several(n, "src_workload", "min")
    hits = ctx.rows(_HITS.format(several=cond), {**ctx.window(), **({"min": n} if "$min" in cond else {})})
    files = spans_files(ctx.con, ((r["lo"], r["hi"]) for r in hits))
    found = ctx.rows(_EVENTS_OF, {"files": files, "keys": [r["actor_id"] for r in hits]}) if files else []
    # Ordered, so the alert's evidence list is the same on every run (scan order is not).
    issued = ctx.lookup("SELECT issue_target AS k, issue_event_id FROM int_credential_issued "
                        "WHERE issue_target IN (SELECT unnest($keys)) ORDER BY issued_at, issue_event_id",
                        [r["actor_id"] for r in found])
    for r in found:
        wl = sorted(r["workloads"])
        creds = issued.get(r["actor_id"], [])
        out.append(make(
            DETECTION, (r["actor_id"],), [r["actor_id"]], r["times"],
            [*r["ids"], *(c["issue_event_id"] for c in creds)], r["ids"][0],
            f"Identity {r['actor_id']} acted from {len(wl)} workloads ({', '.join(wl)}) between {r['times'][0]:%Y-%m-%d %H:%M:%S} "
            f"and {r['times'][-1]:%H:%M:%S}. One identity per workload keeps attribution and least privilege; "
            "a shared one cannot tell its users apart.",
            links=[Link(r["actor_id"], w, "acted_from", "src_workload of its calls and decisions") for w in wl],
            facts={"workloads": ",".join(wl)},
        ))
    return out


def _call(t: float, eid: str, wl: str) -> dict[str, Any]:
    return ev(t, eid, "tool.invoked", category="tool_call", actor_id="svc-reporting", actor_type="service_account",
              src_workload=wl, tool="reports.read")


EXAMPLES = (
    positive("two workloads", [_call(0, "x:1", "workload/report-cron"), _call(300, "x:2", "workload/etl-worker")],
             ("svc-reporting",)),
    benign("one workload, many calls", [_call(0, "x:1", "workload/report-cron"),
                                         _call(300, "x:2", "workload/report-cron")]),
)
