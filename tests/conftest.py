"""Shared fixtures: the real embedded broker, one generated scenario per session, lake readers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from ingest.broker import EmbeddedBroker, create_topics
from ingest.lake import Lake

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker():
    """A real Tansu broker on a free loopback port for the whole session."""
    b = EmbeddedBroker(log_path=None)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topic(broker) -> str:
    """A fresh 3-partition topic."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topics(broker.bootstrap, [name], partitions=3)
    return name


@pytest.fixture(scope="session")
def scenario(tmp_path_factory) -> Path:
    """The default generated scenario (seed 7), written once per session."""
    from sample_data.generator import generate

    out = tmp_path_factory.mktemp("scenario")
    generate(out, seed=7, scale=3000)
    return out


def lake_counts(lake: Lake) -> dict[str, int]:
    """Rows and distinct event ids in events, and rows in the dead-letter."""
    con = duckdb.connect()
    ev = lake.files("events")
    dl = lake.files("dead_letter")
    n, d = (0, 0)
    if ev:
        n, d = con.execute("SELECT count(*), count(DISTINCT event_id) FROM read_parquet($f)", {"f": ev}).fetchone()
    dn = con.execute("SELECT count(*) FROM read_parquet($f)", {"f": dl}).fetchone()[0] if dl else 0
    dd = con.execute("SELECT count(DISTINCT origin) FROM read_parquet($f)", {"f": dl}).fetchone()[0] if dl else 0
    return {"events": n, "distinct": d, "dead": dn, "dead_distinct_origins": dd}


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300,
        ) -> subprocess.CompletedProcess[str]:
    """Run the real `decisionpath` command line in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run([sys.executable, "-m", "analytics.cli", *args], capture_output=True, text=True,
                       env=full_env, cwd=REPO, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"decisionpath {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def wait_until(pred, timeout: float = 60.0, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return False
