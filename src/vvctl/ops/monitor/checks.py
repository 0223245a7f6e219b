"""The monitor's checks: a registry of functions, each looking at one part of the box and the pipeline.

A check is a function ``(CheckContext) -> Iterable[Observation]`` registered with :func:`register`; the
monitor runs every registered check in order on each pass. One check may report several observations
(one per container, one per job, one per log). A check that raises a :class:`VVError`, an OSError or a
SQLite error becomes a WARN observation of its own ("could not run") and the other checks still run.

Adding a check is one decorated function in a module that the monitor imports (``vvctl.ops.monitor``
imports this module and :mod:`vvctl.ops.monitor.containers`); its observation ids must be stable,
since alert state and dedup are keyed on them.

The box and pipeline checks here: free space under ``storage_root``, the age of the oldest video waiting
in ``input/``, videos newly quarantined into ``corrupted/``, the dead-man switch of every scheduled job,
incremental verification of new LogLines, and a GPU requested but inference ending on the CPU.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import stat
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import Distribution
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vvctl.core.alerts import Observation, State
from vvctl.core.errors import VVError
from vvctl.core.hardware import has_gpu
from vvctl.core.keystore import load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.locks import lock_holder
from vvctl.core.logline import LOG_NAME, ZERO_HASH, chain_hash, scan_log_files
from vvctl.core.schedules import job_schedules, next_fire
from vvctl.core.settings import Settings
from vvctl.core.signing import VerificationKeys
from vvctl.core.state import JobStatus, StateStore
from vvctl.core.timeutil import parse_rfc3339, rfc3339
from vvctl.core.verify import check_file
from vvctl.ops.monitor.store import MonitorStore, VerifiedHead
from vvctl.pipeline.discovery import list_videos

if TYPE_CHECKING:
    from docker import DockerClient

GB = 1_000_000_000
VERIFY_BATCH = 20_000
"""LogLines verified per log and pass at most: a first run on a box with a year of records spreads the
work over a few passes instead of holding the monitor for minutes."""


def default_docker_client() -> DockerClient:
    """A client from the environment (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``)."""
    import docker
    import docker.errors

    with warnings.catch_warnings():
        # When the engine is not there the SDK drops its half-made connection without closing it; collect
        # it here, quietly, rather than let a ResourceWarning surface at some later garbage collection.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return docker.from_env(timeout=15)
        except docker.errors.DockerException as exc:
            message = str(exc)
        gc.collect()
    raise docker.errors.DockerException(message)


def installed_distribution() -> Distribution | None:
    from vvctl.ops.install.entry import this_distribution

    try:
        return this_distribution()
    except VVError:
        return None


@dataclass(frozen=True)
class MonitorClients:
    """What the checks use to reach outside the storage root; tests pass fakes through here."""

    docker: Callable[[], DockerClient] = default_docker_client
    gpu_present: Callable[[], bool] = has_gpu
    distribution: Callable[[], Distribution | None] = installed_distribution
    """The installed vvctl whose files the integrity check compares with the manifest."""


@dataclass(frozen=True)
class MonitorEvent:
    """Something the monitor did or noticed that deserves a signed LogLine (a restart, Docker's restarts)."""

    did: str
    this: str
    status: str
    source: Mapping[str, str]


@dataclass
class Facts:
    """Numbers the checks read on the way, for the metrics."""

    free_bytes: int | None = None
    backlog_videos: int | None = None
    backlog_oldest_age_s: float | None = None
    quarantined_recent: int | None = None
    videos: dict[str, int] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)
    """Unix time of each scheduled job's last successful run."""
    provider: str | None = None
    requested_providers: tuple[str, ...] = ()
    restarts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per container: (restarts by vvctl, restarts by Docker itself), all time."""
    loglines_verified: dict[str, int] = field(default_factory=dict)
    """Per log: records verified on this pass."""
    docker_reachable: bool | None = None


@dataclass
class CheckContext:
    settings: Settings
    layout: StorageLayout
    now: datetime
    store: MonitorStore
    jobs: StateStore
    clients: MonitorClients
    facts: Facts = field(default_factory=Facts)
    events: list[MonitorEvent] = field(default_factory=list)
    _keys: VerificationKeys | None = None

    def verification_keys(self) -> VerificationKeys:
        if self._keys is None:
            self._keys = load_keystore(self.settings.key_store).verification_keys()
        return self._keys


CheckFunction = Callable[[CheckContext], Iterable[Observation]]


@dataclass(frozen=True)
class Check:
    name: str
    function: CheckFunction
    what: str


REGISTRY: dict[str, Check] = {}


def register(name: str, what: str) -> Callable[[CheckFunction], CheckFunction]:
    """Add a check to the registry (run in registration order)."""

    def add(function: CheckFunction) -> CheckFunction:
        if name in REGISTRY:
            raise ValueError(f"a check named {name!r} is already registered")
        REGISTRY[name] = Check(name, function, what)
        return function

    return add


def run_checks(ctx: CheckContext, names: Iterable[str] | None = None) -> list[Observation]:
    """Every registered check (or the ``names`` given), in order; a check that fails is a WARN of its own."""
    observations: list[Observation] = []
    for name in names if names is not None else list(REGISTRY):
        check = REGISTRY[name]
        try:
            observations.extend(check.function(ctx))
        except (VVError, OSError, sqlite3.Error) as exc:
            message = exc.message if isinstance(exc, VVError) else (getattr(exc, "strerror", None) or str(exc))
            observations.append(
                Observation(
                    check=name,
                    state=State.WARN,
                    what=check.what,
                    where=str(ctx.layout.root),
                    value=f"the check could not run: {message}",
                    threshold="the check runs",
                    hint="see the monitor's log in logs/vvctl.jsonl; run 'vvctl monitor --once -v'",
                )
            )
    return observations


def _level(value: float, warn: float, critical: float, *, below: bool) -> State:
    """CRITICAL/WARN when ``value`` crosses a floor (``below``) or a ceiling."""
    if below:
        return State.CRITICAL if value < critical else State.WARN if value < warn else State.OK
    return State.CRITICAL if value >= critical else State.WARN if value >= warn else State.OK


def duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- the box ---------------------------------------------------------------------------------------------------


@register("disk", "free space under the storage root")
def disk(ctx: CheckContext) -> Iterable[Observation]:
    settings = ctx.settings
    free = shutil.disk_usage(ctx.layout.root).free
    ctx.facts.free_bytes = free
    state = _level(free / GB, settings.min_free_space_gb, settings.min_free_space_critical_gb, below=True)
    yield Observation(
        check="disk",
        state=state,
        what="free space under the storage root",
        where=str(ctx.layout.root),
        value=f"{free / GB:.2f} GB free",
        threshold=f"WARN below {settings.min_free_space_gb:g} GB,"
        f" CRITICAL below {settings.min_free_space_critical_gb:g} GB",
        hint="free space: 'vvctl cleanup', or move old exports/ and processed/ off the box",
    )


# -- the pipeline ----------------------------------------------------------------------------------------------


@register("backlog", "oldest unprocessed video in input/")
def backlog(ctx: CheckContext) -> Iterable[Observation]:
    settings = ctx.settings
    videos = list_videos(ctx.layout.input, settings.video_extensions, max_depth=settings.input_max_depth)
    ctx.facts.backlog_videos = len(videos)
    age = max(ctx.now.timestamp() - videos[0].mtime_ns / 1e9, 0.0) if videos else 0.0
    ctx.facts.backlog_oldest_age_s = round(age, 1) if videos else None
    state = _level(age, settings.backlog_warn_age_s, settings.backlog_critical_age_s, below=False)
    value = (
        f"oldest {duration(age)} old ({videos[0].path.name}); {len(videos)} waiting" if videos else "input/ is empty"
    )
    yield Observation(
        check="backlog",
        state=state if videos else State.OK,
        what="oldest unprocessed video in input/",
        where=str(ctx.layout.input),
        value=value,
        threshold=f"WARN from {duration(settings.backlog_warn_age_s)},"
        f" CRITICAL from {duration(settings.backlog_critical_age_s)}",
        hint="is orchestrate running? 'vvctl status', the orchestrate lines in logs/vvctl.jsonl, the crontab",
    )


def _recent_error_records(directory: Path, since: float) -> list[str]:
    found: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.name.endswith(".error.json"):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mtime >= since:
            found.append(entry.name.removesuffix(".error.json"))
    return sorted(found)


@register("quarantine", "videos quarantined into corrupted/")
def quarantine(ctx: CheckContext) -> Iterable[Observation]:
    settings = ctx.settings
    window = settings.quarantine_window_s
    recent = _recent_error_records(ctx.layout.corrupted, ctx.now.timestamp() - window)
    ctx.facts.quarantined_recent = len(recent)
    ctx.facts.videos = ctx.store.video_counts()
    state = _level(len(recent), settings.quarantine_warn_count, settings.quarantine_critical_count, below=False)
    names = f" (newest: {recent[-1]})" if recent else ""
    yield Observation(
        check="quarantine",
        state=state,
        what="videos quarantined into corrupted/",
        where=str(ctx.layout.corrupted),
        value=f"{len(recent)} in the last {duration(window)}{names}",
        threshold=f"WARN from {settings.quarantine_warn_count}, CRITICAL from {settings.quarantine_critical_count}"
        f" per {duration(window)}",
        hint="read the <video>.error.json files in corrupted/: a broken camera, uploader or codec",
    )


# -- the dead-man switch -----------------------------------------------------------------------------------------


def _job_running(ctx: CheckContext, job: str) -> datetime | None:
    """When the job's current run started, if it is running now (its row open and its lock holder alive)."""
    run = ctx.jobs.last_job(job)
    if run is None or run.status is not JobStatus.RUNNING or lock_holder(ctx.layout.lock(job)) is None:
        return None
    return parse_rfc3339(run.started_at)


