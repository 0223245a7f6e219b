"""Where a video is analysed: in this process (the default) or on a pool of workers (a Ray cluster).

vvctl stays the coordinator. Discovery, content hashing, the state store, counting each attempt before
work, writing outputs, signing LogLines and moving files stay on the box, and signing keys never leave
it. A worker gets one whole video per call, by path on shared storage, re-checks its SHA-256, runs the
same :func:`~vvctl.pipeline.scan.scan_video` the local run runs, and returns only the analytic document.

The seam into :mod:`vvctl.pipeline.orchestrate` is :func:`run_remote_pass`: it walks a pass's videos in
discovery order, dispatches ahead while workers are free, and commits each result at its turn through the
run's own steps (``_finish_done``, ``_quarantine``, ``_timed_out``), so the LogLine order is the local
run's. Retries belong to vvctl: a worker that dies mid-video is a failed attempt, counted, and the video is
dispatched again (quarantined ``crashed`` after ``max_attempts``). Two files with the same content are
never in flight at once: the copy is held back and handled at its turn, after the first one committed.

Nothing here imports Ray; :mod:`vvctl.pipeline.ray_executor` does, lazily.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vvctl.core.detectors import Detector, load_detector
from vvctl.core.errors import ConfigError, DependencyError, ExitCode, IntegrityError, StorageError, VVError
from vvctl.core.names import display
from vvctl.core.providers import GPU_PROVIDERS, GpuOptions
from vvctl.core.settings import Settings
from vvctl.core.video import VideoError
from vvctl.pipeline.scan import ScanParams, ScanStopped, ScanTimeout, inference_plan, scan_video

if TYPE_CHECKING:
    from vvctl.pipeline.discovery import Candidate
    from vvctl.pipeline.orchestrate import _Run
    from vvctl.pipeline.videostate import VideoRow

LOOKAHEAD_PER_SLOT = 4
"""Videos dispatched ahead of the one being committed, per worker: bounds the results held in memory."""
WAIT_POLL_S = 0.1
HARD_DEADLINE_GRACE_S = 60.0
"""A worker silent this long past ``max_video_seconds`` (its own watchdog should have fired) is killed."""


class WorkerLost(VVError):
    """The worker analysing a video died (killed, out of memory, node lost) or failed with an internal
    error: a failed attempt, counted by vvctl like a local crash."""

    exit_code = ExitCode.INTERNAL


@dataclass(frozen=True)
class AnalysisSpec:
    """What a worker needs to analyse a video exactly as this box would. No secret, no storage root."""

    model_path: str
    model_sha256: str
    detector: str
    providers: tuple[str, ...]
    score_threshold: float
    nms_iou: float
    batch_size: int
    precision: str
    gpu_device_id: int
    gpu_mem_limit_mb: int
    params: ScanParams
    max_video_seconds: float
    path_map: Mapping[str, str] = field(default_factory=dict)
    """Coordinator path prefix -> the same folder's path on the workers (shared storage mounted elsewhere)."""

    @classmethod
    def from_settings(cls, settings: Settings, params: ScanParams) -> AnalysisSpec:
        return cls(
            model_path=str(settings.model_path),
            model_sha256=settings.model_sha256,
            detector=settings.detector,
            providers=tuple(settings.providers),
            score_threshold=settings.score_threshold,
            nms_iou=settings.nms_iou,
            batch_size=settings.batch_size,
            precision=settings.precision,
            gpu_device_id=settings.gpu_device_id if settings.ray_gpus_per_actor <= 0 else 0,
            gpu_mem_limit_mb=settings.gpu_mem_limit_mb,
            params=replace(params, workers=1),
            max_video_seconds=settings.max_video_seconds,
            path_map=dict(settings.ray_path_map),
        )


def _mapped(spec: AnalysisSpec, path: Path | str) -> Path:
    text = str(path)
    for prefix in sorted(spec.path_map, key=len, reverse=True):
        base = prefix.rstrip("/") or "/"
        if text == base or text.startswith(base.rstrip("/") + "/"):
            return Path(spec.path_map[prefix].rstrip("/") + text[len(base.rstrip("/")) :])
    return Path(text)


