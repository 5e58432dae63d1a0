"""The measurements of one scale, in order: generator, file ingest, lake layout, Kafka, detect, queries."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.runner import Outcome, Runner, WorkerFailed
from benchmarks.stats import scale_label, summary

GROUPS = ("gen", "file", "layout", "kafka", "detect", "query")
BASELINE_DETECTIONS = ("DP-TR-1", "DP-TR-2", "DP-PC-3")
TARGETS = (
    # figure id, comparison, threshold, what it means
    ("kafka.ratio_vs_ceiling", ">=", 0.9, "Kafka → lake at ≥ 0.9× the bare kafka-python + DuckDB ceiling"),
    ("kafka.ratio_2procs", ">=", 1.7, "2 collector processes ≥ 1.7× one"),
)


@dataclass
class Figures:
    """Every figure of a run: id → label, unit, raw values (one per repeat) and extras."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, fid: str, label: str, unit: str, value: float, better: str = "higher", **extra: Any) -> None:
        f = self.items.setdefault(fid, {"label": label, "unit": unit, "better": better, "values": []})
        f["values"].append(float(value))
        for k, v in extra.items():
            f.setdefault(k, v)

    def finish(self) -> dict[str, dict[str, Any]]:
        for f in self.items.values():
            f.update(summary(f["values"]))
        return self.items


@dataclass
class Scale:
    """Paths of one (seed, scale): cached data and lake, scratch space."""

    out: Path
    seed: int
    scale: int

    @property
    def label(self) -> str:
        return scale_label(self.scale)

    @property
    def cache(self) -> Path:
        return self.out / f"cache-seed{self.seed}-{self.label}"

    @property
    def data(self) -> Path:
        return self.cache / "data"

    @property
    def lake(self) -> Path:
        return self.cache / "lake"

    @property
    def tmp(self) -> Path:
        return self.out / "tmp"

    def scratch(self, name: str) -> Path:
        p = self.tmp / name
        shutil.rmtree(p, ignore_errors=True)
        return p


Step = Callable[[str], None]


def _checkpoint(sc: Scale, figs: Figures, notes: list[str]) -> None:
    """Raw values so far, so a long run that is stopped still leaves what it measured."""
    import json

    (sc.out / f"{sc.label}.partial.json").write_text(json.dumps({"figures": figs.items, "notes": notes}, default=str))


