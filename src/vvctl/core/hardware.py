"""What accelerator hardware this machine has: device nodes (no library loaded), then the NVIDIA driver and libraries.

Used to tell "a GPU was asked for but there is none here" (a CPU-only box running the default provider
list: expected, recorded, not alarming) from "there is a GPU but inference ended on the CPU" (a broken
driver or CUDA install: analysis is far slower than planned, and a person must hear about it).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# NVIDIA desktop/server drivers create /dev/nvidia0..N; Jetson (L4T) boards expose the integrated GPU
# through nvhost/nvgpu nodes instead.
_NVIDIA_NODES = ("nvidia[0-9]*", "nvhost-gpu", "nvhost-ctrl-gpu", "nvgpu/igpu0")


def gpu_devices(dev: Path = Path("/dev")) -> list[str] | None:
    """NVIDIA GPU device nodes present, or None where this cannot be told (not Linux: assume a GPU)."""
    if os.name != "posix" or not dev.is_dir():
        return None
    found: list[str] = []
    for pattern in _NVIDIA_NODES:
        found.extend(sorted(str(p) for p in dev.glob(pattern)))
    return found


def has_gpu() -> bool:
    """True unless this machine certainly has no NVIDIA GPU."""
    devices = gpu_devices()
    return devices is None or bool(devices)


# --- NVIDIA libraries, read through the dynamic loader -------------------------------------------------

_RTLD_LAZY = getattr(os, "RTLD_LAZY", 1)
# CUdevice_attribute values of the CUDA driver API (cuda.h): they have not changed since CUDA 3.
_CU_ATTR_CC_MAJOR = 75
_CU_ATTR_CC_MINOR = 76
# GPUs on which TensorRT reports fast FP16 (platformHasFastFp16): sm 5.3 (Jetson Nano), 6.0 (P100),
# 6.2 (Jetson TX2) and every architecture from Volta (7.0) on. Consumer Pascal (6.1) runs FP16 at a
# fraction of FP32 speed, so FP16 would be slower there.
_FAST_FP16_BEFORE_VOLTA = frozenset({(5, 3), (6, 0), (6, 2)})


@dataclass(frozen=True)
class GpuDevice:
    """One CUDA device as the driver reports it."""

    index: int
    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        """``8.7``-style compute capability, as NVIDIA writes it."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def fast_fp16(compute_capability: tuple[int, int]) -> bool:
    """True when FP16 is a speed-up on a GPU of this compute capability (TensorRT's own rule)."""
    return compute_capability in _FAST_FP16_BEFORE_VOLTA or compute_capability >= (7, 0)


Loader = Callable[[str], Any]


def _load(name: str) -> Any:
    return ctypes.CDLL(name, mode=_RTLD_LAZY)


def load_problem(name: str, loader: Loader = _load) -> str | None:
    """None when the shared library ``name`` loads; else the loader's reason, on one line."""
    try:
        loader(name)
    except OSError as exc:
        return " ".join(str(exc).split()) or f"cannot load {name}"
    return None


def cuda_devices(loader: Loader = _load) -> list[GpuDevice] | str:
    """The CUDA devices the driver (libcuda.so.1) sees, or why none can be listed.

    Only the driver API is used: it ships with the driver, not with the CUDA toolkit, so this works on
    a box whose toolkit libraries are missing and tells the two problems apart.
    """
    try:
        cuda = loader("libcuda.so.1")
    except OSError as exc:
        return f"cannot load libcuda.so.1 (no NVIDIA driver installed): {' '.join(str(exc).split())}"
    status = cuda.cuInit(0)
    if status != 0:
        return f"the NVIDIA driver did not initialise (cuInit error {status}: no GPU, or driver not loaded)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return "the NVIDIA driver cannot count its devices"
    devices: list[GpuDevice] = []
    for index in range(count.value):
        handle = ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        if (
            cuda.cuDeviceGet(ctypes.byref(handle), index) != 0
            or cuda.cuDeviceGetName(name, len(name), handle) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, handle) != 0
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, handle) != 0
        ):
            continue
        devices.append(GpuDevice(index, name.value.decode(errors="replace").strip(), (major.value, minor.value)))
    return devices


def tensorrt_version(
    sonames: Sequence[str] = ("libnvinfer.so.10", "libnvinfer.so.8"), loader: Loader = _load
) -> str | None:
    """The version of the TensorRT library the loader finds (``10.9.0``), or None when none loads."""
    for soname in sonames:
        try:
            library = loader(soname)
        except OSError:
            continue
        try:
            return decode_tensorrt_version(int(library.getInferLibVersion()))
        except AttributeError:  # not TensorRT's library after all
            continue
    return None


def decode_tensorrt_version(value: int) -> str:
    """``getInferLibVersion()`` as text: TensorRT 10 packs major*10000, earlier releases major*1000."""
    if value >= 10000:
        major, rest = divmod(value, 10000)
    else:
        major, rest = divmod(value, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def needed_libraries(path: Path) -> list[str]:
    """The shared libraries an ELF file names as direct dependencies (its DT_NEEDED entries).

    Read from the file, not by loading it, so every missing library can be named, not only the first
    the loader trips over. Returns [] for anything that is not a 64-bit little-endian ELF file.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return []
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    try:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        needed: list[str] = []
        for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
            if kind != _SHT_DYNAMIC or entsize == 0:
                continue
            strtab_offset = sections[link][4]
            for entry in range(offset, offset + size, entsize):
                tag, value = struct.unpack_from("<qQ", data, entry)
                if tag == 0:
                    break
                if tag == _DT_NEEDED:
                    start = strtab_offset + value
                    needed.append(data[start : data.index(b"\0", start)].decode())
        return needed
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        return []


_SHT_DYNAMIC = 6
_DT_NEEDED = 1


__all__ = [
    "GpuDevice",
    "cuda_devices",
    "decode_tensorrt_version",
    "fast_fp16",
    "gpu_devices",
    "has_gpu",
    "load_problem",
    "needed_libraries",
    "tensorrt_version",
]
