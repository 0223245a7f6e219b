"""The monitor's integrity check: one changed installed file is named, CRITICAL; as ``install --check`` does."""

from __future__ import annotations

import json
from importlib.metadata import Distribution
from pathlib import Path

from typer.testing import CliRunner

from tests.ops.install.conftest import clients_for, loaded_for
from vvctl.cli.app import app
from vvctl.core.alerts import State
from vvctl.ops.install.install import install
from vvctl.ops.monitor import MonitorClients, monitor_once


def _installed(box: tuple[Path, Path], tmp_path: Path, dist: Distribution | None = None) -> Path:
    config, root = box
    config.parent.mkdir(parents=True)
    # No schedules watched and no free-space floor: the integrity row is the one under test.
    config.write_text(f'storage_root = "{root}"\nmin_free_space_gb = 0\nmin_free_space_critical_gb = 0\n')
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    overrides = {"cron_d": cron_d} if dist is None else {"cron_d": cron_d, "dist": dist}
    install(loaded_for(config), system=True, clients=clients_for(None, **overrides))
    return config


def test_monitor_names_the_changed_installed_file(
    box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path
) -> None:
    config = _installed(box, tmp_path, scratch_dist)
    clients = MonitorClients(distribution=lambda: scratch_dist, gpu_present=lambda: False)
    settings = loaded_for(config).settings
    rows = {row.check: row for row in monitor_once(settings, clients=clients, sinks=[]).checks}
    assert rows["integrity"].state is State.OK, rows["integrity"].value

    module = Path(str(scratch_dist.locate_file("vvctl/core/jobs.py")))
    module.write_bytes(b"JOBS = 3  # changed on the box\n")
    report = monitor_once(settings, clients=clients, sinks=[])
    row = {row.check: row for row in report.checks}["integrity"]
    assert row.state is State.CRITICAL and report.exit_code == 9
    assert f"package {module}: changed" in row.value


def test_monitor_cli_names_an_edited_config(box: tuple[Path, Path], tmp_path: Path) -> None:
    config = _installed(box, tmp_path)
    config.write_text(config.read_text() + "# edited on the box\n")
    result = CliRunner().invoke(app, ["--config", str(config), "--json", "monitor", "--once"], catch_exceptions=False)
    document = json.loads(result.stdout)
    row = next(c for c in document["checks"] if c["check"] == "integrity")
    assert row["state"] == "CRITICAL" and f"config {config}: changed" in row["value"]
    assert result.exit_code == 9