def run_scale(sc: Scale, repeat: int, runner: Runner, groups: tuple[str, ...], step: Step,
              budget_s: float = 120.0, n_queries: int = 200) -> dict[str, Any]:
    """Measure one scale; returns its JSON document (figures, agreement, notes)."""
    figs = Figures()
    notes: list[str] = []
    extra: dict[str, Any] = {}
    sc.tmp.mkdir(parents=True, exist_ok=True)

    # -- generator (the first run fills the cache when it is empty) --------------------------------
    data_ready = (sc.data / "manifest.json").exists()
    if "gen" in groups or not data_ready:
        for r in range(repeat if "gen" in groups else 1):
            step(f"generator run {r + 1}")
            target = sc.data if not data_ready else sc.scratch("gen")
            if not data_ready:
                shutil.rmtree(sc.data, ignore_errors=True)
            o = runner.call("gen", {"out": str(target), "seed": sc.seed, "scale": sc.scale})
            figs.add("gen.events_per_s", "generator", "events/s", o.result["events"] / o.result["seconds"],
                     peak_rss_mb=o.peak_rss_mb)
            extra["manifest"] = {k: o.result["manifest"][k] for k in ("events_expected", "malformed", "files",
                                                                        "incidents", "benign")}
            if data_ready:
                shutil.rmtree(target, ignore_errors=True)
            data_ready = True
    lines = sum(_manifest(sc)["files"].values())
    extra["records"] = lines
    extra["data_bytes"] = sum(p.stat().st_size for p in sc.data.iterdir() if p.suffix == ".jsonl")

    _checkpoint(sc, figs, notes)
    # -- file → lake vs DuckDB read_json → Parquet ---------------------------------------------------
    lake_ready = (sc.lake / ".complete").exists()
    if "file" in groups or not lake_ready:
        for r in range(repeat if "file" in groups else 1):
            step(f"file → lake run {r + 1}")
            lake = sc.lake if not lake_ready else sc.scratch("lake-file")
            if not lake_ready:
                shutil.rmtree(sc.lake, ignore_errors=True)
            o = runner.call("file_ingest", {"data": str(sc.data), "lake": str(lake)})
            figs.add("file.events_per_s", "file → lake (ingest_files)", "records/s",
                     o.result["read"] / o.result["seconds"], peak_rss_mb=o.peak_rss_mb)
            figs.add("file.peak_rss_mb", "file → lake peak RSS", "MiB", o.peak_rss_mb, better="lower")
            figs.add("file.cpu_us_per_record", "file → lake CPU per record (whole process and its parsing workers)",
                     "µs", o.cpu_s / o.result["read"] * 1e6, better="lower")
            if o.result["events"] + o.result["dead_letter"] + o.result["duplicates"] != o.result["read"]:
                notes.append(f"file ingest accounted {o.result}: events + dead_letter + duplicates != read")
            if not lake_ready:
                (sc.lake / ".complete").write_text("ingested\n")
                lake_ready = True
            else:
                shutil.rmtree(lake, ignore_errors=True)
            if "file" in groups:
                step(f"DuckDB read_json ceiling run {r + 1}")
                out = sc.scratch("ceiling")
                c = runner.call("duckdb_ceiling", {"data": str(sc.data), "out": str(out)})
                figs.add("file.ceiling_events_per_s", "ceiling: DuckDB read_json → Parquet", "records/s",
                         lines / c.result["seconds"], peak_rss_mb=c.peak_rss_mb)
                figs.add("file.ceiling_cpu_us_per_record", "ceiling CPU per record (whole process)", "µs",
                         c.cpu_s / lines * 1e6, better="lower")
                shutil.rmtree(out, ignore_errors=True)

    _checkpoint(sc, figs, notes)
    # -- layout: compaction, then row groups a per-identity query reads -------------------------------
    from ingest.lake import COMPACT_LAYOUT

    marker = sc.lake / ".compacted"  # a cached lake compacted under another layout is compacted again
    if not marker.exists() or COMPACT_LAYOUT not in marker.read_text():
        step("compacting the lake")
        o = runner.call("compact", {"lake": str(sc.lake)})
        if marker.exists():  # the time to rewrite compacted days is not the figure: leave it out
            notes.append(f"the cached lake was compacted again for the current layout ({COMPACT_LAYOUT}); "
                         "Lake.compact() time not measured in this run")
        else:
            figs.add("layout.compact_s", "Lake.compact()", "s", o.result["seconds"], better="lower",
                     peak_rss_mb=o.peak_rss_mb, files_before=o.result["files_before"],
                     files_after=o.result["files_after"])
        marker.write_text(f"compacted: {COMPACT_LAYOUT}\n")
    if "layout" in groups:
        try:
            step("row groups of a per-identity query")
            o = runner.call("rowgroups", {"lake": str(sc.lake)})
            for who in ("busiest", "median"):
                x = o.result[who]
                figs.add(f"layout.{who}_row_groups_scanned", f"row groups read, {who} identity ({x['events']:,} events)",
                         "row groups", x["row_groups_scanned"], better="lower", total=x["row_groups_total"],
                         identity=x["identity"])
                figs.add(f"layout.{who}_row_groups_total", f"row groups in the files, {who} identity query",
                         "row groups", x["row_groups_total"], better="lower")
                figs.add(f"layout.{who}_query_s", f"per-identity query, {who} identity", "s", x["seconds"], better="lower")
        except WorkerFailed as e:  # one broken group must not lose the others
            notes.append(f"layout: {e}")

    _checkpoint(sc, figs, notes)
    # -- Kafka → lake vs bare consumer; 2 collector processes -----------------------------------------
    if "kafka" in groups:
        try:
            _kafka(sc, repeat, runner, figs, notes, step, lines)
        except WorkerFailed as e:  # one broken group must not lose the others
            notes.append(f"kafka: {e}")

    _checkpoint(sc, figs, notes)
    # -- detect: catalog, per detection, pandas and DuckDB baselines ----------------------------------
    agreement: dict[str, Any] = {}
    if "detect" in groups:
        try:
            agreement = _detect(sc, repeat, runner, figs, step)
        except WorkerFailed as e:  # one broken group must not lose the others
            notes.append(f"detect: {e}")

    _checkpoint(sc, figs, notes)
    # -- point-in-time queries, paths, graph -----------------------------------------------------------
    if "query" in groups:
        try:
            for r in range(repeat):
                step(f"allowed / path / graph run {r + 1}")
                o = runner.call("queries", {"lake": str(sc.lake), "n": n_queries, "seed": sc.seed,
                                            "budget_s": budget_s})
                for q in ("allowed", "path"):
                    x = o.result[q]
                    if "error" in x:
                        if r == 0:
                            notes.append(x["error"])
                        continue
                    if (x["n"] < n_queries or x.get("censored")) and r == 0:
                        notes.append(f"`{q}`: {x['n']} of {n_queries} queries ran within the {budget_s:.0f} s budget"
                                     + (" (the last interrupted at the budget: its time is a lower bound)"
                                        if x.get("censored") else ""))
                    figs.add(f"query.{q}_p50_ms", f"`{q}` latency p50 ({x['n']} of {n_queries} random queries)", "ms", x["p50"] * 1e3,
                             better="lower")
                    figs.add(f"query.{q}_p95_ms", f"`{q}` latency p95 ({x['n']} of {n_queries} random queries)", "ms", x["p95"] * 1e3,
                             better="lower")
                g = o.result["graph"]
                if "error" in g:
                    if r == 0:
                        notes.append(g["error"])
                else:
                    if g.get("censored") and r == 0:
                        notes.append(f"identity graph: interrupted at the {budget_s:.0f} s budget (a lower bound)")
                    figs.add("query.graph_build_s", f"identity graph, busiest identity ({g['events']:,} events, "
                             f"{g['nodes']} nodes, {g['edges']} edges)", "s", g["seconds"], better="lower",
                             identity=g["identity"])
                figs.add("query.peak_rss_mb", "queries process peak RSS", "MiB", o.peak_rss_mb, better="lower")
        except WorkerFailed as e:  # one broken group must not lose the others
            notes.append(f"query: {e}")

    _checkpoint(sc, figs, notes)
    items = figs.finish()
    ratios = _ratios(items)
    shutil.rmtree(sc.tmp, ignore_errors=True)
    return {"scale": sc.scale, "label": sc.label, "seed": sc.seed, "repeat": repeat, "groups": list(groups),
            "dataset": extra, "figures": items, "ratios": ratios, "targets": _targets(ratios),
            "agreement": agreement, "notes": notes}


