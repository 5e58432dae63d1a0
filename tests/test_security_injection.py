"""User input reaches SQL only as parameters.

Static: no ``execute``/``sql``/``query`` call in analytics/ or dashboards/ whose SQL is an f-string,
``%``-format or ``.format`` built from a name outside a tiny allowlist of internal constants.
Dynamic: classic injection strings through the CLI answer like an unknown identity and leave the
lake unchanged.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from tests.conftest import REPO, cli
from tests.test_reliability_corpus import make_corpus

SQL_CALLS = {"execute", "sql", "query", "executemany", "from_query"}
SQL_ARG = {"keep": 2}  # helpers whose SQL is not the first argument: analytics.lake.keep(con, name, sql, params)
# Names allowed inside SQL f-strings, each an internal constant, never user input:
ALLOWED = {
    "cols",        # lake.compact: column list built from the SCHEMA constant
    "view", "name",  # analytics.lake: view names from the module's own VIEWS registry
    "view_sql",      # analytics.lake: reads the package's own views/*.sql files
    "body",          # analytics.lake: a view's own SQL with its source swapped for a file-list macro
}


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
           {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def _dynamic_sql(arg: ast.AST) -> set[str] | None:
    """Names interpolated into a SQL string argument, or None when it is not built by formatting."""
    if isinstance(arg, ast.JoinedStr):
        return set().union(*(_names(v.value) for v in arg.values if isinstance(v, ast.FormattedValue)))
    if isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod | ast.Add):
        return _names(arg.right) | (_names(arg.left) if isinstance(arg.op, ast.Add) else set())
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "format":
        return set().union(*(_names(a) for a in [*arg.args, *(k.value for k in arg.keywords)])) if (
            arg.args or arg.keywords) else set()
    return None


def _func(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def _offence(node: ast.AST) -> set[str]:
    """Names outside the allowlist interpolated into the SQL of this call (empty: none, or not a SQL call)."""
    if not isinstance(node, ast.Call):
        return set()
    func = _func(node)
    at = 0 if isinstance(node.func, ast.Attribute) and func in SQL_CALLS else SQL_ARG.get(func)
    if at is None or len(node.args) <= at:
        return set()
    names = _dynamic_sql(node.args[at]) or set()
    return {n for n in names if n not in ALLOWED and not n.isupper()}  # UPPER_CASE: module constants


def offenders() -> list[str]:
    out = []
    for f in sorted([*REPO.glob("analytics/**/*.py"), *REPO.glob("dashboards/**/*.py")]):
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            bad = _offence(node)
            if bad:
                out.append(f"{f.relative_to(REPO)}:{node.lineno}: {_func(node)}() SQL built from {sorted(bad)}")
    return out


def test_static_no_sql_built_from_user_input():
    assert offenders() == []


def test_static_check_flags_what_it_should():
    bad = ast.parse('con.execute(f"SELECT * FROM events WHERE actor_id = \'{identity}\'")').body[0].value
    ok = ast.parse('con.execute("SELECT * FROM events WHERE actor_id = $id", {"id": identity})').body[0].value
    assert _dynamic_sql(bad.args[0]) == {"identity"}
    assert _dynamic_sql(ok.args[0]) is None
    assert _offence(bad) == {"identity"} and _offence(ok) == set()
    kept = ast.parse('keep(con, "t", f"SELECT * FROM events WHERE actor_id = \'{identity}\'")').body[0].value
    assert _offence(kept) == {"identity"}  # a helper whose SQL is its third argument
    assert _offence(ast.parse('keep(con, "t", "SELECT $id", {"id": identity})').body[0].value) == set()


HOSTILE = ["' OR 1=1 --", '"; DROP VIEW events; --', "%' UNION SELECT event_id, raw FROM events --",
           "x'); DELETE FROM events; --", "*", "%"]


def _lake_digest(lake: Path) -> str:
    """Every byte of the lake's tables. The disposable caches are left out, which a query may write whatever its
    arguments: `marts/`, the marts computed from the snapshot (analytics.lake.MART_CACHE), and the files' schema
    signatures (analytics.lakefiles.SCHEMA_CACHE)."""
    from analytics.lake import MART_CACHE
    from analytics.lakefiles import SCHEMA_CACHE

    h = hashlib.sha256()
    for f in sorted(p for p in lake.rglob("*")
                    if p.is_file() and p.relative_to(lake).parts[0] not in (MART_CACHE, SCHEMA_CACHE)):
        h.update(str(f.relative_to(lake)).encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("inj")
    c = make_corpus(d / "c", n=600)
    cli("ingest", "file", str(c.dir), "--lake", str(d / "lake"))
    return d / "lake"


def _answer(args: list[str]) -> tuple[int, str]:
    p = cli(*args, check=False, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    return p.returncode, p.stdout


@pytest.mark.slow
@pytest.mark.parametrize("cmd", ["allowed", "graph", "inventory", "path", "detect"])
def test_injection_strings_are_data(lake, cmd):
    before = _lake_digest(lake)
    L = ["--lake", str(lake)]

    def run(value: str) -> tuple[int, str]:
        if cmd == "allowed":
            return _answer(["allowed", "--identity", value, "--at", "2026-11-28T10:00:05Z", "--resource", value,
                            "--action", value, "--json", *L])
        if cmd == "graph":
            return _answer(["graph", "--identity", value, *L])
        if cmd == "path":
            return _answer(["path", "--event-id", value, "--json", *L])
        if cmd == "detect":
            return _answer(["detect", "--rule", value, "--json", *L])
        return _answer(["inventory", "--json", *L])

    unknown = run("no-such-identity-7f3a")
    for s in HOSTILE:
        code, out = run(s)
        assert code == unknown[0], s
        if cmd in ("allowed", "graph", "path"):
            assert out.replace(s.replace('"', '\\"'), "no-such-identity-7f3a").replace(s, "no-such-identity-7f3a") \
                == unknown[1], s
    if cmd != "detect":  # detect writes alerts and its state by design
        assert _lake_digest(lake) == before
