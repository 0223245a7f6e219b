"""Fixtures for the monitor tests: a bootstrapped box, a fake clock, a fake Docker engine, an alert receiver."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ops.monitor.fakes import FakeClock, FakeDockerEngine
from vvctl.core.settings import Settings, load_settings
from vvctl.ops.bootstrap import bootstrap

MakeBox = Callable[..., Settings]


@pytest.fixture(scope="session")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One storage root bootstrapped once per session; each test gets a copy (bootstrap hashes the model)."""
    base = tmp_path_factory.mktemp("template")
    config = base / "template.toml"
    config.write_text(f'storage_root = "{base / "root"}"\n')
    bootstrap(load_settings(config, env={}))
    return base / "root"


@pytest.fixture
def make_box(tmp_path: Path, bootstrapped: Path) -> MakeBox:
    """A bootstrapped storage root (its key store, layout, state and first LogLine) with ``extra`` TOML lines
    in its config."""

    def make(extra: str = "", name: str = "box") -> Settings:
        shutil.copytree(bootstrapped, tmp_path / name, symlinks=True)
        config = tmp_path / f"{name}.toml"
        config.write_text(f'storage_root = "{tmp_path / name}"\n{extra}\n')
        return load_settings(config, env={}).settings

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def engine() -> Iterator[FakeDockerEngine]:
    with FakeDockerEngine() as fake:
        yield fake
