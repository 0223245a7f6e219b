"""``vvctl doctor``: which execution providers this installation can really start, and why not the others.

Each provider is checked the way inference would use it: is it in this onnxruntime build; do the shared
libraries its provider library needs load (each missing one is named, read from the library's ELF
dependencies rather than from the loader's first complaint); does the NVIDIA driver see a GPU; and does
a session on a one-node model actually start on it. Also shows the TensorRT version, the GPUs, the
precision TensorRT would build in, and where the engine cache is.

Read-only apart from what starting a provider does; needs no storage root.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from vvctl.core.engine_cache import ENGINE_PREFIX, describe_dir_mode, last_used
from vvctl.core.errors import ExitCode
from vvctl.core.hardware import (
    GpuDevice,
    Loader,
    cuda_devices,
    has_gpu,
    load_problem,
    needed_libraries,
    tensorrt_version,
)
from vvctl.core.providers import (
    CPU,
    CUDA,
    GPU_PROVIDERS,
    TENSORRT,
    GpuOptions,
    cuda_options,
    preload_pip_nvidia_libraries,
    resolve_precision,
    tensorrt_options,
)
from vvctl.core.settings import Settings

KNOWN_PROVIDERS: Final = (TENSORRT, CUDA, CPU)
_PROVIDER_STEMS: Final = {CUDA: "cuda", TENSORRT: "tensorrt"}


@dataclass(frozen=True)
class ProviderCheck:
    name: str
    configured: bool
    """Listed in the ``providers`` setting."""
    in_build: bool
    """This onnxruntime package contains the provider."""
    starts: bool
    """A session really started on it."""
    reason: str | None
    """Why it cannot start; None when it starts."""
    missing_libraries: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EngineCacheInfo:
    path: Path
    exists: bool
    mode: str | None
    """Permissions of the folder (``0700``), None when it does not exist yet."""
    engines: int
    """Cached engine folders (one per model, GPU, precision and versions)."""
    size_bytes: int


@dataclass(frozen=True)
class DoctorReport:
    onnxruntime: str
    package: str
    cuda_build: str | None
    """The CUDA version this onnxruntime was built against (GPU packages only)."""
    tensorrt: str | None
    gpus: list[GpuDevice]
    gpu_problem: str | None
    """Why no GPU is listed, when none is."""
    providers: list[ProviderCheck]
    configured: list[str]
    would_use: str | None
    """The first configured provider that starts: what orchestrate will run on."""
    precision: str
    """What TensorRT would build in on this GPU (fp16 asked for but not fast here: fp32)."""
    precision_note: str | None
    engine_cache: EngineCacheInfo
    gpu_present: bool
    """This machine has an NVIDIA GPU device node (or it cannot be told)."""

    @property
    def exit_code(self) -> ExitCode:
        """7: no configured provider starts; 1: a GPU is here but inference would fall back from the first
        configured provider; 0 otherwise (on a box without a GPU, the default list ending on CPU is expected,
        as orchestrate sees it)."""
        if self.would_use is None:
            return ExitCode.DEPENDENCY
        if self.would_use != self.configured[0] and self.gpu_present:
            return ExitCode.FINDINGS
        return ExitCode.OK


def doctor(
    settings: Settings,
    *,
    loader: Loader | None = None,
    devices: Callable[[], list[GpuDevice] | str] = cuda_devices,
    start: Callable[[str, dict[str, str]], str | None] | None = None,
    gpu_present: bool | None = None,
) -> DoctorReport:
    """Check every known provider. ``loader``/``devices``/``start``/``gpu_present`` replace the library
    loader, the GPU listing, the session start and the device-node check, for tests; ``start`` returns None
    when the provider started, else why not.
    """
    import onnxruntime as ort

    gpu = GpuOptions(
        precision=settings.precision,
        device_id=settings.gpu_device_id,
        gpu_mem_limit_mb=settings.gpu_mem_limit_mb,
    )
    available = set(ort.get_available_providers())
    if available & GPU_PROVIDERS:
        preload_pip_nvidia_libraries()
    load = (lambda name: load_problem(name)) if loader is None else (lambda name: load_problem(name, loader))
    found = devices()
    gpus, gpu_problem = ([], found) if isinstance(found, str) else (found, None if found else "the driver sees no GPU")
    device = gpus[gpu.device_id] if gpu.device_id < len(gpus) else None
    if gpus and device is None:
        gpu_problem = f"there is no CUDA device {gpu.device_id} (the driver sees {len(gpus)})"
    precision, note = resolve_precision(gpu.precision, device)
    starter = start or _start_session
    checks = []
    for name in KNOWN_PROVIDERS:
        options: dict[str, str] = {}
        if name == TENSORRT:
            options = tensorrt_options(gpu, precision=precision, profile=None, cache=None)
        elif name == CUDA:
            options = cuda_options(gpu)
        checks.append(_check(name, name in settings.providers, name in available, load, gpu_problem, starter, options))
    starting = {c.name for c in checks if c.starts}
    return DoctorReport(
        onnxruntime=ort.__version__,
        package=_package_name(),
        cuda_build=_cuda_build(),
        tensorrt=tensorrt_version() if loader is None else tensorrt_version(loader=loader),
        gpus=gpus,
        gpu_problem=gpu_problem,
        providers=checks,
        configured=list(settings.providers),
        would_use=next((p for p in settings.providers if p in starting), None),
        precision=precision,
        precision_note=note,
        engine_cache=_engine_cache_info(settings.engine_cache_path),
        gpu_present=has_gpu() if gpu_present is None else gpu_present,
    )


def _check(
    name: str,
    configured: bool,
    in_build: bool,
    load: Callable[[str], str | None],
    gpu_problem: str | None,
    start: Callable[[str, dict[str, str]], str | None],
    options: dict[str, str],
) -> ProviderCheck:
    if not in_build:
        hint = " (install onnxruntime-gpu, see docs/gpu.md)" if name in GPU_PROVIDERS else ""
        return ProviderCheck(name, configured, False, False, f"not in this onnxruntime build{hint}")
    if name in GPU_PROVIDERS:
        missing = missing_libraries(name, load)
        if missing:
            listed = ", ".join(missing)
            reason = f"cannot load {listed} (not installed, or not on the library path)"
            return ProviderCheck(name, configured, True, False, reason, missing)
        if gpu_problem is not None:
            return ProviderCheck(name, configured, True, False, gpu_problem)
    problem = start(name, options)
    return ProviderCheck(name, configured, True, problem is None, problem)


def provider_library(name: str) -> Path | None:
    """onnxruntime's shared library for a GPU provider (``libonnxruntime_providers_cuda.so``)."""
    import onnxruntime as ort

    stem = _PROVIDER_STEMS.get(name)
    if stem is None:
        return None
    capi = Path(ort.__file__).parent / "capi"
    return next(iter(sorted(capi.glob(f"*onnxruntime_providers_{stem}.*"))), None)


