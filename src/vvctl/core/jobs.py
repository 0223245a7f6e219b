"""The job runner: how every scheduled job runs, so that a job's own module says only what it does.

:func:`run_job` gives each run of a job (``orchestrate``, ``cleanup``, ``export-logs``, ``monitor``,
``selftest``, ``keys``):

1. the per-job lock ``state/<job>.lock`` (a second run raises :class:`LockedError` at once: exit 4);
   then a lost state database with LogLines left is refused (``vvctl state rebuild`` says how to recover)
   instead of being silently recreated, and the disk-space reserve (:mod:`vvctl.core.reserve`) is
   allocated, or the run stops at once with exit 6 before it touches anything;
2. a fail-fast check that the key store can sign, before any work (an hour of work is not thrown away
   at the first LogLine);
3. a ``job_runs`` row in the state store: ``running`` at the start, closed with the report's outcome
   and one-line summary; rows of runs killed mid-way are closed as ``killed`` by the next run;
4. JSON log lines for the start and the end of the run in ``logs/``;
5. one signed LogLine in the ``jobs`` log at the end (``ok``, ``warning`` or ``failed``), also when the
   job raised (best effort: with the disk full the record may not fit; the row still tells); a report
   whose ``quiet`` attribute is true (nothing happened worth a record: a monitor pass without a change)
   gets none;
6. one translation of OS and SQLite storage errors into :class:`StorageError` (exit 6); when the disk is
   full the reserve is freed first, so the run's own bookkeeping still fits and no row stays ``running``.

The body returns a report that carries its own outcome (:class:`JobReport`); the CLI turns that
outcome into the exit code with :func:`exit_code_for`, so every command decides "exit 1" the same way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from vvctl.core.errors import ExitCode, InterruptedRun, StorageError, VVError
from vvctl.core.jsonlog import configure_file_logging
from vvctl.core.keystore import load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.locks import exclusive_lock
from vvctl.core.logline import LogLineDraft, LogLineWriter, WrittenLogLine
from vvctl.core.reserve import RESERVE_BYTES, SpaceReserve
from vvctl.core.settings import Settings
from vvctl.core.state import (
    JobRun,
    JobStatus,
    StateStore,
    free_bytes,
    is_disk_full,
    state_missing_problem,
    storage_error,
)
from vvctl.core.timeutil import Clock, utcnow

log = logging.getLogger("vvctl.jobs")

JOBS_LOG = "jobs"


class _JobLog(logging.LoggerAdapter[logging.Logger]):
    """Adds the job's name and run id to every record, keeping the call's own ``extra=`` fields too."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class JobOutcome(StrEnum):
    """What a finished run achieved; decides the job-run status, the LogLine status and the exit code."""

    OK = "ok"
    WARNING = "warning"
    """The job did its work and found something a person should look at (exit 1: findings)."""
    FAILED = "failed"
    """The job ran to its end but did not achieve its goal (exit 1: findings)."""


_RUN_STATUS = {JobOutcome.OK: JobStatus.OK, JobOutcome.WARNING: JobStatus.WARNING, JobOutcome.FAILED: JobStatus.FAILED}
_LOGLINE_STATUS = {
    JobStatus.OK: "ok",
    JobStatus.WARNING: "warning",
    JobStatus.INTERRUPTED: "warning",
    JobStatus.FAILED: "failed",
    JobStatus.KILLED: "failed",
    JobStatus.RUNNING: "warning",
}


class JobReport(Protocol):
    """What a job's body returns: its typed report, which knows its own outcome and one-line summary."""

    @property
    def outcome(self) -> JobOutcome: ...

    @property
    def summary(self) -> str: ...


R = TypeVar("R", bound=JobReport)


def exit_code_for(outcome: JobOutcome) -> ExitCode:
    """The one rule that turns a finished run's outcome into its exit code: anything but OK is findings."""
    return ExitCode.OK if outcome is JobOutcome.OK else ExitCode.FINDINGS


