"""What a parser is: a pure function from one decoded native record to canonical rows.

A parser never does I/O. It reads required fields strictly (raising ``ParseError`` with a
reason) and optional ones leniently; absent values are left out (they become null), never "".
The collector adds ``ingested_at``, ``day``, ``origin`` and ``raw`` (redacted) to every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ingest.errors import ParseError

Row = dict[str, Any]
Record = Mapping[str, Any]


@dataclass(frozen=True)
class Parser:
    """One native format.

    ``sniff`` answers "is this record mine?" cheaply and without raising.
    ``parse`` returns one or more canonical rows (dicts keyed by ``ingest.events`` field names),
    or raises ``ParseError``. ``native_id`` gives the record's own id when it has one.
    ``family`` is the DESIGN source family (identity_provider, workload_identity, policy_decision,
    tool_call, api_audit, secrets).
    """

    name: str
    family: str
    sniff: Callable[[Record], bool]
    parse: Callable[[Record], Iterable[Row]]
    description: str = ""
    # Envelope files (CloudTrail {"Records": [...]}) are split into records before sniffing.
    split: Callable[[Record], list[Record] | None] | None = None


def need(rec: Record, *path: str) -> Any:
    """Required field at ``path``; raises ParseError naming the missing field."""
    cur: Any = rec
    for i, key in enumerate(path):
        if not isinstance(cur, Mapping) or key not in cur or cur[key] is None:
            raise ParseError(f"missing required field {'.'.join(path[: i + 1])}")
        cur = cur[key]
    return cur


def opt(rec: Any, *path: str) -> Any:
    """Optional field at ``path``; None when absent, null, "" or not reachable."""
    cur: Any = rec
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
        if cur is None:
            return None
    if cur == "":
        return None
    return cur


def text(value: Any) -> str | None:
    """A scalar as a string (None stays None); containers are rejected with a reason."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ParseError(f"expected a scalar, got {type(value).__name__}")


def str_list(value: Any) -> list[str] | None:
    """A list of strings from a list or a space/comma separated string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        return parts or None
    if isinstance(value, list | tuple):
        out = [text(v) for v in value]
        return [v for v in out if v is not None] or None
    raise ParseError(f"expected a list of strings, got {type(value).__name__}")
