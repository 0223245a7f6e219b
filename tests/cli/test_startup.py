"""`vvctl --help` stays light: no cv2, no onnxruntime, no numpy at start-up."""

from __future__ import annotations

import json
import subprocess
import sys

import vvctl

PROBE = """
import json, sys
from vvctl.cli.app import main
sys.argv = ["vvctl", "--help"]
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("cv2", "onnxruntime", "numpy", "jsonschema", "cryptography") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_help_does_not_import_heavy_modules() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}


def test_python_dash_m_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vvctl", "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == f"vvctl {vvctl.__version__}"
    assert vvctl.__version__ != "0+unknown"
