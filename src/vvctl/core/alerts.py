"""Alerts: each check's state kept in SQLite, one notification per change, reminders, RESOLVED, delivery.

A check reports an :class:`Observation` (state OK / WARN / CRITICAL, what, where, value, threshold,
hint). :class:`Alerter` keeps the state of every check in the state store (``alert_states``: the state
and since when) and, per delivery target, the state that target was last told about
(``alert_deliveries``). From those two it decides, run after run:

* a check that turns WARN or CRITICAL (or moves between them) is sent to every target once (``ALERT``);
* while it stays so, a ``REMINDER`` goes out at most every ``realert_after_s`` (0: never);
* when it turns OK, every target that was told about the problem gets one ``RESOLVED``.

A delivery is recorded per target only once it succeeded, so a target that failed is tried again on the
next run while the others are not sent the same alert twice; a failed delivery never raises. Because the
state lives in SQLite, successive ``--once`` runs from cron deduplicate exactly like a long-running watcher.

Targets (:class:`AlertSink`) are Apprise URLs (``alert_urls``: Slack, Telegram, ntfy, e-mail, JSON webhooks
...) and a local command that receives the alert as JSON on stdin (``alert_command``). Both are secrets:
targets are named in messages, logs and reports only as ``alert URL #2 (slack)`` or ``alert_command``,
and bookkept under a hash of their text, never the text itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shlex
import socket
import sqlite3
import subprocess
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from vvctl.core.settings import Settings
from vvctl.core.state import StateStore
from vvctl.core.timeutil import Clock, parse_rfc3339, rfc3339, utcnow

log = logging.getLogger("vvctl.alerts")

ALERT_KIND = "vvctl.alert"
COMMAND_TIMEOUT_S = 30.0


class State(StrEnum):
    OK = "OK"
    WARN = "WARN"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {State.OK: 0, State.WARN: 1, State.CRITICAL: 2}


def worst(states: Iterable[State]) -> State:
    """The most severe of ``states`` (OK for none)."""
    return max(states, key=lambda s: s.rank, default=State.OK)


class AlertEvent(StrEnum):
    ALERT = "ALERT"
    """The check entered this state (from OK, or moved between WARN and CRITICAL)."""
    REMINDER = "REMINDER"
    """The check is still in the state the target was told about, ``realert_after_s`` later."""
    RESOLVED = "RESOLVED"
    """The check is OK again after the target was told about a problem."""


@dataclass(frozen=True)
class Observation:
    """What one check saw on this run."""

    check: str
    """Stable id: ``disk``, ``container:web``, ``deadman:orchestrate`` ... (the key of its alert state)."""
    state: State
    what: str
    """What is checked, in words: "free space under the storage root"."""
    where: str
    """Host, container, path or log the check is about."""
    value: str
    threshold: str
    hint: str = ""
    """What a person can do about it."""


@dataclass(frozen=True)
class Tracked:
    """An observation with its alert state: since when the check has been in this state."""

    observation: Observation
    since: datetime
    previous: State | None
    """The state recorded before this run (None: the check is new)."""

    @property
    def changed(self) -> bool:
        return self.previous is not None and self.previous is not self.observation.state

    @property
    def appeared_bad(self) -> bool:
        return self.previous is None and self.observation.state is not State.OK


@dataclass(frozen=True)
class Alert:
    """One notification: what, where, value, threshold, since when, and a hint."""

    event: AlertEvent
    check: str
    state: State
    previous: State | None
    """The state the target was told about before (None: nothing)."""
    what: str
    where: str
    host: str
    value: str
    threshold: str
    since: datetime
    hint: str
    at: datetime

    @property
    def title(self) -> str:
        label = "RESOLVED" if self.event is AlertEvent.RESOLVED else self.state.value
        reminder = " (reminder)" if self.event is AlertEvent.REMINDER else ""
        return f"[vvctl {label}]{reminder} {self.what}: {self.where} on {self.host}"

    @property
    def body(self) -> str:
        lines = [
            f"{self.check}: {self.state.value}" + (f" (was {self.previous.value})" if self.previous else ""),
            f"value: {self.value}",
            f"threshold: {self.threshold}",
            f"since: {rfc3339(self.since)}",
            f"host: {self.host}",
        ]
        if self.hint and self.event is not AlertEvent.RESOLVED:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def document(self) -> dict[str, Any]:
        """The JSON an ``alert_command`` reads on stdin."""
        return {
            "schema_version": 1,
            "kind": ALERT_KIND,
            "event": self.event.value,
            "check": self.check,
            "state": self.state.value,
            "previous": self.previous.value if self.previous else None,
            "what": self.what,
            "where": self.where,
            "host": self.host,
            "value": self.value,
            "threshold": self.threshold,
            "since": rfc3339(self.since),
            "hint": self.hint,
            "at": rfc3339(self.at),
            "title": self.title,
        }


class DeliveryError(Exception):
    """A notification was not delivered. The message never holds the target's URL or command."""


