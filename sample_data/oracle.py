"""Reference checks of the catalog definitions (docs/scenario.md) over a generated scenario.

Not the product's detectors: a deliberately literal reading of each definition over the parsed
canonical rows (CloudTrail and Vault from their native records), used by the tests to prove that every
labelled positive is visible in the data and that nothing else, background or benign look-alike,
matches. ``flags(out_dir)`` returns {detection: set of event ids that match}.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ingest.normalize import normalize
from sample_data import org

SKEW = dt.timedelta(seconds=60)
GRACE = dt.timedelta(seconds=30)
MAX_AGENT_LIFETIME = dt.timedelta(hours=1)
STALE = dt.timedelta(days=90)
_ISSUING = ("token.issued", "token.exchanged", "token.refreshed", "svid.minted")


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from (ln.rstrip(b"\n") for ln in f if ln.strip())


def canonical_rows(out_dir: Path, names: tuple[str, ...] = ("idp", "spire", "opa", "mcp", "cloudtrail", "vault")) -> list[dict[str, Any]]:
    """Parse the scenario's files through the registered parsers (dead letters dropped)."""
    rows: list[dict[str, Any]] = []
    for n in names:
        items = ((ln, f"file:{n}:{i}") for i, ln in enumerate(_lines(out_dir / f"{n}.jsonl"), 1))
        rows.extend(normalize(items).events)
    return rows


def _raw(out_dir: Path, name: str) -> Iterator[dict[str, Any]]:
    for ln in _lines(out_dir / name):
        try:
            rec = orjson.loads(ln)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            yield rec


