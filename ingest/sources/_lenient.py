"""Lenient readers shared by the real-world parsers (okta, k8s_audit, gcp_audit, entra, ocsf).

Optional fields are read leniently: a value of the wrong type is treated as absent rather than
failing the record, so one odd field never costs the whole event. Required fields still go
through ``base.need`` and fail loudly.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from ingest.errors import ParseError
from ingest.events import utc

# Longest string we copy into a canonical column; longer values are cut (raw keeps the original).
MAX_TEXT = 4096


def s(value: Any) -> str | None:
    """A scalar as a non-empty string, else None (containers, NaN and "" are absent).

    Exact ``type() is`` checks first: decoded JSON holds builtin types, and ABC isinstance
    checks dominate the parsers' profile otherwise.
    """
    t = type(value)
    if t is str:
        if not value:
            return None
        out = value.strip() if (value[0].isspace() or value[-1].isspace()) else value
    elif value is None or t is dict or t is list or t is tuple or isinstance(value, Mapping):
        return None
    elif t is bool:
        return "true" if value else "false"
    elif t is float and not math.isfinite(value):
        return None
    else:
        out = str(value).strip()
    return out[:MAX_TEXT] if out else None


def d(value: Any) -> Mapping[str, Any]:
    """A mapping, or an empty one."""
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def lst(value: Any) -> list[Any]:
    """A list, or an empty one."""
    return value if isinstance(value, list) else []


def get(rec: Any, *path: str) -> Any:
    """Value at ``path`` through nested mappings, else None."""
    cur = rec
    for key in path:
        if type(cur) is not dict and not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def gs(rec: Any, *path: str) -> str | None:
    """String at ``path`` (lenient)."""
    return s(get(rec, *path))


def strs(value: Any) -> list[str] | None:
    """Strings from a list (non-scalars dropped) or a space/comma separated string."""
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        return parts[:256] or None
    if isinstance(value, list):
        out = [x for x in (s(v) for v in value[:256]) if x is not None]
        return out or None
    return None


def req_time(value: Any, field: str) -> dt.datetime:
    """A required timestamp; ParseError naming the field when absent or unreadable."""
    if value is None or value == "":
        raise ParseError(f"missing required field {field}")
    try:
        t = utc(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise ParseError(f"bad timestamp in {field}: {str(e)[:120]}") from e
    if t is None:
        raise ParseError(f"missing required field {field}")
    return t


def opt_time(value: Any) -> dt.datetime | None:
    """An optional timestamp; unreadable values are absent."""
    try:
        return utc(value)
    except (ValueError, TypeError, OverflowError):
        return None


def req_str(rec: Any, *path: str) -> str:
    """A required scalar field as a string."""
    v = get(rec, *path)
    out = s(v)
    if out is None:
        what = "missing required field" if v is None or v == "" else "wrong type for required field"
        raise ParseError(f"{what} {'.'.join(path)}")
    return out


def prune(row: dict[str, Any]) -> dict[str, Any]:
    """Drop absent values (None, "", empty lists/dicts) so they become nulls, never ""."""
    return {k: v for k, v in row.items() if v is not None and v != "" and v != [] and v != {}}


def chain(*ids: str | None) -> list[str] | None:
    """A delegation chain without gaps or immediate repeats."""
    out: list[str] = []
    for i in ids:
        if i and (not out or out[-1] != i):
            out.append(i)
    return out if len(out) >= 2 else None