class AlertSink(Protocol):
    """A delivery target."""

    @property
    def key(self) -> str:
        """Stable, non-secret id under which deliveries to this target are bookkept (a hash)."""
        ...

    @property
    def name(self) -> str:
        """Non-secret label for messages and logs ("alert URL #1 (slack)")."""
        ...

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` or raise :class:`DeliveryError`."""
        ...


def _digest(kind: str, secret: str) -> str:
    return f"{kind}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


@contextlib.contextmanager
def _apprise_quiet() -> Iterator[None]:
    """Apprise logs request URLs (tokens in their paths) at debug level and imports deprecated stdlib
    modules while it loads its plugins: keep both away from vvctl's logs and output."""
    apprise_log = logging.getLogger("apprise")
    disabled = apprise_log.disabled
    apprise_log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        apprise_log.disabled = disabled


_NOTIFY_TYPES = {State.OK: "success", State.WARN: "warning", State.CRITICAL: "failure"}


class AppriseSink:
    """An Apprise URL (``slack://``, ``tgram://``, ``json://`` ...): the message is the alert's title and body."""

    def __init__(self, url: str, index: int) -> None:
        self._url = url
        self.key = _digest("url", url)
        scheme = url.split("://", 1)[0].lower() if "://" in url else "?"
        self.name = f"alert URL #{index + 1} ({scheme})"

    def __repr__(self) -> str:
        return f"AppriseSink({self.name!r})"

    def send(self, alert: Alert) -> None:
        with _apprise_quiet():
            import apprise

            notifier = apprise.Apprise()
            if not notifier.add(self._url):
                raise DeliveryError(f"{self.name} is not a URL Apprise understands")
            state = State.OK if alert.event is AlertEvent.RESOLVED else alert.state
            delivered = notifier.notify(body=alert.body, title=alert.title, notify_type=_NOTIFY_TYPES[state])
        if not delivered:
            raise DeliveryError(f"{self.name} did not accept the notification")


Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


class CommandSink:
    """``alert_command``: run with the alert as JSON on stdin; exit status 0 means delivered."""

    name = "alert_command"

    def __init__(self, command: str, *, runner: Runner = subprocess.run, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._command = command
        self._runner = runner
        self._timeout_s = timeout_s
        self.key = _digest("command", command)

    def __repr__(self) -> str:
        return "CommandSink('alert_command')"

    def send(self, alert: Alert) -> None:
        try:
            argv = shlex.split(self._command)
        except ValueError:
            raise DeliveryError("alert_command cannot be split into words (unbalanced quotes)") from None
        if not argv:
            raise DeliveryError("alert_command is empty")
        payload = json.dumps(alert.document(), ensure_ascii=False).encode()
        try:
            done = self._runner(
                argv, input=payload, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=self._timeout_s
            )
        except FileNotFoundError:
            raise DeliveryError("alert_command: program not found") from None
        except PermissionError:
            raise DeliveryError("alert_command: program not executable") from None
        except subprocess.TimeoutExpired:
            raise DeliveryError(f"alert_command did not finish within {self._timeout_s:g} s") from None
        except OSError as exc:
            raise DeliveryError(f"alert_command could not be started ({exc.strerror or type(exc).__name__})") from None
        if done.returncode != 0:
            raise DeliveryError(f"alert_command exited with status {done.returncode}")


def sinks_from_settings(settings: Settings, *, runner: Runner = subprocess.run) -> list[AlertSink]:
    """Every configured target: each ``alert_urls`` entry, then ``alert_command`` when set."""
    sinks: list[AlertSink] = [AppriseSink(url, i) for i, url in enumerate(settings.alert_urls)]
    if settings.alert_command.strip():
        sinks.append(CommandSink(settings.alert_command, runner=runner))
    return sinks


# -- the state store's alert tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredState:
    check: str
    state: State
    since: datetime
    checked_at: datetime
    what: str
    where: str
    value: str
    threshold: str
    hint: str

    def observation(self) -> Observation:
        return Observation(self.check, self.state, self.what, self.where, self.value, self.threshold, self.hint)


@dataclass(frozen=True)
class Notified:
    state: State
    at: datetime


def _stored(row: sqlite3.Row) -> StoredState:
    return StoredState(
        check=row["check_id"],
        state=State(row["state"]),
        since=parse_rfc3339(row["since"]),
        checked_at=parse_rfc3339(row["checked_at"]),
        what=row["what"],
        where=row["location"],
        value=row["value"],
        threshold=row["threshold"],
        hint=row["hint"],
    )


class AlertStore(StateStore):
    """The ``alert_states`` and ``alert_deliveries`` tables of the state store."""

    def states(self) -> dict[str, StoredState]:
        return {r["check_id"]: _stored(r) for r in self._all("SELECT * FROM alert_states ORDER BY check_id")}

    def put_state(self, observation: Observation, since: datetime, checked_at: datetime) -> None:
        o = observation
        self._write(
            "INSERT INTO alert_states (check_id, state, since, checked_at, what, location, value, threshold, hint)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(check_id) DO UPDATE SET state = excluded.state,"
            " since = excluded.since, checked_at = excluded.checked_at, what = excluded.what,"
            " location = excluded.location, value = excluded.value, threshold = excluded.threshold,"
            " hint = excluded.hint",
            (
                o.check,
                o.state.value,
                rfc3339(since),
                rfc3339(checked_at),
                o.what,
                o.where,
                o.value,
                o.threshold,
                o.hint,
            ),
        )

    def notified(self, check: str) -> dict[str, Notified]:
        rows = self._all("SELECT target, state, notified_at FROM alert_deliveries WHERE check_id = ?", (check,))
        return {r["target"]: Notified(State(r["state"]), parse_rfc3339(r["notified_at"])) for r in rows}

    def record_delivery(self, check: str, target: str, state: State, at: datetime) -> None:
        self._write(
            "INSERT INTO alert_deliveries (check_id, target, state, notified_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(check_id, target) DO UPDATE SET state = excluded.state, notified_at = excluded.notified_at",
            (check, target, state.value, rfc3339(at)),
        )


# -- deciding and delivering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    alert: Alert
    target: str
    """The target's non-secret name."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AlertRound:
    tracked: list[Tracked]
    deliveries: list[Delivery]

    @property
    def transitions(self) -> list[Tracked]:
        """Checks whose state changed on this run (or that appeared in a bad state)."""
        return [t for t in self.tracked if t.changed or t.appeared_bad]

    @property
    def sent(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.ok]

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]


def _event(state: State, told: Notified | None, now: datetime, realert: timedelta | None) -> AlertEvent | None:
    if state is State.OK:
        return AlertEvent.RESOLVED if told is not None and told.state is not State.OK else None
    if told is None or told.state is not state:
        return AlertEvent.ALERT
    if realert is not None and now - told.at >= realert:
        return AlertEvent.REMINDER
    return None


class Alerter:
    """Turns each run's observations into state records and notifications (see the module docstring)."""

    def __init__(
        self,
        store: AlertStore,
        sinks: Sequence[AlertSink],
        *,
        realert_after_s: float,
        clock: Clock = utcnow,
        host: str | None = None,
    ) -> None:
        self.store = store
        self.sinks = list(sinks)
        self.realert = timedelta(seconds=realert_after_s) if realert_after_s > 0 else None
        self.clock = clock
        self.host = host or socket.gethostname()

    def track(self, observations: Sequence[Observation]) -> list[Tracked]:
        """Record this run's state of every check; a check's ``since`` moves only when its state changes."""
        now = self.clock()
        before = self.store.states()
        tracked: list[Tracked] = []
        for observation in observations:
            old = before.get(observation.check)
            since = old.since if old is not None and old.state is observation.state else now
            self.store.put_state(observation, since, now)
            tracked.append(Tracked(observation, since, old.state if old is not None else None))
        return tracked

    def notify(self, tracked: Sequence[Tracked]) -> list[Delivery]:
        """Send what each target has not been told yet; never raises for a failed delivery."""
        deliveries: list[Delivery] = []
        if not self.sinks:
            return deliveries
        now = self.clock()
        for item in tracked:
            o = item.observation
            told = self.store.notified(o.check)
            for sink in self.sinks:
                previous = told.get(sink.key)
                event = _event(o.state, previous, now, self.realert)
                if event is None:
                    continue
                alert = Alert(
                    event=event,
                    check=o.check,
                    state=o.state,
                    previous=previous.state if previous is not None else None,
                    what=o.what,
                    where=o.where,
                    host=self.host,
                    value=o.value,
                    threshold=o.threshold,
                    since=item.since,
                    hint=o.hint,
                    at=now,
                )
                error = _deliver(sink, alert)
                if error is None:
                    self.store.record_delivery(o.check, sink.key, o.state, now)
                    log.info("alert sent", extra={"check": o.check, "event": event.value, "target": sink.name})
                else:
                    log.warning(
                        "alert not delivered; retried on the next run",
                        extra={"check": o.check, "event": event.value, "target": sink.name, "error": error},
                    )
                deliveries.append(Delivery(alert, sink.name, error))
        return deliveries

    def run(self, observations: Sequence[Observation]) -> AlertRound:
        tracked = self.track(observations)
        return AlertRound(tracked, self.notify(tracked))


def _deliver(sink: AlertSink, alert: Alert) -> str | None:
    try:
        sink.send(alert)
    except DeliveryError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a notifier's bug must not stop the checks; named, never its text
        return f"{sink.name} failed ({type(exc).__name__})"
    return None


__all__ = [
    "Alert",
    "AlertEvent",
    "AlertRound",
    "AlertSink",
    "AlertStore",
    "Alerter",
    "AppriseSink",
    "CommandSink",
    "Delivery",
    "DeliveryError",
    "Observation",
    "State",
    "StoredState",
    "Tracked",
    "sinks_from_settings",
    "worst",
]
