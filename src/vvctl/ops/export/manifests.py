"""The exports already on the box: which manifests are trusted, and what they say was exported."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vvctl.core.errors import InputError, StorageError, UsageError
from vvctl.core.export_manifest import logline_member, manifest_files, read_manifest, signature_problem
from vvctl.core.signing import VerificationKeys


@dataclass(frozen=True)
class TrustedManifest:
    """A manifest in ``exports/`` whose schema and signature check out (its archive is not read here)."""

    path: Path
    document: dict[str, Any]

    def loglines(self) -> dict[tuple[str, int], str]:
        """(log, seq) -> SHA-256 of every LogLine this export holds."""
        found: dict[tuple[str, int], str] = {}
        for member in self.document["members"]:
            where = logline_member(member["path"])
            if where is not None:
                found[where] = member["sha256"]
        return found


def trusted_manifests(exports: Path, keys: VerificationKeys) -> tuple[list[TrustedManifest], list[str]]:
    """The manifests in ``exports`` that are well formed and signed by a known, unrevoked key, sorted by
    name; and one warning per manifest that is not (it is then ignored: nothing relies on it)."""
    if not exports.is_dir():
        return [], []
    try:
        paths = manifest_files([exports])
    except InputError as exc:
        raise StorageError(exc.message) from None
    trusted: list[TrustedManifest] = []
    warnings: list[str] = []
    for path in paths:
        if path.is_symlink():
            warnings.append(f"{path.name} is a symbolic link: ignored")
            continue
        try:
            document = read_manifest(path)
        except (InputError, UsageError) as exc:
            warnings.append(f"ignored: {exc.message}")
            continue
        problem = signature_problem(document, keys)
        if problem is not None:
            warnings.append(f"ignored {path.name}: {problem[0].value}: {problem[1]}")
            continue
        trusted.append(TrustedManifest(path, document))
    return trusted, warnings


__all__ = ["TrustedManifest", "trusted_manifests"]
