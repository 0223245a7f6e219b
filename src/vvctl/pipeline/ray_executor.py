"""Workers on a Ray cluster: a fixed pool of Ray Core actors, each holding one ONNX Runtime session.

Only :mod:`vvctl.pipeline.distributed` imports this module, and only when ``executor = "ray"``: the local
run and ``vvctl --help`` never import Ray. Ray's own task retries are off (``max_task_retries=0``): a
killed worker is a failed attempt that vvctl counts. A dead actor is restarted by Ray (a fresh process
and model session) and takes the next video.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vvctl.core.errors import ConfigError, DependencyError
from vvctl.core.settings import Settings
from vvctl.pipeline.distributed import (
    AnalysisRequest,
    AnalysisSpec,
    Pending,
    Worker,
    WorkerLost,
    WorkerModel,
    WorkerResult,
    raise_worker_error,
)

START_TIMEOUT_S = 300.0
"""How long the actors may take to be placed and load their model before the run gives up."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DependencyError("executor 'ray' needs Ray on this box: pip install 'vvctl[ray]'") from None
    return ray


def token_auth_enabled(env: Mapping[str, str]) -> bool:
    """Ray's token authentication is on for this process (``RAY_AUTH_MODE=token``)."""
    return env.get("RAY_AUTH_MODE", "").strip().lower() == "token"


class _ActorBody:
    """The actor: one :class:`~vvctl.pipeline.distributed.Worker` for its lifetime, sized from the CPUs Ray
    assigned to it (``os.cpu_count()`` inside a worker is the whole node)."""

    def __init__(self, spec: AnalysisSpec) -> None:
        import ray

        context = ray.get_runtime_context()
        cpus = context.get_assigned_resources().get("CPU")
        self.worker = Worker(spec, cpus=cpus, name=f"node {context.get_node_id()[:8]} pid {os.getpid()}")

    def model(self) -> WorkerModel:
        return self.worker.model

    def pid(self) -> int:
        return os.getpid()

    def analyse(self, request: AnalysisRequest) -> WorkerResult:
        return self.worker.analyse(request)


class _RayPending:
    def __init__(self, ray: Any, actor: Any, ref: Any, request: AnalysisRequest, on_lost: Any = None) -> None:
        self.on_lost = on_lost
        self.ray = ray
        self.actor = actor
        self.ref = ref
        self.request = request

    def wait(self, timeout: float) -> bool:
        ready, _ = self.ray.wait([self.ref], timeout=timeout)
        return bool(ready)

    def result(self) -> WorkerResult:
        try:
            result: WorkerResult = self.ray.get(self.ref)
        except self.ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            if self.on_lost is not None:
                self.on_lost(self.actor)
            raise WorkerLost(f"the worker died or failed ({type(exc).__name__}: {first})") from None
        return result


class RayExecutor:
    """A fixed pool of actors on the Ray cluster at ``address`` (or the one this process is connected to)."""

    def __init__(
        self,
        spec: AnalysisSpec,
        *,
        address: str,
        actors: int = 0,
        cpus_per_actor: float = 1.0,
        gpus_per_actor: float = 0.0,
        allow_unauthenticated: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.address = address
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.gpus_per_actor = gpus_per_actor
        self.allow_unauthenticated = allow_unauthenticated
        self.env = os.environ if env is None else env
        self.slots = 0
        self.pool: list[Any] = []
        self._busy: dict[int, Any] = {}
        self._restarting: set[int] = set()
        self._ray: Any = None
        self._owns_connection = False

    @classmethod
    def from_settings(cls, settings: Settings, spec: AnalysisSpec) -> RayExecutor:
        return cls(
            spec,
            address=settings.ray_address,
            actors=settings.ray_actors,
            cpus_per_actor=settings.ray_cpus_per_actor,
            gpus_per_actor=settings.ray_gpus_per_actor,
            allow_unauthenticated=settings.ray_allow_unauthenticated,
        )

    def connect(self) -> Any:
        """Ray, connected: to the cluster this process already joined, else to ``address`` (a running head;
        no cluster is started here). Refuses an unauthenticated connection unless the operator allowed it."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        if not self.address:
            raise ConfigError("executor 'ray' needs the address of a running Ray head: ray_address or --address")
        if not token_auth_enabled(self.env) and not self.allow_unauthenticated:
            raise ConfigError(
                "refusing to use the Ray cluster without token authentication (anyone who can reach its ports "
                "can run code on it): set RAY_AUTH_MODE=token with the cluster's token, or "
                "ray_allow_unauthenticated = true on a private network (docs/distributed.md)"
            )
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level="WARNING")
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DependencyError(f"cannot connect to the Ray cluster at {self.address}: {first}") from None
        self._owns_connection = True
        return ray

    def start(self) -> WorkerModel:
        ray = self._ray = self.connect()
        count = self.actors
        if count <= 0:
            count = max(1, int(ray.cluster_resources().get("CPU", 0) // max(self.cpus_per_actor, 1e-9)))
        # max_concurrency=2: pid() answers while a video is analysed; analyse() never overlaps itself, since
        # an actor gets its next video only once the last one returned.
        actor_class = ray.remote(
            num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=2,
        )(_ActorBody)
        self.pool = [actor_class.remote(self.spec) for _ in range(count)]
        try:
            models: list[WorkerModel] = ray.get([a.model.remote() for a in self.pool], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise DependencyError(
                f"the Ray cluster did not start {count} worker(s) of {self.cpus_per_actor:g} CPU and "
                f"{self.gpus_per_actor:g} GPU within {START_TIMEOUT_S:g} s (not enough free resources?)"
            ) from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise DependencyError(f"the Ray workers could not start: {type(exc).__name__}") from None
        for model in models:
            if model.error is not None:
                self.close()
                raise_worker_error(model)
        self.slots = count
        return models[0]

    def pids(self) -> list[int]:
        """Each actor's worker process id (tests kill one)."""
        pids: list[int] = self._ray.get([a.pid.remote() for a in self.pool])
        return pids

    def capacity(self) -> int:
        if self._busy:
            refs = list(self._busy.values())
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            done = {id(r) for r in ready}
            self._busy = {i: r for i, r in self._busy.items() if id(r) not in done}
        return self.slots - len(self._busy)

    def _lost(self, actor: Any) -> None:
        self._restarting.update(i for i, a in enumerate(self.pool) if a is actor)

    def submit(self, request: AnalysisRequest) -> Pending:
        free = [i for i in range(len(self.pool)) if i not in self._busy]
        index = min(free, key=lambda i: i in self._restarting)  # a healthy worker first
        actor = self.pool[index]
        if index in self._restarting:
            # A call sent while Ray restarts the actor fails at once (no task retries): wait for the new one.
            self._ray.get(actor.pid.remote(), timeout=START_TIMEOUT_S)
            self._restarting.discard(index)
        ref = actor.analyse.remote(request)
        self._busy[index] = ref
        return _RayPending(self._ray, actor, ref, request, on_lost=self._lost)

    def abandon(self, pending: Pending) -> None:
        if isinstance(pending, _RayPending):
            self._ray.kill(pending.actor, no_restart=False)  # Ray restarts it with a fresh session
            self._lost(pending.actor)

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for actor in self.pool:
            ray.kill(actor, no_restart=True)
        self.pool = []
        self._busy = {}
        if self._owns_connection:
            ray.shutdown()
            self._owns_connection = False
