"""The job runner: lock, job-run record, signed LogLine, JSON log lines, storage errors, last successes."""

from __future__ import annotations

import errno
import json
import multiprocessing
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from vvctl.core.errors import ExitCode, LockedError, StorageError
from vvctl.core.jobs import JobContext, JobOutcome, JobSpec, exit_code_for, last_successes, run_job
from vvctl.core.keystore import load_verification_keys
from vvctl.core.layout import StorageLayout
from vvctl.core.locks import exclusive_lock
from vvctl.core.settings import Settings, load_settings
from vvctl.core.state import JobStatus, StateStore, is_disk_full, storage_error
from vvctl.core.verify import verify_paths
from vvctl.ops.bootstrap import bootstrap

SPEC = JobSpec("tidy", "tidied the box")


@dataclass(frozen=True)
class TidyReport:
    outcome: JobOutcome
    summary: str


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "box.toml"
    config.write_text(f'storage_root = "{tmp_path / "root"}"\n')
    loaded = load_settings(config, env={})
    bootstrap(loaded)
    return loaded.settings


def runs(settings: Settings) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(StorageLayout(settings.storage_root).state_db) as conn:
        return [tuple(r) for r in conn.execute("SELECT job, status, summary FROM job_runs WHERE job = 'tidy'")]


def job_records(settings: Settings) -> list[dict[str, object]]:
    directory = StorageLayout(settings.storage_root).loglines / "jobs"
    return [json.loads(p.read_bytes()) for p in sorted(directory.glob("*.logline.json"))]


def verify_all(settings: Settings) -> bool:
    keys = load_verification_keys(settings.key_store)
    return verify_paths([StorageLayout(settings.storage_root).loglines], keys).ok


def test_a_run_is_recorded_signed_and_logged(settings: Settings) -> None:
    seen: list[int] = []

    def body(ctx: JobContext) -> TidyReport:
        seen.append(ctx.run_id)
        return TidyReport(JobOutcome.OK, "removed 3 files")

    result = run_job(settings, SPEC, body)

    assert result.run_id == seen[0] and result.status is JobStatus.OK and result.exit_code is ExitCode.OK
    assert runs(settings) == [("tidy", "ok", "removed 3 files")]
    last = job_records(settings)[-1]
    assert last["did"] == "tidied the box" and last["this"] == "removed 3 files" and last["status"] == "ok"
    assert last["who"] == "vvctl tidy" and last["source"] == {"type": "job", "id": f"tidy-{result.run_id}"}
    assert result.logline is not None and result.logline.name.endswith(f"tidy-{result.run_id}.logline.json")
    assert verify_all(settings)
    lines = [
        json.loads(x) for x in (StorageLayout(settings.storage_root).logs / "vvctl.jsonl").read_text().split("\n") if x
    ]
    mine = [x for x in lines if x.get("job") == "tidy"]
    assert [x["msg"] for x in mine] == ["job started", "job finished"]
    assert mine[-1]["status"] == "ok" and mine[-1]["run_id"] == result.run_id


@pytest.mark.parametrize(
    ("outcome", "status", "logline_status", "code"),
    [
        (JobOutcome.OK, "ok", "ok", ExitCode.OK),
        (JobOutcome.WARNING, "warning", "warning", ExitCode.FINDINGS),
        (JobOutcome.FAILED, "failed", "failed", ExitCode.FINDINGS),
    ],
)
def test_the_report_outcome_decides_status_and_exit_code(
    settings: Settings, outcome: JobOutcome, status: str, logline_status: str, code: ExitCode
) -> None:
    result = run_job(settings, SPEC, lambda ctx: TidyReport(outcome, "done"))
    assert runs(settings)[-1][1] == status and job_records(settings)[-1]["status"] == logline_status
    assert result.exit_code is code is exit_code_for(outcome)


def test_a_second_run_exits_at_once_while_the_first_holds_the_lock(settings: Settings) -> None:
    layout = StorageLayout(settings.storage_root)
    called: list[bool] = []
    with exclusive_lock(layout.lock("tidy"), what="vvctl tidy"), pytest.raises(LockedError) as caught:
        run_job(settings, SPEC, lambda ctx: called.append(True) or TidyReport(JobOutcome.OK, "x"))
    assert caught.value.exit_code is ExitCode.LOCKED and "already running" in caught.value.message
    assert called == [] and runs(settings) == []  # no row, no LogLine: the run never started


def _die_mid_run(config: str) -> None:  # runs in a child process that is killed inside the job
    import os
    import signal

    loaded = load_settings(Path(config), env={})

    def body(ctx: JobContext) -> TidyReport:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    run_job(loaded.settings, SPEC, body)