def _manifest(sc: Scale) -> dict[str, Any]:
    import json

    return json.loads((sc.data / "manifest.json").read_text())


def _kafka(sc: Scale, repeat: int, runner: Runner, figs: Figures, notes: list[str], step: Step, lines: int) -> None:
    from ingest.broker import EmbeddedBroker, create_topics

    for r in range(repeat):
        step(f"Kafka run {r + 1}: broker, produce")
        log = sc.tmp / f"broker-{r}.log"
        with EmbeddedBroker(log_path=log) as b:
            create_topics(b.bootstrap, ["bench"], partitions=2)
            o = runner.call("kafka_produce", {"data": str(sc.data), "bootstrap": b.bootstrap, "topic": "bench"})
            n = o.result["records"]
            figs.add("kafka.produce_events_per_s", "produce (kafka-python, replay of the files)", "records/s",
                     n / o.result["seconds"])

            step(f"Kafka run {r + 1}: bare consumer ceiling")
            o = runner.call("kafka_bare", {"bootstrap": b.bootstrap, "topic": "bench", "group": f"bare-{r}",
                                           "out": str(sc.scratch("bare"))})
            figs.add("kafka.ceiling_events_per_s", "ceiling: kafka-python + DuckDB read_json → Parquet", "records/s",
                     o.result["records"] / (o.result["t_end"] - o.result["t0"]), peak_rss_mb=o.peak_rss_mb)
            figs.add("kafka.ceiling_cpu_us_per_record", "ceiling CPU per record (whole process; broker not counted)",
                     "µs", o.cpu_s / o.result["records"] * 1e6, better="lower")
            # Steady state: from the first record (the ceiling joins no group) or the group assignment (a collector
            # waits for the broker's first JoinGroup: Tansu holds it for half the session timeout, ~5 s) to the end.
            if o.result.get("t_first"):
                figs.add("kafka.ceiling_steady_events_per_s", "ceiling, steady state (from the first record)",
                         "records/s", o.result["records"] / (o.result["t_end"] - o.result["t_first"]))

            # One collector with one parsing process (the figure the targets and the 2-collector ratio use), then
            # the same with a pool of 2 (`ingest kafka --workers 2`: it fetches and commits while they parse).
            for workers, sfx, what in ((1, "", "1 collector"), (2, "_w2", "1 collector with 2 parsing workers")):
                step(f"Kafka run {r + 1}: {what}")
                lake = sc.scratch(f"lake-k1{sfx}")
                o = runner.call("kafka_collect", {"bootstrap": b.bootstrap, "topic": "bench",
                                                  "group": f"c1{sfx}-{r}", "lake": str(lake), "workers": workers})
                _check_landed(o.result["read"], n, what, notes)
                figs.add(f"kafka.events_per_s{sfx}", f"Kafka → lake, {what}", "records/s",
                         o.result["read"] / (o.result["t_end"] - o.result["t0"]), peak_rss_mb=o.peak_rss_mb)
                figs.add(f"kafka.steady_events_per_s{sfx}", f"Kafka → lake, {what}, steady state (from its assignment)",
                         "records/s", o.result["read"] / (o.result["t_end"] - o.result["t_assigned"]))
                figs.add(f"kafka.cpu_us_per_record{sfx}", f"Kafka → lake CPU per record, {what} (process and workers)",
                         "µs", o.cpu_s / o.result["read"] * 1e6, better="lower")
                if workers == 1:
                    figs.add("kafka.peak_rss_mb", "Kafka → lake peak RSS, 1 collector", "MiB", o.peak_rss_mb,
                             better="lower")
                    figs.add("kafka.group_join_s", "Kafka → lake, 1 collector: start to group assignment", "s",
                             o.result["t_assigned"] - o.result["t0"], better="lower")
                shutil.rmtree(lake, ignore_errors=True)

            step(f"Kafka run {r + 1}: 2 collectors, one group")
            lake2 = sc.scratch("lake-k2")
            hs = [runner.spawn("kafka_collect", {"bootstrap": b.bootstrap, "topic": "bench", "group": f"c2-{r}",
                                                 # one parsing process each: two collectors on
                                                 # the machine's cores, against one with a pool
                                                 "lake": str(lake2), "until_idle_s": 6.0, "workers": 1})
                  for _ in range(2)]
            outs: list[Outcome] = [runner.wait(h) for h in hs]
            read = sum(x.result["read"] for x in outs)
            _check_landed(read, n, "2 collectors", notes)
            span = max(x.result["t_end"] for x in outs) - min(x.result["t0"] for x in outs)
            figs.add("kafka.events_per_s_2procs", "Kafka → lake, 2 collector processes, one group", "records/s",
                     read / span, split=[x.result["read"] for x in outs])
            steady = max(x.result["t_end"] for x in outs) - min(x.result["t_assigned"] for x in outs)
            figs.add("kafka.steady_events_per_s_2procs", "Kafka → lake, 2 collector processes, steady state "
                     "(from the first assignment)", "records/s", read / steady)
            shutil.rmtree(lake2, ignore_errors=True)


