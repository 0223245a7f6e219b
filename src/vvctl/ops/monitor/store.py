"""What the monitor remembers between runs, in the shared state store: containers it watches and restarts,
the LogLines it has verified so far, and the facts it reads from the pipeline's tables."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vvctl.core.state import StateStore
from vvctl.core.timeutil import parse_rfc3339, rfc3339


@dataclass(frozen=True)
class ContainerMemory:
    name: str
    container_id: str
    docker_restart_count: int
    """Docker's ``RestartCount`` when last seen: a higher count later means Docker restarted it itself."""
    unhealthy_since: datetime | None
    docker_restarts: int
    """Restarts Docker did by itself, counted by the monitor (all time)."""
    vvctl_restarts: int
    """Restarts the monitor did (all time)."""


@dataclass(frozen=True)
class VerifiedHead:
    log: str
    seq: int
    hash: str


def _container(row: sqlite3.Row) -> ContainerMemory:
    since = row["unhealthy_since"]
    return ContainerMemory(
        name=row["name"],
        container_id=row["container_id"],
        docker_restart_count=int(row["docker_restart_count"]),
        unhealthy_since=parse_rfc3339(since) if since else None,
        docker_restarts=int(row["docker_restarts"]),
        vvctl_restarts=int(row["vvctl_restarts"]),
    )


class MonitorStore(StateStore):
    """The ``monitor_containers``, ``container_restarts`` and ``verified_heads`` tables, and read-only views
    of the ``videos`` table."""

    # -- containers ----------------------------------------------------------------------------------------

    def container(self, name: str) -> ContainerMemory | None:
        row = self._one("SELECT * FROM monitor_containers WHERE name = ?", (name,))
        return None if row is None else _container(row)

    def containers(self) -> list[ContainerMemory]:
        return [_container(r) for r in self._all("SELECT * FROM monitor_containers ORDER BY name")]

    def put_container(self, memory: ContainerMemory) -> None:
        m = memory
        self._write(
            "INSERT INTO monitor_containers (name, container_id, docker_restart_count, unhealthy_since,"
            " docker_restarts, vvctl_restarts) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
            " container_id = excluded.container_id, docker_restart_count = excluded.docker_restart_count,"
            " unhealthy_since = excluded.unhealthy_since, docker_restarts = excluded.docker_restarts,"
            " vvctl_restarts = excluded.vvctl_restarts",
            (
                m.name,
                m.container_id,
                m.docker_restart_count,
                rfc3339(m.unhealthy_since) if m.unhealthy_since else None,
                m.docker_restarts,
                m.vvctl_restarts,
            ),
        )

    def add_restart(self, name: str, at: datetime) -> None:
        self._write("INSERT INTO container_restarts (name, at) VALUES (?, ?)", (name, rfc3339(at)))

    def restarts_since(self, name: str, since: datetime) -> list[datetime]:
        """The monitor's restarts of ``name`` at or after ``since``, oldest first."""
        rows = self._all(
            "SELECT at FROM container_restarts WHERE name = ? AND at >= ? ORDER BY at", (name, rfc3339(since))
        )
        return [parse_rfc3339(r["at"]) for r in rows]

    # -- LogLine verification --------------------------------------------------------------------------------

    def verified_head(self, log: str) -> VerifiedHead | None:
        row = self._one("SELECT log, seq, hash FROM verified_heads WHERE log = ?", (log,))
        return None if row is None else VerifiedHead(row["log"], int(row["seq"]), row["hash"])

    def put_verified_head(self, head: VerifiedHead, at: datetime) -> None:
        self._write(
            "INSERT INTO verified_heads (log, seq, hash, verified_at) VALUES (?, ?, ?, ?) ON CONFLICT(log)"
            " DO UPDATE SET seq = excluded.seq, hash = excluded.hash, verified_at = excluded.verified_at",
            (head.log, head.seq, head.hash, rfc3339(at)),
        )

    # -- the pipeline's tables, read only --------------------------------------------------------------------

    def video_counts(self) -> dict[str, int]:
        return {r["status"]: int(r["n"]) for r in self._all("SELECT status, COUNT(*) AS n FROM videos GROUP BY status")}

    def latest_analytic(self) -> Path | None:
        """The analytic JSON of the most recently analysed video (what the last orchestrate ran on)."""
        row = self._one(
            "SELECT analytic_path FROM videos WHERE status = 'done' AND analytic_path IS NOT NULL"
            " ORDER BY finished_at DESC, rowid DESC LIMIT 1",
            (),
        )
        return None if row is None else Path(row["analytic_path"])

    def first_job_start(self, job: str) -> datetime | None:
        """When ``job`` first ran on this box (the dead-man check's reference for a job that never succeeded)."""
        row = self._one("SELECT MIN(started_at) AS first FROM job_runs WHERE job = ?", (job,))
        return parse_rfc3339(row["first"]) if row is not None and row["first"] else None
