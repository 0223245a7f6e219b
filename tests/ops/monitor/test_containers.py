"""Containers through the real Docker SDK against a fake Docker Engine API served on a unix socket."""

from __future__ import annotations

import json
from dataclasses import replace

import docker
import pytest

from tests.ops.monitor.conftest import MakeBox
from tests.ops.monitor.fakes import AlertReceiver, FakeClock, FakeContainer, FakeDockerEngine
from vvctl.core.alerts import AppriseSink, State
from vvctl.core.layout import StorageLayout
from vvctl.core.settings import Settings
from vvctl.ops.monitor import MonitorClients, MonitorReport, monitor_once

CONTAINER_CONFIG = """
container_grace_s = 60
restart_budget = 2
restart_window_s = 3600
restart_backoff_s = 30
schedules = {}
"""


def sdk(engine: FakeDockerEngine) -> MonitorClients:
    return MonitorClients(docker=lambda: docker.DockerClient(base_url=engine.url, timeout=5))


def row(report: MonitorReport, check: str) -> tuple[State, str]:
    (found,) = [r for r in report.checks if r.check == check]
    return found.state, found.value


def job_records(settings: Settings) -> list[dict[str, object]]:
    directory = StorageLayout(settings.storage_root).loglines / "jobs"
    return [json.loads(p.read_bytes()) for p in sorted(directory.glob("*.logline.json"))]


@pytest.fixture
def box(make_box: MakeBox) -> Settings:
    return make_box(CONTAINER_CONFIG)


def test_unhealthy_container_is_restarted_after_the_grace_period_and_recovery_resolves_once(
    box: Settings, engine: FakeDockerEngine, clock: FakeClock, receiver: AlertReceiver
) -> None:
    web = engine.add(FakeContainer("web", health="unhealthy", health_after_restart="healthy"))
    sinks = [AppriseSink(receiver.url(), 0)]

    def once() -> MonitorReport:
        return monitor_once(box, clients=sdk(engine), sinks=sinks, clock=clock)

    first = once()
    assert row(first, "container:web")[0] is State.WARN and "unhealthy for 0 s" in row(first, "container:web")[1]
    assert row(first, "docker") == (State.OK, "reachable (API 1.45); 1 container(s) monitored")
    clock.advance(59)
    assert row(once(), "container:web")[0] is State.WARN and engine.restarts == []  # still within the grace

    clock.advance(2)  # 61 s unhealthy > 60 s grace
    restarted = once()
    assert engine.restarts == ["web"]
    assert "restarted (restart 1 of 2" in row(restarted, "container:web")[1]
    assert web.health == "healthy"

    clock.advance(60)
    recovered = once()
    assert row(recovered, "container:web") == (State.OK, "running, healthy; restarts: 1 by vvctl, 0 by Docker")
    clock.advance(60)
    once()
    events = [(m["type"], m["title"]) for m in receiver.received if "container web" in str(m["title"])]
    assert [t for t, _ in events] == ["warning", "success"]  # one WARN alert, then exactly one RESOLVED
    assert events[1][1].startswith("[vvctl RESOLVED]")
    records = job_records(box)
    assert any(
        r["did"] == "restarted a container" and r["source"] == {"type": "container", "id": "web"} for r in records
    )


def test_the_budget_stops_restarts_and_raises_one_critical(
    box: Settings, engine: FakeDockerEngine, clock: FakeClock, receiver: AlertReceiver
) -> None:
    engine.add(FakeContainer("worker", health="unhealthy", health_after_restart="unhealthy"))
    sinks = [AppriseSink(receiver.url(), 0)]
    states = []
    for _ in range(14):  # 14 minutes of a container that never recovers, a pass a minute
        report = monitor_once(box, clients=sdk(engine), sinks=sinks, clock=clock)
        states.append(row(report, "container:worker")[0])
        clock.advance(60)
    assert engine.restarts == ["worker", "worker"]  # the budget: 2 per hour
    assert (
        states[-6:] == [State.CRITICAL] * 6 and "restart budget spent (2 restarts" in row(report, "container:worker")[1]
    )
    critical = [m for m in receiver.received if m["type"] == "failure"]
    assert len(critical) == 1 and "[vvctl CRITICAL]" in critical[0]["title"]
    assert "left alone" in critical[0]["message"] and "hint:" in critical[0]["message"]


