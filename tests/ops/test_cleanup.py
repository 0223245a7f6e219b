"""Cleanup on real files: deleting through directory descriptors, faults, the job record and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vvctl.core.errors import UsageError
from vvctl.core.layout import StorageLayout
from vvctl.core.settings import Settings, load_settings
from vvctl.ops.bootstrap import bootstrap
from vvctl.ops.cleanup import (
    DirPolicy,
    DiskSpace,
    Policy,
    apply,
    cleanup,
    parse_free_space,
    plan,
    preview,
    snapshot,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DAY = 86_400


def age(path: Path, days: float, now: datetime | None = None) -> Path:
    moment = int(((now or datetime.now(UTC)).timestamp() - days * DAY) * 1e9)
    os.utime(path, ns=(moment, moment), follow_symlinks=False)
    return path


def write(path: Path, days: float, size: int = 100, now: datetime | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return age(path, days, now)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "box.toml"
    config.write_text(f'storage_root = "{tmp_path / "root"}"\n')
    loaded = load_settings(config, env={})
    bootstrap(loaded)
    return loaded.settings


def outside_tree(tmp_path: Path) -> dict[Path, bytes]:
    """Old files outside the storage root that a redirected delete would hit."""
    made = {}
    for rel in ("victim/a.bin", "victim/b.bin", "victim/sub/c.bin"):
        path = write(tmp_path / "outside" / rel, 400, now=NOW)
        made[path] = path.read_bytes()
    return made


def untouched(files: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == data for p, data in files.items())


# -- deleting relative to directory descriptors -----------------------------------------------------------


def simple_plan(root: Path, days: float = 30.0):  # type: ignore[no-untyped-def]
    policy = Policy(dirs=(DirPolicy("processed", root / "processed", days),))
    roots = snapshot(policy.dirs, storage_root=root)
    return plan(roots, policy, now=NOW, space=DiskSpace(10**12, 10**13))


def test_a_directory_swapped_for_a_symlink_after_planning_redirects_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("victim/a.bin", "victim/b.bin", "victim/sub/c.bin", "keep/d.bin"):
        write(root / "processed" / rel, 400, now=NOW)
    outside = outside_tree(tmp_path)
    the_plan = simple_plan(root)
    assert len(the_plan.deletions) == 4
    # Between the plan and the deletes: processed/victim becomes a symlink to the same names outside.
    (root / "processed" / "victim").rename(root / "processed" / "moved")
    (root / "processed" / "victim").symlink_to(tmp_path / "outside" / "victim")

    done = apply(the_plan, storage_root=root)

    assert untouched(outside)
    assert done.files == [1] and not (root / "processed" / "keep" / "d.bin").exists()
    assert done.failed == [3] and all("symlink" in f.reason for f in done.failures), done.failures
    assert sorted(p.name for p in (root / "processed" / "moved").rglob("*.bin")) == ["a.bin", "b.bin", "c.bin"]


def test_the_directory_itself_swapped_for_a_symlink_redirects_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("victim/a.bin", "victim/b.bin", "victim/sub/c.bin"):
        write(root / "processed" / rel, 400, now=NOW)
    outside = outside_tree(tmp_path)
    the_plan = simple_plan(root)
    (root / "processed").rename(root / "moved")
    (root / "processed").symlink_to(tmp_path / "outside")

    done = apply(the_plan, storage_root=root)

    assert untouched(outside) and done.files == [0] and done.failed == [3]
    assert all("symlink" in f.reason for f in done.failures)


def test_a_directory_replaced_by_another_real_one_is_not_entered(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "processed" / "sub" / "a.bin", 400, now=NOW)
    the_plan = simple_plan(root)
    (root / "processed" / "sub").rename(root / "processed" / "old")
    fresh = write(root / "processed" / "sub" / "a.bin", 400, now=NOW)  # same name, another directory

    done = apply(the_plan, storage_root=root)

    assert fresh.exists() and (root / "processed" / "old" / "a.bin").exists()
    assert done.failed == [1] and "replaced since the plan" in done.failures[0].reason


def test_a_file_replaced_since_the_plan_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    target = write(root / "processed" / "a.bin", 400, now=NOW)
    the_plan = simple_plan(root)
    target.unlink()
    write(target, 1, now=NOW)  # a new file under the same name

    done = apply(the_plan, storage_root=root)

    assert target.exists() and done.files == [0] and done.changed == [1] and done.failed == [0]


def test_symlinks_are_neither_followed_nor_deleted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = outside_tree(tmp_path)
    write(root / "processed" / "old.bin", 400, now=NOW)
    (root / "processed" / "to-dir").symlink_to(tmp_path / "outside" / "victim")
    (root / "processed" / "to-file").symlink_to(tmp_path / "outside" / "victim" / "a.bin")
    the_plan = simple_plan(root)
    assert [d.entry.rel for d in the_plan.deletions] == ["old.bin"]
    apply(the_plan, storage_root=root)
    assert untouched(outside) and (root / "processed" / "to-dir").is_symlink()
    assert (root / "processed" / "to-file").is_symlink()


def test_emptied_directories_go_but_never_the_given_one(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "processed" / "a" / "b" / "old.bin", 400, now=NOW)
    write(root / "processed" / "c" / "new.bin", 1, now=NOW)
    (root / "processed" / "empty-new").mkdir()
    age(root / "processed" / "empty-new", 1, now=NOW)
    done = apply(simple_plan(root), storage_root=root)
    assert done.dirs_removed == [2]
    assert sorted(p.name for p in (root / "processed").iterdir()) == ["c", "empty-new"]


# -- faults -----------------------------------------------------------------------------------------------


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Files made immutable (``chattr +i``): even root cannot delete them. Skips where that is impossible."""
    made: list[Path] = []
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: no honest way to make a file root cannot delete")
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def make_immutable(made: list[Path], path: Path) -> None:
    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"this file system does not support the immutable attribute: {result.stderr.strip()}")
    made.append(path)


