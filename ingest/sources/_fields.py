"""Field readers shared by the generator-format parsers (keycloak, spire, opa, mcp, cloudtrail, vault).

Optional fields are lenient: a value of the wrong type reads as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.events import utc


def _s(v: Any) -> str | None:
    """A string or number as a non-empty string; anything else (bools, NaN, containers) is absent."""
    t = type(v)  # exact types first: decoded JSON holds builtins, and ABC checks are slow
    if t is str:
        return v or None
    if (t is int or t is float) and v == v:
        return str(v)
    if t is not bool and isinstance(v, str):
        return v or None
    if t is not bool and isinstance(v, int | float) and v == v:
        return str(v)
    return None


def _m(v: Any) -> Mapping[str, Any]:
    """A mapping, or an empty one."""
    return v if type(v) is dict or isinstance(v, Mapping) else {}


def _words(v: Any) -> list[str] | None:
    """Non-empty strings from a list, or from a space/comma separated string."""
    if isinstance(v, str):
        return v.replace(",", " ").split() or None
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str) and x] or None
    return None


def _time_or_none(v: Any) -> Any:
    """An optional timestamp; unreadable values are absent."""
    try:
        return utc(v)
    except ValueError:
        return None
