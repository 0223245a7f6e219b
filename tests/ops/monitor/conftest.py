"""Fixtures for the monitor tests: a bootstrapped box, a fake clock, a fake Docker engine, an alert receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ops.monitor.fakes import FakeClock, FakeDockerEngine
from vvctl.core.settings import Settings, load_settings
from vvctl.ops.bootstrap import bootstrap

MakeBox = Callable[..., Settings]


@pytest.fixture
def make_box(tmp_path: Path) -> MakeBox:
    """A bootstrapped storage root with ``extra`` TOML lines in its config."""

    def make(extra: str = "", name: str = "box") -> Settings:
        config = tmp_path / f"{name}.toml"
        config.write_text(f'storage_root = "{tmp_path / name}"\n{extra}\n')
        loaded = load_settings(config, env={})
        bootstrap(loaded)
        return loaded.settings

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def engine() -> Iterator[FakeDockerEngine]:
    with FakeDockerEngine() as fake:
        yield fake
