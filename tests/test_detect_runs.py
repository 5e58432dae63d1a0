"""detect as a run: idempotent, incremental, crash-safe; sinks, suppressions, schedule, triage, correlations."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analytics import alerts as al
from analytics.detect import DetectSettings, run
from analytics.detectors import tr2_after_expiry
from tests.test_detect_detectors import BASE, REPO_EVENTS, write_lake

REPO = Path(__file__).resolve().parent.parent


def _lake(tmp_path: Path) -> Path:
    return write_lake(tmp_path / "lake", REPO_EVENTS)


def _settings(lake: Path, **kw: object) -> DetectSettings:
    return DetectSettings(lake_dir=lake, with_paths=False, **kw)  # type: ignore[arg-type]


def test_rerun_raises_nothing_new(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    first = run(_settings(lake))
    assert {a.detection for a in first.new_alerts} == {"DP-TR-2", "DP-TR-3"}
    again = run(_settings(lake, full=True))
    assert again.new_alerts == () and again.findings == len(first.new_alerts)
    assert al.read_alerts(lake).num_rows == len(first.new_alerts)


def test_alert_ids_are_stable_across_lakes(tmp_path: Path) -> None:
    a = {x.alert_id for x in run(_settings(write_lake(tmp_path / "a", REPO_EVENTS))).new_alerts}
    b = {x.alert_id for x in run(_settings(write_lake(tmp_path / "b", REPO_EVENTS))).new_alerts}
    assert a == b and all(i.startswith("DP-TR-") for i in a)


def test_crash_between_alerts_and_state_does_not_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = _lake(tmp_path)
    real = al.append

    def crash(path: Path, rows: list, schema: object) -> None:
        if path.name == "detect_state":
            raise RuntimeError("killed before the state commit")
        real(path, rows, schema)  # type: ignore[arg-type]

    monkeypatch.setattr(al, "append", crash)
    with pytest.raises(RuntimeError):
        run(_settings(lake))
    monkeypatch.setattr(al, "append", real)
    assert al.table(lake / "detect_state") is None
    n = al.read_alerts(lake).num_rows
    assert n == 2
    assert run(_settings(lake)).new_alerts == ()
    assert al.read_alerts(lake).num_rows == n


def test_run_tables_stay_a_few_files_however_many_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run adds a file to detect_state (and to alerts when it raises some), and every run reads them: past
    SMALL_FILES_MAX files a table is compacted, with the same rows, watermarks and alert ids."""
    from analytics.detect import watermarks

    monkeypatch.setattr(al, "SMALL_FILES_MAX", 3)
    lake = _lake(tmp_path)
    first = run(_settings(lake))
    for _ in range(7):
        assert run(_settings(lake, full=True)).new_alerts == ()
    state = al.table(lake / "detect_state")
    assert state is not None and 1 <= len(state.file_uris()) <= 4
    assert state.to_pyarrow_table().num_rows == 8 * len(first.windows)  # every run's rows, none lost
    assert watermarks(lake) == {d: u for d, (_, u) in first.windows.items()}
    # the alerts table the same way: three more commits of alerts (copies under new ids), then one file
    monkeypatch.setattr(al, "SMALL_FILES_MAX", 2)
    rows = al.read_alerts(lake).to_pylist()
    for i in range(3):
        al.append(lake / "alerts", [{**r, "alert_id": f"{r['alert_id']}-copy{i}"} for r in rows], al.ALERTS_SCHEMA)
    alerts = al.table(lake / "alerts")
    assert alerts is not None and len(alerts.file_uris()) <= 2
    ids = {r["alert_id"] for r in rows} | {f"{r['alert_id']}-copy{i}" for r in rows for i in range(3)}
    assert al.existing_ids(lake, sorted(ids)) == ids and al.read_alerts(lake).num_rows == len(ids)
    assert not al.tidy(lake / "nothing-here")


def test_incremental_windows_and_late_events(tmp_path: Path) -> None:
    benign = [e for e in tr2_after_expiry.EXAMPLES[3].events]  # inside the skew
    benign[1] = {**benign[1], "activity": "decision", "category": "authorization"}
    lake = write_lake(tmp_path / "lake", benign)
    r1 = run(_settings(lake))
    assert r1.new_alerts == ()
    since, until = r1.windows["DP-TR-2"]
    # a late use of the same token arrives, timed just after the covered window: the next run sees it
    late = [{"t": 420, "event_id": "x:late", "activity": "decision", "category": "authorization",
             "credential_id": "jti-2", "actor_id": "agent/c"}]
    write_lake(lake, late)
    r2 = run(_settings(lake))
    assert [a.detection for a in r2.new_alerts] == ["DP-TR-2"]
    s2, u2 = r2.windows["DP-TR-2"]
    assert s2 >= since and u2 > until
    assert run(_settings(lake)).new_alerts == ()


