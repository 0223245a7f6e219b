"""``vvctl selftest``: PASS on an installed box without touching its data, FAIL naming the step, recorded
as a job run the dead-man check reads."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.ops.install.conftest import clients_for, loaded_for
from vvctl.core.jobs import last_successes
from vvctl.core.state import JobStatus, StateStore
from vvctl.ops.install.install import install
from vvctl.ops.install.selftest import StepResult, selftest


def _snapshot(root: Path) -> dict[str, str]:
    """Every file of the storage root but the ones a job run writes (its log lines, LogLine, state)."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not relative.startswith(("logs/", "loglines/jobs/", "state/")):
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def installed(tmp_path: Path, box: tuple[Path, Path]) -> Path:
    config, root = box
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    install(loaded_for(config, root), system=True, clients=clients_for(None, cron_d=cron_d))
    return config


def test_selftest_passes_on_an_installed_box_and_touches_none_of_its_data(installed: Path, tmp_path: Path) -> None:
    settings = loaded_for(installed).settings
    root = settings.storage_root
    (root / "input" / "waiting.mp4").write_bytes(b"not analysed by the selftest")
    before = _snapshot(root)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = selftest(settings, scratch_parent=scratch)
    report = result.report
    assert report.passed, report.summary
    assert [s.name for s in report.steps] == ["pipeline", "loglines", "integrity"]
    assert all(s.result is StepResult.PASS and s.seconds >= 0 for s in report.steps)
    assert "people-walkway.mp4: done" in report.steps[0].detail
    assert result.exit_code == 0 and result.status is JobStatus.OK
    assert _snapshot(root) == before  # the sample clip went through a scratch root, not this one
    assert list(scratch.iterdir()) == []  # and the scratch root is gone
    assert "selftest" in last_successes(settings)  # what the monitor's dead-man check reads
    assert result.logline is not None and json.loads(result.logline.read_text())["who"] == "vvctl selftest"


def test_a_logline_altered_since_the_last_selftest_fails_the_loglines_step(installed: Path) -> None:
    settings = loaded_for(installed).settings
    assert selftest(settings).report.passed
    # Something written after it: then altered.
    install(loaded_for(installed), system=True, clients=clients_for(None, cron_d=installed.parent.parent / "cron.d"))
    jobs = settings.storage_root / "loglines" / "jobs"
    # Not the newest (the chain head): appending after an altered head is refused outright.
    altered = sorted(jobs.glob("*.logline.json"))[-2]
    record = json.loads(altered.read_text())
    record["this"] = record["this"] + " (edited)"
    altered.write_text(json.dumps(record))
    report = selftest(settings).report
    assert not report.passed
    steps = {s.name: s for s in report.steps}
    assert steps["loglines"].result is StepResult.FAIL and altered.name in steps["loglines"].detail
    assert steps["pipeline"].result is StepResult.PASS and steps["integrity"].result is StepResult.PASS
    assert report.summary.startswith("selftest FAIL: ")


def test_only_loglines_since_the_last_passing_selftest_are_read(installed: Path) -> None:
    settings = loaded_for(installed).settings
    assert selftest(settings).report.passed
    jobs = settings.storage_root / "loglines" / "jobs"
    # The records before the last selftest were written a day ago (here: within the same second).
    for path in jobs.glob("*.logline.json"):
        if json.loads(path.read_text())["who"] != "vvctl selftest":
            os.utime(path, (path.stat().st_atime - 86400, path.stat().st_mtime - 86400))
    oldest = min(jobs.glob("*.logline.json"))
    old = os.stat(oldest)
    oldest.write_text("damaged long ago, found by a full verify-logline, not by the daily test")
    os.utime(oldest, (old.st_atime, old.st_mtime))
    report = selftest(settings).report
    assert report.passed, report.summary
    assert report.since is not None


def test_a_drifted_file_fails_the_integrity_step(installed: Path) -> None:
    installed.write_text(installed.read_text() + "\n# edited after install\n")
    settings = loaded_for(installed).settings
    result = selftest(settings)
    steps = {s.name: s for s in result.report.steps}
    assert steps["integrity"].result is StepResult.FAIL and str(installed) in steps["integrity"].detail
    assert result.exit_code == 1 and result.status is JobStatus.FAILED
    with StateStore(settings.storage_root / "state" / "vvctl.sqlite3") as store:
        run = store.last_job("selftest")
    assert run is not None and run.status is JobStatus.FAILED and "integrity FAIL" in (run.summary or "")


def test_without_an_install_the_integrity_step_says_what_to_do(tmp_path: Path, box: tuple[Path, Path]) -> None:
    from vvctl.ops.bootstrap import bootstrap

    config, root = box
    bootstrap(loaded_for(config, root))
    report = selftest(loaded_for(config).settings).report
    steps = {s.name: s for s in report.steps}
    assert steps["pipeline"].result is StepResult.PASS
    assert steps["integrity"].result is StepResult.FAIL and "run 'vvctl install'" in steps["integrity"].detail
