from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vvctl.core.errors import UsageError
from vvctl.core.schemas import validate
from vvctl.ops.demo import MARKER, prepare_root, run_demo


def test_demo_analyses_the_sample_and_verifies_every_logline(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo")
    assert report.ok
    video = report.video
    assert video.outcome.value == "done"
    assert video.frames_sampled == 10  # a 10 s clip sampled once a second
    assert video.status == "people_present"
    assert video.analytic is not None and video.summary is not None and video.logline is not None
    validate(json.loads(video.analytic.read_text()), "analytic.schema.json")
    validate(json.loads(video.summary.read_text()), "summary.schema.json")
    # the first key's "created" event, bootstrap's job record, the video record and orchestrate's job record
    assert report.loglines_checked == report.loglines_valid == 4
    assert (report.storage_root / "processed" / "people-walkway.mp4").is_file()
    assert not any((report.storage_root / "input").iterdir())


def test_demo_ignores_the_users_config_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_config = tmp_path / "user.toml"
    user_config.write_text('storage_root = "/nonexistent/elsewhere"\nsample_interval_s = "bad"\n')
    monkeypatch.setenv("VV_CONFIG", str(user_config))
    monkeypatch.setenv("VV_SAMPLE_INTERVAL_S", "5")
    report = run_demo(tmp_path / "demo")
    assert report.ok and report.video.frames_sampled == 10
    assert user_config.read_text().startswith('storage_root = "/nonexistent/elsewhere"')


def test_second_demo_in_the_same_root_recognises_the_clip(tmp_path: Path) -> None:
    run_demo(tmp_path / "demo")
    again = run_demo(tmp_path / "demo")
    assert again.ok
    assert again.video.outcome.value == "duplicate"
    assert again.loglines_checked == again.loglines_valid  # the chain goes on across runs


def test_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty and was not made by 'vvctl demo'"):
        prepare_root(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / MARKER).exists()


def test_cli_demo_in_a_subprocess_prints_json(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "vvctl", "--json", "demo", "--storage-root", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "demo" and document["ok"] is True
    assert document["video"]["outcome"] == "done"
    assert document["provider"].endswith("ExecutionProvider")  # the provider that actually ran
