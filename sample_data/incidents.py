"""Labelled incidents: one builder per shape, positives for every catalog detection and benign look-alikes.

Each builder writes ordinary native records (the same writers as background traffic) with one
anomaly that is visible in the parsed canonical fields, then appends its label. The exact shapes
are documented in docs/scenario.md; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sample_data import org
from sample_data.emit import MIN, Cred, Runner, S
from sample_data.sim import Sim


@dataclass(frozen=True)
class Incident:
    """One planned incident: where it goes and, for CR-2 shapes, the rotation it relies on."""

    incident_id: str
    kind: str
    detection: str
    benign: bool
    k: int  # instance number of this kind (0, 1, ...)
    t: int  # start, epoch ms
    rotation_rid: str | None = None  # CR-2 shapes: request id of the secret's last rotation
    rotation_path: str | None = None


# kind -> (detection, benign); one instance of each per ~20k events.
KINDS: dict[str, tuple[str, bool]] = {
    "token_two_origins": ("DP-TR-1", False),
    "token_after_expiry": ("DP-TR-2", False),
    "token_after_revocation": ("DP-TR-3", False),
    "token_other_task": ("DP-TR-4", False),
    "scope_escalation": ("DP-PC-1", False),
    "confused_deputy": ("DP-PC-2", False),
    "role_chain_admin": ("DP-PC-3", False),
    "beyond_delegation": ("DP-DG-1", False),
    "agent_as_human": ("DP-DG-2", False),
    "unmediated_call": ("DP-AZ-1", False),
    "denied_then_elsewhere": ("DP-AZ-2", False),
    "long_lived_credential": ("DP-CR-1", False),
    "stale_secret": ("DP-CR-2", False),
    "shared_identity": ("DP-ID-1", False),
    "benign_refresh": ("DP-TR-2", True),
    "benign_clock_skew": ("DP-TR-2", True),
    "benign_revocation_grace": ("DP-TR-3", True),
    "benign_nat_change": ("DP-TR-1", True),
    "benign_narrowing_chain": ("DP-PC-1", True),
    "benign_narrowing_delegation": ("DP-DG-1", True),
    "benign_role_chain": ("DP-PC-3", True),
    "benign_ttl_limit": ("DP-CR-1", True),
    "benign_replicas": ("DP-ID-1", True),
    "benign_slow_decision": ("DP-AZ-1", True),
    "benign_recent_rotation": ("DP-CR-2", True),
}
# CR-2 shapes: how many days before the read the secret was last rotated.
ROTATION_AGE_DAYS = {"stale_secret": 120, "benign_recent_rotation": 80}
PRIVILEGED_TARGETS = ("PlatformAdmin", "OrganizationAccountAccessRole", "SecurityAdmin")


def rotation_path(kind: str, k: int) -> str:
    return f"secret/data/legacy/ftp-{k:02d}" if kind == "stale_secret" else f"secret/data/partner/sftp-{k:02d}"


class _Task:
    """A per-task token for an agent-only task, with its trace and MCP session."""

    def __init__(self, sim: Sim, t: int, agent: org.Agent, scope: list[str], rep: int = 0, ttl: int = 900,
                 parent: Cred | None = None) -> None:
        self.agent, self.run = agent, sim.runner(agent, rep)
        parent = parent or sim.base_token(t, agent, rep)
        self.task = sim.task_id()
        self.cred = sim.exchange(t, parent, agent.spiffe, agent.client, scope, ttl, self.task, self.run.ip)
        self.trace, self.root, self.session = sim.hex(32), sim.hex(16), "mcp-" + sim.hex(12)
        self.sim = sim

    def call(self, t: int, tool: str, **kw: object) -> tuple[str | None, str, str]:
        return self.sim.call(t, self.cred, self.run, tool, self.task, self.trace, self.root, self.session, **kw)  # type: ignore[arg-type]

    def revoke(self, t: int) -> str:
        return self.sim.revoke(t, self.cred, self.agent.client, self.run.ip)


def _ids(*xs: object) -> list[str]:
    out: list[str] = []
    for x in xs:
        if isinstance(x, tuple):
            out.extend(i for i in x[:2] if isinstance(i, str))
        elif isinstance(x, str):
            out.append(x)
    return out


A = org.AGENTS


def token_two_origins(sim: Sim, t: int, inc: Incident) -> None:
    a = A["research"]
    tk = _Task(sim, t, a, ["docs:read", "kb:search"])
    c1 = tk.call(t + 2 * S, "kb.search")
    c2 = tk.call(t + 15 * S, "docs.read")
    thief = Runner(None, f"198.51.100.{10 + inc.k % 240}", "python-requests/2.32.3")
    c3 = sim.call(t + 2 * MIN, tk.cred, thief, "kb.search", tk.task, sim.hex(32), sim.hex(16), "mcp-" + sim.hex(12),
                  truth=True)
    tk.revoke(t + 5 * MIN)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe], _ids(tk.cred.eid, c1, c2, c3),
              "per-task token used by its agent workload, then from an unknown workload at a public address")


def token_after_expiry(sim: Sim, t: int, inc: Incident) -> None:
    a = A["coder"]
    tk = _Task(sim, t, a, ["repo:read"], ttl=300)
    tk.call(t + 5 * S, "repo.read")
    tk.call(t + 40 * S, "repo.read")
    late = tk.call(tk.cred.exp + 10 * MIN, "repo.read", truth=True)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe], _ids(tk.cred.eid, late),
              "token (TTL 300 s, never revoked) used again 10 min after its expiry, same workload")


def token_after_revocation(sim: Sim, t: int, inc: Incident) -> None:
    a = A["support"]
    tk = _Task(sim, t, a, ["kb:search", "tickets:read"])
    tk.call(t + 3 * S, "tickets.read")
    tk.call(t + 20 * S, "kb.search")
    rv = tk.revoke(t + 60 * S)
    late = tk.call(t + 6 * MIN, "tickets.read", truth=True)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe], _ids(tk.cred.eid, rv, late),
              "token revoked at task end, used 5 min later (before its expiry), same workload")


def token_other_task(sim: Sim, t: int, inc: Incident) -> None:
    a = A["analyst"]
    x = _Task(sim, t, a, ["db:query", "reports:read"])
    y = _Task(sim, t + 2 * S, a, ["db:query", "reports:read"])
    x.call(t + 4 * S, "db.query")
    y.call(t + 6 * S, "reports.read")
    bad = sim.call(t + 30 * S, x.cred, y.run, "db.query", y.task, y.trace, y.root, y.session, truth=True)
    y.call(t + 50 * S, "reports.read")
    x.revoke(t + 80 * S)
    y.revoke(t + 81 * S)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe], _ids(x.cred.eid, bad),
              "token exchanged for task X presented in a request carrying task_id Y (both tasks of the same agent)")


def scope_escalation(sim: Sim, t: int, inc: Incident) -> None:
    o, w = A["orchestrator"], A["research"]
    base = sim.client_login(t - S, o.client, o.spiffe, "agent", list(o.cap), 1800, o.ip(0))
    tk = _Task(sim, t, o, ["agents:delegate", "kb:search"], parent=base)
    d = tk.call(t + 2 * S, "agents.delegate", resource=f"agents/{w.name}", sens="low")
    wrun = sim.runner(w, 0)
    sub = f"{tk.task}.1"
    wc = sim.exchange(t + 3 * S, tk.cred, w.spiffe, w.client, ["kb:search", "users:admin"], 600, sub, wrun.ip)
    ws = "mcp-" + sim.hex(12)
    sim.call(t + 5 * S, wc, wrun, "kb.search", sub, tk.trace, d[2], ws)
    esc = sim.call(t + 12 * S, wc, wrun, "users.admin", sub, tk.trace, d[2], ws, f"users/u-{9000 + inc.k}",
                   "critical", truth=True)
    sim.revoke(t + 20 * S, wc, w.client, wrun.ip)
    tk.revoke(t + 22 * S)
    sim.label(inc.incident_id, inc.detection, False, [o.spiffe, w.spiffe], _ids(base.eid, tk.cred.eid, wc.eid, esc),
              "agent-only chain: orchestrator token (no users:admin) -> task token -> worker token with users:admin, "
              "then used")


def confused_deputy(sim: Sim, t: int, inc: Incident) -> None:
    a, b = A["support"], A["billing"]
    base = sim.client_login(t - S, a.client, a.spiffe, "agent", list(a.cap), 1800, a.ip(0))
    tk = _Task(sim, t, a, ["agents:delegate", "billing:refund", "tickets:read"], parent=base)
    res = f"billing/acct-77{inc.k:03d}"
    tk.call(t + 3 * S, "tickets.read")
    deny = tk.call(t + 10 * S, "billing.refund", resource=res, sens="critical", allow=False,
                   reason=f"billing.refund is reserved to {b.spiffe}", truth=True)
    d = tk.call(t + 3 * MIN, "agents.delegate", resource=f"agents/{b.name}", sens="low")
    brun = sim.runner(b, 0)
    sub = f"{tk.task}.1"
    bc = sim.exchange(t + 3 * MIN + S, tk.cred, b.spiffe, b.client, ["billing:refund"], 600, sub, brun.ip)
    ok = sim.call(t + 3 * MIN + 3 * S, bc, brun, "billing.refund", sub, tk.trace, d[2], "mcp-" + sim.hex(12), res,
                  "critical", reason=f"{b.spiffe} may refund", truth=True)
    sim.revoke(t + 4 * MIN, bc, b.client, brun.ip)
    tk.revoke(t + 4 * MIN + S)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe, b.spiffe], _ids(deny, d, bc.eid, ok),
              "A denied billing.refund on R; 3 min later A delegates to B (B's span parent = A's delegate span, "
              "same trace) and B is allowed billing.refund on R")


def _web_identity(sim: Sim, t: int, a: org.Agent, task: str) -> tuple[str, str, str]:
    jwt_id, _ = sim.jwt_svid(t, a.spiffe, "sts.amazonaws.com", 300, a.node(0))
    key, eid = sim.web_identity(t + 2 * S, a.spiffe, jwt_id, a.aws_role or "", task, a.ip(0))
    return jwt_id, key, eid


def role_chain_admin(sim: Sim, t: int, inc: Incident) -> None:
    a = A["ops"]
    task = sim.task_id()
    _, k1, e1 = _web_identity(sim, t, a, task)
    k2, e2 = sim.assume_role(t + 5 * S, k1, a.aws_role or "", "DeployRole", task, a.ip(0))
    target = PRIVILEGED_TARGETS[inc.k % len(PRIVILEGED_TARGETS)]
    k3, e3 = sim.assume_role(t + 9 * S, k2, "DeployRole", target, task, a.ip(0))
    e4 = sim.api_call(t + 15 * S, k3, target, task, "iam.amazonaws.com", "ListRoles", None, a.ip(0))
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe, org.role_arn(target)], [e1, e2, e3, e4],
              f"AssumeRoleWithWebIdentity agent-ops -> AssumeRole DeployRole -> AssumeRole {target} -> API call")


def beyond_delegation(sim: Sim, t: int, inc: Incident) -> None:
    a = A["support"]
    p = [x for x in org.PEOPLE if "tickets:write" in x.scopes][inc.k % 3]
    tk = _Task(sim, t, a, ["kb:search", "tickets:read"], parent=sim.human_token(t, p))
    tk.call(t + 3 * S, "tickets.read")
    bad = tk.call(t + 25 * S, "tickets.write", resource=f"tickets/88{inc.k:03d}",
                  reason=f"{a.spiffe} holds role ticket-editor", truth=True)
    tk.revoke(t + 40 * S)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe, p.id], _ids(tk.cred.eid, bad),
              f"agent acting for {p.id} with a token scoped kb:search tickets:read calls tickets.write; OPA allows, "
              "the call succeeds")


def agent_as_human(sim: Sim, t: int, inc: Incident) -> None:
    a = A["coder"]
    p = [x for x in org.PEOPLE if "repo:write" in x.scopes][inc.k % 4]
    sess, _ = sim.login(t - 5 * S, p)
    tok = sim.code_to_token(t - 4 * S, p, sess)
    run = sim.runner(a, 0)
    task, trace, root, ms = sim.task_id(), sim.hex(32), sim.hex(16), "mcp-" + sim.hex(12)
    c1 = sim.call(t + 10 * S, tok, run, "repo.read", task, trace, root, ms, truth=True)
    c2 = sim.call(t + 30 * S, tok, run, "repo.write", task, trace, root, ms)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe, p.id], _ids(tok.eid, c1, c2),
              f"agent workload presents {p.id}'s own token (auth.sub = the person, no act) to the MCP gateway")


def unmediated_call(sim: Sim, t: int, inc: Incident) -> None:
    a = A["research"]
    tk = _Task(sim, t, a, ["files:read", "kb:search"], rep=inc.k % a.replicas)
    tk.call(t + 2 * S, "kb.search")
    bad = tk.call(t + 40 * S, "files.read", resource=f"files/share-{inc.k:03d}/payroll.xlsx", mediated=False)
    tk.call(t + 85 * S, "kb.search")
    tk.revoke(t + 100 * S)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe], _ids(bad),
              "tool call on legacy-files-mcp with no OPA decision (none on its trace/span, none for its jti within "
              "40 s)")


def denied_then_elsewhere(sim: Sim, t: int, inc: Incident) -> None:
    a = A["analyst"]
    sa = org.SERVICE_ACCOUNTS[0]
    res = f"db/payroll-{inc.k:03d}"
    tk = _Task(sim, t, a, ["db:query"])
    deny = tk.call(t + 3 * S, "db.query", resource=res, sens="high", allow=False,
                   reason="db/payroll requires finance clearance", truth=True)
    tk.revoke(t + 20 * S)
    cred = sim.client_login(t + 4 * MIN, sa.name, sa.name, "service_account", ["db:query", "reports:read"], 300,
                            sa.ip)
    run = Runner(sa.workload, sa.ip, "batch/2.1")
    ok = sim.call(t + 4 * MIN + 2 * S, cred, run, "db.query", None, sim.hex(32), sim.hex(16), "mcp-" + sim.hex(12),
                  res, "high", truth=True)
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe, sa.name], _ids(deny, ok),
              "agent denied db.query on R; 4 min later an unrelated service account (other trace, no delegation) "
              "is allowed db.query on R and succeeds")


def long_lived_credential(sim: Sim, t: int, inc: Incident) -> None:
    if inc.k % 2 == 0:
        a = A["ops"]
        base = sim.client_login(t, a.client, a.spiffe, "agent", list(a.cap), 8 * 3600, a.ip(0))
        tk = _Task(sim, t + 2 * S, a, ["ci:run"], parent=base)
        tk.call(t + 5 * S, "ci.run")
        tk.revoke(t + 30 * S)
        ev, shape = base.eid, "agent CLIENT_LOGIN token with an 8 h lifetime"
    else:
        a = A["coder"]
        ev = sim.x509(t, a.spiffe, 24 * 3600, a.node(0), f"k8s:ns:agents,k8s:sa:{a.name},k8s:pod-name:{a.name}-0")
        shape = "agent X.509-SVID with a 24 h TTL"
    sim.label(inc.incident_id, inc.detection, False, [a.spiffe], [ev], shape)


def _secret_read(sim: Sim, t: int, inc: Incident, shape: str) -> None:
    a = A["coder"]
    path = inc.rotation_path or rotation_path(inc.kind, inc.k)
    ip = a.ip(0)
    r = sim.vault(t + 2 * S, "read", path, a.spiffe, f"jwt-{a.name}", ["default", a.name], sim.hmac(), t, 1800, ip)
    rid = inc.rotation_rid
    sim.label(inc.incident_id, inc.detection, inc.benign, [a.spiffe], [*r, f"vault:request:{rid}",
                                                                       f"vault:response:{rid}"], shape)


def stale_secret(sim: Sim, t: int, inc: Incident) -> None:
    _secret_read(sim, t, inc, "Vault read of a secret whose only rotation is 120 days before the read")


def shared_identity(sim: Sim, t: int, inc: Incident) -> None:
    name = "svc-reporting" if inc.k == 0 else f"svc-reporting-{inc.k}"
    ids: list[str] = []
    for j, (wl, ip) in enumerate((("report-cron", "10.30.5.10"), ("etl-worker", "10.30.6.10"))):
        t0 = t + j * 5 * MIN
        cred = sim.client_login(t0, name, name, "service_account", ["reports:read"], 300, ip)
        run = Runner(org.workload_id(wl), ip, "batch/2.1")
        trace, root, ms = sim.hex(32), sim.hex(16), "mcp-" + sim.hex(12)
        ids += _ids(cred.eid, sim.call(t0 + 2 * S, cred, run, "reports.read", None, trace, root, ms, truth=j == 1),
                    sim.call(t0 + 20 * S, cred, run, "reports.read", None, trace, root, ms))
    sim.label(inc.incident_id, inc.detection, False, [name], ids,
              f"service account {name} used from workload report-cron and from workload etl-worker")


# benign look-alikes -----------------------------------------------------------------------------
def benign_refresh(sim: Sim, t: int, inc: Incident) -> None:
    a = A["coder"]
    tk = _Task(sim, t, a, ["docs:read", "repo:read"], ttl=300)
    for dt_s in (10, 100, 200):
        tk.call(t + dt_s * S, "repo.read")
    t2 = sim.refresh(t + 280 * S, tk.cred, a.client, 300, tk.run.ip)
    late = [sim.call(t + dt_s * S, t2, tk.run, "docs.read", tk.task, tk.trace, tk.root, tk.session)
            for dt_s in (320, 420, 520)]
    sim.revoke(t + 540 * S, t2, a.client, tk.run.ip)
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], _ids(tk.cred.eid, t2.eid, *late[1:]),
              "task outlives its 300 s token; the agent refreshes before expiry and uses only the new token after")


def benign_clock_skew(sim: Sim, t: int, inc: Incident) -> None:
    a = A["support"]
    tk = _Task(sim, t, a, ["tickets:read"], ttl=300)
    tk.call(t + 5 * S, "tickets.read")
    last = tk.call(tk.cred.exp + 30 * S, "tickets.read", truth=True)
    tk.revoke(tk.cred.exp + 45 * S)
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], _ids(tk.cred.eid, last),
              "token used 30 s after its expiry (inside the 60 s clock-skew allowance)")


def benign_revocation_grace(sim: Sim, t: int, inc: Incident) -> None:
    a = A["research"]
    tk = _Task(sim, t, a, ["docs:read", "kb:search"])
    tk.call(t + 3 * S, "kb.search")
    tk.call(t + 20 * S, "docs.read")
    rv = tk.revoke(t + 40 * S)
    late = tk.call(t + 48 * S, "docs.read")
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], _ids(tk.cred.eid, rv, late),
              "in-flight call 8 s after the task's token was revoked (inside the 30 s propagation grace)")


def benign_nat_change(sim: Sim, t: int, inc: Incident) -> None:
    a = A["research"]
    tk = _Task(sim, t, a, ["kb:search"], rep=1)
    c = [tk.call(t + 2 * S, "kb.search"), tk.call(t + 20 * S, "kb.search")]
    moved = Runner(a.spiffe, f"10.21.{a.index}.{100 + inc.k % 150}", tk.run.ua)
    c += [sim.call(t + dt_s * S, tk.cred, moved, "kb.search", tk.task, tk.trace, tk.root, tk.session)
          for dt_s in (60, 90)]
    tk.revoke(t + 100 * S)
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], _ids(*c),
              "one token, one workload (same SPIFFE ID), source address changes mid-task (NAT / pod move)")


def _narrowing(sim: Sim, t: int, inc: Incident) -> None:
    o, w = A["orchestrator"], A["support"]
    p = [x for x in org.PEOPLE if "tickets:write" in x.scopes][inc.k % 3]
    human = sim.human_token(t, p)
    tk = _Task(sim, t, o, ["agents:delegate", "kb:search", "tickets:read", "tickets:write"], parent=human)
    d = tk.call(t + 2 * S, "agents.delegate", resource=f"agents/{w.name}", sens="low")
    wrun = sim.runner(w, inc.k % w.replicas)
    sub = f"{tk.task}.1"
    wc = sim.exchange(t + 3 * S, tk.cred, w.spiffe, w.client, ["kb:search", "tickets:read"], 600, sub, wrun.ip)
    ws = "mcp-" + sim.hex(12)
    c1 = sim.call(t + 5 * S, wc, wrun, "tickets.read", sub, tk.trace, d[2], ws, truth=True)
    c2 = sim.call(t + 15 * S, wc, wrun, "kb.search", sub, tk.trace, d[2], ws)
    sim.revoke(t + 25 * S, wc, w.client, wrun.ip)
    tk.revoke(t + 27 * S)
    sim.label(inc.incident_id, inc.detection, True, [p.id, o.spiffe, w.spiffe],
              _ids(human.eid, tk.cred.eid, wc.eid, c1, c2),
              f"{p.id} -> orchestrator -> support: each exchange narrows the scope; calls stay inside it")


benign_narrowing_chain = _narrowing
benign_narrowing_delegation = _narrowing


def benign_role_chain(sim: Sim, t: int, inc: Incident) -> None:
    a = A["analyst"]
    task = sim.task_id()
    _, k1, e1 = _web_identity(sim, t, a, task)
    k2, e2 = sim.assume_role(t + 5 * S, k1, a.aws_role or "", "DataPlatformAccess", task, a.ip(0))
    k3, e3 = sim.assume_role(t + 9 * S, k2, "DataPlatformAccess", "ReportingReadOnly", task, a.ip(0))
    e4 = sim.api_call(t + 15 * S, k3, "ReportingReadOnly", task, "s3.amazonaws.com", "GetObject", "corp-reports",
                      a.ip(0))
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], [e1, e2, e3, e4],
              "three role hops ending in the non-privileged ReportingReadOnly")


def benign_ttl_limit(sim: Sim, t: int, inc: Incident) -> None:
    a = A["billing"]
    base = sim.client_login(t, a.client, a.spiffe, "agent", list(a.cap), 3600, a.ip(0), exact=True)
    tk = _Task(sim, t + 2 * S, a, ["billing:read"], parent=base)
    tk.call(t + 5 * S, "billing.read")
    tk.revoke(t + 20 * S)
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], [base.eid],
              "agent CLIENT_LOGIN token whose lifetime is exactly 3600 s (the limit, not over it)")


def benign_replicas(sim: Sim, t: int, inc: Incident) -> None:
    a = A["research"]
    ids: list[str] = []
    for rep in range(a.replicas):
        t0 = t + rep * 40 * S
        tk = _Task(sim, t0, a, ["kb:search"], rep=rep)
        ids += _ids(tk.call(t0 + 2 * S, "kb.search"), tk.call(t0 + 10 * S, "kb.search"))
        tk.revoke(t0 + 20 * S)
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], ids,
              "three replicas of the research agent (three addresses, one SPIFFE ID) each run a task")


def benign_slow_decision(sim: Sim, t: int, inc: Incident) -> None:
    a = A["research"]
    tk = _Task(sim, t, a, ["web:fetch"])
    c = tk.call(t + 2 * S, "web.fetch", lag=4200)
    tk.revoke(t + 20 * S)
    sim.label(inc.incident_id, inc.detection, True, [a.spiffe], _ids(c),
              "the OPA decision precedes the gateway's record by 4.2 s (same trace/span and jti)")


def benign_recent_rotation(sim: Sim, t: int, inc: Incident) -> None:
    _secret_read(sim, t, inc, "Vault read of a secret rotated 80 days before the read")


BUILDERS: dict[str, Callable[[Sim, int, Incident], None]] = {k: globals()[k] for k in KINDS}