@register("deadman", "scheduled jobs succeeding on time")
def deadman(ctx: CheckContext) -> Iterable[Observation]:
    settings = ctx.settings
    grace = timedelta(seconds=settings.deadman_grace_s)
    successes = ctx.jobs.last_successes()
    for schedule in sorted(job_schedules(settings), key=lambda s: s.name):
        job, expression = schedule.name, schedule.expression
        last = successes.get(job)
        finished = parse_rfc3339(last.finished_at or last.started_at) if last is not None else None
        if finished is not None:
            ctx.facts.last_success[job] = finished.timestamp()
        first = ctx.store.first_job_start(job)
        running = _job_running(ctx, job)
        due = next_fire(expression, finished or first or ctx.now)
        then = next_fire(expression, due)
        if running is not None:
            state, value = State.OK, f"running now (since {rfc3339(running)})"
        elif first is None:
            # Not installed here yet (no run at all, not even a failed one): watched from its first run on.
            state, value = State.OK, "never ran on this box: watched from its first run"
        else:
            state = State.OK if ctx.now <= due + grace else State.WARN if ctx.now <= then + grace else State.CRITICAL
            value = (
                f"last success {duration((ctx.now - finished).total_seconds())} ago ({rfc3339(finished)})"
                if finished is not None
                else f"never succeeded (first run {rfc3339(first)})"
            )
        yield Observation(
            check=f"deadman:{job}",
            state=state,
            what=f"the scheduled job '{job}' succeeding on time",
            where=job,
            value=value,
            threshold=f"a success for the run due {rfc3339(due)} ('{expression}') within"
            f" {duration(grace.total_seconds())}; CRITICAL if the next run is missed too",
            hint=f"is 'vvctl {job}' in the crontab and succeeding? 'vvctl status' shows its last runs",
        )


