"""The export-logs job: what it selects, the signed manifest, naming, retention, and a full disk."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import pytest

from tests.ops.export.conftest import Box, clock
from vvctl.core.atomic import TEMP_PREFIX, atomic_open
from vvctl.core.errors import StorageError, UsageError
from vvctl.core.export_manifest import read_manifest, signature_problem
from vvctl.core.jobs import JobOutcome
from vvctl.core.keystore import load_verification_keys
from vvctl.core.state import JobStatus
from vvctl.ops.export import Scope, export_logs, verify_export
from vvctl.ops.export.archive import read_archive

DAY = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def manifest_of(path: Path) -> dict[str, Any]:
    return read_manifest(path)


def members(archive: Path) -> dict[str, str | None]:
    with archive.open("rb") as raw:
        found, _ = read_archive(raw)
        return {m.name: m.sha256 for m in found}


def test_export_writes_an_archive_and_a_signed_manifest_that_verifies(box: Box) -> None:
    written = box.append(3)
    box.write_log("vvctl.jsonl.1", '{"msg": "rotated"}\n')
    result = export_logs(box.settings, clock=clock)
    report = result.report
    assert result.status is JobStatus.OK and report.outcome is JobOutcome.OK
    assert report.archive == box.layout.exports / "vv_logs_20261201.tar.gz"
    assert report.manifest == box.layout.exports / "vv_logs_20261201.manifest.json"
    manifest = manifest_of(report.manifest)
    keys = load_verification_keys(box.settings.key_store)
    assert signature_problem(manifest, keys) is None
    assert manifest["archive"]["sha256"] == hashlib.sha256(report.archive.read_bytes()).hexdigest()
    assert manifest["archive"]["gzip_level"] == 6 and manifest["scope"] == {"mode": "since-last"}
    listed = {m["path"]: m for m in manifest["members"]}
    assert [m["path"] for m in manifest["members"]] == sorted(listed)
    assert {"logs/vvctl.jsonl", "logs/vvctl.jsonl.1"} <= set(listed)
    for record in written:
        member = listed[f"loglines/videos/{record.path.name}"]
        assert member["sha256"] == record.hash and member["size"] == record.path.stat().st_size
        assert member["mtime"] == int(record.path.stat().st_mtime)
        assert f"loglines/videos/{record.md_path.name}" in listed
    assert manifest["chain_heads"]["videos"] == {"seq": 3, "hash": written[-1].hash}
    assert manifest["loglines"]["videos"] == {"count": 3, "first_seq": 1, "last_seq": 3}
    assert members(report.archive) == {path: m["sha256"] for path, m in listed.items()}
    assert verify_export(report.archive, keys).ok
    # The run is recorded like every job: its LogLine names the archive.
    record = json.loads(result.logline.read_bytes()) if result.logline else {}
    assert record["did"] == "exported the logs" and "vv_logs_20261201.tar.gz" in record["this"]


def test_second_export_takes_what_is_new_and_gets_a_suffix(box: Box) -> None:
    box.append(2)
    first = export_logs(box.settings, clock=clock).report
    later = box.append(2)
    second = export_logs(box.settings, clock=clock).report
    assert second.archive is not None and second.archive.name == "vv_logs_20261201-1.tar.gz"
    assert second.manifest is not None and second.manifest.name == "vv_logs_20261201-1.manifest.json"
    assert first.archive is not None and first.archive.exists()
    names = set(members(second.archive))
    videos = {n for n in names if n.startswith("loglines/videos/") and n.endswith(".json")}
    assert videos == {f"loglines/videos/{r.path.name}" for r in later}
    manifest = manifest_of(second.manifest)
    assert manifest["scope"]["mode"] == "since-last" and "since" in manifest["scope"]
    # The first run's own job LogLine was written after the first export: the second one carries it.
    assert any(n.startswith("loglines/jobs/") and "export-logs" in n for n in names)


def test_date_exports_files_last_modified_that_day(box: Box) -> None:
    records = box.append(3)
    old = DAY.timestamp()
    for record in records[:2]:
        os.utime(record.path, (old, old))
    box.write_log("vvctl.jsonl.3", "that day\n", mtime=DAY)
    box.write_log("vvctl.jsonl.4", "the day before\n", mtime=datetime(2026, 11, 19, 23, 59, 59, tzinfo=UTC))
    report = export_logs(box.settings, day=date(2026, 11, 20), clock=clock).report
    assert report.scope is Scope.DATE and report.archive is not None
    assert report.archive.name == "vv_logs_20261120.tar.gz"
    names = set(members(report.archive))
    # A LogLine's .md companion goes with it.
    expected = {f"loglines/videos/{p.name}" for r in records[:2] for p in (r.path, r.md_path)}
    assert names == {"logs/vvctl.jsonl.3", *expected}
    assert report.manifest is not None and manifest_of(report.manifest)["scope"] == {
        "mode": "date",
        "date": "2026-11-20",
    }


def test_a_day_with_nothing_writes_nothing(box: Box) -> None:
    report = export_logs(box.settings, day=date(2020, 1, 1), clock=clock).report
    assert report.archive is None and report.summary == "nothing to export for 2020-01-01"
    assert not any(box.layout.exports.iterdir())


def test_all_exports_everything_again(box: Box) -> None:
    box.append(2)
    export_logs(box.settings, clock=clock)
    report = export_logs(box.settings, everything=True, clock=clock).report
    assert report.archive is not None
    videos = [n for n in members(report.archive) if n.startswith("loglines/videos/") and n.endswith(".json")]
    assert len(videos) == 2


def test_date_and_all_together_is_a_usage_error(box: Box) -> None:
    with pytest.raises(UsageError, match="--date or --all"):
        export_logs(box.settings, day=date(2026, 11, 20), everything=True)


def test_same_files_give_byte_identical_archives(box: Box) -> None:
    records = box.append(4)
    for record in records:
        os.utime(record.path, (DAY.timestamp(), DAY.timestamp()))
        os.utime(record.md_path, (DAY.timestamp(), DAY.timestamp()))
    box.write_log("vvctl.jsonl.2", "rotated that day\n" * 100, mtime=DAY)
    first = export_logs(box.settings, day=DAY.date(), clock=clock).report
    second = export_logs(box.settings, day=DAY.date(), clock=clock).report
    assert first.archive is not None and second.archive is not None and first.archive != second.archive
    assert first.archive.read_bytes() == second.archive.read_bytes()
    assert first.archive_sha256 == second.archive_sha256


def test_symlinks_in_logs_are_skipped_and_named(box: Box, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (box.layout.logs / "link.jsonl").symlink_to(outside)
    (box.layout.logs / "dirlink").symlink_to(tmp_path)
    report = export_logs(box.settings, clock=clock).report
    assert {(s.path, s.why) for s in report.skipped} == {
        ("logs/link.jsonl", "a symbolic link (not followed)"),
        ("logs/dirlink", "a symbolic link (not followed)"),
    }
    assert report.archive is not None
    assert not any("link" in name for name in members(report.archive))


def test_an_untrusted_manifest_is_ignored_with_a_warning(box: Box) -> None:
    box.append(1)
    first = export_logs(box.settings, clock=clock).report
    assert first.manifest is not None
    document = json.loads(first.manifest.read_text())
    document["signature_details"]["signature"] = "0" * len(document["signature_details"]["signature"])
    first.manifest.write_text(json.dumps(document))
    result = export_logs(box.settings, clock=clock)
    assert result.report.outcome is JobOutcome.WARNING and result.exit_code == 1
    assert any("bad_signature" in w for w in result.report.warnings)
    assert result.report.archive is not None
    # Not trusted, so what it lists counts as not exported: the LogLine is exported again.
    assert any(n.startswith("loglines/videos/") for n in members(result.report.archive))


# -- retention -----------------------------------------------------------------------------------------


def fake_export(box: Box, stem: str) -> None:
    box.layout.exports.mkdir(exist_ok=True)
    (box.layout.exports / f"{stem}.tar.gz").write_bytes(b"old")
    (box.layout.exports / f"{stem}.manifest.json").write_text("{}")


def test_retention_removes_old_exports_with_their_manifests(box: Box) -> None:
    fake_export(box, "vv_logs_20260801")  # 122 days before NOW: past the default 90
    fake_export(box, "vv_logs_20261001")  # 61 days
    (box.layout.exports / "notes.txt").write_text("not an export")
    report = export_logs(box.settings, clock=clock).report
    assert report.removed_exports == ("vv_logs_20260801",)
    left = sorted(p.name for p in box.layout.exports.iterdir())
    assert "vv_logs_20260801.tar.gz" not in left and "vv_logs_20260801.manifest.json" not in left
    assert {"vv_logs_20261001.tar.gz", "vv_logs_20261001.manifest.json", "notes.txt"} <= set(left)
    again = export_logs(box.settings, keep_days=30, clock=clock).report
    assert again.removed_exports == ("vv_logs_20261001",)


def test_keep_days_must_be_positive(box: Box) -> None:
    with pytest.raises(UsageError, match="at least 1"):
        export_logs(box.settings, keep_days=0)


def test_retention_keeps_the_export_that_anchors_the_live_chain(box: Box) -> None:
    box.append(5)
    old_day = datetime(2026, 6, 1, tzinfo=UTC)
    old = export_logs(box.settings, clock=lambda: old_day, keep_days=1000).report
    assert old.archive is not None and old.archive.name == "vv_logs_20260601.tar.gz"
    export_logs(box.settings, clock=clock, prune=True, keep_days=1000)
    assert box.loglines()[0].name.startswith("00000005.")
    report = export_logs(box.settings, clock=clock).report
    assert report.kept_exports == ("vv_logs_20260601",) and report.removed_exports == ()
    assert old.archive.exists()


# -- a full disk ---------------------------------------------------------------------------------------


class _FillsUp:
    """A file that takes ``room`` bytes and then fails like a full disk."""

    def __init__(self, raw: IO[bytes], room: int) -> None:
        self.raw = raw
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def full_disk_after(room: int) -> Any:
    @contextlib.contextmanager
    def opener(path: Path) -> Iterator[IO[bytes]]:
        with atomic_open(path) as raw:
            yield _FillsUp(raw, room)  # type: ignore[misc]

    return opener


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.parent.name != "logs" and "state" not in p.parts
    }


def test_disk_full_leaves_no_partial_archive_and_deletes_nothing(box: Box) -> None:
    box.append(4)
    (box.layout.logs / "vvctl.jsonl.1").write_bytes(os.urandom(200_000))
    fake_export(box, "vv_logs_20260101")  # past retention: would be removed by a successful run
    before = snapshot(box.settings.storage_root)
    with pytest.raises(StorageError, match="disk full"):
        export_logs(box.settings, clock=clock, prune=True, opener=full_disk_after(4096))
    after = snapshot(box.settings.storage_root)
    exports = sorted(p.name for p in box.layout.exports.iterdir())
    assert exports == ["vv_logs_20260101.manifest.json", "vv_logs_20260101.tar.gz"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in box.layout.exports.iterdir())
    # Nothing deleted: every LogLine is still there (only the failed run's own record was added).
    assert {k: v for k, v in before.items()} == {k: after[k] for k in before}
    assert len(box.loglines()) == 4


_TMPFS_SCRIPT = r"""
import os, subprocess, sys
exports = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", exports], check=True)
code = subprocess.run(sys.argv[2:]).returncode
print("exports:", sorted(os.listdir(exports)))
sys.exit(code)
"""


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("unshare") is None, reason="needs Linux unshare")
def test_a_real_full_filesystem_gives_exit_6_and_no_partial_archive(box: Box) -> None:
    """exports/ on a 1 MiB tmpfs in a private mount namespace (skipped where that is not allowed)."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no permission for a private mount namespace")
    box.append(3)
    (box.layout.logs / "vvctl.jsonl.1").write_bytes(os.urandom(1_500_000))  # incompressible: cannot fit
    box.layout.exports.mkdir(exist_ok=True)
    before = sorted(p.name for p in box.loglines())
    vvctl = str(Path(sys.executable).with_name("vvctl"))
    command = [vvctl, "--config", str(box.config), "export-logs", "--prune-loglines"]
    result = subprocess.run(
        ["unshare", "-m", sys.executable, "-c", _TMPFS_SCRIPT, str(box.layout.exports), *command],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    if "mount" in result.stderr and "permi" in result.stderr.lower():
        pytest.skip("mounting a tmpfs is not allowed here")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "disk full" in result.stderr
    assert "exports: []" in result.stdout, "no archive, no temp file, no manifest"
    assert sorted(p.name for p in box.loglines()) == before, "no LogLine was removed"
