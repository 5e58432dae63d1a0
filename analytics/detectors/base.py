"""The detection contract: declarative headers, framework id catalogs, findings, labelled examples.

A detector module defines ``DETECTION`` (a :class:`Detection` header), ``EXAMPLES`` (labelled
canonical timelines, positive and benign) and ``detect(ctx) -> list[Finding]``: a pure function of
the DuckDB relations reachable from ``ctx.con`` (views ``events`` and those of ``analytics.lake``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from analytics.lake import share

SEVERITIES = ("low", "medium", "high", "critical")

# OWASP Non-Human Identities Top 10 (2025).
NHI: Mapping[str, str] = {
    "NHI1": "Improper Offboarding", "NHI2": "Secret Leakage", "NHI3": "Vulnerable Third-Party NHI",
    "NHI4": "Insecure Authentication", "NHI5": "Overprivileged NHI",
    "NHI6": "Insecure Cloud Deployment Configurations", "NHI7": "Long-Lived Secrets",
    "NHI8": "Environment Isolation", "NHI9": "NHI Reuse", "NHI10": "Human Use of NHI",
}
# OWASP Top 10 for Agentic Applications (2026).
ASI: Mapping[str, str] = {
    "ASI01": "Agent Goal Hijack", "ASI02": "Tool Misuse and Exploitation", "ASI03": "Identity and Privilege Abuse",
    "ASI04": "Agentic Supply Chain Vulnerabilities", "ASI05": "Unexpected Code Execution",
    "ASI06": "Memory and Context Poisoning", "ASI07": "Insecure Inter-Agent Communication",
    "ASI08": "Cascading Failures", "ASI09": "Human-Agent Trust Exploitation", "ASI10": "Rogue Agents",
}
# MITRE ATT&CK (Enterprise) techniques this catalog may name.
ATTACK: Mapping[str, str] = {
    "T1078": "Valid Accounts", "T1078.001": "Valid Accounts: Default Accounts",
    "T1078.004": "Valid Accounts: Cloud Accounts", "T1098": "Account Manipulation",
    "T1098.003": "Account Manipulation: Additional Cloud Roles", "T1134": "Access Token Manipulation",
    "T1134.001": "Access Token Manipulation: Token Impersonation/Theft",
    "T1199": "Trusted Relationship", "T1528": "Steal Application Access Token",
    "T1548": "Abuse Elevation Control Mechanism",
    "T1548.005": "Abuse Elevation Control Mechanism: Temporary Elevated Cloud Access",
    "T1550": "Use Alternate Authentication Material", "T1550.001": "Use Alternate Authentication Material: Application Access Token",
    "T1552": "Unsecured Credentials", "T1552.001": "Unsecured Credentials: Credentials In Files",
    "T1556": "Modify Authentication Process", "T1606": "Forge Web Credentials",
}
# NIST Cybersecurity Framework 2.0 subcategories this catalog may name.
CSF: Mapping[str, str] = {
    "GV.RR-04": "Cybersecurity is included in human resources practices",
    "ID.AM-08": "Systems, hardware, software, services, and data are managed throughout their life cycles",
    "PR.AA-01": "Identities and credentials for authorized users, services, and hardware are managed",
    "PR.AA-02": "Identities are proofed and bound to credentials based on the context of interactions",
    "PR.AA-03": "Users, services, and hardware are authenticated",
    "PR.AA-04": "Identity assertions are protected, conveyed, and verified",
    "PR.AA-05": "Access permissions, entitlements, and authorizations are defined, managed, enforced, and reviewed",
    "PR.PS-04": "Log records are generated and made available for continuous monitoring",
    "DE.CM-01": "Networks and network services are monitored",
    "DE.CM-03": "Personnel activity and technology usage are monitored",
    "DE.CM-09": "Computing hardware and software, runtime environments, and their data are monitored",
    "DE.AE-02": "Potentially adverse events are analyzed",
    "DE.AE-03": "Information is correlated from multiple sources",
}
# CSA MAESTRO layers.
MAESTRO: Mapping[str, str] = {
    "L1": "Foundation Models", "L2": "Data Operations", "L3": "Agent Frameworks",
    "L4": "Deployment and Infrastructure", "L5": "Evaluation and Observability",
    "L6": "Security and Compliance", "L7": "Agent Ecosystem",
}
AI_RMF_RE = re.compile(r"^(GOVERN|MAP|MEASURE|MANAGE) [1-6]\.[0-9]{1,2}$")
ID_RE = re.compile(r"^DP-[A-Z]{2}-[0-9]+$")


@dataclass(frozen=True)
class Threshold:
    """A tunable parameter with its default and unit."""

    name: str
    default: float
    unit: str
    doc: str


@dataclass(frozen=True)
class Detection:
    """The declarative header of one detection."""

    id: str
    title: str
    severity: str
    description: str
    nhi: tuple[str, ...]
    asi: tuple[str, ...]
    attack: tuple[str, ...]
    csf: tuple[str, ...]
    maestro: tuple[str, ...] = ()
    ai_rmf: tuple[str, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    # "event": alerts match incidents by shared event id; "identity": also by identity in the incident's span.
    match: str = "event"
    version: int = 1

    def default(self, name: str) -> float:
        for t in self.thresholds:
            if t.name == name:
                return t.default
        raise KeyError(f"{self.id} has no threshold {name!r}")


@dataclass(frozen=True)
class Link:
    """One edge of a finding's proof: from → to, what kind, and how the link was made."""

    src: str
    dst: str
    kind: str
    how: str

    def to_json(self) -> dict[str, str]:
        return {"from": self.src, "to": self.dst, "kind": self.kind, "how": self.how}


