"""The streaming tar.gz: plain GNU-readable tar.gz, byte-identical for the same files, hashed in one pass."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vvctl.core.errors import StorageError
from vvctl.ops.export.archive import Source, read_archive, write_archive

TAR = shutil.which("tar")
SHA256SUM = shutil.which("sha256sum")


def tree(base: Path, files: dict[str, bytes], mtime: int = 1_764_000_000) -> list[Source]:
    sources = []
    for name, data in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
        sources.append(Source(name, str(path)))
    return sources


def archive_bytes(sources: list[Source]) -> bytes:
    out = io.BytesIO()
    write_archive(sources, out)
    return out.getvalue()


FILES = {
    "logs/vvctl.jsonl": b'{"msg": "job started"}\n' * 500,
    "logs/vvctl.jsonl.1": b'{"msg": "older"}\n' * 300,
    "loglines/videos/00000001.clip.logline.json": b'{"seq":1}',
    "loglines/videos/00000002.clip.logline.json": b'{"seq":2}',
    "logs/deep/" + "n" * 120 + ".jsonl": b"a long name needs a GNU long-name header\n",
}


def test_same_files_give_byte_identical_archives(tmp_path: Path) -> None:
    first = archive_bytes(tree(tmp_path / "a", FILES))
    # Another directory, another creation order, other owners would not matter either: only names,
    # contents and mtimes go in.
    second = archive_bytes(list(reversed(tree(tmp_path / "b", dict(reversed(FILES.items()))))))
    assert first == second
    header = first[:10]
    assert header[:4] == b"\x1f\x8b\x08\x00", "gzip, deflate, no FNAME flag: no file name in the header"
    assert header[4:8] == b"\x00\x00\x00\x00", "gzip header mtime is zero"


def test_members_are_sorted_relative_and_normalised(tmp_path: Path) -> None:
    data = archive_bytes(tree(tmp_path, FILES))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(FILES)
    for info in infos:
        assert info.isreg() and not info.name.startswith("/") and ".." not in info.name.split("/")
        assert (info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, "", "", 0o644)
        assert info.mtime == 1_764_000_000


def test_each_member_is_hashed_while_written(tmp_path: Path) -> None:
    out = io.BytesIO()
    written = write_archive(tree(tmp_path, FILES), out)
    assert {m.path: m.sha256 for m in written.members} == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert written.sha256 == hashlib.sha256(out.getvalue()).hexdigest() and written.size == len(out.getvalue())
    assert written.bytes_in == sum(len(d) for d in FILES.values())


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the archive")
    sources = tree(tmp_path / "root", {"logs/a.jsonl": b"a\n"})
    link = tmp_path / "root" / "logs" / "b.jsonl"
    link.symlink_to(secret)
    out = io.BytesIO()
    written = write_archive([*sources, Source("logs/b.jsonl", str(link))], out)
    assert [m.path for m in written.members] == ["logs/a.jsonl"]
    assert [(s.path, s.why) for s in written.skipped] == [("logs/b.jsonl", "a symbolic link (not followed)")]
    assert b"not for the archive" not in gzip.decompress(out.getvalue())


def _change_after_fstat(patch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Make ``change`` happen right after the archive writer took a file's size from its descriptor."""
    original = os.fstat
    changed: list[bool] = []

    def fstat(fd: int) -> os.stat_result:
        result = original(fd)
        if not changed:
            changed.append(True)
            change()
        return result

    patch.setattr(os, "fstat", fstat)


def test_a_file_that_shrinks_while_read_stops_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tree(tmp_path, {"logs/a.jsonl": b"x" * 100})
    _change_after_fstat(monkeypatch, lambda: Path(sources[0].path).write_bytes(b"x" * 10))
    with pytest.raises(StorageError, match="became shorter while it was being exported"):
        write_archive(sources, io.BytesIO())


def test_a_growing_file_is_taken_at_its_size_when_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tree(tmp_path, {"logs/a.jsonl": b"line\n" * 10})

    def append() -> None:
        with Path(sources[0].path).open("ab") as fh:
            fh.write(b"appended while exporting\n")

    _change_after_fstat(monkeypatch, append)
    out = io.BytesIO()
    written = write_archive(sources, out)
    assert written.members[0].size == 50
    assert written.members[0].sha256 == hashlib.sha256(b"line\n" * 10).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        member = tar.extractfile("logs/a.jsonl")
        assert member is not None and member.read() == b"line\n" * 10


def test_read_archive_hashes_members_and_the_whole_file(tmp_path: Path) -> None:
    data = archive_bytes(tree(tmp_path, FILES))
    members, counted = read_archive(io.BytesIO(data))
    found = {m.name: m.sha256 for m in members}
    assert found == {n: hashlib.sha256(d).hexdigest() for n, d in FILES.items()}
    assert counted.digest.hexdigest() == hashlib.sha256(data).hexdigest() and counted.size == len(data)


@pytest.mark.skipif(TAR is None or SHA256SUM is None, reason="GNU tar and sha256sum are needed")
def test_gnu_tar_extracts_it_and_sha256sum_agrees(tmp_path: Path) -> None:
    out = io.BytesIO()
    written = write_archive(tree(tmp_path / "src", FILES), out)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(out.getvalue())
    target = tmp_path / "x"
    target.mkdir()
    subprocess.run([str(TAR), "-xzf", str(archive), "-C", str(target)], check=True)
    sums = "".join(f"{m.sha256}  {m.path}\n" for m in written.members)
    check = subprocess.run([str(SHA256SUM), "-c", "-"], input=sums, cwd=target, text=True, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(FILES)
    assert os.stat(target / "logs" / "vvctl.jsonl").st_mtime == 1_764_000_000


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(
        st.from_regex(r"logs/[a-z]{1,8}(/[a-z0-9._-]{1,12}){0,2}", fullmatch=True).filter(lambda n: ".." not in n),
        st.binary(max_size=3000),
        min_size=1,
        max_size=6,
    )
)
def test_round_trip_any_files(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]) -> None:
    names = sorted(files)
    if any(other.startswith(name + "/") for name in names for other in names):
        return  # a file and a directory of the same name cannot both exist
    base = tmp_path_factory.mktemp("rt")
    first = archive_bytes(tree(base / "a", files))
    assert first == archive_bytes(tree(base / "b", files))
    members, _ = read_archive(io.BytesIO(first))
    assert {m.name: m.sha256 for m in members} == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}


@pytest.mark.slow
def test_memory_stays_flat_for_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "logs" / "big.jsonl"
    big.parent.mkdir()
    block = os.urandom(1 << 20)
    with big.open("wb") as fh:
        for _ in range(256):
            fh.write(block)
    sink = tmp_path / "out.tar.gz"
    tracemalloc.start()
    try:
        with sink.open("wb") as raw:
            written = write_archive([Source("logs/big.jsonl", str(big))], raw, level=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written.bytes_in == 256 << 20
    assert peak < 16 << 20, f"peak Python allocations {peak} bytes for a 256 MiB file"
