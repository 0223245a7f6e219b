"""``vvctl install``: bootstrap, the schedule (crontab block or systemd units), the integrity manifest.

Also ``--dry-run`` (a unified diff of what would change), ``--check`` (the schedule in place and current,
a cron daemon or systemd there, each job's last run, the manifest without drift) and ``--uninstall``
(exactly what install added: the block or the units, and the manifest; the config, the storage root and
the key store stay). A second install with nothing changed reports every item ``unchanged``.

The scheduled commands run with only ``VV_CONFIG`` set, so they see the config file, not the ``VV_*``
variables or flags of the shell that ran ``install``: the plan is made from the settings that file gives.
"""

from __future__ import annotations

import difflib
import os
import pwd
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_text
from vvctl.core.errors import StorageError, UsageError, VVError
from vvctl.core.jobs import JobContext, JobOutcome, JobSpec, run_job
from vvctl.core.keystore import load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.schedules import next_fire
from vvctl.core.settings import CONFIG_ENV, ENV_PREFIX, LoadedSettings, Settings, Source, load_settings
from vvctl.core.state import StateStore
from vvctl.core.timeutil import Clock, rfc3339, utcnow
from vvctl.ops.bootstrap import BootstrapReport, bootstrap
from vvctl.ops.install import manifest as mf
from vvctl.ops.install.crontab import (
    CronDFile,
    CrontabStore,
    UserCrontab,
    cron_daemons,
    extract,
    render_block,
    splice,
)
from vvctl.ops.install.plan import SchedulePlan, make_plan
from vvctl.ops.install.systemd import Systemd, render_units, timers

SPEC = JobSpec("install", "installed the box's schedule and integrity manifest")
UNINSTALL_SPEC = JobSpec("install", "removed the box's schedule and integrity manifest")


class SchedulerKind(StrEnum):
    CRONTAB = "crontab"
    SYSTEMD = "systemd"


class Change(StrEnum):
    INSTALLED = "installed"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    ABSENT = "absent"
    """Nothing to remove."""
    WOULD_INSTALL = "would_install"
    WOULD_UPDATE = "would_update"
    WOULD_REMOVE = "would_remove"


_DRY = {
    Change.INSTALLED: Change.WOULD_INSTALL,
    Change.UPDATED: Change.WOULD_UPDATE,
    Change.REMOVED: Change.WOULD_REMOVE,
}


@dataclass(frozen=True)
class InstallItem:
    what: str
    where: str
    change: Change
    detail: str = ""


@dataclass
class InstallClients:
    """How install reaches the machine; tests point these at a scratch user, directory or distribution."""

    crontab_user: str | None = None
    """Another user's crontab (``crontab -u``, root only); None: the invoking user's."""
    crontab_program: str = "crontab"
    cron_d: Path = Path("/etc/cron.d")
    unit_dir: Path | None = None
    """Where units go; None: the scope's standard directory."""
    systemd: Callable[[bool, Path | None], Systemd] = lambda system, unit_dir: Systemd.for_scope(
        system=system, unit_dir=unit_dir
    )
    dist: Distribution | None = None
    vvctl: tuple[str, ...] | None = None
    daemons: Callable[[], list[str]] = cron_daemons

    def distribution(self) -> Distribution:
        if self.dist is None:
            from vvctl.ops.install.entry import this_distribution

            self.dist = this_distribution()
        return self.dist

    def command(self) -> tuple[str, ...]:
        if self.vvctl is None:
            from vvctl.ops.install.entry import vvctl_argv

            self.vvctl = vvctl_argv(self.distribution())
        return self.vvctl

    def crontab(self, system: bool) -> CrontabStore:
        if system:
            return CronDFile(self.cron_d, user=_user_name())
        return UserCrontab(user=self.crontab_user, program=self.crontab_program)


@dataclass(frozen=True)
class InstallReport:
    action: str
    """install or uninstall."""
    dry_run: bool
    scheduler: SchedulerKind
    scope: str
    target: str
    config: Path
    storage_root: Path
    items: tuple[InstallItem, ...]
    diff: str
    """Unified diff of the schedule (crontab or unit files) from what is there to what install leaves."""
    todo: tuple[str, ...] = ()
    """Commands a person must run (systemctl where install could not)."""
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return any(item.change not in (Change.UNCHANGED, Change.ABSENT) for item in self.items)

    @property
    def outcome(self) -> JobOutcome:
        return JobOutcome.OK

    @property
    def summary(self) -> str:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.change.value] = counts.get(item.change.value, 0) + 1
        listed = ", ".join(f"{n} {change}" for change, n in counts.items())
        return f"{self.action} ({self.scheduler.value}, {self.scope}, {self.target}): {listed or 'nothing to do'}"


