"""Shared fixtures: an isolated environment per test and the paths of the real test data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = REPO_ROOT.parent / "shared" / "testdata"
VIDEOS = SHARED_TESTDATA / "videos"
MODELS = SHARED_TESTDATA / "models"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No VV_* variable and no real config directory leaks into a test."""
    for name in list(os.environ):
        if name.startswith("VV_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(home / "etc-xdg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("NO_COLOR", "1")
    yield
    from vvctl.core.jsonlog import detach_file_logging

    detach_file_logging()  # a command run in-process attached the log file of its own storage root


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "config.toml"
