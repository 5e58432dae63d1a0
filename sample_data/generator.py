"""Seeded, deterministic scenario generator: native logs of six systems, labelled incidents, point-in-time truth.

``generate(out_dir, seed, scale)`` writes ``idp.jsonl``, ``spire.jsonl``, ``opa.jsonl``, ``mcp.jsonl``,
``cloudtrail.jsonl``, ``vault.jsonl`` (docs/formats.md), ``labels.jsonl``, ``truth.jsonl`` and
``manifest.json``. Simulated time is cut into day shards (each with its own seeded RNG), so shards can
run in parallel and the output is byte-identical for a seed and scale whatever the worker count.
See docs/scenario.md for the organisation, the background invariants and every incident's shape.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from sample_data import org
from sample_data.emit import BASE, DAY, FILES, MCP, MIN, OPA, SPIRE, H, iso_ms
from sample_data.incidents import BUILDERS, KINDS, ROTATION_AGE_DAYS, Incident, rotation_path
from sample_data.scale import scale_arg
from sample_data.sim import Sim

GENERATOR_VERSION = "1"
EVENTS_PER_HOUR = 2000
EVENTS_PER_INCIDENT_KIND = 20_000
SHARD_HOURS = 24
INCIDENT_MARGIN_START = 5 * MIN
INCIDENT_MARGIN_END = 35 * MIN  # an incident spans at most ~20 min
TASK_MARGIN_END = 20 * MIN


def default_malformed(scale: int) -> int:
    """A handful, scaled: 5 at the default scale, 0.2 % of events at large scales."""
    return max(5, scale // 500)


@dataclass(frozen=True)
class Manifest:
    """What a run wrote; also ``manifest.json``. ``files`` counts lines (records + malformed) per file."""

    seed: int
    scale: int
    start: str
    end: str
    shards: int
    files: dict[str, int]
    malformed: int
    malformed_by_file: dict[str, int]
    events_expected: int
    incidents: int
    benign: int
    detections: dict[str, dict[str, int]]
    truth: int
    seconds: float
    generator_version: str = GENERATOR_VERSION
    notes: tuple[str, ...] = field(default=(
        "events_expected = one canonical event per well-formed line (vault request and response records each "
        "count); every malformed line becomes exactly one dead-letter row",
    ))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class ShardSpec:
    seed: int
    index: int
    start: int
    end: int
    budget: int
    malformed: int
    incidents: tuple[Incident, ...]
    rotations: tuple[tuple[int, str, str], ...]  # (time, path, request id) written by this shard
    parts: str  # directory for this shard's part files


@dataclass
class ShardResult:
    index: int
    lines: list[int]
    malformed: list[int]
    labels: list[dict[str, Any]]
    truth: list[dict[str, Any]]


# -- planning --------------------------------------------------------------------------------
def _windows(scale: int) -> list[tuple[int, int]]:
    hours = max(2, math.ceil(scale / EVENTS_PER_HOUR))
    n = math.ceil(hours / SHARD_HOURS)
    out = []
    for i in range(n):
        h = SHARD_HOURS if i < n - 1 else max(2, hours - SHARD_HOURS * (n - 1))
        s = BASE + i * DAY
        out.append((s, s + h * H))
    return out


def _rid(seed: int, incident_id: str) -> str:
    h = hashlib.sha256(f"{seed}:{incident_id}:rotation".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def plan(seed: int, scale: int) -> tuple[list[tuple[int, int]], list[Incident]]:
    """Shard windows and every incident's time, deterministic in (seed, scale)."""
    import random

    rng = random.Random(f"decisionpath-plan:{seed}:{scale}")
    windows = _windows(scale)
    n_each = max(1, round(scale / EVENTS_PER_INCIDENT_KIND))
    todo = [(kind, k) for k in range(n_each) for kind in KINDS]
    rng.shuffle(todo)
    usable = [(s + INCIDENT_MARGIN_START, e - INCIDENT_MARGIN_END) for s, e in windows]
    total = sum(e - s for s, e in usable)
    incidents: list[Incident] = []
    for j, (kind, k) in enumerate(todo):
        off = int((j + 0.5) * total / len(todo))
        for s, e in usable:
            if off < e - s:
                t = s + off
                break
            off -= e - s
        det, benign = KINDS[kind]
        iid = f"{det.lower()}-{'benign' if benign else 'pos'}-{kind.removeprefix('benign_').replace('_', '-')}-{k:02d}"
        rid = path = None
        if kind in ROTATION_AGE_DAYS:
            rid, path = _rid(seed, iid), rotation_path(kind, k)
        incidents.append(Incident(iid, kind, det, benign, k, t, rid, path))
    incidents.sort(key=lambda i: i.t)
    return windows, incidents


