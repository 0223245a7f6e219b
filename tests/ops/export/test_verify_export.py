"""``--verify``: an export recomputed; every altered, missing or extra member and bad signature named.

The archive is taken apart and put back together with the real ``tar``, ``gzip`` and ``sha256sum``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.ops.export.conftest import Box, MakeBox, clock
from vvctl.core.errors import UsageError
from vvctl.core.keystore import export_public_keys, load_public_keys, load_verification_keys
from vvctl.core.signing import VerificationKeys
from vvctl.ops.export import ExportReason, export_logs, verify_export

TOOLS = [shutil.which(t) for t in ("tar", "gzip", "sha256sum")]
needs_tools = pytest.mark.skipif(None in TOOLS, reason="GNU tar, gzip and sha256sum are needed")


@pytest.fixture
def exported(box: Box) -> tuple[Box, Path, Path, VerificationKeys]:
    box.append(3)
    box.write_log("vvctl.jsonl.1", '{"msg": "rotated"}\n' * 50)
    report = export_logs(box.settings, clock=clock).report
    assert report.archive is not None and report.manifest is not None
    return box, report.archive, report.manifest, load_verification_keys(box.settings.key_store)


def findings(report: Any) -> list[tuple[str, str | None]]:
    return [(f.reason.value, f.member) for f in report.findings]


def run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def extract(archive: Path, target: Path) -> None:
    target.mkdir()
    run("tar", "-xzf", str(archive), "-C", str(target))


def repack_plain(archive: Path, tar_path: Path) -> None:
    """gzip -dc archive > tar_path: the tar inside, for GNU tar's --delete and --append."""
    tar_path.write_bytes(subprocess.run(["gzip", "-dc", str(archive)], check=True, capture_output=True).stdout)


@needs_tools
def test_round_trip_with_real_tar_and_sha256sum(exported: Any, tmp_path: Path) -> None:
    _, archive, manifest, keys = exported
    document = json.loads(manifest.read_text())
    target = tmp_path / "x"
    extract(archive, target)
    sums = "".join(f"{m['sha256']}  {m['path']}\n" for m in document["members"])
    (tmp_path / "SHA256SUMS").write_text(sums)
    out = run("sha256sum", "-c", str(tmp_path / "SHA256SUMS"), cwd=target)
    assert out.count(": OK") == len(document["members"]) and "FAILED" not in out
    # And the archive itself:
    assert run("sha256sum", str(archive)).split()[0] == document["archive"]["sha256"]
    extracted = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert extracted == [m["path"] for m in document["members"]]
    assert verify_export(archive, keys).ok


@needs_tools
def test_one_changed_byte_in_one_member_is_named(exported: Any, tmp_path: Path) -> None:
    _, archive, _, keys = exported
    plain = tmp_path / "a.tar"
    repack_plain(archive, plain)
    data = bytearray(plain.read_bytes())
    where = data.index(b"rotated")  # inside logs/vvctl.jsonl.1's content
    data[where] ^= 0x20
    plain.write_bytes(bytes(data))
    run("gzip", "-n", "-f", str(plain))  # -> a.tar.gz
    tampered = tmp_path / "a.tar.gz"
    shutil.move(tampered, archive)
    report = verify_export(archive, keys)
    assert ("altered_member", "logs/vvctl.jsonl.1") in findings(report)
    assert ("archive_mismatch", None) in findings(report)
    altered = next(f for f in report.findings if f.reason is ExportReason.ALTERED_MEMBER)
    assert altered.detail.startswith("sha256 ")
    assert {r for r, _ in findings(report)} == {"altered_member", "archive_mismatch"}


@needs_tools
def test_a_removed_member_is_named(exported: Any, tmp_path: Path) -> None:
    _, archive, manifest, keys = exported
    plain = tmp_path / "a.tar"
    repack_plain(archive, plain)
    victim = next(m["path"] for m in json.loads(manifest.read_text())["members"] if m["path"].endswith(".json"))
    run("tar", "--delete", "-f", str(plain), victim)
    run("gzip", "-n", "-f", str(plain))
    shutil.move(tmp_path / "a.tar.gz", archive)
    report = verify_export(archive, keys)
    assert set(findings(report)) == {("missing_member", victim), ("archive_mismatch", None)}


@needs_tools
def test_an_added_member_is_named(exported: Any, tmp_path: Path) -> None:
    _, archive, _, keys = exported
    plain = tmp_path / "a.tar"
    repack_plain(archive, plain)
    extra = tmp_path / "logs" / "planted.jsonl"
    extra.parent.mkdir()
    extra.write_text('{"msg": "never happened"}\n')
    run("tar", "--append", "-f", str(plain), "-C", str(tmp_path), "logs/planted.jsonl")
    run("gzip", "-n", "-f", str(plain))
    shutil.move(tmp_path / "a.tar.gz", archive)
    report = verify_export(archive, keys)
    assert set(findings(report)) == {("extra_member", "logs/planted.jsonl"), ("archive_mismatch", None)}