def test_rule_filter_and_unknown_rule(tmp_path: Path) -> None:
    from ingest.errors import ConfigError

    lake = _lake(tmp_path)
    assert {a.detection for a in run(_settings(lake, rules=("DP-TR-3",))).new_alerts} == {"DP-TR-3"}
    with pytest.raises(ConfigError):
        run(_settings(lake, rules=("DP-XX-9",)))


def test_suppression_with_reason(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    (lake / "suppressions.toml").write_text(
        '[[suppress]]\ndetection = "DP-TR-3"\nidentity = "agent/*"\nreason = "replay test harness (CHG-1)"\n')
    res = run(_settings(lake))
    assert {a.detection for a in res.new_alerts} == {"DP-TR-2"}
    assert [r for _, r in res.suppressed] == ["replay test harness (CHG-1)"]
    (lake / "suppressions.toml").write_text('[[suppress]]\ndetection = "DP-TR-3"\n')
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError):
        run(_settings(lake))


def test_cli_json_and_sinks(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "analytics.cli", "detect", "--lake", str(lake), "--json",
           "--sink", f"jsonl:{tmp_path / 'a.jsonl'}", "--sink", f"ocsf:{tmp_path / 'o.jsonl'}"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=REPO).stdout)
    assert out["new_alerts"] == 2 and len(out["alerts"]) == 2
    for a in out["alerts"]:
        assert {"alert_id", "detection", "severity", "identities", "first_seen", "last_seen", "event_ids",
                "explanation"} <= set(a)
        assert "decision_path" in a["evidence"]
    jl = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert {x["alert_id"] for x in jl} == {a["alert_id"] for a in out["alerts"]}
    for f in (json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()):
        assert f["class_uid"] == 2004 and f["category_uid"] == 2 and f["type_uid"] == 200401
        assert f["activity_id"] == 1 and f["severity_id"] in (1, 2, 3, 4, 5) and isinstance(f["time"], int)
        assert f["metadata"]["version"].startswith("1.") and f["metadata"]["product"]["vendor_name"]
        fi = f["finding_info"]
        assert fi["uid"] and fi["title"] and fi["analytic"]["uid"].startswith("DP-")
        assert fi["related_events"] and all("uid" in e for e in fi["related_events"])
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=REPO).stdout)
    assert again == {**again, "new_alerts": 0, "alerts": []}


def test_schedule_loop_stops_on_event() -> None:
    from analytics.schedule import loop

    stop = threading.Event()
    calls: list[float] = []

    def step() -> object:
        calls.append(time.monotonic())
        if len(calls) == 3:
            stop.set()
        return None

    assert loop(step, 0.01, stop) == 3  # type: ignore[arg-type]
    assert loop(step, 0.01, threading.Event(), max_runs=2) == 2  # type: ignore[arg-type]


