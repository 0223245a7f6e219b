from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Invoke


def test_config_show_reports_sources_and_redacts(invoke: Invoke, tmp_path: Path) -> None:
    invoke.config.write_text('alert_urls = ["https://hooks.example.invalid/T/B/SECRETTOKEN"]\nmax_attempts = 5\n')
    result = invoke("--json", "config", "show", env={"VV_SETTLE_S": "2"})
    assert result.exit_code == 0
    assert "SECRETTOKEN" not in result.output
    import json

    report = json.loads(result.stdout)
    entries = {e["key"]: e for e in report["settings"]}
    assert entries["max_attempts"] == {"key": "max_attempts", "value": 5, "source": "file", "secret": False}
    assert entries["settle_s"]["source"] == "env" and entries["settle_s"]["value"] == 2.0
    assert entries["alert_urls"]["value"] == ["***"]
    assert report["schema_version"] == 1 and report["config_path"] == str(invoke.config)
    human = invoke("config", "show")
    assert "SECRETTOKEN" not in human.output and "max_attempts" in human.stdout


def test_config_path_prefers_flag_then_env(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vvctl.cli.app import app

    runner = CliRunner()
    env_cfg = tmp_path / "env.toml"
    result = runner.invoke(app, ["config", "path"], env={"VV_CONFIG": str(env_cfg)}, catch_exceptions=False)
    assert result.stdout.strip() == str(env_cfg)
    result = runner.invoke(
        app, ["--config", str(tmp_path / "flag.toml"), "config", "path"], env={"VV_CONFIG": str(env_cfg)}
    )
    assert result.stdout.strip() == str(tmp_path / "flag.toml")


def test_bad_config_is_one_line_exit_3(invoke: Invoke) -> None:
    invoke.config.write_text("sample_interval = 1\n")
    result = invoke("config", "show")
    assert result.exit_code == 3
    assert result.stderr == f"vvctl: error: config file {invoke.config}: key 'sample_interval': unknown key\n"


def test_json_for_scripts_is_one_compact_line(invoke: Invoke) -> None:
    result = invoke("--json", "config", "path")  # stdout is a pipe here, not a terminal
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1 and '"kind": "config-path"' in result.stdout


def test_a_named_config_file_that_does_not_exist_is_exit_3(invoke: Invoke) -> None:
    assert not invoke.config.exists()
    result = invoke("status")
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        f"vvctl: error: config file {invoke.config} does not exist (run 'vvctl bootstrap' to create it)"
    )