def _user_name() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _scope(system: bool) -> str:
    return "system" if system else "user"


def _resolve(
    settings: Settings, scheduler: SchedulerKind | None, system: bool | None
) -> tuple[SchedulerKind, bool, dict[str, Any] | None]:
    """Flags first, then what the manifest says was installed, then crontab of the user."""
    try:
        recorded = mf.read_manifest(mf.manifest_path(settings))
    except (FileNotFoundError, VVError):  # a malformed manifest only loses its hint here; --check reports it
        recorded = None
    previous = recorded["scheduler"] if recorded else None
    if scheduler is not None:
        kind = SchedulerKind(scheduler)
    else:
        kind = SchedulerKind(previous["kind"]) if previous else SchedulerKind.CRONTAB
    if system is None:
        system = bool(previous and previous["kind"] == kind.value and previous["scope"] == "system")
    return kind, system, previous


def scheduled_settings(config: Path) -> Settings:
    """The settings a scheduled run will have: the config file and defaults, nothing from this shell."""
    return load_settings(config, env={CONFIG_ENV: str(config)}, require_file=True).settings


def _env_notes(loaded: LoadedSettings) -> list[str]:
    # storage_root is pinned in the config bootstrap writes (and checked against an existing one).
    ignored = sorted(
        key for key, source in loaded.sources.items() if source in (Source.ENV, Source.FLAG) and key != "storage_root"
    )
    if not ignored:
        return []
    names = ", ".join(f"{ENV_PREFIX}{k.upper()}" for k in ignored)
    return [f"scheduled runs read only the config file: {names} given here will not apply to them; put it there"]


def _diff(before: str, after: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{name} (now)",
            tofile=f"{name} (after)",
        )
    )


def _change(before: str | None, after: str | None) -> Change:
    if before == after:
        return Change.UNCHANGED if after is not None else Change.ABSENT
    if after is None:
        return Change.REMOVED
    return Change.UPDATED if before is not None else Change.INSTALLED


def _dry(change: Change, dry_run: bool) -> Change:
    return _DRY.get(change, change) if dry_run else change


@dataclass
class _Schedule:
    """What installing or removing the schedule did (or would do)."""

    target: str
    items: list[InstallItem] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    entries: list[mf.Entry] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _crontab(store: CrontabStore, block: str | None, dry_run: bool) -> _Schedule:
    before = store.read()
    after = splice(before, block, store.target)
    result = _Schedule(store.target)
    change = _change(extract(before, store.target), block)
    result.items.append(InstallItem("crontab block", store.target, _dry(change, dry_run)))
    result.diff.append(_diff(before or "", after or "", store.target))
    if after != before and not dry_run:
        store.write(after)
    if block is not None:
        result.entries.append(mf.block_entry(store.target, block))
    return result


def _write_unit(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    atomic_write_text(path, text, mode=0o644)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc.strerror or exc}") from None


def _systemctl(sd: Systemd, result: _Schedule, *steps: Sequence[str]) -> None:
    """Run each systemctl step where systemd is usable; otherwise tell the person what to run."""
    reason = sd.usable()
    if reason is not None:
        result.notes.append(f"systemd units written but not enabled: {reason}")
        result.todo.extend(sd.commands(*step) for step in steps)
        return
    for step in steps:
        done = sd.systemctl_run(*step)
        if done.returncode != 0:
            error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
            result.notes.append(f"'{sd.commands(*step)}' failed: {error}")
            result.todo.append(sd.commands(*step))


def _systemd(sd: Systemd, units: dict[str, str], dry_run: bool) -> _Schedule:
    result = _Schedule(str(sd.unit_dir))
    present = sd.installed()
    changed = False
    for name in sorted(set(present) | set(units)):
        before = sd.read(name)
        after = units.get(name)
        change = _change(before, after)
        changed = changed or change not in (Change.UNCHANGED, Change.ABSENT)
        result.items.append(InstallItem(f"unit {name}", str(sd.unit_dir / name), _dry(change, dry_run)))
        result.diff.append(_diff(before or "", after or "", str(sd.unit_dir / name)))
        if dry_run:
            continue
        if after is None:
            _remove(sd.unit_dir / name)
        elif before != after:
            _write_unit(sd.unit_dir / name, after)
    if not dry_run:
        for name in units:
            result.entries.append(mf.file_entry(sd.unit_dir / name, mf.Role.UNIT))
        stale = [n for n in present if n not in units and n.endswith(".timer")]
        steps: list[Sequence[str]] = []
        if stale:
            steps.append(("disable", "--now", *stale))
        if changed:
            steps.append(("daemon-reload",))
        steps.append(("enable", "--now", *timers(units)))
        _systemctl(sd, result, *steps)
    return result


