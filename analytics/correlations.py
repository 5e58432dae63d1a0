"""Correlations as data: multi-step patterns (order, window, group-by key, absence) compiled into SQL.

Rules live in ``analytics/correlations.toml`` (format described there and in docs/detections.md).
Column names are checked against the canonical schema (identifiers cannot be SQL parameters); every
value is a parameter.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import duckdb

from analytics.detectors.base import Finding, alert_id
from ingest.errors import ConfigError
from ingest.events import FIELD_NAMES

_AGGS = ("last", "first")


def _dur(s: str) -> float:
    from analytics.detect import parse_duration

    return parse_duration(s).total_seconds()


@dataclass(frozen=True)
class Step:
    name: str
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    not_null: tuple[str, ...] = ()
    join: tuple[tuple[str, str], ...] = ()  # own column -> "step.column"
    differ: tuple[tuple[str, str], ...] = ()  # own column must differ from "step.column"
    agg: str | None = None


@dataclass(frozen=True)
class Absent:
    step: Step
    after: str
    within_s: float


@dataclass(frozen=True)
class Correlation:
    id: str
    title: str
    severity: str
    description: str
    key: tuple[str, ...]
    steps: tuple[Step, ...]
    window_s: float
    absent: Absent | None = None


def _col(c: str, where: str) -> str:
    if c not in FIELD_NAMES:
        raise ConfigError(f"correlation {where}: unknown column {c!r}")
    return c


def _step(d: Mapping[str, Any], rid: str) -> Step:
    name = str(d["name"])
    if not name.isidentifier():
        raise ConfigError(f"correlation {rid}: step name {name!r} must be an identifier")
    agg = d.get("agg")
    if agg is not None and agg not in _AGGS:
        raise ConfigError(f"correlation {rid}.{name}: agg must be one of {_AGGS}")
    where = tuple((_col(k, rid), tuple(v if isinstance(v, list) else [v])) for k, v in (d.get("where") or {}).items())
    return Step(name, where, tuple(_col(c, rid) for c in d.get("not_null", ())),
                tuple((_col(k, rid), str(v)) for k, v in (d.get("join") or {}).items()),
                tuple((_col(k, rid), str(v)) for k, v in (d.get("differ") or {}).items()), agg)


def parse(doc: Mapping[str, Any]) -> list[Correlation]:
    out = []
    for r in doc.get("correlation", []):
        rid = str(r["id"])
        steps = tuple(_step(s, rid) for s in r["steps"])
        if not steps:
            raise ConfigError(f"correlation {rid}: needs at least one step")
        ab = None
        if "absent" in r:
            a = r["absent"]
            ab = Absent(_step(a, rid), str(a["after"]), _dur(str(a["within"])))
            if ab.after not in {s.name for s in steps}:
                raise ConfigError(f"correlation {rid}: absent.after names no step")
        out.append(Correlation(rid, str(r["title"]), str(r.get("severity", "medium")), str(r.get("description", "")),
                               tuple(_col(k, rid) for k in r.get("key", ())), steps, _dur(str(r.get("window", "1h"))),
                               ab))
    return out


def load(text: str | None = None) -> list[Correlation]:
    """The declared correlations (the packaged file unless ``text`` is given)."""
    if text is None:
        text = resources.files("analytics").joinpath("correlations.toml").read_text()
    return parse(tomllib.loads(text))


class _Params:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, v: Any) -> str:
        k = f"p{len(self.values)}"
        self.values[k] = v
        return f"${k}"


def _ref(ref: str, names: set[str]) -> str:
    step, _, col = ref.partition(".")
    if step not in names:
        raise ConfigError(f"correlation reference {ref!r} names no earlier step")
    return f"{step}.{_col(col, ref)}"


def _cte(s: Step, key: Sequence[str], p: _Params) -> str:
    conds = [f"{c} IN (SELECT unnest({p.add(list(vs))}))" for c, vs in s.where]
    conds += [f"{c} IS NOT NULL" for c in s.not_null]
    where = " AND ".join(conds) or "true"
    if s.agg:
        f = "arg_max" if s.agg == "last" else "arg_min"
        t = "max" if s.agg == "last" else "min"
        keys = ", ".join(key)
        # identifiers: step names are checked identifiers, columns are checked against the schema
        return (f"{s.name} AS (SELECT {keys}, {f}(event_id, time) AS event_id, {t}(time) AS time "  # noqa: S608
                f"FROM events WHERE {where} AND {' AND '.join(f'{k} IS NOT NULL' for k in key) or 'true'} "
                f"GROUP BY {keys})")
    return f"{s.name} AS (SELECT * FROM events WHERE {where})"  # noqa: S608 (checked identifiers; values are $params)


def compile_sql(c: Correlation) -> tuple[str, dict[str, Any]]:
    """One SQL query (and its parameters) returning a row per match: key, step event ids and times."""
    p = _Params()
    steps = list(c.steps)
    ctes = [_cte(s, c.key, p) for s in steps]
    seen: set[str] = set()
    conds: list[str] = []
    for i, s in enumerate(steps):
        if i:
            prev, first = steps[i - 1].name, steps[0].name
            if not s.join:  # a step with `join` links by those columns instead of the rule's key
                conds += [f"{s.name}.{k} = {first}.{k}" for k in c.key]
            conds += [f"{s.name}.{col} = {_ref(ref, seen)}" for col, ref in s.join]
            conds.append(f"{s.name}.time >= {prev}.time")
            conds.append(f"{s.name}.time <= {first}.time + to_microseconds(CAST({p.add(c.window_s)} * 1e6 AS BIGINT))")
        conds += [f"{s.name}.{col} IS DISTINCT FROM {_ref(ref, seen)}" for col, ref in s.differ]
        seen.add(s.name)
    if c.absent is not None:
        a = c.absent
        ctes.append(_cte(a.step, c.key, p))
        ac = [f"{a.step.name}.{col} = {_ref(ref, seen)}" for col, ref in a.step.join]
        if not a.step.join:
            ac += [f"{a.step.name}.{k} = {steps[0].name}.{k}" for k in c.key]
        ac.append(f"{a.step.name}.time >= {a.after}.time")
        ac.append(f"{a.step.name}.time <= {a.after}.time + to_microseconds(CAST({p.add(a.within_s)} * 1e6 AS BIGINT))")
        conds.append(f"NOT EXISTS (SELECT 1 FROM {a.step.name} WHERE {' AND '.join(ac)})")  # noqa: S608
    sel = [f"{steps[0].name}.{k} AS key_{k}" for k in c.key]
    sel += [f"{s.name}.event_id AS {s.name}_event_id, {s.name}.time AS {s.name}_time" for s in steps]
    sql = (f"WITH {', '.join(ctes)} SELECT DISTINCT {', '.join(sel)} FROM {', '.join(s.name for s in steps)} "  # noqa: S608
           f"WHERE {' AND '.join(conds) or 'true'}")
    return sql, p.values


def evaluate(con: duckdb.DuckDBPyConnection, c: Correlation, horizon: dt.datetime | None = None) -> list[Finding]:
    """Matches of one correlation as findings (key = the step event ids).

    With an absence step, a match whose absence window has not closed by ``horizon`` (default: the
    latest event time) is not reported yet.
    """
    sql, params = compile_sql(c)
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    if horizon is None:
        horizon = (con.execute("SELECT max(time) FROM events").fetchone() or [None])[0]
    out = []
    for r in rows:
        if c.absent is not None and horizon is not None:
            end = r[f"{c.absent.after}_time"] + dt.timedelta(seconds=c.absent.within_s)
            if end > horizon:
                continue
        ids = tuple(r[f"{s.name}_event_id"] for s in c.steps)
        times = sorted(r[f"{s.name}_time"] for s in c.steps)
        keyv = ", ".join(f"{k}={r[f'key_{k}']}" for k in c.key)
        out.append(Finding(
            detection=c.id, key=ids, identities=(), first_seen=times[0], last_seen=times[-1], event_ids=ids,
            key_event_id=ids[-1], explanation=f"{c.title} ({keyv}): {c.description}",
            facts=tuple((f"key_{k}", str(r[f"key_{k}"])) for k in c.key),
        ))
    return out


__all__ = ["Correlation", "alert_id", "compile_sql", "evaluate", "load", "parse"]
