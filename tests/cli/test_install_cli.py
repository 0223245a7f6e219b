"""``vvctl crontab``, ``vvctl install`` and ``vvctl selftest`` through the real typer app and the installed
entry point: output, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ScratchUser
from tests.ops.install.conftest import FOREIGN
from vvctl.cli.app import app
from vvctl.ops.install.crontab import BEGIN, END, command_lines


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_crontab_prints_the_block_install_writes(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'storage_root = "{tmp_path / "box"}"\n')
    code, out, err = _run(config, "crontab")
    assert code == 0 and err == ""
    assert out.startswith(BEGIN + "\n") and out.endswith(END + "\n")
    lines = command_lines(out)
    assert lines[2].startswith("0 2 * * * VV_CONFIG=") and f"{tmp_path}/box/logs/cron-export-logs.log" in lines[2]
    code, out, _ = _run(config, "crontab", "--json")
    document = json.loads(out)
    assert code == 0 and document["kind"] == "crontab"
    assert [line["job"] for line in document["lines"]] == [
        "orchestrate",
        "monitor",
        "export-logs",
        "cleanup",
        "selftest",
    ]


def test_crontab_warns_when_the_config_does_not_exist_yet(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path / "new.toml", "crontab")
    assert code == 0 and BEGIN in out and "does not exist yet" in err


def test_a_bad_schedule_is_exit_3_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[schedules]\norchestrate = "*/5 * * *"\n')
    code, out, err = _run(config, "crontab")
    assert code == 3 and out == ""
    assert err.strip().splitlines() == [
        "vvctl: error: schedules: 'orchestrate' = '*/5 * * *' is not a five-field cron expression"
        " (4 fields; minute / hour / day of month / month / day of week)"
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--check", "--uninstall"], "--check goes alone"),
        (["--check", "--dry-run"], "--check goes alone"),
        (["--scheduler", "anacron"], "--scheduler must be crontab or systemd"),
    ],
)
def test_bad_install_options_are_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    code, _, err = _run(tmp_path / "config.toml", "install", *args)
    assert code == 2 and says in err


def test_install_check_before_install_says_what_to_do(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path / "config.toml", "install", "--check")
    assert code == 2 and "run 'vvctl install' first" in err


def test_install_check_and_reinstall_through_the_cli(scratch_user: ScratchUser, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    scratch_user.write(FOREIGN)
    user = ["--crontab-user", scratch_user.name]
    code, out, _ = _run(config, "install", "--storage-root", str(tmp_path / "box"), *user)
    assert code == 0 and "installed: crontab" in out
    code, out, _ = _run(config, "install", *user)
    assert code == 0 and out.rstrip().endswith("install: unchanged")

    code, out, _ = _run(config, "--json", "install", "--check", *user)
    document = json.loads(out)
    checks = {item["what"]: item["ok"] for item in document["items"]}
    assert checks["crontab block"] and checks["integrity manifest"]
    # Whether a cron daemon runs depends on the machine; exit 1 exactly when something is not ok.
    assert code == (0 if all(checks.values()) else 1)

    # Drift: one installed file changed; install --check names it (exit 1).
    config.write_text(config.read_text() + "\n# edited after install\n")
    code, out, err = _run(config, "--quiet", "install", "--check", *user)
    assert code == 1 and out == ""
    assert f"config {config}: changed" in err

    code, out, _ = _run(config, "install", "--uninstall", *user)
    assert code == 0 and scratch_user.read() == FOREIGN


def test_selftest_exit_codes_and_quiet_failure_on_stderr(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    box = tmp_path / "box"
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    assert _run(config, "bootstrap", "--storage-root", str(box))[0] == 0
    # Bootstrapped but never installed: no integrity manifest, so FAIL (exit 1), said on stderr with --quiet.
    code, out, err = _run(config, "--quiet", "selftest")
    assert code == 1 and out == ""
    assert err.startswith("vvctl: selftest FAIL: pipeline PASS") and "run 'vvctl install'" in err

    from tests.ops.install.conftest import clients_for, loaded_for
    from vvctl.ops.install.install import install

    install(loaded_for(config), system=True, clients=clients_for(None, cron_d=cron_d))
    code, out, _ = _run(config, "--json", "selftest")
    document = json.loads(out)
    assert code == 0 and document["kind"] == "selftest"
    assert [(s["name"], s["result"]) for s in document["steps"]] == [
        ("pipeline", "PASS"),
        ("loglines", "PASS"),
        ("integrity", "PASS"),
    ]


def test_the_installed_entry_point_prints_the_block(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'storage_root = "{tmp_path / "box"}"\n')
    vvctl = Path(sys.executable).parent / "vvctl"
    if not vvctl.exists():
        pytest.skip(f"no vvctl console script next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VV_")}
    result = subprocess.run(
        [str(vvctl), "--config", str(config), "crontab"], capture_output=True, text=True, env=env, check=True
    )
    assert all(f" {vvctl} --quiet " in line for line in command_lines(result.stdout))