def _remove_systemd(sd: Systemd, dry_run: bool) -> _Schedule:
    result = _Schedule(str(sd.unit_dir))
    present = sd.installed()
    if not present:
        result.items.append(InstallItem("systemd units", str(sd.unit_dir), Change.ABSENT))
        return result
    for name in present:
        before = sd.read(name) or ""
        result.items.append(InstallItem(f"unit {name}", str(sd.unit_dir / name), _dry(Change.REMOVED, dry_run)))
        result.diff.append(_diff(before, "", str(sd.unit_dir / name)))
    if not dry_run:
        if sd.usable() is None:
            _systemctl(sd, result, ("disable", "--now", *timers(present)))
        else:
            result.todo.append(sd.commands("disable", "--now", *timers(present)))
        for name in present:
            _remove(sd.unit_dir / name)
        _systemctl(sd, result, ("daemon-reload",))
    return result


def _remove_schedule(kind: SchedulerKind, system: bool, clients: InstallClients, dry_run: bool) -> _Schedule:
    if kind is SchedulerKind.CRONTAB:
        return _crontab(clients.crontab(system), None, dry_run)
    return _remove_systemd(clients.systemd(system, clients.unit_dir), dry_run)


def _plan(settings: Settings, config: Path, clients: InstallClients) -> SchedulePlan:
    return make_plan(settings, config, clients.command())


@dataclass(frozen=True)
class CrontabLine:
    job: str
    schedule: str
    command: str
    """What cron runs with ``sh -c`` (the line's command with cron's ``%`` escapes undone)."""
    output: Path


@dataclass(frozen=True)
class CrontabPreview:
    config: Path
    config_exists: bool
    system: bool
    block: str
    lines: tuple[CrontabLine, ...]


def crontab_block(
    loaded: LoadedSettings, *, system: bool = False, clients: InstallClients | None = None
) -> CrontabPreview:
    """The block ``install`` would put in the crontab (``vvctl crontab``)."""
    clients = clients or InstallClients()
    config = loaded.config_path.expanduser().absolute()
    settings = scheduled_settings(config) if config.exists() else loaded.settings
    plan = _plan(settings, config, clients)
    block = render_block(plan, user=_user_name() if system else None)
    lines = tuple(CrontabLine(c.job, c.schedule.expression, c.shell(), c.output) for c in plan.commands)
    return CrontabPreview(config, config.exists(), system, block, lines)


def install(
    loaded: LoadedSettings,
    *,
    scheduler: SchedulerKind | None = None,
    system: bool | None = None,
    dry_run: bool = False,
    clients: InstallClients | None = None,
    clock: Clock = utcnow,
) -> InstallReport:
    """Bootstrap, then put the schedule and the integrity manifest in place (see the module docstring)."""

    clients = clients or InstallClients()
    config = loaded.config_path.expanduser().absolute()
    if config.exists():
        current = scheduled_settings(config)
        if current.storage_root.absolute() != loaded.settings.storage_root.absolute():
            raise UsageError(
                f"the config {config} sets storage_root {current.storage_root}, which scheduled runs will use;"
                f" change it there instead of giving {loaded.settings.storage_root} here"
            )
    _plan(loaded.settings, config, clients)  # refuse a bad schedule before anything is written
    kind, system, previous = _resolve(loaded.settings, scheduler, system)

    boot = bootstrap(loaded, dry_run=dry_run)
    notes = _env_notes(loaded)
    notes.extend(f"bootstrap: {i.kind} {i.path} {i.outcome.value}" for i in boot.items if i.outcome.value == "missing")
    settings = scheduled_settings(config) if config.exists() else loaded.settings
    plan = _plan(settings, config, clients)

    def body(ctx: JobContext | None) -> InstallReport:
        parts: list[_Schedule] = []
        if previous and (previous["kind"], previous["scope"]) != (kind.value, _scope(system)):
            old_kind, old_system = SchedulerKind(previous["kind"]), previous["scope"] == "system"
            parts.append(_remove_schedule(old_kind, old_system, clients, dry_run))
        if kind is SchedulerKind.CRONTAB:
            store = clients.crontab(system)
            current = _crontab(store, render_block(plan, user=store.user_field), dry_run)
            if not dry_run and not clients.daemons():
                current.notes.append(
                    "no cron daemon is running: start it (systemctl enable --now cron, or service cron start)"
                )
        else:
            current = _systemd(clients.systemd(system, clients.unit_dir), render_units(plan), dry_run)
        parts.append(current)
        items = [_bootstrap_item(boot)]
        items.extend(item for part in parts for item in part.items)
        items.append(_manifest(settings, config, clients, current, kind, system, dry_run, clock))
        return InstallReport(
            action="install",
            dry_run=dry_run,
            scheduler=kind,
            scope=_scope(system),
            target=current.target,
            config=config,
            storage_root=settings.storage_root,
            items=tuple(items),
            diff="".join(d for part in parts for d in part.diff),
            todo=tuple(t for part in parts for t in part.todo),
            notes=tuple(notes + [n for part in parts for n in part.notes]),
        )

    if dry_run:
        return body(None)
    return run_job(settings, SPEC, body, clock=clock).report


