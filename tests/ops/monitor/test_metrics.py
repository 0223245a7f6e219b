"""The textfile and /metrics parse with prometheus_client's own text parser; /status is the report as JSON."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.monitor.conftest import MakeBox
from tests.ops.monitor.fakes import FakeClock, FakeContainer, FakeDockerEngine
from vvctl.core.errors import UsageError
from vvctl.ops.monitor import MonitorClients, MonitorReport, monitor_once, monitor_watch
from vvctl.ops.monitor.metrics import parse_address


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_textfile_is_written_atomically_and_parses(
    make_box: MakeBox, engine: FakeDockerEngine, clock: FakeClock
) -> None:
    box = make_box('metrics_textfile = "metrics/vvctl.prom"\nmin_free_space_gb = 1e9')
    engine.add(FakeContainer("web", restart_count=0, policy="always"))
    clients = MonitorClients(docker=lambda: docker.DockerClient(base_url=engine.url, timeout=5))
    (box.storage_root / "metrics").mkdir()
    monitor_once(box, clients=clients, sinks=[], clock=clock)
    engine.find("web").restart_count = 3  # type: ignore[union-attr]
    report = monitor_once(box, clients=clients, sinks=[], clock=clock)
    path = box.storage_root / "metrics" / "vvctl.prom"
    assert report.metrics_textfile == path
    assert [p.name for p in path.parent.iterdir()] == ["vvctl.prom"]  # no temp file left behind
    found = samples(path.read_text())
    assert found[("vvctl_check_state", (("check", "disk"),))] == 1  # WARN
    assert found[("vvctl_check_state", (("check", "container:web"),))] == 0
    assert found[("vvctl_container_restarts_total", (("by", "docker"), ("container", "web")))] == 3
    assert found[("vvctl_container_restarts_total", (("by", "vvctl"), ("container", "web")))] == 0
    assert found[("vvctl_storage_free_bytes", ())] > 0
    assert found[("vvctl_backlog_videos", ())] == 0
    assert found[("vvctl_docker_up", ())] == 1
    assert found[("vvctl_monitor_worst_state", ())] == 1
    assert found[("vvctl_monitor_last_run_timestamp_seconds", ())] == clock().timestamp()
    assert ("vvctl_job_last_success_timestamp_seconds", (("job", "monitor"),)) in found


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_watch_serves_metrics_and_status_and_stops_cleanly(make_box: MakeBox, clock: FakeClock) -> None:
    box = make_box("schedules = {}")
    stop = threading.Event()
    served: list[tuple[str, int]] = []
    passes: list[MonitorReport] = []
    two = threading.Event()

    def on_pass(report: MonitorReport) -> None:
        passes.append(report)
        clock.advance(60)
        if len(passes) >= 2:
            two.set()

    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "report",
            monitor_watch(
                box,
                interval_s=0.05,
                stop=stop,
                serve=("127.0.0.1", 0),
                sinks=[],
                clock=clock,
                on_serving=served.append,
                on_pass=on_pass,
            ),
        )
    )
    thread.start()
    try:
        assert two.wait(30)
        host, port = served[0]
        status, kind, body = get(f"http://{host}:{port}/metrics")
        assert status == 200 and kind.startswith("text/plain")
        found = samples(body.decode())
        assert found[("vvctl_check_state", (("check", "disk"),))] == 0
        status, kind, body = get(f"http://{host}:{port}/status")
        document = json.loads(body)
        assert status == 200 and kind == "application/json" and document["kind"] == "monitor"
        assert {c["check"] for c in document["checks"]} >= {"disk", "backlog", "gpu"}
        assert get(f"http://{host}:{port}/nothing")[0] == 404
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    report = result["report"]
    assert report.mode.value == "watch" and report.passes >= 2 and report.exit_code == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2)  # the port is closed again
    assert not (box.storage_root / "state" / "monitor.watch.json").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9810", ("127.0.0.1", 9810)), ("[::1]:80", ("::1", 80)), ("localhost:0", ("localhost", 0))],
)
def test_serve_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9810", "127.0.0.1", "127.0.0.1:http", ":9810", "h:70000"])
def test_bad_serve_address(text: str) -> None:
    with pytest.raises(UsageError):
        parse_address(text)
