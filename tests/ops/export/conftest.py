"""A bootstrapped storage root with LogLines and log files, for the export tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vvctl.core.layout import StorageLayout
from vvctl.core.logline import LogLineDraft, LogLineWriter, WrittenLogLine
from vvctl.core.settings import Settings, load_settings
from vvctl.ops.bootstrap import bootstrap

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


@dataclass
class Box:
    settings: Settings
    config: Path

    @property
    def layout(self) -> StorageLayout:
        return StorageLayout(self.settings.storage_root)

    def append(self, count: int, log: str = "videos") -> list[WrittenLogLine]:
        writer = LogLineWriter(self.settings)
        draft = LogLineDraft(
            who="vvctl test", did="analysed video", this="ok", status="ok", source={"type": "video", "id": "v"}
        )
        return [writer.append(log, draft, slug=f"clip-{n}") for n in range(count)]

    def loglines(self, log: str = "videos") -> list[Path]:
        return sorted((self.layout.loglines / log).glob("*.logline.json"))

    def write_log(self, name: str, text: str, *, mtime: datetime | None = None) -> Path:
        path = self.layout.logs / name
        path.write_text(text)
        if mtime is not None:
            os.utime(path, (mtime.timestamp(), mtime.timestamp()))
        return path


MakeBox = Callable[..., Box]


@pytest.fixture
def make_box(tmp_path: Path) -> MakeBox:
    def make(name: str = "box", *, algorithm: str = "ed25519", extra: str = "") -> Box:
        config = tmp_path / f"{name}.toml"
        config.write_text(f'storage_root = "{tmp_path / name}"\nsigning_algorithm = "{algorithm}"\n{extra}')
        loaded = load_settings(config, env={})
        bootstrap(loaded)
        return Box(loaded.settings, config)

    return make


@pytest.fixture
def box(make_box: MakeBox) -> Box:
    return make_box()
