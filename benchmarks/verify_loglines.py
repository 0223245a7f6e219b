"""Throughput of LogLine verification against the practical limit, measured in the same run.

Builds a directory of N real LogLines (one valid chain, signed with a real key store's active key, naming
its box, in the writer's file format), then times:

* ``verify_paths``: the library verifier (every per-file and chain check);
* ``vvctl verify-logline --json``: the CLI end to end, as a subprocess (interpreter start included);
* the reference loop: open each file, parse its JSON, compute one HMAC-SHA256 over its bytes. Nothing a
  verifier could skip, so it is the ceiling a Python verifier can approach.

Usage: ``python benchmarks/verify_loglines.py [--count 20000] [--repeat 3] [--algorithm hmac-sha256]``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vvctl.core.canonical import canonicalize
from vvctl.core.keystore import ensure_keystore, load_keystore
from vvctl.core.logline import ZERO_HASH, signed_bytes
from vvctl.core.verify import verify_paths


def build(directory: Path, key_store: Path, count: int) -> None:
    """Write ``count`` chained LogLines of log ``videos`` (files written directly: a throwaway directory)."""
    store = load_keystore(key_store)
    signer = store.signer()
    log_dir = directory / "videos"
    log_dir.mkdir(parents=True)
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
            "source": {
                "type": "video",
                "id": hashlib.sha256(str(seq).encode()).hexdigest(),
                "path": f"/srv/vv/processed/cam{seq % 7}/clip-{seq:06d}.mp4",
                "sha256": hashlib.sha256(str(seq).encode()).hexdigest(),
            },
            "confirmed_by": "summary.schema.json",
            "box": store.box,
            "prev": prev,
        }
        record["signature_details"] = {
            "algorithm": signer.algorithm.value,
            "key_id": signer.key_id,
            "signature": signer.sign(signed_bytes(record)),
        }
        data = canonicalize(record)
        (log_dir / f"{seq:08d}.clip-{seq:06d}.logline.json").write_bytes(data)
        prev = hashlib.sha256(data).hexdigest()


def reference(directory: Path, secret: bytes) -> int:
    """Open, parse and HMAC every file: the practical limit."""
    count = 0
    for entry in os.scandir(directory / "videos"):
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            data = os.read(fd, 1 << 20)
        finally:
            os.close(fd)
        json.loads(data)
        hmac.digest(secret, data, hashlib.sha256)
        count += 1
    return count


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: steadier than wall time on a busy machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_of(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, tuple[float, float]]:
    """Best wall and CPU time of each run over ``repeat`` rounds; the runs alternate, so load spikes hit all."""
    best = dict.fromkeys(runs, (float("inf"), float("inf")))
    for _ in range(repeat):
        for name, run in runs.items():
            cpu = cpu_seconds()
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
            cpu = cpu_seconds() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="LogLines to build (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts")
    parser.add_argument("--algorithm", default="hmac-sha256", choices=["hmac-sha256", "ed25519"])
    parser.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI measurement")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vv-bench-"))
    try:
        key_store = work / "keystore.json"
        ensure_keystore(key_store, args.algorithm)
        store = load_keystore(key_store)
        keys = store.verification_keys()
        loglines = work / "loglines"
        started = time.perf_counter()
        build(loglines, key_store, args.count)
        print(f"built {args.count} LogLines in {time.perf_counter() - started:.1f} s under {loglines}")

        report = verify_paths([loglines], keys)
        if not report.ok or report.valid != args.count:
            print(f"benchmark data did not verify: {report.invalid} invalid", file=sys.stderr)
            return 1
        assert reference(loglines, store.active.secret) == args.count

        measurements: dict[str, Callable[[], object]] = {
            "reference: open + json + 1 HMAC": lambda: reference(loglines, store.active.secret),
            "verify_paths (library)": lambda: verify_paths([loglines], keys),
        }
        if not args.no_cli:
            vvctl = [sys.executable, "-m", "vvctl", "--json", "verify-logline", "--key-store", str(key_store)]

            def cli() -> None:
                with open(os.devnull, "wb") as sink:
                    subprocess.run([*vvctl, str(loglines)], stdout=sink, check=True)

            measurements["vvctl verify-logline --json (subprocess)"] = cli
        rows = list(best_of(args.repeat, measurements).items())
        print(f"best of {args.repeat} alternating rounds, {args.count} LogLines, {args.algorithm}")
        ref_wall, ref_cpu = rows[0][1]
        print(f"\n{'measurement':<42} {'wall s':>7} {'LogLines/s':>11} {'ratio':>6} {'CPU s':>7} {'ratio':>6}")
        for name, (wall, cpu) in rows:
            print(
                f"{name:<42} {wall:>7.3f} {args.count / wall:>11,.0f} {ref_wall / wall:>6.2f}"
                f" {cpu:>7.3f} {ref_cpu / cpu:>6.2f}"
            )
        wall_ratio, cpu_ratio = ref_wall / rows[1][1][0], ref_cpu / rows[1][1][1]
        verdict = "met" if wall_ratio >= 0.6 else "NOT met"
        print(
            f"\nlibrary verifier / reference: {wall_ratio:.2f} by wall time ({verdict}; goal >= 0.60), "
            f"{cpu_ratio:.2f} by CPU time"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
