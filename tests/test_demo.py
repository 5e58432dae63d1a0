"""The README's first command, end to end on the embedded default (without serving the dashboard)."""

from __future__ import annotations

import pytest

from ingest.lake import Lake
from tests.conftest import cli, lake_counts


@pytest.mark.kafka
def test_demo_runs_the_whole_pipeline(tmp_path):
    lake = tmp_path / "lake"
    p = cli("demo", "--lake", str(lake), "--no-dashboard", "--scale", "2000", timeout=600)
    assert "precision 1.000, recall 1.000" in p.stderr, p.stderr
    c = lake_counts(Lake(lake))
    assert c["events"] == c["distinct"] > 1900
    assert c["dead"] > 0  # the generator's malformed records, landed with their reasons
    alerts = cli("detect", "--lake", str(lake), "--json")
    assert '"new_alerts":0' in alerts.stdout.replace(" ", "")  # already raised by the demo: nothing new
