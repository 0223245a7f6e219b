"""The integrity manifest ``<storage_root>/state/vv-signature.json``: what was installed, signed.

``vvctl install`` records the SHA-256 of every file of the installed vvctl distribution (its own file
list, :func:`vvctl.ops.install.entry.installed_files`), the config file, the model and the installed
schedule (the crontab block's text, or each systemd unit file), and signs the document with the key
store (:func:`vvctl.core.logline.sign_document`). :func:`verify_integrity` compares the machine with it
and names each file that changed, went missing or appeared in the package directory unlisted:
``install --check``, ``selftest`` and the monitor all use it.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

from vvctl import __version__
from vvctl.core.atomic import atomic_write_bytes
from vvctl.core.canonical import canonicalize
from vvctl.core.errors import InputError, IntegrityError, StorageError, VVError
from vvctl.core.hashing import sha256_bytes, sha256_file
from vvctl.core.keystore import KeyStore
from vvctl.core.layout import StorageLayout
from vvctl.core.logline import sign_document
from vvctl.core.schemas import SchemaViolation, validate
from vvctl.core.settings import Settings
from vvctl.core.signing import VerificationKeys
from vvctl.core.timeutil import Clock, rfc3339, utcnow

MANIFEST_NAME = "vv-signature.json"
KIND = "vvctl-integrity-manifest"
SCHEMA = "integrity-manifest.schema.json"
MAX_BYTES = 16 << 20


class Role(StrEnum):
    PACKAGE = "package"
    CONFIG = "config"
    MODEL = "model"
    CRONTAB = "crontab"
    """The vvctl block of a crontab (``crontab:<user>`` or an /etc/cron.d file): only the block is hashed."""
    UNIT = "unit"


@dataclass(frozen=True)
class Entry:
    path: str
    role: Role
    sha256: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "role": self.role.value, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Scheduler:
    kind: str
    """crontab or systemd."""
    scope: str
    """user or system."""
    target: str
    """crontab:<user>, the /etc/cron.d file, or the unit directory."""

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "scope": self.scope, "target": self.target}


def manifest_path(settings: Settings) -> Path:
    return StorageLayout(settings.storage_root).state / MANIFEST_NAME


def file_entry(path: Path, role: Role) -> Entry:
    try:
        return Entry(str(path), role, sha256_file(path), path.stat().st_size)
    except OSError as exc:
        raise StorageError(f"cannot read {path} for the integrity manifest: {exc.strerror or exc}") from None


def block_entry(target: str, block: str) -> Entry:
    data = block.encode("utf-8", "surrogateescape")
    return Entry(target, Role.CRONTAB, sha256_bytes(data), len(data))


def collect(settings: Settings, config: Path, dist: Distribution, schedule: Iterable[Entry]) -> list[Entry]:
    """Every entry of a new manifest: the package's files, the config, the model, the schedule."""
    from vvctl.ops.install.entry import installed_files

    entries = [file_entry(path, Role.PACKAGE) for path in installed_files(dist) if path.is_file()]
    entries.append(file_entry(config.absolute(), Role.CONFIG))
    if settings.model_path.is_file():
        entries.append(file_entry(settings.model_path.absolute(), Role.MODEL))
    entries.extend(schedule)
    return entries


