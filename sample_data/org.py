"""The simulated organisation: people, agents, service accounts, tools, resources, roles, secrets.

Everything here is static data. Naming conventions the detectors may rely on (docs/scenario.md):
people are ``<name>@corp.example``, agents ``spiffe://corp.example/agent/<name>``, plain workloads
``spiffe://corp.example/workload/<name>``, service accounts ``svc-<name>``. A tool ``a.b`` needs the
OAuth scope ``a:b`` (``required_scope``).
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAIN = "corp.example"
TD = "spiffe://corp.example"
AWS_ACCOUNT = "111122223333"
AWS_REGION = "us-east-1"
OIDC_PROVIDER = f"arn:aws:iam::{AWS_ACCOUNT}:oidc-provider/oidc.corp.example"
REALM = "corp"
OPA_PATH = "agents/authz/allow"
# Role names that make a role chain privileged (DP-PC-3): any name containing "Admin", or one of these.
PRIVILEGED_ROLES = ("OrganizationAccountAccessRole", "PowerUserAccess", "BreakGlass")


def required_scope(tool: str) -> str:
    """The OAuth scope a tool needs: ``tickets.read`` -> ``tickets:read``."""
    return tool.replace(".", ":", 1)


def agent_id(name: str) -> str:
    return f"{TD}/agent/{name}"


def workload_id(name: str) -> str:
    return f"{TD}/workload/{name}"


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{AWS_ACCOUNT}:role/{name}"


@dataclass(frozen=True)
class Agent:
    name: str
    index: int
    replicas: int
    cap: tuple[str, ...]  # scopes of its Keycloak client (what its base token carries)
    tools: tuple[str, ...]  # what it does in background traffic
    secrets: tuple[str, ...] = ()
    aws_role: str | None = None
    aws_hop2: str | None = None

    @property
    def spiffe(self) -> str:
        return agent_id(self.name)

    @property
    def client(self) -> str:
        return f"agent-{self.name}"

    def ip(self, replica: int) -> str:
        return f"10.20.{10 + self.index}.{11 + replica}"

    def node(self, replica: int) -> int:
        return (self.index * 3 + replica) % 7 + 1


_A = [
    ("orchestrator", 2, ("agents:delegate", "kb:search", "docs:read", "web:fetch", "tickets:read",
                         "tickets:write", "email:send", "repo:read", "repo:write", "ci:run",
                         "db:query", "reports:read"), ("agents.delegate",)),
    ("research", 3, ("kb:search", "docs:read", "web:fetch", "files:read"),
     ("kb.search", "docs.read", "web.fetch")),
    ("support", 2, ("tickets:read", "tickets:write", "kb:search", "email:send", "billing:refund",
                    "agents:delegate"), ("tickets.read", "tickets.write", "kb.search", "email.send")),
    ("coder", 2, ("repo:read", "repo:write", "ci:run", "docs:read"),
     ("repo.read", "repo.write", "ci.run", "docs.read")),
    ("billing", 1, ("billing:read", "billing:refund", "reports:read"),
     ("billing.read", "billing.refund", "reports.read")),
    ("analyst", 2, ("db:query", "reports:read"), ("db.query", "reports.read")),
    ("ops", 1, ("ci:run", "reports:read"), ("ci.run",)),
]
_SECRETS = {
    "coder": ("secret/data/ci/deploy-key", "secret/data/github/app-key"),
    "billing": ("secret/data/stripe/api-key",),
    "analyst": ("secret/data/db/analytics-ro",),
    "support": ("secret/data/smtp/relay",),
    "ops": ("secret/data/pagerduty/token",),
}
_AWS = {"ops": ("agent-ops", "DeployRole"), "analyst": ("agent-analyst", "DataReader")}

AGENTS: dict[str, Agent] = {
    name: Agent(name, i + 1, reps, cap, tools, _SECRETS.get(name, ()), *(_AWS.get(name, (None, None))))
    for i, (name, reps, cap, tools) in enumerate(_A)
}
WORKERS = ("research", "support", "coder", "analyst")
BACKGROUND_SECRETS: tuple[str, ...] = tuple(sorted({s for a in AGENTS.values() for s in a.secrets}))

_TEAMS = {
    "support": ("tickets:read", "tickets:write", "kb:search", "docs:read", "email:send", "agents:delegate"),
    "eng": ("repo:read", "repo:write", "ci:run", "kb:search", "docs:read", "web:fetch", "db:query",
            "reports:read", "agents:delegate"),
    "finance": ("billing:read", "billing:refund", "reports:read", "kb:search", "docs:read", "db:query",
                "agents:delegate"),
}
_PEOPLE = [("alice", "support"), ("bob", "eng"), ("carol", "support"), ("dave", "eng"), ("erin", "support"),
           ("frank", "eng"), ("grace", "finance"), ("heidi", "finance"), ("ivan", "eng"), ("judy", "finance")]


@dataclass(frozen=True)
class Person:
    name: str
    index: int
    scopes: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.name}@{DOMAIN}"

    @property
    def ip(self) -> str:
        return f"10.50.{self.index}.{20 + self.index}"


PEOPLE: tuple[Person, ...] = tuple(Person(n, i + 1, _TEAMS[t]) for i, (n, t) in enumerate(_PEOPLE))


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    workload: str
    ip: str
    tools: tuple[str, ...]


SERVICE_ACCOUNTS: tuple[ServiceAccount, ...] = (
    ServiceAccount("svc-batch", workload_id("batch-runner"), "10.30.1.10", ("db.query", "reports.read")),
    ServiceAccount("svc-backup", workload_id("backup"), "10.30.2.10", ("reports.read",)),
)
ROTATOR = workload_id("secret-rotator")
ROTATOR_IP = "10.30.9.10"

# tool -> (MCP server, resource prefix, pool size, sensitivity)
TOOLS: dict[str, tuple[str, str, int, str]] = {
    "kb.search": ("kb-mcp", "kb/topic-", 40, "low"),
    "docs.read": ("kb-mcp", "docs/page-", 60, "low"),
    "web.fetch": ("web-mcp", "web/site-", 50, "low"),
    "tickets.read": ("tickets-mcp", "tickets/", 400, "medium"),
    "tickets.write": ("tickets-mcp", "tickets/", 400, "medium"),
    "email.send": ("mail-mcp", "mail/customer-", 200, "medium"),
    "repo.read": ("repo-mcp", "repos/svc-", 30, "medium"),
    "repo.write": ("repo-mcp", "repos/svc-", 30, "high"),
    "ci.run": ("repo-mcp", "pipelines/deploy-", 12, "high"),
    "billing.read": ("billing-mcp", "billing/acct-", 300, "high"),
    "billing.refund": ("billing-mcp", "billing/acct-", 300, "critical"),
    "reports.read": ("reports-mcp", "reports/weekly-", 20, "medium"),
    "db.query": ("db-mcp", "db/analytics-", 8, "medium"),
    "agents.delegate": ("a2a-mcp", "agents/", 0, "low"),
    "users.admin": ("users-mcp", "users/u-", 0, "critical"),
    "files.read": ("legacy-files-mcp", "files/share-", 0, "high"),
}
# Resource-type prefixes for background denials (always a unique resource id).
DENY_TOOLS = ("tickets.write", "repo.write", "billing.read", "db.query", "ci.run", "email.send")

AWS_CALLS = {
    "ops": (("ecs.amazonaws.com", "DescribeServices", None), ("s3.amazonaws.com", "PutObject", "corp-artifacts"),
            ("ecs.amazonaws.com", "UpdateService", None)),
    "analyst": (("s3.amazonaws.com", "GetObject", "corp-analytics"), ("athena.amazonaws.com",
                 "StartQueryExecution", None), ("s3.amazonaws.com", "ListObjectsV2", "corp-analytics")),
}
