"""Fixtures for the pipeline tests: a bootstrapped storage root with a real config file, the short real
clips the repository ships (the full clips for the extras), and checks every test runs over the outputs
(schemas, temp files, LogLines)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE, TESTDATA, VIDEOS
from vvctl.core.keystore import load_verification_keys
from vvctl.core.layout import StorageLayout
from vvctl.core.schemas import validate
from vvctl.core.settings import Settings, load_settings
from vvctl.core.verify import verify_paths
from vvctl.ops.bootstrap import bootstrap
from vvctl.pipeline.orchestrate import OrchestrateReport, orchestrate

SCHEMAS = {
    ".analytic.json": "analytic.schema.json",
    ".summary.json": "summary.schema.json",
    ".error.json": "error.schema.json",
    ".logline.json": "logline.schema.json",
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclass
class Box:
    """A bootstrapped storage root driven by its own config file (so subprocesses see the same settings)."""

    root: Path
    config: Path
    values: dict[str, Any]

    @property
    def layout(self) -> StorageLayout:
        return StorageLayout(self.root)

    def configure(self, **values: Any) -> None:
        self.values.update(values)
        lines = [f"{key} = {_toml(value)}" for key, value in sorted(self.values.items())]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def settings(self) -> Settings:
        return load_settings(self.config, env={}).settings

    def run(self, **kwargs: Any) -> OrchestrateReport:
        return orchestrate(self.settings(), **kwargs)

    def cli(self, *args: str) -> Any:
        """The real typer app in-process (stdout and stderr kept apart)."""
        from vvctl.cli.app import app

        return CliRunner().invoke(app, ["--config", str(self.config), *args], catch_exceptions=False)

    def argv(self, *args: str) -> list[str]:
        """Command line of a real ``vvctl`` subprocess on this box."""
        return [sys.executable, "-m", "vvctl", "--config", str(self.config), *args]

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VV_")}
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=self.root
        )

    def drop(self, source: Path, name: str | None = None) -> Path:
        """Put a video into input/ the way an uploader should: copy under a hidden name, then rename."""
        target = self.layout.input / (name or source.name)
        hidden = target.with_name(f".part-{target.name}")
        shutil.copyfile(source, hidden)
        hidden.rename(target)
        return target

    def files(self, directory: str, pattern: str = "*") -> list[Path]:
        return sorted(p for p in (self.root / directory).rglob(pattern) if p.is_file())

    def videos_in(self, directory: str) -> list[str]:
        return sorted(p.name for p in (self.root / directory).iterdir() if p.is_file() and not p.name.endswith(".json"))


@pytest.fixture
def make_box(tmp_path: Path) -> Callable[..., Box]:
    def make(name: str = "box", **values: Any) -> Box:
        root = tmp_path / name
        config = tmp_path / f"{name}.toml"
        defaults = {"settle_s": 0, "sample_interval_s": 2.0, "providers": ["CPUExecutionProvider"]}
        box = Box(root, config, {"storage_root": str(root), **defaults})
        box.configure(**values)
        bootstrap(load_settings(config, env={}))
        return box

    return make


@pytest.fixture
def box(make_box: Callable[..., Box]) -> Box:
    return make_box()


@pytest.fixture(scope="session")
def videos() -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"test videos not found: {VIDEOS}")
    return VIDEOS


@pytest.fixture(scope="session")
def clips() -> dict[str, Path]:
    """Short real clips shipped in tests/data (people: MS-MPEG4 v3 AVI, cars: MPEG-4 in MP4, each about
    5 s) and the bundled 10 s sample, for tests where length does not matter."""
    return {"walkway": SAMPLE, "people": TESTDATA / "people.avi", "cars": TESTDATA / "cars.mp4"}


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 90 s clip (the shipped people clip played 20 times, 900 frames) that keeps a run busy for
    seconds at a short sampling interval."""
    import cv2

    target = tmp_path_factory.mktemp("long") / "long.avi"
    cap = cv2.VideoCapture(str(TESTDATA / "people.avi"))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MP43"), 10.0, (width, height))
    try:
        for _ in range(20):
            for frame in frames:
                writer.write(frame)
    finally:
        writer.release()
    return target


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def check_chain(directory: Path) -> list[dict[str, Any]]:
    """Seqs 1..n with no gap, each ``prev`` the SHA-256 of the previous file: the chain is whole."""
    files = sorted(directory.glob("*.logline.json"))
    records = [load(p) for p in files]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1)), f"gap or duplicate in {directory}"
    previous = "0" * 64
    for path, record in zip(files, records, strict=True):
        assert record["prev"] == previous, f"{path.name} does not follow its predecessor"
        previous = hashlib.sha256(path.read_bytes()).hexdigest()
    return records


def check_outputs(box: Box) -> None:
    """Every JSON output validates against its schema, no temp file is left, every LogLine chain is whole
    and every LogLine verifies (signature, key, chain) with the real verifier."""
    leftovers = [p for p in box.root.rglob("*") if p.name.startswith(".vvtmp-")]
    assert not leftovers, f"temp files left behind: {leftovers}"
    checked = 0
    for path in box.root.rglob("*.json"):
        for suffix, schema in SCHEMAS.items():
            if path.name.endswith(suffix):
                validate(load(path), schema)
                checked += 1
    assert checked > 0
    logline_dirs = [d for d in (box.root / "loglines").iterdir() if d.is_dir()]
    for directory in logline_dirs:
        check_chain(directory)
    keys = load_verification_keys(box.settings().key_store)
    report = verify_paths([box.root / "loglines"], keys)
    assert report.ok, [r for r in report.results if not r.valid]
    assert report.valid == len(list((box.root / "loglines").rglob("*.logline.json")))


def every_video_once(box: Box, names: set[str]) -> None:
    """Each video is in exactly one of processed/ and corrupted/, and nowhere else; input/ is empty."""
    processed = box.videos_in("processed")
    corrupted = box.videos_in("corrupted")
    assert box.videos_in("input") == []
    assert sorted(processed + corrupted) == sorted(names), (processed, corrupted)


POLL_S = 0.002


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until it holds (True) or the process ended first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return condition()
        time.sleep(POLL_S)
    proc.kill()
    raise AssertionError("timed out waiting for the orchestrate process")


def processing(box: Box, attempts: int = 1) -> bool:
    """A video is being analysed (its row is ``processing``) in at least its ``attempts``-th attempt."""
    db = box.root / "state" / "vvctl.sqlite3"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            query = "SELECT COUNT(*) FROM videos WHERE status = 'processing' AND attempts >= ?"
            return bool(conn.execute(query, (attempts,)).fetchone()[0])
    except sqlite3.OperationalError:
        return False


def lock_holder(box: Box) -> str:
    try:
        return (box.root / "state" / "orchestrate.lock").read_text().strip()
    except FileNotFoundError:
        return ""
