"""systemd service and timer units: valid for ``systemd-analyze verify``, installed, enabled where systemd
runs (and the commands to run printed where it does not), removed exactly."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.ops.install.conftest import clients_for, loaded_for
from vvctl.core.settings import load_settings
from vvctl.ops.install.entry import vvctl_argv
from vvctl.ops.install.install import Change, SchedulerKind, check, install, uninstall
from vvctl.ops.install.manifest import read_manifest
from vvctl.ops.install.plan import make_plan
from vvctl.ops.install.systemd import Systemd, render_units


class FakeSystemctl:
    """Records systemctl calls; ``booted`` says whether systemd runs."""

    def __init__(self, booted: bool) -> None:
        self.booted = booted
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "enabled\n" * 5, "")

    def factory(self, unit_dir: Path):  # type: ignore[no-untyped-def]
        def make(system: bool, _: Path | None) -> Systemd:
            return Systemd(unit_dir, system, "/bin/systemctl", self, lambda: self.booted)

        return make


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_generated_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # A config path with a space and a percent sign: both need escaping in a unit file.
    config = tmp_path / "my etc" / "vv%box.toml"
    settings = load_settings(tmp_path / "none.toml", env={}, flags={"storage_root": str(tmp_path / "box")}).settings
    units = render_units(make_plan(settings, config, vvctl_argv()))
    assert len(units) == 10
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for name, text in units.items():
        (unit_dir / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(unit_dir / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    service = units["vvctl-orchestrate.service"]
    assert f'Environment="VV_CONFIG={tmp_path}/my etc/vv%%box.toml"' in service
    assert f"ExecStart={vvctl_argv()[0]} --quiet orchestrate --once" in service
    assert "OnCalendar=*-*-* *:00,05,10,15,20,25,30,35,40,45,50,55:00" in units["vvctl-orchestrate.timer"]
    assert "OnCalendar=*-*-* 04:30:00" in units["vvctl-selftest.timer"]


def test_without_systemd_the_units_are_written_and_the_commands_to_run_are_printed(
    tmp_path: Path, box: tuple[Path, Path]
) -> None:
    config, root = box
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "someone-else.timer").write_text("[Timer]\nOnCalendar=daily\n")
    fake = FakeSystemctl(booted=False)
    clients = clients_for(None, systemd=fake.factory(unit_dir))
    report = install(loaded_for(config, root), scheduler=SchedulerKind.SYSTEMD, clients=clients)
    names = sorted(p.name for p in unit_dir.iterdir())
    assert len(names) == 11 and "someone-else.timer" in names
    assert fake.calls == []
    assert report.todo == (
        "systemctl --user daemon-reload",
        "systemctl --user enable --now vvctl-orchestrate.timer vvctl-monitor.timer vvctl-export-logs.timer"
        " vvctl-cleanup.timer vvctl-selftest.timer",
    )
    units = {f["path"] for f in read_manifest(root / "state" / "vv-signature.json")["files"] if f["role"] == "unit"}
    assert units == {str(unit_dir / n) for n in names if n.startswith("vvctl-")}

    again = install(loaded_for(config), clients=clients)  # the manifest says systemd
    assert not again.changed

    removed = uninstall(loaded_for(config), clients=clients)
    assert {i.change for i in removed.items} == {Change.REMOVED}
    assert sorted(p.name for p in unit_dir.iterdir()) == ["someone-else.timer"]


def test_with_systemd_the_timers_are_enabled_and_disabled(tmp_path: Path, box: tuple[Path, Path]) -> None:
    config, root = box
    unit_dir = tmp_path / "units"
    fake = FakeSystemctl(booted=True)
    clients = clients_for(None, systemd=fake.factory(unit_dir))
    report = install(loaded_for(config, root), scheduler=SchedulerKind.SYSTEMD, system=True, clients=clients)
    assert report.todo == () and report.scope == "system"
    timers = [f"vvctl-{j}.timer" for j in ("orchestrate", "monitor", "export-logs", "cleanup", "selftest")]
    assert fake.calls == [["/bin/systemctl", "daemon-reload"], ["/bin/systemctl", "enable", "--now", *timers]]
    assert check(loaded_for(config), clients=clients).ok
    fake.calls.clear()
    uninstall(loaded_for(config), clients=clients)
    assert fake.calls == [["/bin/systemctl", "disable", "--now", *sorted(timers)], ["/bin/systemctl", "daemon-reload"]]
    assert list(unit_dir.iterdir()) == []


def test_switching_from_crontab_to_systemd_removes_the_crontab_block(tmp_path: Path, box: tuple[Path, Path]) -> None:
    config, root = box
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    unit_dir = tmp_path / "units"
    fake = FakeSystemctl(booted=False)
    clients = clients_for(None, cron_d=cron_d, systemd=fake.factory(unit_dir))
    install(loaded_for(config, root), system=True, clients=clients)
    assert (cron_d / "vvctl").exists()
    report = install(loaded_for(config), scheduler=SchedulerKind.SYSTEMD, system=True, clients=clients)
    assert not (cron_d / "vvctl").exists()
    assert ("crontab block", Change.REMOVED) in [(i.what, i.change) for i in report.items]
    assert read_manifest(root / "state" / "vv-signature.json")["scheduler"]["kind"] == "systemd"
