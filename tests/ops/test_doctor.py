from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from vvctl.core.errors import ExitCode
from vvctl.core.hardware import GpuDevice
from vvctl.core.settings import Settings, load_settings
from vvctl.ops.doctor import doctor, missing_libraries, probe_model

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
H200 = GpuDevice(0, "NVIDIA H200", (9, 0))


def settings(tmp_path: Path, **values: Any) -> Settings:
    env = {"VV_STORAGE_ROOT": str(tmp_path / "root")}
    env.update({f"VV_{k.upper()}": json.dumps(v) if isinstance(v, list) else str(v) for k, v in values.items()})
    return load_settings(None, env=env).settings


class FakeLibrary:
    @staticmethod
    def getInferLibVersion() -> int:
        return 100900


def refusing(*names: str) -> Any:
    def load(name: str) -> object:
        if Path(name).name in names:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return FakeLibrary()

    return load


def test_probe_model_is_a_real_onnx_model() -> None:
    session = ort.InferenceSession(probe_model(), providers=[CPU])
    (out,) = session.run(None, {"x": np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32)})
    assert out.tolist() == [[0.0, 2.0, 0.0, 4.0]]


@pytest.mark.skipif(TRT not in ort.get_available_providers(), reason="this onnxruntime has no TensorRT provider")
def test_each_missing_library_of_a_provider_is_named() -> None:
    missing = missing_libraries(TRT, lambda name: "missing" if Path(name).name.startswith("libnvinfer") else None)
    assert missing and all(name.startswith("libnvinfer") for name in missing)
    assert missing_libraries(TRT, lambda name: None) == []


@pytest.mark.skipif(TRT not in ort.get_available_providers(), reason="this onnxruntime has no TensorRT provider")
def test_tensorrt_missing_cuda_starting_is_a_fallback_on_a_gpu_box(tmp_path: Path) -> None:
    started: list[str] = []

    def start(name: str, options: dict[str, str]) -> str | None:
        started.append(name)
        return None

    report = doctor(
        settings(tmp_path, gpu_mem_limit_mb=512),
        loader=refusing("libnvinfer.so.10", "libnvinfer.so.8"),
        devices=lambda: [H200],
        start=start,
        gpu_present=True,
    )
    trt, cuda, cpu = report.providers
    assert not trt.starts and trt.missing_libraries == ["libnvinfer.so.10"]
    assert trt.reason is not None and "libnvinfer.so.10" in trt.reason
    assert cuda.starts and cpu.starts and started == [CUDA, CPU]  # TensorRT was never started: libraries missing
    assert report.would_use == CUDA and report.exit_code == ExitCode.FINDINGS
    assert report.gpus == [H200] and report.precision == "fp16" and report.tensorrt is None
    assert report.engine_cache.path == tmp_path / "root" / "state" / "tensorrt" and not report.engine_cache.exists


@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="this onnxruntime has no CUDA provider")
def test_no_driver_is_the_reason_when_the_libraries_load(tmp_path: Path) -> None:
    report = doctor(
        settings(tmp_path, providers=[TRT, CUDA]),
        loader=refusing(),
        devices=lambda: "cannot load libcuda.so.1 (no NVIDIA driver installed)",
        start=lambda name, options: None,
        gpu_present=False,
    )
    assert [c.reason for c in report.providers[:2]] == ["cannot load libcuda.so.1 (no NVIDIA driver installed)"] * 2
    assert report.would_use is None and report.exit_code == ExitCode.DEPENDENCY
    assert report.tensorrt == "10.9.0"


def test_real_installation(tmp_path: Path) -> None:
    report = doctor(settings(tmp_path))
    cpu = report.providers[-1]
    assert cpu.name == CPU and cpu.starts
    for check in report.providers:
        assert check.starts == (check.reason is None), check
    assert report.would_use in report.configured
    if not report.gpus:
        assert report.gpu_problem


def test_cli_json_and_exit_code(tmp_path: Path) -> None:
    env = {"VV_STORAGE_ROOT": str(tmp_path / "root"), "VV_PROVIDERS": "CPUExecutionProvider", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "vvctl", "--config", str(tmp_path / "none.toml"), "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    # --config names a file that does not exist: exit 3 before anything is probed.
    assert result.returncode == ExitCode.CONFIG
    env.pop("PATH")
    result = subprocess.run(
        [sys.executable, "-m", "vvctl", "doctor", "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "doctor" and document["would_use"] == CPU
    assert document["engine_cache"]["path"] == str(tmp_path / "root" / "state" / "tensorrt")
    assert {p["name"] for p in document["providers"]} >= {CPU}
