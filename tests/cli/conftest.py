from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vvctl.cli.app import app


class Invoke:
    """Run the real typer app in-process (CliRunner, exceptions not caught)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return self.runner.invoke(app, ["--config", str(self.config), *args], env=env, catch_exceptions=False)

    def json(self, *args: str, expect: int = 0) -> dict[str, Any]:
        result = self("--json", *args)
        assert result.exit_code == expect, result.output
        document: dict[str, Any] = json.loads(result.stdout)
        return document


@pytest.fixture
def invoke(tmp_path: Path) -> Callable[..., Any]:
    return Invoke(tmp_path / "config.toml")
