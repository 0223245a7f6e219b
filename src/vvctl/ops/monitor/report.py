"""The monitor's typed report: one row per check, the worst state, what was sent and recorded."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.alerts import State
from vvctl.core.errors import ExitCode
from vvctl.core.jobs import JobOutcome
from vvctl.core.jsondata import to_jsonable
from vvctl.ops.monitor.checks import Facts


class Mode(StrEnum):
    ONCE = "once"
    WATCH = "watch"
    DEFERRED = "deferred"
    """``--once`` found a ``--watch`` monitor holding the lock: it shows the watcher's latest results."""


EXIT_CODES = {State.OK: ExitCode.OK, State.WARN: ExitCode.FINDINGS, State.CRITICAL: ExitCode.CRITICAL}
"""The exit code of a ``--once`` run by the worst state of its checks."""


@dataclass(frozen=True)
class CheckRow:
    check: str
    state: State
    what: str
    where: str
    value: str
    threshold: str
    since: datetime
    """When the check entered its state (kept across runs in the state store)."""
    hint: str


@dataclass(frozen=True)
class DeliveryRow:
    check: str
    event: str
    state: State
    target: str
    """The target's non-secret name ("alert URL #1 (slack)", "alert_command")."""
    delivered: bool
    error: str | None


@dataclass(frozen=True)
class MonitorReport:
    mode: Mode
    storage_root: Path
    checked_at: datetime
    checks: list[CheckRow]
    facts: Facts = field(default_factory=Facts)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    """What this run appended as signed LogLines (restarts, state changes, alerts)."""
    passes: int = 1
    watcher_pid: int | None = None
    """The ``--watch`` monitor whose results a deferred ``--once`` shows."""
    metrics_textfile: Path | None = None
    stopped: bool = False
    worst: State = field(init=False)
    """The most severe state of any check: decides the exit code."""
    counts: dict[str, int] = field(init=False)
    """Checks per state."""

    def __post_init__(self) -> None:
        seen = Counter(row.state for row in self.checks)
        object.__setattr__(self, "worst", max(seen, key=lambda s: s.rank, default=State.OK))
        object.__setattr__(self, "counts", {state.value: seen[state] for state in State})

    @property
    def outcome(self) -> JobOutcome:
        """The job-run outcome: the monitor did its work; anything not OK is a finding (warning)."""
        return JobOutcome.OK if self.worst is State.OK else JobOutcome.WARNING

    @property
    def summary(self) -> str:
        counts = self.counts
        text = f"{len(self.checks)} checks: {counts['OK']} OK, {counts['WARN']} WARN, {counts['CRITICAL']} CRITICAL"
        bad = [row.check for row in self.checks if row.state is not State.OK]
        if bad:
            text += f" ({', '.join(bad[:8])}{', ...' if len(bad) > 8 else ''})"
        sent = sum(1 for d in self.deliveries if d.delivered)
        failed = len(self.deliveries) - sent
        if sent or failed:
            text += f"; {sent} alert(s) sent" + (f", {failed} not delivered (retried next run)" if failed else "")
        if self.mode is Mode.WATCH:
            text += f"; {self.passes} pass(es)"
        return text

    @property
    def quiet(self) -> bool:
        """Nothing happened worth a signed record: no restart, no state change, no alert (the job runner
        then writes no run LogLine, so a monitor every minute does not add 1,440 LogLines a day)."""
        return not self.recorded

    @property
    def exit_code(self) -> ExitCode:
        """0 all OK, 1 a WARN, 9 a CRITICAL (see docs/monitor.md); a stopped ``--watch`` exits 0."""
        if self.mode is Mode.WATCH:
            return ExitCode.OK
        return EXIT_CODES[self.worst]

    def status_document(self) -> dict[str, Any]:
        """What ``/status`` serves: the report as plain JSON."""
        body = to_jsonable(self)
        assert isinstance(body, dict)
        return {"schema_version": 1, "kind": "monitor", **body}


__all__ = ["EXIT_CODES", "CheckRow", "DeliveryRow", "Mode", "MonitorReport"]
