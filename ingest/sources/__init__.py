"""The parser registry: every native format decisionpath reads, in sniffing order.

Adding a format: write ``sources/<name>.py`` exposing ``PARSER: Parser``, add its module name
below, add golden fixtures under ``tests/fixtures/formats/<name>/``. A conventions test checks all three.
Order matters only for sniffing: more specific formats first (OCSF and cloud wrappers before the
formats they may carry).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ingest.sources.base import Parser

MODULES: tuple[str, ...] = (
    # formats the scenario generator writes
    "keycloak",
    "spire",
    "opa",
    "mcp",
    "cloudtrail",
    "vault",
    # further real-world formats
    "ocsf",
    "okta",
    "k8s_audit",
    "gcp_audit",
    "entra",
)


def _load() -> dict[str, Parser]:
    out: dict[str, Parser] = {}
    for mod in MODULES:
        try:
            m = importlib.import_module(f"ingest.sources.{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"ingest.sources.{mod}":
                continue  # not written yet
            raise
        p: Parser = m.PARSER
        out[p.name] = p
    return out


PARSERS: dict[str, Parser] = _load()


def sniff(rec: Mapping[str, Any]) -> Parser | None:
    """The first registered parser that recognises ``rec``, or None."""
    for p in PARSERS.values():
        try:
            if p.sniff(rec):
                return p
        except Exception:  # a sniffer must never take the collector down
            continue
    return None


def get(name: str) -> Parser:
    from ingest.errors import ConfigError

    if name not in PARSERS:
        raise ConfigError(f"unknown format {name!r}; known formats: auto, {', '.join(sorted(PARSERS))}")
    return PARSERS[name]
