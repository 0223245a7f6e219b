"""The crontab block: rendered from the plan, spliced into a crontab between markers, read back, removed.

The block sits between ``# BEGIN vvctl`` and ``# END vvctl``. Installing replaces an existing block
where it is, or puts a new one at the top of the crontab: above every line of the owner's, so no
``SHELL=``, ``PATH=``, ``MAILTO=`` or ``CRON_TZ=`` they set applies to the jobs, and the block sets none
that would apply to theirs. Every byte outside the block is kept as it was; removing the block gives
back exactly the crontab there was before it was added.

Two places hold a block: a user's crontab, read and written with the ``crontab`` program
(:class:`UserCrontab`), and a file in ``/etc/cron.d`` whose lines name the user (:class:`CronDFile`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vvctl.core.atomic import atomic_write_bytes
from vvctl.core.errors import DependencyError, InputError, StorageError
from vvctl.ops.install.plan import SchedulePlan

BEGIN = "# BEGIN vvctl"
END = "# END vvctl"
CRON_D_NAME = "vvctl"
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")
CRON_DAEMONS = frozenset({"cron", "crond", "cronie", "fcron", "dcron"})


def cron_escape(command: str) -> str:
    """cron turns an unescaped ``%`` of the command into a newline; ``\\%`` gives a literal ``%``."""
    return command.replace("%", "\\%")


def cron_unescape(command: str) -> str:
    """What cron hands to ``sh -c`` for a command written with :func:`cron_escape`."""
    return command.replace("\\%", "%")


def render_block(plan: SchedulePlan, *, user: str | None = None) -> str:
    """The block, markers included, ending in a newline; ``user`` adds the user field of /etc/cron.d lines."""
    logs = plan.storage_root / "logs"
    lines = [
        BEGIN,
        f"# Written by 'vvctl install' for the config {plan.config}. Do not edit these lines: change",
        "# 'schedules' in the config and run 'vvctl install' again; 'vvctl install --uninstall' removes them.",
        f"# Each job appends what it prints (problems only: --quiet) to {logs}/cron-<job>.log.",
    ]
    for command in plan.commands:
        who = f"{user} " if user else ""
        lines.append(f"{command.schedule.expression} {who}{cron_escape(command.shell())}")
    lines.append(END)
    return "\n".join(lines) + "\n"


def command_lines(block: str) -> list[str]:
    """The job lines of a block (comments and markers left out)."""
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True)
class _Span:
    start: int
    end: int


def _marker(line: str) -> str:
    return line.rstrip("\n").rstrip()


def _find(text: str, where: str) -> _Span | None:
    """Character offsets of the one block in ``text`` (markers and their newlines included), or None."""
    begin: int | None = None
    span: _Span | None = None
    offset = 0
    for match in _LINE.finditer(text):
        line = match.group(0)
        marker = _marker(line)
        if marker == BEGIN:
            if begin is not None or span is not None:
                raise InputError(f"{where} has more than one '{BEGIN}' line: remove the extra block by hand")
            begin = offset
        elif marker == END:
            if begin is None:
                raise InputError(f"{where} has an '{END}' line without '{BEGIN}' before it: fix it by hand")
            span = _Span(begin, offset + len(line))
            begin = None
        offset += len(line)
    if begin is not None:
        raise InputError(f"{where} has a '{BEGIN}' line without '{END}' after it: fix it by hand")
    return span


def extract(text: str | None, where: str = "the crontab") -> str | None:
    """The block in ``text`` as it is installed, or None."""
    if text is None:
        return None
    span = _find(text, where)
    return None if span is None else text[span.start : span.end]


def splice(text: str | None, block: str | None, where: str = "the crontab") -> str | None:
    """``text`` with its block replaced by ``block`` (None removes it); None when nothing is left.

    A new block goes at the top. Nothing outside the block changes, byte for byte.
    """
    current = text or ""
    span = _find(current, where)
    if span is None:
        if block is None:
            return text
        return block + current
    result = current[: span.start] + (block or "") + current[span.end :]
    return result if result else None


class CrontabStore(Protocol):
    """Where a block lives: read the whole text (None: there is none), write it (None: remove it)."""

    @property
    def target(self) -> str: ...

    @property
    def user_field(self) -> str | None: ...

    def read(self) -> str | None: ...

    def write(self, text: str | None) -> None: ...


def _decode(data: bytes) -> str:
    # surrogateescape: bytes that are not UTF-8 survive the round trip unchanged.
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass
class UserCrontab:
    """A user's crontab through the real ``crontab`` program (``-u USER`` for another user, as root)."""

    user: str | None = None
    program: str = "crontab"
    timeout_s: float = 30.0
    _path: str | None = field(default=None, init=False, repr=False)

    @property
    def target(self) -> str:
        import pwd

        name = self.user or pwd.getpwuid(os.geteuid()).pw_name
        return f"crontab:{name}"

    @property
    def user_field(self) -> str | None:
        return None

    def _program(self) -> str:
        if self._path is None:
            found = shutil.which(self.program)
            if found is None:
                raise DependencyError(
                    f"no '{self.program}' program: install cron (Debian/Ubuntu: apt-get install cron) "
                    "or use --scheduler systemd"
                )
            self._path = found
        return self._path

    def _run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        argv = [self._program(), *(("-u", self.user) if self.user else ()), *args]
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DependencyError(f"cannot run {argv[0]}: {exc}") from None

    @staticmethod
    def _reason(result: subprocess.CompletedProcess[bytes]) -> str:
        lines = _decode(result.stderr).strip().splitlines()
        return lines[0] if lines else f"exit status {result.returncode}"

    def read(self) -> str | None:
        result = self._run("-l")
        if result.returncode == 0:
            return _decode(result.stdout)
        if b"no crontab for" in result.stderr:
            return None
        raise DependencyError(f"'crontab -l' failed: {self._reason(result)}")

    def write(self, text: str | None) -> None:
        if text is None:
            result = self._run("-r")
            if result.returncode != 0 and b"no crontab for" not in result.stderr:
                raise DependencyError(f"'crontab -r' failed: {self._reason(result)}")
            return
        result = self._run("-", stdin=_encode(text))
        if result.returncode != 0:
            raise DependencyError(f"'crontab -' refused the new crontab: {self._reason(result)}")


