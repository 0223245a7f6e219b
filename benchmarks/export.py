"""``vvctl export-logs`` against ``tar -czf`` of the same files at the same gzip level, in the same run.

Builds a storage root with ``--mb`` MiB of JSON-lines logs (an active file plus rotated ones, lines like
the ones vvctl writes) and ``--loglines`` signed LogLines, then times, interleaved, ``--repeat`` times:

* (a) ``export_logs(settings, everything=True)``: the whole job (lock, job-run record, selection, the
  streaming tar.gz with every member hashed, the archive hashed, the signed and schema-checked manifest,
  the run's LogLine), gzip level 6;
* (b) ``tar -czf`` of the same ``logs/`` and ``loglines/`` with ``gzip -6`` (GNU gzip's default level,
  so the same as a plain ``tar -czf``): no hashes, no manifest, no signature.

It prints best-of wall seconds, MiB/s of input, archive sizes, the ratio a / b (goal <= 1.15) and the peak
RSS of one ``vvctl export-logs --all`` run as a subprocess (flat: it must not grow with the input).

Usage: ``python benchmarks/export.py [--mb 256] [--loglines 5000] [--repeat 3] [--level 6]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vvctl.core.canonical import canonicalize
from vvctl.core.keystore import load_keystore
from vvctl.core.logline import ZERO_HASH, signed_bytes
from vvctl.core.settings import Settings, load_settings
from vvctl.ops.bootstrap import bootstrap
from vvctl.ops.export import export_logs
from vvctl.ops.export.archive import GZIP_LEVEL

MIB = 1 << 20


def write_logs(logs: Path, total_mb: int, *, files: int = 6, seed: int = 7) -> None:
    """JSON lines like vvctl's own: timestamps, levels, job names, run ids, paths, durations."""
    rng = random.Random(seed)
    jobs = ["orchestrate", "monitor", "cleanup", "export-logs", "selftest"]
    messages = ["job started", "job finished", "analysed", "quarantined", "deleted", "container healthy"]
    per_file = total_mb * MIB // files
    names = ["vvctl.jsonl"] + [f"vvctl.jsonl.{n}" for n in range(1, files)]
    second = 1_700_000_000
    for name in names:
        with (logs / name).open("w", encoding="utf-8") as fh:
            written = 0
            lines = []
            while written < per_file:
                second += rng.randint(0, 3)
                entry = {
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{rng.randint(0, 999999):06d}Z",
                    "level": rng.choice(["info", "info", "info", "warning", "debug"]),
                    "logger": "vvctl.jobs",
                    "msg": rng.choice(messages),
                    "pid": rng.randint(1000, 60000),
                    "job": rng.choice(jobs),
                    "run_id": rng.randint(1, 100000),
                    "path": f"/srv/vv/input/cam{rng.randint(1, 12)}/clip-{rng.randint(0, 999999):06d}.mp4",
                    "duration_s": round(rng.uniform(0.01, 90.0), 3),
                    "sha256": hashlib.sha256(rng.randbytes(8)).hexdigest(),
                }
                line = json.dumps(entry) + "\n"
                lines.append(line)
                written += len(line)
                if len(lines) >= 4096:
                    fh.write("".join(lines))
                    lines.clear()
            fh.write("".join(lines))


def write_loglines(directory: Path, key_store: Path, count: int) -> None:
    signer = load_keystore(key_store).signer()
    directory.mkdir(parents=True, exist_ok=True)
    prev = ZERO_HASH
    for seq in range(1, count + 1):
        record = {
            "schema_version": 1,
            "log": "videos",
            "seq": seq,
            "who": "vvctl orchestrate",
            "did": "analysed video",
            "this": f"cam{seq % 7}/clip-{seq:06d}.mp4: 3 persons seen between 00:00:04 and 00:01:12",
            "when": f"2026-11-25T{seq // 3600 % 24:02d}:{seq // 60 % 60:02d}:{seq % 60:02d}.123456Z",
            "status": "ok",
            "source": {"type": "video", "id": hashlib.sha256(str(seq).encode()).hexdigest()},
            "prev": prev,
        }
        record["signature_details"] = {
            "algorithm": signer.algorithm.value,
            "key_id": signer.key_id,
            "signature": signer.sign(signed_bytes(record)),
        }
        data = canonicalize(record)
        (directory / f"{seq:08d}.clip-{seq:06d}.logline.json").write_bytes(data)
        prev = hashlib.sha256(data).hexdigest()


