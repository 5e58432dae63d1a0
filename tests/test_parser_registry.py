"""Conventions over the parser registry: every format module registered, documented and fixtured."""

from __future__ import annotations

from pathlib import Path

from ingest import sources

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "formats"


def test_every_module_is_registered_and_every_registered_module_exists():
    on_disk = {p.stem for p in (REPO / "ingest" / "sources").glob("*.py") if not p.stem.startswith("_")} - {"base"}
    assert on_disk == set(sources.MODULES)
    assert set(sources.PARSERS) == set(sources.MODULES), "a listed module failed to load or names itself differently"


def test_every_parser_has_fixtures_and_a_description():
    for name, p in sources.PARSERS.items():
        assert p.description, f"{name}: add a description"
        assert p.family in {"identity_provider", "workload_identity", "policy_decision", "tool_call", "api_audit",
                            "secrets", "ocsf"}, f"{name}: unknown family {p.family!r}"
        inputs = [f for f in (FIXTURES / name).glob("*") if f.is_file() and "golden" not in f.name
                  and not f.name.endswith(".expected.json")]
        assert inputs, f"{name}: add fixtures under tests/fixtures/formats/{name}/"


def test_unknown_format_name_is_a_usage_error():
    import pytest

    from ingest.errors import ConfigError

    with pytest.raises(ConfigError, match="known formats"):
        sources.get("nope")
