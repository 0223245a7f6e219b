"""``vvctl monitor`` from the command line: alerts deduplicated across --once runs, exit codes, --watch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.conftest import Invoke
from tests.ops.monitor.fakes import AlertReceiver

PROBLEM = "min_free_space_gb = 1e9\nmin_free_space_critical_gb = 1e9\n"


def setup_box(invoke: Invoke, tmp_path: Path, extra: str = "") -> Path:
    root = tmp_path / "root"
    invoke.config.write_text(f'storage_root = "{root}"\nschedules = {{}}\n{extra}')
    assert invoke("-q", "bootstrap").exit_code == 0
    return root


def everything_written(root: Path) -> str:
    texts = [
        p.read_text(errors="replace")
        for p in root.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".prom")
    ]
    return "\n".join(texts)


def test_ten_runs_with_a_persisting_problem_send_one_alert_and_the_fix_one_resolved(
    invoke: Invoke, tmp_path: Path, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    urls = f'alert_urls = ["{receiver.url()}"]\n'
    root = setup_box(invoke, tmp_path, urls + PROBLEM)
    outputs = []
    for _ in range(10):
        result = invoke("monitor", "--once")
        assert result.exit_code == 9, result.output
        outputs.append(result.output)
    assert len(receiver.received) == 1
    (alert,) = receiver.received
    assert alert["type"] == "failure" and alert["title"].startswith(
        "[vvctl CRITICAL] free space under the storage root"
    )
    assert "threshold: WARN below 1e+09 GB, CRITICAL below 1e+09 GB" in alert["message"]

    invoke.config.write_text(invoke.config.read_text().replace(PROBLEM, ""))  # the fix: sane floors
    for _ in range(3):
        result = invoke("--json", "monitor", "--once")
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert [m["type"] for m in receiver.received] == ["failure", "success"]
    assert receiver.received[1]["title"].startswith("[vvctl RESOLVED]")
    # The webhook URL's token is a secret: never in output, logs, LogLines or any file vvctl wrote.
    assert "SECRETTOKEN" not in "".join(outputs) + everything_written(root)
    records = [json.loads(p.read_bytes()) for p in sorted((root / "loglines" / "jobs").glob("*.logline.json"))]
    sent = [r["this"] for r in records if r["did"] == "sent an alert"]
    assert sent == ["ALERT disk CRITICAL to alert URL #1 (json)", "RESOLVED disk OK to alert URL #1 (json)"]
    monitor_runs = [r for r in records if r["did"] == "ran the monitor"]
    assert len(monitor_runs) == 2  # only the runs where something changed: not every quiet minute


def test_a_failed_notification_is_retried_on_the_next_run(
    invoke: Invoke, tmp_path: Path, receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    setup_box(invoke, tmp_path, f'alert_urls = ["{receiver.url()}"]\n' + PROBLEM)
    receiver.fail_next = 1
    first = invoke("monitor", "--once")
    assert first.exit_code == 9 and "alert ALERT disk CRITICAL to alert URL #1 (json): NOT delivered" in first.output
    assert receiver.received == [] and "SECRETTOKEN" not in first.output
    second = invoke("--json", "monitor", "--once")
    document = json.loads(second.stdout)
    assert [d["delivered"] for d in document["deliveries"]] == [True]
    invoke("monitor", "--once")
    assert len(receiver.received) == 1


def test_json_report(invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    setup_box(invoke, tmp_path, "min_free_space_gb = 1e9\n")
    document = invoke.json("monitor", expect=1)
    assert document["kind"] == "monitor" and document["mode"] == "once" and document["worst"] == "WARN"
    disk = next(c for c in document["checks"] if c["check"] == "disk")
    assert set(disk) == {"check", "state", "what", "where", "value", "threshold", "since", "hint"}


@pytest.mark.parametrize(
    ("args", "extra", "code", "message"),
    [
        (["--interval", "5"], "", 2, "--interval applies to --watch only"),
        (["--serve", "127.0.0.1:9"], "", 2, "--serve applies to --watch only"),
        (["--watch", "--serve", "nowhere"], "", 2, "--serve wants HOST:PORT"),
        ([], 'schedules = {cleanup = "every day"}\n', 3, "schedules: 'cleanup' = 'every day' is not a five-field cron"),
    ],
)
def test_bad_usage(invoke: Invoke, tmp_path: Path, args: list[str], extra: str, code: int, message: str) -> None:
    setup_box(invoke, tmp_path)
    if extra:
        invoke.config.write_text(invoke.config.read_text().replace("schedules = {}\n", extra))
    result = invoke("monitor", *args)
    assert result.exit_code == code and message in result.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_watch_serves_metrics_defers_once_and_stops_on_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = tmp_path / "config.toml"
    config.write_text(f'storage_root = "{root}"\nschedules = {{}}\n')
    env = {**os.environ, "VV_CONFIG": str(config), "NO_COLOR": "1", "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    run = [sys.executable, "-m", "vvctl"]
    subprocess.run([*run, "-q", "bootstrap"], env=env, check=True, timeout=120)
    port = free_port()
    watcher = subprocess.Popen(
        [*run, "monitor", "--watch", "--interval", "1", "--serve", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stderr is not None
        assert watcher.stderr.readline().startswith(f"serving http://127.0.0.1:{port}/metrics")
        assert "checks:" in watcher.stderr.readline()  # the first pass is done
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            names = {f.name for f in text_string_to_metric_families(response.read().decode())}
        assert {"vvctl_check_state", "vvctl_storage_free_bytes", "vvctl_backlog_videos"} <= names
        deferred = subprocess.run(
            [*run, "--json", "monitor", "--once"], env=env, capture_output=True, text=True, timeout=60
        )
        document = json.loads(deferred.stdout)
        assert deferred.returncode == 0, deferred.stderr
        assert document["mode"] == "deferred" and document["watcher_pid"] == watcher.pid
        assert {c["check"] for c in document["checks"]} >= {"disk", "backlog"}
        time.sleep(0.2)
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    assert "monitor: " in out and "Traceback" not in err
    assert not (root / "state" / "monitor.watch.json").exists()