@dataclass(frozen=True)
class JobSpec:
    """A job's identity: ``name`` names its lock, its job-run rows and its LogLines; ``did`` is the
    LogLine's verb phrase ("ran the video pipeline", "cleaned up the storage")."""

    name: str
    did: str
    who: str = ""
    frees_space: bool = False
    """A job that exists to free disk space (cleanup) must run on a full disk: it starts on the reserve."""

    @property
    def signer_name(self) -> str:
        return self.who or f"vvctl {self.name}"


@dataclass
class JobContext:
    """What a running job may use: its settings, layout, clock, stop flag, run id and LogLine writer."""

    spec: JobSpec
    settings: Settings
    layout: StorageLayout
    clock: Clock
    stop: threading.Event
    run_id: int
    writer: LogLineWriter
    state: StateStore
    log: logging.LoggerAdapter[logging.Logger]
    reserve: SpaceReserve
    loglines: list[Path] = field(default_factory=list)
    progress: str | None = None
    """The job's latest one-line account of what it did so far; used as the summary if it fails half-way."""

    @property
    def source(self) -> dict[str, str]:
        return {"type": "job", "id": f"{self.spec.name}-{self.run_id}"}

    def record(
        self,
        did: str,
        this: str,
        *,
        status: str = "ok",
        source: Mapping[str, str] | None = None,
        log_name: str = JOBS_LOG,
        slug: str | None = None,
    ) -> WrittenLogLine:
        """Append a signed LogLine for an event inside the run (a restart, an alert, a watch pass)."""
        written = self.writer.append(
            log_name,
            LogLineDraft(
                who=self.spec.signer_name, did=did, this=this, status=status, source=dict(source or self.source)
            ),
            slug=slug or f"{self.spec.name}-{self.run_id}",
        )
        if log_name == JOBS_LOG:
            self.loglines.append(written.path)
        return written

    def disk_full(self, exc: BaseException) -> None:
        """A write failed: if the disk is full, free the reserve so the bookkeeping that follows fits."""
        if is_disk_full(exc):
            self.reserve.release()

    def record_run(self, status: JobStatus, this: str) -> WrittenLogLine:
        """The run's own LogLine (``did`` of the spec) with ``status`` mapped to a LogLine status."""
        return self.record(self.spec.did, this, status=_LOGLINE_STATUS[status])


@dataclass(frozen=True)
class JobRunResult(Generic[R]):
    """A finished run: the job's report plus the runner's record of it."""

    report: R
    run_id: int
    status: JobStatus
    logline: Path | None
    """The run's signed LogLine in the ``jobs`` log (None for a ``quiet`` run)."""
    loglines: tuple[Path, ...]
    """Every ``jobs`` LogLine of the run (event records first, the run's own last)."""
    duration_s: float

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.report.outcome)


def _failure(exc: BaseException) -> tuple[JobStatus, str]:
    if isinstance(exc, KeyboardInterrupt | InterruptedRun):
        return JobStatus.INTERRUPTED, "interrupted"
    if isinstance(exc, VVError):
        return JobStatus.FAILED, exc.message
    return JobStatus.FAILED, f"internal error ({type(exc).__name__})"


def _close_failed(ctx: JobContext, exc: BaseException) -> None:
    """Best effort: say why the run stopped, in the ``jobs`` log and the job-run row; ``exc`` goes on."""
    ctx.disk_full(exc)
    status, reason = _failure(exc)
    summary = f"{ctx.progress}; stopped: {reason}" if ctx.progress else f"stopped: {reason}"
    try:
        ctx.record_run(status, summary)
    except VVError as logline_error:
        ctx.log.error("could not append the job LogLine", extra={"error": logline_error.message})
    try:
        ctx.state.finish_job(ctx.run_id, status, summary)
    except VVError as db_error:
        ctx.log.error("could not close the job run", extra={"error": db_error.message})
    ctx.log.error("job stopped", extra={"status": status.value, "summary": summary})


