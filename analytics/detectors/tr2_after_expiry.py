"""DP-TR-2: a credential used after its expiry, beyond the allowed clock skew."""

from __future__ import annotations

from typing import Any

from analytics.detectors import _suspect_uses
from analytics.detectors._common import ISSUING, fmt, make
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive
from analytics.lake import is_shared

DETECTION = Detection(
    id="DP-TR-2", title="Token reuse: after expiry", severity="high",
    description="A credential is presented after its expiry plus the clock-skew allowance. The expiry is the one "
                "recorded at issuance, else the one carried by the use itself. A working token service rejects "
                "it, so a success means a replayed token or a relying party that does not check expiry.",
    nhi=("NHI7", "NHI4"), asi=("ASI03",), attack=("T1550.001",), csf=("PR.AA-03", "PR.AA-04", "DE.CM-03"),
    maestro=("L4",), ai_rmf=("MEASURE 2.7",),
    thresholds=(Threshold("clock_skew_s", 60, "s", "tolerated difference between clocks"),),
)

# The expiry recorded at issuance, with the issuance's event and target. Alone, one aggregate over the issuance
# records (the first by time, then event id, as the issuance intermediate orders them): reading the whole
# intermediate computed all sixteen of its columns for every credential of the lake first (10M events: 3.9-4.1 s
# for the detection instead of 5.7-6.3 s, same rows). In a catalog run, where that intermediate is already
# materialized for the other detectors (`analytics.lake.share`), its rows are read instead.
# Either way the issuance side is the one hashed (`build_right`): DuckDB hashed the ~7M uses and spilled them
# (10M events, catalog run: 1.0-1.3 s for the query instead of 1.7-2.1 s, same rows).
SHARED_READS: tuple[str, ...] = ()  # nothing computed for it: it reads the issuance rows only if shared
_ISSUED_ALONE = f"""
    SELECT credential_id,
           arg_min({{'expires_at': credential_expires_at, 'event_id': event_id,
                    'target': coalesce(target_id, actor_id)}}, (time, event_id)) AS i
    FROM events
    WHERE credential_id IS NOT NULL AND {ISSUING}
    GROUP BY credential_id"""  # noqa: S608 (constant text)
_ISSUED_SHARED = """
    SELECT credential_id, {'expires_at': expires_at, 'event_id': issue_event_id, 'target': issue_target} AS i
    FROM shared_int_credential_issued"""
_SQL = """
WITH issued AS ({issued})
SELECT u.credential_id, u.event_id, u.time, u.actor_id, coalesce(c.i.expires_at, u.credential_expires_at) AS exp,
       c.i.event_id AS issue_event_id, c.i.target AS holder
FROM events u LEFT JOIN issued c USING (credential_id)
WHERE u.credential_id IS NOT NULL AND u.category IN ('tool_call', 'authorization', 'api_activity')
  AND u.time BETWEEN $since AND $until
  AND coalesce(c.i.expires_at, u.credential_expires_at) IS NOT NULL
  AND u.time > coalesce(c.i.expires_at, u.credential_expires_at) + to_microseconds(CAST($skew * 1e6 AS BIGINT))
ORDER BY u.credential_id, u.time
"""
# In a catalog run: the late uses among the shared suspect uses (`_suspect_uses`), the same rows.
_SHARED_SQL = """
SELECT credential_id, event_id, time, actor_id, exp, issue_event_id, issue_target AS holder
FROM {view}
WHERE time BETWEEN $since AND $until AND exp IS NOT NULL
  AND time > exp + to_microseconds(CAST($skew * 1e6 AS BIGINT))
ORDER BY credential_id, time
"""


def detect(ctx: Context) -> list[Finding]:
    skew = ctx.p(DETECTION, "clock_skew_s")
    by: dict[str, list[dict[str, Any]]] = {}
    view = _suspect_uses.suspect_uses(ctx, skew)
    if view is not None:
        sql = _SHARED_SQL.format(view=view)
    else:
        sql = _SQL.format(issued=_ISSUED_SHARED if is_shared(ctx.con, "int_credential_issued") else _ISSUED_ALONE)
    for r in ctx.rows(sql, {**ctx.window(), "skew": skew}, build_right=True):
        by.setdefault(r["credential_id"], []).append(r)
    out = []
    for cid, rs in by.items():
        exp = rs[0]["exp"]
        late = (rs[0]["time"] - exp).total_seconds()
        out.append(make(
            DETECTION, (cid,), [*(r["actor_id"] for r in rs), rs[0]["holder"]], [r["time"] for r in rs],
            [rs[0]["issue_event_id"], *(r["event_id"] for r in rs)], rs[0]["event_id"],
            f"Credential {cid} expired at {fmt(exp)} but was used {len(rs)} time(s) afterwards, the first "
            f"{late:.0f} s after expiry (allowed clock skew {skew:.0f} s). An expired token should be refused; "
            "its use means it was replayed or a service does not check expiry.",
            links=[Link(cid, r["event_id"], "used_after_expiry", "credential_id; time > expires_at + skew")
                   for r in rs],
            facts={"credential_id": cid, "expires_at": fmt(exp), "seconds_late": f"{late:.0f}"},
        ))
    return out


def _timeline(use_at: float) -> list[dict[str, Any]]:
    return [
        ev(0, "x:iss", "token.exchanged", category="credential", credential_id="jti-2", actor_id="agent/c",
           actor_type="agent", credential_expires_at=300),
        ev(use_at, "x:use", "tool.invoked", category="tool_call", credential_id="jti-2", actor_id="agent/c",
           src_workload="agent/c", src_ip="10.0.0.1"),
    ]


EXAMPLES = (
    positive("used 10 min after expiry", _timeline(900), ("jti-2",)),
    positive("used 1 s over the skew", _timeline(361), ("jti-2",)),
    benign("used exactly at the skew limit", _timeline(360)),
    benign("used 30 s after expiry (inside skew)", _timeline(330)),
)
