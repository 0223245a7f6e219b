"""Settings: TOML file + ``VV_*`` environment + flags, precedence flag > env > file > default.

The key set, types and defaults come from ``schemas/config.schema.json``; :class:`Settings` is the typed
view of the merged result. :func:`load_settings` also reports where each value came from.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from vvctl.core.errors import ConfigError
from vvctl.core.schemas import SchemaViolation, json_path, load_schema, validate

CONFIG_SCHEMA = "config.schema.json"
ENV_PREFIX = "VV_"
CONFIG_ENV = "VV_CONFIG"
REDACTED = "***"


class Source(StrEnum):
    DEFAULT = "default"
    FILE = "file"
    ENV = "env"
    FLAG = "flag"


@dataclass(frozen=True)
class StatusRule:
    label: str
    min_detections: int
    status: str


@dataclass(frozen=True)
class Settings:
    """The typed view of the effective configuration.

    Each key is defined once: its type, default, limits and description live in
    ``schemas/config.schema.json``; this class only names its Python type (a test checks that both list
    the same keys). :func:`load_settings` fills every field from the merged values by that type, so a
    new setting is one schema entry plus one field here.
    """

    storage_root: Path
    key_store: Path
    sample_interval_s: float
    model: str
    model_sha256: str
    detector: str
    score_threshold: float
    nms_iou: float
    batch_size: int
    providers: tuple[str, ...]
    precision: str
    gpu_device_id: int
    gpu_mem_limit_mb: int
    engine_cache_dir: str
    engine_cache_keep: int
    signing_algorithm: str
    video_extensions: tuple[str, ...]
    settle_s: float
    input_max_depth: int
    source_path_patterns: tuple[str, ...]
    source_timezone: str
    presence_gap_s: float
    snapshots_per_video: int
    daily_report: bool
    playlist_statuses: tuple[str, ...]
    max_video_seconds: float
    max_attempts: int
    status_rules: tuple[StatusRule, ...]
    retention_days: Mapping[str, int]
    alert_urls: tuple[str, ...]
    alert_command: str
    realert_after_s: float
    containers: tuple[str, ...]
    compose_project: str
    container_grace_s: float
    restart_budget: int
    restart_window_s: float
    restart_backoff_s: float
    min_free_space_gb: float
    min_free_space_critical_gb: float
    backlog_warn_age_s: float
    backlog_critical_age_s: float
    quarantine_window_s: float
    quarantine_warn_count: int
    quarantine_critical_count: int
    schedules: Mapping[str, str]
    deadman_grace_s: float
    metrics_textfile: str
    executor: str
    ray_address: str
    ray_actors: int
    ray_cpus_per_actor: float
    ray_gpus_per_actor: float
    ray_path_map: Mapping[str, str]
    ray_allow_unauthenticated: bool
    log_level: str
    log_max_bytes: int
    log_backups: int
    config_path: Path | None = None
    """The file the settings were read from, or None when no file exists."""

    @property
    def model_path(self) -> Path:
        path = Path(self.model).expanduser()
        return path if path.is_absolute() else self.storage_root / "models" / path

    @property
    def engine_cache_path(self) -> Path:
        path = Path(self.engine_cache_dir).expanduser()
        return path if path.is_absolute() else self.storage_root / "state" / path

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The effective settings as plain JSON values (secrets redacted unless asked not to)."""
        out: dict[str, Any] = {}
        for key in setting_keys():
            out[key] = _plain(getattr(self, key))
            if redact and key in secret_keys():
                out[key] = redact_value(out[key])
        return out


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: Mapping[str, Source]
    config_path: Path
    config_exists: bool


def _properties() -> dict[str, Any]:
    props: dict[str, Any] = load_schema(CONFIG_SCHEMA)["properties"]
    return props


def setting_keys() -> list[str]:
    return list(_properties())


def secret_keys() -> frozenset[str]:
    return frozenset(k for k, v in _properties().items() if v.get("x-secret"))


def redact_value(value: Any) -> Any:
    if isinstance(value, list):
        return [REDACTED for _ in value]
    if value in (None, "", [], {}):
        return value
    return REDACTED


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, StatusRule):
        return {"label": value.label, "min_detections": value.min_detections, "status": value.status}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


# How a merged (JSON-shaped) value becomes the type a Settings field declares, by the field's annotation.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "Path": lambda v: Path(str(v)).expanduser(),
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "tuple[str, ...]": lambda v: tuple(str(x) for x in v),
    "tuple[StatusRule, ...]": lambda v: tuple(StatusRule(**rule) for rule in v),
    "Mapping[str, int]": lambda v: {str(k): int(n) for k, n in v.items()},
    "Mapping[str, float]": lambda v: {str(k): float(n) for k, n in v.items()},
    "Mapping[str, str]": lambda v: {str(k): str(n) for k, n in v.items()},
}
# Normalisation a key needs beyond its type.
_NORMALISE: dict[str, Callable[[Any], Any]] = {
    "video_extensions": lambda v: tuple(e.lower() for e in v),
}
_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(Settings) if f.name != "config_path"}


def _typed(key: str, value: Any) -> Any:
    return _NORMALISE.get(key, _CONVERTERS[_FIELD_TYPES[key]])(value)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_config_path() -> Path:
    import platformdirs

    base = platformdirs.site_config_dir("vvctl") if is_root() else platformdirs.user_config_dir("vvctl")
    return Path(base) / "config.toml"