def _t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def flags(out_dir: Path) -> dict[str, set[str]]:
    rows = canonical_rows(out_dir)
    out: dict[str, set[str]] = defaultdict(set)
    issued = {r["credential_id"]: r for r in rows if r["activity"] in _ISSUING and r.get("credential_id")}
    revoked: dict[str, dt.datetime] = {}
    for r in rows:
        if r["activity"] == "token.revoked":
            revoked.setdefault(r["credential_id"], r["time"])
    uses = [r for r in rows if r["category"] in ("tool_call", "authorization", "api_activity")
            and r.get("credential_id") and r["activity"] not in _ISSUING]
    mcp = [r for r in rows if r["format"] == "mcp"]
    opa = [r for r in rows if r["format"] == "opa"]

    by_cred: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for u in uses:
        by_cred[u["credential_id"]].append(u)
    for cid, us in by_cred.items():
        origins = {u.get("src_workload") or u.get("src_ip") for u in us} - {None}
        if len(origins) >= 2:
            out["DP-TR-1"].update(u["event_id"] for u in us)
        src = issued.get(cid)
        exp = src.get("credential_expires_at") if src else None
        task = src.get("task_id") if src else None
        for u in us:
            exp_u = exp or u.get("credential_expires_at")
            if exp_u and u["time"] > exp_u + SKEW:
                out["DP-TR-2"].add(u["event_id"])
            if cid in revoked and u["time"] > revoked[cid] + GRACE:
                out["DP-TR-3"].add(u["event_id"])
            if task and u.get("task_id") and u["task_id"] != task:
                out["DP-TR-4"].add(u["event_id"])

    by_span = defaultdict(list)
    by_jti = defaultdict(list)
    for o in opa:
        by_span[(o.get("trace_id"), o.get("span_id"))].append(o["time"])
        by_jti[o.get("credential_id")].append(o["time"])
    five = dt.timedelta(seconds=5)
    for m in mcp:
        near = [x for x in by_span.get((m.get("trace_id"), m.get("span_id")), []) if abs(x - m["time"]) <= five]
        near += [x for x in by_jti.get(m.get("credential_id"), []) if abs(x - m["time"]) <= five]
        if not near:
            out["DP-AZ-1"].add(m["event_id"])

    mcp_by_span = {(m.get("trace_id"), m.get("span_id")): m for m in mcp}
    spans_of = defaultdict(set)  # (trace, actor) -> spans
    for m in mcp:
        spans_of[(m.get("trace_id"), m.get("actor_id"))].add(m.get("span_id"))
    allows = defaultdict(list)
    for o in opa:
        if o.get("decision") == "allow":
            allows[(o.get("tool"), o.get("resource"))].append(o)
    for d in (o for o in opa if o.get("decision") == "deny"):
        for a in allows.get((d.get("tool"), d.get("resource")), []):
            if a["actor_id"] == d["actor_id"] or not (d["time"] < a["time"]):
                continue
            m = mcp_by_span.get((a.get("trace_id"), a.get("span_id")))
            linked = a.get("trace_id") == d.get("trace_id")
            if linked and a["time"] - d["time"] <= dt.timedelta(minutes=10) and m is not None \
                    and m.get("parent_span_id") in spans_of[(d.get("trace_id"), d["actor_id"])]:
                out["DP-PC-2"].add(a["event_id"])
            if not linked and a["time"] - d["time"] <= dt.timedelta(minutes=15) and m and m["outcome"] == "success":
                out["DP-AZ-2"].update((d["event_id"], a["event_id"]))

    for m in mcp:
        obo = m.get("on_behalf_of") or ""
        tool = m.get("tool") or ""
        if "@" in obo and m["outcome"] == "success" and org.required_scope(tool) not in (m.get("scope") or []):
            out["DP-DG-1"].add(m["event_id"])
        if "/agent/" in (m.get("src_workload") or "") and m.get("actor_type") == "human" and not m.get("on_behalf_of"):
            out["DP-DG-2"].add(m["event_id"])

    wl = defaultdict(set)
    for r in mcp + opa:
        if r.get("src_workload"):
            wl[r.get("actor_id")].add(r["src_workload"])
    for r in mcp + opa:
        if len(wl.get(r.get("actor_id"), ())) >= 2:
            out["DP-ID-1"].add(r["event_id"])

    for r in issued.values():
        exp = r.get("credential_expires_at")
        if r.get("actor_type") == "agent" and exp and exp - r["time"] > MAX_AGENT_LIFETIME:
            out["DP-CR-1"].add(r["event_id"])

    for r in issued.values():
        if r["activity"] != "token.exchanged":
            continue
        cur, origin = r, None
        while cur is not None:
            if cur.get("scope"):
                origin = cur
            cur = issued.get(cur.get("credential_parent_id"))
        if origin and not set(r.get("scope") or []) <= set(origin.get("scope") or []):
            out["DP-PC-1"].add(r["event_id"])

    roles: dict[str, tuple[str, int]] = {}
    for rec in _raw(out_dir, "cloudtrail.jsonl"):
        if rec.get("eventName") not in ("AssumeRole", "AssumeRoleWithWebIdentity"):
            continue
        key = rec["responseElements"]["credentials"]["accessKeyId"]
        parent = rec["userIdentity"].get("accessKeyId")
        hops = 1 + (roles[parent][1] if parent in roles else 0)
        role = rec["requestParameters"]["roleArn"].rpartition("/")[2]
        roles[key] = (role, hops)
        if hops >= 3 and ("Admin" in role or role in org.PRIVILEGED_ROLES):
            out["DP-PC-3"].add("cloudtrail:" + rec["eventID"])

    rotated = defaultdict(list)
    reads = []
    for rec in _raw(out_dir, "vault.jsonl"):
        if rec.get("type") != "response":
            continue
        req = rec["request"]
        if req["operation"] in ("create", "update"):
            rotated[req["path"]].append(_t(rec["time"]))
        elif req["operation"] == "read":
            reads.append((req["path"], _t(rec["time"]), f"vault:response:{req['id']}"))
    for path, t, eid in reads:
        before = [x for x in rotated.get(path, []) if x <= t]
        if not before or t - max(before) > STALE:
            out["DP-CR-2"].add(eid)
    return dict(out)
