"""``decisionpath demo``: the whole pipeline on the embedded default, in one command.

Starts the bundled Tansu broker on loopback, generates a scenario, produces its native logs to
a topic, collects them into ``--lake`` through the real consumer path, compacts, runs the
detections, evaluates them against the generator's ground truth, and serves the dashboard.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from ingest.broker import EmbeddedBroker, create_topics
from ingest.collect_kafka import KafkaCollector, KafkaSettings, produce
from ingest.lake import Lake

TOPIC = "decisionpath.raw"


def _step(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from sample_data.generator import generate

    lake_dir = Path(args.lake)
    data_dir = lake_dir.parent / (lake_dir.name + "-demo-input")
    if lake_dir.exists():
        _step(f"removing the previous demo lake at {lake_dir}")
        shutil.rmtree(lake_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    t0 = time.perf_counter()
    _step(f"generating a scenario (seed {args.seed}, about {args.scale:,} events) into {data_dir}")
    generate(data_dir, seed=args.seed, scale=args.scale, progress=sys.stderr.isatty())
    with EmbeddedBroker() as broker:
        _step(f"embedded Tansu broker listening on {broker.bootstrap}")
        create_topics(broker.bootstrap, [TOPIC], partitions=3)
        n = produce([str(data_dir)], broker.bootstrap, TOPIC)
        _step(f"produced {n:,} native records to {TOPIC}")
        settings = KafkaSettings(bootstrap=broker.bootstrap, topics=(TOPIC,), group="decisionpath-demo",
                                 until_idle_s=3.0, session_timeout_ms=2000)
        stats = KafkaCollector(settings, Lake(lake_dir)).run()
        _step("collected: " + stats.line())
    Lake(lake_dir).compact()
    from analytics.detect import DetectSettings
    from analytics.detect import run as detect
    from analytics.evaluate import evaluate

    res = detect(DetectSettings(lake_dir=lake_dir))
    _step(f"detections: {len(res.new_alerts)} new alerts")
    o = evaluate(lake_dir, data_dir / "labels.jsonl")["overall"]
    _step(f"evaluation against the generator's ground truth: precision {o['precision']:.3f}, "
          f"recall {o['recall']:.3f}")
    _step(f"pipeline done in {time.perf_counter() - t0:.1f}s; lake at {lake_dir}; try:\n"
          f"  decisionpath inventory --lake {lake_dir}\n"
          f"  decisionpath detect --lake {lake_dir} --json\n"
          f"  decisionpath evaluate --labels {data_dir / 'labels.jsonl'} --lake {lake_dir}")
    if args.no_dashboard:
        return 0
    from analytics.serve import serve_dashboard

    _step(f"serving the dashboard on http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    return int(serve_dashboard(str(lake_dir), port=args.port, address="127.0.0.1", allow_unauthenticated=False))
