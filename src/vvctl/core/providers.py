"""The options vvctl gives ONNX Runtime's GPU execution providers (TensorRT, CUDA).

Pure functions of the configuration, the GPU and the model's input shapes, so each configuration's
options can be tested without a GPU. :mod:`vvctl.core.detectors` applies them.

Option names and formats are those of onnxruntime-gpu's Python API (values are passed as strings, as
its ``str()`` of a Python value would give: ``True``/``False`` for flags).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from vvctl.core.engine_cache import EngineCache, ShapeProfile
from vvctl.core.hardware import GpuDevice, fast_fp16

TENSORRT: Final = "TensorrtExecutionProvider"
CUDA: Final = "CUDAExecutionProvider"
CPU: Final = "CPUExecutionProvider"
GPU_PROVIDERS: Final = frozenset({TENSORRT, CUDA})
PRECISIONS: Final = ("fp16", "fp32")
MIB: Final = 1024 * 1024

ProviderSpec = str | tuple[str, dict[str, str]]


@dataclass(frozen=True)
class GpuOptions:
    """How the GPU providers are set up (from the ``precision``, ``gpu_*`` and ``engine_cache_*`` settings)."""

    precision: str = "fp16"
    """``fp16`` (the default where the GPU has fast FP16) or ``fp32``; applies to TensorRT."""
    device_id: int = 0
    gpu_mem_limit_mb: int = 0
    """Cap of the CUDA memory arena and of TensorRT's build workspace, in MiB; 0: no cap."""
    engine_cache_dir: Path | None = None
    """Where TensorRT engines are cached; None: no cache (an engine is built in every process)."""
    engine_cache_keep: int = 2
    notify: Callable[[str], None] | None = None
    """Told, before it starts, that a TensorRT engine is about to be built (it can take minutes)."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device_id < 0 or self.gpu_mem_limit_mb < 0 or self.engine_cache_keep < 1:
            raise ValueError("device_id and gpu_mem_limit_mb must not be negative; engine_cache_keep at least 1")


def resolve_precision(requested: str, device: GpuDevice | None) -> tuple[str, str | None]:
    """The precision TensorRT builds with, and why it differs from ``requested`` (None when it does not).

    FP16 is asked for by default; on a GPU without fast FP16 it would be slower than FP32, so FP32 is used.
    """
    if requested == "fp16" and device is not None and not fast_fp16(device.compute_capability):
        return "fp32", f"{device.name} (compute capability {device.sm}) has no fast FP16; building the engine in fp32"
    return requested, None


def _flag(value: bool) -> str:
    return "True" if value else "False"


def tensorrt_options(
    gpu: GpuOptions, *, precision: str, profile: ShapeProfile | None, cache: EngineCache | None
) -> dict[str, str]:
    """TensorRT provider options: device, precision, engine and timing caches, shapes, workspace cap."""
    options = {"device_id": str(gpu.device_id), "trt_fp16_enable": _flag(precision == "fp16")}
    if cache is not None:
        options |= {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache.engine_dir),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(cache.timing_dir),
        }
    if profile is not None:
        options |= {f"trt_profile_{which}_shapes": profile.option(which) for which in ("min", "opt", "max")}
    if gpu.gpu_mem_limit_mb:
        options["trt_max_workspace_size"] = str(gpu.gpu_mem_limit_mb * MIB)
    return options


def cuda_options(gpu: GpuOptions) -> dict[str, str]:
    """CUDA provider options: device, and a capped arena that grows only by what is asked for.

    The default arena doubles when it grows (kNextPowerOfTwo), so one large request can reserve twice
    what it needs; on a Jetson the GPU shares memory with the rest of the box.
    """
    options = {"device_id": str(gpu.device_id), "arena_extend_strategy": "kSameAsRequested"}
    if gpu.gpu_mem_limit_mb:
        options["gpu_mem_limit"] = str(gpu.gpu_mem_limit_mb * MIB)
    return options


def session_providers(
    names: Sequence[str], *, tensorrt: dict[str, str] | None, cuda: dict[str, str]
) -> list[ProviderSpec]:
    """The ``providers`` argument of ``InferenceSession``: each GPU provider with its options."""
    specs: list[ProviderSpec] = []
    for name in names:
        if name == TENSORRT and tensorrt is not None:
            specs.append((name, dict(tensorrt)))
        elif name == CUDA:
            specs.append((name, dict(cuda)))
        else:
            specs.append(name)
    return specs


def preload_pip_nvidia_libraries() -> list[str]:
    """Load CUDA, cuDNN and TensorRT libraries installed as pip packages, so the providers find them.

    ``pip install 'onnxruntime-gpu[cuda,cudnn]'`` and ``tensorrt-cu13-libs`` put the libraries in
    site-packages, where the dynamic loader does not look. ONNX Runtime's ``preload_dlls`` handles CUDA
    and cuDNN (it prints to stdout, which is kept out of vvctl's output); TensorRT's are loaded here.
    Returns the TensorRT libraries loaded. Does nothing when no such package is installed.
    """
    site = Path(sysconfig.get_paths()["purelib"])
    if (site / "nvidia").is_dir():
        import onnxruntime as ort

        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                preload()
    loaded: list[str] = []
    for library in sorted((site / "tensorrt_libs").glob("libnv*.so*")):
        with contextlib.suppress(OSError):
            ctypes.CDLL(str(library), mode=getattr(os, "RTLD_GLOBAL", 0))
            loaded.append(library.name)
    return loaded


__all__ = [
    "CPU",
    "CUDA",
    "GPU_PROVIDERS",
    "PRECISIONS",
    "TENSORRT",
    "GpuOptions",
    "ProviderSpec",
    "cuda_options",
    "preload_pip_nvidia_libraries",
    "resolve_precision",
    "session_providers",
    "tensorrt_options",
]
