"""The scheduled jobs and when they run: one definition for the crontab block, the systemd timers and the
monitor's dead-man check.

Each job's schedule is the ``schedules`` setting (a cron expression per job, defaults in the config
schema). An expression must be one that Debian's cron, croniter (which computes the run times) and the
systemd timer translation all read the same way, so the accepted language is the common core: five
fields of numbers, ``*``, ranges, steps and lists (month and weekday also as one three-letter name),
or one of the ``@hourly`` ... ``@yearly`` nicknames. Extensions some crons have and others lack (``L``,
``W``, ``#``, ``?``, a seconds field, ``@reboot``) are refused with the job's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vvctl.core.errors import ConfigError
from vvctl.core.settings import Settings


@dataclass(frozen=True)
class ScheduledJob:
    """A job the box runs by itself: its name (the job runner's), its ``vvctl`` arguments and what it does."""

    name: str
    args: tuple[str, ...]
    what: str


JOBS: tuple[ScheduledJob, ...] = (
    ScheduledJob("orchestrate", ("orchestrate", "--once"), "analyse the videos that landed in input/"),
    ScheduledJob("monitor", ("monitor", "--once"), "check the box, heal containers, alert people"),
    ScheduledJob("export-logs", ("export-logs",), "archive the day's logs and LogLines with a signed manifest"),
    ScheduledJob("cleanup", ("cleanup",), "apply the retention policy and keep free space"),
    ScheduledJob("selftest", ("selftest",), "the daily self-test on the bundled sample clip"),
)
JOB_NAMES = tuple(job.name for job in JOBS)

NICKNAMES: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_ITEM = r"(?:\*|[0-9]{1,2}(?:-[0-9]{1,2})?)(?:/[0-9]{1,2})?"
_NUMERIC = re.compile(rf"{_ITEM}(?:,{_ITEM})*")
_NAME = re.compile(r"[A-Za-z]{3}")
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class Schedule:
    """One job with its (checked, whitespace-normalised) cron expression."""

    job: ScheduledJob
    expression: str

    @property
    def name(self) -> str:
        return self.job.name


def check_expression(job: str, expression: str) -> str:
    """The expression with its whitespace normalised, or :class:`ConfigError` (exit 3) naming the job."""
    text = " ".join(expression.split())
    bad = f"schedules: '{job}' = {expression!r}"
    if text.startswith("@"):
        if text.lower() not in NICKNAMES:
            raise ConfigError(f"{bad} is not one of {', '.join(sorted(NICKNAMES))} (nor five cron fields)")
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        raise ConfigError(f"{bad} is not a five-field cron expression ({len(fields)} fields; {' / '.join(_FIELDS)})")
    for index, (value, field_name) in enumerate(zip(fields, _FIELDS, strict=True)):
        named = index >= 3 and _NAME.fullmatch(value) is not None
        if not named and _NUMERIC.fullmatch(value) is None:
            raise ConfigError(
                f"{bad}: the {field_name} field {value!r} is not numbers, '*', ranges (a-b), steps (/n) or lists (,)"
            )
    from croniter import croniter

    if not croniter.is_valid(text):
        raise ConfigError(f"{bad} is not a valid cron expression (a value out of range?)")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except Exception as exc:  # noqa: BLE001 - croniter's "never fires" errors have no common public base
        raise ConfigError(f"{bad} never fires ({type(exc).__name__})") from None
    return text


def job_schedules(settings: Settings) -> tuple[Schedule, ...]:
    """The scheduled jobs (those ``schedules`` names) with their checked expressions, in :data:`JOBS` order."""
    return tuple(
        Schedule(job, check_expression(job.name, settings.schedules[job.name]))
        for job in JOBS
        if job.name in settings.schedules
    )


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time ``expression`` fires strictly after ``after``, in this machine's local time as cron does."""
    from croniter import croniter

    fired: datetime = croniter(NICKNAMES.get(expression, expression), after.astimezone()).get_next(datetime)
    return fired


def _component(values: list[Any], width: int = 2) -> str:
    if values == ["*"]:
        return "*"
    return ",".join(f"{int(v):0{width}d}" for v in values)


def on_calendar(expression: str) -> tuple[str, ...]:
    """systemd ``OnCalendar=`` values that fire exactly when cron fires ``expression`` (local time).

    cron runs a job when the day of month *or* the day of week matches if both fields are restricted
    (neither starts with ``*``), and when both match otherwise; systemd always needs both, so the first
    case becomes two ``OnCalendar=`` lines (a timer fires on their union).
    """
    from croniter import croniter

    text = NICKNAMES.get(expression, expression)
    minute, hour, dom, month, dow = croniter(text).expanded
    day_fields = text.split(" ")[2:5:2]
    clock = f"{_component(hour)}:{_component(minute)}:00"
    weekdays = "" if dow == ["*"] else ",".join(_WEEKDAYS[int(v) % 7] for v in sorted({int(v) % 7 for v in dow}))
    date_dom = f"*-{_component(month)}-{_component(dom)}"
    if any(field.startswith("*") for field in day_fields) or dow == ["*"] or dom == ["*"]:
        return (f"{weekdays + ' ' if weekdays else ''}{date_dom} {clock}",)
    return (f"{date_dom} {clock}", f"{weekdays} *-{_component(month)}-* {clock}")


__all__ = [
    "JOBS",
    "JOB_NAMES",
    "NICKNAMES",
    "Schedule",
    "ScheduledJob",
    "check_expression",
    "job_schedules",
    "next_fire",
    "on_calendar",
]
