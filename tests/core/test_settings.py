from __future__ import annotations

from pathlib import Path

import pytest

from vvctl.core.errors import ConfigError
from vvctl.core.schemas import load_schema
from vvctl.core.settings import Settings, Source, describe, load_settings, setting_keys


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_without_a_file(config_file: Path) -> None:
    loaded = load_settings(config_file, env={})
    assert not loaded.config_exists
    assert loaded.settings.sample_interval_s == 1.0
    assert loaded.sources["sample_interval_s"] is Source.DEFAULT
    assert loaded.settings.key_store == loaded.settings.storage_root / "state" / "keystore.json"


def test_precedence_flag_over_env_over_file_over_default(config_file: Path, tmp_path: Path) -> None:
    write(config_file, f'storage_root = "{tmp_path}/root"\nsample_interval_s = 2.0\nbatch_size = 8\nsettle_s = 3\n')
    env = {"VV_SAMPLE_INTERVAL_S": "3.5", "VV_BATCH_SIZE": "16"}
    loaded = load_settings(config_file, env=env, flags={"batch_size": 32})
    s = loaded.settings
    assert (s.settle_s, s.sample_interval_s, s.batch_size, s.max_attempts) == (3.0, 3.5, 32, 3)
    assert loaded.sources["settle_s"] is Source.FILE
    assert loaded.sources["sample_interval_s"] is Source.ENV
    assert loaded.sources["batch_size"] is Source.FLAG
    assert loaded.sources["max_attempts"] is Source.DEFAULT
    assert s.storage_root == tmp_path / "root"


def test_vv_config_env_names_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "elsewhere.toml", "max_attempts = 7\n")
    loaded = load_settings(None, env={"VV_CONFIG": str(cfg)})
    assert loaded.config_path == cfg
    assert loaded.settings.max_attempts == 7


def test_env_lists_accept_json_and_commas(config_file: Path) -> None:
    loaded = load_settings(config_file, env={"VV_VIDEO_EXTENSIONS": ".mp4, .MKV", "VV_CONTAINERS": '["a","b"]'})
    assert loaded.settings.video_extensions == (".mp4", ".mkv")
    assert loaded.settings.containers == ("a", "b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sample_interval = 1\n", "key 'sample_interval': unknown key"),
        ('sample_interval_s = "fast"\n', "key 'sample_interval_s'"),
        ("batch_size = 0\n", "key 'batch_size'"),
        ('providers = ["GPU"]\n', "key 'providers[0]'"),
        ("retention_days = { nowhere = 3 }\n", "key 'retention_days'"),
        ("batch_size = \n", "not valid TOML"),
    ],
)
def test_bad_config_file_names_the_key(config_file: Path, text: str, message: str) -> None:
    write(config_file, text)
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env={})
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_unreadable_and_non_utf8_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path, env={})  # a directory
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'model = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(bad, env={})


def test_explicit_missing_file_is_an_error_when_required(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file, env={}, require_file=True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VV_BATCH_SIZE": "many"}, "VV_BATCH_SIZE='many' is not a valid integer"),
        ({"VV_SAMPLE_INTERVAL_S": "-1"}, "environment variable VV_SAMPLE_INTERVAL_S"),
        ({"VV_NO_SUCH_KEY": "1"}, "VV_NO_SUCH_KEY is not a vvctl setting"),
    ],
)
def test_bad_environment(config_file: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env=env)
    assert message in info.value.message


def test_secrets_are_redacted_everywhere(config_file: Path) -> None:
    token = "https://hooks.example.invalid/services/T000/B000/SECRETTOKEN"
    write(config_file, f'alert_urls = ["{token}"]\n')
    loaded = load_settings(config_file, env={})
    assert loaded.settings.alert_urls == (token,)
    report = describe(loaded)
    assert "SECRETTOKEN" not in repr(report)
    (entry,) = [e for e in report.settings if e.key == "alert_urls"]
    assert entry.secret and entry.value == ["***"]


def test_bad_secret_in_env_is_not_echoed(config_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env={"VV_ALERT_URLS": "[not-json-SECRETTOKEN"})
    assert "SECRETTOKEN" not in info.value.message


def test_schema_and_settings_dataclass_agree() -> None:
    fields = set(Settings.__dataclass_fields__) - {"config_path"}
    assert fields == set(setting_keys())
    schema = load_schema("config.schema.json")
    for key, spec in schema["properties"].items():
        assert spec.get("description"), f"{key} has no description"


def test_each_setting_is_defined_once_in_the_schema() -> None:
    """The schema holds every key's default; Settings names the same keys; the loader lists none of them."""
    import dataclasses

    from vvctl.core import settings as module
    from vvctl.core.schemas import load_schema

    props = load_schema("config.schema.json")["properties"]
    fields = {f.name for f in dataclasses.fields(module.Settings)} - {"config_path"}
    assert fields == set(props)
    assert all("default" in spec for key, spec in props.items() if key not in ("storage_root", "key_store"))
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(module.Settings) if f.name in props)
    assert all(module._FIELD_TYPES[key] in module._CONVERTERS for key in fields)
    loaded = module.load_settings(None, env={})
    assert dict(loaded.settings.retention_days) == props["retention_days"]["default"]


def test_a_secret_that_fails_validation_is_not_quoted(config_file: Path) -> None:
    write(config_file, 'alert_urls = ["hooks.example.invalid/T000/SECRETTOKEN"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env={})
    assert "SECRETTOKEN" not in info.value.message and "alert_urls" in info.value.message
    with pytest.raises(ConfigError) as info:
        load_settings(config_file.parent / "none.toml", env={"VV_ALERT_URLS": '["no-scheme-SECRETTOKEN"]'})
    assert "SECRETTOKEN" not in info.value.message and "VV_ALERT_URLS" in info.value.message
