"""``vvctl demo``: the whole pipeline once, on the bundled sample clip, in a throw-away storage root.

It runs the real code paths a box runs, in order: bootstrap (layout, config, key store, verified model),
a video dropped into ``input/``, one ``orchestrate --once`` pass, and ``verify-logline`` over every
LogLine written. Nothing outside the demo's own storage root is read or changed: the demo writes its own
config there and ignores ``VV_*`` variables and the user's config file.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_copy, atomic_write_text
from vvctl.core.errors import UsageError
from vvctl.core.keystore import load_verification_keys
from vvctl.core.settings import load_settings
from vvctl.core.verify import verify_paths
from vvctl.data import bundled_sample_clip
from vvctl.ops.bootstrap import _toml_value, bootstrap
from vvctl.pipeline.orchestrate import VideoResult, orchestrate

MARKER = ".vvctl-demo"
CONFIG_NAME = "vvctl-demo.toml"


@dataclass(frozen=True)
class DemoReport:
    storage_root: Path
    config_path: Path
    video: VideoResult
    provider: str | None
    fallback_reason: str | None
    loglines_checked: int
    loglines_valid: int
    bootstrap_s: float
    orchestrate_s: float
    verify_s: float
    ok: bool
    """The clip was analysed (or recognised from an earlier demo) and every LogLine verified."""


def prepare_root(storage_root: Path | None) -> Path:
    """A fresh temp directory, or ``storage_root`` if it is new, empty, or an earlier demo's root."""
    if storage_root is None:
        return Path(tempfile.mkdtemp(prefix="vvctl-demo-"))
    root = storage_root.expanduser().absolute()
    if root.exists():
        if not root.is_dir():
            raise UsageError(f"demo storage root {root} exists and is not a directory")
        if any(root.iterdir()) and not (root / MARKER).exists():
            raise UsageError(
                f"refusing to run the demo in {root}: it is not empty and was not made by 'vvctl demo'; "
                "give a new directory or leave --storage-root out"
            )
    return root


def run_demo(storage_root: Path | None = None, *, settings: Mapping[str, Any] | None = None) -> DemoReport:
    """``settings``: config keys to use instead of the defaults (the self-test passes the box's own model
    and inference settings), written into the demo's config."""
    root = prepare_root(storage_root)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / MARKER, "made by 'vvctl demo'; safe to delete\n")
    config = root / CONFIG_NAME
    if not config.exists():
        # settle_s = 0: the clip is copied in atomically, so it is complete the moment it appears.
        extra = "".join(f"{key} = {_toml_value(value)}\n" for key, value in (settings or {}).items())
        atomic_write_text(
            config,
            f"# Written by 'vvctl demo'.\nstorage_root = {json.dumps(str(root))}\nsettle_s = 0\n{extra}",
        )
    loaded = load_settings(config, env={}, require_file=True)

    started = time.perf_counter()
    bootstrap(loaded)
    bootstrapped = time.perf_counter()

    sample = bundled_sample_clip()
    atomic_copy(sample, root / "input" / sample.name)
    report = orchestrate(loaded.settings)
    orchestrated = time.perf_counter()

    # In an earlier demo's root the clip's content is already known: it is recorded as a duplicate.
    video = next(v for v in report.videos if v.name == sample.name)

    keys = load_verification_keys(loaded.settings.key_store)
    verified = verify_paths([root / "loglines"], keys)
    finished = time.perf_counter()
    checked = verified.valid + verified.invalid
    return DemoReport(
        storage_root=root,
        config_path=config,
        video=video,
        provider=report.model.provider if report.model else None,
        fallback_reason=report.model.fallback_reason if report.model else None,
        loglines_checked=checked,
        loglines_valid=verified.valid,
        bootstrap_s=round(bootstrapped - started, 3),
        orchestrate_s=round(orchestrated - bootstrapped, 3),
        verify_s=round(finished - orchestrated, 3),
        ok=video.outcome.value in ("done", "duplicate") and checked > 0 and verified.valid == checked,
    )


__all__ = ["DemoReport", "prepare_root", "run_demo"]
