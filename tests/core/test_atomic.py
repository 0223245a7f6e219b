from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vvctl.core.atomic import (
    TEMP_PREFIX,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    durable_move,
    remove_stale_temps,
)
from vvctl.core.errors import StorageError


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_exception_inside_atomic_open_keeps_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_write_into_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot write"):
        atomic_write_bytes(tmp_path / "missing" / "x", b"data")


def test_file_mode_is_applied(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    atomic_write_bytes(target, b"k", mode=0o600)
    assert target.stat().st_mode & 0o777 == 0o600


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from vvctl.core.atomic import atomic_open
    target = Path(sys.argv[1])
    with atomic_open(target) as fh:
        for _ in range(10_000):
            fh.write(b"N" * 4096)
            fh.flush()
            time.sleep(0.001)
    """
)


def test_sigkill_mid_write_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"O" * 1000)
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
    try:
        deadline = time.monotonic() + 30
        temp: list[Path] = []
        while time.monotonic() < deadline:
            temp = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
            if temp and temp[0].stat().st_size > 64 * 1024:
                break
            time.sleep(0.01)
        assert temp, "the writer never started writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"O" * 1000
    # The dead writer's temp file is recognised as stale and cleaned up.
    assert remove_stale_temps(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_remove_stale_temps_spares_a_live_writer(tmp_path: Path) -> None:
    live = tmp_path / f"{TEMP_PREFIX}x.{os.getpid()}.abcd1234"
    live.write_bytes(b"in progress")
    assert remove_stale_temps(tmp_path) == 0
    assert live.exists()


def test_durable_move(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    source = tmp_path / "a" / "v.mp4"
    source.write_bytes(b"video")
    durable_move(source, tmp_path / "b" / "v.mp4")
    assert not source.exists()
    assert (tmp_path / "b" / "v.mp4").read_bytes() == b"video"