def _check_landed(read: int, produced: int, what: str, notes: list[str]) -> None:
    if read != produced:
        notes.append(f"{what}: read {read:,} records of {produced:,} produced")


def _uncached(lake: Path) -> None:
    """Remove the detect runs' caches (``analytics.shared_cache``): each timed run computes them, as the first run
    over a new snapshot does; ``detect.catalog_cached_s`` is the run that reads them."""
    from analytics.lake import MART_CACHE
    from analytics.shared_cache import ROOT

    shutil.rmtree(lake / MART_CACHE / ROOT, ignore_errors=True)


def _detect(sc: Scale, repeat: int, runner: Runner, figs: Figures, step: Step) -> dict[str, Any]:
    product: dict[str, set[tuple[str, ...]]] = {}
    base: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for r in range(repeat):
        step(f"detect run {r + 1}: whole catalog")
        _uncached(sc.lake)
        o = runner.call("detect", {"lake": str(sc.lake)})
        ids = sorted(o.result["findings"])
        figs.add("detect.catalog_s", f"detect, whole catalog ({len(ids)} detections)", "s", o.result["seconds"],
                 better="lower", detections=ids)
        figs.add("detect.catalog_peak_rss_mb", "detect, whole catalog, peak RSS", "MiB", o.peak_rss_mb, better="lower")
        step(f"detect run {r + 1}: whole catalog again, over the same snapshot")
        o = runner.call("detect", {"lake": str(sc.lake)})
        figs.add("detect.catalog_cached_s", "detect, whole catalog, again over the same snapshot (issuance, revocations cached)",
                 "s", o.result["seconds"], better="lower")
        step(f"detect run {r + 1}: decisionpath detect --full (alerts and paths written)")
        _uncached(sc.lake)
        o = runner.call("detect_full", {"lake": str(sc.lake)})
        figs.add("detect.full_run_s", f"`detect --full` run, alerts with decision paths ({o.result['new_alerts']} alerts)",
                 "s", o.result["seconds"], better="lower")
        figs.add("detect.full_run_peak_rss_mb", "`detect --full` run, peak RSS", "MiB", o.peak_rss_mb, better="lower")
        for did in ids:
            step(f"detect run {r + 1}: {did}")
            _uncached(sc.lake)
            o = runner.call("detect", {"lake": str(sc.lake), "rules": [did]})
            figs.add(f"detect.{did}.product_s", f"{did} (product)", "s", o.result["seconds"], better="lower",
                     findings=len(o.result["findings"].get(did, [])))
            figs.add(f"detect.{did}.product_peak_rss_mb", f"{did} (product) peak RSS", "MiB", o.peak_rss_mb,
                     better="lower")
            if r == 0:
                product[did] = {tuple(x) for x in o.result["findings"].get(did, [])}
        for did in BASELINE_DETECTIONS:
            for impl in ("pandas", "duckdb"):
                step(f"detect run {r + 1}: {did} {impl} baseline")
                o = runner.call("baseline_detect", {"lake": str(sc.lake), "detection": did, "impl": impl})
                figs.add(f"detect.{did}.{impl}_s", f"{did} ({impl} baseline)", "s", o.result["seconds"],
                         better="lower", findings=len(o.result["findings"]))
                figs.add(f"detect.{did}.{impl}_peak_rss_mb", f"{did} ({impl} baseline) peak RSS", "MiB",
                         o.peak_rss_mb, better="lower")
                if r == 0:
                    base[(did, impl)] = {tuple(x) for x in o.result["findings"]}
    agreement: dict[str, Any] = {}
    for (did, impl), keys in sorted(base.items()):
        prod = product.get(did)
        if prod is None:
            agreement[f"{did}/{impl}"] = {"agree": False, "reason": f"the product has no detector {did}",
                                          "baseline": len(keys)}
            continue
        only_b, only_p = sorted(keys - prod), sorted(prod - keys)
        agreement[f"{did}/{impl}"] = {"agree": not only_b and not only_p, "product": len(prod),
                                      "baseline": len(keys), "only_baseline": only_b[:5], "only_product": only_p[:5]}
    return agreement


