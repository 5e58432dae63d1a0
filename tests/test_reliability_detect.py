"""`decisionpath detect` killed with SIGKILL, then run again: no alert lost, none duplicated.

The reference is a run on an untouched copy of the same lake. Two kinds of kill: at the named point
between the alerts commit and the detection-state commit (``DECISIONPATH_FAULT``), and from outside at
25-90 % of a clean run's duration (reading the lake and detecting: on this scenario the alerts commit
comes in the last few percent, which the named point covers). A Delta commit is atomic, so there is no
"half-written alerts" state to test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from analytics.alerts import read_alerts
from tests.conftest import REPO, cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(scenario, tmp_path_factory) -> tuple[Path, set[str], float]:
    """A lake of the default scenario, the alert ids a clean detect writes, and how long that run took."""
    root = tmp_path_factory.mktemp("detect_kill")
    lake = root / "lake"
    cli("ingest", "file", str(scenario), "--lake", str(lake), "--json")
    ref = root / "ref"
    shutil.copytree(lake, ref)
    t0 = time.monotonic()
    cli("detect", "--lake", str(ref), "--json")
    took = time.monotonic() - t0
    ids = read_alerts(ref).column("alert_id").to_pylist()
    assert ids and len(ids) == len(set(ids))
    return lake, set(ids), took


def _alert_ids(lake: Path) -> list[str]:
    return read_alerts(lake).column("alert_id").to_pylist()


def _rerun_and_check(lake: Path, want: set[str]) -> int:
    out = orjson.loads(cli("detect", "--lake", str(lake), "--json").stdout)
    ids = _alert_ids(lake)
    assert len(ids) == len(set(ids)), "an alert was written twice"
    assert set(ids) == want, "alerts lost or invented"
    again = orjson.loads(cli("detect", "--lake", str(lake), "--json").stdout)
    assert again["new_alerts"] == 0 and _alert_ids(lake) == ids
    return int(out["new_alerts"])


def test_killed_between_alerts_and_state_commit(base, tmp_path):
    lake, want, _ = base
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    r = cli("detect", "--lake", str(work), "--json", env={"DECISIONPATH_FAULT": "detect_after_alerts_write"},
            check=False)
    assert r.returncode == -signal.SIGKILL
    assert set(_alert_ids(work)) == want and not (work / "detect_state").exists()  # alerts in, state not
    assert _rerun_and_check(work, want) == 0  # the rerun finds them all in the lake already


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75, 0.9])
def test_killed_from_outside_mid_run(base, tmp_path, fraction):
    lake, want, took = base
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    p = subprocess.Popen([sys.executable, "-m", "analytics.cli", "detect", "--lake", str(work), "--json"], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    time.sleep(took * fraction)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    before = len(_alert_ids(work))
    new = _rerun_and_check(work, want)
    print(f"killed at {fraction:.0%} of a clean run ({p.returncode}): {before} alerts in the lake, {new} from the rerun")
    assert before + new == len(want)
