"""Known-benign suppressions: a small TOML or JSON file of rules, each with a mandatory reason.

Looked up at ``--suppressions PATH`` (when the CLI passes one), else ``<lake>/suppressions.toml``,
else ``<lake>/suppressions.json``. A rule matches a finding when every field it sets matches
(``fnmatch`` globs): ``detection``, ``identity`` (any of the finding's identities), ``event_id``,
and ``facts`` (a table of fact name → glob). ``expires`` (ISO date) ends a rule.

    [[suppress]]
    detection = "DP-TR-1"
    identity = "spiffe://corp.example/agent/research"
    facts = { origins = "*10.21.*" }
    reason = "research pods move between NAT pools (CHG-1234)"
    expires = "2027-03-01"
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analytics.detectors.base import Finding
from ingest.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    reason: str
    detection: str | None = None
    identity: str | None = None
    event_id: str | None = None
    facts: tuple[tuple[str, str], ...] = ()
    expires: dt.date | None = None

    def matches(self, f: Finding, today: dt.date) -> bool:
        if self.expires is not None and today > self.expires:
            return False
        if self.detection and not fnmatch.fnmatchcase(f.detection, self.detection):
            return False
        if self.identity and not any(fnmatch.fnmatchcase(i, self.identity) for i in f.identities):
            return False
        if self.event_id and not any(fnmatch.fnmatchcase(e, self.event_id) for e in f.event_ids):
            return False
        facts = dict(f.facts)
        return all(k in facts and fnmatch.fnmatchcase(facts[k], v) for k, v in self.facts)


@dataclass(frozen=True)
class Suppressions:
    rules: tuple[Rule, ...] = ()
    source: str | None = None
    today: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())

    def match(self, f: Finding) -> str | None:
        """The reason of the first rule that suppresses this finding, else None."""
        for r in self.rules:
            if r.matches(f, self.today):
                return r.reason
        return None


def parse(doc: dict[str, Any], source: str) -> Suppressions:
    rules = []
    for i, r in enumerate(doc.get("suppress", [])):
        if not isinstance(r, dict) or not str(r.get("reason", "")).strip():
            raise ConfigError(f"{source}: suppress rule #{i + 1} needs a non-empty `reason`")
        unknown = set(r) - {"reason", "detection", "identity", "event_id", "facts", "expires"}
        if unknown:
            raise ConfigError(f"{source}: suppress rule #{i + 1} has unknown field(s) {sorted(unknown)}")
        exp = r.get("expires")
        rules.append(Rule(
            reason=str(r["reason"]), detection=r.get("detection"), identity=r.get("identity"),
            event_id=r.get("event_id"), facts=tuple(sorted((str(k), str(v)) for k, v in (r.get("facts") or {}).items())),
            expires=dt.date.fromisoformat(str(exp)) if exp else None,
        ))
    return Suppressions(tuple(rules), source)


def load_suppressions(path: Path | None, lake_dir: Path) -> Suppressions:
    """The suppression rules in force (none when no file exists)."""
    cands = [path] if path else [lake_dir / "suppressions.toml", lake_dir / "suppressions.json"]
    for p in cands:
        if p is None or not p.exists():
            if path is not None:
                raise ConfigError(f"suppression file {path} does not exist")
            continue
        text = p.read_text()
        try:
            doc = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read suppression file {p}: {e}") from e
        return parse(doc, str(p))
    return Suppressions()