def build(entries: Iterable[Entry], scheduler: Scheduler, *, clock: Clock = utcnow) -> dict[str, Any]:
    """The unsigned manifest document."""
    return {
        "schema_version": 1,
        "kind": KIND,
        "created": rfc3339(clock()),
        "vvctl_version": __version__,
        "scheduler": scheduler.as_json(),
        "files": [entry.as_json() for entry in sorted(entries, key=lambda e: (e.role.value, e.path))],
    }


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two manifests that record the same things (their creation time and signature aside)."""
    keys = ("vvctl_version", "scheduler", "files")
    return all(a.get(k) == b.get(k) for k in keys)


def write_manifest(path: Path, document: dict[str, Any], store: KeyStore) -> dict[str, Any]:
    """Sign ``document``, check it against its schema and write it atomically (0644)."""
    signed = sign_document(store, dict(document))
    validate(signed, SCHEMA)
    atomic_write_bytes(path, canonicalize(signed), mode=0o644)
    return signed


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, checked against its schema (not its signature: :func:`signature_problem`)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"integrity manifest {path} is larger than {MAX_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"integrity manifest {path} is not UTF-8 JSON") from None
    try:
        validate(document, SCHEMA)
    except SchemaViolation as exc:
        raise InputError(f"integrity manifest {path} is malformed: {exc.field}: {exc.reason}") from None
    result: dict[str, Any] = document
    return result


def signature_problem(document: dict[str, Any], keys: VerificationKeys) -> str | None:
    """Why the manifest's signature is not accepted, or None when it verifies with ``keys`` (the same rules
    as for export manifests: a known key, not revoked, of the named algorithm, over the canonical bytes)."""
    from vvctl.core.export_manifest import signature_problem as document_signature_problem

    problem = document_signature_problem(document, keys)
    return None if problem is None else problem[1]


class Problem(StrEnum):
    CHANGED = "changed"
    MISSING = "missing"
    UNREADABLE = "unreadable"
    UNLISTED = "unlisted"
    """A file in the package directory that the manifest does not list."""


@dataclass(frozen=True)
class Drift:
    path: str
    role: Role
    problem: Problem
    detail: str = ""

    def describe(self) -> str:
        return f"{self.role.value} {self.path}: {self.problem.value}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class IntegrityReport:
    manifest: Path
    present: bool
    problem: str | None
    """Why the manifest itself cannot be trusted (missing, malformed, bad signature), or None."""
    created: str | None
    scheduler: Scheduler | None
    checked: int
    drift: tuple[Drift, ...]

    @property
    def ok(self) -> bool:
        return self.present and self.problem is None and not self.drift

    @property
    def summary(self) -> str:
        if not self.present:
            return f"no integrity manifest at {self.manifest} (run 'vvctl install')"
        if self.problem is not None:
            return f"integrity manifest {self.manifest}: {self.problem}"
        if self.drift:
            shown = "; ".join(d.describe() for d in self.drift[:5])
            more = f"; and {len(self.drift) - 5} more" if len(self.drift) > 5 else ""
            return f"{len(self.drift)} of {self.checked} recorded files drifted: {shown}{more}"
        return f"{self.checked} recorded files match the integrity manifest of {self.created}"


BlockReader = Callable[[str], str | None]
"""Reads the current vvctl block of a crontab target (``crontab:<user>`` or a cron.d file), None if none."""


def read_block(target: str) -> str | None:
    """The real reader: ``crontab -l`` (``-u`` for another user) or the cron.d file, then the block."""
    from vvctl.ops.install.crontab import CronDFile, UserCrontab, extract

    if target.startswith("crontab:"):
        user = target.removeprefix("crontab:")
        me = pwd.getpwuid(os.geteuid()).pw_name
        text = UserCrontab(user=None if user == me else user).read()
    else:
        path = Path(target)
        text = CronDFile(directory=path.parent, name=path.name).read()
    return extract(text, target)


def _current(entry: Entry, read_crontab: BlockReader) -> Drift | None:
    if entry.role is Role.CRONTAB:
        try:
            block = read_crontab(entry.path)
        except VVError as exc:
            return Drift(entry.path, entry.role, Problem.UNREADABLE, exc.message)
        if block is None:
            return Drift(entry.path, entry.role, Problem.MISSING, "the vvctl block is not there")
        digest = sha256_bytes(block.encode("utf-8", "surrogateescape"))
    else:
        path = Path(entry.path)
        if not path.exists():
            return Drift(entry.path, entry.role, Problem.MISSING)
        try:
            digest = sha256_file(path)
        except StorageError as exc:
            return Drift(entry.path, entry.role, Problem.UNREADABLE, exc.message)
    if digest != entry.sha256:
        return Drift(entry.path, entry.role, Problem.CHANGED, f"sha256 {digest[:12]}…, recorded {entry.sha256[:12]}…")
    return None


def _entries(document: dict[str, Any]) -> list[Entry]:
    return [Entry(f["path"], Role(f["role"]), f["sha256"], f["size"]) for f in document["files"]]


def verify_integrity(
    settings: Settings,
    keys: VerificationKeys,
    *,
    dist: Distribution | None = None,
    read_crontab: BlockReader = read_block,
) -> IntegrityReport:
    """Compare the machine with the manifest: its signature, then every recorded file, then the package
    directory for files the manifest does not list."""
    path = manifest_path(settings)
    try:
        document = read_manifest(path)
    except FileNotFoundError:
        return IntegrityReport(path, False, "it does not exist", None, None, 0, ())
    except (InputError, StorageError) as exc:
        return IntegrityReport(path, True, exc.message, None, None, 0, ())
    scheduler = Scheduler(**document["scheduler"])
    problem = signature_problem(document, keys)
    if problem is not None:
        return IntegrityReport(path, True, problem, document["created"], scheduler, 0, ())
    entries = _entries(document)
    drift = [d for d in (_current(entry, read_crontab) for entry in entries) if d is not None]
    if dist is None:
        from vvctl.ops.install.entry import this_distribution

        try:
            dist = this_distribution()
        except VVError:
            dist = None
    if dist is not None:
        from vvctl.ops.install.entry import unlisted_files

        listed = {Path(e.path) for e in entries if e.role is Role.PACKAGE}
        drift.extend(Drift(str(p), Role.PACKAGE, Problem.UNLISTED) for p in unlisted_files(dist, listed))
    return IntegrityReport(path, True, None, document["created"], scheduler, len(entries), tuple(drift))


def load_valid(path: Path, keys: VerificationKeys) -> dict[str, Any] | None:
    """The manifest at ``path`` if it exists, is well formed and its signature verifies; else None."""
    try:
        document = read_manifest(path)
    except (FileNotFoundError, InputError, StorageError):
        return None
    return document if signature_problem(document, keys) is None else None


def remove_manifest(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc.strerror or exc}") from None
    return True


def require_ok(report: IntegrityReport) -> None:
    if not report.ok:
        raise IntegrityError(report.summary)


__all__ = [
    "KIND",
    "MANIFEST_NAME",
    "Drift",
    "Entry",
    "IntegrityReport",
    "Problem",
    "Role",
    "Scheduler",
    "block_entry",
    "build",
    "collect",
    "file_entry",
    "load_valid",
    "manifest_path",
    "read_block",
    "read_manifest",
    "remove_manifest",
    "same_content",
    "signature_problem",
    "verify_integrity",
    "write_manifest",
]
