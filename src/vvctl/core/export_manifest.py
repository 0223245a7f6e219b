"""The export manifest (``vv_logs_YYYYMMDD[-N].manifest.json``) and the chain anchors it vouches for.

``vvctl export-logs`` (:mod:`vvctl.ops.export`) writes an archive and a manifest signed like a LogLine
(``schemas/export-manifest.schema.json``). This module is the part of that format the LogLine verifier
needs too, so it lives in the core: reading a manifest, checking its signature, and turning the LogLine
members it lists into **anchors**. A LogLine member's SHA-256 is that LogLine's chain hash, so a manifest
whose signature verifies vouches "seq N of log L had hash H". Once exported LogLines are removed from
``loglines/``, the chain left on the box starts at some seq S > 1 and is still verifiable: its first
record's ``prev`` must be the hash an anchor gives for seq S - 1.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.canonical import NotCanonicalizable
from vvctl.core.errors import InputError, IntegrityError, UsageError
from vvctl.core.logline import FILE_NAME, LOG_NAME, signed_bytes
from vvctl.core.schemas import SchemaViolation, validate
from vvctl.core.signing import KeyStatus, VerificationKeys

MANIFEST_KIND = "vvctl-export-manifest"
SCHEMA = "export-manifest.schema.json"
ARCHIVE_SUFFIX = ".tar.gz"
MANIFEST_SUFFIX = ".manifest.json"
EXPORT_STEM = re.compile(r"^vv_logs_(?P<date>[0-9]{8})(?:-(?P<n>[1-9][0-9]{0,5}))?$")
MAX_MANIFEST_BYTES = 1 << 30


class SignatureProblem(StrEnum):
    """Why a manifest's signature is not accepted (the same names as the LogLine verifier's reasons)."""

    UNKNOWN_KEY_ID = "unknown_key_id"
    REVOKED_KEY = "revoked_key"
    ALGORITHM_MISMATCH = "algorithm_mismatch"
    BAD_SIGNATURE = "bad_signature"
    BOX_MISMATCH = "box_mismatch"


def manifest_path_for(archive: Path) -> Path:
    """``vv_logs_20261201.tar.gz`` -> ``vv_logs_20261201.manifest.json`` (same directory)."""
    name = archive.name
    stem = name[: -len(ARCHIVE_SUFFIX)] if name.endswith(ARCHIVE_SUFFIX) else archive.stem
    return archive.with_name(stem + MANIFEST_SUFFIX)


def archive_path_for(manifest: Path) -> Path:
    name = manifest.name
    stem = name[: -len(MANIFEST_SUFFIX)] if name.endswith(MANIFEST_SUFFIX) else manifest.stem
    return manifest.with_name(stem + ARCHIVE_SUFFIX)


def export_stem(name: str) -> str | None:
    """The ``vv_logs_YYYYMMDD[-N]`` stem of an archive or manifest file name, or None for other files."""
    for suffix in (ARCHIVE_SUFFIX, MANIFEST_SUFFIX):
        if name.endswith(suffix) and EXPORT_STEM.fullmatch(name[: -len(suffix)]):
            return name[: -len(suffix)]
    return None


def logline_member(path: str) -> tuple[str, int] | None:
    """(log, seq) of an archive member ``loglines/<log>/<seq>.<slug>.logline.json``, else None."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] != "loglines" or not LOG_NAME.fullmatch(parts[1]):
        return None
    match = FILE_NAME.fullmatch(parts[2])
    return (parts[1], int(match["seq"])) if match else None


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, checked against its schema. :class:`InputError` when it is not one."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"manifest {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise InputError(f"manifest {path} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError(f"manifest {path} is not UTF-8 JSON") from None
    if not isinstance(document, dict) or document.get("kind") != MANIFEST_KIND:
        raise InputError(f"{path} is not a vvctl export manifest")
    try:
        validate(document, SCHEMA)
    except SchemaViolation as exc:
        raise InputError(f"manifest {path} is malformed: {exc.field}: {exc.reason}") from None
    return document


def signature_problem(document: dict[str, Any], keys: VerificationKeys) -> tuple[SignatureProblem, str] | None:
    """Why the manifest's signature is not accepted with ``keys`` (reason, detail), or None when it verifies."""
    details = document["signature_details"]
    key = keys.get(details["key_id"])
    if key is None:
        return SignatureProblem.UNKNOWN_KEY_ID, f"signed with key {details['key_id']}, which was not given"
    if key.status is KeyStatus.REVOKED:
        return SignatureProblem.REVOKED_KEY, f"signed with revoked key {key.key_id}"
    if key.algorithm.value != details["algorithm"]:
        return (
            SignatureProblem.ALGORITHM_MISMATCH,
            f"names {details['algorithm']} but key {key.key_id} is {key.algorithm.value}",
        )
    try:
        message = signed_bytes(document)
        signature = bytes.fromhex(details["signature"])
    except (NotCanonicalizable, ValueError):
        return SignatureProblem.BAD_SIGNATURE, "the manifest has no canonical form or the signature is not hex"
    if not key.verify(message, signature):
        return SignatureProblem.BAD_SIGNATURE, f"the signature does not verify with key {key.key_id}"
    box = document.get("box")
    if box is not None and key.box is not None and box != key.box:
        return SignatureProblem.BOX_MISMATCH, f"names box {box} but is signed by key {key.key_id} of box {key.box}"
    return None


@dataclass(frozen=True)
class Anchor:
    """A signed statement "seq ``seq`` of log ``log`` had chain hash ``hash``" from manifest ``manifest``."""

    log: str
    seq: int
    hash: str
    manifest: str


@dataclass
class ChainAnchors:
    """Anchors from signed export manifests, by log and seq.

    Two manifests that give one seq different hashes cancel each other out for that seq (listed in
    ``conflicts``): a verifier must not trust either.
    """

    sources: list[str] = field(default_factory=list)
    """Manifests whose anchors were taken (their signatures verified)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Manifests found but not trusted: (path, why)."""
    conflicts: list[tuple[str, int]] = field(default_factory=list)
    _by_log: dict[str, dict[int, Anchor]] = field(default_factory=dict, repr=False)
    _sorted: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def add(self, document: dict[str, Any], name: str) -> None:
        """Take the anchors of one manifest whose signature was already checked."""
        statements = [(logline_member(m["path"]), m["sha256"]) for m in document["members"]]
        statements += [((log, head["seq"]), head["hash"]) for log, head in document["chain_heads"].items()]
        for where, digest in statements:
            if where is None:
                continue
            log, seq = where
            known = self._by_log.setdefault(log, {}).get(seq)
            if known is None:
                if (log, seq) not in self.conflicts:
                    self._by_log[log][seq] = Anchor(log, seq, digest, name)
            elif known.hash != digest:
                del self._by_log[log][seq]
                self.conflicts.append((log, seq))
        self._sorted.clear()
        self.sources.append(name)

    def at(self, log: str, seq: int) -> Anchor | None:
        return self._by_log.get(log, {}).get(seq)

    def below(self, log: str, seq: int) -> Anchor | None:
        """The anchor with the highest seq under ``seq``, or None."""
        seqs = self._sorted.get(log)
        if seqs is None:
            seqs = self._sorted[log] = sorted(self._by_log.get(log, {}))
        index = bisect.bisect_left(seqs, seq)
        return self._by_log[log][seqs[index - 1]] if index else None

    def logs(self) -> Iterable[str]:
        return self._by_log.keys()


def manifest_files(paths: Sequence[Path]) -> list[Path]:
    """Each path as given, or for a directory its ``vv_logs_*.manifest.json`` files (sorted, not recursive)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                names = sorted(entry.name for entry in path.iterdir())
            except OSError as exc:
                raise InputError(f"cannot list {path}: {exc.strerror or exc}") from None
            found += [path / n for n in names if n.endswith(MANIFEST_SUFFIX) and export_stem(n)]
        else:
            found.append(path)
    return found


def load_anchors(paths: Sequence[Path], keys: VerificationKeys, *, strict: bool = True) -> ChainAnchors:
    """The anchors of the manifests at ``paths`` (files, or directories of manifests).

    ``strict`` (manifests the user named): a manifest that cannot be read is an :class:`InputError` (exit
    8) and one whose signature is not accepted an :class:`IntegrityError` (exit 5). Otherwise (manifests
    found on the box) such a manifest is skipped and listed in ``skipped``: a chain it would have
    anchored is then reported as cut, which fails closed.
    """
    anchors = ChainAnchors()
    for path in manifest_files(paths):
        try:
            document = read_manifest(path)
        except (InputError, UsageError) as exc:
            if strict:
                raise
            anchors.skipped.append((str(path), exc.message))
            continue
        problem = signature_problem(document, keys)
        if problem is not None:
            if strict:
                raise IntegrityError(f"manifest {path}: {problem[0].value}: {problem[1]}")
            anchors.skipped.append((str(path), f"{problem[0].value}: {problem[1]}"))
            continue
        anchors.add(document, path.name)
    return anchors


__all__ = [
    "ARCHIVE_SUFFIX",
    "EXPORT_STEM",
    "MANIFEST_KIND",
    "MANIFEST_SUFFIX",
    "SCHEMA",
    "Anchor",
    "ChainAnchors",
    "SignatureProblem",
    "archive_path_for",
    "export_stem",
    "load_anchors",
    "logline_member",
    "manifest_files",
    "read_manifest",
    "signature_problem",
]
