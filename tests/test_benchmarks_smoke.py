"""Smoke test of the benchmark suite at 10k: every figure present and positive, baselines agree.

No timing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FIGURES = (
    "gen.events_per_s",
    "file.events_per_s", "file.ceiling_events_per_s", "file.peak_rss_mb", "file.cpu_us_per_record",
    "file.ceiling_cpu_us_per_record", "kafka.ceiling_cpu_us_per_record", "kafka.cpu_us_per_record",
    "kafka.cpu_us_per_record_w2",
    "layout.busiest_row_groups_scanned", "layout.busiest_row_groups_total",
    "layout.median_row_groups_scanned", "layout.median_row_groups_total",
    "kafka.produce_events_per_s", "kafka.ceiling_events_per_s", "kafka.events_per_s", "kafka.events_per_s_2procs",
    "kafka.peak_rss_mb", "kafka.steady_events_per_s", "kafka.ceiling_steady_events_per_s",
    "kafka.steady_events_per_s_2procs", "kafka.group_join_s", "kafka.events_per_s_w2", "kafka.steady_events_per_s_w2",
    "detect.catalog_s", "detect.catalog_cached_s", "detect.catalog_peak_rss_mb", "detect.full_run_s",
    "query.allowed_p50_ms", "query.allowed_p95_ms", "query.path_p50_ms", "query.path_p95_ms",
    "query.graph_build_s",
)
RATIOS = ("file.ratio_vs_ceiling", "kafka.ratio_vs_ceiling", "kafka.ratio_2procs", "kafka.steady_ratio_vs_ceiling",
          "kafka.steady_ratio_2procs", "kafka.ratio_w2_vs_ceiling", "kafka.steady_ratio_w2_vs_ceiling")
BASELINED = ("DP-TR-1", "DP-TR-2", "DP-PC-3")


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.kafka
def test_benchmark_suite_at_10k(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--scale", "10k", "--repeat", "1", "--query-budget", "20",
         "--out", str(tmp_path / "bench"), "--json", str(out)],
        cwd=REPO, check=True, timeout=1500,
    )
    whole = json.loads(out.read_text())
    assert whole["machine"]["cores"] and whole["machine"]["packages"]["duckdb"]
    doc = whole["runs"]["10k"]
    figs = doc["figures"]
    missing = [f for f in FIGURES if f not in figs]
    assert not missing, f"figures missing: {missing}; notes: {doc['notes']}"
    for did in BASELINED:
        for kind in ("product_s", "pandas_s", "duckdb_s", "product_peak_rss_mb", "pandas_peak_rss_mb",
                     "duckdb_peak_rss_mb"):
            assert f"detect.{did}.{kind}" in figs
    for fid, f in figs.items():
        if fid.endswith("row_groups_scanned"):
            assert 0 < f["median"] <= figs[fid.replace("scanned", "total")]["median"], fid
        else:
            assert f["median"] > 0 and f["min"] > 0, fid
    for rid in RATIOS:
        assert doc["ratios"][rid]["value"] > 0, rid
    disagree = {k: a for k, a in doc["agreement"].items() if not a["agree"]}
    assert set(doc["agreement"]) == {f"{d}/{i}" for d in BASELINED for i in ("pandas", "duckdb")}
    assert not disagree, disagree
    assert (tmp_path / "bench" / "10k.md").is_file() and (tmp_path / "bench" / "10k.json").is_file()


def test_detect_catalog_script_times_every_detection(scenario, tmp_path: Path, capsys) -> None:
    from analytics.detectors import REGISTRY
    from benchmarks.detect_catalog import main
    from ingest.collect_files import ingest_files
    from ingest.lake import Lake

    ingest_files([scenario], Lake(tmp_path / "lake"))
    assert main(["--lake", str(tmp_path / "lake"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["per_detection"]) == [m.DETECTION.id for m in REGISTRY]
    assert res["findings"] == sum(v["findings"] for v in res["per_detection"].values()) > 0
    assert res["peak_rss_mib"] > 0 and res["total_seconds"] >= max(v["seconds"] for v in res["per_detection"].values())
    assert 0 < res["shared_seconds"] <= res["total_seconds"]  # the issuance table, computed first
    # --window: what a scheduled run covers; the findings are those whose key events lie in the last hour
    assert main(["--lake", str(tmp_path / "lake"), "--window", "1h", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert short["window_seconds"] == 3600 and 0 < short["findings"] < res["findings"]
    # one scheduled step later (benchmarks.increment): the step carries the issuance cache or keeps it in memory,
    # with the same findings either way
    from benchmarks.increment import make

    step = make(tmp_path / "lake", tmp_path / "next", hours=1)
    assert step["appended_rows"] > 0 and step["version"] == step["cached_version"] + 1
    runs = []
    for how in ("cache", "memory", "cache"):
        assert main(["--lake", str(tmp_path / "next"), "--window", "1h", "--issuance", how, "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert [r["issuance"] for r in runs] == ["cache", "memory", "cache"]
    import analytics.lake

    assert analytics.lake._CARRIED  # a memory run leaves the process's cache on for what runs next
    assert len({r["findings"] for r in runs}) == 1 and runs[0]["findings"] > 0
    # the same step with its days compacted: the caches carried through the compaction, the same findings
    from analytics import shared_cache
    from analytics.lake import connect

    step = make(tmp_path / "lake", tmp_path / "compacted", hours=1, compact=True)
    assert step["compacted_days"] >= 1 and step["version"] > step["cached_version"] + 1
    assert shared_cache.attach(connect(tmp_path / "compacted")) == "carried"
    assert main(["--lake", str(tmp_path / "compacted"), "--window", "1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == runs[0]["findings"]
    # --state: the whole scheduled `detect` step, alerts and watermarks of the previous run carried over
    from analytics.detect import DetectSettings, run

    with pytest.raises(SystemExit, match="no detect state"):
        make(tmp_path / "lake", tmp_path / "stateless", hours=1, state=True)
    before = {a.alert_id for a in run(DetectSettings(lake_dir=tmp_path / "lake")).new_alerts}
    step = make(tmp_path / "lake", tmp_path / "stepped", hours=1, state=True)
    assert step["state"] == ["alerts", "detect_state"]
    after = run(DetectSettings(lake_dir=tmp_path / "stepped")).new_alerts
    assert before and after and not {a.alert_id for a in after} & before  # only the step's, none raised again
    assert all(a.evidence["decision_path"]["event_id"] == a.key_event_id for a in after)


def test_reference_detections_script_compares_the_three(scenario, tmp_path: Path, capsys) -> None:
    from benchmarks.reference_detections import REFERENCE, main
    from ingest.collect_files import ingest_files
    from ingest.lake import Lake

    ingest_files([scenario], Lake(tmp_path / "lake"))
    assert main(["--lake", str(tmp_path / "lake"), "--repeat", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["detections"]
    assert set(res) == set(REFERENCE) == set(BASELINED)
    for did, r in res.items():
        n = r["findings"]
        assert n["product"] == n["pandas"] == n["duckdb"] > 0, (did, n)  # the three agree before being compared
        assert min(r["seconds"].values()) > 0 and r["pandas_over_product"] > 0 and r["product_over_duckdb"] > 0


def test_same_answers_dumps_findings_and_answers_stably(scenario, tmp_path: Path) -> None:
    """Two dumps of one lake are identical (what `cmp` between two trees relies on), and hold every finding."""
    from analytics.detect import connect, detect_findings
    from benchmarks.same_answers import main
    from ingest.collect_files import ingest_files
    from ingest.lake import Lake

    lake = tmp_path / "lake"
    ingest_files([scenario], Lake(lake))
    for what in ("findings", "answers"):
        a, b = tmp_path / f"{what}-a.txt", tmp_path / f"{what}-b.txt"
        assert main([what, "--lake", str(lake), "--out", str(a), "-n", "5"]) == 0
        assert main([what, "--lake", str(lake), "--out", str(b), "-n", "5"]) == 0
        assert a.read_bytes() == b.read_bytes()
    lines = (tmp_path / "findings-a.txt").read_text().splitlines()
    assert len(lines) == len(detect_findings(connect(lake))) > 0
    assert len((tmp_path / "answers-a.txt").read_text().splitlines()) == 10  # allowed_at + decision_path each


def test_codec_scan_times_each_codec(scenario, tmp_path: Path, capsys) -> None:
    from benchmarks.codec_scan import CODECS, SCANS, main
    from ingest.collect_files import ingest_files
    from ingest.lake import Lake

    ingest_files([scenario], Lake(tmp_path / "lake"))
    assert main(["--lake", str(tmp_path / "lake"), "--out", str(tmp_path / "c"), "--repeat", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["codecs"]
    assert list(res) == list(CODECS)
    for r in res.values():
        assert r["bytes"] > 0 and list(r["seconds"]) == list(SCANS)
    assert res["uncompressed"]["bytes"] > res["zstd"]["bytes"]


def test_run_tables_compares_compacted_and_not(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from analytics import alerts as al
    from benchmarks.run_tables import main

    monkeypatch.setattr(al, "SMALL_FILES_MAX", 3)
    assert main(["--runs", "6", "--at", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [p["runs"] for p in res["at"]] == [2, 6] and res["small_files_max"] == 3
    last = res["at"][-1]
    assert last["baseline"]["files"] == 6 and last["tidied"]["files"] <= 4
    assert al.SMALL_FILES_MAX == 3  # restored after the run
