"""The ``decisionpath`` command line: a thin shell over ingest/ and analytics/ functions.

Contract (DESIGN.md): errors go to stderr with a non-zero exit and a message a person can act
on; ``--json`` output is stable and machine-readable; progress bars only on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from analytics import DETECT_MEMORY_LIMIT
from ingest.errors import ConfigError, DecisionPathError
from sample_data.scale import scale_arg

EXIT_USAGE = 2
EXIT_ERROR = 1


# -- output helpers ------------------------------------------------------------------------
def _emit_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _interactive(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() and not getattr(args, "json", False) and os.environ.get("CI") != "true"


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "json", False):
        print(msg, file=sys.stderr)


@contextlib.contextmanager
def _progress(args: argparse.Namespace, label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; a no-op under --json, CI or a pipe."""
    if not _interactive(args):
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as prog:
        task = prog.add_task(label, total=total)
        yield lambda n: prog.update(task, advance=n)


def _lake(args: argparse.Namespace) -> Any:
    from ingest.lake import Lake

    return Lake(args.lake)


def _connect(args: argparse.Namespace) -> Any:
    from analytics.lake import connect

    if not (Path(args.lake) / "events").exists():
        raise ConfigError(f"no lake at {args.lake}: ingest something first (decisionpath ingest file PATH --lake "
                          f"{args.lake}) or point --lake at an existing lake")
    return connect(args.lake, memory_limit=args.memory_limit)


# -- commands --------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    from sample_data.generator import generate

    m = generate(Path(args.out), seed=args.seed, scale=args.scale, progress=_interactive(args))
    if args.json:
        _emit_json(m.to_json() if hasattr(m, "to_json") else m.__dict__)
    else:
        _say(args, f"generated {args.out} (seed {args.seed}, scale {args.scale}): see {args.out}/manifest.json")
    return 0


def cmd_ingest_file(args: argparse.Namespace) -> int:
    from ingest.collect_files import default_workers, ingest_files

    lake = _lake(args)
    with _progress(args, "ingest") as advance:
        stats = ingest_files(args.paths, lake, fmt=args.format, chunk_records=args.chunk_records,
                             on_chunk=lambda s: advance(s.read), workers=args.workers or default_workers())
    if args.compact:
        lake.compact()
    _report_ingest(args, stats)
    return 0


def cmd_ingest_kafka(args: argparse.Namespace) -> int:
    from ingest.collect_kafka import KafkaCollector, KafkaSettings, install_signal_handlers

    settings = KafkaSettings(
        bootstrap=args.bootstrap, topics=tuple(args.topic), group=args.group, fmt=args.format,
        chunk_records=args.chunk_records, until_idle_s=args.until_idle, session_timeout_ms=args.session_timeout_ms,
        connect_timeout_s=args.connect_timeout, broker_retry_s=args.broker_retry_timeout, workers=args.workers,
    )
    lake = _lake(args)
    with _progress(args, f"kafka {','.join(args.topic)}") as advance:
        collector = KafkaCollector(settings, lake, on_chunk=lambda s: advance(s.read))
        install_signal_handlers(collector)
        stats = collector.run()
    if args.compact:
        lake.compact()
    _report_ingest(args, stats)
    return 0


def _report_ingest(args: argparse.Namespace, stats: Any) -> None:
    if args.json:
        _emit_json(stats.to_json())
    else:
        print(stats.line())


def cmd_produce(args: argparse.Namespace) -> int:
    from ingest.collect_kafka import produce

    t0 = time.perf_counter()
    with _progress(args, f"produce → {args.topic}") as advance:
        n = produce(args.paths, args.bootstrap, args.topic, on_progress=lambda k: advance(10_000))
    secs = time.perf_counter() - t0
    if args.json:
        _emit_json({"produced": n, "topic": args.topic, "seconds": round(secs, 3)})
    else:
        print(f"produced {n:,} records to {args.topic} in {secs:.1f}s")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    res: dict[str, Any] = dict(_lake(args).compact())
    if not args.no_marts and (Path(args.lake) / "events").exists():
        from analytics import snapshot
        from analytics.lake import mart_cache_dir

        # Compaction makes a new snapshot; prepare its caches now (marts, id index, overview aggregates, path
        # tables) so the next query and the dashboard's first render only load them.
        t0 = time.perf_counter()
        con = _connect(args)
        snapshot.prepare(con)
        res["marts_seconds"] = round(time.perf_counter() - t0, 3)
        res["marts"] = str(mart_cache_dir(con))
    _emit_json(res) if args.json else print(
        f"compacted {res['rewritten']} of {res['days']} days: {res['files_before']} → {res['files_after']} files"
        + (f"; snapshot caches prepared in {res['marts_seconds']:.1f}s" if "marts_seconds" in res else ""))
    return 0