@dataclass(frozen=True)
class AnalysisRequest:
    path: Path
    """The video on the coordinator; the worker maps it with :attr:`AnalysisSpec.path_map`."""
    sha256: str


@dataclass(frozen=True)
class WorkerResult:
    """What a worker sends back (kilobytes): the analytic document, or why there is none."""

    status: str
    """``ok``, ``video_error`` (the file's fault: quarantined), ``timeout``, ``missing`` (the worker cannot
    read the file or sees other content: shared storage or the path map is wrong, never the video's fault)."""
    document: dict[str, Any] | None = None
    reason: str | None = None
    message: str | None = None
    wall_s: float = 0.0
    worker: str = ""


@dataclass(frozen=True)
class WorkerModel:
    """A worker's loaded model as the report shows it, or the error that kept it from loading."""

    name: str = ""
    sha256: str = ""
    provider: str = ""
    requested_providers: tuple[str, ...] = ()
    fallback_reason: str | None = None
    intra_op_threads: int | None = None
    error_code: int | None = None
    error: str | None = None


_ERRORS: dict[int, type[VVError]] = {
    int(ExitCode.CONFIG): ConfigError,
    int(ExitCode.INTEGRITY): IntegrityError,
    int(ExitCode.STORAGE): StorageError,
    int(ExitCode.DEPENDENCY): DependencyError,
}


def raise_worker_error(model: WorkerModel) -> None:
    """A worker that could not load its model fails the run before any attempt is counted, with the error
    (and exit code) the local run would have had."""
    if model.error is not None:
        kind = _ERRORS.get(model.error_code or 0, DependencyError)
        raise kind(f"worker: {model.error}")


class Worker:
    """One detector (one ONNX Runtime session) for the worker's lifetime; analyses whole videos by path.

    ``cpus`` is the worker's CPU allocation (not ``os.cpu_count()``, the whole machine inside a worker):
    ONNX Runtime's threads are sized from it with the local run's plan."""

    def __init__(self, spec: AnalysisSpec, *, cpus: float | None = None, name: str = "") -> None:
        self.spec = spec
        self.name = name or f"pid {os.getpid()}"
        self.detector: Detector | None = None
        self.model = WorkerModel()
        whole = max(1, int(cpus)) if cpus else None
        if whole is None:
            threads, workers = None, 1
        elif whole < 2:
            threads, workers = 1, 1
        else:
            plan = inference_plan(whole)
            threads, workers = plan.intra_op_threads, plan.workers
        try:
            self.detector = load_detector(
                _mapped(spec, spec.model_path),
                sha256=spec.model_sha256,
                kind=spec.detector,
                providers=spec.providers,
                score_threshold=spec.score_threshold,
                nms_iou=spec.nms_iou,
                batch_size=spec.batch_size,
                intra_op_threads=threads,
                gpu=GpuOptions(
                    precision=spec.precision,
                    device_id=spec.gpu_device_id,
                    gpu_mem_limit_mb=spec.gpu_mem_limit_mb,
                    engine_cache_dir=_worker_cache_dir(),
                    engine_cache_keep=2,
                ),
            )
        except VVError as exc:
            self.model = WorkerModel(error_code=int(exc.exit_code), error=exc.message)
            return
        info = self.detector.info
        on_gpu = info.provider in GPU_PROVIDERS
        self.params = replace(spec.params, workers=1 if on_gpu else workers)
        self.model = WorkerModel(
            name=info.name,
            sha256=info.sha256,
            provider=info.provider,
            requested_providers=tuple(info.requested_providers),
            fallback_reason=info.fallback_reason,
            intra_op_threads=threads,
        )

    def analyse(self, request: AnalysisRequest, should_stop: Any = None) -> WorkerResult:
        started = time.monotonic()
        local = _mapped(self.spec, request.path)
        digest = hashlib.sha256()
        try:
            with local.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            return WorkerResult("missing", message=f"{display(str(local))}: {exc.strerror or exc}", worker=self.name)
        if digest.hexdigest() != request.sha256:
            return WorkerResult(
                "missing",
                message=f"{display(str(local))} has other content on the worker than on the coordinator",
                worker=self.name,
            )
        assert self.detector is not None
        try:
            scan = scan_video(
                local,
                sha256=request.sha256,
                detector=self.detector,
                params=self.params,
                deadline=started + self.spec.max_video_seconds,
                should_stop=should_stop,
            )
        except VideoError as exc:
            return WorkerResult(
                "video_error", reason=exc.reason, message=exc.message, wall_s=time.monotonic() - started
            )
        except ScanTimeout as exc:
            return WorkerResult("timeout", message=exc.message, wall_s=time.monotonic() - started, worker=self.name)
        document = scan.document
        # The document names the video as the box knows it, wherever the worker mounted it.
        document["source"]["path"] = display(str(request.path))
        document["source"]["name"] = display(request.path.name)
        return WorkerResult("ok", document=document, wall_s=scan.wall_s, worker=self.name)


