"""DP-TR-1: one credential (or one sign-in session) presented from two or more origins (workloads, else addresses)."""

from __future__ import annotations

import ipaddress
from typing import Any

from analytics.detectors._common import fmt, make, several
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive
from analytics.lake import spans_files

DETECTION = Detection(
    id="DP-TR-1", title="Token reuse: several origins", severity="high",
    description="One credential is used from two or more origins during its lifetime. The origin of a use is "
                "its workload (SPIFFE ID) when known, else its source address. A per-task token presented by a "
                "second workload, or by an unknown peer, has been copied. Identity providers that rotate the token "
                "on every refresh (Entra ID's non-interactive sign-ins) are covered through the session: one "
                "sign-in session refreshed from two origins has had its refresh token or cookie copied.",
    nhi=("NHI2", "NHI9"), asi=("ASI03",), attack=("T1550.001", "T1528"), csf=("PR.AA-03", "DE.CM-03"),
    maestro=("L4", "L7"), ai_rmf=("MEASURE 2.7",),
    thresholds=(Threshold("min_origins", 2, "origins", "distinct origins that make a use suspicious"),),
)

# Two passes: a cheap aggregate finds the credentials with several origins and the span of their uses, then
# only their uses are listed, reading only the day files of those spans (listing every credential's uses before
# HAVING filtered them: 24-28 s instead of 6.6 s at 10M events; the second pass over every file cost as much as
# the first).
_USES = """credential_id IS NOT NULL AND category IN ('tool_call', 'authorization', 'api_activity')
  AND activity NOT IN ('token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted', 'role.assumed')"""
_ORIGIN = "coalesce(src_workload, src_ip)"
_HITS = f"""
SELECT credential_id, min(time) AS lo, max(time) AS hi FROM events WHERE {_USES}
GROUP BY credential_id
HAVING {{several}} AND max(time) >= $since AND min(time) <= $until
"""  # noqa: S608 (constant text)
_USES_OF = f"""
SELECT credential_id, list(event_id ORDER BY time, event_id) AS ids, list(time ORDER BY time, event_id) AS times,
       list(DISTINCT {_ORIGIN}) AS origins,
       list(DISTINCT src_workload) FILTER (WHERE src_workload IS NOT NULL) AS workloads,
       list(DISTINCT src_ip) FILTER (WHERE src_ip IS NOT NULL) AS ips,
       list(DISTINCT user_agent) FILTER (WHERE user_agent IS NOT NULL) AS uas,
       list(DISTINCT actor_id) FILTER (WHERE actor_id IS NOT NULL) AS actors,
       max(time) AS last_use
FROM events_in($files)
WHERE {_USES} AND credential_id IN (SELECT unnest($keys))
GROUP BY credential_id
"""  # noqa: S608 (constant text)


# Entra ID issues a new uniqueTokenIdentifier on every refresh, so the reuse of a stolen refresh token or
# session cookie shows only through the shared session id of the sign-ins (session.started, token.refreshed).
_SESSION_SQL = """
SELECT session_id, list(event_id ORDER BY time, event_id) AS ids, list(time ORDER BY time, event_id) AS times,
       list(DISTINCT coalesce(src_workload, src_ip)) AS origins,
       list(DISTINCT src_workload) FILTER (WHERE src_workload IS NOT NULL) AS workloads,
       list(DISTINCT src_ip) FILTER (WHERE src_ip IS NOT NULL) AS ips,
       list(DISTINCT user_agent) FILTER (WHERE user_agent IS NOT NULL) AS uas,
       list(DISTINCT actor_id) FILTER (WHERE actor_id IS NOT NULL) AS actors
FROM events
WHERE session_id IS NOT NULL
  AND activity IN ('session.started', 'token.refreshed', 'authenticated') AND outcome IS DISTINCT FROM 'failure'
GROUP BY session_id
HAVING {several} AND max(time) >= $since AND min(time) <= $until
"""


def _net(ip: str) -> str:
    try:
        return str(ipaddress.ip_network(f"{ip}/24", strict=False))
    except ValueError:
        return ip


def score(workloads: int, ips: list[str], uas: int) -> float:
    """Fidelity in [0, 1]: more distinct workloads, networks (/24), addresses and user agents → higher."""
    nets = len({_net(i) for i in ips})
    raw = 0.4 * max(0, workloads - 1) + 0.25 * max(0, nets - 1) + 0.1 * max(0, len(ips) - 1) + 0.25 * max(0, uas - 1)
    return round(min(1.0, 0.3 + raw), 3)


