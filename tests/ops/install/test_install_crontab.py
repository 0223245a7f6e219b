"""install / reinstall / uninstall with the real ``crontab`` program, into a scratch user's crontab that
already has lines of its own: those stay byte-identical at every step. Then every generated line is run
as cron runs it."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest
import typer.main

from tests.conftest import ScratchUser
from tests.ops.install.conftest import FOREIGN, clients_for, loaded_for
from vvctl.cli.app import app
from vvctl.ops.install.crontab import BEGIN, END, CronDFile, command_lines, cron_unescape
from vvctl.ops.install.install import Change, check, install, uninstall
from vvctl.ops.install.manifest import Role, manifest_path, read_manifest


def _split(data: bytes) -> tuple[bytes, bytes]:
    """(the vvctl block, everything else) of a crontab's bytes."""
    start = data.index(BEGIN.encode())
    end = data.index(END.encode()) + len(END) + 1
    return data[start:end], data[:start] + data[end:]


def _schedules(**changed: str) -> str:
    """A [schedules] table: the defaults with ``changed`` (job names with _ for -) replaced."""
    table = {"orchestrate": "*/5 * * * *", "monitor": "* * * * *", "export-logs": "0 2 * * *"}
    table |= {"cleanup": "0 3 * * *", "selftest": "30 4 * * *"}
    table |= {job.replace("_", "-"): expression for job, expression in changed.items()}
    return "\n[schedules]\n" + "".join(f'"{job}" = "{expression}"\n' for job, expression in table.items())


def _changes(report: object) -> dict[str, Change]:
    return {item.what: item.change for item in report.items}  # type: ignore[attr-defined]


def test_install_reinstall_uninstall_keep_foreign_lines_byte_identical(
    scratch_user: ScratchUser, box: tuple[Path, Path]
) -> None:
    config, root = box
    scratch_user.write(FOREIGN)
    clients = clients_for(scratch_user)

    first = install(loaded_for(config, root), clients=clients)
    assert _changes(first)["crontab block"] is Change.INSTALLED
    installed = scratch_user.read()
    assert installed is not None
    block, rest = _split(installed)
    assert rest == FOREIGN and installed.startswith(block)  # ours on top, theirs untouched
    assert len(command_lines(block.decode())) == 5

    again = install(loaded_for(config), clients=clients)
    assert not again.changed
    assert set(_changes(again).values()) == {Change.UNCHANGED}
    assert scratch_user.read() == installed

    # A changed schedule rewrites our block only.
    config.write_text(config.read_text() + _schedules(cleanup="45 3 * * *"))
    changed = install(loaded_for(config), clients=clients)
    assert _changes(changed)["crontab block"] is Change.UPDATED
    after = scratch_user.read()
    assert after is not None
    new_block, rest = _split(after)
    assert rest == FOREIGN and b"45 3 * * * " in new_block and b"0 3 * * * " not in new_block

    # Someone added a line of their own below the block since: it stays too.
    scratch_user.write(after + b"0 5 * * * /usr/bin/true # added later\n")
    removed = uninstall(loaded_for(config), clients=clients)
    assert _changes(removed) == {"crontab block": Change.REMOVED, "integrity manifest": Change.REMOVED}
    assert scratch_user.read() == FOREIGN + b"0 5 * * * /usr/bin/true # added later\n"
    assert not manifest_path(loaded_for(config).settings).exists()
    assert config.exists() and (root / "state" / "keystore.json").exists()  # data and keys stay

    nothing = uninstall(loaded_for(config), clients=clients)
    assert set(_changes(nothing).values()) == {Change.ABSENT}


def test_uninstall_from_a_crontab_that_was_empty_leaves_no_crontab(
    scratch_user: ScratchUser, box: tuple[Path, Path]
) -> None:
    config, root = box
    clients = clients_for(scratch_user)
    install(loaded_for(config, root), clients=clients)
    assert scratch_user.read() is not None
    uninstall(loaded_for(config), clients=clients)
    assert scratch_user.read() is None