def setup(base: Path, mb: int, loglines: int) -> tuple[Settings, Path]:
    config = base / "config.toml"
    root = base / "root"
    config.write_text(f'storage_root = "{root}"\n')
    loaded = load_settings(config, env={})
    bootstrap(loaded)
    write_logs(root / "logs", mb)
    write_loglines(root / "loglines" / "videos", loaded.settings.key_store, loglines)
    return loaded.settings, config


def run_export(settings: Settings) -> tuple[float, int]:
    exports = settings.storage_root / "exports"
    shutil.rmtree(exports, ignore_errors=True)
    started = time.perf_counter()
    result = export_logs(settings, everything=True, keep_days=None)
    elapsed = time.perf_counter() - started
    assert result.report.archive is not None
    return elapsed, result.report.archive_bytes


def run_tar(root: Path, out: Path, level: int) -> tuple[float, int]:
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(
        ["tar", f"--use-compress-program=gzip -{level}", "-cf", str(out), "-C", str(root), "logs", "loglines"],
        check=True,
    )
    elapsed = time.perf_counter() - started
    return elapsed, out.stat().st_size


def peak_rss_of_cli(config: Path) -> float:
    """Peak RSS (MiB) of one ``vvctl export-logs --all`` run in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    vvctl = Path(sys.executable).with_name("vvctl")
    subprocess.run(
        [str(vvctl), "--config", str(config), "--quiet", "export-logs", "--all"],
        check=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="MiB of JSON-lines logs (default 256)")
    parser.add_argument("--loglines", type=int, default=5000, help="signed LogLines (default 5000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    level = GZIP_LEVEL
    with tempfile.TemporaryDirectory(prefix="vv-export-bench-") as tmp:
        base = Path(tmp)
        settings, config = setup(base, args.mb, args.loglines)
        root = settings.storage_root
        size_in = sum(p.stat().st_size for d in ("logs", "loglines") for p in (root / d).rglob("*") if p.is_file())
        export_runs: list[float] = []
        tar_runs: list[float] = []
        sizes: dict[str, int] = {}
        for _ in range(args.repeat):
            seconds, sizes["export"] = run_export(settings)
            export_runs.append(seconds)
            seconds, sizes["tar"] = run_tar(root, base / "baseline.tar.gz", level)
            tar_runs.append(seconds)
        shutil.rmtree(root / "exports", ignore_errors=True)
        rss = peak_rss_of_cli(config)
    best_export, best_tar = min(export_runs), min(tar_runs)
    ratio = best_export / best_tar
    result = {
        "input_mib": round(size_in / MIB, 1),
        "files": args.loglines + 6,
        "gzip_level": level,
        "export_s": export_runs,
        "tar_s": tar_runs,
        "archive_bytes": sizes,
        "ratio": round(ratio, 3),
        "peak_rss_mib": round(rss, 1),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    mib = size_in / MIB
    files = f"{args.loglines + 6} files (6 log files, {args.loglines} LogLines)"
    print(f"input: {mib:.1f} MiB in {files}; gzip level {level}")
    print(f"{'':34} {'best s':>7} {'MiB/s':>7} {'archive MiB':>12}  all runs (s)")
    print("-" * 86)
    for label, runs, key in (
        ("(a) vvctl export-logs --all", export_runs, "export"),
        (f"(b) tar -czf (gzip -{level})", tar_runs, "tar"),
    ):
        best = min(runs)
        print(
            f"{label:34} {best:7.2f} {mib / best:7.1f} {sizes[key] / MIB:12.2f}  " + " ".join(f"{r:.2f}" for r in runs)
        )
    print()
    print(f"a / b  {ratio:.3f}   (goal <= 1.15: export, manifest and signature included)")
    print(f"peak RSS of 'vvctl export-logs --all' as a subprocess: {rss:.1f} MiB for {mib:.1f} MiB of input")
    return 0


if __name__ == "__main__":
    sys.exit(main())