@dataclass
class CronDFile:
    """``/etc/cron.d/vvctl``: a system crontab file (root-owned, 0644, lines with a user field)."""

    directory: Path = Path("/etc/cron.d")
    user: str = "root"
    name: str = CRON_D_NAME

    @property
    def path(self) -> Path:
        return self.directory / self.name

    @property
    def target(self) -> str:
        return str(self.path)

    @property
    def user_field(self) -> str | None:
        return self.user

    def read(self) -> str | None:
        try:
            return _decode(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def write(self, text: str | None) -> None:
        if text is None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot remove {self.path}: {exc.strerror or exc}") from None
            return
        if not self.directory.is_dir():
            raise DependencyError(f"{self.directory} does not exist: is cron installed (apt-get install cron)?")
        # cron ignores files in cron.d that are writable by group or others.
        atomic_write_bytes(self.path, _encode(text), mode=0o644)


def cron_daemons(proc: Path = Path("/proc")) -> list[str]:
    """``name (pid N)`` of every running cron daemon (by process name), from ``/proc``."""
    found: list[str] = []
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            name = (Path(entry.path) / "comm").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if name in CRON_DAEMONS:
            found.append(f"{name} (pid {entry.name})")
    return sorted(found)


__all__ = [
    "BEGIN",
    "CRON_D_NAME",
    "END",
    "CronDFile",
    "CrontabStore",
    "UserCrontab",
    "command_lines",
    "cron_daemons",
    "cron_escape",
    "cron_unescape",
    "extract",
    "render_block",
    "splice",
]