def test_dry_run_prints_a_diff_and_changes_nothing(scratch_user: ScratchUser, box: tuple[Path, Path]) -> None:
    config, root = box
    scratch_user.write(FOREIGN)
    report = install(loaded_for(config, root), dry_run=True, clients=clients_for(scratch_user))
    assert scratch_user.read() == FOREIGN
    assert not config.exists() and not root.exists()
    assert report.diff.startswith(f"--- crontab:{scratch_user.name} (now)\n+++ crontab:{scratch_user.name} (after)\n")
    added = [line[1:] for line in report.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added[0] == BEGIN and added[-1] == END and len(added) == 10
    assert _changes(report)["crontab block"] is Change.WOULD_INSTALL

    install(loaded_for(config, root), clients=clients_for(scratch_user))
    config.write_text(config.read_text() + _schedules(selftest="0 6 * * *"))
    before = scratch_user.read()
    dry = install(loaded_for(config), dry_run=True, clients=clients_for(scratch_user))
    assert scratch_user.read() == before
    assert _changes(dry)["crontab block"] is Change.WOULD_UPDATE
    changed = [line for line in dry.diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 2 and "selftest" in changed[0] and changed[1].startswith("+0 6 * * * ")


def test_check_confirms_the_block_the_daemon_and_the_last_runs(
    scratch_user: ScratchUser, box: tuple[Path, Path]
) -> None:
    config, root = box
    install(loaded_for(config, root), clients=clients_for(scratch_user))
    report = check(loaded_for(config), clients=clients_for(scratch_user))
    assert report.ok, report.problems
    assert [job.job for job in report.jobs] == ["orchestrate", "monitor", "export-logs", "cleanup", "selftest"]
    assert all(job.last_run is None for job in report.jobs)

    no_daemon = check(loaded_for(config), clients=clients_for(scratch_user, daemons=list))
    assert not no_daemon.ok and any("cron daemon" in p for p in no_daemon.problems)

    # A line edited by hand inside the block: not current, and the manifest names the crontab.
    data = scratch_user.read()
    assert data is not None
    scratch_user.write(data.replace(b"*/5 * * * *", b"*/9 * * * *"))
    edited = check(loaded_for(config), clients=clients_for(scratch_user))
    assert not edited.ok
    assert any(p.startswith("crontab block: differs") for p in edited.problems)
    assert [(d.role, d.path) for d in edited.integrity.drift] == [(Role.CRONTAB, f"crontab:{scratch_user.name}")]
    assert "+*/5 * * * *" in edited.diff and "-*/9 * * * *" in edited.diff


def test_the_manifest_records_the_block_the_config_and_the_model(
    scratch_user: ScratchUser, box: tuple[Path, Path]
) -> None:
    config, root = box
    install(loaded_for(config, root), clients=clients_for(scratch_user))
    document = read_manifest(root / "state" / "vv-signature.json")
    roles = {(f["role"], f["path"]) for f in document["files"]}
    assert ("crontab", f"crontab:{scratch_user.name}") in roles
    assert ("config", str(config)) in roles
    assert ("model", str(root / "models" / "person-ssdlite-mobilenetv2.onnx")) in roles
    packaged = [f["path"] for f in document["files"] if f["role"] == "package"]
    assert any(p.endswith("vvctl/ops/install/manifest.py") for p in packaged)
    assert not any(p.endswith(".pyc") for p in packaged)
    assert document["scheduler"] == {"kind": "crontab", "scope": "user", "target": f"crontab:{scratch_user.name}"}


def test_system_crontab_goes_to_cron_d_with_the_user_field(tmp_path: Path, box: tuple[Path, Path]) -> None:
    config, root = box
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir()
    (cron_d / "other").write_text("0 1 * * * root true\n")
    clients = clients_for(None, cron_d=cron_d)
    report = install(loaded_for(config, root), system=True, clients=clients)
    target = cron_d / "vvctl"
    assert report.target == str(target) and report.scope == "system"
    assert (target.stat().st_mode & 0o777) == 0o644
    user = CronDFile(cron_d).user
    assert all(line.split()[5] == user for line in command_lines(target.read_text()))
    assert not install(loaded_for(config), clients=clients).changed  # the manifest says --system
    uninstall(loaded_for(config), clients=clients)
    assert not target.exists() and (cron_d / "other").read_text() == "0 1 * * * root true\n"


def _registered_commands() -> set[str]:
    group = typer.main.get_command(app)
    return set(getattr(group, "commands", {}))


def test_every_generated_line_succeeds_when_run_as_cron_runs_it(
    scratch_user: ScratchUser, box: tuple[Path, Path]
) -> None:
    """Each command line of the installed block, its % escapes undone as cron does, run with an empty
    environment through ``sh -c``: exit 0. Lines of commands this vvctl does not have yet are reported."""
    config, root = box
    config.parent.mkdir(parents=True)
    # The test machine's free space must not turn the monitor's run into a finding.
    config.write_text(f'storage_root = "{root}"\nmin_free_space_gb = 0\nmin_free_space_critical_gb = 0\n')
    install(loaded_for(config), clients=clients_for(scratch_user))
    data = scratch_user.read()
    assert data is not None
    lines = command_lines(_split(data)[0].decode())
    assert len(lines) == 5
    registered = _registered_commands()
    ran: list[str] = []
    missing: list[str] = []
    for line in lines:
        command = cron_unescape(line.split(" ", 5)[5])
        job = shlex.split(command)[3]
        if job not in registered:
            missing.append(job)
            continue
        started = time.monotonic()
        result = subprocess.run(["env", "-i", "sh", "-c", command], capture_output=True, timeout=300, check=False)
        log = root / "logs" / f"cron-{job}.log"
        output = log.read_text() if log.exists() else ""
        took = time.monotonic() - started
        assert result.returncode == 0, f"{job}: exit {result.returncode} after {took:.1f}s\n{output}"
        ran.append(job)
    assert {"orchestrate", "selftest"} <= set(ran)
    if missing:
        print(f"not yet a vvctl command here, not run: {', '.join(missing)}")


@pytest.mark.parametrize("bad", ['"* * *"', '"@reboot"'])
def test_a_bad_schedule_stops_install_before_anything_is_written(
    scratch_user: ScratchUser, box: tuple[Path, Path], bad: str
) -> None:
    from vvctl.core.errors import ConfigError

    config, root = box
    config.parent.mkdir(parents=True)
    config.write_text(f'storage_root = "{root}"\n[schedules]\nmonitor = {bad}\n')
    scratch_user.write(FOREIGN)
    with pytest.raises(ConfigError, match="'monitor'"):
        install(loaded_for(config), clients=clients_for(scratch_user))
    assert scratch_user.read() == FOREIGN and not root.exists()


def test_no_crontab_program_is_exit_7_naming_the_fix(box: tuple[Path, Path]) -> None:
    from vvctl.core.errors import DependencyError, ExitCode

    config, root = box
    clients = clients_for(None, crontab_program="no-such-crontab-program")
    with pytest.raises(DependencyError) as caught:
        install(loaded_for(config, root), clients=clients)
    assert caught.value.exit_code is ExitCode.DEPENDENCY
    assert "apt-get install cron" in caught.value.message and "--scheduler systemd" in caught.value.message