def default_storage_root() -> Path:
    import platformdirs

    if is_root():
        return Path("/var/lib/vvctl")
    return Path(platformdirs.user_data_dir("vvctl"))


def resolve_config_path(flag: Path | None, env: Mapping[str, str]) -> Path:
    if flag is not None:
        return flag.expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    return default_config_path()


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (run 'vvctl bootstrap' to create it)") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        validate(document, CONFIG_SCHEMA)
    except SchemaViolation as exc:
        key = exc.field.removeprefix("$.")
        raise ConfigError(f"config file {path}: key '{key}': {_reason(key, exc)}") from None
    return document


def _reason(key: str, exc: SchemaViolation) -> str:
    """The schema's complaint, unless it would quote a secret value (a webhook URL with its token)."""
    top = key.split(".")[0].split("[")[0]
    return "invalid value (not shown: the setting is a secret)" if top in secret_keys() else exc.reason


def _env_value(name: str, text: str, spec: Mapping[str, Any]) -> Any:
    kind = spec.get("type")
    try:
        if kind == "number":
            return float(text)
        if kind == "integer":
            return int(text)
        if kind == "boolean":
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "array":
            stripped = text.strip()
            if stripped.startswith("["):
                return json.loads(stripped)
            if spec.get("items", {}).get("type") == "string":
                return [part.strip() for part in stripped.split(",") if part.strip()]
            raise ValueError(text)
        if kind == "object":
            return json.loads(text)
    except ValueError:
        shown = REDACTED if spec.get("x-secret") else repr(text)
        raise ConfigError(f"environment variable {name}={shown} is not a valid {kind}") from None
    return text


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    props = _properties()
    values: dict[str, Any] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in props:
            raise ConfigError(f"environment variable {name} is not a vvctl setting")
        values[key] = _env_value(name, text, props[key])
    return values


def load_settings(
    config_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    require_file: bool = False,
) -> LoadedSettings:
    """Merge defaults, the config file, ``VV_*`` variables and flags; validate; return typed settings.

    A missing default-location file is fine (defaults apply); a file named by ``--config``/``VV_CONFIG``
    must exist unless the caller is about to create it (``require_file=False`` and it is absent).
    """
    env = os.environ if env is None else env
    path = resolve_config_path(config_path, env)
    explicit = config_path is not None or bool(env.get(CONFIG_ENV))
    exists = path.exists()
    file_values = read_config_file(path) if exists or (explicit and require_file) else {}

    props = _properties()
    merged: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for key, spec in props.items():
        if "default" in spec:
            merged[key] = spec["default"]
            sources[key] = Source.DEFAULT
    layers: list[tuple[Source, Mapping[str, Any]]] = [
        (Source.FILE, file_values),
        (Source.ENV, env_overrides(env)),
        (Source.FLAG, {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    for source, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            sources[key] = source
    if "storage_root" not in merged:
        merged["storage_root"] = str(default_storage_root())
        sources["storage_root"] = Source.DEFAULT
    try:
        validate({k: _plain(v) for k, v in merged.items()}, CONFIG_SCHEMA)
    except SchemaViolation as exc:
        key = exc.field.removeprefix("$.").split(".")[0].split("[")[0]
        origin = _describe_origin(sources.get(key, Source.DEFAULT), key, path)
        raise ConfigError(f"{origin}: {_reason(key, exc)}") from None

    root = Path(str(merged["storage_root"])).expanduser()
    if not root.is_absolute():
        root = (path.parent / root) if sources["storage_root"] is Source.FILE else root.resolve()
    if "key_store" in merged:
        key_store = Path(str(merged["key_store"])).expanduser()
    else:
        key_store = root / "state" / "keystore.json"
        sources["key_store"] = Source.DEFAULT
    merged["storage_root"], merged["key_store"] = root, key_store
    settings = Settings(
        **{key: _typed(key, merged[key]) for key in _FIELD_TYPES},
        config_path=path if exists else None,
    )
    return LoadedSettings(settings=settings, sources=sources, config_path=path, config_exists=exists)


@dataclass(frozen=True)
class SettingEntry:
    key: str
    value: Any
    source: Source
    secret: bool


@dataclass(frozen=True)
class SettingsReport:
    config_path: Path
    config_exists: bool
    settings: list[SettingEntry]


def describe(loaded: LoadedSettings) -> SettingsReport:
    """Each effective value with where it came from; secrets redacted."""
    values = loaded.settings.to_dict(redact=True)
    secrets = secret_keys()
    entries = [
        SettingEntry(key, values[key], loaded.sources.get(key, Source.DEFAULT), key in secrets)
        for key in setting_keys()
    ]
    return SettingsReport(loaded.config_path, loaded.config_exists, entries)


def _describe_origin(source: Source, key: str, path: Path) -> str:
    if source is Source.ENV:
        return f"environment variable {ENV_PREFIX}{key.upper()}"
    if source is Source.FLAG:
        return f"option --{key.replace('_', '-')}"
    if source is Source.FILE:
        return f"config file {path}: key '{key}'"
    return f"default for '{key}'"


__all__ = [
    "CONFIG_ENV",
    "LoadedSettings",
    "SettingEntry",
    "Settings",
    "SettingsReport",
    "Source",
    "StatusRule",
    "describe",
    "json_path",
    "load_settings",
    "read_config_file",
    "secret_keys",
    "setting_keys",
]
