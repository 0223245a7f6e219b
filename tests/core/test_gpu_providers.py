"""The provider options vvctl builds for each configuration, and the engine-cache lifecycle, without a GPU.

The GPU, TensorRT and the TensorRT session are replaced at their seams (the version and device probes,
``InferenceSession``); the model, the shape profile, the cache folders and the options are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import onnxruntime as ort
import pytest

from tests.core.conftest import YOLO_MODEL
from vvctl.core import detectors
from vvctl.core.detectors import TensorrtPlan, load_detector, plan_tensorrt
from vvctl.core.engine_cache import EngineCache
from vvctl.core.hardware import GpuDevice, decode_tensorrt_version, fast_fp16
from vvctl.core.hashing import sha256_file
from vvctl.core.providers import (
    CPU,
    CUDA,
    TENSORRT,
    GpuOptions,
    cuda_options,
    resolve_precision,
    session_providers,
    tensorrt_options,
)

SSD = Path(detectors.__file__).parent.parent / "data" / "models" / "person-ssdlite-mobilenetv2.onnx"
H200 = GpuDevice(0, "NVIDIA H200", (9, 0))
GTX1080 = GpuDevice(0, "NVIDIA GeForce GTX 1080", (6, 1))
NANO = GpuDevice(0, "NVIDIA Tegra X1", (5, 3))


def plan(path: Path, gpu: GpuOptions, *, device: GpuDevice = H200, batch_size: int = 4, **kw: Any) -> TensorrtPlan:
    planned = plan_tensorrt(
        path.read_bytes(),
        path,
        kind="auto",
        batch_size=batch_size,
        gpu=gpu,
        digest=sha256_file(path),
        trt_version=kw.get("trt_version", lambda: "10.9.0"),
        devices=kw.get("devices", lambda: [device]),
    )
    assert isinstance(planned, TensorrtPlan), planned
    return planned


@pytest.mark.parametrize(
    ("device", "requested", "expected"),
    [(H200, "fp16", "fp16"), (NANO, "fp16", "fp16"), (GTX1080, "fp16", "fp32"), (H200, "fp32", "fp32")],
)
def test_fp16_only_where_the_gpu_has_fast_fp16(device: GpuDevice, requested: str, expected: str) -> None:
    precision, note = resolve_precision(requested, device)
    assert precision == expected
    assert (note is not None) == (requested != expected)
    assert fast_fp16((8, 7)) and fast_fp16((6, 2)) and not fast_fp16((6, 1)) and not fast_fp16((5, 2))


def test_tensorrt_version_numbers() -> None:
    assert decode_tensorrt_version(100900) == "10.9.0"
    assert decode_tensorrt_version(8601) == "8.6.1"


def test_ssd_on_tensorrt_with_cache_profile_and_memory_cap(tmp_path: Path) -> None:
    gpu = GpuOptions(precision="fp16", device_id=0, gpu_mem_limit_mb=1024, engine_cache_dir=tmp_path / "trt")
    planned = plan(SSD, gpu)
    cache = planned.cache
    assert cache is not None
    assert cache.engine_dir.parent == tmp_path / "trt"
    # The SSD resizes to 300x300 inside; vvctl feeds it 300x300 already, so only the batch varies: 1 (the
    # last short batch of a video) up to batch_size.
    assert planned.options == {
        "device_id": "0",
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache.engine_dir),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache.timing_dir),
        "trt_profile_min_shapes": "image_tensor:1x300x300x3",
        "trt_profile_opt_shapes": "image_tensor:4x300x300x3",
        "trt_profile_max_shapes": "image_tensor:4x300x300x3",
        "trt_max_workspace_size": str(1024 * 1024 * 1024),
    }
    assert planned.precision == "fp16" and planned.builds


def test_fp32_on_an_old_gpu_without_cache_or_cap(tmp_path: Path) -> None:
    planned = plan(SSD, GpuOptions(precision="fp16", device_id=0), device=GTX1080, batch_size=8)
    assert planned.cache is None
    assert planned.precision == "fp32" and planned.precision_note is not None
    assert "GTX 1080" in planned.precision_note
    assert planned.options == {
        "device_id": "0",
        "trt_fp16_enable": "False",
        "trt_profile_min_shapes": "image_tensor:1x300x300x3",
        "trt_profile_opt_shapes": "image_tensor:8x300x300x3",
        "trt_profile_max_shapes": "image_tensor:8x300x300x3",
    }


def test_static_yolo_input_needs_no_profile(models_dir: Path, tmp_path: Path) -> None:
    # This export has a static [1, 3, 640, 640] input: TensorRT needs no profile, the key still names it.
    planned = plan(models_dir / YOLO_MODEL, GpuOptions(engine_cache_dir=tmp_path), batch_size=2)
    assert planned.profile == "images:1x3x640x640 .. images:1x3x640x640 .. images:1x3x640x640"
    assert not any(name.startswith("trt_profile") for name in planned.options)


def test_cache_key_follows_model_versions_and_precision(tmp_path: Path) -> None:
    def folder(path: Path = SSD, precision: str = "fp16", trt: str = "10.9.0", device: GpuDevice = H200) -> str:
        gpu = GpuOptions(precision=precision, engine_cache_dir=tmp_path / "trt", engine_cache_keep=50)
        cache = plan(path, gpu, device=device, trt_version=lambda: trt).cache
        assert cache is not None
        return cache.engine_dir.name

    other_model = tmp_path / "copy.onnx"
    other_model.write_bytes(SSD.read_bytes() + b"\x32\x01x")  # a doc_string field: another SHA-256
    base = folder()
    assert folder() == base
    changed = [
        folder(path=other_model),
        folder(precision="fp32"),
        folder(trt="10.13.0"),
        folder(device=GpuDevice(0, "Orin", (8, 7))),
    ]
    assert len({base, *changed}) == 5


def test_reasons_when_tensorrt_cannot_be_set_up() -> None:
    def reason(**kw: Any) -> str:
        planned = plan_tensorrt(
            SSD.read_bytes(), SSD, kind="auto", batch_size=4, gpu=GpuOptions(device_id=1), digest="0" * 64, **kw
        )
        assert isinstance(planned, str)
        return planned

    assert "driver" in reason(trt_version=lambda: "10.9.0", devices=lambda: "no NVIDIA driver (test)")
    assert reason(trt_version=lambda: "10.9.0", devices=lambda: [H200]) == (
        "there is no CUDA device 1 (the driver sees 1)"
    )
    # Without TensorRT the reason names what the loader cannot find.
    assert reason(trt_version=lambda: None, devices=lambda: [H200])


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (0, {"device_id": "1", "arena_extend_strategy": "kSameAsRequested"}),
        (
            512,
            {"device_id": "1", "arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(512 * 1024 * 1024)},
        ),
    ],
)
def test_cuda_options(limit: int, expected: dict[str, str]) -> None:
    assert cuda_options(GpuOptions(device_id=1, gpu_mem_limit_mb=limit)) == expected


def test_session_providers_keep_the_order_and_attach_options() -> None:
    trt = tensorrt_options(GpuOptions(), precision="fp32", profile=None, cache=None)
    cuda = cuda_options(GpuOptions())
    assert session_providers([TENSORRT, CUDA, CPU], tensorrt=trt, cuda=cuda) == [(TENSORRT, trt), (CUDA, cuda), CPU]
    assert session_providers([CUDA, CPU], tensorrt=None, cuda=cuda) == [(CUDA, cuda), CPU]


def test_gpu_options_are_validated() -> None:
    with pytest.raises(ValueError, match="precision"):
        GpuOptions(precision="int8")
    with pytest.raises(ValueError, match="engine_cache_keep"):
        GpuOptions(engine_cache_keep=0)


class FakeTensorrtSession:
    """Stands in for a TensorRT session: runs on the CPU, reports TensorRT, and writes an engine file into
    the engine cache the way onnxruntime does when none is there yet."""

    real = ort.InferenceSession
    calls: ClassVar[list[list[Any]]] = []

    def __init__(self, model: bytes, sess_options: Any = None, providers: Any = None, **kw: Any) -> None:
        FakeTensorrtSession.calls.append(list(providers))
        self._session = self.real(model, sess_options=sess_options, providers=[CPU])
        self._providers = [p[0] if isinstance(p, tuple) else p for p in providers]
        first = providers[0]
        if isinstance(first, tuple) and first[0] == TENSORRT and "trt_engine_cache_path" in first[1]:
            engines = Path(first[1]["trt_engine_cache_path"])
            if not list(engines.glob("*.engine")):
                (engines / "TensorrtExecutionProvider_TRTKernel_graph_0_sm90.engine").write_bytes(b"engine")

    def get_providers(self) -> list[str]:
        return self._providers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> type[FakeTensorrtSession]:
    FakeTensorrtSession.calls = []
    monkeypatch.setattr(ort, "InferenceSession", FakeTensorrtSession)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(detectors, "tensorrt_version", lambda: "10.9.0")
    monkeypatch.setattr(detectors, "cuda_devices", lambda: [H200])
    return FakeTensorrtSession


def test_first_load_builds_and_records_later_loads_reuse(fake_gpu: type[FakeTensorrtSession], tmp_path: Path) -> None:
    told: list[str] = []
    gpu = GpuOptions(engine_cache_dir=tmp_path / "trt", gpu_mem_limit_mb=256, notify=told.append)

    def load(options: GpuOptions = gpu) -> Any:
        return load_detector(SSD, sha256=None, providers=[TENSORRT, CUDA, CPU], batch_size=4, gpu=options)

    first = load().info
    assert first.provider == TENSORRT and first.precision == "fp16" and first.fallback_reason is None
    assert first.engine is not None and first.engine.state == "built"
    assert len(told) == 1 and "can take minutes" in told[0]
    engine_dir = first.engine.cache_dir
    assert engine_dir is not None and engine_dir.parent == tmp_path / "trt"
    record = json.loads((engine_dir / "engine.json").read_text())
    assert record["build_s"] == pytest.approx(first.engine.seconds, abs=1e-3)
    assert record["key"]["gpu"] == "NVIDIA H200" and record["key"]["precision"] == "fp16"
    trt, cuda, cpu = fake_gpu.calls[-1]
    assert trt[1]["trt_engine_cache_path"] == str(engine_dir)
    assert trt[1]["trt_profile_max_shapes"] == "image_tensor:4x300x300x3"
    assert cuda == (CUDA, {"device_id": "0", "arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": "268435456"})
    assert cpu == CPU

    second = load().info
    assert second.engine is not None and second.engine.state == "loaded"
    assert second.engine.cache_dir == engine_dir
    assert len(told) == 1  # nothing is built, so nothing announced

    fp32 = load(GpuOptions(precision="fp32", engine_cache_dir=tmp_path / "trt")).info
    assert fp32.precision == "fp32" and fp32.engine is not None and fp32.engine.state == "built"
    assert fp32.engine.cache_dir != engine_dir


def test_cuda_in_use_records_fp32_and_no_engine(fake_gpu: type[FakeTensorrtSession]) -> None:
    info = load_detector(SSD, sha256=None, providers=[CUDA, CPU], gpu=GpuOptions(gpu_mem_limit_mb=64)).info
    assert info.provider == CUDA and info.precision == "fp32" and info.engine is None
    assert fake_gpu.calls[-1][0] == (
        CUDA,
        {"device_id": "0", "arena_extend_strategy": "kSameAsRequested", "gpu_mem_limit": str(64 * 1024 * 1024)},
    )


def test_engine_cache_is_a_cache_type(tmp_path: Path) -> None:
    # plan() hands the detector an EngineCache whose folders exist before the session starts.
    planned = plan(SSD, GpuOptions(engine_cache_dir=tmp_path / "c"))
    assert isinstance(planned.cache, EngineCache)
    assert planned.cache.engine_dir.is_dir() and planned.cache.timing_dir.is_dir()
