"""A deterministic corpus for the reliability tests, independent of the scenario generator.

Records follow the documented native formats (docs/formats.md: Keycloak, OPA, MCP) with a unique
own id each, plus a fixed share of malformed lines, so every count is known in advance:
``events == records - malformed`` (one event per record) and ``dead == malformed``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import orjson

from ingest.collect_files import ingest_files
from ingest.lake import Lake
from tests.conftest import lake_counts

_T0 = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Corpus:
    dir: Path
    records: int
    events: int
    dead: int


def _keycloak(i: int) -> dict:
    t = _T0 + dt.timedelta(seconds=i)
    return {"id": f"kc-{i:08d}", "time": int(t.timestamp() * 1000), "type": "CLIENT_LOGIN", "realmId": "corp",
            "clientId": f"agent-{i % 17}", "userId": f"svc-{i % 17}", "ipAddress": f"10.20.{i % 250}.7",
            "details": {"grant_type": "client_credentials", "scope": "tickets:read", "token_id": f"jti-{i:08d}",
                        "actor": f"spiffe://corp.example/agent/a{i % 17}",
                        "expires_at": (t + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def _opa(i: int) -> dict:
    t = _T0 + dt.timedelta(seconds=i, milliseconds=100)
    return {"decision_id": f"dec-{i:08d}", "path": "agents/authz/allow",
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "labels": {"id": "opa-1", "version": "1.0.0"},
            "bundles": {"authz": {"revision": "policy-v7"}},
            "input": {"subject": {"id": f"spiffe://corp.example/agent/a{i % 17}", "type": "agent",
                                  "token_jti": f"jti-{i:08d}", "scopes": ["tickets:read"]},
                      "action": "tools/call", "tool": "ticket.read",
                      "resource": {"id": f"tickets/{i}", "sensitivity": "medium"}, "task_id": f"task-{i % 97}"},
            "result": {"allow": i % 5 != 0, "reasons": ["scope"]}, "req_id": i}


def _mcp(i: int) -> dict:
    t = _T0 + dt.timedelta(seconds=i, milliseconds=200)
    return {"log_id": f"mcp-{i:08d}", "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "server": "tickets-mcp", "session_id": f"s-{i % 31}",
            "peer": {"ip": "10.20.3.4", "user_agent": "agentkit/1.4", "spiffe_id": f"spiffe://corp.example/agent/a{i % 17}"},
            "auth": {"sub": f"spiffe://corp.example/agent/a{i % 17}", "jti": f"jti-{i:08d}", "scope": "tickets:read",
                     "exp": int(t.timestamp()) + 300},
            "request": {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                        "params": {"name": "ticket.read", "arguments": {"id": str(i)},
                                   "_meta": {"task_id": f"task-{i % 97}", "resource": f"tickets/{i}"}}},
            "response": {"jsonrpc": "2.0", "id": i, "result": {"content": [], "isError": False}}}


MALFORMED_EVERY = 50  # one line in 50 is broken JSON


def make_corpus(out: Path, n: int = 3000, start: int = 0) -> Corpus:
    """Write ``n`` records over three files; record ids start at ``start`` (disjoint corpora never collide)."""
    out.mkdir(parents=True, exist_ok=True)
    makers = {"idp.jsonl": _keycloak, "opa.jsonl": _opa, "mcp.jsonl": _mcp}
    lines: dict[str, list[bytes]] = {k: [] for k in makers}
    dead = 0
    for j in range(n):
        i = start + j
        name = list(makers)[j % 3]
        if j % MALFORMED_EVERY == MALFORMED_EVERY - 1:
            lines[name].append(b'{"broken": ' + str(i).encode() + b", ")
            dead += 1
        else:
            lines[name].append(orjson.dumps(makers[name](i)))
    for name, ls in lines.items():
        (out / name).write_bytes(b"\n".join(ls) + b"\n")
    return Corpus(out, n, n - dead, dead)


def test_corpus_counts_are_what_it_says(tmp_path):
    c = make_corpus(tmp_path / "c", n=600)
    lake = Lake(tmp_path / "lake")
    s = ingest_files([c.dir], lake)
    got = lake_counts(lake)
    assert (s.read, got["events"], got["distinct"], got["dead"]) == (c.records, c.events, c.events, c.dead)