def test_a_file_that_cannot_be_deleted_is_reported_and_the_rest_goes_on(
    settings: Settings, immutable: list[Path]
) -> None:
    processed = StorageLayout(settings.storage_root).processed
    files = [write(processed / f"{n}.bin", 40) for n in range(5)]
    make_immutable(immutable, files[2])

    result = cleanup(settings)

    report = result.report
    assert [p.exists() for p in files] == [False, False, True, False, False]
    assert report.failed == 1 and report.failures[0].path == files[2]
    assert report.failures[0].reason == "Operation not permitted"
    assert report.outcome.value == "warning" and int(result.exit_code) == 1
    processed_report = next(d for d in report.directories if d.name == "processed")
    assert (processed_report.files, processed_report.failed) == (4, 1)


def test_a_directory_that_vanishes_during_the_walk_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    for name in ("a", "b", "c"):
        write(root / "processed" / name / "old.bin", 400, now=NOW)
    real_scandir = os.scandir
    seen: list[str] = []

    def scandir(fd):  # type: ignore[no-untyped-def]
        listing = list(real_scandir(fd))
        if not seen:  # the top directory is listed: b/ vanishes before the walk enters it
            seen.append("x")
            shutil.rmtree(root / "processed" / "b")
        return _Listing(listing)

    monkeypatch.setattr(os, "scandir", scandir)
    the_plan = simple_plan(root)
    monkeypatch.undo()
    assert sorted(d.entry.rel for d in the_plan.deletions) == ["a/old.bin", "c/old.bin"]
    assert the_plan.roots[0].skipped == ()
    done = apply(the_plan, storage_root=root)
    assert done.files == [2] and done.failed == [0]


