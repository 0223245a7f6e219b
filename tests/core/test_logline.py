"""The LogLine writer: signed, chained, durable appends that several processes can make at once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vvctl.core.canonical import canonicalize
from vvctl.core.errors import IntegrityError, UsageError
from vvctl.core.keystore import ensure_keystore, load_keystore
from vvctl.core.logline import ZERO_HASH, LogLineDraft, LogLineWriter, export_checkpoint
from vvctl.core.settings import Settings, load_settings
from vvctl.core.state import connect
from vvctl.core.verify import verify_paths


def draft(number: int) -> LogLineDraft:
    return LogLineDraft("vvctl test", "analysed video", f"video {number}", "ok", {"type": "video", "id": f"v{number}"})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    loaded = load_settings(tmp_path / "config.toml", env={}, flags={"storage_root": str(tmp_path / "storage")})
    ensure_keystore(loaded.settings.key_store, "hmac-sha256")
    return loaded.settings


def keys(settings: Settings):  # type: ignore[no-untyped-def]
    return load_keystore(settings.key_store).verification_keys()


def test_appends_form_a_chain_of_canonical_signed_files(settings: Settings) -> None:
    writer = LogLineWriter(settings)
    written = [writer.append("videos", draft(n), slug=f"Clip {n}.MP4") for n in range(3)]
    assert [w.seq for w in written] == [1, 2, 3]
    assert written[0].path.name == "00000001.clip-0-mp4.logline.json"
    prev = ZERO_HASH
    for item in written:
        data = item.path.read_bytes()
        record = json.loads(data)
        assert data == canonicalize(record)
        assert record["prev"] == prev
        assert item.hash == hashlib.sha256(data).hexdigest()
        prev = item.hash
        md = item.md_path.read_text(encoding="utf-8")
        assert f"LogLine videos #{item.seq}" in md and item.hash in md
    head = writer.head("videos")
    assert head is not None and (head.seq, head.hash) == (3, written[-1].hash)
    assert verify_paths([written[0].path.parent], keys(settings)).ok


def test_invalid_drafts_are_refused(settings: Settings) -> None:
    writer = LogLineWriter(settings)
    with pytest.raises(UsageError, match="status"):
        writer.append("videos", LogLineDraft("w", "d", "t", "great", {"type": "video", "id": "x"}), slug="x")
    with pytest.raises(UsageError, match="log name"):
        writer.append("Videos", draft(1), slug="x")
    assert writer.head("videos") is None


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import vvctl.core.logline as logline
    from vvctl.core.settings import load_settings

    config, root, where = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = load_settings(Path(config), env={}, flags={"storage_root": root}).settings

    def die(*args, **kwargs):
        os._exit(9)  # as SIGKILL would: no cleanup, no finally

    # "after": the JSON file was renamed into place, then the process died before the .md and the head row.
    # "before": the process died before the rename (only the intent was recorded).
    setattr(logline, "atomic_write_text" if where == "after" else "atomic_write_bytes", die)
    draft = logline.LogLineDraft("vvctl test", "appended", "killed writer", "ok", {"type": "job", "id": "k"})
    logline.LogLineWriter(settings).append("videos", draft, slug="killed")
    """
)


def kill_a_writer(settings: Settings, tmp_path: Path, where: str) -> None:
    args = [sys.executable, "-c", KILLED_WRITER, str(tmp_path / "config.toml"), str(settings.storage_root), where]
    assert subprocess.run(args, check=False, timeout=120).returncode == 9


def test_crash_between_rename_and_head_update_is_reconciled(settings: Settings, tmp_path: Path) -> None:
    writer = LogLineWriter(settings)
    first = writer.append("videos", draft(0), slug="a")
    kill_a_writer(settings, tmp_path, "after")
    (orphan,) = first.path.parent.glob("00000002.killed.logline.json")
    assert not orphan.with_name("00000002.killed.logline.md").exists()
    assert writer.head("videos") is not None
    third = writer.append("videos", draft(2), slug="c")
    assert (
        third.seq == 3
        and json.loads(third.path.read_bytes())["prev"] == hashlib.sha256(orphan.read_bytes()).hexdigest()
    )
    assert orphan.with_name("00000002.killed.logline.md").exists()
    assert verify_paths([third.path.parent], keys(settings)).ok


def test_crash_before_the_rename_leaves_nothing_to_repair(settings: Settings, tmp_path: Path) -> None:
    writer = LogLineWriter(settings)
    first = writer.append("videos", draft(0), slug="a")
    kill_a_writer(settings, tmp_path, "before")
    assert not list(first.path.parent.glob("00000002.*"))
    second = writer.append("videos", draft(1), slug="b")
    assert second.seq == 2 and json.loads(second.path.read_bytes())["prev"] == first.hash
    assert verify_paths([second.path.parent], keys(settings)).ok


def test_an_intended_file_that_does_not_follow_the_head_is_refused(settings: Settings, tmp_path: Path) -> None:
    writer = LogLineWriter(settings)
    writer.append("videos", draft(0), slug="a")
    kill_a_writer(settings, tmp_path, "after")
    (orphan,) = (writer.layout.loglines / "videos").glob("00000002.*.json")
    orphan.write_bytes(orphan.read_bytes().replace(b"killed writer", b"planted record"))
    record = json.loads(orphan.read_bytes())
    record["prev"] = "f" * 64
    orphan.write_bytes(canonicalize(record))
    with pytest.raises(IntegrityError, match="does not follow the recorded head"):
        writer.append("videos", draft(2), slug="c")