def run_job(
    settings: Settings,
    spec: JobSpec,
    body: Callable[[JobContext], R],
    *,
    clock: Clock = utcnow,
    stop: threading.Event | None = None,
    layout: StorageLayout | None = None,
) -> JobRunResult[R]:
    """Run ``body`` as one run of the job ``spec`` (see the module docstring for what that gives).

    ``layout`` lets a caller pass a layout it already checked; by default it is ``settings.storage_root``'s.
    """
    layout = layout or StorageLayout(settings.storage_root)
    stop = threading.Event() if stop is None else stop
    configure_file_logging(
        layout.logs, level=settings.log_level, max_bytes=settings.log_max_bytes, backups=settings.log_backups
    )
    adapter = _JobLog(log, {"job": spec.name})
    with exclusive_lock(layout.lock(spec.name), what=f"vvctl {spec.name}"):
        problem = state_missing_problem(layout.state_db, layout.loglines)
        if problem is not None:
            raise StorageError(problem)
        reserve = SpaceReserve(layout.state)
        if spec.frees_space and free_bytes(layout.state) < RESERVE_BYTES:
            # The disk is (nearly) full: spend the reserve a previous run left, so the run can be recorded
            # and do its work; the next run of any job allocates it again once there is room.
            reserve.held = True
            reserve.release()
        else:
            reserve.acquire()
        writer = LogLineWriter(settings, clock=clock)
        load_keystore(writer.key_store)
        with StateStore(layout.state_db, clock=clock) as store:
            store.close_dead_jobs(spec.name)
            run_id = store.start_job(spec.name)
            adapter = _JobLog(log, {"job": spec.name, "run_id": run_id})
            ctx = JobContext(spec, settings, layout, clock, stop, run_id, writer, store, adapter, reserve)
            adapter.info("job started")
            started = time.monotonic()
            try:
                report = body(ctx)
            except (OSError, sqlite3.Error) as exc:
                translated = storage_error(exc, f"vvctl {spec.name}")
                _close_failed(ctx, translated)
                raise translated from exc
            except BaseException as exc:
                _close_failed(ctx, exc)
                raise
            # A report may say it was cut short by a stop request (``interrupted``): recorded as such.
            status = JobStatus.INTERRUPTED if getattr(report, "interrupted", False) else _RUN_STATUS[report.outcome]
            try:
                # A report may say nothing happened worth a signed record (``quiet``: a monitor pass that
                # found no change); its run is still a job_runs row and two JSON log lines.
                quiet = bool(getattr(report, "quiet", False)) and status is not JobStatus.INTERRUPTED
                written = None if quiet else ctx.record_run(status, report.summary)
            except VVError as exc:
                # The work is done; only the job's own record failed (disk full): say so in the row.
                ctx.disk_full(exc)
                store.finish_job(run_id, JobStatus.FAILED, f"{report.summary}; the job LogLine was not written: {exc}")
                raise
            store.finish_job(run_id, status, report.summary)
            duration = time.monotonic() - started
            adapter.info(
                "job finished",
                extra={"status": status.value, "summary": report.summary, "duration_s": round(duration, 3)},
            )
    return JobRunResult(report, run_id, status, written.path if written else None, tuple(ctx.loglines), duration)


def last_successes(settings: Settings) -> dict[str, JobRun]:
    """When each job last succeeded (ok or warning), read-only: what ``status`` and the dead-man check read."""
    layout = StorageLayout(settings.storage_root)
    if not layout.state_db.exists():
        return {}
    with StateStore(layout.state_db) as store:
        return store.last_successes()


__all__ = [
    "JOBS_LOG",
    "JobContext",
    "JobOutcome",
    "JobReport",
    "JobRunResult",
    "JobSpec",
    "exit_code_for",
    "last_successes",
    "run_job",
]
