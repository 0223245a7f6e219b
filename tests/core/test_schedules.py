"""Job schedules: one definition (the ``schedules`` setting), checked cron expressions, and systemd
``OnCalendar=`` translations that fire exactly when cron (croniter) does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vvctl.core.errors import ConfigError, ExitCode
from vvctl.core.schedules import JOB_NAMES, check_expression, job_schedules, next_fire, on_calendar
from vvctl.core.settings import load_settings


def test_defaults_are_the_documented_schedules(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "none.toml", env={}).settings
    assert {s.name: s.expression for s in job_schedules(settings)} == {
        "orchestrate": "*/5 * * * *",
        "monitor": "* * * * *",
        "export-logs": "0 2 * * *",
        "cleanup": "0 3 * * *",
        "selftest": "30 4 * * *",
    }
    assert tuple(s.name for s in job_schedules(settings)) == JOB_NAMES


def test_a_table_in_the_config_is_the_whole_schedule(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[schedules]\ncleanup = "15  4 * * *"\norchestrate = "*/2 * * * *"\n')
    settings = load_settings(config, env={}).settings
    schedules = [(s.name, s.expression) for s in job_schedules(settings)]
    assert schedules == [("orchestrate", "*/2 * * * *"), ("cleanup", "15 4 * * *")]  # whitespace normalised
    config.write_text("schedules = {}\n")
    assert job_schedules(load_settings(config, env={}).settings) == ()


def test_an_environment_variable_sets_a_schedule(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "none.toml", env={"VV_SCHEDULES": '{"selftest": "@daily"}'}).settings
    assert {s.name: s.expression for s in job_schedules(settings)}["selftest"] == "@daily"


def test_an_unknown_job_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[schedules]\nbackup = "0 1 * * *"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert "schedules" in caught.value.message


@pytest.mark.parametrize(
    "expression",
    ["*/5 * * * *", "0 2 * * *", "0,30 8-18 * * 1-5", "5 4 1 2 *", "0 0 * * sun", "0 0 1 jan *", "@hourly", "@weekly"],
)
def test_good_expressions(expression: str) -> None:
    assert check_expression("cleanup", expression) == expression


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("* * * *", "is not a five-field cron expression (4 fields"),
        ("* * * * * *", "is not a five-field cron expression (6 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("0 0 30 2 *", "never fires"),
        ("0 12 L * *", "day of month field 'L'"),
        ("0 0 * * 1#2", "day of week field '1#2'"),
        ("0 0 ? * *", "day of month field '?'"),
        ("0 0 * * mon-fri", "day of week field 'mon-fri'"),
        ("@reboot", "is not one of"),
        ("every day", "(2 fields"),
    ],
)
def test_bad_expressions_name_the_job_and_exit_3(expression: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_expression("export-logs", expression)
    assert caught.value.exit_code is ExitCode.CONFIG
    assert "'export-logs'" in caught.value.message and says in caught.value.message


def test_a_bad_schedule_in_the_config_is_reported_with_its_job(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[schedules]\nmonitor = "*/0 * * *"\n')
    with pytest.raises(ConfigError, match="'monitor'"):
        job_schedules(load_settings(config, env={}).settings)


def test_next_fire_follows_the_expression() -> None:
    start = datetime(2026, 3, 4, 10, 7, tzinfo=UTC).astimezone()
    fired = next_fire("*/5 * * * *", start)
    assert fired > start and fired.minute % 5 == 0 and (fired - start).total_seconds() <= 300
    assert next_fire("@daily", start).hour == 0


def _croniter_times(expression: str, start: datetime, count: int) -> list[datetime]:
    times = []
    moment = start
    for _ in range(count):
        moment = next_fire(expression, moment)
        times.append(moment.astimezone(UTC).replace(tzinfo=None))
    return times


_ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+):\s+\w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def _systemd_times(spec: str, start: datetime, count: int) -> list[datetime]:
    argv = ["systemd-analyze", "calendar", f"--iterations={count}", f"--base-time=@{int(start.timestamp())}", spec]
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, check=True)
    return [datetime.fromisoformat(m) for m in _ELAPSE.findall(result.stdout)]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize(
    "expression",
    [
        "*/5 * * * *",
        "* * * * *",
        "0 2 * * *",
        "30 4 * * *",
        "15 10-12 * * 1-5",
        "0 0 1,15 * 3",  # day of month OR day of week: two OnCalendar lines
        "0 6 */10 * *",
        "0 0 * * 7",
        "5 4 1 2 *",
        "@weekly",
        "@monthly",
    ],
)
def test_systemd_calendar_fires_when_cron_fires(expression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    try:
        start = datetime(2026, 1, 30, 23, 58, tzinfo=UTC)
        count = 12
        expected = _croniter_times(expression, start, count)
        fired = sorted({t for spec in on_calendar(expression) for t in _systemd_times(spec, start, count)})[:count]
        assert fired == expected, on_calendar(expression)
    finally:
        monkeypatch.undo()
        time.tzset()
