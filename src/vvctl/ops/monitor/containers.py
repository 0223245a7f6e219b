"""Containers kept healthy through the Docker Engine API (the Docker SDK for Python; ``DOCKER_HOST`` honoured).

Which containers: the names in ``containers``, every container labelled ``vvctl.monitor=true``, and every
container of the Compose project ``compose_project`` (label ``com.docker.compose.project``).

What happens to each, on every pass:

* unhealthy (its HEALTHCHECK fails) for longer than ``container_grace_s``, or exited with an error while
  Docker will not restart it (restart policy ``no``, or ``on-failure`` out of retries), or ``dead``: the
  monitor restarts it, at most ``restart_budget`` times per ``restart_window_s``, waiting
  ``restart_backoff_s`` after the first restart of the window and twice as long after each further one;
* once the budget is spent the container is left alone and the check is CRITICAL (one alert; the alert
  state dedups it) until the window slides or it recovers;
* restarts Docker did by itself (its ``RestartCount`` went up) are counted and recorded;
* a container without a restart policy is a WARN even when it runs: after a reboot or a crash nothing
  brings it back before the next monitor pass.

Docker not reachable is the ``docker`` check's result (CRITICAL when containers are configured); the
other checks run as usual.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from vvctl.core.alerts import Observation, State, worst
from vvctl.ops.monitor.checks import CheckContext, MonitorEvent, duration, register
from vvctl.ops.monitor.store import ContainerMemory

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

MONITOR_LABEL = "vvctl.monitor=true"
COMPOSE_LABEL = "com.docker.compose.project"
STOP_TIMEOUT_S = 10
"""Seconds Docker gives a container to stop on restart before it kills it."""


def _docker_errors() -> tuple[type[Exception], ...]:
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException)


def _where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _docker_observation(state: State, value: str, hint: str) -> Observation:
    return Observation(
        check="docker",
        state=state,
        what="the Docker engine",
        where=_where(),
        value=value,
        threshold="the Docker engine answers",
        hint=hint,
    )


_KNOWN_CAUSES = (
    ("No such file or directory", "no Docker socket there"),
    ("Permission denied", "permission denied on the Docker socket"),
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
)


def _short_error(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    for needle, said in _KNOWN_CAUSES:
        if needle in text:
            return said
    return text[:200] if text else type(exc).__name__


def _select(client: DockerClient, ctx: CheckContext) -> tuple[list[Container], list[str]]:
    """The monitored containers (by id, once each) and the configured names Docker does not know."""
    import docker.errors

    found: dict[str, Container] = {}
    missing: list[str] = []
    for name in ctx.settings.containers:
        try:
            container = client.containers.get(name)
        except docker.errors.NotFound:
            missing.append(name)
            continue
        found.setdefault(container.id or name, container)
    labels = [MONITOR_LABEL]
    if ctx.settings.compose_project:
        labels.append(f"{COMPOSE_LABEL}={ctx.settings.compose_project}")
    for label in labels:
        for container in client.containers.list(all=True, filters={"label": label}):
            found.setdefault(container.id or container.name or "", container)
    return sorted(found.values(), key=lambda c: c.name or ""), missing


@dataclass(frozen=True)
class _Seen:
    """What the Engine API says about one container."""

    name: str
    id: str
    status: str
    health: str | None
    exit_code: int
    restart_count: int
    policy: str
    max_retries: int

    @classmethod
    def of(cls, container: Container) -> _Seen:
        attrs: dict[str, Any] = container.attrs
        state = attrs.get("State") or {}
        policy = (attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
        return cls(
            name=container.name or str(attrs.get("Name", "")).lstrip("/"),
            id=container.id or "",
            status=str(state.get("Status", "unknown")),
            health=(state.get("Health") or {}).get("Status"),
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(attrs.get("RestartCount") or 0),
            policy=str(policy.get("Name") or "no"),
            max_retries=int(policy.get("MaximumRetryCount") or 0),
        )

    @property
    def docker_restarts_it(self) -> bool:
        """Docker itself will bring an exited container back (its restart policy says so and has retries left)."""
        if self.policy in ("always", "unless-stopped"):
            return True
        return self.policy == "on-failure" and (self.max_retries == 0 or self.restart_count < self.max_retries)


class _Healer:
    """One container's observation, its restart when due, and what the store remembers of it."""

    def __init__(self, ctx: CheckContext, container: Container) -> None:
        self.ctx = ctx
        self.container = container
        self.seen = _Seen.of(container)
        self.source = {"type": "container", "id": self.seen.name}

    def _memory(self) -> ContainerMemory:
        seen, old = self.seen, self.ctx.store.container(self.seen.name)
        if old is None or old.container_id != seen.id:
            # New to the monitor, or recreated (a new id): Docker's count starts over; nothing to count yet.
            keep = old or ContainerMemory(seen.name, seen.id, seen.restart_count, None, 0, 0)
            return replace(keep, container_id=seen.id, docker_restart_count=seen.restart_count, unhealthy_since=None)
        if seen.restart_count > old.docker_restart_count:
            added = seen.restart_count - old.docker_restart_count
            self.ctx.events.append(
                MonitorEvent(
                    "noticed Docker restarted a container",
                    f"{seen.name}: Docker restarted it {added} time(s) by its restart policy '{seen.policy}'"
                    f" (RestartCount {seen.restart_count})",
                    "warning",
                    self.source,
                )
            )
            return replace(old, docker_restart_count=seen.restart_count, docker_restarts=old.docker_restarts + added)
        return replace(old, docker_restart_count=seen.restart_count)

    def _needs_restart(self, memory: ContainerMemory, now: datetime) -> str | None:
        seen, grace = self.seen, self.ctx.settings.container_grace_s
        if seen.status == "running" and seen.health == "unhealthy" and memory.unhealthy_since is not None:
            unhealthy_for = (now - memory.unhealthy_since).total_seconds()
            if unhealthy_for > grace:
                return f"unhealthy for {duration(unhealthy_for)} (grace {duration(grace)})"
        if seen.status == "exited" and seen.exit_code != 0 and not seen.docker_restarts_it:
            return f"exited with status {seen.exit_code} and Docker will not restart it (policy '{seen.policy}')"
        if seen.status == "dead":
            return "dead (Docker could not stop or remove it cleanly)"
        return None

    def _restart(self, memory: ContainerMemory, why: str, now: datetime) -> tuple[State, str, ContainerMemory]:
        settings = self.ctx.settings
        window = timedelta(seconds=settings.restart_window_s)
        recent = self.ctx.store.restarts_since(self.seen.name, now - window)
        budget = settings.restart_budget
        if len(recent) >= budget:
            return (
                State.CRITICAL,
                f"{why}; restart budget spent ({len(recent)} restarts in {duration(window.total_seconds())}):"
                " left alone",
                memory,
            )
        if recent:
            wait = settings.restart_backoff_s * 2 ** (len(recent) - 1)
            next_at = recent[-1] + timedelta(seconds=wait)
            if now < next_at:
                return (
                    State.WARN,
                    f"{why}; next restart in {duration((next_at - now).total_seconds())} (backoff)",
                    memory,
                )
        try:
            self.container.restart(timeout=STOP_TIMEOUT_S)
        except _docker_errors() as exc:
            self.ctx.events.append(
                MonitorEvent(
                    "failed to restart a container",
                    f"{self.seen.name}: {why}; {_short_error(exc)}",
                    "failed",
                    self.source,
                )
            )
            return State.CRITICAL, f"{why}; restart failed: {_short_error(exc)}", memory
        self.ctx.store.add_restart(self.seen.name, now)
        done = f"restart {len(recent) + 1} of {budget} in {duration(window.total_seconds())}"
        self.ctx.events.append(
            MonitorEvent("restarted a container", f"{self.seen.name}: {why}; {done}", "ok", self.source)
        )
        restarted = replace(memory, unhealthy_since=None, vvctl_restarts=memory.vvctl_restarts + 1)
        return State.WARN, f"{why}; restarted ({done})", restarted

    def observe(self) -> Observation:
        ctx, seen, now = self.ctx, self.seen, self.ctx.now
        memory = self._memory()
        unhealthy = seen.status == "running" and seen.health == "unhealthy"
        memory = replace(memory, unhealthy_since=(memory.unhealthy_since or now) if unhealthy else None)
        states: list[State] = []
        notes: list[str] = []
        why = self._needs_restart(memory, now)
        if why is not None:
            state, note, memory = self._restart(memory, why, now)
            states.append(state)
            notes.append(note)
        elif unhealthy:
            assert memory.unhealthy_since is not None
            unhealthy_for = (now - memory.unhealthy_since).total_seconds()
            states.append(State.WARN)
            notes.append(
                f"unhealthy for {duration(unhealthy_for)} (restarted after {duration(ctx.settings.container_grace_s)})"
            )
        elif seen.status == "running":
            states.append(State.OK)
            notes.append(f"running{f', {seen.health}' if seen.health else ''}")
        elif seen.status == "restarting":
            states.append(State.WARN)
            notes.append("Docker is restarting it")
        elif seen.status == "exited" and seen.exit_code != 0:
            states.append(State.WARN)
            notes.append(f"exited with status {seen.exit_code}; Docker restarts it (policy '{seen.policy}')")
        else:
            states.append(State.WARN)
            notes.append(
                f"{seen.status}{f' (exit status {seen.exit_code})' if seen.status == 'exited' else ''}; left alone"
            )
        if seen.policy == "no":
            states.append(State.WARN)
            notes.append("no restart policy")
        ctx.store.put_container(memory)
        ctx.facts.restarts[seen.name] = (memory.vvctl_restarts, memory.docker_restarts)
        notes.append(f"restarts: {memory.vvctl_restarts} by vvctl, {memory.docker_restarts} by Docker")
        return Observation(
            check=f"container:{seen.name}",
            state=worst(states),
            what=f"container {seen.name} healthy",
            where=f"container {seen.name} ({seen.id[:12]})",
            value="; ".join(notes),
            threshold=f"running and not unhealthy for over {duration(ctx.settings.container_grace_s)};"
            f" at most {ctx.settings.restart_budget} restarts per {duration(ctx.settings.restart_window_s)};"
            " a restart policy set",
            hint=f"'docker logs {seen.name}' and 'docker inspect {seen.name}'; set a restart policy"
            " (restart: unless-stopped) in its compose file",
        )


