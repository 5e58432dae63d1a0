"""DP-CR-2: a secret read although it was not rotated within policy."""

from __future__ import annotations

from typing import Any

from analytics.detectors._common import make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive

DETECTION = Detection(
    id="DP-CR-2", title="Stale secret", severity="medium",
    description="A secret is read while its last rotation (a secret.rotated of the same path) is older than the "
                "rotation policy, or no rotation is known at all. Stale static secrets are the NHI failure most "
                "often behind breaches.",
    nhi=("NHI7", "NHI2"), asi=("ASI03",), attack=("T1552",), csf=("PR.AA-01", "ID.AM-08"), maestro=("L4",),
    thresholds=(Threshold("max_age_days", 90, "d", "secret rotation policy"),),
)

# The latest rotation at or before each read, by an ASOF join (one correlated subquery per column cost three
# joins of every read), over one scan for both activities (each scan of a rare activity decodes its columns in
# every file: 10M events, its query 1.2 s with two scans, 0.7 s with one). Rotations at the same instant count as
# one, the one with the greatest event id, so the answer is the same on every run.
_SQL = """
WITH s AS MATERIALIZED (
    SELECT event_id, time, actor_id, resource, request_id, activity FROM events
    WHERE activity IN ('secret.read', 'secret.rotated') AND resource IS NOT NULL
), rot AS (
    SELECT resource, time, arg_max({'event_id': event_id, 'request_id': request_id}, event_id) AS x
    FROM s WHERE activity = 'secret.rotated'
    GROUP BY resource, time
)
SELECT r.event_id, r.time, r.actor_id, r.resource, r.request_id,
       x.time AS last_rot, x.x.event_id AS rot_id, x.x.request_id AS rot_req
FROM s r ASOF LEFT JOIN rot x ON x.resource = r.resource AND x.time <= r.time
WHERE r.activity = 'secret.read' AND r.time BETWEEN $since AND $until
  -- only stale reads come back (returning every read to test its age in Python: ~0.5 s for 180k reads at 10M)
  AND (x.time IS NULL OR epoch_us(r.time) - epoch_us(x.time) > $max_age_us)
ORDER BY r.time, r.event_id
"""
_REQ = ("SELECT request_id AS k, event_id FROM events WHERE activity = 'request' AND request_id IN (SELECT unnest($keys))"
        " ORDER BY time, event_id")


def detect(ctx: Context) -> list[Finding]:
    max_age = ctx.p(DETECTION, "max_age_days") * 86400
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in ctx.rows(_SQL, {**ctx.window(), "max_age_us": max_age * 1e6}):
        r["age"] = None if r["last_rot"] is None else (r["time"] - r["last_rot"]).total_seconds()
        by.setdefault((r["resource"], r["rot_id"] or "never"), []).append(r)
    out = []
    req_rows = ctx.lookup(_REQ, [q for rs in by.values() for r in rs for q in (r["request_id"], r["rot_req"]) if q])
    for (path, rot), rs in by.items():
        reqs = [x["event_id"] for r in rs for q in (r["request_id"], r["rot_req"]) if q
                for x in req_rows.get(q, [])]
        age = rs[0]["age"]
        when = "no rotation is recorded" if age is None else f"it was last rotated {age / 86400:.0f} days earlier"
        out.append(make(
            DETECTION, (path, rot), [r["actor_id"] for r in rs], [r["time"] for r in rs],
            [*(r["event_id"] for r in rs), *([rot] if rot != "never" else []), *reqs], rs[0]["event_id"],
            f"Secret {path} was read {len(rs)} time(s) (first by {rs[0]['actor_id']}) while {when}; policy is "
            f"{max_age / 86400:.0f} days. Rotate it and find what still depends on the old value.",
            links=[Link(rot, r["event_id"], "read_after", "same secret path; read time - last rotation") for r in rs],
            facts={"path": path, "age_days": "unknown" if age is None else f"{age / 86400:.0f}"},
        ))
    return out


def _tl(age_days: float) -> list[dict[str, Any]]:
    return [
        ev(-age_days * 86400, "x:rot", "secret.rotated", category="credential", resource="secret/data/legacy/ftp",
           actor_id="workload/rotator"),
        ev(0, "x:read", "secret.read", category="credential", resource="secret/data/legacy/ftp",
           actor_id="agent/coder"),
    ]


def _rot(age_days: float, eid: str, path: str = "secret/data/legacy/ftp") -> dict[str, Any]:
    return ev(-age_days * 86400, eid, "secret.rotated", category="credential", resource=path,
              actor_id="workload/rotator")


EXAMPLES = (
    positive("rotated 120 days before", _tl(120), ("secret/data/legacy/ftp", "x:rot")),
    benign("rotated 120 and again 10 days before: the latest counts", [*_tl(120), _rot(10, "x:rot2")]),
    positive("the rotation after the read does not count", [*_tl(120), _rot(-1, "x:later")],
             ("secret/data/legacy/ftp", "x:rot")),
    benign("rotated at the instant of the read", [*_tl(120), _rot(0, "x:now")]),
    positive("another secret's rotation does not count", [*_tl(120), _rot(1, "x:other", "secret/data/other")],
             ("secret/data/legacy/ftp", "x:rot")),
    positive("never rotated", _tl(120)[1:], ("secret/data/legacy/ftp", "never")),
    positive("1 s over 90 days", _tl(90 + 1 / 86400), ("secret/data/legacy/ftp", "x:rot")),
    benign("exactly 90 days", _tl(90)),
    benign("rotated 80 days before", _tl(80)),
)
