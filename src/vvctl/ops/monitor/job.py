"""``vvctl monitor`` as a job: run every registered check, heal containers, alert people once, export metrics.

One pass: the checks of :data:`vvctl.ops.monitor.checks.REGISTRY` run (a failing check is a WARN of its
own; Docker not reachable is the ``docker`` check's result), the alert state is updated and the alerts
due are delivered (:mod:`vvctl.core.alerts`), restarts, state changes and sent alerts are appended as
signed LogLines (a quiet pass appends none), and the metrics textfile is rewritten.

``--once`` is one pass as one job run. ``--watch`` is one job run for its whole life: it holds the
monitor's lock, runs a pass every ``interval`` seconds until SIGTERM/SIGINT, and may serve ``/metrics``
and ``/status``. While a watcher runs, a ``--once`` (the cron line) does not run the checks a second
time: it finds the lock held by the watcher (named in ``state/monitor.watch.json``) and shows the
watcher's latest results from the state store instead, with the same exit codes (mode ``deferred``).
Any other holder of the lock (a slow ``--once``) makes it exit 4 as every job does.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from vvctl.core.alerts import Alerter, AlertSink, AlertStore, State, Tracked, sinks_from_settings
from vvctl.core.atomic import atomic_write_json
from vvctl.core.errors import LockedError, StorageError, VVError
from vvctl.core.jobs import JobContext, JobRunResult, JobSpec, run_job
from vvctl.core.layout import StorageLayout, check_storage_root
from vvctl.core.locks import lock_holder
from vvctl.core.schedules import job_schedules
from vvctl.core.settings import Settings
from vvctl.core.timeutil import Clock, parse_rfc3339, rfc3339, utcnow
from vvctl.ops.monitor import containers as _containers  # noqa: F401 - registers the container check
from vvctl.ops.monitor.checks import CheckContext, MonitorClients, run_checks
from vvctl.ops.monitor.metrics import MetricsServer, write_textfile
from vvctl.ops.monitor.report import CheckRow, DeliveryRow, Mode, MonitorReport
from vvctl.ops.monitor.store import MonitorStore

SPEC = JobSpec("monitor", "ran the monitor")
WATCH_MARKER = "monitor.watch.json"
_LOGLINE_STATUS = {State.OK: "ok", State.WARN: "warning", State.CRITICAL: "failed"}


def _layout(settings: Settings) -> StorageLayout:
    layout = StorageLayout(check_storage_root(settings.storage_root))
    if not layout.state.is_dir():
        raise StorageError(f"storage root {layout.root} is not set up (state/ is missing); run 'vvctl bootstrap' first")
    return layout


def _textfile(settings: Settings, layout: StorageLayout) -> Path | None:
    if not settings.metrics_textfile:
        return None
    path = Path(settings.metrics_textfile).expanduser()
    return path if path.is_absolute() else layout.root / path


class _Monitor:
    """What one job run of the monitor keeps between its passes."""

    def __init__(
        self, ctx: JobContext, clients: MonitorClients, sinks: Sequence[AlertSink], textfile: Path | None
    ) -> None:
        self.ctx = ctx
        self.clients = clients
        self.textfile = textfile
        self.store = MonitorStore(ctx.layout.state_db, clock=ctx.clock)
        self.alerts = AlertStore(ctx.layout.state_db, clock=ctx.clock)
        self.alerter = Alerter(self.alerts, sinks, realert_after_s=ctx.settings.realert_after_s, clock=ctx.clock)
        self.recorded: list[str] = []

    def close(self) -> None:
        self.store.close()
        self.alerts.close()

    def _record(self, did: str, this: str, status: str, source: dict[str, str]) -> None:
        self.ctx.record(did, this, status=status, source=source)
        self.recorded.append(f"{did}: {this}")

    def _record_changes(self, tracked: list[Tracked]) -> None:
        for item in tracked:
            o = item.observation
            if not (item.changed or item.appeared_bad):
                continue
            was = item.previous.value if item.previous is not None else "new"
            self._record(
                "saw a check change state",
                f"{o.check}: {was} -> {o.state.value}: {o.value}",
                _LOGLINE_STATUS[o.state],
                {"type": "check", "id": o.check},
            )

    def one_pass(self) -> MonitorReport:
        ctx = self.ctx
        checks = CheckContext(ctx.settings, ctx.layout, ctx.clock(), self.store, ctx.state, self.clients)
        observations = run_checks(checks)
        tracked = self.alerter.track(observations)
        # Deliver before writing LogLines: on a box short of space the alert matters more than its record.
        deliveries = self.alerter.notify(tracked)
        start = len(self.recorded)
        for event in checks.events:
            self._record(event.did, event.this, event.status, dict(event.source))
        self._record_changes(tracked)
        sent: dict[tuple[str, str], list[str]] = {}
        for delivery in deliveries:
            if delivery.ok:
                sent.setdefault((delivery.alert.check, delivery.alert.event.value), []).append(delivery.target)
        for (check, kind), targets in sent.items():
            state = next(t.observation.state for t in tracked if t.observation.check == check)
            self._record(
                "sent an alert",
                f"{kind} {check} {state.value} to {', '.join(targets)}",
                "ok",
                {"type": "check", "id": check},
            )
        for delivery in deliveries:
            if not delivery.ok:
                ctx.log.warning("alert not delivered", extra={"check": delivery.alert.check, "error": delivery.error})
        report = MonitorReport(
            mode=Mode.ONCE,
            storage_root=ctx.layout.root,
            checked_at=checks.now,
            checks=[
                CheckRow(o.check, o.state, o.what, o.where, o.value, o.threshold, t.since, o.hint)
                for t in tracked
                for o in (t.observation,)
            ],
            facts=checks.facts,
            deliveries=[
                DeliveryRow(d.alert.check, d.alert.event.value, d.alert.state, d.target, d.ok, d.error)
                for d in deliveries
            ],
            recorded=self.recorded[start:],
            metrics_textfile=self.textfile,
        )
        if self.textfile is not None:
            try:
                write_textfile(self.textfile, report)
            except VVError as exc:
                ctx.log.error("metrics textfile not written", extra={"path": str(self.textfile), "error": exc.message})
        ctx.progress = report.summary
        return report


def _validate(settings: Settings) -> None:
    job_schedules(settings)  # a schedule that is not a cron expression is a config error (exit 3)


def monitor_once(
    settings: Settings,
    *,
    clients: MonitorClients | None = None,
    sinks: Sequence[AlertSink] | None = None,
    clock: Clock = utcnow,
) -> MonitorReport:
    """One pass of every check as one run of the ``monitor`` job, or, while a ``--watch`` monitor holds the
    lock, that watcher's latest results (mode ``deferred``)."""
    _validate(settings)
    layout = _layout(settings)
    textfile = _textfile(settings, layout)
    chosen = sinks_from_settings(settings) if sinks is None else sinks

    def body(ctx: JobContext) -> MonitorReport:
        monitor = _Monitor(ctx, clients or MonitorClients(), chosen, textfile)
        try:
            return monitor.one_pass()
        finally:
            monitor.close()

    try:
        result: JobRunResult[MonitorReport] = run_job(settings, SPEC, body, clock=clock, layout=layout)
    except LockedError:
        deferred = _deferred(layout, clock)
        if deferred is None:
            raise
        return deferred
    return result.report