def test_backoff_doubles_between_restarts(make_box: MakeBox, engine: FakeDockerEngine, clock: FakeClock) -> None:
    box = make_box("container_grace_s = 0\nrestart_budget = 5\nrestart_backoff_s = 100\nschedules = {}")
    engine.add(FakeContainer("api", status="exited", exit_code=3, policy="no", health=None, health_after_restart=None))
    engine.containers[next(iter(engine.containers))].labels = {"vvctl.monitor": "true"}
    at = []
    for second in range(0, 800, 50):
        api = engine.find("api")
        assert api is not None
        api.status, api.exit_code = "exited", 3  # crashes again at once
        before = len(engine.restarts)
        monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
        if len(engine.restarts) > before:
            at.append(second)
        clock.advance(50)
    assert at[:4] == [0, 100, 300, 700]  # waits 100 s, then 200 s, then 400 s


def test_docker_own_restarts_are_counted_and_recorded(
    box: Settings, engine: FakeDockerEngine, clock: FakeClock
) -> None:
    db = engine.add(FakeContainer("db", restart_count=4, policy="always"))
    monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
    db.restart_count = 6  # Docker restarted it twice by its policy
    clock.advance(60)
    report = monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
    assert report.facts.restarts["db"] == (0, 2)
    assert row(report, "container:db") == (State.OK, "running, healthy; restarts: 0 by vvctl, 2 by Docker")
    assert engine.restarts == []
    noticed = [r for r in job_records(box) if r["did"] == "noticed Docker restarted a container"]
    assert len(noticed) == 1 and "restarted it 2 time(s)" in str(noticed[0]["this"])
    clock.advance(60)
    again = monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
    assert again.facts.restarts["db"] == (0, 2)  # not counted twice


def test_selection_by_name_label_and_compose_project(
    make_box: MakeBox, engine: FakeDockerEngine, clock: FakeClock
) -> None:
    box = make_box('containers = ["named", "ghost"]\ncompose_project = "shop"\nschedules = {}')
    engine.add(FakeContainer("named", labels={}))
    engine.add(FakeContainer("labelled"))
    engine.add(FakeContainer("shop-cart-1", labels={"com.docker.compose.project": "shop"}))
    engine.add(FakeContainer("other-1", labels={"com.docker.compose.project": "other"}))
    report = monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
    names = sorted(r.check for r in report.checks if r.check.startswith("container:"))
    assert names == ["container:ghost", "container:labelled", "container:named", "container:shop-cart-1"]
    assert row(report, "container:ghost") == (State.CRITICAL, "no such container")


def test_no_restart_policy_is_a_warn(box: Settings, engine: FakeDockerEngine, clock: FakeClock) -> None:
    engine.add(FakeContainer("cam", policy="no"))
    report = monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
    assert row(report, "container:cam")[0] is State.WARN and "no restart policy" in row(report, "container:cam")[1]


def test_exited_with_an_error_is_restarted_only_when_docker_will_not(
    box: Settings, engine: FakeDockerEngine, clock: FakeClock
) -> None:
    engine.add(FakeContainer("left", status="exited", exit_code=1, policy="on-failure", max_retries=3, restart_count=3))
    engine.add(
        FakeContainer("docker-does", status="exited", exit_code=1, policy="on-failure", max_retries=3, restart_count=1)
    )
    engine.add(FakeContainer("clean", status="exited", exit_code=0))
    report = monitor_once(box, clients=sdk(engine), sinks=[], clock=clock)
    assert engine.restarts == ["left"]
    assert (
        row(report, "container:docker-does")[0] is State.WARN
        and "Docker restarts it" in row(report, "container:docker-does")[1]
    )
    assert row(report, "container:clean") == (
        State.WARN,
        "exited (exit status 0); left alone; restarts: 0 by vvctl, 0 by Docker",
    )


def test_docker_absent_is_a_clear_check_result_and_the_other_checks_run(
    make_box: MakeBox, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    box = make_box('containers = ["web"]')
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    report = monitor_once(box, sinks=[], clock=clock)  # the default client: docker.from_env()
    state, value = row(report, "docker")
    assert state is State.CRITICAL
    assert value == f"not reachable at unix://{tmp_path}/no-docker.sock: no Docker socket there"
    assert {"disk", "backlog", "quarantine", "gpu"} <= {r.check for r in report.checks}
    assert report.exit_code == 9


def test_docker_host_is_honoured(
    box: Settings, engine: FakeDockerEngine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    engine.add(FakeContainer("web"))
    report = monitor_once(box, sinks=[], clock=clock)
    assert row(report, "container:web")[0] is State.OK
    assert "GET /containers/json" in engine.requests


def test_without_configured_containers_no_docker_is_ok(
    make_box: MakeBox, clock: FakeClock, monkeypatch, tmp_path
) -> None:
    box = make_box("schedules = {}")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    report = monitor_once(replace(box), sinks=[], clock=clock)
    assert row(report, "docker")[0] is State.OK and report.worst is State.OK
