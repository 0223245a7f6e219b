"""``vvctl cleanup`` against ``find DIR -type f -mtime +N -delete``, and LogLine appends at 100,000 records.

Cleanup row: a generated tree of ``--files`` files (``--dirs-count`` directories, 90% of the files older
than the limit, 10% newer) is copied (``cp -a``, times kept) once per contender, then deleted by:

* ``find DIR -type f -mtime +30 -delete`` (the baseline: what the original cron script amounted to);
* ``vvctl.ops.cleanup.cleanup(settings, dirs=["processed"], days=30)`` in-process: the whole job (lock,
  state store, walk, plan, deletes relative to directory descriptors with an inode check per file, the
  signed LogLine);
* ``vvctl cleanup --dirs processed --days 30 --json`` as a subprocess (interpreter start included).

Each must leave exactly the newer 10%. Goal: cleanup within 1.5x of find.

Append row: median time of ``--appends`` ``LogLineWriter.append`` calls on a log of 10 records and on a log
of ``--records`` records (written directly with the writer's building blocks: canonical form, signature,
chain hash, ``.md`` companion, head row). Goal: the same time (O(1)); the listing the writer no longer
does per append (``scan_log_files``) is timed on the big log for reference.

Usage: ``python benchmarks/cleanup.py [--files 100000] [--records 100000] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vvctl.core.canonical import canonicalize
from vvctl.core.keystore import load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.logline import (
    MD_SUFFIX,
    SUFFIX,
    ZERO_HASH,
    LogLineDraft,
    LogLineWriter,
    chain_hash,
    render_markdown,
    scan_log_files,
    sign_document,
)
from vvctl.core.settings import Settings, load_settings
from vvctl.core.timeutil import rfc3339, utcnow
from vvctl.ops.bootstrap import bootstrap
from vvctl.ops.cleanup import cleanup

DAY = 86_400
LIMIT_DAYS = 30


def make_box(base: Path, name: str) -> tuple[Settings, Path]:
    config = base / f"{name}.toml"
    config.write_text(f'storage_root = "{base / name}"\nsigning_algorithm = "hmac-sha256"\n')
    loaded = load_settings(config, env={})
    bootstrap(loaded)
    return loaded.settings, config


def make_tree(directory: Path, files: int, dirs: int) -> int:
    """``files`` 64-byte files in ``dirs`` directories; 90% older than the limit. Returns how many are old."""
    now = time.time()
    old_time = now - (LIMIT_DAYS + 10) * DAY
    new_time = now - (LIMIT_DAYS - 10) * DAY
    per_dir = files // dirs
    payload = b"v" * 64
    old = 0
    for d in range(dirs):
        sub = directory / f"cam{d:03d}"
        sub.mkdir(parents=True)
        for n in range(per_dir):
            path = sub / f"clip-{n:05d}.mp4"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, payload)
            os.close(fd)
            moment = new_time if n % 10 == 0 else old_time
            old += moment == old_time
            os.utime(path, (moment, moment))
    return old


def count_files(directory: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


def fresh_copy(template: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(["cp", "-a", str(template), str(target)], check=True)
    subprocess.run(["sync"], check=True)


def cpu_seconds() -> float:
    """User + system CPU of this process and its waited-for children: less sensitive than wall time to
    other work on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_cleanup(base: Path, files: int, dirs: int) -> list[tuple[str, float, float, int]]:
    template = base / "template"
    old = make_tree(template, files, dirs)
    settings, config = make_box(base, "box")
    processed = StorageLayout(settings.storage_root).processed
    shutil.rmtree(processed)
    rows = []

    fresh_copy(template, processed)
    started, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run(["find", str(processed), "-type", "f", "-mtime", f"+{LIMIT_DAYS}", "-delete"], check=True)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    rows.append((f"find -type f -mtime +{LIMIT_DAYS} -delete", wall, cpu, count_files(processed)))

    fresh_copy(template, processed)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = cleanup(settings, dirs=["processed"], days=LIMIT_DAYS)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    rows.append(("cleanup() in-process (the whole job)", wall, cpu, count_files(processed)))
    assert result.report.files == old and result.report.failed == 0, result.report.summary

    fresh_copy(template, processed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VV_")}
    argv = [sys.executable, "-m", "vvctl", "--config", str(config), "--json", "cleanup"]
    started, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run([*argv, "--dirs", "processed", "--days", str(LIMIT_DAYS)], check=True, env=env, capture_output=True)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    rows.append(("vvctl cleanup (subprocess)", wall, cpu, count_files(processed)))
    for name, *_, left in rows:
        assert left == files - old, f"{name} left {left} files, expected {files - old}"
    return rows


def build_log(settings: Settings, log: str, records: int) -> None:
    """``records`` valid records of ``log``, written directly (no lock, no fsync: a throwaway log)."""
    store = load_keystore(settings.key_store)
    layout = StorageLayout(settings.storage_root)
    directory = layout.loglines / log
    directory.mkdir(parents=True, exist_ok=True)
    prev, name, when = ZERO_HASH, "", rfc3339(utcnow())
    for seq in range(1, records + 1):
        record = {
            "schema_version": 1,
            "log": log,
            "seq": seq,
            "who": "vvctl cleanup",
            "did": "cleaned up the storage",
            "this": f"deleted {seq} files (1.2 MB) in 4 directories; free space 40.1 GB",
            "when": when,
            "status": "ok",
            "source": {"type": "job", "id": f"cleanup-{seq}"},
            "prev": prev,
        }
        sign_document(store, record)
        data = canonicalize(record)
        name = f"{seq:08d}.cleanup-{seq}{SUFFIX}"
        (directory / name).write_bytes(data)
        prev = chain_hash(data)
        (directory / name.replace(SUFFIX, MD_SUFFIX)).write_text(render_markdown(record, name, prev))
    with sqlite3.connect(layout.state_db) as conn:
        conn.execute("INSERT INTO chain_heads VALUES (?, ?, ?, ?)", (log, records, prev, when))
        conn.execute("INSERT INTO chain_files (log, head_name) VALUES (?, ?)", (log, name))
    conn.close()


def time_appends(settings: Settings, log: str, count: int) -> float:
    writer = LogLineWriter(settings)
    times = []
    for n in range(count):
        draft = LogLineDraft("vvctl bench", "appended", f"record {n}", "ok", {"type": "job", "id": f"b-{n}"})
        started = time.perf_counter()
        writer.append(log, draft, slug=f"bench-{n}")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_append(base: Path, records: int, appends: int) -> list[tuple[str, float]]:
    settings, _ = make_box(base, "logs")
    build_log(settings, "small", 10)
    started = time.perf_counter()
    build_log(settings, "big", records)
    print(f"(generated {records} records in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    small = time_appends(settings, "small", appends)
    big = time_appends(settings, "big", appends)
    directory = StorageLayout(settings.storage_root).loglines / "big"
    started = time.perf_counter()
    scan_log_files(directory)
    listing = time.perf_counter() - started
    return [
        ("append, log of 10 records (median)", small),
        (f"append, log of {records} records (median)", big),
        (f"one listing of the {records}-record log (what each append used to do)", listing),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dirs-count", type=int, default=100)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=None, help="Where to build the trees (default: a temp dir).")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="vv-bench-cleanup-", dir=args.workdir))
    try:
        rows = bench_cleanup(base, args.files, args.dirs_count)
        find_s, find_cpu = rows[0][1], rows[0][2]
        print(f"\ncleanup: {args.files} files in {args.dirs_count} directories, 90% older than {LIMIT_DAYS} days")
        print(f"{'contender':<40} {'wall s':>7} {'vs find':>8} {'CPU s':>7} {'vs find':>8} {'files left':>11}")
        for name, seconds, cpu, left in rows:
            print(
                f"{name:<40} {seconds:>7.2f} {seconds / find_s:>7.2f}x {cpu:>7.2f} {cpu / find_cpu:>7.2f}x {left:>11}"
            )
        print("goal: cleanup() within 1.5x of find")
        appends = bench_append(base, args.records, args.appends)
        small = appends[0][1]
        print(f"\nLogLine append ({args.appends} appends each)")
        print(f"{'case':<72} {'ms':>8} {'vs 10':>7}")
        for name, seconds in appends:
            print(f"{name:<72} {seconds * 1000:>8.2f} {seconds / small:>6.2f}x")
        print("goal: append at 100,000 records the same as at 10 (O(1))")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