def _rotation_time(inc: Incident) -> int:
    """The CR-2 shapes' last rotation: 120 + 7k days (stale) or 80 - k mod 10 days (benign) before the read."""
    extra = 7 * inc.k if not inc.benign else -(inc.k % 10)
    return inc.t + 2 * 1000 - (ROTATION_AGE_DAYS[inc.kind] + extra) * DAY


# -- one shard -------------------------------------------------------------------------------
_MALFORMED_OTHER = (b'"audit sink timeout: record dropped"', b'{"level":"info","msg":"audit sink reconnected"}',
                    b"<14>Nov  2 08:00:00 gateway audit: connection reset")
_TIME_KEY = {0: "time", 1: "time", 2: "timestamp", 3: "timestamp"}


def _malformed_line(sim: Sim, f: int, n: int) -> bytes:
    kind = n % 4
    lines = sim.out[f]
    if kind == 0 and lines:
        raw = lines[sim.rng.randrange(len(lines))][1]
        return raw[: max(8, len(raw) // 2)]
    if kind == 1 and lines and f in _TIME_KEY:
        rec = orjson.loads(lines[sim.rng.randrange(len(lines))][1])
        rec[_TIME_KEY[f]] = "not-a-time"
        return orjson.dumps(rec)
    return _MALFORMED_OTHER[n % 3]


def run_shard(spec: ShardSpec) -> ShardResult:
    """Simulate one shard and write its part files."""
    gc_was = gc.isenabled()
    gc.disable()  # millions of small tuples: the cyclic collector would rescan them for nothing
    try:
        return _run_shard(spec)
    finally:
        if gc_was:
            gc.enable()


def _run_shard(spec: ShardSpec) -> ShardResult:
    sim = Sim(spec.seed, spec.index, spec.start, spec.end)
    if spec.index == -1:
        for i, path in enumerate(org.BACKGROUND_SECRETS):
            sim.rotate(BASE - (30 - (i * 4) % 30) * DAY + 2 * H + i * MIN, path)
    else:
        if spec.index == 0:
            sim.unknown_facts()
        sim.svids()
        sim.rotations()
    for t, path, rid in spec.rotations:
        sim.rotate(t, path, rid)
    for inc in spec.incidents:
        BUILDERS[inc.kind](sim, inc.t, inc)
    if spec.index >= 0:
        rng = sim.rng
        last = spec.end - TASK_MARGIN_END
        t = spec.start + rng.randrange(20_000)
        while t < last and sim.n < spec.budget:
            before = sim.n
            sim.background_task(t)
            used = max(1, sim.n - before)
            remaining = max(1, spec.budget - sim.n)
            t += max(200, int((last - t) * used / remaining * rng.uniform(0.4, 1.6)))
    mal = [0] * len(FILES)
    out_lines = []
    for lines in sim.out:
        lines.sort(key=itemgetter(0))
        out_lines.append([b for _, b in lines])
    for n in range(spec.malformed):
        f = sim.rng.choice((SPIRE, OPA, MCP, 0, 4, 5)) if n % 4 != 1 else sim.rng.choice((0, 1, 2, 3))
        line = _malformed_line(sim, f, n)
        out_lines[f].insert(sim.rng.randrange(len(out_lines[f]) + 1), line)
        mal[f] += 1
    parts = Path(spec.parts)
    for f, name in enumerate(FILES):
        if out_lines[f]:
            (parts / f"{name}.{spec.index + 1:06d}").write_bytes(b"\n".join(out_lines[f]) + b"\n")
    return ShardResult(spec.index, [len(x) for x in out_lines], mal, sim.labels, sim.truth)


# -- the run ---------------------------------------------------------------------------------
def generate(out_dir: Path, seed: int = 7, scale: int = 3000, malformed: int | None = None,
             progress: bool = False, workers: int | None = None) -> Manifest:
    """Write a scenario into ``out_dir``; deterministic in (seed, scale, malformed)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = max(1, int(scale))
    n_mal = default_malformed(scale) if malformed is None else max(0, int(malformed))
    windows, incidents = plan(seed, scale)
    hours = [(e - s) / H for s, e in windows]
    total_h = sum(hours)
    parts = out_dir / f".parts-{os.getpid()}"
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir()

    # rotations that CR-2 shapes rely on go to the shard (or the prelude) holding their time
    rot_for: dict[int, list[tuple[int, str, str]]] = {}
    for inc in incidents:
        if inc.rotation_rid and inc.rotation_path:
            rt = _rotation_time(inc)
            shard = -1 if rt < BASE else (rt - BASE) // DAY
            rot_for.setdefault(int(shard), []).append((rt, inc.rotation_path, inc.rotation_rid))
    specs = [ShardSpec(seed, -1, BASE - 400 * DAY, BASE, 0, 0, (), tuple(rot_for.get(-1, ())), str(parts))]
    for i, (s, e) in enumerate(windows):
        budget = round(scale * hours[i] / total_h)
        mal = n_mal // len(windows) + (1 if i < n_mal % len(windows) else 0)
        specs.append(ShardSpec(seed, i, s, e, budget, mal, tuple(x for x in incidents if s <= x.t < e),
                               tuple(rot_for.get(i, ())), str(parts)))

    workers = workers or (min(2, os.cpu_count() or 1) if len(specs) > 3 else 1)
    results: list[ShardResult] = []
    with _bar(progress, len(specs)) as advance:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for r in ex.map(run_shard, specs, chunksize=1):
                    results.append(r)
                    advance(1)
        else:
            for sp in specs:
                results.append(run_shard(sp))
                advance(1)

    results.sort(key=lambda r: r.index)
    files: dict[str, int] = {}
    mal_by: dict[str, int] = {}
    for f, name in enumerate(FILES):
        with open(out_dir / name, "wb") as dst:
            for r in results:
                p = parts / f"{name}.{r.index + 1:06d}"
                if p.exists():
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
        files[name] = sum(r.lines[f] for r in results)
        mal_by[name] = sum(r.malformed[f] for r in results)
    shutil.rmtree(parts, ignore_errors=True)

    labels = sorted((lab for r in results for lab in r.labels), key=itemgetter("incident_id"))
    truth = [x for r in results for x in r.truth]
    (out_dir / "labels.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labels))
    (out_dir / "truth.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in truth))
    dets: dict[str, dict[str, int]] = {}
    for lab in labels:
        d = dets.setdefault(lab["detection"], {"positive": 0, "benign": 0})
        d["benign" if lab["benign"] else "positive"] += 1
    total_mal = sum(mal_by.values())
    m = Manifest(seed=seed, scale=scale, start=iso_ms(windows[0][0]), end=iso_ms(windows[-1][1]),
                 shards=len(windows), files=files, malformed=total_mal, malformed_by_file=mal_by,
                 events_expected=sum(files.values()) - total_mal,
                 incidents=sum(1 for x in labels if not x["benign"]), benign=sum(1 for x in labels if x["benign"]),
                 detections=dict(sorted(dets.items())), truth=len(truth),
                 seconds=round(time.perf_counter() - t0, 3))
    # seconds vary run to run: manifest.json is the one file that is not byte-identical.
    (out_dir / "manifest.json").write_bytes(orjson.dumps(m.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    return m


class _bar:
    """A rich progress bar over shards when asked for, else a no-op."""

    def __init__(self, on: bool, total: int) -> None:
        self.on, self.total = on, total
        self.p: Any = None  # a rich Progress once entered

    def __enter__(self) -> Callable[[int], None]:
        if not self.on:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        p = self.p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), transient=False)
        p.start()
        task = p.add_task("generating shards", total=self.total)
        return lambda n: p.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.p is not None:
            self.p.stop()


def write_sample(dest: Path, seed: int = 7, scale: int = 3000) -> Manifest:
    """The committed sample: the default run, native files gzipped (mtime 0, so reproducible)."""
    import gzip
    import tempfile

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        m = generate(Path(tmp), seed=seed, scale=scale)
        for name in FILES:
            data = (Path(tmp) / name).read_bytes()
            (dest / (name + ".gz")).write_bytes(gzip.compress(data, 9, mtime=0))
        for name in ("labels.jsonl", "truth.jsonl", "manifest.json"):
            shutil.copyfile(Path(tmp) / name, dest / name)
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sample_data.generator", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", type=scale_arg, default=3000, help="about this many events: 3000 (default), 10k, 1m")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args(argv)
    m = generate(Path(a.out), a.seed, a.scale, progress=a.progress, workers=a.workers)
    ev = m.events_expected
    print(f"{ev} events, {m.malformed} malformed, {m.incidents} incidents + {m.benign} benign in {m.seconds:.2f} s "
          f"({ev / max(m.seconds, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
