from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from vvctl.core.engine_cache import EngineKey, ShapeProfile, open_engine_cache, prune

KEY = EngineKey(
    model_sha256="a" * 64,
    onnxruntime="1.31.1",
    tensorrt="10.9.0",
    gpu="NVIDIA H200",
    compute_capability="9.0",
    precision="fp16",
    profile="images:1x3x640x640 .. images:4x3x640x640 .. images:4x3x640x640",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_sha256", "b" * 64),
        ("onnxruntime", "1.32.0"),
        ("tensorrt", "10.13.0"),
        ("gpu", "Orin (nvgpu)"),
        ("compute_capability", "8.7"),
        ("precision", "fp32"),
        ("profile", "images:1x3x640x640 .. images:8x3x640x640 .. images:8x3x640x640"),
        ("max_workspace_bytes", 1 << 30),
    ],
)
def test_any_change_of_what_an_engine_depends_on_gives_a_new_folder(field: str, value: object) -> None:
    changed = dataclasses.replace(KEY, **{field: value})
    assert changed.dirname != KEY.dirname
    assert dataclasses.replace(changed, **{field: getattr(KEY, field)}).dirname == KEY.dirname
    # The timing cache follows only the GPU and TensorRT, so builds for other models reuse it.
    shares_timing = field not in ("tensorrt", "gpu", "compute_capability")
    assert (changed.timing_dirname == KEY.timing_dirname) is shares_timing


def test_cache_folders_are_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    root = tmp_path / "state" / "tensorrt"
    root.mkdir(parents=True, mode=0o777)
    root.chmod(0o777)  # an existing, world-writable folder is tightened too
    old = os.umask(0o002)
    try:
        cache = open_engine_cache(root, KEY, now=lambda: 100.0)
    finally:
        os.umask(old)
    for directory in (root, cache.engine_dir, cache.timing_dir):
        assert mode(directory) == 0o700, directory
    assert cache.engine_dir == root / KEY.dirname
    assert mode(cache.engine_dir / "key.json") == 0o600
    assert json.loads((cache.engine_dir / "key.json").read_text())["key"]["precision"] == "fp16"
    assert not cache.has_engine()
    (cache.engine_dir / "TensorrtExecutionProvider_TRTKernel_graph_1_sm90.engine").write_bytes(b"x")
    assert cache.has_engine()


def test_build_record_round_trips(tmp_path: Path) -> None:
    cache = open_engine_cache(tmp_path / "c", KEY)
    assert cache.record() is None
    cache.write_record(93.4567, now=5.0)
    record = cache.record()
    assert record is not None
    assert (record.built_at, record.build_s) == (5.0, 93.457)


def test_old_engines_are_pruned_keeping_the_most_recently_used(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    keys = [dataclasses.replace(KEY, model_sha256=c * 64) for c in "abcd"]
    for stamp, key in enumerate(keys):
        open_engine_cache(root, key, keep=10, now=lambda stamp=stamp: float(stamp))
    stranger = root / "engine-not-ours"  # no key.json: never removed
    stranger.mkdir()
    (root / "notes.txt").write_text("kept")
    # Use the oldest key again: it is the current one and must survive even though others are newer.
    cache = open_engine_cache(root, keys[0], keep=2, now=lambda: 50.0)
    engines = sorted(p.name for p in root.iterdir() if p.name.startswith("engine-"))
    assert engines == sorted([keys[0].dirname, keys[3].dirname, "engine-not-ours"])
    assert sorted(p.name for p in cache.pruned) == sorted([keys[1].dirname, keys[2].dirname])
    assert (root / "notes.txt").read_text() == "kept"
    # One shared timing folder (same GPU and TensorRT) is not pruned away.
    assert [p.name for p in root.iterdir() if p.name.startswith("timing-")] == [KEY.timing_dirname]
    assert prune(root, keep=1, current=(cache.engine_dir,)) == [root / keys[3].dirname]


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        open_engine_cache(tmp_path, KEY, keep=0)


def test_shape_profile_options() -> None:
    profile = ShapeProfile("image_tensor", (1, 300, 300, 3), (4, 300, 300, 3), (4, 300, 300, 3))
    assert profile.option("min") == "image_tensor:1x300x300x3"
    assert profile.option("max") == "image_tensor:4x300x300x3"
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeProfile("x", (4, 3), (1, 3), (4, 3))
    with pytest.raises(ValueError, match="rank"):
        ShapeProfile("x", (1,), (1, 3), (1, 3))