def _bootstrap_item(boot: BootstrapReport) -> InstallItem:
    made = [item for item in boot.items if item.outcome.value not in ("present", "missing")]
    if not made:
        return InstallItem("storage layout, config, key store, model", str(boot.storage_root), Change.UNCHANGED)
    change = Change.WOULD_INSTALL if boot.dry_run else Change.INSTALLED
    listed = ", ".join(sorted({item.kind for item in made}))
    return InstallItem("storage layout, config, key store, model", str(boot.storage_root), change, listed)


def _manifest(
    settings: Settings,
    config: Path,
    clients: InstallClients,
    schedule: _Schedule,
    kind: SchedulerKind,
    system: bool,
    dry_run: bool,
    clock: Clock,
) -> InstallItem:
    path = mf.manifest_path(settings)
    if dry_run:
        change = Change.WOULD_UPDATE if path.exists() else Change.WOULD_INSTALL
        return InstallItem("integrity manifest", str(path), change, "recomputed on install")
    store = load_keystore(settings.key_store)
    entries = mf.collect(settings, config, clients.distribution(), schedule.entries)
    document = mf.build(entries, mf.Scheduler(kind.value, _scope(system), schedule.target), clock=clock)
    existing = mf.load_valid(path, store.verification_keys())
    if existing is not None and mf.same_content(existing, document):
        return InstallItem("integrity manifest", str(path), Change.UNCHANGED, f"{len(entries)} files")
    change = Change.UPDATED if path.exists() else Change.INSTALLED
    mf.write_manifest(path, document, store)
    return InstallItem("integrity manifest", str(path), change, f"{len(entries)} files")


def uninstall(
    loaded: LoadedSettings,
    *,
    scheduler: SchedulerKind | None = None,
    system: bool | None = None,
    dry_run: bool = False,
    clients: InstallClients | None = None,
    clock: Clock = utcnow,
) -> InstallReport:
    """Remove exactly what install added: the schedule and the manifest (config, data and keys stay)."""
    clients = clients or InstallClients()
    config = loaded.config_path.expanduser().absolute()
    settings = scheduled_settings(config) if config.exists() else loaded.settings
    kind, system, _ = _resolve(settings, scheduler, system)

    def body(ctx: JobContext | None) -> InstallReport:
        part = _remove_schedule(kind, system, clients, dry_run)
        path = mf.manifest_path(settings)
        if dry_run:
            change = Change.WOULD_REMOVE if path.exists() else Change.ABSENT
        else:
            change = Change.REMOVED if mf.remove_manifest(path) else Change.ABSENT
        items = [*part.items, InstallItem("integrity manifest", str(path), change)]
        return InstallReport(
            action="uninstall",
            dry_run=dry_run,
            scheduler=kind,
            scope=_scope(system),
            target=part.target,
            config=config,
            storage_root=settings.storage_root,
            items=tuple(items),
            diff="".join(part.diff),
            todo=tuple(part.todo),
            notes=(
                *part.notes,
                f"kept: the config {config}, the storage root {settings.storage_root} and the key store"
                f" {settings.key_store} (remove them by hand if the box is retired)",
            ),
        )

    if dry_run or not settings.key_store.exists():
        return body(None)
    return run_job(settings, UNINSTALL_SPEC, body, clock=clock).report