@register("containers", "Docker containers healthy")
def containers(ctx: CheckContext) -> Iterable[Observation]:
    configured = bool(ctx.settings.containers or ctx.settings.compose_project)
    errors = _docker_errors()
    try:
        client = ctx.clients.docker()
    except errors as exc:
        ctx.facts.docker_reachable = False
        state = State.CRITICAL if configured else State.OK
        suffix = "" if configured else " (no container configured by name or compose project)"
        return [
            _docker_observation(
                state,
                f"not reachable at {_where()}: {_short_error(exc)}{suffix}",
                "is the Docker daemon running ('systemctl status docker')? Is DOCKER_HOST right, and may this"
                " user use the socket (group 'docker')?",
            )
        ]
    observations: list[Observation] = []
    try:
        selected, missing = _select(client, ctx)
        for container in selected:
            observations.append(_Healer(ctx, container).observe())
        api = client.api.api_version
    except errors as exc:
        ctx.facts.docker_reachable = False
        return [
            *observations,
            _docker_observation(
                State.CRITICAL,
                f"failed mid-check: {_short_error(exc)}",
                "see 'systemctl status docker' and its journal",
            ),
        ]
    finally:
        client.close()
    ctx.facts.docker_reachable = True
    for name in missing:
        observations.append(
            Observation(
                check=f"container:{name}",
                state=State.CRITICAL,
                what=f"container {name} healthy",
                where=f"container {name}",
                value="no such container",
                threshold="the container exists",
                hint="'docker ps -a' for its name; start it ('docker compose up -d') or remove it from 'containers'",
            )
        )
    observations.append(
        _docker_observation(State.OK, f"reachable (API {api}); {len(selected)} container(s) monitored", "")
    )
    return observations


__all__ = ["COMPOSE_LABEL", "MONITOR_LABEL", "containers"]
