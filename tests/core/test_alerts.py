"""Alert state, dedup and delivery: one alert per change, reminders, one RESOLVED, retries never duplicated."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.ops.monitor.fakes import AlertReceiver, FakeClock
from vvctl.core.alerts import (
    Alert,
    Alerter,
    AlertEvent,
    AlertStore,
    AppriseSink,
    CommandSink,
    DeliveryError,
    Observation,
    State,
    sinks_from_settings,
)
from vvctl.core.settings import load_settings


class Recorder:
    """A sink that records what it was sent and fails while ``failing`` is set."""

    def __init__(self, name: str = "recorder") -> None:
        self.key = f"test:{name}"
        self.name = name
        self.sent: list[Alert] = []
        self.failing = False

    def send(self, alert: Alert) -> None:
        if self.failing:
            raise DeliveryError(f"{self.name} is down")
        self.sent.append(alert)

    def events(self) -> list[tuple[str, str]]:
        return [(a.event.value, a.state.value) for a in self.sent]


def disk(state: State, value: str = "1 GB free") -> Observation:
    return Observation("disk", state, "free space", "/srv/vv", value, "WARN below 5 GB", "run vvctl cleanup")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> AlertStore:
    return AlertStore(tmp_path / "state.sqlite3", clock=clock)


def alerter(store: AlertStore, clock: FakeClock, *sinks: Recorder, realert_after_s: float = 3600) -> Alerter:
    return Alerter(store, sinks, realert_after_s=realert_after_s, clock=clock, host="box-1")


def test_one_alert_per_change_then_reminders_then_one_resolved(store: AlertStore, clock: FakeClock) -> None:
    sink = Recorder()
    for _ in range(30):  # half an hour of WARN, a run a minute
        alerter(store, clock, sink).run([disk(State.WARN)])
        clock.advance(60)
    assert sink.events() == [("ALERT", "WARN")]
    for _ in range(40):  # past realert_after_s: one reminder
        alerter(store, clock, sink).run([disk(State.WARN)])
        clock.advance(60)
    assert sink.events() == [("ALERT", "WARN"), ("REMINDER", "WARN")]
    alerter(store, clock, sink).run([disk(State.CRITICAL)])
    alerter(store, clock, sink).run([disk(State.OK)])
    alerter(store, clock, sink).run([disk(State.OK)])
    assert sink.events()[2:] == [("ALERT", "CRITICAL"), ("RESOLVED", "OK")]


def test_an_alert_says_what_where_value_threshold_since_and_a_hint(store: AlertStore, clock: FakeClock) -> None:
    sink = Recorder()
    alerter(store, clock, sink).run([disk(State.OK)])
    clock.advance(120)
    went_bad = clock()
    alerter(store, clock, sink).run([disk(State.CRITICAL, "0.4 GB free")])
    clock.advance(60)
    round_ = alerter(store, clock, sink).run([disk(State.CRITICAL, "0.3 GB free")])
    (alert,) = sink.sent
    document = alert.document()
    assert document["what"] == "free space" and document["where"] == "/srv/vv" and document["host"] == "box-1"
    assert document["value"] == "0.4 GB free" and document["threshold"] == "WARN below 5 GB"
    assert document["hint"] == "run vvctl cleanup" and document["since"] == "2026-03-02T10:02:00Z"
    assert round_.tracked[0].since == went_bad and not round_.tracked[0].changed


def test_no_reminders_with_realert_zero(store: AlertStore, clock: FakeClock) -> None:
    sink = Recorder()
    for _ in range(5):
        alerter(store, clock, sink, realert_after_s=0).run([disk(State.WARN)])
        clock.advance(86400)
    assert sink.events() == [("ALERT", "WARN")]


def test_a_failed_delivery_is_retried_next_run_and_never_duplicated(store: AlertStore, clock: FakeClock) -> None:
    good, flaky = Recorder("good"), Recorder("flaky")
    flaky.failing = True
    first = alerter(store, clock, good, flaky).run([disk(State.WARN)])
    assert [d.ok for d in first.deliveries] == [True, False]
    assert first.failed[0].error == "flaky is down"
    alerter(store, clock, good, flaky).run([disk(State.WARN)])  # still down: tried again, no error raised
    flaky.failing = False
    alerter(store, clock, good, flaky).run([disk(State.WARN)])
    alerter(store, clock, good, flaky).run([disk(State.WARN)])
    assert good.events() == [("ALERT", "WARN")] and flaky.events() == [("ALERT", "WARN")]


def test_a_problem_that_resolves_before_delivery_sends_nothing(store: AlertStore, clock: FakeClock) -> None:
    sink = Recorder()
    sink.failing = True
    alerter(store, clock, sink).run([disk(State.WARN)])
    sink.failing = False
    alerter(store, clock, sink).run([disk(State.OK)])
    assert sink.sent == []


def test_a_buggy_sink_does_not_stop_the_round(store: AlertStore, clock: FakeClock) -> None:
    class Broken(Recorder):
        def send(self, alert: Alert) -> None:
            raise RuntimeError("https://hooks.example/SECRETTOKEN exploded")

    sink = Recorder()
    round_ = alerter(store, clock, Broken("broken"), sink).run([disk(State.WARN)])
    assert [d.error for d in round_.deliveries] == ["broken failed (RuntimeError)", None]


def test_apprise_json_reaches_a_real_http_server(store: AlertStore, clock: FakeClock, receiver: AlertReceiver) -> None:
    sink = AppriseSink(receiver.url(), 0)
    assert sink.name == "alert URL #1 (json)" and "SECRETTOKEN" not in repr(sink) + sink.key
    alerter(store, clock, sink).run([disk(State.CRITICAL)])  # type: ignore[arg-type]
    (message,) = receiver.received
    assert receiver.paths == ["/hooks/SECRETTOKEN"]
    assert message["type"] == "failure" and message["title"] == "[vvctl CRITICAL] free space: /srv/vv on box-1"
    assert "value: 1 GB free" in message["message"] and "hint: run vvctl cleanup" in message["message"]


def test_apprise_failure_names_the_target_not_the_url(
    store: AlertStore, clock: FakeClock, receiver: AlertReceiver
) -> None:
    receiver.fail_next = 1
    sink = AppriseSink(receiver.url(), 1)
    round_ = alerter(store, clock, sink).run([disk(State.WARN)])  # type: ignore[arg-type]
    assert round_.failed[0].error == "alert URL #2 (json) did not accept the notification"
    bad = AppriseSink("nosuchscheme://SECRETTOKEN", 0)
    round_ = alerter(store, clock, bad).run([disk(State.CRITICAL)])  # type: ignore[arg-type]
    assert round_.failed[0].error == "alert URL #1 (nosuchscheme) is not a URL Apprise understands"


def test_alert_command_gets_the_alert_as_json_on_stdin(tmp_path: Path, store: AlertStore, clock: FakeClock) -> None:
    out = tmp_path / "got.json"
    script = tmp_path / "page.py"
    script.write_text(f"import sys, pathlib; pathlib.Path({str(out)!r}).write_bytes(sys.stdin.buffer.read())\n")
    sink = CommandSink(f"{sys.executable} {script} --token SECRETTOKEN")
    alerter(store, clock, sink).run([disk(State.WARN)])  # type: ignore[arg-type]
    got: dict[str, Any] = json.loads(out.read_bytes())
    assert (
        got["kind"] == "vvctl.alert" and got["event"] == "ALERT" and got["check"] == "disk" and got["state"] == "WARN"
    )


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("false", "alert_command exited with status 1"),
        ("/nonexistent/pager --token SECRETTOKEN", "alert_command: program not found"),
        ("pager 'unbalanced SECRETTOKEN", "alert_command cannot be split into words (unbalanced quotes)"),
    ],
)
def test_alert_command_failures_are_one_line_without_the_command(
    command: str, error: str, store: AlertStore, clock: FakeClock
) -> None:
    round_ = alerter(store, clock, CommandSink(command)).run([disk(State.WARN)])  # type: ignore[arg-type]
    assert round_.failed[0].error == error


def test_alert_command_timeout(store: AlertStore, clock: FakeClock) -> None:
    def slow(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        raise subprocess.TimeoutExpired("pager", kwargs["timeout"])

    sink = CommandSink("pager", runner=slow, timeout_s=2)
    round_ = alerter(store, clock, sink).run([disk(State.WARN)])  # type: ignore[arg-type]
    assert round_.failed[0].error == "alert_command did not finish within 2 s"


def test_sinks_from_settings(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('alert_urls = ["slack://T/B/SECRETTOKEN", "ntfy://topic"]\nalert_command = "pager --to ops"\n')
    sinks = sinks_from_settings(load_settings(config, env={}).settings)
    assert [s.name for s in sinks] == ["alert URL #1 (slack)", "alert URL #2 (ntfy)", "alert_command"]
    assert len({s.key for s in sinks}) == 3 and not any("SECRETTOKEN" in s.key for s in sinks)


def test_alert_titles() -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    alert = Alert(AlertEvent.REMINDER, "disk", State.WARN, State.WARN, "free space", "/srv", "h", "1", "5", at, "x", at)
    assert alert.title == "[vvctl WARN] (reminder) free space: /srv on h"
