"""Native record writers: one method per record kind, each appends one JSON line and returns its event id.

A ``Shard`` owns one stretch of simulated time, its own seeded RNG and the lines it produced. Records
are plain dicts serialised once with orjson; times are integer milliseconds since the Unix epoch.
Event ids follow docs/formats.md: ``<format>:<native id>``, or the record hash for SPIRE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from typing import Any

import orjson

from ingest.events import record_event_id
from sample_data import org

FILES = ("idp.jsonl", "spire.jsonl", "opa.jsonl", "mcp.jsonl", "cloudtrail.jsonl", "vault.jsonl")
IDP, SPIRE, OPA, MCP, CT, VAULT = range(6)
BASE = int(dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC).timestamp() * 1000)
S, MIN, H, DAY = 1000, 60_000, 3_600_000, 86_400_000
POLICY_EVERY = 40 * MIN

_days: dict[int, str] = {}
_dumps = orjson.dumps
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _day(d: int) -> str:
    s = _days.get(d)
    if s is None:
        s = _days[d] = (dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat()
    return s


def iso_s(t: int) -> str:
    """``2026-11-02T08:00:00Z`` (seconds precision)."""
    d, r = divmod(t, DAY)
    h, r = divmod(r, H)
    m, r = divmod(r, MIN)
    return f"{_day(d)}T{h:02d}:{m:02d}:{r // 1000:02d}Z"


_minutes: dict[int, str] = {}
# "SS.mmm" for every millisecond of a minute: the hottest formatter becomes two lookups.
_SECMS = [f"{i // 1000:02d}.{i % 1000:03d}" for i in range(MIN)]
_NS = [f"{(i * 7919) % 1000000:06d}Z" for i in range(1000)]


def _minute(m: int) -> str:
    if len(_minutes) > 50_000:
        _minutes.clear()
    d, r = divmod(m * MIN, DAY)
    h, r = divmod(r, H)
    p = _minutes[m] = f"{_day(d)}T{h:02d}:{r // MIN:02d}:"
    return p


def iso_ms(t: int) -> str:
    """``2026-11-02T08:00:00.123Z``."""
    m, r = divmod(t, MIN)
    return (_minutes.get(m) or _minute(m)) + _SECMS[r] + "Z"


def iso_ns(t: int, n: int) -> str:
    """OPA's nanosecond timestamp; the sub-millisecond digits are filler derived from ``n``."""
    m, r = divmod(t, MIN)
    return (_minutes.get(m) or _minute(m)) + _SECMS[r] + _NS[n % 1000]


def policy_revision(t: int) -> str:
    """The OPA bundle revision in force at ``t`` (a new bundle every 40 minutes)."""
    return f"policy-v{1 + (t - BASE) // POLICY_EVERY}"


class Cred:
    """An OAuth access token as the simulation knows it (never serialised: only its claims are)."""

    __slots__ = ("jti", "chain", "scope", "scope_str", "exp", "task", "actor", "actor_type", "sub", "act", "eid")

    def __init__(self, jti: str, chain: list[str], scope: list[str], exp: int, task: str | None,
                 actor_type: str, eid: str) -> None:
        self.jti, self.chain, self.scope, self.exp, self.task = jti, chain, scope, exp, task
        self.scope_str = " ".join(scope)
        self.actor = chain[-1]
        self.actor_type = actor_type
        self.sub = chain[0]
        act: dict[str, Any] | None = None
        for a in chain[1:]:
            act = {"sub": a, "act": act} if act else {"sub": a}
        self.act = act
        self.eid = eid

    @property
    def obo(self) -> str | None:
        return self.chain[0] if len(self.chain) > 1 else None


class Runner:
    """Where a request comes from: the workload (SPIFFE ID, or None when unknown), address, user agent."""

    __slots__ = ("workload", "ip", "ua")

    def __init__(self, workload: str | None, ip: str, ua: str) -> None:
        self.workload, self.ip, self.ua = workload, ip, ua


