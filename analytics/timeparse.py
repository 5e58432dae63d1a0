"""Instants from the command line and the API: ISO 8601 with an explicit zone, nothing else."""

from __future__ import annotations

import datetime as dt

from ingest.errors import ConfigError


def parse_instant(value: str | dt.datetime, what: str = "time") -> dt.datetime:
    """An aware UTC datetime from ISO 8601 text with a zone (``Z`` or ``+HH:MM``) or an aware datetime."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{what} {value.isoformat()!r} has no time zone: pass an aware datetime")
        return value.astimezone(dt.UTC)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} is empty: give an ISO 8601 time with a zone, e.g. 2026-11-02T14:03:07Z")
    s = value.strip()
    if s[-1] in "Zz":
        s = s[:-1] + "+00:00"
    if "." in s:  # fromisoformat takes at most 6 fractional digits before 3.12
        head, _, tail = s.partition(".")
        i = 0
        while i < len(tail) and tail[i].isdigit():
            i += 1
        s = f"{head}.{tail[:i][:6].ljust(6, '0')}{tail[i:]}" if i else head + tail
    try:
        d = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not an ISO 8601 time: use e.g. 2026-11-02T14:03:07Z") from None
    if d.tzinfo is None:
        raise ConfigError(f"{what} {value!r} has no time zone: add Z (UTC) or an offset such as +01:00")
    return d.astimezone(dt.UTC)


def iso(d: dt.datetime | None) -> str | None:
    """``2026-11-02T14:03:07.123456Z`` for an aware datetime (None stays None)."""
    if d is None:
        return None
    return d.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