def cmd_allowed(args: argparse.Namespace) -> int:
    from analytics.allowed import allowed_at

    ans = allowed_at(_connect(args), args.identity, args.at, action=args.action, resource=args.resource)
    if args.json:
        _emit_json(ans.to_json())
    else:
        print(ans.render() if hasattr(ans, "render") else orjson.dumps(ans.to_json(), default=str).decode())
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    from analytics.paths import decision_path

    p = decision_path(_connect(args), args.event_id)
    if args.json:
        _emit_json(p.to_json())
    else:
        print(p.render() if hasattr(p, "render") else orjson.dumps(p.to_json(), default=str).decode())
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from analytics.graphs import export_graph, identity_graph

    g = identity_graph(_connect(args), args.identity, since=args.since, until=args.until)
    sys.stdout.write(export_graph(g, args.format))
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    from analytics.inventory import inventory, render_inventory

    inv = inventory(_connect(args))
    if args.json:
        _emit_json({"identities": [r.to_json() for r in inv]})
    else:
        print(render_inventory(inv))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from analytics.detect import run_detect_cli

    return int(run_detect_cli(args))


def cmd_schedule(args: argparse.Namespace) -> int:
    from analytics.schedule import run_schedule_cli

    return int(run_schedule_cli(args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from analytics.evaluate import run_evaluate_cli

    return int(run_evaluate_cli(args))


def cmd_triage(args: argparse.Namespace) -> int:
    from analytics.triage import run_triage_cli

    return int(run_triage_cli(args))


def cmd_dashboard(args: argparse.Namespace) -> int:
    from analytics.serve import serve_dashboard

    return int(serve_dashboard(args.lake, port=args.port, address=args.address,
                               allow_unauthenticated=args.allow_unauthenticated_public))


def cmd_demo(args: argparse.Namespace) -> int:
    from analytics.demo import run_demo

    return int(run_demo(args))


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("decisionpath")
    except PackageNotFoundError:  # running from a source tree
        ver = "dev"
    p = argparse.ArgumentParser(
        prog="decisionpath",
        description="What was this identity allowed to do, at the exact moment it did it, and why?",
    )
    p.add_argument("--version", action="version", version=f"decisionpath {ver}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser, json_flag: bool = True, memory: str = "2GB") -> argparse.ArgumentParser:
        sp.add_argument("--lake", default="./lake", help="lake directory (default ./lake)")
        sp.add_argument("--memory-limit", default=memory, help=f"DuckDB memory limit (default {memory})")
        if json_flag:
            sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        return sp

    d = sub.add_parser("demo", help="embedded: broker, generate, produce, collect, detect, serve the dashboard")
    common(d)
    d.add_argument("--scale", type=scale_arg, default=3000, help="about this many events: 3000 (default), 10k, 1m")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--no-dashboard", action="store_true", help="stop after detect instead of serving")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("generate", help="write a seeded scenario: native logs + labels.jsonl + truth.jsonl")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--scale", type=scale_arg, default=3000, help="about this many events: 3000 (default), 10k, 1m")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_generate)

    ing = sub.add_parser("ingest", help="collect records into the lake (file or kafka)")
    isub = ing.add_subparsers(dest="source", required=True, metavar="SOURCE")
    f = common(isub.add_parser("file", help="JSONL, JSON arrays, single JSON documents, gzip; directories too"))
    f.add_argument("paths", nargs="+")
    f.add_argument("--format", default="auto", help="auto (sniff each record) or a format name")
    f.add_argument("--chunk-records", type=int, default=50_000)
    f.add_argument("--workers", type=int, default=0, help="parsing processes (default: one per core)")
    f.add_argument("--compact", action="store_true", help="then compact the lake (as `decisionpath compact`)")
    f.set_defaults(func=cmd_ingest_file)
    k = common(isub.add_parser("kafka", help="consume topics as a member of a consumer group"))
    k.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    k.add_argument("--topic", nargs="+", required=True)
    k.add_argument("--group", default="decisionpath")
    k.add_argument("--format", default="auto")
    k.add_argument("--until-idle", type=float, default=None, metavar="SECONDS",
                   help="stop once nothing arrived for this long (batch use)")
    k.add_argument("--chunk-records", type=int, default=50_000)
    k.add_argument("--session-timeout-ms", type=int, default=10_000)
    k.add_argument("--workers", type=int, default=1,
                   help="parsing processes per collector (default 1: scale out with more collectors in the "
                        "group, one per core; more workers help when partitions are fewer than cores)")
    k.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="retry a broker that is down at start for this long (default 30)")
    k.add_argument("--broker-retry-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="wait this long for a broker lost mid-stream, logging on stderr, before giving up "
                        "(default 300); an outage does not count as idle time for --until-idle")
    k.add_argument("--compact", action="store_true")
    k.set_defaults(func=cmd_ingest_kafka)

    pr = sub.add_parser("produce", help="replay files into a Kafka topic, one record per message")
    pr.add_argument("paths", nargs="+")
    pr.add_argument("--bootstrap", required=True)
    pr.add_argument("--topic", required=True)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_produce)

    c = common(sub.add_parser("compact", help="rewrite each day of events as one file sorted by activity, identity, time (scanned columns LZ4)"))
    c.add_argument("--no-marts", action="store_true",
                   help="skip preparing the new snapshot's caches: credential marts, id index, overview and path "
                        "tables (then the next query builds what it needs)")
    c.set_defaults(func=cmd_compact)

    de = common(sub.add_parser("detect", help="run detections incrementally; new alerts go to the lake"),
                memory=DETECT_MEMORY_LIMIT)
    de.add_argument("--since")
    de.add_argument("--until")
    de.add_argument("--rule", nargs="+", metavar="ID")
    de.add_argument("--full", action="store_true", help="ignore saved coverage and scan everything")
    de.add_argument("--sink", action="append", default=[], metavar="SINK",
                    help="also send new alerts to jsonl:PATH, ocsf:PATH or kafka:BOOTSTRAP/TOPIC")
    de.add_argument("--lookback", default=None, help="how far back each run re-reads for late events (default 6h)")
    de.add_argument("--suppressions", default=None, metavar="FILE",
                    help="TOML/JSON suppressions (default: <lake>/suppressions.toml when present)")
    de.set_defaults(func=cmd_detect)

    sc = common(sub.add_parser("schedule", help="run detect every interval until stopped"), memory=DETECT_MEMORY_LIMIT)
    sc.add_argument("--every", default="5m", help="interval: 30s, 5m, 1h")
    sc.add_argument("--sink", action="append", default=[], metavar="SINK")
    sc.add_argument("--lookback", default=None)
    sc.add_argument("--suppressions", default=None, metavar="FILE")
    sc.add_argument("--compact", action="store_true",
                    help="before each run, compact the days before the newest one (detection reads a compacted lake "
                         "faster; a day already compacted is left as it is)")
    sc.add_argument("--max-runs", type=int, default=None, help=argparse.SUPPRESS)
    sc.set_defaults(func=cmd_schedule)

    a = common(sub.add_parser("allowed", help="point in time: was IDENTITY allowed at TIME, and why"))
    a.add_argument("--identity", required=True)
    a.add_argument("--at", required=True, help="ISO 8601 with zone, e.g. 2026-11-02T09:14:03Z")
    a.add_argument("--action")
    a.add_argument("--resource")
    a.set_defaults(func=cmd_allowed)

    pa_ = common(sub.add_parser("path", help="the decision path of one event"))
    pa_.add_argument("--event-id", required=True)
    pa_.set_defaults(func=cmd_path)

    gr = common(sub.add_parser("graph", help="the decision graph of an identity"), json_flag=False)
    gr.add_argument("--identity", required=True)
    gr.add_argument("--since")
    gr.add_argument("--until")
    gr.add_argument("--format", choices=["json", "graphml", "dot"], default="json")
    gr.set_defaults(func=cmd_graph)

    inv = common(sub.add_parser("inventory", help="every identity, its credentials, scopes granted vs used"))
    inv.set_defaults(func=cmd_inventory)

    ev = common(sub.add_parser("evaluate", help="precision / recall of the detections against ground truth"))
    ev.add_argument("--labels", help="labels.jsonl from `decisionpath generate`")
    ev.add_argument("--triage", action="store_true", help="evaluate against analysts' triage marks instead")
    ev.set_defaults(func=cmd_evaluate)

    tr = common(sub.add_parser("triage", help="mark an alert true or false positive"))
    tr.add_argument("alert_id")
    tr.add_argument("verdict", choices=["true_positive", "false_positive", "benign", "open"])
    tr.add_argument("--note", default="")
    tr.add_argument("--by", default=os.environ.get("USER", "analyst"))
    tr.set_defaults(func=cmd_triage)

    db = common(sub.add_parser("dashboard", help="serve the Streamlit dashboard over the lake"), json_flag=False)
    db.add_argument("--port", type=int, default=8501)
    db.add_argument("--address", default="127.0.0.1")
    db.add_argument("--allow-unauthenticated-public", action="store_true",
                    help="bind a non-loopback address without authentication configured (not recommended)")
    db.set_defaults(func=cmd_dashboard)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DecisionPathError as e:
        print(f"decisionpath: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, ConfigError) else EXIT_ERROR
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(("analytics.", "dashboards.", "sample_data.")):
            print(f"decisionpath: `{args.command}` is not available in this build yet ({e.name} missing)",
                  file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print("decisionpath: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`decisionpath inventory | head`): stop quietly, as other command-line tools do.
        # Python would otherwise fail again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
