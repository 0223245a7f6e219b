"""``vvctl export-logs --verify``: recompute an export and name everything that differs from its manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from vvctl.core.errors import InputError, UsageError
from vvctl.core.export_manifest import (
    MANIFEST_SUFFIX,
    archive_path_for,
    manifest_path_for,
    read_manifest,
    signature_problem,
)
from vvctl.core.signing import VerificationKeys
from vvctl.ops.export.archive import ArchiveUnreadable, read_archive


class ExportReason(StrEnum):
    """What ``--verify`` found. Stable names: scripts read them from ``--json``."""

    MANIFEST_MISSING = "manifest_missing"
    """No manifest next to the archive (``<stem>.manifest.json``) and none given."""
    MANIFEST_MALFORMED = "manifest_malformed"
    """The manifest is not JSON or breaks ``export-manifest.schema.json``."""
    UNKNOWN_KEY_ID = "unknown_key_id"
    """The manifest is signed with a key that was not given to the verifier."""
    REVOKED_KEY = "revoked_key"
    """The manifest is signed with a revoked key."""
    ALGORITHM_MISMATCH = "algorithm_mismatch"
    """The manifest names another algorithm than its key's."""
    BAD_SIGNATURE = "bad_signature"
    """The manifest's signature does not verify: the manifest was altered or forged."""
    BOX_MISMATCH = "box_mismatch"
    """The manifest names another box than the one its signing key belongs to."""
    NAME_MISMATCH = "name_mismatch"
    """The manifest describes an archive of another name (an export swapped for another one)."""
    ARCHIVE_MISMATCH = "archive_mismatch"
    """The archive's size or SHA-256 is not the manifest's."""
    ARCHIVE_UNREADABLE = "archive_unreadable"
    """The archive is not a complete gzip-compressed tar (truncated, corrupt)."""
    ALTERED_MEMBER = "altered_member"
    """A member's content (SHA-256), size or mtime is not the manifest's."""
    MISSING_MEMBER = "missing_member"
    """A member the manifest lists is not in the archive."""
    EXTRA_MEMBER = "extra_member"
    """The archive holds a member the manifest does not list."""
    DUPLICATE_MEMBER = "duplicate_member"
    """The archive holds the same name twice (extraction would keep only the last)."""
    UNSAFE_MEMBER = "unsafe_member"
    """An absolute name, a ``..`` component, or not a regular file (link, device, directory)."""


_SIGNATURE_REASONS = {
    "unknown_key_id": ExportReason.UNKNOWN_KEY_ID,
    "revoked_key": ExportReason.REVOKED_KEY,
    "algorithm_mismatch": ExportReason.ALGORITHM_MISMATCH,
    "bad_signature": ExportReason.BAD_SIGNATURE,
    "box_mismatch": ExportReason.BOX_MISMATCH,
}


@dataclass(frozen=True)
class ExportFinding:
    reason: ExportReason
    member: str | None
    """The member it is about, when it is about one."""
    detail: str


@dataclass
class ExportVerifyReport:
    archive: Path
    manifest: Path
    members_checked: int = 0
    members_listed: int = 0
    key_id: str | None = None
    findings: list[ExportFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, reason: ExportReason, detail: str, member: str | None = None) -> None:
        self.findings.append(ExportFinding(reason, member, detail))


def _unsafe(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts)


def resolve_export_paths(given: Path, manifest: Path | None = None) -> tuple[Path, Path]:
    """(archive, manifest) from what the user named: the archive or its manifest, plus an optional manifest."""
    if given.name.endswith(MANIFEST_SUFFIX) and manifest is None:
        archive, manifest = archive_path_for(given), given
    else:
        archive, manifest = given, manifest or manifest_path_for(given)
    if not archive.exists():
        raise UsageError(f"archive {archive} does not exist")
    return archive, manifest


def verify_export(archive: Path, keys: VerificationKeys, *, manifest: Path | None = None) -> ExportVerifyReport:
    """Check an export against its signed manifest: the manifest's signature, the archive's size and
    SHA-256, and every member's name, content, size and mtime. Every difference is a finding."""
    archive, manifest_path = resolve_export_paths(archive, manifest)
    report = ExportVerifyReport(archive, manifest_path)
    expected: dict[str, dict[str, object]] = {}
    document = None
    if not manifest_path.exists():
        report.add(ExportReason.MANIFEST_MISSING, f"{manifest_path.name} not found")
    else:
        try:
            document = read_manifest(manifest_path)
        except (InputError, UsageError) as exc:
            report.add(ExportReason.MANIFEST_MALFORMED, exc.message)
    if document is not None:
        report.key_id = document["signature_details"]["key_id"]
        problem = signature_problem(document, keys)
        if problem is not None:
            report.add(_SIGNATURE_REASONS[problem[0].value], f"manifest: {problem[1]}")
        if document["archive"]["name"] != archive.name:
            report.add(ExportReason.NAME_MISMATCH, f"the manifest describes {document['archive']['name']}")
        expected = {m["path"]: m for m in document["members"]}
        report.members_listed = len(expected)

    seen: set[str] = set()
    try:
        raw = archive.open("rb")
    except OSError as exc:
        report.add(ExportReason.ARCHIVE_UNREADABLE, f"cannot open: {exc.strerror or exc}")
        return report
    with raw:
        members, counted = read_archive(raw)
        try:
            for member in members:
                report.members_checked += 1
                name = member.name
                if name in seen:
                    report.add(ExportReason.DUPLICATE_MEMBER, "this name appears more than once", name)
                    continue
                seen.add(name)
                if _unsafe(name) or not member.regular:
                    kind = "not a regular file" if member.regular is False else "an absolute or '..' name"
                    report.add(ExportReason.UNSAFE_MEMBER, kind, name)
                    continue
                listed = expected.get(name)
                if listed is None:
                    if document is not None:
                        report.add(ExportReason.EXTRA_MEMBER, "not listed in the manifest", name)
                    continue
                differences = [
                    f"{key} {member_value} (manifest: {listed[key]})"
                    for key, member_value in (("sha256", member.sha256), ("size", member.size), ("mtime", member.mtime))
                    if listed[key] != member_value
                ]
                if differences:
                    report.add(ExportReason.ALTERED_MEMBER, "; ".join(differences), name)
        except ArchiveUnreadable as exc:
            report.add(ExportReason.ARCHIVE_UNREADABLE, str(exc))
        try:
            counted.drain()  # the archive's hash covers the whole file, however far tar got
        except OSError as exc:
            report.add(ExportReason.ARCHIVE_UNREADABLE, f"cannot read: {exc.strerror or exc}")
            return report
    for name in sorted(set(expected) - seen):
        report.add(ExportReason.MISSING_MEMBER, "listed in the manifest but not in the archive", name)
    if document is not None:
        listed_archive = document["archive"]
        if (counted.size, counted.digest.hexdigest()) != (listed_archive["size"], listed_archive["sha256"]):
            report.add(
                ExportReason.ARCHIVE_MISMATCH,
                f"archive is {counted.size} bytes, SHA-256 {counted.digest.hexdigest()} "
                f"(manifest: {listed_archive['size']} bytes, {listed_archive['sha256']})",
            )
    return report


__all__ = ["ExportFinding", "ExportReason", "ExportVerifyReport", "resolve_export_paths", "verify_export"]