def test_a_run_killed_mid_way_is_closed_as_killed_by_the_next_run(settings: Settings) -> None:
    assert settings.config_path is not None
    child = multiprocessing.get_context("spawn").Process(target=_die_mid_run, args=(str(settings.config_path),))
    child.start()
    child.join(60)
    assert child.exitcode == -9
    assert runs(settings) == [("tidy", "running", None)]

    run_job(settings, SPEC, lambda ctx: TidyReport(JobOutcome.OK, "fine"))
    (killed, ok) = runs(settings)
    assert killed[1] == "killed" and "ended without finishing" in str(killed[2]) and ok[1] == "ok"


def test_a_failing_body_closes_its_run_as_failed_with_a_signed_record(settings: Settings) -> None:
    def body(ctx: JobContext) -> TidyReport:
        ctx.progress = "removed 2 of 5 files"
        raise StorageError("cannot remove /x: Permission denied")

    with pytest.raises(StorageError):
        run_job(settings, SPEC, body)
    assert runs(settings) == [("tidy", "failed", "removed 2 of 5 files; stopped: cannot remove /x: Permission denied")]
    assert job_records(settings)[-1]["status"] == "failed" and verify_all(settings)


def test_os_and_sqlite_errors_become_exit_6_with_the_disk_full_said_plainly(settings: Settings) -> None:
    def body(ctx: JobContext) -> TidyReport:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError) as caught:
        run_job(settings, SPEC, body)
    assert caught.value.exit_code is ExitCode.STORAGE and caught.value.message.startswith("disk full while vvctl tidy")
    assert runs(settings)[-1][1] == "failed"

    full = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(full) and "disk full" in storage_error(full, "writing x").message
    denied = storage_error(PermissionError(errno.EACCES, "Permission denied"), "writing y")
    assert denied.message == "writing y: Permission denied" and not is_disk_full(denied)


def test_interrupt_is_recorded_as_interrupted(settings: Settings) -> None:
    def body(ctx: JobContext) -> TidyReport:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(settings, SPEC, body)
    assert runs(settings)[-1][1] == "interrupted" and job_records(settings)[-1]["status"] == "warning"


def test_events_inside_a_run_are_signed_records_of_the_jobs_log(settings: Settings) -> None:
    def body(ctx: JobContext) -> TidyReport:
        ctx.record(
            "restarted a container", "web restarted (unhealthy for 90 s)", source={"type": "container", "id": "web"}
        )
        return TidyReport(JobOutcome.OK, "1 restart")

    result = run_job(settings, SPEC, body)
    records = job_records(settings)
    assert [r["did"] for r in records[-2:]] == ["restarted a container", "tidied the box"]
    assert result.loglines[-1] == result.logline and len(result.loglines) == 2 and verify_all(settings)


def test_last_successes_is_what_the_dead_man_check_reads(settings: Settings) -> None:
    assert "tidy" not in last_successes(settings)
    first = run_job(settings, SPEC, lambda ctx: TidyReport(JobOutcome.WARNING, "ok-ish"))
    run_job(settings, SPEC, lambda ctx: TidyReport(JobOutcome.FAILED, "no"))
    success = last_successes(settings)["tidy"]
    assert success.id == first.run_id and success.status is JobStatus.WARNING
    with StateStore(StorageLayout(settings.storage_root).state_db) as store:
        assert store.last_job("tidy") is not None and store.last_job("tidy").status is JobStatus.FAILED  # type: ignore[union-attr]


@dataclass(frozen=True)
class QuietReport:
    outcome: JobOutcome
    summary: str
    quiet: bool


def test_a_quiet_run_is_recorded_without_a_run_logline(settings: Settings) -> None:
    before = len(job_records(settings))
    quiet = run_job(settings, SPEC, lambda ctx: QuietReport(JobOutcome.WARNING, "nothing changed", True))
    assert quiet.logline is None and len(job_records(settings)) == before
    assert runs(settings)[-1] == ("tidy", "warning", "nothing changed")

    def eventful(ctx: JobContext) -> QuietReport:
        ctx.record("restarted a container", "web", source={"type": "container", "id": "web"})
        return QuietReport(JobOutcome.OK, "restarted web", False)

    loud = run_job(settings, SPEC, eventful)
    assert loud.logline is not None and [r["did"] for r in job_records(settings)[before:]] == [
        "restarted a container",
        "tidied the box",
    ]
    assert verify_all(settings)