def monitor_watch(
    settings: Settings,
    *,
    interval_s: float,
    stop: threading.Event,
    serve: tuple[str, int] | None = None,
    clients: MonitorClients | None = None,
    sinks: Sequence[AlertSink] | None = None,
    clock: Clock = utcnow,
    on_serving: Callable[[tuple[str, int]], None] | None = None,
    on_pass: Callable[[MonitorReport], None] | None = None,
) -> MonitorReport:
    """Passes every ``interval_s`` seconds until ``stop`` is set, as one run of the ``monitor`` job."""
    _validate(settings)
    layout = _layout(settings)
    textfile = _textfile(settings, layout)
    chosen = sinks_from_settings(settings) if sinks is None else sinks
    server = MetricsServer(*serve) if serve is not None else None

    def body(ctx: JobContext) -> MonitorReport:
        monitor = _Monitor(ctx, clients or MonitorClients(), chosen, textfile)
        marker = layout.state / WATCH_MARKER
        atomic_write_json(
            marker,
            {"pid": os.getpid(), "started_at": rfc3339(ctx.clock()), "interval_s": interval_s, "run_id": ctx.run_id},
        )
        passes = 0
        try:
            if server is not None:
                server.start()
                if on_serving is not None:
                    on_serving(server.address)
            while True:
                report = monitor.one_pass()
                passes += 1
                if server is not None:
                    server.publish(report)
                if on_pass is not None:
                    on_pass(report)
                if ctx.stop.wait(interval_s):
                    break
        finally:
            if server is not None:
                server.close()
            marker.unlink(missing_ok=True)
            monitor.close()
        return replace(report, mode=Mode.WATCH, passes=passes, stopped=True, recorded=list(monitor.recorded))

    try:
        result = run_job(settings, SPEC, body, clock=clock, stop=stop, layout=layout)
    finally:
        if server is not None:
            server.close()
    return result.report


def _deferred(layout: StorageLayout, clock: Clock) -> MonitorReport | None:
    """The latest results of the ``--watch`` monitor holding the lock, or None when no watcher holds it."""
    try:
        marker = json.loads((layout.state / WATCH_MARKER).read_bytes())
        pid, started = int(marker["pid"]), parse_rfc3339(str(marker["started_at"]))
        interval = float(marker["interval_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if lock_holder(layout.lock(SPEC.name)) != pid:
        return None
    with AlertStore(layout.state_db, clock=clock) as store:
        states = [s for s in store.states().values() if s.checked_at >= started]
    now = clock()
    rows = [CheckRow(s.check, s.state, s.what, s.where, s.value, s.threshold, s.since, s.hint) for s in states]
    last = max((s.checked_at for s in states), default=started)
    if now - last > timedelta(seconds=max(3 * interval, 180)):
        rows.append(_stale_watcher(pid, last, now))
    return MonitorReport(mode=Mode.DEFERRED, storage_root=layout.root, checked_at=last, checks=rows, watcher_pid=pid)


def _stale_watcher(pid: int, last: datetime, now: datetime) -> CheckRow:
    return CheckRow(
        check="monitor-watch",
        state=State.CRITICAL,
        what="the watching monitor runs its passes",
        where=f"vvctl monitor --watch (pid {pid})",
        value=f"its last pass was at {rfc3339(last)}, {(now - last).total_seconds():.0f} s ago",
        threshold="a pass every --interval seconds",
        since=last,
        hint=f"the watcher looks stuck: 'kill {pid}' (systemd restarts it) and read logs/vvctl.jsonl",
    )


__all__ = ["SPEC", "WATCH_MARKER", "monitor_once", "monitor_watch"]