def detect(ctx: Context) -> list[Finding]:
    out = []
    n = int(ctx.p(DETECTION, "min_origins"))
    cond = several(n, _ORIGIN)
    params = {**ctx.window(), **({"min_origins": n} if "$min_origins" in cond else {})}
    spans = ctx.rows(_HITS.format(several=cond), params)
    files = spans_files(ctx.con, ((r["lo"], r["hi"]) for r in spans))
    found = ctx.rows(_USES_OF, {"files": files, "keys": [r["credential_id"] for r in spans]}) if files else []
    # The issuance of these credentials only (`_for`): naming the whole view would make this connection aggregate
    # every credential of the lake (`analytics.lake.share`), which a run of this detection alone does not need.
    issued = ctx.lookup("SELECT credential_id AS k, issue_event_id, issue_target AS holder "
                        "FROM int_credential_issued_for($keys)", [r["credential_id"] for r in found])
    for r in found:
        cid = r["credential_id"]
        iss = issued.get(cid, [])
        ids = ([iss[0]["issue_event_id"]] if iss else []) + list(r["ids"])
        origins = sorted(str(o) for o in r["origins"])
        s = score(len(r["workloads"] or []), list(r["ips"] or []), len(r["uas"] or []))
        out.append(make(
            DETECTION, (cid,), [*(r["actors"] or []), *(x["holder"] for x in iss)], r["times"], ids, r["ids"][-1],
            f"Credential {cid} was used from {len(origins)} origins ({', '.join(origins)}) between "
            f"{fmt(r['times'][0])} and {fmt(r['times'][-1])}; a credential bound to one workload should be "
            f"presented by that workload only, so a second origin means it was copied or stolen "
            f"(fidelity score {s}).",
            score=s, links=[Link(cid, o, "used_from", "credential_id of the use, origin = src_workload else src_ip")
                            for o in origins],
            facts={"credential_id": cid, "origins": ",".join(origins)},
        ))
    for r in ctx.rows(_SESSION_SQL.format(several=cond), params):
        sid = r["session_id"]
        origins = sorted(str(o) for o in r["origins"])
        s = score(len(r["workloads"] or []), list(r["ips"] or []), len(r["uas"] or []))
        out.append(make(
            DETECTION, (f"session:{sid}",), r["actors"] or [], r["times"], r["ids"], r["ids"][-1],
            f"Sign-in session {sid} was started or refreshed from {len(origins)} origins ({', '.join(origins)}) "
            f"between {fmt(r['times'][0])} and {fmt(r['times'][-1])}; each refresh issues a new token, so the "
            f"shared session is the only thread: a second origin means its refresh token or session cookie was "
            f"copied (fidelity score {s}).",
            score=s, links=[Link(f"session:{sid}", o, "used_from",
                                 "session_id of the sign-in, origin = src_workload else src_ip") for o in origins],
            facts={"session_id": sid, "origins": ",".join(origins)},
        ))
    return out


_T = "task-1"
_iss = ev(0, "x:iss", "token.exchanged", category="credential", credential_id="jti-1", actor_id="agent/r",
          actor_type="agent", task_id=_T, scope=["kb:search"], credential_expires_at=900)


def _use(t: float, eid: str, wl: str | None, ip: str, ua: str = "agentkit/1.4") -> dict[str, Any]:
    return ev(t, eid, "tool.invoked", category="tool_call", credential_id="jti-1", actor_id="agent/r",
              actor_type="agent", src_workload=wl, src_ip=ip, user_agent=ua, task_id=_T, tool="kb.search")


def _signin(t: float, eid: str, activity: str, tok: str, ip: str, outcome: str = "success") -> dict[str, Any]:
    category = "authentication" if activity == "session.started" else "credential"
    return ev(t, eid, activity, category=category, credential_id=tok, session_id="sess-1",
              actor_id="carol@corp.example", actor_type="human", src_ip=ip, outcome=outcome,
              user_agent="Microsoft Outlook 16.0")


EXAMPLES = (
    positive("stolen token used from an unknown peer",
             [_iss, _use(2, "x:u1", "spiffe://c/agent/r", "10.20.1.11"),
              _use(120, "x:u2", None, "198.51.100.10", "python-requests/2.32.3")], ("jti-1",)),
    positive("two workloads", [_iss, _use(2, "x:u1", "spiffe://c/agent/r", "10.20.1.11"),
                               _use(9, "x:u2", "spiffe://c/agent/other", "10.20.1.11")], ("jti-1",)),
    benign("NAT change: one workload, two addresses",
           [_iss, _use(2, "x:u1", "spiffe://c/agent/r", "10.20.1.11"),
            _use(60, "x:u2", "spiffe://c/agent/r", "10.21.1.100")]),
    positive("one sign-in session refreshed from a second address (tokens rotate on refresh)",
             [_signin(0, "x:s1", "session.started", "tok-1", "203.0.113.24"),
              _signin(3000, "x:s2", "token.refreshed", "tok-2", "203.0.113.24"),
              _signin(3900, "x:s3", "token.refreshed", "tok-3", "185.220.101.7")], ("session:sess-1",)),
    benign("one sign-in session refreshed from its own address; a failed sign-in elsewhere",
           [_signin(0, "x:s1", "session.started", "tok-1", "203.0.113.24"),
            _signin(3000, "x:s2", "token.refreshed", "tok-2", "203.0.113.24"),
            _signin(3100, "x:s3", "token.refreshed", "tok-3", "185.220.101.7", outcome="failure")]),
)