def test_an_altered_manifest_signature_is_named(exported: Any) -> None:
    _, archive, manifest, keys = exported
    document = json.loads(manifest.read_text())
    signature = document["signature_details"]["signature"]
    document["signature_details"]["signature"] = ("1" if signature[0] != "1" else "2") + signature[1:]
    manifest.write_text(json.dumps(document, indent=2))
    assert findings(verify_export(archive, keys)) == [("bad_signature", None)]


def test_a_member_hash_edited_in_the_manifest_is_a_bad_signature(exported: Any) -> None:
    _, archive, manifest, keys = exported
    document = json.loads(manifest.read_text())
    document["members"][0]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(document))
    assert set(findings(verify_export(archive, keys))) == {
        ("bad_signature", None),
        ("altered_member", document["members"][0]["path"]),
    }


def test_an_unknown_key_is_named(exported: Any, make_box: MakeBox) -> None:
    _, archive, _, _ = exported
    other = make_box("other")
    assert findings(verify_export(archive, load_verification_keys(other.settings.key_store))) == [
        ("unknown_key_id", None)
    ]


def test_only_the_public_key_is_needed(exported: Any, tmp_path: Path) -> None:
    box, archive, _, _ = exported
    export_public_keys(box.settings.key_store, tmp_path / "public.json")
    assert verify_export(archive, load_public_keys(tmp_path / "public.json")).ok


def test_missing_manifest_truncated_archive_and_swapped_manifest(exported: Any, tmp_path: Path) -> None:
    box, archive, manifest, keys = exported
    saved = manifest.read_bytes()
    manifest.unlink()
    assert findings(verify_export(archive, keys))[0] == ("manifest_missing", None)
    manifest.write_bytes(saved)

    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    report = verify_export(archive, keys)
    assert ("archive_unreadable", None) in findings(report) and ("archive_mismatch", None) in findings(report)
    archive.write_bytes(data)

    box.append(1)
    second = export_logs(box.settings, clock=clock).report
    assert second.manifest is not None
    report = verify_export(archive, keys, manifest=second.manifest)
    assert ("name_mismatch", None) in findings(report)


def _tar_gz(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def test_unsafe_and_duplicate_members_are_named(exported: Any) -> None:
    _, archive, _, keys = exported

    def regular(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        return info, content

    link = tarfile.TarInfo("logs/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive.write_bytes(
        _tar_gz(
            [
                regular("/etc/evil", b"x"),
                regular("logs/../../x", b"y"),
                (link, None),
                regular("logs/a", b"1"),
                regular("logs/a", b"2"),
            ]
        )
    )
    report = verify_export(archive, keys)
    found = findings(report)
    assert ("unsafe_member", "/etc/evil") in found and ("unsafe_member", "logs/../../x") in found
    assert ("unsafe_member", "logs/link") in found and ("duplicate_member", "logs/a") in found


def test_a_missing_archive_is_a_usage_error(tmp_path: Path, exported: Any) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        verify_export(tmp_path / "nope.tar.gz", exported[3])


def test_giving_the_manifest_instead_of_the_archive_works(exported: Any) -> None:
    _, _, manifest, keys = exported
    report = verify_export(manifest, keys)
    assert report.ok and report.members_checked == report.members_listed > 0


def test_mtime_change_is_an_altered_member(exported: Any, tmp_path: Path) -> None:
    _, archive, _, keys = exported
    target = tmp_path / "x"
    target.mkdir()
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    touched = target / "logs" / "vvctl.jsonl.1"
    os.utime(touched, (1, 1))
    names = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    from vvctl.ops.export.archive import Source, write_archive

    with archive.open("wb") as raw:
        write_archive([Source(n, str(target / n)) for n in names], raw)
    report = verify_export(archive, keys)
    assert ("altered_member", "logs/vvctl.jsonl.1") in findings(report)
    detail = next(f.detail for f in report.findings if f.member == "logs/vvctl.jsonl.1")
    assert detail.startswith("mtime 1 ")


def test_a_manifest_naming_another_box_is_named(exported: Any) -> None:
    box, archive, manifest, keys = exported
    from vvctl.core.keystore import load_keystore
    from vvctl.core.logline import sign_document

    store = load_keystore(box.settings.key_store)
    document = json.loads(manifest.read_text())
    assert document["box"] == store.box
    document["box"] = "b-" + "0" * 16
    del document["signature_details"]
    sign_document(store, document)  # a good signature by this box's key over another box's name
    manifest.write_text(json.dumps(document))
    assert findings(verify_export(archive, keys)) == [("box_mismatch", None)]