def missing_libraries(name: str, load: Callable[[str], str | None]) -> list[str]:
    """The direct dependencies of a provider's library that do not load, by name."""
    library = provider_library(name)
    if library is None:
        return []
    missing = []
    for needed in needed_libraries(library):
        # onnxruntime's own helpers sit next to the provider library, where the loader finds them by
        # the provider's RUNPATH, not by name.
        bundled = library.parent / needed
        if load(str(bundled) if bundled.exists() else needed) is not None:
            missing.append(needed)
    return missing


def _start_session(name: str, options: dict[str, str]) -> str | None:
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    providers: list[Any] = [(name, options)] if options else [name]
    try:
        session = ort.InferenceSession(
            probe_model(), sess_options=session_options, providers=providers, enable_fallback=0
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types; any failure is the answer
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return " ".join((lines[-1] if lines else type(exc).__name__).split())[:300]
    if session.get_providers()[0] != name:
        return "onnxruntime could not initialise it (no usable GPU, or driver and CUDA versions do not match)"
    return None


def _package_name() -> str:
    with contextlib.suppress(ImportError):
        from onnxruntime.capi import build_and_package_info

        return str(build_and_package_info.package_name)
    return "onnxruntime"


def _cuda_build() -> str | None:
    with contextlib.suppress(ImportError):
        from onnxruntime.capi import build_and_package_info

        return getattr(build_and_package_info, "cuda_version", None) or None
    return None


def _engine_cache_info(path: Path) -> EngineCacheInfo:
    if not path.is_dir():
        return EngineCacheInfo(path, False, None, 0, 0)
    engines = [d for d in path.iterdir() if d.name.startswith(ENGINE_PREFIX) and last_used(d) is not None]
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return EngineCacheInfo(path, True, describe_dir_mode(path), len(engines), size)


# --- a one-node ONNX model (Relu on a float [1, 4] tensor), encoded by hand -----------------------------
# Starting a session is the only real test of a provider; this model needs no file and builds a TensorRT
# engine in about a second. Field numbers are those of onnx.proto.


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor_value(name: str, dims: Sequence[int]) -> bytes:
    shape = b"".join(_field(1, _field(1, d)) for d in dims)  # TensorShapeProto.dim { dim_value }
    tensor_type = _field(1, 1) + _field(2, shape)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor_type))  # ValueInfoProto { name, type { tensor_type } }


def probe_model() -> bytes:
    node = _field(1, "x") + _field(2, "y") + _field(4, "Relu")
    graph = _field(1, node) + _field(2, "vvctl-probe") + _field(11, _tensor_value("x", (1, 4)))
    graph += _field(12, _tensor_value("y", (1, 4)))
    opset = _field(1, "") + _field(2, 13)
    return _field(1, 8) + _field(2, "vvctl") + _field(7, graph) + _field(8, opset)


__all__ = ["DoctorReport", "EngineCacheInfo", "ProviderCheck", "doctor", "missing_libraries", "probe_model"]
