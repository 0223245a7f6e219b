"""What accelerator hardware this machine has, read from device nodes (no driver library is loaded).

Used to tell "a GPU was asked for but there is none here" (a CPU-only box running the default provider
list: expected, recorded, not alarming) from "there is a GPU but inference ended on the CPU" (a broken
driver or CUDA install: analysis is far slower than planned, and a person must hear about it).
"""

from __future__ import annotations

import os
from pathlib import Path

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


__all__ = ["gpu_devices", "has_gpu"]