# -- LogLines ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verified:
    head: VerifiedHead | None
    count: int
    problem: str | None


def verify_new_loglines(
    directory: Path, log: str, keys: VerificationKeys, head: VerifiedHead | None, *, limit: int = VERIFY_BATCH
) -> _Verified:
    """Verify the records after ``head`` (the last one verified before), in seq order, up to ``limit``.

    Each new record must verify on its own (signature, canonical form, known key) and link to the one
    before it; the head verified last time must still be there with the same bytes. Older records are
    not read again: a full audit is ``vvctl verify-logline``. LogLines pruned after an export are expected
    to be gone: only what is still there is read.
    """
    files = scan_log_files(directory)
    prev: str | None
    if head is not None:
        seq, prev = head.seq, head.hash
        paths = files.get(head.seq, [])
        # A head no longer there was pruned once exported (export-logs): the next record must still link
        # to its recorded hash. One still there must have the same bytes.
        if paths:
            try:
                same = len(paths) == 1 and chain_hash(paths[0].read_bytes()) == head.hash
            except OSError:
                same = False
            if not same:
                return _Verified(head, 0, f"seq {head.seq}, verified before, was changed or duplicated")
    elif files and min(files) > 1:
        # The log's start was exported and pruned before the monitor first saw it: start at the first
        # record present (its link backwards is what verify-logline --anchor checks against the export).
        seq, prev = min(files) - 1, None
    else:
        seq, prev = 0, ZERO_HASH
    count = 0
    problem: str | None = None
    while count < limit and seq + 1 in files:
        paths = files[seq + 1]
        if len(paths) > 1:
            problem = f"seq {seq + 1} exists {len(paths)} times"
            break
        verdict = check_file(paths[0], keys)
        if not verdict.valid:
            problem = f"seq {seq + 1} ({paths[0].name}): {verdict.reason} {verdict.detail}".strip()
            break
        if verdict.seq != seq + 1 or verdict.log != log:
            problem = f"{paths[0].name} claims log {verdict.log!r} seq {verdict.seq}"
            break
        if prev is not None and verdict.prev != prev:
            problem = f"seq {seq + 1} ({paths[0].name}): its prev is not the hash of seq {seq}"
            break
        assert verdict.hash is not None
        seq, prev = seq + 1, verdict.hash
        count += 1
    if problem is None and count < limit:
        later = [n for n in files if n > seq + 1]
        if later:
            problem = f"seq {seq + 1} is missing but seq {min(later)} exists"
    new_head = VerifiedHead(log, seq, prev) if count and prev is not None else head
    return _Verified(new_head, count, problem)