@dataclass(frozen=True)
class Finding:
    """What a detector returns: the identifying key, the evidence, and a readable explanation."""

    detection: str
    key: tuple[str, ...]  # identifying evidence: same key -> same alert id
    identities: tuple[str, ...]
    first_seen: dt.datetime
    last_seen: dt.datetime
    event_ids: tuple[str, ...]
    key_event_id: str
    explanation: str
    score: float = 1.0
    links: tuple[Link, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()  # extra named evidence (credential, task, scope ...)

    @property
    def alert_id(self) -> str:
        return alert_id(self.detection, self.key)


def alert_id(detection: str, key: Sequence[str]) -> str:
    """Stable alert id: a hash of the detection id and its identifying evidence."""
    h = hashlib.sha256("\x1f".join([detection, *key]).encode()).hexdigest()[:24]
    return f"{detection}:{h}"


_RUN: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, frozenset[str]] = weakref.WeakKeyDictionary()


def set_run(con: duckdb.DuckDBPyConnection, ids: Iterable[str]) -> None:
    """Record the detection ids a run on ``con`` will execute (``analytics.detect.share_for``)."""
    _RUN[con] = frozenset(ids)


def in_run(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The detection ids of the run on ``con`` (empty when a detector is called outside a run)."""
    return _RUN.get(con, frozenset())


@dataclass(frozen=True)
class Context:
    """What a detector runs against: a DuckDB connection, the window of key events, its thresholds."""

    con: duckdb.DuckDBPyConnection
    since: dt.datetime
    until: dt.datetime
    overrides: Mapping[str, float] = field(default_factory=dict)

    def p(self, det: Detection, name: str) -> float:
        """Threshold value: the override for ``<id>.<name>`` or ``<name>``, else the default."""
        for k in (f"{det.id}.{name}", name):
            if k in self.overrides:
                return float(self.overrides[k])
        return det.default(name)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None, *, build_right: bool = False
             ) -> list[dict[str, Any]]:
        """Run parameterised SQL; rows as dicts.

        ``build_right`` keeps each join's sides as written: the right side is the one hashed. DuckDB hashes the
        side it estimates smaller, and its estimate of a filtered scan of the lake can be far below the rows
        that come: on 10M events it hashed ~7M credential uses (and spilled them) instead of 1.6M credentials.
        """
        share(self.con, sql)
        with _join_sides_as_written(self.con) if build_right else contextlib.nullcontext():
            cur = self.con.execute(sql, dict(params or {}))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def lookup(self, sql: str, keys: Sequence[Any], params: Mapping[str, Any] | None = None
               ) -> dict[Any, list[dict[str, Any]]]:
        """Evidence for many findings in one query, not one query per finding.

        ``sql`` selects a column ``k`` and filters with ``IN (SELECT unnest($keys))``; rows come back
        grouped by ``k``. (Per-finding lookups over the lake's views cost a full view scan each.)
        """
        out: dict[Any, list[dict[str, Any]]] = {}
        if not keys:
            return out
        for r in self.rows(sql, {**dict(params or {}), "keys": list(dict.fromkeys(keys))}):
            out.setdefault(r["k"], []).append(r)
        return out

    def window(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until}


@contextlib.contextmanager
def _join_sides_as_written(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's build-side optimizer off for one query; the connection's own setting restored after."""
    (before,) = con.execute("SELECT current_setting('disabled_optimizers')").fetchone() or ("",)
    con.execute("SET disabled_optimizers = $v", {"v": ",".join(x for x in (before, "build_side_probe_side") if x)})
    try:
        yield
    finally:
        con.execute("SET disabled_optimizers = $v", {"v": before})


@dataclass(frozen=True)
class Example:
    """A labelled timeline: canonical events (times relative to a base, in seconds) and the expected keys."""

    name: str
    events: tuple[Mapping[str, Any], ...]
    expect: frozenset[tuple[str, ...]]  # the finding keys the detector must return (empty: benign)
    overrides: Mapping[str, float] = field(default_factory=dict)

    @property
    def positive(self) -> bool:
        return bool(self.expect)


def ev(t: float, event_id: str, activity: str, **fields: Any) -> dict[str, Any]:
    """A canonical event for a labelled example at ``t`` seconds after the example base time."""
    return {"t": t, "event_id": event_id, "activity": activity, **fields}


def positive(name: str, events: Sequence[Mapping[str, Any]], *keys: tuple[str, ...],
             overrides: Mapping[str, float] | None = None) -> Example:
    return Example(name, tuple(events), frozenset(keys), dict(overrides or {}))


def benign(name: str, events: Sequence[Mapping[str, Any]], overrides: Mapping[str, float] | None = None) -> Example:
    return Example(name, tuple(events), frozenset(), dict(overrides or {}))


DetectFn = Callable[[Context], list[Finding]]


def ts(v: Any) -> dt.datetime:
    """A DuckDB timestamp value as an aware UTC datetime."""
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    raise TypeError(f"not a timestamp: {v!r}")


def iso(v: dt.datetime | None) -> str | None:
    return None if v is None else v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
