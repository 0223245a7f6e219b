"""Each box and pipeline check crossing its thresholds, with real files, a real state store and a fake clock."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.ops.monitor.conftest import MakeBox
from tests.ops.monitor.fakes import FakeClock
from vvctl.core.alerts import Observation, State
from vvctl.core.layout import StorageLayout
from vvctl.core.logline import LogLineDraft, LogLineWriter
from vvctl.core.settings import Settings
from vvctl.core.state import JobStatus, StateStore
from vvctl.core.timeutil import rfc3339
from vvctl.ops.monitor import REGISTRY, MonitorClients, monitor_once
from vvctl.ops.monitor.checks import CheckContext, Facts, register, run_checks
from vvctl.ops.monitor.store import MonitorStore

GB = 1_000_000_000


def check(
    settings: Settings, name: str, clock: FakeClock, clients: MonitorClients | None = None
) -> tuple[list[Observation], Facts]:
    layout = StorageLayout(settings.storage_root)
    with MonitorStore(layout.state_db, clock=clock) as store, StateStore(layout.state_db, clock=clock) as jobs:
        ctx = CheckContext(settings, layout, clock(), store, jobs, clients or MonitorClients())
        return list(REGISTRY[name].function(ctx)), ctx.facts


def states(observations: list[Observation]) -> list[State]:
    return [o.state for o in observations]


@pytest.fixture
def box(make_box: MakeBox) -> Settings:
    return make_box()


def test_the_registry_runs_every_check_in_order() -> None:
    assert list(REGISTRY) == ["disk", "backlog", "quarantine", "deadman", "loglines", "gpu", "integrity", "containers"]


def test_free_space_against_its_floors(box: Settings, clock: FakeClock) -> None:
    free = shutil.disk_usage(box.storage_root).free / GB
    plenty = replace(box, min_free_space_gb=free / 4, min_free_space_critical_gb=free / 8)
    low = replace(box, min_free_space_gb=free * 2, min_free_space_critical_gb=free / 8)
    gone = replace(box, min_free_space_gb=free * 4, min_free_space_critical_gb=free * 2)
    assert [states(check(s, "disk", clock)[0]) for s in (plenty, low, gone)] == [
        [State.OK],
        [State.WARN],
        [State.CRITICAL],
    ]
    (observation,), facts = check(gone, "disk", clock)
    assert facts.free_bytes is not None and abs(facts.free_bytes / GB - free) < 1
    assert observation.threshold == f"WARN below {free * 4:g} GB, CRITICAL below {free * 2:g} GB"


def test_oldest_unprocessed_video_age(box: Settings, clock: FakeClock) -> None:
    layout = StorageLayout(box.storage_root)
    assert states(check(box, "backlog", clock)[0]) == [State.OK]  # empty input/
    video = layout.input / "cam1.mp4"
    video.write_bytes(b"not really a video")
    newer = layout.input / "cam2.mp4"
    newer.write_bytes(b"x")
    start = clock().timestamp()
    os.utime(video, (start, start))
    os.utime(newer, (start + 3000, start + 3000))
    (layout.input / ".cam3.mp4.part").write_bytes(b"an upload in progress is not counted")
    seen = []
    for minutes in (30, 61, 239, 241):
        clock.now = datetime.fromtimestamp(start, clock().tzinfo) + timedelta(minutes=minutes)
        (observation,), facts = check(box, "backlog", clock)
        seen.append(observation.state)
    assert seen == [State.OK, State.WARN, State.WARN, State.CRITICAL]
    assert facts.backlog_videos == 2 and facts.backlog_oldest_age_s == 241 * 60
    assert observation.value == "oldest 4.0 h old (cam1.mp4); 2 waiting"


def test_growth_of_corrupted(make_box: MakeBox, clock: FakeClock) -> None:
    box = make_box("quarantine_warn_count = 1\nquarantine_critical_count = 3\nquarantine_window_s = 3600")
    corrupted = StorageLayout(box.storage_root).corrupted
    old = corrupted / "old.mp4.error.json"
    old.write_text("{}")
    long_ago = clock().timestamp() - 7200
    os.utime(old, (long_ago, long_ago))
    assert states(check(box, "quarantine", clock)[0]) == [State.OK]  # quarantined before the window
    now = clock().timestamp()
    for n, expected in ((1, State.WARN), (2, State.WARN), (3, State.CRITICAL)):
        record = corrupted / f"bad{n}.mp4.error.json"
        record.write_text("{}")
        os.utime(record, (now, now))
        (observation,), facts = check(box, "quarantine", clock)
        assert observation.state is expected and facts.quarantined_recent == n
    assert observation.value == "3 in the last 60 min (newest: bad3.mp4)"
    clock.advance(3601)  # the window slides past them
    assert states(check(box, "quarantine", clock)[0]) == [State.OK]


def _run(settings: Settings, clock: FakeClock, job: str, status: JobStatus, *, minutes: float = 0.5) -> None:
    with StateStore(StorageLayout(settings.storage_root).state_db, clock=clock) as store:
        run_id = store.start_job(job)
        clock.advance(minutes * 60)
        if status is not JobStatus.RUNNING:
            store.finish_job(run_id, status, "test")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Cron schedules are read in local time, as cron does: pin it for the daily schedule."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_dead_man_against_a_five_minute_schedule(make_box: MakeBox, clock: FakeClock, utc: None) -> None:
    box = make_box('deadman_grace_s = 60\nschedules = {orchestrate = "*/5 * * * *"}')
    clock.now = clock().replace(hour=10, minute=0, second=0)
    _run(box, clock, "orchestrate", JobStatus.OK, minutes=2)  # finished 10:02; the next run is due 10:05

    def at(hour: int, minute: int, second: int = 0) -> State:
        clock.now = clock().replace(hour=hour, minute=minute, second=second)
        (observation,), facts = check(box, "deadman", clock)
        assert set(facts.last_success) == {"orchestrate"}
        return observation.state

    assert at(10, 6) is State.OK  # due 10:05, grace 60 s
    assert at(10, 6, 1) is State.WARN
    assert at(10, 11) is State.WARN  # the 10:10 run still within its grace
    assert at(10, 11, 1) is State.CRITICAL  # two runs missed
    _run(box, clock, "orchestrate", JobStatus.FAILED)
    assert at(10, 20) is State.CRITICAL  # a failed run is no success
    _run(box, clock, "orchestrate", JobStatus.WARNING)
    assert at(10, 21) is State.OK  # a run with findings did its work


def test_dead_man_daily_job(make_box: MakeBox, clock: FakeClock, utc: None) -> None:
    box = make_box('deadman_grace_s = 600\nschedules = {cleanup = "45 2 * * *"}')
    clock.now = clock().replace(hour=2, minute=45, second=0)
    _run(box, clock, "cleanup", JobStatus.OK, minutes=1)  # finished 02:46; next due tomorrow 02:45
    day = clock() + timedelta(days=1)

    def at(offset: timedelta) -> State:
        clock.now = day.replace(hour=2, minute=45, second=0) + offset
        (observation,), _ = check(box, "deadman", clock)
        return observation.state

    assert at(timedelta(hours=-12)) is State.OK
    assert at(timedelta(minutes=10)) is State.OK
    assert at(timedelta(minutes=10, seconds=1)) is State.WARN
    assert at(timedelta(days=1, minutes=10, seconds=1)) is State.CRITICAL


def test_dead_man_running_job_and_never_run_job(make_box: MakeBox, clock: FakeClock) -> None:
    box = make_box('deadman_grace_s = 0\nschedules = {orchestrate = "* * * * *", selftest = "*/5 * * * *"}')
    layout = StorageLayout(box.storage_root)
    _run(box, clock, "orchestrate", JobStatus.RUNNING)
    layout.lock("orchestrate").write_text(f"{os.getpid()}\n")  # this process "holds" it
    clock.advance(3600)
    observations, _ = check(box, "deadman", clock)
    found = {o.check: o for o in observations}
    assert found["deadman:orchestrate"].state is State.OK and found["deadman:orchestrate"].value.startswith(
        "running now"
    )
    assert found["deadman:selftest"].state is State.OK
    assert found["deadman:selftest"].value == "never ran on this box: watched from its first run"
    _run(box, clock, "selftest", JobStatus.FAILED)  # installed now, but it fails
    clock.advance(601)
    observations, _ = check(box, "deadman", clock)
    (selftest,) = [o for o in observations if o.check == "deadman:selftest"]
    assert selftest.state is State.CRITICAL and selftest.value.startswith("never succeeded (first run ")
    layout.lock("orchestrate").write_text("999999999\n")  # the holder died: not running any more
    observations, _ = check(box, "deadman", clock)
    assert {o.check: o.state for o in observations}["deadman:orchestrate"] is State.CRITICAL


def _append(settings: Settings, clock: FakeClock, n: int, log: str = "videos") -> list[Path]:
    writer = LogLineWriter(settings, clock=clock)
    return [
        writer.append(
            log, LogLineDraft("vvctl test", "did", f"record {i}", "ok", {"type": "job", "id": "t"}), slug="t"
        ).path
        for i in range(n)
    ]


def test_loglines_are_verified_incrementally(box: Settings, clock: FakeClock) -> None:
    _append(box, clock, 50)
    bootstrap_records = len(list((StorageLayout(box.storage_root).loglines / "jobs").glob("*.logline.json")))
    observations, facts = check(box, "loglines", clock)
    assert states(observations) == [State.OK, State.OK]  # jobs (bootstrap's records) and videos
    assert facts.loglines_verified == {"jobs": bootstrap_records, "videos": 50}
    _, facts = check(box, "loglines", clock)
    assert facts.loglines_verified == {"jobs": 0, "videos": 0}  # nothing is verified twice
    _append(box, clock, 3)
    observations, facts = check(box, "loglines", clock)
    assert facts.loglines_verified["videos"] == 3
    assert [o.value for o in observations if o.check == "loglines:videos"] == ["3 new verified, verified up to seq 53"]


def test_a_tampered_new_logline_is_critical_until_fixed(box: Settings, clock: FakeClock) -> None:
    _append(box, clock, 3)
    check(box, "loglines", clock)
    paths = _append(box, clock, 3)
    original = paths[1].read_bytes()
    paths[1].write_bytes(original.replace(b"record 1", b"record X"))
    observations, facts = check(box, "loglines", clock)
    (videos,) = [o for o in observations if o.check == "loglines:videos"]
    assert videos.state is State.CRITICAL and videos.value.startswith("seq 5 (") and "bad_signature" in videos.value
    assert facts.loglines_verified["videos"] == 1  # seq 4 verified; stops at the bad one
    observations, _ = check(box, "loglines", clock)
    assert [o.state for o in observations if o.check == "loglines:videos"] == [State.CRITICAL]  # still bad
    paths[1].write_bytes(original)
    observations, facts = check(box, "loglines", clock)
    assert [o.state for o in observations if o.check == "loglines:videos"] == [State.OK]
    assert facts.loglines_verified["videos"] == 2


@pytest.mark.parametrize("damage", ["delete-middle", "alter-head"])
def test_gaps_and_a_changed_verified_head_are_critical(box: Settings, clock: FakeClock, damage: str) -> None:
    paths = _append(box, clock, 4)
    check(box, "loglines", clock)
    more = _append(box, clock, 3)
    if damage == "delete-middle":
        more[1].unlink()
        expected = "seq 6 is missing but seq 7 exists"
    else:
        paths[-1].write_bytes(paths[-1].read_bytes().replace(b"record 3", b"record Z"))
        expected = "seq 4, verified before, was changed or duplicated"
    observations, _ = check(box, "loglines", clock)
    (videos,) = [o for o in observations if o.check == "loglines:videos"]
    assert videos.state is State.CRITICAL and videos.value.startswith(expected)


def test_loglines_pruned_after_an_export_are_not_a_problem(box: Settings, clock: FakeClock) -> None:
    paths = _append(box, clock, 6)
    for path in paths[:2]:  # exported and pruned before the monitor first looked
        path.unlink()
    observations, facts = check(box, "loglines", clock)
    assert [o.state for o in observations if o.check == "loglines:videos"] == [State.OK]
    assert facts.loglines_verified["videos"] == 4
    more = _append(box, clock, 2)
    for path in paths[2:]:  # the rest, including the head verified last, exported and pruned too
        path.unlink()
    observations, facts = check(box, "loglines", clock)
    assert [o.state for o in observations if o.check == "loglines:videos"] == [State.OK]
    assert facts.loglines_verified["videos"] == 2
    assert len(more) == 2
    (newest,) = _append(box, clock, 1)
    newest.write_bytes(newest.read_bytes().replace(b"record 0", b"record Y"))  # tampering still shows
    observations, _ = check(box, "loglines", clock)
    assert [o.state for o in observations if o.check == "loglines:videos"] == [State.CRITICAL]


def _analysed(settings: Settings, clock: FakeClock, *, provider: str, fallback: bool) -> None:
    layout = StorageLayout(settings.storage_root)
    analytic = layout.analytic / f"v{provider}.analytic.json"
    model = {
        "provider": provider,
        "requested_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "gpu_fallback": fallback,
        "fallback_reason": "libcudnn.so.9: cannot open shared object file" if fallback else None,
    }
    analytic.write_text(json.dumps({"model": model}))
    with StateStore(layout.state_db, clock=clock) as store:
        store._write(
            "INSERT INTO videos (sha256, name, path, size, status, first_seen, finished_at, analytic_path)"
            " VALUES (?, 'v.mp4', '/x', 1, 'done', ?, ?, ?)",
            (provider.ljust(64, "0")[:64], rfc3339(clock()), rfc3339(clock()), str(analytic)),
        )
    clock.advance(60)


def test_gpu_silent_fallback(box: Settings, clock: FakeClock) -> None:
    with_gpu, without_gpu = MonitorClients(gpu_present=lambda: True), MonitorClients(gpu_present=lambda: False)
    assert check(box, "gpu", clock, with_gpu)[0][0].value == "no analysed video yet"
    _analysed(box, clock, provider="CPUExecutionProvider", fallback=True)
    (observation,), facts = check(box, "gpu", clock, with_gpu)
    assert observation.state is State.WARN and "libcudnn" in observation.value
    assert facts.provider == "CPUExecutionProvider"
    (observation,), _ = check(box, "gpu", clock, without_gpu)
    assert observation.state is State.OK and observation.value == "CPUExecutionProvider (no GPU on this machine)"
    _analysed(box, clock, provider="CUDAExecutionProvider", fallback=False)  # the newest video ran on the GPU
    (observation,), facts = check(box, "gpu", clock, with_gpu)
    assert observation.state is State.OK and facts.provider == "CUDAExecutionProvider"


def test_a_failing_check_is_a_warn_and_the_others_run(box: Settings, clock: FakeClock) -> None:
    layout = StorageLayout(box.storage_root)
    shutil.rmtree(layout.input)
    with MonitorStore(layout.state_db, clock=clock) as store, StateStore(layout.state_db, clock=clock) as jobs:
        ctx = CheckContext(box, layout, clock(), store, jobs, MonitorClients())
        observations = run_checks(ctx, ["disk", "backlog", "quarantine"])
    assert [(o.check, o.state) for o in observations] == [
        ("disk", State.OK),
        ("backlog", State.WARN),
        ("quarantine", State.OK),
    ]
    assert "the check could not run" in observations[1].value and "run 'vvctl bootstrap' first" in observations[1].value


def test_a_new_check_is_one_registered_function(box: Settings, clock: FakeClock) -> None:
    @register("manifest-test", "the integrity manifest matches")
    def manifest(ctx: CheckContext) -> list[Observation]:
        return [Observation("manifest-test", State.WARN, "the manifest", "/etc/vvctl", "2 files differ", "none differ")]

    try:
        report = monitor_once(replace(box, schedules={}), sinks=[], clock=clock)
    finally:
        del REGISTRY["manifest-test"]
    assert report.checks[-1].check == "manifest-test" and report.exit_code == 1
