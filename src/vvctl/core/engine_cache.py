"""The TensorRT engine and timing caches under ``state/`` (or the configured folder).

A TensorRT engine is compiled for one model, one ONNX Runtime and TensorRT release, one GPU, one
precision and one set of input shapes, and loading an engine built for another of any of these gives
wrong results or a crash. ONNX Runtime's own cache file names do not carry all of that, so every
combination gets its own folder here, named by a digest of an :class:`EngineKey`: a change of any part
builds a fresh engine in a fresh folder instead of loading a stale one. The timing cache (TensorRT's
measurements of kernel speeds) only depends on the GPU and TensorRT, so it is shared by every model and
precision on that GPU and makes their builds faster.

Folders are created ``0700`` (an engine is code the GPU runs); folders of keys not used recently are
pruned, keeping the ``keep`` most recently used of each kind. Only folders this module made (they hold a
``key.json``) are ever removed, whatever else the configured folder contains.
"""

from __future__ import annotations

import json
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from vvctl.core.atomic import atomic_write_json
from vvctl.core.hashing import sha256_bytes

KEY_FILE: Final = "key.json"
RECORD_FILE: Final = "engine.json"
ENGINE_PREFIX: Final = "engine-"
TIMING_PREFIX: Final = "timing-"
ENGINE_SUFFIX: Final = ".engine"
DIR_MODE: Final = 0o700


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimisation profile for the model's one input: the shapes it will ever be fed.

    Declared up front, TensorRT builds one engine for the whole range at session start; without it,
    ONNX Runtime builds an engine for the first shape it sees and rebuilds for every new one mid-run.
    """

    input_name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)) or not self.min:
            raise ValueError("min, opt and max shapes must have the same, non-zero rank")
        if any(not 1 <= lo <= mid <= hi for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True)):
            raise ValueError(f"profile shapes must be positive with min <= opt <= max, got {self.describe()}")

    def option(self, which: str) -> str:
        """ONNX Runtime's ``trt_profile_<which>_shapes`` text: ``name:1x300x300x3``."""
        shape: tuple[int, ...] = getattr(self, which)
        return f"{self.input_name}:{'x'.join(str(d) for d in shape)}"

    def describe(self) -> str:
        return f"{self.option('min')} .. {self.option('opt')} .. {self.option('max')}"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine is only valid for. Its :attr:`digest` names the engine's folder."""

    model_sha256: str
    onnxruntime: str
    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    profile: str
    """:meth:`ShapeProfile.describe`, or ``dynamic`` when the input size cannot be declared."""
    max_workspace_bytes: int = 0

    @property
    def digest(self) -> str:
        return _digest(asdict(self))

    @property
    def dirname(self) -> str:
        return f"{ENGINE_PREFIX}{self.precision}-{self.digest[:16]}"

    @property
    def timing_dirname(self) -> str:
        # Kernel timings depend on the GPU and the TensorRT build only.
        timing = {"tensorrt": self.tensorrt, "gpu": self.gpu, "compute_capability": self.compute_capability}
        return f"{TIMING_PREFIX}{_digest(timing)[:16]}"


def _digest(document: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())


@dataclass(frozen=True)
class EngineRecord:
    """What ``engine.json`` says about the engine in a folder: when it was built and how long it took."""

    built_at: float
    build_s: float


@dataclass(frozen=True)
class EngineCache:
    """The folders one session uses, and what was found and pruned when they were opened."""

    root: Path
    engine_dir: Path
    timing_dir: Path
    key: EngineKey
    pruned: list[Path] = field(default_factory=list)

    def has_engine(self) -> bool:
        """True when an engine was built here before (the next session loads it instead of building)."""
        return any(p.name.endswith(ENGINE_SUFFIX) for p in self.engine_dir.iterdir())

    def record(self) -> EngineRecord | None:
        try:
            data = json.loads((self.engine_dir / RECORD_FILE).read_text(encoding="utf-8"))
            return EngineRecord(float(data["built_at"]), float(data["build_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_record(self, build_s: float, *, now: float | None = None) -> EngineRecord:
        record = EngineRecord(time.time() if now is None else now, round(build_s, 3))
        atomic_write_json(self.engine_dir / RECORD_FILE, {**asdict(record), "key": asdict(self.key)}, mode=0o600)
        return record


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make sure only the owner can enter it."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != DIR_MODE:
        # mkdir's mode is filtered by the umask and ignored for folders that already exist.
        path.chmod(DIR_MODE)
    return path


def open_engine_cache(
    root: Path, key: EngineKey, *, keep: int = 2, now: Callable[[], float] = time.time
) -> EngineCache:
    """Create (``0700``) and mark as used the folders for ``key`` under ``root``; prune old ones.

    ``keep``: how many engine folders (and, separately, timing folders) survive, the current one and the
    most recently used others, so switching back to the previous model does not rebuild.
    Raises OSError when the folders cannot be created; the caller decides what that means.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    make_private_dir(root)
    engine_dir = make_private_dir(root / key.dirname)
    timing_dir = make_private_dir(root / key.timing_dirname)
    stamp = now()
    _mark_used(engine_dir, asdict(key), stamp)
    timing_key = {"tensorrt": key.tensorrt, "gpu": key.gpu, "compute_capability": key.compute_capability}
    _mark_used(timing_dir, timing_key, stamp)
    pruned = prune(root, keep=keep, current=(engine_dir, timing_dir))
    return EngineCache(root=root, engine_dir=engine_dir, timing_dir=timing_dir, key=key, pruned=pruned)


def _mark_used(directory: Path, key: dict[str, Any], stamp: float) -> None:
    atomic_write_json(directory / KEY_FILE, {"key": key, "last_used": stamp}, mode=0o600)


def last_used(directory: Path) -> float | None:
    """When a cache folder was last opened, or None when it is not one of ours."""
    try:
        data = json.loads((directory / KEY_FILE).read_text(encoding="utf-8"))
        return float(data["last_used"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prune(root: Path, *, keep: int, current: tuple[Path, ...] = ()) -> list[Path]:
    """Remove all but the ``keep`` most recently used engine folders and timing folders under ``root``.

    Folders in ``current`` always stay (and count towards ``keep``); anything without a readable
    ``key.json`` is not ours and is left alone.
    """
    removed: list[Path] = []
    for prefix in (ENGINE_PREFIX, TIMING_PREFIX):
        ours: list[tuple[float, Path]] = []
        for entry in root.iterdir():
            if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
                continue
            used = last_used(entry)
            if used is not None:
                ours.append((float("inf") if entry in current else used, entry))
        ours.sort(key=lambda item: item[0], reverse=True)
        for _, stale in ours[keep:]:
            shutil.rmtree(stale, ignore_errors=True)
            if not stale.exists():
                removed.append(stale)
    return removed


def describe_dir_mode(path: Path) -> str:
    """``0700``-style permissions of ``path``, for reports."""
    return f"{stat.S_IMODE(path.stat().st_mode):04o}"


__all__ = [
    "EngineCache",
    "EngineKey",
    "EngineRecord",
    "ShapeProfile",
    "describe_dir_mode",
    "last_used",
    "make_private_dir",
    "open_engine_cache",
    "prune",
]