def _worker_cache_dir() -> Path:
    """TensorRT engines are cached on the worker's own disk: a worker writes nothing on shared storage."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("vvctl")) / "tensorrt"


class Pending(Protocol):
    """One video on a worker."""

    request: AnalysisRequest

    def wait(self, timeout: float) -> bool:
        """True once the result is there (or the worker died)."""
        ...

    def result(self) -> WorkerResult:
        """The worker's answer; raises :class:`WorkerLost` when the worker died or failed internally."""
        ...


class Executor(Protocol):
    """A pool of workers that analyse whole videos. ``start`` loads the model everywhere (before any
    attempt is counted); ``capacity`` is how many more videos it can take now."""

    slots: int

    def start(self) -> WorkerModel: ...

    def capacity(self) -> int: ...

    def submit(self, request: AnalysisRequest) -> Pending: ...

    def abandon(self, pending: Pending) -> None:
        """Give up on a video (stuck past its deadline): its worker is replaced."""
        ...

    def close(self) -> None: ...


class _ThreadPending:
    def __init__(self, request: AnalysisRequest, future: Future[WorkerResult]) -> None:
        self.request = request
        self.future = future

    def wait(self, timeout: float) -> bool:
        try:
            self.future.exception(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def result(self) -> WorkerResult:
        try:
            return self.future.result()
        except WorkerLost:
            raise
        except Exception as exc:  # a worker bug: counted as a failed attempt, as a remote one would be
            raise WorkerLost(f"worker failed: {type(exc).__name__}: {exc}") from exc


class InProcessExecutor:
    """Workers as threads of this process (each with its own detector): the executor protocol without a
    cluster, for tests and benchmarks. A stop request reaches each worker's scan watchdog."""

    def __init__(self, spec: AnalysisSpec, *, workers: int = 2, cpus_per_worker: float = 1) -> None:
        self.spec = spec
        self.slots = workers
        self.cpus = cpus_per_worker
        self._free: list[Worker] = []
        self._busy = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vvctl-worker")

    def start(self) -> WorkerModel:
        self._free = [Worker(self.spec, cpus=self.cpus, name=f"thread {i}") for i in range(self.slots)]
        for worker in self._free:
            raise_worker_error(worker.model)
        return self._free[0].model

    def capacity(self) -> int:
        with self._lock:
            return self.slots - self._busy

    def run(self, worker: Worker, request: AnalysisRequest) -> WorkerResult:
        """What one worker does with one video (tests override it to make a worker die)."""
        return worker.analyse(request, should_stop=self._stop.is_set)

    def submit(self, request: AnalysisRequest) -> Pending:
        with self._lock:
            self._busy += 1
            worker = self._free.pop()

        def job() -> WorkerResult:
            try:
                return self.run(worker, request)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._free.append(worker)

        return _ThreadPending(request, self._pool.submit(job))

    def abandon(self, pending: Pending) -> None:
        pass  # a thread cannot be killed; the scan's own deadline ends it

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)


