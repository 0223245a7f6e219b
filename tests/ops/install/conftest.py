"""Fixtures for install, crontab and selftest: a scratch user whose crontab the real ``crontab`` program
holds, a config and storage root in ``tmp_path``, and a scratch installed distribution."""

from __future__ import annotations

from importlib.metadata import Distribution, PathDistribution
from pathlib import Path

import pytest

from tests.conftest import ScratchUser
from vvctl.core.settings import LoadedSettings, load_settings
from vvctl.ops.install.install import InstallClients

FOREIGN = (
    b"# the owner's own lines, kept byte for byte  \n"
    b'MAILTO=""\n'
    b"SHELL=/bin/bash\n"
    b"\n"
    b'*/7 * * * * echo "50\\%" >/dev/null \t\n'
    b"@reboot  /usr/bin/true\n"
    b"# caf\xc3\xa9 and a byte that is not UTF-8: \xff\n"
)


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(config path, storage root) of a box not yet installed."""
    return tmp_path / "etc" / "config.toml", tmp_path / "box"


def loaded_for(config: Path, root: Path | None = None) -> LoadedSettings:
    flags = {"storage_root": str(root)} if root is not None else {}
    return load_settings(config, env={}, flags=flags)


def write_dist(site: Path, files: dict[str, bytes], *, name: str = "vvctl", version: str = "0.1.0") -> Distribution:
    """An installed distribution in ``site`` (package files plus a dist-info with METADATA and RECORD),
    read through importlib.metadata as any installed one is."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = []
    for relative, data in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{relative},,{len(data)}")
    record += [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return PathDistribution(info)


@pytest.fixture
def scratch_dist(tmp_path: Path) -> Distribution:
    bin_dir = tmp_path / "venv" / "bin"
    site = tmp_path / "venv" / "lib" / "python3" / "site-packages"
    dist = write_dist(
        site,
        {
            "vvctl/__init__.py": b"# scratch\n",
            "vvctl/core/jobs.py": b"JOBS = 1\n",
            "vvctl/data/models/tiny.onnx": b"\x00\x01",
            "../../../bin/vvctl": b"#!/bin/sh\nexit 0\n",
        },
    )
    (bin_dir / "vvctl").chmod(0o755)
    return dist


def clients_for(user: ScratchUser | None = None, **overrides: object) -> InstallClients:
    clients = InstallClients(crontab_user=user.name if user else None, daemons=lambda: ["cron (pid 1)"])
    for key, value in overrides.items():
        setattr(clients, key, value)
    return clients
