"""What the box runs by itself: each scheduled job as an absolute command line, for cron and systemd alike.

A job's command is this installation's ``vvctl`` (absolute path), the config file in ``VV_CONFIG`` (so
the run finds it with no ``HOME`` and no ``XDG_*``), ``--quiet`` (only problems are printed) and the
job's own arguments. Under cron its output is appended to ``<storage_root>/logs/cron-<job>.log``, where
a person looks first; under systemd it goes to the journal (``journalctl -u vvctl-<job>``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vvctl.core.errors import UsageError
from vvctl.core.schedules import Schedule, job_schedules
from vvctl.core.settings import CONFIG_ENV, Settings


@dataclass(frozen=True)
class JobCommand:
    schedule: Schedule
    argv: tuple[str, ...]
    """The full command: the vvctl executable, ``--quiet``, the job's arguments."""
    environment: Mapping[str, str]
    output: Path
    """Where cron appends the job's stdout and stderr."""

    @property
    def job(self) -> str:
        return self.schedule.name

    def shell(self) -> str:
        """The command as one ``sh`` line: environment, command, output appended to its log."""
        assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in self.environment.items())
        command = " ".join(shlex.quote(part) for part in self.argv)
        return f"{assignments} {command} >>{shlex.quote(str(self.output))} 2>&1"


@dataclass(frozen=True)
class SchedulePlan:
    config: Path
    storage_root: Path
    vvctl: tuple[str, ...]
    commands: tuple[JobCommand, ...]


def _plain_path(what: str, text: str) -> str:
    if any(c in text for c in "\n\r\0"):
        raise UsageError(f"the {what} path {text!r} contains a line break; cron and systemd cannot run it")
    return text


def make_plan(settings: Settings, config: Path, vvctl: Sequence[str]) -> SchedulePlan:
    """Every scheduled job's command for a box whose config file is ``config`` (schedules checked first)."""
    config = config.expanduser().absolute()
    _plain_path("config", str(config))
    for part in vvctl:
        _plain_path("vvctl", part)
    root = settings.storage_root.absolute()
    _plain_path("storage root", str(root))
    commands = tuple(
        JobCommand(
            schedule=schedule,
            argv=(*vvctl, "--quiet", *schedule.job.args),
            environment={CONFIG_ENV: str(config)},
            output=root / "logs" / f"cron-{schedule.name}.log",
        )
        for schedule in job_schedules(settings)
    )
    return SchedulePlan(config, root, tuple(vvctl), commands)


__all__ = ["JobCommand", "SchedulePlan", "make_plan"]
