"""Every documented exit code, produced by a real ``vvctl`` process in a situation that calls for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from vvctl.core.errors import ExitCode
from vvctl.core.layout import StorageLayout
from vvctl.core.locks import exclusive_lock

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src" / "vvctl" / "data" / "samples" / "people-walkway.mp4"
DOC = REPO / "docs" / "exit-codes.md"


def vvctl(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "VV_CONFIG": str(tmp / "config.toml"), "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vvctl", *args], capture_output=True, text=True, env=full_env, timeout=180, check=False
    )


def box(tmp: Path) -> Path:
    root = tmp / "root"
    done = vvctl(tmp, "-q", "bootstrap", "--storage-root", str(root))
    assert done.returncode == 0, done.stderr
    return root


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vvctl: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def ok(tmp: Path) -> subprocess.CompletedProcess[str]:
    return vvctl(tmp, "--version")


def findings(tmp: Path) -> subprocess.CompletedProcess[str]:
    root = box(tmp)
    (record,) = (root / "loglines" / "jobs").glob("*.bootstrap.logline.json")
    record.write_bytes(record.read_bytes().replace(b'"status":"ok"', b'"status":"failed"'))
    return vvctl(tmp, "verify-logline", str(root / "loglines"))


def usage(tmp: Path) -> subprocess.CompletedProcess[str]:
    return vvctl(tmp, "bootstrap", "--sha256", "0" * 64)  # --sha256 without --model


def config(tmp: Path) -> subprocess.CompletedProcess[str]:
    (tmp / "config.toml").write_text("sample_interval_seconds = 2\n")
    return vvctl(tmp, "config", "show")


def locked(tmp: Path) -> subprocess.CompletedProcess[str]:
    root = box(tmp)
    with exclusive_lock(StorageLayout(root).lock("orchestrate"), what="vvctl orchestrate"):
        return vvctl(tmp, "orchestrate", "--once")


def integrity(tmp: Path) -> subprocess.CompletedProcess[str]:
    model = tmp / "other.onnx"
    model.write_bytes(SAMPLE.read_bytes()[:4096])
    return vvctl(tmp, "bootstrap", "--storage-root", str(tmp / "root"), "--model", str(model), "--sha256", "a" * 64)


def storage(tmp: Path) -> subprocess.CompletedProcess[str]:
    return vvctl(tmp, "bootstrap", "--storage-root", "/")


def dependency(tmp: Path) -> subprocess.CompletedProcess[str]:
    root = box(tmp)
    (root / "models" / "person-ssdlite-mobilenetv2.onnx").unlink()
    (root / "input" / SAMPLE.name).write_bytes(SAMPLE.read_bytes())
    return vvctl(tmp, "orchestrate", "--once", "--settle", "0")


def input_error(tmp: Path) -> subprocess.CompletedProcess[str]:
    box(tmp)  # an HMAC key store: there is no public key to export
    return vvctl(tmp, "keys", "export-public", "--out", str(tmp / "public.json"))


def critical(tmp: Path) -> subprocess.CompletedProcess[str]:
    root = box(tmp)
    with (tmp / "config.toml").open("a") as config:
        config.write("\nmin_free_space_critical_gb = 1e9\n")  # far more free space than any disk has
    return vvctl(tmp, "monitor", "--once", "--storage-root", str(root), env={"DOCKER_HOST": f"unix://{tmp}/no.sock"})


SCENARIOS: dict[ExitCode, Callable[[Path], subprocess.CompletedProcess[str]]] = {
    ExitCode.OK: ok,
    ExitCode.FINDINGS: findings,
    ExitCode.USAGE: usage,
    ExitCode.CONFIG: config,
    ExitCode.LOCKED: locked,
    ExitCode.INTEGRITY: integrity,
    ExitCode.STORAGE: storage,
    ExitCode.DEPENDENCY: dependency,
    ExitCode.INPUT: input_error,
    ExitCode.CRITICAL: critical,
}


@pytest.mark.parametrize("code", sorted(SCENARIOS), ids=lambda c: c.name)
def test_real_process_exits_with_the_documented_code(code: ExitCode, tmp_path: Path) -> None:
    result = SCENARIOS[code](tmp_path)
    assert result.returncode == code, (result.stdout, result.stderr)
    if code not in (ExitCode.OK, ExitCode.FINDINGS, ExitCode.CRITICAL):
        one_line_error(result)


def test_internal_error_is_70_with_traceback_only_when_verbose(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("vvctl.ops.bootstrap.bootstrap", broken)
    quiet = invoke("bootstrap", "--storage-root", str(tmp_path / "r"))
    assert quiet.exit_code == ExitCode.INTERNAL
    assert (
        quiet.stderr.strip()
        == "vvctl: error: internal error (ZeroDivisionError); run again with --verbose for the traceback"
    )
    loud = invoke("-v", "bootstrap", "--storage-root", str(tmp_path / "r"))
    assert loud.exit_code == ExitCode.INTERNAL and "Traceback" in loud.stderr and "a bug" in loud.stderr
    as_json = invoke("--json", "bootstrap", "--storage-root", str(tmp_path / "r"))
    assert json.loads(as_json.stdout)["error"] == {
        "type": "ZeroDivisionError",
        "exit_code": 70,
        "message": "internal error (ZeroDivisionError); run again with --verbose for the traceback",
    }


def test_interrupt_is_130(invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C anywhere in a command: exit 130. (A real SIGTERM/SIGINT of orchestrate: tests/pipeline.)"""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("vvctl.ops.bootstrap.bootstrap", interrupted)
    result = invoke("bootstrap", "--storage-root", str(tmp_path / "r"))
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.stderr.strip() == "vvctl: error: interrupted"


def test_every_code_is_documented_and_tested() -> None:
    documented = {int(m) for m in re.findall(r"^\| *(\d+) \| `", DOC.read_text(), flags=re.MULTILINE)}
    assert documented == {int(c) for c in ExitCode}
    tested = set(SCENARIOS) | {ExitCode.INTERNAL, ExitCode.INTERRUPTED}
    assert tested == set(ExitCode)