def _log_names(loglines: Path) -> list[str]:
    try:
        entries = list(os.scandir(loglines))
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and LOG_NAME.fullmatch(e.name))


@register("loglines", "LogLines written since the last check verify")
def loglines(ctx: CheckContext) -> Iterable[Observation]:
    for log in _log_names(ctx.layout.loglines):
        before = ctx.store.verified_head(log)
        result = verify_new_loglines(ctx.layout.loglines / log, log, ctx.verification_keys(), before)
        if result.head is not None and result.head != before:
            ctx.store.put_verified_head(result.head, ctx.now)
        ctx.facts.loglines_verified[log] = result.count
        head = f"verified up to seq {result.head.seq}" if result.head is not None else "no LogLine yet"
        yield Observation(
            check=f"loglines:{log}",
            state=State.CRITICAL if result.problem else State.OK,
            what=f"the '{log}' LogLines verify",
            where=str(ctx.layout.loglines / log),
            value=(f"{result.problem}; " if result.problem else "") + f"{result.count} new verified, {head}",
            threshold="every new record verifies and links to the one before it",
            hint=f"run 'vvctl verify-logline {ctx.layout.loglines / log}' for the full report; a LogLine was"
            " altered, removed or written with an unknown key",
        )


# -- inference ---------------------------------------------------------------------------------------------------


def _model_of(analytic: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(analytic.read_bytes())
    except (OSError, ValueError):
        return None
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, dict) else None


@register("gpu", "inference running on the GPU it asked for")
def gpu(ctx: CheckContext) -> Iterable[Observation]:
    analytic = ctx.store.latest_analytic()
    model = _model_of(analytic) if analytic is not None else None
    where = str(analytic) if analytic is not None else str(ctx.layout.analytic)
    threshold = "a GPU provider asked for runs on the GPU when this machine has one"
    hint = "check the NVIDIA driver and CUDA/cuDNN/TensorRT libraries onnxruntime-gpu needs ('nvidia-smi')"
    if model is None:
        yield Observation("gpu", State.OK, "inference provider", where, "no analysed video yet", threshold, hint)
        return
    provider = str(model.get("provider", "?"))
    requested = tuple(str(p) for p in model.get("requested_providers", ()))
    ctx.facts.provider, ctx.facts.requested_providers = provider, requested
    fell_back = bool(model.get("gpu_fallback"))
    if not fell_back:
        value, state = f"{provider} (asked for: {', '.join(requested)})", State.OK
    elif ctx.clients.gpu_present():
        reason = model.get("fallback_reason") or "no reason recorded"
        value, state = f"{provider} although {requested[0]} was asked for and a GPU is present: {reason}", State.WARN
    else:
        value, state = f"{provider} (no GPU on this machine)", State.OK
    yield Observation("gpu", state, "inference provider of the last analysed video", where, value, threshold, hint)


@register("integrity", "installed files match the signed integrity manifest")
def integrity(ctx: CheckContext) -> Iterable[Observation]:
    from vvctl.ops.install.manifest import manifest_path, verify_integrity

    what = "installed files match the signed integrity manifest"
    threshold = "a manifest whose signature verifies; no recorded file changed or missing, none unlisted"
    path = manifest_path(ctx.settings)
    if not path.exists():
        # A box not set up with 'vvctl install' has nothing to compare; the daily selftest fails on it.
        yield Observation(
            "integrity", State.OK, what, str(path), "no manifest: not installed with 'vvctl install'", threshold
        )
        return
    report = verify_integrity(ctx.settings, ctx.verification_keys(), dist=ctx.clients.distribution())
    yield Observation(
        "integrity",
        State.OK if report.ok else State.CRITICAL,
        what,
        str(path),
        report.summary,
        threshold,
        "an upgrade or a config edit: run 'vvctl install' to record it; otherwise find out who changed the file",
    )


__all__ = [
    "REGISTRY",
    "Check",
    "CheckContext",
    "CheckFunction",
    "Facts",
    "MonitorClients",
    "MonitorEvent",
    "default_docker_client",
    "duration",
    "register",
    "run_checks",
    "verify_new_loglines",
]