def _ratios(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def med(k: str) -> float | None:
        return items[k]["median"] if k in items else None

    out: dict[str, dict[str, Any]] = {}

    def ratio(rid: str, label: str, num: str, den: str) -> None:
        a, b = med(num), med(den)
        if a is not None and b:
            out[rid] = {"label": label, "value": a / b, "of": [num, den]}

    ratio("file.ratio_vs_ceiling", "file → lake / DuckDB read_json ceiling", "file.events_per_s",
          "file.ceiling_events_per_s")
    ratio("kafka.ratio_vs_ceiling", "Kafka → lake (1 collector) / bare consumer ceiling", "kafka.events_per_s",
          "kafka.ceiling_events_per_s")
    ratio("kafka.ratio_2procs", "2 collector processes / 1", "kafka.events_per_s_2procs", "kafka.events_per_s")
    ratio("kafka.steady_ratio_vs_ceiling", "Kafka → lake (1 collector) / bare ceiling, both in steady state",
          "kafka.steady_events_per_s", "kafka.ceiling_steady_events_per_s")
    ratio("kafka.steady_ratio_2procs", "2 collector processes / 1, both in steady state",
          "kafka.steady_events_per_s_2procs", "kafka.steady_events_per_s")
    ratio("kafka.ratio_w2_vs_ceiling", "Kafka → lake (1 collector, 2 parsing workers) / bare consumer ceiling",
          "kafka.events_per_s_w2", "kafka.ceiling_events_per_s")
    ratio("kafka.steady_ratio_w2_vs_ceiling", "Kafka → lake (1 collector, 2 parsing workers) / bare ceiling, "
          "both in steady state", "kafka.steady_events_per_s_w2", "kafka.ceiling_steady_events_per_s")
    for did in BASELINE_DETECTIONS:
        for impl in ("pandas", "duckdb"):
            ratio(f"detect.{did}.speedup_vs_{impl}", f"{did}: {impl} baseline time / product time",
                  f"detect.{did}.{impl}_s", f"detect.{did}.product_s")
    return out


def _targets(ratios: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rid, op, thr, what in TARGETS:
        v = ratios.get(rid, {}).get("value")
        out.append({"ratio": rid, "target": f"{op} {thr}", "what": what, "value": v,
                    "met": None if v is None else (v >= thr if op == ">=" else v <= thr)})
    return out
