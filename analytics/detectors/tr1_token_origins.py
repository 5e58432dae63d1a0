"""DP-TR-1: one credential (or one sign-in session) presented from two or more origins (workloads, else addresses)."""

from __future__ import annotations

import ipaddress
from typing import Any

from analytics.detectors._common import ISSUING, fmt, make, several
from analytics.detectors.base import Context, Detection, Finding, Link, Threshold, benign, ev, positive
from analytics.lake import is_shared, spans_files, time_range

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

# Two passes: a cheap aggregate finds the credentials (and sign-in sessions) with several origins and the span
# of their uses, then only their uses are listed, reading only the day files of those spans (listing every
# credential's uses before HAVING filtered them: 24-28 s instead of 6.6 s at 10M events; the second pass over
# every file cost as much as the first). The first pass is one scan for both keys (GROUPING SETS): a separate
# scan for the sessions cost 0.45 s at 10M events for a few thousand rows.
_USES = """credential_id IS NOT NULL AND category IN ('tool_call', 'authorization', 'api_activity')
  AND activity NOT IN ('token.issued', 'token.exchanged', 'token.refreshed', 'svid.minted', 'role.assumed')"""
# Entra ID issues a new uniqueTokenIdentifier on every refresh, so the reuse of a stolen refresh token or
# session cookie shows only through the shared session id of the sign-ins (session.started, token.refreshed).
_SIGNINS = """session_id IS NOT NULL AND activity IN ('session.started', 'token.refreshed', 'authenticated')
  AND outcome IS DISTINCT FROM 'failure'"""
_ORIGIN = "coalesce(src_workload, src_ip)"
_HITS = f"""
WITH k AS (
  SELECT CASE WHEN {_USES} THEN credential_id END AS cred, CASE WHEN {_SIGNINS} THEN session_id END AS sess,
         time, {_ORIGIN} AS origin
  FROM events
  WHERE (({_USES}) OR ({_SIGNINS})){{recent}}
)
SELECT cred, sess, min(time) AS lo, max(time) AS hi FROM k
GROUP BY GROUPING SETS ((cred), (sess))
HAVING (cred IS NOT NULL OR sess IS NOT NULL) AND {{several}} AND max(time) >= $since AND min(time) <= $until
"""  # noqa: S608 (constant text)

# A run over the lake's last hours (a scheduled run) can only find keys with an event from the window's start on
# (a hit's events must reach into the window: max(time) >= $since). Those keys are chosen first, from the files of
# the window, and only their events are aggregated, over their whole life: the same hits, where aggregating every
# key of the lake cost ~1 s whatever the window (10M events). A run from the lake's first event skips the choice,
# which would keep every key.
_RECENT = f"""
  AND (credential_id IN (SELECT credential_id FROM events WHERE time >= $since AND {_USES})
       OR session_id IN (SELECT session_id FROM events WHERE time >= $since AND {_SIGNINS}))"""  # noqa: S608


def _lists(cond: str) -> str:
    """The evidence of a hit's uses (or sign-ins): the rows passing ``cond``."""
    return f"""list(event_id ORDER BY time, event_id) FILTER (WHERE {cond}) AS ids,
       list(time ORDER BY time, event_id) FILTER (WHERE {cond}) AS times,
       list(DISTINCT {_ORIGIN}) FILTER (WHERE {cond} AND {_ORIGIN} IS NOT NULL) AS origins,
       list(DISTINCT src_workload) FILTER (WHERE {cond} AND src_workload IS NOT NULL) AS workloads,
       list(DISTINCT src_ip) FILTER (WHERE {cond} AND src_ip IS NOT NULL) AS ips,
       list(DISTINCT user_agent) FILTER (WHERE {cond} AND user_agent IS NOT NULL) AS uas,
       list(DISTINCT actor_id) FILTER (WHERE {cond} AND actor_id IS NOT NULL) AS actors"""


# In a catalog run the issuance is materialized (`analytics.lake.share`): the uses are listed from their spans'
# files and the issuance is looked up in memory. Alone, one scan of the lake gives both, the issuance aggregated
# as `int_credential_issued` keeps it (ISSUING; a test pins the two): a separate lookup of the hits' issuance read
# the whole lake a second time (10M events: 0.4-0.7 s).
_USES_OF = f"""
SELECT credential_id, {_lists("true")}
FROM events_in($files)
WHERE {_USES} AND credential_id IN (SELECT unnest($keys))
GROUP BY credential_id
"""  # noqa: S608 (constant text)
_USES_AND_ISSUANCE = f"""
WITH r AS (
  SELECT *, ({_USES}) AS u, ({ISSUING}) AS i FROM events
  WHERE credential_id IN (SELECT unnest($keys)) AND (({_USES}) OR ({ISSUING}))
)
SELECT credential_id, {_lists("u")},
       arg_min({{'event_id': event_id, 'target': coalesce(target_id, actor_id)}}, (time, event_id)) FILTER (WHERE i)
         AS issuance
FROM r GROUP BY credential_id HAVING count(*) FILTER (WHERE u) > 0
"""  # noqa: S608 (constant text)
_SIGNINS_OF = f"""
SELECT session_id, {_lists("true")}
FROM events_in($files)
WHERE {_SIGNINS} AND session_id IN (SELECT unnest($keys))
GROUP BY session_id
"""  # noqa: S608 (constant text)


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


def _listed(ctx: Context, sql: str, spans: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The uses (or sign-ins) of these hits, read from the day files their spans cover only."""
    if not spans:
        return []
    files = spans_files(ctx.con, ((r["lo"], r["hi"]) for r in spans))
    return ctx.rows(sql, {"files": files, "keys": [r[key] for r in spans]}) if files else []


def detect(ctx: Context) -> list[Finding]:
    out = []
    n = int(ctx.p(DETECTION, "min_origins"))
    cond = several(n, "origin")
    params = {**ctx.window(), **({"min_origins": n} if "$min_origins" in cond else {})}
    first, _ = time_range(ctx.con)
    recent = _RECENT if first is not None and ctx.since > first else ""
    hits = ctx.rows(_HITS.format(several=cond, recent=recent), params)
    creds = [r for r in hits if r["cred"] is not None]
    if is_shared(ctx.con, "int_credential_issued"):
        found = _listed(ctx, _USES_OF, creds, "cred")
        issued = ctx.lookup("SELECT credential_id AS k, issue_event_id, issue_target AS holder "
                            "FROM int_credential_issued_for($keys)", [r["credential_id"] for r in found])
    else:
        found = ctx.rows(_USES_AND_ISSUANCE, {"keys": [r["cred"] for r in creds]}) if creds else []
        issued = {r["credential_id"]: [{"issue_event_id": r["issuance"]["event_id"],
                                        "holder": r["issuance"]["target"]}]
                  for r in found if r["issuance"] is not None}
    for r in sorted(found, key=lambda r: r["credential_id"]):
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
    sessions = _listed(ctx, _SIGNINS_OF, [r for r in hits if r["sess"] is not None], "sess")
    for r in sorted(sessions, key=lambda r: r["session_id"]):
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