class Shard:
    """Writers for one stretch of simulated time ``[start, end)``."""

    def __init__(self, seed: int, index: int, start: int, end: int) -> None:
        self.rng = random.Random(f"decisionpath:{seed}:{index}")
        self.bits = self.rng.getrandbits
        self.seed, self.index, self.start, self.end = seed, index, start, end
        self.out: list[list[tuple[int, bytes]]] = [[] for _ in FILES]
        self.labels: list[dict[str, Any]] = []
        self.truth: list[dict[str, Any]] = []
        self.calls = 0
        self.n = 0
        self._hexbuf = ""
        self._hexpos = 0
        self.human_tok: dict[str, Cred] = {}
        self.base_tok: dict[tuple[str, int], Cred] = {}

    # ids -------------------------------------------------------------------------------------
    def hex(self, n: int) -> str:
        """``n`` random hex digits (drawn from a buffer refilled from the shard's RNG)."""
        p = self._hexpos
        if p + n > len(self._hexbuf):
            self._hexbuf, p = self.rng.randbytes(8192).hex(), 0
        self._hexpos = p + n
        return self._hexbuf[p:p + n]

    def uuid(self) -> str:
        h = self.hex(32)
        return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]

    def akid(self) -> str:
        x = self.bits(80)
        return "ASIA" + "".join(_B32[(x >> (5 * i)) & 31] for i in range(16))

    def hmac(self) -> str:
        return f"hmac-sha256:{self.bits(256):064x}"

    def put(self, f: int, t: int, rec: dict[str, Any]) -> None:
        self.out[f].append((t, _dumps(rec)))
        self.n += 1

    # keycloak --------------------------------------------------------------------------------
    def _kc(self, t: int, typ: str, client: str, user: str | None, ip: str, details: dict[str, Any],
            session: str | None = None) -> str:
        i = self.uuid()
        rec: dict[str, Any] = {"id": i, "time": t, "type": typ, "realmId": org.REALM, "clientId": client}
        if user:
            rec["userId"] = user
        if session:
            rec["sessionId"] = session
        rec["ipAddress"] = ip
        rec["details"] = details
        self.put(IDP, t, rec)
        return "keycloak:" + i

    def login(self, t: int, person: org.Person) -> tuple[str, str]:
        """Human LOGIN: (session id, event id)."""
        sess = self.uuid()
        eid = self._kc(t, "LOGIN", "chat-ui", person.id, person.ip,
                       {"auth_method": "openid-connect", "auth_type": "code", "username": person.name}, sess)
        return sess, eid

    def code_to_token(self, t: int, person: org.Person, session: str, ttl: int = 3600) -> Cred:
        jti = "jti-" + self.hex(24)
        exp = (t // S + ttl) * S
        eid = self._kc(t, "CODE_TO_TOKEN", "chat-ui", person.id, person.ip,
                       {"token_id": jti, "grant_type": "authorization_code", "scope": " ".join(person.scopes),
                        "audience": "mcp-gateway", "expires_at": iso_s(exp)}, session)
        return Cred(jti, [person.id], list(person.scopes), exp, None, "human", eid)

    def client_login(self, t: int, client: str, actor: str, actor_type: str, scope: list[str], ttl: int,
                     ip: str, exact: bool = False) -> Cred:
        """CLIENT_LOGIN (client-credentials grant); ``exact`` makes the lifetime exactly ``ttl``."""
        jti = "jti-" + self.hex(24)
        if exact:
            t = t // S * S
        exp = (t // S + ttl) * S
        d: dict[str, Any] = {"token_id": jti, "grant_type": "client_credentials", "scope": " ".join(scope),
                             "audience": "mcp-gateway", "expires_at": iso_s(exp)}
        if actor_type == "agent":
            d["actor"] = actor
        eid = self._kc(t, "CLIENT_LOGIN", client, None, ip, d)
        return Cred(jti, [actor], scope, exp, None, actor_type, eid)

    def exchange(self, t: int, parent: Cred, actor: str, client: str, scope: list[str], ttl: int,
                 task: str | None, ip: str) -> Cred:
        """RFC 8693 TOKEN_EXCHANGE of ``parent`` for ``actor``; the act chain grows unless the actor repeats."""
        jti = "jti-" + self.hex(24)
        exp = (t // S + ttl) * S
        chain = parent.chain if parent.chain[-1] == actor else parent.chain + [actor]
        d: dict[str, Any] = {"token_id": jti, "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                             "subject_token_id": parent.jti, "scope": " ".join(scope), "audience": "mcp-gateway",
                             "actor": actor, "act_chain": " ".join(chain), "expires_at": iso_s(exp)}
        if task:
            d["task_id"] = task
        eid = self._kc(t, "TOKEN_EXCHANGE", client, chain[0], ip, d)
        return Cred(jti, chain, scope, exp, task, "agent", eid)

    def refresh(self, t: int, old: Cred, client: str, ttl: int, ip: str) -> Cred:
        jti = "jti-" + self.hex(24)
        exp = (t // S + ttl) * S
        d: dict[str, Any] = {"token_id": jti, "grant_type": "refresh_token", "refresh_token_id": old.jti,
                             "scope": old.scope_str, "audience": "mcp-gateway", "actor": old.actor,
                             "act_chain": " ".join(old.chain), "expires_at": iso_s(exp)}
        if old.task:
            d["task_id"] = old.task
        eid = self._kc(t, "REFRESH_TOKEN", client, old.chain[0], ip, d)
        return Cred(jti, old.chain, old.scope, exp, old.task, old.actor_type, eid)

    def revoke(self, t: int, cred: Cred, client: str, ip: str) -> str:
        d: dict[str, Any] = {"token_id": cred.jti, "revoked_by": "task-runtime"}
        if cred.task:
            d["task_id"] = cred.task
        return self._kc(t, "REVOKE_GRANT", client, cred.chain[0], ip, d)

    # spire -----------------------------------------------------------------------------------
    def x509(self, t: int, spiffe: str, ttl: int, node: int, selectors: str) -> str:
        t = t // S * S
        rec = {"level": "debug", "msg": "Signed X509 SVID", "subsystem_name": "ca", "spiffe_id": spiffe,
               "expiration": iso_s(t + ttl * S), "serial_num": self.hex(32), "entry_id": "e-" + self.hex(8),
               "selectors": selectors, "caller_id": f"{org.TD}/spire/agent/k8s_psat/prod/node-{node}",
               "time": iso_s(t)}
        self.put(SPIRE, t, rec)
        return record_event_id("spire", rec)

    def jwt_svid(self, t: int, spiffe: str, audience: str, ttl: int, node: int) -> tuple[str, str]:
        t = t // S * S
        jwt_id = "jwt-" + self.hex(24)
        rec = {"level": "debug", "msg": "Signed JWT SVID", "subsystem_name": "ca", "spiffe_id": spiffe,
               "audience": [audience], "jwt_id": jwt_id, "expires_at": iso_s(t + ttl * S),
               "caller_id": f"{org.TD}/spire/agent/k8s_psat/prod/node-{node}", "time": iso_s(t)}
        self.put(SPIRE, t, rec)
        return jwt_id, record_event_id("spire", rec)

    # opa + mcp -------------------------------------------------------------------------------
    def decision(self, t: int, cred: Cred, run: Runner, tool: str, resource: str, sens: str, task: str | None,
                 trace: str, span: str, allow: bool, reason: str) -> str:
        did = self.uuid()
        subject: dict[str, Any] = {"id": cred.actor, "type": cred.actor_type}
        if cred.obo:
            subject["on_behalf_of"] = cred.obo
        subject["token_jti"] = cred.jti
        subject["scopes"] = cred.scope
        if run.workload:
            subject["workload"] = run.workload
        inp: dict[str, Any] = {"subject": subject, "action": "tools/call", "tool": tool,
                               "resource": {"id": resource, "sensitivity": sens}}
        if task:
            inp["task_id"] = task
        inp["trace_id"] = trace
        inp["span_id"] = span
        self.calls += 1
        rec = {"decision_id": did, "path": org.OPA_PATH,
               "timestamp": iso_ns(t, self.calls),
               "labels": {"id": "opa-" + str(1 + self.calls % 3), "version": "0.70.0"},
               "bundles": {"authz": {"revision": policy_revision(t)}}, "input": inp,
               "result": {"allow": allow, "reasons": [reason]},
               "metrics": {"timer_server_handler_ns": 180000 + (self.calls * 104729) % 900000},
               "req_id": self.calls}
        self.put(OPA, t, rec)
        return "opa:" + did

    def tool_call(self, t: int, cred: Cred, run: Runner, server: str, tool: str, resource: str, sens: str,
                  task: str | None, trace: str, span: str, parent: str | None, ok: bool, session: str,
                  error: str | None = None) -> str:
        lid = self.hex(32)
        peer: dict[str, Any] = {"ip": run.ip, "user_agent": run.ua}
        if run.workload:
            peer["spiffe_id"] = run.workload
        auth: dict[str, Any] = {"sub": cred.sub}
        if cred.act:
            auth["act"] = cred.act
        auth["jti"] = cred.jti
        auth["scope"] = cred.scope_str
        auth["exp"] = cred.exp // S
        meta: dict[str, Any] = {"traceparent": f"00-{trace}-{span}-01"}
        if parent:
            meta["parent_span_id"] = parent
        if task:
            meta["task_id"] = task
        meta["resource"] = resource
        meta["resource_sensitivity"] = sens
        rid = self.calls
        req = {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
               "params": {"name": tool, "arguments": {"ref": resource.rpartition("/")[2]}, "_meta": meta}}
        if ok:
            resp: dict[str, Any] = {"jsonrpc": "2.0", "id": rid,
                                    "result": {"content": [{"type": "text", "text": "ok"}], "isError": False}}
        else:
            resp = {"jsonrpc": "2.0", "id": rid,
                    "error": {"code": -32003, "message": error or "forbidden by policy"}}
        rec = {"log_id": lid, "timestamp": iso_ms(t), "server": server, "session_id": session, "peer": peer,
               "auth": auth, "request": req, "response": resp}
        self.put(MCP, t, rec)
        return "mcp:" + lid

    # cloudtrail ------------------------------------------------------------------------------
    def _ct(self, t: int, ident: dict[str, Any], source: str, name: str, ip: str, params: dict[str, Any] | None,
            resp: dict[str, Any] | None, resources: list[dict[str, Any]] | None, read_only: bool,
            error: str | None = None) -> str:
        t = t // S * S
        eid = self.uuid()
        rec: dict[str, Any] = {"eventVersion": "1.08", "userIdentity": ident, "eventTime": iso_s(t),
                               "eventSource": source, "eventName": name, "awsRegion": org.AWS_REGION,
                               "sourceIPAddress": ip, "userAgent": "aws-sdk-go-v2/1.30.3",
                               "requestParameters": params, "responseElements": resp}
        if error:
            rec["errorCode"] = error
            rec["errorMessage"] = "User is not authorized to perform this operation"
        rec["requestID"] = self.uuid()
        rec["eventID"] = eid
        rec["readOnly"] = read_only
        if resources:
            rec["resources"] = resources
        rec["eventType"] = "AwsApiCall"
        rec["managementEvent"] = source != "s3.amazonaws.com"
        rec["recipientAccountId"] = org.AWS_ACCOUNT
        self.put(CT, t, rec)
        return "cloudtrail:" + eid

    def _session_ident(self, key: str, role: str, task: str, t: int) -> dict[str, Any]:
        rid = "AROA" + hashlib.blake2s(role.encode(), digest_size=8).hexdigest().upper()
        return {"type": "AssumedRole", "principalId": f"{rid}:{task}",
                "arn": f"arn:aws:sts::{org.AWS_ACCOUNT}:assumed-role/{role}/{task}", "accountId": org.AWS_ACCOUNT,
                "accessKeyId": key,
                "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": rid, "arn": org.role_arn(role),
                                                     "accountId": org.AWS_ACCOUNT, "userName": role},
                                   "attributes": {"creationDate": iso_s(t), "mfaAuthenticated": "false"}}}

    def _assumed(self, role: str, task: str, key: str, t: int, ttl: int) -> dict[str, Any]:
        rid = "AROA" + hashlib.blake2s(role.encode(), digest_size=8).hexdigest().upper()
        return {"credentials": {"accessKeyId": key, "expiration": iso_s(t // S * S + ttl * S)},
                "assumedRoleUser": {"assumedRoleId": f"{rid}:{task}",
                                    "arn": f"arn:aws:sts::{org.AWS_ACCOUNT}:assumed-role/{role}/{task}"}}

    def web_identity(self, t: int, spiffe: str, jwt_id: str, role: str, task: str, ip: str,
                     ttl: int = 900) -> tuple[str, str]:
        """AssumeRoleWithWebIdentity with a JWT-SVID: (new access key id, event id)."""
        key = self.akid()
        fed = {"federatedProvider": org.OIDC_PROVIDER,
               "attributes": {"jti": jwt_id, "sub": spiffe, "aud": "sts.amazonaws.com"}}
        ident = {"type": "WebIdentityUser", "principalId": f"oidc.corp.example:sts.amazonaws.com:{spiffe}",
                 "userName": spiffe, "identityProvider": "oidc.corp.example", "webIdFederationData": fed}
        resp = self._assumed(role, task, key, t, ttl)
        resp["provider"] = org.OIDC_PROVIDER
        resp["audience"] = "sts.amazonaws.com"
        eid = self._ct(t, ident, "sts.amazonaws.com", "AssumeRoleWithWebIdentity", ip,
                       {"roleArn": org.role_arn(role), "roleSessionName": task, "durationSeconds": ttl}, resp,
                       [{"accountId": org.AWS_ACCOUNT, "type": "AWS::IAM::Role", "ARN": org.role_arn(role)}], True)
        return key, eid

    def assume_role(self, t: int, parent_key: str, parent_role: str, role: str, task: str, ip: str,
                    ttl: int = 900) -> tuple[str, str]:
        """AssumeRole called with the session ``parent_key`` of ``parent_role``: (new key, event id)."""
        key = self.akid()
        eid = self._ct(t, self._session_ident(parent_key, parent_role, task, t), "sts.amazonaws.com", "AssumeRole",
                       ip, {"roleArn": org.role_arn(role), "roleSessionName": task, "durationSeconds": ttl},
                       self._assumed(role, task, key, t, ttl),
                       [{"accountId": org.AWS_ACCOUNT, "type": "AWS::IAM::Role", "ARN": org.role_arn(role)}], True)
        return key, eid

    def api_call(self, t: int, key: str, role: str, task: str, source: str, name: str, bucket: str | None,
                 ip: str) -> str:
        if source == "iam.amazonaws.com":
            params: dict[str, Any] = {"maxItems": 100}
            res = None
        elif bucket:
            obj = f"{task}/part-{self.bits(12):03x}.parquet"
            params = {"bucketName": bucket, "key": obj}
            res = [{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{obj}"}]
        else:
            params = {"cluster": "prod", "services": ["api"]}
            res = None
        return self._ct(t, self._session_ident(key, role, task, t), source, name, ip, params, None, res,
                        name.startswith(("Get", "List", "Describe")))

    # vault -----------------------------------------------------------------------------------
    def vault(self, t: int, op: str, path: str, entity: str, display: str, policies: list[str], token: str,
              issued: int, ttl: int, ip: str, rid: str | None = None) -> tuple[str, str]:
        """One Vault operation: the audit device's request and response records (event ids)."""
        rid = rid or self.uuid()
        auth = {"client_token": token, "accessor": self.hmac(), "display_name": display, "policies": policies,
                "entity_id": entity, "token_type": "service", "token_ttl": ttl, "token_issue_time": iso_s(issued)}
        req = {"id": rid, "operation": op, "mount_type": "kv", "path": path, "remote_address": ip,
               "client_token": token}
        self.put(VAULT, t, {"time": iso_ms(t), "type": "request", "auth": auth, "request": req})
        data = {"version": self.hmac()} if op != "read" else {"data": {"value": self.hmac()}}
        self.put(VAULT, t + 3, {"time": iso_ms(t + 3), "type": "response", "auth": auth, "request": req,
                                "response": {"mount_type": "kv", "data": data}})
        return f"vault:request:{rid}", f"vault:response:{rid}"

    def rotate(self, t: int, path: str, rid: str | None = None) -> tuple[str, str]:
        """The rotator workload writes a new version of a secret."""
        return self.vault(t, "update", path, org.ROTATOR, "approle-secret-rotator", ["default", "rotator"],
                          self.hmac(), t - 1000, 300, org.ROTATOR_IP, rid)

    # ground truth ----------------------------------------------------------------------------
    def label(self, incident_id: str, detection: str, benign: bool, identities: list[str], event_ids: list[str],
              shape: str) -> None:
        self.labels.append({"incident_id": incident_id, "detection": detection, "benign": benign,
                            "identities": identities, "event_ids": event_ids, "shape": shape})

    def fact(self, identity: str, t: int, action: str, resource: str, answer: str, why: str) -> None:
        self.truth.append({"identity": identity, "at": iso_ms(t), "action": action, "resource": resource,
                           "answer": answer, "why": why})