def executor_for(settings: Settings, params: ScanParams) -> Executor | None:
    """The executor the settings ask for: None for the local run (which imports nothing from Ray)."""
    if settings.executor == "local":
        return None
    from vvctl.pipeline.ray_executor import RayExecutor

    return RayExecutor.from_settings(settings, AnalysisSpec.from_settings(settings, params))


# -- the coordinator's side: dispatch ahead, commit in order -------------------------------------------


@dataclass
class _Flight:
    path: Path
    sha: str
    size: int
    position: int
    total: int
    in_place: bool
    row: VideoRow
    pending: Pending
    started: float


@dataclass
class _Item:
    position: int
    candidate: Candidate | None = None
    redo: VideoRow | None = None
    sha: str | None = None
    tried: bool = False


class _RemotePass:
    def __init__(self, run: _Run, executor: Executor, items: list[_Item], total: int) -> None:
        self.run = run
        self.executor = executor
        self.items = items
        self.total = total
        self.flights: dict[int, _Flight] = {}
        self.cursor = 0
        self.head = 0

    def in_flight(self, sha: str) -> bool:
        return any(f.sha == sha for f in self.flights.values())

    def fill(self) -> None:
        """Dispatch videos ahead, in order, while workers are free (and not too far ahead)."""
        if self.cursor < len(self.items):
            ensure_started(self.run)  # the pool's size is known once it runs
        limit = self.head + LOOKAHEAD_PER_SLOT * self.executor.slots
        while self.cursor < len(self.items) and self.cursor <= limit and self.executor.capacity() > 0:
            if self.run.stop.is_set():
                return
            item = self.items[self.cursor]
            self.cursor += 1
            self.try_dispatch(item)

    def try_dispatch(self, item: _Item) -> None:
        from vvctl.pipeline.orchestrate import _sha256_or_none, find_recorded_ok
        from vvctl.pipeline.videostate import VideoStatus

        run = self.run
        item.tried = True
        if item.redo is not None:
            redo = item.redo
            if not self.in_flight(redo.sha256):
                self.dispatch(redo.path, redo.sha256, redo.size, item.position, in_place=True)
            return
        assert item.candidate is not None
        path = item.candidate.path
        try:
            sha = _sha256_or_none(path)
        except VideoError:
            return  # handled (quarantined) at its turn
        if sha is None or self.in_flight(sha):
            return  # vanished, or a copy of a video in flight: held back until that one committed
        item.sha = sha
        found = run.db.get(sha)
        row = found if found is not None else run.db.add(sha, path.name, path, item.candidate.size)
        if row.status not in (VideoStatus.PENDING, VideoStatus.PROCESSING, VideoStatus.FAILED):
            return  # done, quarantined: a duplicate, a requeue or a recovery, handled at its turn
        if row.attempts >= run.settings.max_attempts:
            return  # quarantined at its turn
        if (
            row.started_at is not None
            and find_recorded_ok(run.layout.loglines / "videos", sha, row.started_at) is not None
        ):
            return  # adopted at its turn
        self.dispatch(path, sha, item.candidate.size, item.position, in_place=False)

    def dispatch(self, path: Path, sha: str, size: int, position: int, *, in_place: bool) -> _Flight:
        run = self.run
        ensure_started(run)
        row = run.db.begin_attempt(sha, path, config_hash=run.config_hash, model_sha256=run.settings.model_sha256)
        pending = self.executor.submit(AnalysisRequest(path, sha))
        flight = _Flight(path, sha, size, position, self.total, in_place, row, pending, time.monotonic())
        self.flights[position] = flight
        return flight

    def run_all(self) -> None:
        from vvctl.pipeline.orchestrate import Outcome, VideoResult, _StopRun

        try:
            for index, item in enumerate(self.items):
                self.head = index
                if self.run.stop.is_set():
                    if self.flights:
                        raise _StopRun  # videos in flight are abandoned: they stay in input/
                    return
                self.fill()
                flight = self.flights.pop(item.position, None)
                if flight is not None:
                    self.commit(flight)
                elif item.redo is not None:
                    row = item.redo
                    self.run._analyse(
                        row.path, row.sha256, row.size, position=item.position, total=self.total, in_place=True
                    )
                else:
                    assert item.candidate is not None
                    self.run._handle_input(item.candidate, item.position, self.total)
                if item.candidate is not None:
                    self.run.settle.forget(item.candidate.path)
        except BaseException as exc:
            note = "stopped on request before it finished" if isinstance(exc, _StopRun) else f"run stopped: {exc}"
            for flight in self.flights.values():
                self.run.db.undo_attempt(flight.sha, note=note)
                if isinstance(exc, _StopRun):
                    self.run.interrupted = True
                    self.run._record(
                        VideoResult(
                            display(flight.path.name), flight.sha, Outcome.INTERRUPTED, attempts=flight.row.attempts - 1
                        )
                    )
            self.flights.clear()
            raise
        finally:
            self.flights.clear()

    def wait(self, flight: _Flight) -> WorkerResult:
        """The flight's result, dispatching more while waiting; a stop request abandons it."""
        hard = self.run.settings.max_video_seconds + HARD_DEADLINE_GRACE_S
        while not flight.pending.wait(WAIT_POLL_S):
            if self.run.stop.is_set():
                raise ScanStopped(f"{display(flight.path.name)}: stopped on request; the video stays in input/")
            if time.monotonic() - flight.started > hard:
                self.executor.abandon(flight.pending)
                return WorkerResult(
                    "timeout",
                    message=f"{display(flight.path.name)}: the worker did not answer within max_video_seconds",
                    wall_s=time.monotonic() - flight.started,
                )
            self.fill()
        return flight.pending.result()

    def commit(self, flight: _Flight) -> None:
        commit_flight(self, flight)


