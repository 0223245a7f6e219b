"""Which LogLines may leave ``loglines/``: only those held, byte for byte, by an export that verifies.

The chain left on the box must stay verifiable (``vvctl verify-logline`` anchors its first record on
the manifest that vouches for the record before it), so only a run of records from the oldest one
present is ever removable, never one after a gap, and never a log's newest record (the LogLine writer
reads the head from it). Removing the returned files in the returned order keeps the chain anchored at
every step, so a removal interrupted half-way leaves a valid state too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vvctl.core.atomic import fsync_dir
from vvctl.core.errors import UsageError
from vvctl.core.export_manifest import archive_path_for
from vvctl.core.hashing import sha256_file
from vvctl.core.keystore import load_verification_keys
from vvctl.core.layout import StorageLayout
from vvctl.core.logline import LOG_NAME, MD_SUFFIX, SUFFIX, scan_log_files
from vvctl.core.settings import Settings
from vvctl.core.signing import VerificationKeys
from vvctl.core.state import storage_errors
from vvctl.ops.export.manifests import trusted_manifests
from vvctl.ops.export.verify import verify_export


def _present(loglines: Path) -> dict[str, dict[int, list[Path]]]:
    logs: dict[str, dict[int, list[Path]]] = {}
    if not loglines.is_dir():
        return logs
    with os.scandir(loglines) as entries:
        for entry in entries:
            if LOG_NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                files = scan_log_files(Path(entry.path))
                if files:
                    logs[entry.name] = files
    return logs


def _covered(
    exports: Path, keys: VerificationKeys, present: dict[str, dict[int, list[Path]]]
) -> dict[tuple[str, int], str]:
    """(log, seq) -> SHA-256 for every present LogLine held by an export whose archive verifies in full."""
    covered: dict[tuple[str, int], str] = {}
    disputed: set[tuple[str, int]] = set()
    manifests, _ = trusted_manifests(exports, keys)
    for manifest in manifests:
        held = {key: digest for key, digest in manifest.loglines().items() if key[1] in present.get(key[0], {})}
        if not held:
            continue  # an older export whose LogLines are already gone: no need to read its archive
        try:
            report = verify_export(archive_path_for(manifest.path), keys, manifest=manifest.path)
        except UsageError:  # the archive is gone
            continue
        if not report.ok:
            continue
        for key, digest in held.items():
            if covered.setdefault(key, digest) != digest:
                disputed.add(key)
    for key in disputed:
        del covered[key]
    return covered


def removable_loglines(settings: Settings, *, keys: VerificationKeys | None = None) -> list[Path]:
    """The LogLine files (each ``.logline.json`` followed by its ``.logline.md``) that may be removed from
    ``loglines/`` now, in the order to remove them (oldest first, log by log).

    A record is removable when an export in ``exports/`` holds a byte-identical copy, that export's
    manifest is signed by a known key and its archive verifies in full, every older record still present
    is removable too, and it is not its log's newest record. ``keys`` defaults to the key store's.
    """
    layout = StorageLayout(settings.storage_root)
    with storage_errors("finding the exported LogLines"):
        present = _present(layout.loglines)
        if not present:
            return []
        keys = keys if keys is not None else load_verification_keys(settings.key_store)
        covered = _covered(layout.exports, keys, present)
        removable: list[Path] = []
        for log in sorted(present):
            files = present[log]
            seqs = sorted(files)
            for position, seq in enumerate(seqs[:-1]):
                if position and seq != seqs[position - 1] + 1:
                    break  # never past a gap: what follows it would lose its anchor
                paths = files[seq]
                digest = covered.get((log, seq))
                if len(paths) != 1 or digest is None or sha256_file(paths[0]) != digest:
                    break
                removable.append(paths[0])
                md = paths[0].with_name(paths[0].name[: -len(SUFFIX)] + MD_SUFFIX)
                if md.exists():
                    removable.append(md)
    return removable


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[Path, ...]

    @property
    def loglines(self) -> int:
        return sum(1 for path in self.removed if path.name.endswith(SUFFIX))


def prune_loglines(settings: Settings, *, keys: VerificationKeys | None = None) -> PruneResult:
    """Remove :func:`removable_loglines` in their order; the directories are synced once at the end."""
    paths = removable_loglines(settings, keys=keys)
    removed: list[Path] = []
    with storage_errors("removing exported LogLines"):
        try:
            for path in paths:
                path.unlink(missing_ok=True)
                removed.append(path)
        finally:
            for directory in sorted({p.parent for p in removed}):
                fsync_dir(directory)
    return PruneResult(tuple(removed))


__all__ = ["PruneResult", "prune_loglines", "removable_loglines"]