def test_schedule_sigterm_clean_exit(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "analytics.cli", "schedule", "--every", "1h", "--lake", str(lake),
                          "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while al.table(lake / "detect_state") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert json.loads(out.splitlines()[0])["new_alerts"] == 2
    assert "stopped after 1 run" in err


def test_triage_marks_and_list(tmp_path: Path) -> None:
    from analytics.evaluate import evaluate
    from analytics.triage import list_alerts, mark_alert
    from ingest.errors import ConfigError

    lake = _lake(tmp_path)
    ids = sorted(a.alert_id for a in run(_settings(lake)).new_alerts)
    mark_alert(lake, ids[0], "false_positive", "test", "ann")
    mark_alert(lake, ids[0], "true_positive", "on second look", "bob")  # latest wins
    df = list_alerts(lake)
    assert dict(zip(df["alert_id"], df["verdict"], strict=True)) == {ids[0]: "true_positive", ids[1]: "open"}
    assert list(list_alerts(lake, verdict="open")["alert_id"]) == [ids[1]]
    with pytest.raises(ConfigError):
        mark_alert(lake, "DP-TR-2:nope", "benign")
    res = evaluate(lake, triage=True)
    assert res["overall"] == {"tp": 1, "fp": 0, "open": 1, "precision": 1.0}


def test_correlation_absence_on_relative_timeline(tmp_path: Path) -> None:
    from analytics.correlations import evaluate, load
    from analytics.detect import connect

    def task(n: str, t0: float, revoke_after: float | None) -> list[dict]:
        evs = [{"t": t0, "event_id": f"{n}:iss", "activity": "token.exchanged", "category": "credential",
                "credential_id": f"c-{n}", "task_id": n, "src_ip": "10.0.0.1"},
               {"t": t0 + 10, "event_id": f"{n}:c1", "activity": "tool.invoked", "category": "tool_call",
                "credential_id": f"c-{n}", "task_id": n, "src_ip": "10.0.0.1"},
               {"t": t0 + 40, "event_id": f"{n}:c2", "activity": "tool.invoked", "category": "tool_call",
                "credential_id": f"c-{n}", "task_id": n, "src_ip": "10.0.0.1"}]
        if revoke_after is not None:
            evs.append({"t": t0 + 40 + revoke_after, "event_id": f"{n}:rv", "activity": "token.revoked",
                        "category": "credential", "credential_id": f"c-{n}"})
        return evs

    events = [*task("ok", 0, 5), *task("edge", 100, 600), *task("late", 200, 601), *task("never", 300, None),
              {"t": 7200, "event_id": "tick", "activity": "tool.invoked", "category": "tool_call"}]
    con = connect(write_lake(tmp_path / "lake", events))
    rules = {c.id: c for c in load()}
    got = {f.facts[0][1] for f in evaluate(con, rules["CX-1"])}
    assert got == {"late", "never"}
    # a still-open absence window is not reported yet
    assert evaluate(con, rules["CX-1"], horizon=BASE + dt.timedelta(seconds=400)) == []


def test_correlation_order_and_window(tmp_path: Path) -> None:
    from analytics.correlations import evaluate, load
    from analytics.detect import connect

    def ev(t: float, eid: str, act: str, ip: str, cid: str = "c1") -> dict:
        return {"t": t, "event_id": eid, "activity": act, "category": "tool_call" if act == "tool.invoked"
                else "credential", "credential_id": cid, "src_ip": ip}

    events = [ev(0, "m1", "token.issued", "10.0.0.1"), ev(60, "u1", "tool.invoked", "10.0.0.1"),
              ev(1800, "u2", "tool.invoked", "198.51.100.7"), ev(1801, "u3", "tool.invoked", "198.51.100.8"),
              ev(0, "m2", "token.issued", "10.0.0.1", "c2"), ev(-10, "u4", "tool.invoked", "198.51.100.9", "c2")]
    con = connect(write_lake(tmp_path / "lake", events))
    cx2 = {c.id: c for c in load()}["CX-2"]
    assert {f.key for f in evaluate(con, cx2)} == {("m1", "u2")}


def test_correlation_rejects_unknown_columns() -> None:
    from analytics.correlations import load
    from ingest.errors import ConfigError

    with pytest.raises(ConfigError):
        load('[[correlation]]\nid="X"\ntitle="t"\nkey=["nope"]\n[[correlation.steps]]\nname="a"\n')


def test_kafka_sink(tmp_path: Path, broker: object, topic: str) -> None:
    from kafka import KafkaConsumer

    from analytics.sinks import send

    lake = _lake(tmp_path)
    new = run(_settings(lake)).new_alerts
    send(f"kafka:{broker.bootstrap}/{topic}", new)  # type: ignore[attr-defined]
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",  # type: ignore[attr-defined]
                      consumer_timeout_ms=10_000, group_id=None)
    got = {}
    for msg in c:
        got[msg.key.decode()] = json.loads(msg.value)
        if len(got) == len(new):
            break
    c.close()
    assert set(got) == {a.alert_id for a in new}
    assert all(v["detection"] in ("DP-TR-2", "DP-TR-3") for v in got.values())


def test_docs_cover_the_catalog() -> None:
    from analytics.detectors import BY_ID

    doc = (REPO / "docs" / "detections.md").read_text()
    for d in BY_ID:
        assert f"| {d} |" in doc, f"docs/detections.md does not list {d}"


def test_a_reader_that_goes_away_stops_the_command_quietly(tmp_path: Path) -> None:
    """`decisionpath inventory --lake L | head -1`: no traceback when the pipe closes."""
    lake = _lake(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "analytics.cli", "inventory", "--lake", str(lake)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # before the command writes anything
    err = p.stderr.read().decode()
    assert p.wait(120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
