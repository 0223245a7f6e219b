"""systemd service and timer units for the scheduled jobs, as an alternative to the crontab block.

Per job a ``vvctl-<job>.service`` (oneshot: the job's command, ``VV_CONFIG`` in its environment, its
output in the journal) and a ``vvctl-<job>.timer`` whose ``OnCalendar=`` lines fire exactly when cron
would fire the job's schedule. User units go to ``$XDG_CONFIG_HOME/systemd/user`` (``systemctl --user``),
system units (``--system``) to ``/etc/systemd/system``. Every unit starts with :data:`HEADER`, which is
how uninstall knows a file is one of ours.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vvctl.core.errors import StorageError
from vvctl.core.schedules import on_calendar
from vvctl.ops.install.plan import JobCommand, SchedulePlan

HEADER = "# Written by 'vvctl install'."
PREFIX = "vvctl-"


def user_unit_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "systemd" / "user"


SYSTEM_UNIT_DIR = Path("/etc/systemd/system")


def _escape(value: str, *, command: bool = False) -> str:
    """One word of a unit file: specifiers (``%``) doubled, ``$`` doubled in a command line (where it
    would expand a variable), quoted when it has spaces, quotes, backslashes or a semicolon."""
    value = value.replace("%", "%%")
    if command:
        value = value.replace("$", "$$")
    if any(c.isspace() or c in "\"'\\;" for c in value):
        value = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{value}"'
    return value


def service_unit(command: JobCommand, plan: SchedulePlan) -> str:
    environment = " ".join(_escape(f"{name}={value}") for name, value in command.environment.items())
    return "\n".join(
        [
            HEADER + " Do not edit: change 'schedules' in the config and run 'vvctl install' again.",
            "[Unit]",
            f"Description=vvctl {command.job}: {command.schedule.job.what}",
            "",
            "[Service]",
            "Type=oneshot",
            f"Environment={environment}",
            f"ExecStart={' '.join(_escape(part, command=True) for part in command.argv)}",
            "",
        ]
    )


def timer_unit(command: JobCommand) -> str:
    calendars = [f"OnCalendar={spec}" for spec in on_calendar(command.schedule.expression)]
    return "\n".join(
        [
            HEADER + " Do not edit: change 'schedules' in the config and run 'vvctl install' again.",
            "[Unit]",
            f"Description=vvctl {command.job} on the schedule '{command.schedule.expression}'",
            "",
            "[Timer]",
            *calendars,
            "AccuracySec=1s",
            # A run missed while the box was off is made up once at boot.
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def render_units(plan: SchedulePlan) -> dict[str, str]:
    """File name -> content of every unit, services and timers, in job order."""
    units: dict[str, str] = {}
    for command in plan.commands:
        units[f"{PREFIX}{command.job}.service"] = service_unit(command, plan)
        units[f"{PREFIX}{command.job}.timer"] = timer_unit(command)
    return units


def timers(units: dict[str, str] | Sequence[str]) -> list[str]:
    return [name for name in units if name.endswith(".timer")]


def ours(path: Path) -> bool:
    """A unit file vvctl wrote (its first line is the header)."""
    try:
        with path.open("rb") as handle:
            return handle.readline().startswith(HEADER.encode())
    except OSError:
        return False


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Systemd:
    """The unit directory of one scope and ``systemctl`` for it (when systemd runs here)."""

    unit_dir: Path
    system: bool
    systemctl: str | None = None
    run: Runner = _run
    booted: Callable[[], bool] = lambda: Path("/run/systemd/system").is_dir()

    @classmethod
    def for_scope(cls, *, system: bool, unit_dir: Path | None = None) -> Systemd:
        return cls(unit_dir or (SYSTEM_UNIT_DIR if system else user_unit_dir()), system, shutil.which("systemctl"))

    def _argv(self, *args: str) -> list[str]:
        return ["systemctl", *(() if self.system else ("--user",)), *args]

    def commands(self, *args: str) -> str:
        return " ".join(self._argv(*args))

    def usable(self) -> str | None:
        """None when ``systemctl`` can manage this scope here, otherwise why not."""
        if self.systemctl is None:
            return "systemctl is not installed"
        if not self.booted():
            return "systemd is not running on this machine (not booted with systemd, or a container)"
        if not self.system:
            probe = self.run([self.systemctl, "--user", "is-system-running"])
            if probe.returncode != 0 and not probe.stdout.strip():
                reason = (probe.stderr.strip().splitlines() or ["no user manager"])[0]
                return f"the user's systemd manager is not reachable ({reason})"
        return None

    def systemctl_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.systemctl is not None
        return self.run([self.systemctl, *self._argv(*args)[1:]])

    def read(self, name: str) -> str | None:
        try:
            return (self.unit_dir / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.unit_dir / name}: {exc.strerror or exc}") from None

    def installed(self) -> list[str]:
        """Names of the unit files of ours in the unit directory."""
        try:
            names = sorted(p.name for p in self.unit_dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self.unit_dir}: {exc.strerror or exc}") from None
        return [
            n for n in names if n.startswith(PREFIX) and n.endswith((".service", ".timer")) and ours(self.unit_dir / n)
        ]


__all__ = [
    "HEADER",
    "PREFIX",
    "SYSTEM_UNIT_DIR",
    "Systemd",
    "ours",
    "render_units",
    "service_unit",
    "timer_unit",
    "timers",
    "user_unit_dir",
]
