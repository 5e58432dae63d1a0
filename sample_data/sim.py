"""Task-level simulation on top of the record writers: tokens, tool calls, tasks, background traffic.

Background traffic is clean by construction (docs/scenario.md, "Background invariants"): every
credential is used from one workload and one address, inside its lifetime, before its revocation,
for its own task; every exchange narrows scope; every tool call has an OPA decision on the same
trace/span and jti a few ms earlier; denials hit unique resources in single-agent tasks; agent
credentials live at most 1 h; role chains never reach a privileged role; secrets rotate monthly.
"""

from __future__ import annotations

from sample_data import org
from sample_data.emit import MIN, Cred, Runner, S, Shard, iso_ms, policy_revision

TRUTH_EVERY = 40
_SCOPE = {tool: org.required_scope(tool) for tool in org.TOOLS}


class Sim(Shard):
    """One shard of simulated time with the organisation's state in it."""

    def __init__(self, seed: int, index: int, start: int, end: int) -> None:
        super().__init__(seed, index, start, end)
        self.tasks = 0
        self._runners: dict[tuple[str, int], Runner] = {}

    # identities ------------------------------------------------------------------------------
    def task_id(self) -> str:
        self.tasks += 1
        return f"task-{self.index:04d}-{self.tasks:05d}"

    def runner(self, agent: org.Agent, rep: int) -> Runner:
        r = self._runners.get((agent.name, rep))
        if r is None:
            r = self._runners[(agent.name, rep)] = Runner(agent.spiffe, agent.ip(rep), "agentkit/1.4")
        return r

    def human_token(self, t: int, p: org.Person) -> Cred:
        tok = self.human_tok.get(p.name)
        if tok is None or tok.exp - t < 20 * MIN:
            sess, _ = self.login(t - 2 * S, p)
            tok = self.human_tok[p.name] = self.code_to_token(t - 1500, p, sess)
        return tok

    def base_token(self, t: int, a: org.Agent, rep: int) -> Cred:
        tok = self.base_tok.get((a.name, rep))
        if tok is None or tok.exp - t < 20 * MIN:
            tok = self.client_login(t - S, a.client, a.spiffe, "agent", list(a.cap), 1800, a.ip(rep))
            self.base_tok[(a.name, rep)] = tok
        return tok

    def resource(self, tool: str) -> tuple[str, str]:
        _, prefix, pool, sens = org.TOOLS[tool]
        return f"{prefix}{1000 + int(self.rng.random() * pool)}", sens

    # one mediated (or not) tool call ---------------------------------------------------------
    def call(self, t: int, cred: Cred, run: Runner, tool: str, task: str | None, trace: str, parent: str | None,
             session: str, resource: str | None = None, sens: str | None = None, allow: bool = True,
             ok: bool | None = None, reason: str | None = None, mediated: bool = True, lag: int | None = None,
             truth: bool = False) -> tuple[str | None, str, str]:
        """OPA decision at ``t`` then the gateway's record ``lag`` ms later: (opa id, mcp id, span id)."""
        server = org.TOOLS[tool][0]
        if resource is None:
            resource, sens = self.resource(tool)
        sens = sens or org.TOOLS[tool][3]
        span = self.hex(16)
        scope = _SCOPE[tool]
        if reason is None:
            reason = f"scope {scope} grants {tool}" if allow else f"token lacks scope {scope}"
        oid = self.decision(t, cred, run, tool, resource, sens, task, trace, span, allow, reason) if mediated else None
        if lag is None:
            lag = 6 + int(self.rng.random() * 70)
        ok = allow if ok is None else ok
        mid = self.tool_call(t + lag, cred, run, server, tool, resource, sens, task, trace, span, parent, ok, session,
                             None if ok else f"forbidden by policy: {reason}")
        if not mediated:
            self.fact(cred.actor, t + lag, tool, resource, "not_mediated",
                      f"{server} is not behind the policy gateway: no OPA decision for this call")
        elif truth or self.calls % TRUTH_EVERY == 0:
            self.fact(cred.actor, t, tool, resource, "allowed" if allow else "denied",
                      f"{org.OPA_PATH} {policy_revision(t)}: {reason}")
        return oid, mid, span

    def gap(self, lo: float = 1.5, hi: float = 20.0) -> int:
        return int(self.rng.uniform(lo, hi) * S)

    # background tasks ------------------------------------------------------------------------
    def single(self, t: int, person: org.Person | None, agent: org.Agent) -> None:
        """One agent, one task, a per-task token exchanged from the person's (or its own) token."""
        rng = self.rng
        rep = rng.randrange(agent.replicas)
        run = self.runner(agent, rep)
        tools = [x for x in agent.tools if person is None or org.required_scope(x) in person.scopes]
        parent = self.human_token(t, person) if person else self.base_token(t, agent, rep)
        picks = [rng.choice(tools) for _ in range(rng.randint(2, 6))]
        scope = sorted({org.required_scope(x) for x in picks})
        task = self.task_id()
        cred = self.exchange(t, parent, agent.spiffe, agent.client, scope, 900, task, run.ip)
        trace, root, session = self.hex(32), self.hex(16), "mcp-" + self.hex(12)
        tc = t + 200 + rng.randrange(600)
        deny_at = rng.randrange(len(picks)) if rng.random() < 0.08 else -1
        vault_at = rng.randrange(len(picks)) if agent.secrets and rng.random() < 0.25 else -1
        vtoken = self.hmac() if vault_at >= 0 else ""
        for i, tool in enumerate(picks):
            if i == vault_at:
                self.vault(tc, "read", rng.choice(agent.secrets), agent.spiffe, f"jwt-{agent.name}",
                           ["default", agent.name], vtoken, t, 1800, run.ip)
                tc += self.gap(0.5, 3)
            if i == deny_at:
                bad = rng.choice(org.DENY_TOOLS)
                prefix = org.TOOLS[bad][1]
                res = f"{prefix}restricted-{self.hex(10)}"
                sc = org.required_scope(bad)
                why = (f"token lacks scope {sc}" if sc not in scope
                       else "resource sensitivity critical requires human approval")
                self.call(tc, cred, run, bad, task, trace, root, session, res, "critical", allow=False, reason=why)
                tc += self.gap()
            self.call(tc, cred, run, tool, task, trace, root, session)
            tc += self.gap()
        delay = rng.randrange(2 * MIN, 10 * MIN) if rng.random() < 0.1 else rng.randrange(300, 2000)
        self.revoke(tc + delay, cred, agent.client, run.ip)

    def orchestrated(self, t: int, person: org.Person | None) -> None:
        """The orchestrator delegates sub-tasks to workers; each worker's token is exchanged from its token."""
        rng = self.rng
        orch = org.AGENTS["orchestrator"]
        held = set(person.scopes if person else orch.cap) & set(orch.cap)
        plan: list[tuple[org.Agent, list[str]]] = []
        for name in rng.sample(org.WORKERS, rng.randint(1, 3)):
            w = org.AGENTS[name]
            tools = [x for x in w.tools if org.required_scope(x) in held]
            if tools:
                plan.append((w, [rng.choice(tools) for _ in range(rng.randint(1, 4))]))
        if not plan:
            return self.single(t, person, org.AGENTS["research"])
        rep = rng.randrange(orch.replicas)
        orun = self.runner(orch, rep)
        parent = self.human_token(t, person) if person else self.base_token(t, orch, rep)
        oscope = sorted({"agents:delegate"} | {org.required_scope(x) for _, ts in plan for x in ts})
        task = self.task_id()
        ocred = self.exchange(t, parent, orch.spiffe, orch.client, oscope, 900, task, orun.ip)
        trace, root, session = self.hex(32), self.hex(16), "mcp-" + self.hex(12)
        tc = t + 300 + rng.randrange(500)
        for k, (w, tools) in enumerate(plan, 1):
            _, _, dspan = self.call(tc, ocred, orun, "agents.delegate", task, trace, root, session,
                                    f"agents/{w.name}", "low")
            tc += 150 + rng.randrange(300)
            wrun = self.runner(w, rng.randrange(w.replicas))
            sub = f"{task}.{k}"
            wcred = self.exchange(tc, ocred, w.spiffe, w.client, sorted({org.required_scope(x) for x in tools}),
                                  600, sub, wrun.ip)
            wsession = "mcp-" + self.hex(12)
            tc += 200 + rng.randrange(400)
            for tool in tools:
                self.call(tc, wcred, wrun, tool, sub, trace, dspan, wsession)
                tc += self.gap(1, 12)
            self.revoke(tc + rng.randrange(200, 1500), wcred, w.client, wrun.ip)
            tc += self.gap(1, 4)
        self.revoke(tc + rng.randrange(300, 2000), ocred, orch.client, orun.ip)

    def aws_task(self, t: int, agent: org.Agent) -> None:
        """JWT-SVID -> AssumeRoleWithWebIdentity (session name = task id) -> maybe one AssumeRole -> API calls."""
        rng = self.rng
        rep = rng.randrange(agent.replicas)
        ip = agent.ip(rep)
        task = self.task_id()
        jwt_id, _ = self.jwt_svid(t, agent.spiffe, "sts.amazonaws.com", 300, agent.node(rep))
        role = agent.aws_role or ""
        key, _ = self.web_identity(t + 2 * S, agent.spiffe, jwt_id, role, task, ip)
        tc = t + 4 * S
        if agent.aws_hop2 and rng.random() < 0.4:
            key, _ = self.assume_role(tc, key, role, agent.aws_hop2, task, ip)
            role = agent.aws_hop2
            tc += 2 * S
        for _ in range(rng.randint(2, 5)):
            src, name, bucket = rng.choice(org.AWS_CALLS[agent.name])
            self.api_call(tc, key, role, task, src, name, bucket, ip)
            tc += self.gap(1, 30)

    def svc_job(self, t: int, sa: org.ServiceAccount) -> None:
        """A batch job of a service account from its one workload (no task id)."""
        rng = self.rng
        scope = sorted({org.required_scope(x) for x in sa.tools})
        cred = self.client_login(t, sa.name, sa.name, "service_account", scope, 300, sa.ip)
        run = Runner(sa.workload, sa.ip, "batch/2.1")
        trace, root, session = self.hex(32), self.hex(16), "mcp-" + self.hex(12)
        tc = t + 300
        for _ in range(rng.randint(1, 4)):
            self.call(tc, cred, run, rng.choice(sa.tools), None, trace, root, session)
            tc += self.gap(1, 15)

    def background_task(self, t: int) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            p = rng.choice(org.PEOPLE)
            agents = [a for a in org.AGENTS.values() if a.name != "orchestrator" and a.name != "ops"
                      and any(org.required_scope(x) in p.scopes for x in a.tools)]
            self.single(t, p, rng.choice(agents))
        elif r < 0.55:
            self.single(t, None, org.AGENTS[rng.choice(("research", "support", "coder", "billing", "analyst",
                                                         "ops"))])
        elif r < 0.70:
            self.orchestrated(t, rng.choice(org.PEOPLE))
        elif r < 0.77:
            self.orchestrated(t, None)
        elif r < 0.90:
            self.aws_task(t, org.AGENTS[rng.choice(("ops", "analyst"))])
        else:
            self.svc_job(t, rng.choice(org.SERVICE_ACCOUNTS))

    # periodic --------------------------------------------------------------------------------
    def svids(self) -> None:
        """X.509-SVIDs (TTL 1 h) re-minted every 30 min for every replica and workload."""
        rng = self.rng
        subjects: list[tuple[str, int, str]] = []
        for a in org.AGENTS.values():
            for rep in range(a.replicas):
                subjects.append((a.spiffe, a.node(rep),
                                 f"k8s:ns:agents,k8s:sa:{a.name},k8s:pod-name:{a.name}-{rep}"))
        for sa in org.SERVICE_ACCOUNTS:
            name = sa.workload.rpartition("/")[2]
            subjects.append((sa.workload, 6, f"k8s:ns:jobs,k8s:sa:{name}"))
        subjects.append((org.ROTATOR, 7, "k8s:ns:security,k8s:sa:secret-rotator"))
        for spiffe, node, sel in subjects:
            t = self.start + rng.randrange(30 * MIN)
            while t < self.end:
                self.x509(t, spiffe, 3600, node, sel)
                t += 30 * MIN

    def rotations(self) -> None:
        """Monthly rotation of every background secret (secret i on days d = 4i mod 30)."""
        for i, path in enumerate(org.BACKGROUND_SECRETS):
            if (self.index - i * 4) % 30 == 0:
                t = self.start + (i * 7 + 3) * MIN
                if t < self.end:
                    self.rotate(t, path)

    def unknown_facts(self) -> None:
        """Instants before anything happened: no credential, no decision."""
        t = self.start - 3 * 3_600_000
        for who, tool in (("research", "kb.search"), ("coder", "repo.write"), ("billing", "billing.refund")):
            a = org.AGENTS[who]
            res, _ = self.resource(tool)
            self.truth.append({"identity": a.spiffe, "at": iso_ms(t + a.index * MIN), "action": tool, "resource": res,
                               "answer": "unknown",
                               "why": "no credential valid and no decision recorded for this identity at that instant"})