def test_append_does_not_list_the_log_directory(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import vvctl.core.logline as logline

    writer = LogLineWriter(settings)
    writer.append("videos", draft(0), slug="a")  # the first record of a new log lists the (empty) directory

    def listing(directory: Path) -> dict[int, list[Path]]:
        raise AssertionError(f"listed {directory}")

    monkeypatch.setattr(logline, "scan_log_files", listing)
    monkeypatch.setattr(logline.os, "scandir", listing)
    written = [writer.append("videos", draft(n), slug=f"n{n}") for n in range(1, 4)]
    assert [w.seq for w in written] == [2, 3, 4]
    monkeypatch.undo()
    assert verify_paths([written[0].path.parent], keys(settings)).ok


def test_a_head_row_without_a_file_name_is_found_by_listing_once(settings: Settings) -> None:
    """A state store written before file names were recorded (or a row one behind the files)."""
    writer = LogLineWriter(settings)
    writer.append("videos", draft(0), slug="a")
    second = writer.append("videos", draft(1), slug="b")
    second.md_path.unlink()
    conn = connect(writer.layout.state_db)
    first_hash = hashlib.sha256(next(second.path.parent.glob("00000001.*.json")).read_bytes()).hexdigest()
    conn.execute("UPDATE chain_heads SET seq = 1, hash = ? WHERE log = 'videos'", (first_hash,))
    conn.execute("DELETE FROM chain_files")
    conn.close()
    third = writer.append("videos", draft(2), slug="c")
    assert third.seq == 3 and json.loads(third.path.read_bytes())["prev"] == second.hash
    assert second.md_path.exists()
    conn = connect(writer.layout.state_db)
    assert conn.execute("SELECT head_name FROM chain_files").fetchone()[0] == third.path.name
    conn.close()
    assert verify_paths([third.path.parent], keys(settings)).ok


def test_writer_refuses_a_tampered_or_removed_head(settings: Settings) -> None:
    writer = LogLineWriter(settings)
    writer.append("videos", draft(0), slug="a")
    last = writer.append("videos", draft(1), slug="b")
    original = last.path.read_bytes()
    last.path.write_bytes(original.replace(b"video 1", b"video 7"))
    with pytest.raises(IntegrityError, match="changed after it was written"):
        writer.append("videos", draft(2), slug="c")
    last.path.unlink()
    with pytest.raises(IntegrityError, match="removed"):
        writer.append("videos", draft(2), slug="c")


def test_checkpoint_exports_the_signed_head(settings: Settings, tmp_path: Path) -> None:
    writer = LogLineWriter(settings)
    last = writer.append("jobs", draft(0), slug="a")
    videos = writer.append("videos", draft(1), slug="b")
    # By default every log with LogLines, so a cut-off tail of any of them shows.
    document = export_checkpoint(settings, None, tmp_path / "out" / "cp.json")
    assert document["heads"] == [
        {"log": "jobs", "seq": 1, "hash": last.hash},
        {"log": "videos", "seq": 1, "hash": videos.hash},
    ]
    assert document["box"] == load_keystore(settings.key_store).box
    assert (tmp_path / "out" / "cp.json").read_bytes() == canonicalize(document)
    only = export_checkpoint(settings, ["jobs"], tmp_path / "cp1.json")
    assert only["heads"] == [{"log": "jobs", "seq": 1, "hash": last.hash}]
    with pytest.raises(UsageError, match="no LogLines"):
        export_checkpoint(settings, ["other"], tmp_path / "cp2.json")


APPENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vvctl.core.logline import LogLineDraft, LogLineWriter
    from vvctl.core.settings import load_settings

    config, root, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    loaded = load_settings(Path(config), env={}, flags={"storage_root": root})
    writer = LogLineWriter(loaded.settings)
    for n in range(count):
        source = {"type": "job", "id": f"{worker}-{n}"}
        draft = LogLineDraft("vvctl test", "appended", f"worker {worker} item {n}", "ok", source)
        writer.append("videos", draft, slug=f"w{worker}-{n}")
    """
)


def test_concurrent_processes_leave_one_valid_chain(settings: Settings, tmp_path: Path) -> None:
    workers, each = 4, 25
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                APPENDER,
                str(tmp_path / "config.toml"),
                str(settings.storage_root),
                str(w),
                str(each),
            ]
        )
        for w in range(workers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    directory = settings.storage_root / "loglines" / "videos"
    report = verify_paths([directory], keys(settings))
    assert report.ok, [r for r in report.results if not r.valid]
    assert report.valid == workers * each
    ids = {json.loads(p.read_bytes())["source"]["id"] for p in directory.glob("*.logline.json")}
    assert ids == {f"{w}-{n}" for w in range(workers) for n in range(each)}
    summary = report.logs["videos"]
    head = LogLineWriter(settings).head("videos")
    assert head is not None and (summary.last_seq, summary.head_hash) == (head.seq, head.hash) == (100, head.hash)