# -- install --check ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckItem:
    what: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class JobTimes:
    job: str
    schedule: str
    last_run: str | None
    last_status: str | None
    last_success: str | None
    next_due: str


@dataclass(frozen=True)
class CheckReport:
    scheduler: SchedulerKind
    scope: str
    target: str
    config: Path
    items: tuple[CheckItem, ...]
    jobs: tuple[JobTimes, ...]
    integrity: mf.IntegrityReport
    diff: str

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def problems(self) -> list[str]:
        return [f"{item.what}: {item.detail}" for item in self.items if not item.ok]


def _job_times(settings: Settings, plan: SchedulePlan, now: datetime) -> list[JobTimes]:
    layout = StorageLayout(settings.storage_root)
    last: dict[str, Any] = {}
    good: dict[str, Any] = {}
    if layout.state_db.exists():
        with StateStore(layout.state_db) as store:
            last = {run.job: run for run in store.last_runs()}
            good = store.last_successes()
    times: list[JobTimes] = []
    for command in plan.commands:
        run, success = last.get(command.job), good.get(command.job)
        times.append(
            JobTimes(
                job=command.job,
                schedule=command.schedule.expression,
                last_run=run.started_at if run else None,
                last_status=run.status.value if run else None,
                last_success=(success.finished_at or success.started_at) if success else None,
                next_due=rfc3339(next_fire(command.schedule.expression, now)),
            )
        )
    return times


def check(
    loaded: LoadedSettings,
    *,
    scheduler: SchedulerKind | None = None,
    system: bool | None = None,
    clients: InstallClients | None = None,
    clock: Clock = utcnow,
) -> CheckReport:
    """Is the box installed as ``install`` would install it now? Read-only."""
    clients = clients or InstallClients()
    config = loaded.config_path.expanduser().absolute()
    if not config.exists():
        raise UsageError(f"the config {config} does not exist: run 'vvctl install' first")
    settings = scheduled_settings(config)
    kind, system, _ = _resolve(settings, scheduler, system)
    plan = _plan(settings, config, clients)
    items: list[CheckItem] = []
    diffs: list[str] = []
    if kind is SchedulerKind.CRONTAB:
        store = clients.crontab(system)
        wanted = render_block(plan, user=store.user_field)
        present = extract(store.read(), store.target)
        target = store.target
        if present is None:
            items.append(CheckItem("crontab block", False, f"not installed in {target}: run 'vvctl install'"))
        elif present != wanted:
            items.append(CheckItem("crontab block", False, "differs from what install would write now (see the diff)"))
        else:
            items.append(CheckItem("crontab block", True, f"installed in {target}, current"))
        diffs.append(_diff(present or "", wanted, target))
        daemons = clients.daemons()
        items.append(
            CheckItem(
                "cron daemon",
                bool(daemons),
                ", ".join(daemons) if daemons else "none running: systemctl enable --now cron (or service cron start)",
            )
        )
    else:
        sd = clients.systemd(system, clients.unit_dir)
        target = str(sd.unit_dir)
        for name, text in render_units(plan).items():
            present = sd.read(name)
            ok = present == text
            detail = "current" if ok else ("missing" if present is None else "differs (see the diff)")
            items.append(CheckItem(f"unit {name}", ok, detail))
            diffs.append(_diff(present or "", text, str(sd.unit_dir / name)))
        reason = sd.usable()
        if reason is not None:
            items.append(CheckItem("systemd", False, reason))
        else:
            names = timers(render_units(plan))
            enabled = sd.systemctl_run("is-enabled", *names)
            items.append(
                CheckItem(
                    "timers enabled",
                    enabled.returncode == 0,
                    " ".join(enabled.stdout.split()) or f"exit status {enabled.returncode}",
                )
            )
    keys = load_keystore(settings.key_store).verification_keys()
    integrity = mf.verify_integrity(settings, keys, dist=clients.distribution())
    items.append(CheckItem("integrity manifest", integrity.ok, integrity.summary))
    jobs = _job_times(settings, plan, clock())
    return CheckReport(kind, _scope(system), target, config, tuple(items), tuple(jobs), integrity, "".join(diffs))


__all__ = [
    "SPEC",
    "Change",
    "CheckItem",
    "CheckReport",
    "CrontabLine",
    "CrontabPreview",
    "InstallClients",
    "InstallItem",
    "InstallReport",
    "JobTimes",
    "SchedulerKind",
    "check",
    "crontab_block",
    "install",
    "scheduled_settings",
    "uninstall",
]
