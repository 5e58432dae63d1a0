"""Row-group pruning of per-identity and time-bounded queries, and allowed_at against the generator's truth."""

from __future__ import annotations

import json
import random

import pytest

from analytics.allowed import allowed_at
from analytics.lake import connect, scan_stats
from tests.analytics_factory import at, ev, make_lake


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """~80k events, 400 agents, two days: about 3 row groups (16k rows) per day file, sorted by actor then time."""
    rng = random.Random(3)
    rows = [ev(f"mcp:{i}", rng.random() * 2 * 86400, "tool.invoked", f"spiffe://corp.example/agent/a{rng.randrange(400):03d}",
               credential_id=f"jti-{i}", action="tools/call", tool="kb.search", resource="kb/1")
            for i in range(80_000)]
    return connect(make_lake(tmp_path_factory.mktemp("big"), rows))


def test_per_identity_and_time_bounded_queries_prune_row_groups(big):
    who = {"a": "spiffe://corp.example/agent/a123"}
    ident = scan_stats(big, "SELECT count(*) FROM actions WHERE actor_id = $a", who)
    assert ident.row_groups_total >= 5 and ident.row_groups_scanned <= 2 * 2  # at most 2 per day file
    window = {**who, "lo": at(3600), "hi": at(3900)}
    both = scan_stats(big, "SELECT count(*) FROM decisions WHERE actor_id = $a AND time BETWEEN $lo AND $hi "
                           "UNION ALL SELECT count(*) FROM actions WHERE actor_id = $a AND time BETWEEN $lo AND $hi",
                      window)
    assert both.row_groups_scanned <= 2
    day = scan_stats(big, "SELECT count(*) FROM events WHERE time BETWEEN $lo AND $hi",
                     {"lo": at(3600), "hi": at(3900)})
    assert day.row_groups_scanned < day.row_groups_total  # the other day's file is skipped on its time stats
    allowed = scan_stats(big, "SELECT count(*) FROM decisions WHERE actor_id = $a AND time >= $lo AND time <= $hi",
                         window)
    assert allowed.row_groups_scanned <= 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11, 23])  # every seed the tests generate scenarios with
def test_allowed_at_agrees_with_generator_truth(seed, scenario, tmp_path):
    from ingest.collect_files import ingest_files
    from ingest.lake import Lake
    from sample_data.generator import generate

    if seed != 7:  # the session's `scenario` is seed 7
        scenario = tmp_path / "gen"
        generate(scenario, seed=seed, scale=3000)
    lake = Lake(tmp_path / "lake")
    ingest_files([scenario], lake)
    con = connect(lake.root)
    facts = [json.loads(x) for x in (scenario / "truth.jsonl").read_text().splitlines() if x.strip()]
    assert facts
    bad = []
    for f in facts:
        a = allowed_at(con, f["identity"], f["at"], action=f.get("action"), resource=f.get("resource"))
        if a.answer != f["answer"]:
            bad.append((f, a.answer, a.why))
    rate = 1 - len(bad) / len(facts)
    print(f"allowed_at agreement with truth.jsonl: {rate:.1%} of {len(facts)} facts")
    for f, got, why in bad:
        print("MISMATCH", f, "→", got, why)
    assert rate >= 0.95
