"""The built wheel carries the schemas, the default model with its license and the sample clip, and an
installed copy finds them at run time (not only the source tree)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("vvctl-*.whl")
    return built


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "vvctl/schemas/config.schema.json",
        "vvctl/data/models/person-ssdlite-mobilenetv2.onnx",
        "vvctl/data/models/LICENSE-person-ssdlite-mobilenetv2.txt",
        "vvctl/data/samples/people-walkway.mp4",
        "vvctl/data/samples/NOTICE-people-walkway.txt",
        "vvctl/py.typed",
    ):
        assert required in names, required
    schemas = {n.split("/")[-1] for n in names if n.startswith("vvctl/schemas/")}
    assert schemas == {p.name for p in (REPO / "schemas").glob("*.json")}


def test_installed_wheel_bootstraps_from_its_own_files(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "VV_CONFIG": str(tmp_path / "config.toml")}
    where = subprocess.run(
        [sys.executable, "-c", "import vvctl.core.schemas as s, vvctl; print(vvctl.__file__); print(s.schemas_dir())"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    module_file, schema_dir = where.stdout.split()
    assert module_file.startswith(str(site)) and schema_dir.startswith(str(site))
    root = tmp_path / "T"
    result = subprocess.run(
        [sys.executable, "-m", "vvctl", "--json", "bootstrap", "--storage-root", str(root)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["changed"] is True
    assert (root / "models" / "person-ssdlite-mobilenetv2.onnx").stat().st_size == 12_301_822
