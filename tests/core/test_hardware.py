from __future__ import annotations

from pathlib import Path

import pytest

from vvctl.core import hardware


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([], []),
        (["null", "tty0", "nvidia-uvm"], []),  # the UVM helper node alone is not a GPU
        (["nvidiactl", "nvidia0", "nvidia1"], ["nvidia0", "nvidia1"]),
        (["nvhost-ctrl-gpu", "nvhost-gpu"], ["nvhost-gpu", "nvhost-ctrl-gpu"]),  # Jetson
        (["nvgpu/igpu0"], ["nvgpu/igpu0"]),
    ],
)
def test_gpu_device_nodes(tmp_path: Path, nodes: list[str], expected: list[str]) -> None:
    for node in nodes:
        (tmp_path / node).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / node).touch()
    assert hardware.gpu_devices(tmp_path) == [str(tmp_path / e) for e in expected]


def test_without_a_dev_directory_a_gpu_is_assumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hardware.gpu_devices(tmp_path / "absent") is None
    monkeypatch.setattr(hardware, "gpu_devices", lambda: None)
    assert hardware.has_gpu() is True
    monkeypatch.setattr(hardware, "gpu_devices", lambda: [])
    assert hardware.has_gpu() is False
