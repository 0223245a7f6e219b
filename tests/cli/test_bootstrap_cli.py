from __future__ import annotations

import hashlib
import os
import stat
import tomllib
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from tests.conftest import YoloFactory
from vvctl.core.layout import DIRECTORIES
from vvctl.core.settings import load_settings

DEFAULT_SHA = "2d6c317190960c2ab14fed0ad9790cd1da9888efd8335d5c8e5185cf1a54f779"


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Bytes and mtime of every file, except bootstrap's own log and audit records."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("logs", "loglines") or path.suffix in (".sqlite3-wal", ".sqlite3-shm", ".lock"):
            continue
        if rel.parts[0] == "state" and path.name.startswith("vvctl.sqlite3"):
            continue
        if rel == Path("state"):
            continue  # the state store and the audit locks live here: its own mtime moves with them
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(rel)] = (path.stat().st_mtime_ns, path.stat().st_size, digest)
        else:
            out[str(rel)] = (path.stat().st_mtime_ns, 0, "dir")
    return out


def test_bootstrap_creates_everything_then_changes_nothing(invoke: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "T"
    first = invoke.json("bootstrap", "--storage-root", str(root))
    assert first["changed"] is True
    assert {d for d in DIRECTORIES} == {p.name for p in root.iterdir() if p.is_dir()}
    key_store = root / "state" / "keystore.json"
    assert stat.S_IMODE(key_store.stat().st_mode) == 0o600
    model = root / "models" / "person-ssdlite-mobilenetv2.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == DEFAULT_SHA
    assert (root / "fallback" / "people-walkway.mp4").is_file()
    config = tomllib.loads(invoke.config.read_text())
    assert config == {"storage_root": str(root)}  # everything else is commented out at its default
    assert invoke.config.read_text().count("\n# ") > 20
    outcomes = {item["kind"]: item["outcome"] for item in first["items"] if item["kind"] != "directory"}
    assert outcomes == {"config": "created", "key_store": "created", "model": "created", "fallback": "created"}

    before = snapshot(root)
    config_before = invoke.config.stat().st_mtime_ns
    second = invoke.json("bootstrap")  # storage root now comes from the written config
    assert second["changed"] is False
    assert {item["outcome"] for item in second["items"]} == {"present"}
    assert snapshot(root) == before
    assert invoke.config.stat().st_mtime_ns == config_before
    assert (root / "logs" / "vvctl.jsonl").is_file()
    jobs = sorted((root / "loglines" / "jobs").glob("*.logline.json"))
    # The new key's "created" event comes first, then one record per bootstrap run.
    names = ["00000001.keys-create.logline.json", "00000002.bootstrap.logline.json", "00000003.bootstrap.logline.json"]
    assert [p.name for p in jobs] == names
    assert second["logline"] == str(jobs[2])


def test_human_output_of_a_second_run_says_nothing_changed(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("bootstrap", "--storage-root", str(tmp_path / "T")).exit_code == 0
    result = invoke("bootstrap")
    assert result.exit_code == 0
    assert "nothing changed" in result.stdout


def test_dry_run_changes_nothing(invoke: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "T"
    report = invoke.json("bootstrap", "--storage-root", str(root), "--dry-run")
    assert report["dry_run"] is True
    assert {item["outcome"] for item in report["items"]} == {"would_create"}
    assert not root.exists() and not invoke.config.exists()


def test_model_option_verifies_checksum(invoke: Invoke, tmp_path: Path, tiny_yolo: YoloFactory) -> None:
    root = tmp_path / "T"
    yolo = tiny_yolo()
    bad = invoke("--json", "bootstrap", "--storage-root", str(root), "--model", str(yolo), "--sha256", "0" * 64)
    assert bad.exit_code == 5
    assert "expected 000000000000" in bad.stderr
    assert not root.exists() and not invoke.config.exists()  # refused before anything was written

    sha = hashlib.sha256(yolo.read_bytes()).hexdigest()
    good = invoke.json("bootstrap", "--storage-root", str(root), "--model", str(yolo), "--sha256", sha.upper())
    assert (root / "models" / yolo.name).stat().st_size == yolo.stat().st_size
    (model,) = [i for i in good["items"] if i["kind"] == "model"]
    assert model["outcome"] == "created"


def test_model_that_is_not_an_onnx_detector_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "T"
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"this is a text file, not a network\n" * 100)
    sha = hashlib.sha256(fake.read_bytes()).hexdigest()
    result = invoke("bootstrap", "--storage-root", str(root), "--model", str(fake), "--sha256", sha)
    assert result.exit_code == 8
    assert "model.onnx is not a loadable ONNX model" in result.stderr
    assert not root.exists() and not invoke.config.exists()


def test_model_written_into_new_config(invoke: Invoke, tmp_path: Path, tiny_yolo: YoloFactory) -> None:
    yolo = tiny_yolo()
    sha = hashlib.sha256(yolo.read_bytes()).hexdigest()
    invoke.json("bootstrap", "--storage-root", str(tmp_path / "T"), "--model", str(yolo), "--sha256", sha)
    settings = load_settings(invoke.config, env={}).settings
    assert (settings.model, settings.model_sha256) == (yolo.name, sha)
    assert settings.model_path.is_file()


def test_corrupted_model_is_replaced(invoke: Invoke, tmp_path: Path) -> None:
    root = tmp_path / "T"
    invoke.json("bootstrap", "--storage-root", str(root))
    model = root / "models" / "person-ssdlite-mobilenetv2.onnx"
    model.write_bytes(b"garbage")
    report = invoke.json("bootstrap")
    (item,) = [i for i in report["items"] if i["kind"] == "model"]
    assert item["outcome"] == "replaced"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == DEFAULT_SHA


@pytest.mark.parametrize("flags", [["--model", "x.onnx"], ["--sha256", "ab" * 32]])
def test_model_and_sha256_go_together(invoke: Invoke, tmp_path: Path, flags: list[str]) -> None:
    result = invoke("bootstrap", "--storage-root", str(tmp_path / "T"), *flags)
    assert result.exit_code == 2
    assert "go together" in result.stderr


@pytest.mark.parametrize("root", ["/", "/etc", "/usr"])
def test_refuses_system_directories(invoke: Invoke, root: str) -> None:
    result = invoke("bootstrap", "--storage-root", root)
    assert result.exit_code == 6
    assert result.stderr.startswith("vvctl: error: refusing storage root")
    assert "Traceback" not in result.output


def test_refuses_a_root_it_cannot_create(invoke: Invoke, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = invoke("bootstrap", "--storage-root", str(blocker / "T"))
    assert result.exit_code == 6
    assert "is not a directory" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_refuses_a_read_only_root(invoke: Invoke, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    result = invoke("bootstrap", "--storage-root", str(ro / "T"))
    assert result.exit_code == 6
    assert "permission denied" in result.stderr


def test_model_for_an_existing_config_says_the_config_is_unchanged(
    invoke: Invoke, tmp_path: Path, tiny_yolo: YoloFactory
) -> None:
    invoke.json("bootstrap", "--storage-root", str(tmp_path / "T"))
    config_before = invoke.config.read_bytes()
    yolo = tiny_yolo()
    sha = hashlib.sha256(yolo.read_bytes()).hexdigest()
    report = invoke.json("bootstrap", "--model", str(yolo), "--sha256", sha)
    (model,) = [i for i in report["items"] if i["kind"] == "model"]
    assert model["outcome"] == "created"
    assert "the config still uses person-ssdlite-mobilenetv2.onnx" in model["detail"]
    assert invoke.config.read_bytes() == config_before