def ensure_started(run: _Run) -> None:
    """Start the executor once (every worker loads the model) before the first attempt is counted: a model
    problem is not the video's."""
    if run.remote_model is not None:
        return
    from vvctl.pipeline.orchestrate import ModelLoaded, ModelUsed, log
    from vvctl.pipeline.scan import gpu_fell_back

    assert run.executor is not None
    model = run.executor.start()
    used = ModelUsed(
        name=model.name,
        sha256=model.sha256,
        provider=model.provider,
        requested_providers=model.requested_providers,
        fallback_reason=model.fallback_reason,
        gpu_fallback=gpu_fell_back(model.requested_providers, model.provider),
        gpu_present=run.settings.ray_gpus_per_actor > 0,
    )
    run.remote_model = used
    if used.warning is not None:
        log.warning("gpu fallback", extra={"provider": used.provider, "reason": used.fallback_reason})
    run._emit(ModelLoaded(used))


def commit_flight(remote: _RemotePass, flight: _Flight) -> None:
    """Commit one video's result at its turn, exactly as the local ``_analyse`` would after its scan."""
    from vvctl.pipeline.orchestrate import Outcome, VideoResult, VideoStarted, _StopRun

    run = remote.run
    run._emit(VideoStarted(display(flight.path.name), flight.position, flight.total, None, None))
    committed = False
    try:
        while True:
            try:
                result = remote.wait(flight)
            except WorkerLost as exc:
                if not _retry_after_loss(remote, flight, exc):
                    return
                continue
            break
        if result.status == "missing":
            raise StorageError(
                f"a worker cannot read {display(flight.path.name)} as the box does ({result.message}); "
                "check the shared storage mount and ray_path_map"
            )
        if result.status == "video_error":
            run._quarantine(
                flight.path,
                flight.sha,
                flight.size,
                reason=result.reason or "corrupt_stream",
                message=result.message or "",
                attempts=flight.row.attempts,
            )
            return
        if result.status == "timeout":
            run._timed_out(
                flight.path, flight.sha, flight.size, flight.row, ScanTimeout(result.message or ""), result.wall_s
            )
            return
        assert result.document is not None
        committed = run._finish_done(flight.path, flight.sha, flight.row, result.document, in_place=flight.in_place)
    except ScanStopped:
        run.db.undo_attempt(flight.sha, note="stopped on request before it finished")
        run.interrupted = True
        run._record(
            VideoResult(display(flight.path.name), flight.sha, Outcome.INTERRUPTED, attempts=flight.row.attempts - 1)
        )
        raise _StopRun from None
    except (VVError, KeyboardInterrupt) as exc:
        run.disk_full(exc)
        if not committed:
            run.db.undo_attempt(flight.sha, note=f"run stopped: {exc}")
        raise
    except BaseException as exc:
        if not committed:
            run.db.record_failure(flight.sha, reason="error", error=f"internal error {type(exc).__name__}: {exc}")
        raise


