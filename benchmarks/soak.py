"""Soak: a steady producer through the embedded broker into a running collector, for a bounded time.

Samples the collector's RSS and the consumer lag every ``--every`` seconds into a CSV, then drains,
stops the collector with SIGTERM and checks the lake holds every produced record exactly once.
Not run in CI:  .venv/bin/python -m benchmarks.soak --minutes 5 --rate 200 --csv soak.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.broker import EmbeddedBroker, create_topics  # noqa: E402
from ingest.lake import Lake  # noqa: E402
from tests.conftest import lake_counts  # noqa: E402
from tests.test_reliability_corpus import _keycloak, _mcp, _opa  # noqa: E402

TOPIC = "soak"
GROUP = "soak"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lag(bootstrap: str) -> int:
    """End offsets minus the group's committed offsets, over all partitions."""
    from kafka import KafkaConsumer, TopicPartition

    # not subscribed: committed() only fetches the group's offsets, it never joins the group
    c = KafkaConsumer(bootstrap_servers=bootstrap, client_id="soak-lag", group_id=GROUP, enable_auto_commit=False)
    try:
        tps = [TopicPartition(TOPIC, p) for p in (c.partitions_for_topic(TOPIC) or [])]
        ends = c.end_offsets(tps)
        return sum(ends[tp] - (c.committed(tp) or 0) for tp in tps)
    finally:
        c.close(autocommit=False)


def producer(bootstrap: str, rate: float, stop: threading.Event, sent: list[int]) -> None:
    from kafka import KafkaProducer

    makers = (_keycloak, _opa, _mcp)
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    t0 = time.monotonic()
    i = 0
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate)
        while i < due:
            p.send(TOPIC, orjson.dumps(makers[i % 3](i)), partition=i % 3)
            i += 1
        sent[0] = i
        time.sleep(0.05)
    p.flush()
    p.close()
    sent[0] = i


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=200.0, help="records per second")
    ap.add_argument("--every", type=float, default=10.0, help="sampling interval, seconds")
    ap.add_argument("--csv", default="soak.csv")
    ap.add_argument("--chunk-records", type=int, default=1000, help="collector chunk size (lag is bounded by it)")
    ap.add_argument("--lake", default=None, help="lake directory (default: a temporary one)")
    args = ap.parse_args()

    lake_dir = Path(args.lake or tempfile.mkdtemp(prefix="soak-lake-"))
    with EmbeddedBroker() as b:
        create_topics(b.bootstrap, [TOPIC], partitions=3)
        coll = subprocess.Popen(
            [sys.executable, "-m", "analytics.cli", "ingest", "kafka", "--bootstrap", b.bootstrap, "--topic", TOPIC,
             "--group", GROUP, "--lake", str(lake_dir), "--chunk-records", str(args.chunk_records), "--json"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
        )
        stop = threading.Event()
        sent = [0]
        th = threading.Thread(target=producer, args=(b.bootstrap, args.rate, stop, sent), daemon=True)
        t0 = time.monotonic()
        th.start()
        rows = []
        end = t0 + args.minutes * 60
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["elapsed_s", "produced", "collector_rss_kib", "lag"])
            while time.monotonic() < end:
                time.sleep(min(args.every, max(0.0, end - time.monotonic())))
                row = [round(time.monotonic() - t0, 1), sent[0], rss_kib(coll.pid), lag(b.bootstrap)]
                rows.append(row)
                w.writerow(row)
                f.flush()
                print(*row, sep="\t", flush=True)
        stop.set()
        th.join()
        produced = sent[0]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and lag(b.bootstrap) > 0:
            time.sleep(1)
        time.sleep(3)  # the idle flush
        coll.send_signal(signal.SIGTERM)
        out, err = coll.communicate(timeout=120)
    c = lake_counts(Lake(lake_dir))
    start_rss, end_rss = rows[0][2], rows[-1][2]
    print(f"produced {produced}; lake events {c['events']} distinct {c['distinct']} dead {c['dead']}")
    print(f"collector RSS start {start_rss / 1024:.1f} MiB, end {end_rss / 1024:.1f} MiB, "
          f"max {max(r[2] for r in rows) / 1024:.1f} MiB; max lag {max(r[3] for r in rows)} records")
    ok = c["events"] == c["distinct"] == produced and c["dead"] == 0
    print("exactly once:", "yes" if ok else "NO", f"(collector exit {coll.returncode})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
