"""``vvctl bootstrap``: storage layout, default config, key store, verified model, fallback assets.

Idempotent: a second run finds everything in place and changes no file (it still logs and appends its
own signed audit record to the ``jobs`` log).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_open, atomic_write_text
from vvctl.core.errors import IntegrityError, StorageError, UsageError
from vvctl.core.hashing import sha256_file
from vvctl.core.jsonlog import configure_file_logging
from vvctl.core.layout import DIRECTORIES, StorageLayout, check_storage_root
from vvctl.core.schemas import load_schema
from vvctl.core.settings import CONFIG_SCHEMA, LoadedSettings, Settings
from vvctl.data import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SHA256, bundled_model, bundled_sample_clip

log = logging.getLogger("vvctl.bootstrap")

PRIVATE_DIRS = frozenset({"state"})


class Outcome(StrEnum):
    CREATED = "created"
    PRESENT = "present"
    REPLACED = "replaced"
    WOULD_CREATE = "would_create"
    WOULD_REPLACE = "would_replace"
    MISSING = "missing"


@dataclass(frozen=True)
class BootstrapItem:
    kind: str
    path: Path
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class BootstrapReport:
    storage_root: Path
    config_path: Path
    dry_run: bool
    changed: bool
    items: list[BootstrapItem] = field(default_factory=list)
    logline: Path | None = None


def bootstrap(
    loaded: LoadedSettings,
    *,
    model_source: Path | None = None,
    model_sha256: str | None = None,
    dry_run: bool = False,
) -> BootstrapReport:
    settings = loaded.settings
    if (model_source is None) != (model_sha256 is None):
        raise UsageError("--model and --sha256 go together: give both or neither")
    if model_sha256 is not None:
        model_sha256 = model_sha256.strip().lower()
        if len(model_sha256) != 64 or any(c not in "0123456789abcdef" for c in model_sha256):
            raise UsageError("--sha256 must be 64 hexadecimal characters")
    root = check_storage_root(settings.storage_root)
    _check_writable(root)
    if model_source is not None and model_sha256 is not None:
        _check_model(model_source, model_sha256, settings.detector)  # before anything is written
    layout = StorageLayout(root)
    items: list[BootstrapItem] = []

    for name in DIRECTORIES:
        items.append(_ensure_dir(layout.root / name, 0o700 if name in PRIVATE_DIRS else 0o755, dry_run))

    if not dry_run:
        configure_file_logging(
            layout.logs, level=settings.log_level, max_bytes=settings.log_max_bytes, backups=settings.log_backups
        )

    items.append(_ensure_config(loaded, root, model_source, model_sha256, dry_run))
    items.append(_ensure_keystore(settings, dry_run))

    if model_source is not None and model_sha256 is not None:
        item = _provision(model_source, model_sha256, layout.models / model_source.name, "model", dry_run)
        if (settings.model, settings.model_sha256) != (model_source.name, model_sha256) and loaded.config_exists:
            hint = f'the config still uses {settings.model}: set model = "{model_source.name}" and model_sha256'
            item = replace(item, detail=f"{item.detail}; {hint}" if item.detail else hint)
        items.append(item)
    elif settings.model == DEFAULT_MODEL_NAME and not Path(settings.model).is_absolute():
        items.append(_provision(bundled_model(), DEFAULT_MODEL_SHA256, settings.model_path, "model", dry_run))
    else:
        items.append(_check_configured_model(settings))

    sample = bundled_sample_clip()
    items.append(_provision(sample, sha256_file(sample), layout.fallback / sample.name, "fallback", dry_run))

    changed = any(item.outcome not in (Outcome.PRESENT, Outcome.MISSING) for item in items)
    report = BootstrapReport(root, loaded.config_path, dry_run, changed, items)
    if not dry_run:
        log.info(
            "bootstrap finished",
            extra={"changed": changed, "created_items": [str(i.path) for i in items if i.outcome != Outcome.PRESENT]},
        )
        report = _append_logline(settings, report)
    return report


def _append_logline(settings: Settings, report: BootstrapReport) -> BootstrapReport:
    """Record the key store's pending key events (a new key, a bound store, an interrupted rotation) in
    every log, then the bootstrap run itself as a signed LogLine in the ``jobs`` log."""
    from dataclasses import replace

    from vvctl.core.keyevents import record_pending
    from vvctl.core.logline import LogLineDraft, LogLineWriter

    record_pending(settings)

    created = [item for item in report.items if item.outcome is not Outcome.PRESENT]
    if created:
        listed = ", ".join(f"{item.kind} {item.path.name}" for item in created[:8])
        more = f" and {len(created) - 8} more" if len(created) > 8 else ""
        this = f"set up {report.storage_root}: created or replaced {listed}{more}"
    else:
        this = f"checked {report.storage_root}: everything was already in place, nothing changed"
    written = LogLineWriter(settings).append(
        "jobs",
        LogLineDraft(
            who="vvctl bootstrap",
            did="set up the storage layout, config, key store and model",
            this=this,
            status="ok",
            source={"type": "job", "id": "bootstrap", "path": str(report.storage_root)},
        ),
        slug="bootstrap",
    )
    return replace(report, logline=written.path)


def _check_model(source: Path, expected: str, kind: str) -> None:
    """Refuse a ``--model`` that is missing, does not match its checksum (exit 5), or is not an ONNX
    detector vvctl can run (exit 8), before bootstrap writes anything (the config would pin it)."""
    if not source.is_file():
        raise StorageError(f"model source {source} does not exist or is not a file")
    from vvctl.core.detectors import load_detector

    # load_detector hashes the very bytes it loads and refuses a mismatch before building a session.
    load_detector(source, sha256=expected, kind=kind, providers=("CPUExecutionProvider",))


def _check_writable(root: Path) -> None:
    probe = root
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise StorageError(f"cannot use storage root {root}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"cannot write storage root {root}: permission denied on {probe}")


def _ensure_dir(path: Path, mode: int, dry_run: bool) -> BootstrapItem:
    if path.is_dir():
        return BootstrapItem("directory", path, Outcome.PRESENT)
    if path.exists():
        raise StorageError(f"{path} exists and is not a directory; move it away and run bootstrap again")
    if dry_run:
        return BootstrapItem("directory", path, Outcome.WOULD_CREATE)
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        path.chmod(mode)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return BootstrapItem("directory", path, Outcome.CREATED)


def _ensure_config(
    loaded: LoadedSettings, root: Path, model_source: Path | None, model_sha256: str | None, dry_run: bool
) -> BootstrapItem:
    path = loaded.config_path
    if path.exists():
        return BootstrapItem("config", path, Outcome.PRESENT)
    if dry_run:
        return BootstrapItem("config", path, Outcome.WOULD_CREATE)
    pinned: dict[str, Any] = {"storage_root": str(root)}
    if model_source is not None and model_sha256 is not None:
        pinned.update(model=model_source.name, model_sha256=model_sha256)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
    atomic_write_text(path, default_config_text(pinned), mode=0o644)
    return BootstrapItem("config", path, Outcome.CREATED)


def _ensure_keystore(settings: Settings, dry_run: bool) -> BootstrapItem:
    from vvctl.core.keystore import StoreSetup, ensure_keystore

    path = settings.key_store
    if dry_run:
        return BootstrapItem("key_store", path, Outcome.PRESENT if path.exists() else Outcome.WOULD_CREATE)
    setup = ensure_keystore(path, settings.signing_algorithm)
    if setup is StoreSetup.BOUND:
        return BootstrapItem("key_store", path, Outcome.REPLACED, "box id added; old keys recorded in every log")
    outcome = Outcome.CREATED if setup is StoreSetup.CREATED else Outcome.PRESENT
    return BootstrapItem("key_store", path, outcome, settings.signing_algorithm)


def _check_configured_model(settings: Settings) -> BootstrapItem:
    path = settings.model_path
    if not path.is_file():
        return BootstrapItem("model", path, Outcome.MISSING, "provide it with --model PATH --sha256 HEX")
    actual = sha256_file(path)
    if actual != settings.model_sha256:
        raise IntegrityError(f"model {path} has sha256 {actual[:12]}…, the config pins {settings.model_sha256[:12]}…")
    return BootstrapItem("model", path, Outcome.PRESENT, "sha256 verified")


def _provision(source: Path, expected: str, target: Path, kind: str, dry_run: bool) -> BootstrapItem:
    """Copy ``source`` to ``target`` only if its SHA-256 is ``expected``; never leave a partial file."""
    existed = target.exists()
    if existed and sha256_file(target) == expected:
        return BootstrapItem(kind, target, Outcome.PRESENT, "sha256 verified")
    if not source.is_file():
        raise StorageError(f"{kind} source {source} does not exist or is not a file")
    if dry_run:
        return BootstrapItem(kind, target, Outcome.WOULD_REPLACE if existed else Outcome.WOULD_CREATE)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as src, atomic_open(target, mode=0o644) as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
            if digest.hexdigest() != expected:
                # Raising inside atomic_open discards the temp file: the target is never touched.
                raise IntegrityError(
                    f"{source} has sha256 {digest.hexdigest()[:12]}…, expected {expected[:12]}…; nothing was written"
                )
    except OSError as exc:
        raise StorageError(f"cannot read {source}: {exc.strerror or exc}") from exc
    return BootstrapItem(kind, target, Outcome.REPLACED if existed else Outcome.CREATED, "sha256 verified")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def default_config_text(pinned: dict[str, Any]) -> str:
    """A commented config: ``pinned`` keys set, every other key shown commented out at its default."""
    props: dict[str, Any] = load_schema(CONFIG_SCHEMA)["properties"]
    lines = [
        "# vvctl configuration (TOML). Written by `vvctl bootstrap`; edit freely.",
        "# Every key can be overridden with a VV_<KEY> environment variable or a command-line flag.",
        "# Precedence: flag > environment > this file > built-in default.",
        "# `vvctl config show` prints the effective values and where each one came from.",
        "",
    ]
    for key, spec in props.items():
        lines.append(f"# {spec.get('description', key)}")
        if key in pinned:
            lines.append(f"{key} = {_toml_value(pinned[key])}")
        elif "default" in spec:
            lines.append(f"# {key} = {_toml_value(spec['default'])}")
        else:
            lines.append(f"# {key} = ...")
        lines.append("")
    return "\n".join(lines)