def _retry_after_loss(remote: _RemotePass, flight: _Flight, exc: WorkerLost) -> bool:
    """A worker died with this video: the attempt is counted (it was, before dispatch). Below
    ``max_attempts`` the failure is recorded and signed and the video is dispatched again at once (True);
    at ``max_attempts`` it is quarantined ``crashed``, as the local run does (False)."""
    from vvctl.core.logline import LogLineDraft
    from vvctl.pipeline.orchestrate import WHO, Outcome, VideoResult, output_tag

    run = remote.run
    wall = time.monotonic() - flight.started
    attempts, limit = flight.row.attempts, run.settings.max_attempts
    if attempts >= limit:
        message = (
            f"the worker analysing it died in each of {attempts} attempts (last: {exc.message}); "
            "it is set aside so it cannot block the backlog"
        )
        run._quarantine(flight.path, flight.sha, flight.size, reason="crashed", message=message, attempts=attempts)
        return False
    message = f"{exc.message}; attempt {attempts} of {limit}"
    run.db.record_failure(flight.sha, reason="crashed", error=message, duration_s=wall)
    written = run._append(
        LogLineDraft(
            who=WHO,
            did="gave up an analysis attempt",
            this=f"{display(flight.path.name)}: {message}",
            status="failed",
            source=run._source(flight.sha, flight.path),
            if_not="dispatched again at once; quarantined after max_attempts",
        ),
        output_tag(flight.path, flight.sha),
    )
    run._record(
        VideoResult(
            display(flight.path.name),
            flight.sha,
            Outcome.FAILED,
            reason="crashed",
            message=message,
            attempts=attempts,
            wall_s=wall,
            logline=written.path,
        )
    )
    while remote.executor.capacity() <= 0:  # the dead worker's slot comes back once it is replaced
        time.sleep(WAIT_POLL_S)
        if run.stop.is_set():
            raise ScanStopped(f"{display(flight.path.name)}: stopped on request; the video stays in input/")
    flight.row = run.db.begin_attempt(
        flight.sha, flight.path, config_hash=run.config_hash, model_sha256=run.settings.model_sha256
    )
    flight.pending = remote.executor.submit(AnalysisRequest(flight.path, flight.sha))
    flight.started = time.monotonic()
    return True


def run_remote_pass(run: _Run, ready: list[Candidate], redo: list[VideoRow]) -> None:
    """One pass on an executor: the local pass's order and outcomes, with videos analysed in parallel."""
    items = [_Item(position, candidate=c) for position, c in enumerate(ready, start=1)]
    items += [_Item(position, redo=row) for position, row in enumerate(redo, start=len(ready) + 1)]
    assert run.executor is not None
    _RemotePass(run, run.executor, items, len(items)).run_all()


def analyse_one(run: _Run, path: Path, sha: str, size: int, *, position: int, total: int, in_place: bool) -> None:
    """A video that reached analysis at its turn (a re-queued copy, a held-back duplicate whose original
    failed): dispatched and committed at once."""
    assert run.executor is not None
    remote = _RemotePass(run, run.executor, [], total)
    ensure_started(run)
    while run.executor.capacity() <= 0:
        time.sleep(WAIT_POLL_S)
        if run.stop.is_set():
            from vvctl.pipeline.orchestrate import _StopRun

            raise _StopRun
    flight = remote.dispatch(path, sha, size, position, in_place=in_place)
    remote.flights.clear()
    commit_flight(remote, flight)