class _Listing(list):  # type: ignore[type-arg]
    def __enter__(self):  # type: ignore[no-untyped-def]
        return iter(self)

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_directory_that_vanishes_between_plan_and_delete_is_no_failure(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("a/old.bin", "b/old.bin", "b/deeper/old.bin"):
        write(root / "processed" / rel, 400, now=NOW)
    the_plan = simple_plan(root)
    shutil.rmtree(root / "processed" / "b")
    done = apply(the_plan, storage_root=root)
    assert done.files == [1] and done.failed == [0] and done.vanished == [2]


# -- policy and the job -----------------------------------------------------------------------------------


def test_the_floor_takes_the_oldest_files_until_met(settings: Settings) -> None:
    layout = StorageLayout(settings.storage_root)
    old = [write(layout.processed / f"{n}.bin", 5 + n, size=4096) for n in range(6)]  # all within 30 days

    def space(path: Path) -> DiskSpace:  # free space grows as files go
        gone = sum(1 for p in old if not p.exists())
        return DiskSpace(free=10_000 + gone * 4096, total=10**6)

    result = cleanup(settings, floor=parse_free_space("22000B"))
    report = result.report
    assert report.floor == 22_000 and report.files == 0  # the real disk is far above 22 kB: nothing needed
    # 10 000 free, 22 000 wanted: three 4 KiB files, the three oldest.
    result = cleanup(settings, floor=parse_free_space("22000B"), space_of=space)
    assert [p.exists() for p in old] == [True, True, True, False, False, False]
    assert result.report.floor_met and result.report.free_after == 10_000 + 3 * 4096
    assert next(d for d in result.report.directories if d.name == "processed").by_floor == 3


def test_an_unreachable_floor_is_exit_1_and_said(settings: Settings) -> None:
    layout = StorageLayout(settings.storage_root)
    write(layout.processed / "a.bin", 5, size=4096)
    result = cleanup(settings, floor=parse_free_space("1GB"), space_of=lambda p: DiskSpace(1000, 10**10))
    assert not result.report.floor_met and result.report.outcome.value == "failed" and int(result.exit_code) == 1
    assert "NOT met" in result.report.summary


def test_protected_files_survive_any_age(settings: Settings) -> None:
    layout = StorageLayout(settings.storage_root)
    video = write(layout.input / "clip.mp4", 400)
    junk = write(layout.input / "notes.txt", 400)
    keystore_age = age(settings.key_store, 400)
    live_log = write(layout.logs / "vvctl.jsonl", 400)
    rotated = write(layout.logs / "vvctl.jsonl.1", 400)
    logline = next((layout.loglines / "jobs").glob("*.logline.json"))
    age(logline, 400)

    cleanup(settings, dirs=["input", "logs"], days=0)

    assert video.exists() and keystore_age.exists() and live_log.exists() and logline.exists()
    assert not junk.exists() and not rotated.exists()


@pytest.mark.parametrize(
    ("dirs", "message"),
    [
        (["state"], "never cleaned"),
        (["loglines"], "audit trail"),
        (["models"], "never cleaned"),
        (["nonsense"], "not a storage directory"),
        (["/"], "outside the storage root"),
        (["snapshots"], "give --days"),
        (["processed", "processed"], "named twice"),
    ],
)
def test_directories_that_may_not_be_cleaned_are_refused(settings: Settings, dirs: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cleanup(settings, dirs=dirs)


def test_outside_paths_need_allow_outside(settings: Settings, tmp_path: Path) -> None:
    elsewhere = write(tmp_path / "elsewhere" / "old.bin", 400).parent
    with pytest.raises(UsageError, match="--allow-outside"):
        cleanup(settings, dirs=[str(elsewhere)], days=1)
    with pytest.raises(UsageError, match="refusing"):
        cleanup(settings, dirs=["/usr"], days=1, allow_outside=True)
    result = cleanup(settings, dirs=[str(elsewhere)], days=1, allow_outside=True)
    assert result.report.files == 1 and not (elsewhere / "old.bin").exists()


def test_a_run_is_a_job_with_a_signed_record_and_a_log_file(settings: Settings, tmp_path: Path) -> None:
    layout = StorageLayout(settings.storage_root)
    write(layout.processed / "a.bin", 400)
    log_file = tmp_path / "deleted.jsonl"
    result = cleanup(settings, log_file=log_file)
    record = json.loads(result.logline.read_bytes()) if result.logline else {}
    assert record["did"] == "cleaned up the storage" and record["this"] == result.report.summary
    with sqlite3.connect(layout.state_db) as conn:
        assert conn.execute("SELECT status FROM job_runs WHERE job = 'cleanup'").fetchall() == [("ok",)]
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert [(x["action"], Path(x["path"]).name, x["why"]) for x in lines] == [("deleted", "a.bin", "age")]


def test_dry_run_deletes_and_records_nothing(settings: Settings) -> None:
    layout = StorageLayout(settings.storage_root)
    target = write(layout.processed / "a.bin", 400)
    report = preview(settings)
    assert report.dry_run and report.files == 1 and target.exists()
    with sqlite3.connect(layout.state_db) as conn:
        assert conn.execute("SELECT count(*) FROM job_runs WHERE job = 'cleanup'").fetchone() == (0,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20GB", (20 * 10**9, None)), ("500MiB", (500 * 2**20, None)), ("10%", (0, 10.0)), ("5", (5 * 10**9, None))],
)
def test_free_space_floors_parse(text: str, expected: tuple[int, float | None]) -> None:
    floor = parse_free_space(text)
    assert (floor.bytes, floor.percent) == expected


@pytest.mark.parametrize("text", ["lots", "-5GB", "120%", "5 parsecs"])
def test_bad_free_space_floors_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_free_space(text)


# -- CLI --------------------------------------------------------------------------------------------------


def cli(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    from vvctl.cli.app import app

    assert settings.config_path is not None
    return CliRunner().invoke(app, ["--config", str(settings.config_path), *args], catch_exceptions=False)


def test_cli_json_report_and_comma_separated_dirs(settings: Settings) -> None:
    layout = StorageLayout(settings.storage_root)
    write(layout.processed / "a.bin", 400, size=1234)
    write(layout.logs / "old.log", 400, size=10)
    result = cli(settings, "--json", "cleanup", "--dirs", "logs,processed", "--days", "10")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "cleanup" and document["schema_version"] == 1
    assert {d["name"]: (d["files"], d["bytes"]) for d in document["directories"]} == {
        "logs": (1, 10),
        "processed": (1, 1234),
    }
    assert document["free_before"] > 0 and document["floor"] == 5 * 10**9 and document["floor_met"] is True


def test_cli_usage_errors_are_exit_2(settings: Settings) -> None:
    result = cli(settings, "cleanup", "--dirs", "state")
    assert result.exit_code == 2 and "never cleaned" in result.stderr
    result = cli(settings, "cleanup", "--min-free-space", "lots")
    assert result.exit_code == 2


def test_cli_exit_1_when_a_file_cannot_be_deleted_in_a_real_process(settings: Settings, immutable: list[Path]) -> None:
    stuck = write(StorageLayout(settings.storage_root).processed / "stuck.bin", 400)
    make_immutable(immutable, stuck)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VV_")}
    done = subprocess.run(
        [sys.executable, "-m", "vvctl", "--config", str(settings.config_path), "cleanup"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"could not delete {stuck}: Operation not permitted" in done.stdout
