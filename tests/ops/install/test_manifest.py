"""The integrity manifest: signed, complete (the distribution's own file list), and drift named file by file."""

from __future__ import annotations

import json
from importlib.metadata import Distribution
from pathlib import Path

import pytest

from tests.ops.install.conftest import clients_for, loaded_for
from vvctl.core.keystore import load_keystore, rotate_key
from vvctl.core.schemas import validate
from vvctl.ops.install.entry import console_script, installed_files, this_distribution, vvctl_argv
from vvctl.ops.install.install import Change, install
from vvctl.ops.install.manifest import Problem, Role, manifest_path, read_manifest, verify_integrity


def _install(box: tuple[Path, Path], dist: Distribution, tmp_path: Path) -> Path:
    config, root = box
    cron_d = tmp_path / "cron.d"
    cron_d.mkdir(exist_ok=True)
    install(loaded_for(config, root), system=True, clients=clients_for(None, cron_d=cron_d, dist=dist))
    return cron_d


def _verify(config: Path, dist: Distribution) -> tuple[bool, list[tuple[Role, str, Problem]]]:
    settings = loaded_for(config).settings
    keys = load_keystore(settings.key_store).verification_keys()
    report = verify_integrity(settings, keys, dist=dist)
    return report.ok, [(d.role, d.path, d.problem) for d in report.drift]


def test_the_manifest_lists_every_file_of_the_distribution_and_is_signed(
    box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path
) -> None:
    config, root = box
    _install(box, scratch_dist, tmp_path)
    document = read_manifest(manifest_path(loaded_for(config).settings))
    validate(document, "integrity-manifest.schema.json")
    packaged = {f["path"] for f in document["files"] if f["role"] == "package"}
    assert packaged == {str(p) for p in installed_files(scratch_dist)}
    site = Path(str(scratch_dist.locate_file("")))
    assert str(site / "vvctl" / "core" / "jobs.py") in packaged
    assert str(tmp_path / "venv" / "bin" / "vvctl") in packaged  # the console script, from RECORD
    assert document["signature_details"]["key_id"] == load_keystore(root / "state" / "keystore.json").signer().key_id
    assert _verify(config, scratch_dist) == (True, [])


def test_a_changed_installed_file_is_named(box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path) -> None:
    config, _ = box
    _install(box, scratch_dist, tmp_path)
    module = Path(str(scratch_dist.locate_file("vvctl/core/jobs.py")))
    module.write_bytes(b"JOBS = 2  # patched\n")
    ok, drift = _verify(config, scratch_dist)
    assert not ok and drift == [(Role.PACKAGE, str(module), Problem.CHANGED)]


def test_missing_unlisted_config_and_crontab_drift_are_each_named(
    box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path
) -> None:
    config, _ = box
    cron_d = _install(box, scratch_dist, tmp_path)
    site = Path(str(scratch_dist.locate_file("")))
    (site / "vvctl" / "__init__.py").unlink()
    (site / "vvctl" / "sitecustomize_hook.py").write_text("import os\n")
    config.write_text(config.read_text() + "\nsettle_s = 1\n")
    (cron_d / "vvctl").write_text((cron_d / "vvctl").read_text().replace("selftest", "selftest --help"))
    ok, drift = _verify(config, scratch_dist)
    assert not ok
    assert sorted(drift) == sorted(
        [
            (Role.PACKAGE, str(site / "vvctl" / "__init__.py"), Problem.MISSING),
            (Role.PACKAGE, str(site / "vvctl" / "sitecustomize_hook.py"), Problem.UNLISTED),
            (Role.CONFIG, str(config), Problem.CHANGED),
            (Role.CRONTAB, str(cron_d / "vvctl"), Problem.CHANGED),
        ]
    )


def test_a_forged_manifest_is_not_trusted(box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path) -> None:
    config, _ = box
    _install(box, scratch_dist, tmp_path)
    path = manifest_path(loaded_for(config).settings)
    document = json.loads(path.read_text())
    module = Path(str(scratch_dist.locate_file("vvctl/core/jobs.py")))
    module.write_bytes(b"patched\n")
    # Re-recording the patched file's hash without the key: the signature no longer verifies.
    import hashlib

    for entry in document["files"]:
        if entry["path"] == str(module):
            entry["sha256"] = hashlib.sha256(b"patched\n").hexdigest()
    path.write_text(json.dumps(document))
    settings = loaded_for(config).settings
    report = verify_integrity(settings, load_keystore(settings.key_store).verification_keys(), dist=scratch_dist)
    assert not report.ok and report.problem is not None and "signature does not verify" in report.problem


def test_reinstall_after_a_key_rotation_re_signs_the_manifest(
    box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path
) -> None:
    config, root = box
    cron_d = _install(box, scratch_dist, tmp_path)
    clients = clients_for(None, cron_d=cron_d, dist=scratch_dist)
    assert _verify(config, scratch_dist) == (True, [])  # still valid with the old key after rotation below
    rotate_key(root / "state" / "keystore.json", "ed25519")
    assert _verify(config, scratch_dist) == (True, [])
    report = install(loaded_for(config), clients=clients)
    assert {i.what: i.change for i in report.items}["integrity manifest"] is Change.UNCHANGED


def test_the_real_installation_is_covered(tmp_path: Path) -> None:
    """This very vvctl (editable in development, a plain install in CI): its sources are in the list and
    the scheduled command is an absolute path that exists."""
    dist = this_distribution()
    files = installed_files(dist)
    assert any(p.as_posix().endswith("vvctl/ops/install/manifest.py") for p in files)
    assert any(p.as_posix().endswith("vvctl/data/models/person-ssdlite-mobilenetv2.onnx") for p in files)
    assert not any(p.suffix == ".pyc" for p in files)
    argv = vvctl_argv(dist)
    assert Path(argv[0]).is_absolute() and Path(argv[0]).exists()
    script = console_script(dist)
    if script is not None:
        assert argv == (str(script),)


@pytest.mark.parametrize("damage", [b"", b"{", b'{"kind": "something else"}'])
def test_a_damaged_manifest_is_reported_not_a_traceback(
    box: tuple[Path, Path], scratch_dist: Distribution, tmp_path: Path, damage: bytes
) -> None:
    config, _ = box
    _install(box, scratch_dist, tmp_path)
    settings = loaded_for(config).settings
    manifest_path(settings).write_bytes(damage)
    report = verify_integrity(settings, load_keystore(settings.key_store).verification_keys(), dist=scratch_dist)
    assert not report.ok and report.problem is not None and "vv-signature.json" in report.summary
