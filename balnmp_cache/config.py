"""Stage configuration: TOML files parsed into typed, validated objects.

Every stage (extract, train, report, ablate) has a pydantic model that subclasses
:class:`StageConfig`. Unknown keys are rejected with a message that names the key and the
file; CLI flags override single fields (a flag left at ``None`` overrides nothing); the
resolved configuration is written beside every output with :func:`save_resolved`.

Relative paths inside a configuration file are resolved against the current working
directory, the way ``make`` targets run them from the repository root.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from balnmp_cache.errors import ConfigError

__all__ = ["StageConfig", "load_config", "save_resolved", "to_plain"]

C = TypeVar("C", bound="StageConfig")


class StageConfig(BaseModel):
    """Base for stage configurations: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _format_validation_error(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"invalid configuration in {source}:"]
    known = ", ".join(sorted(model.model_fields))
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        if not key:
            lines.append(f"  {item['msg'].removeprefix('Value error, ')}")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'; valid keys are: {known}")
        else:
            lines.append(f"  key '{key}': {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_config(
    model: type[C],
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> C:
    """Read ``path`` (TOML) into ``model``, then apply ``overrides``.

    Args:
        model: the stage's configuration class.
        path: a TOML file; ``None`` starts from the model's defaults.
        overrides: field -> value from CLI flags; entries whose value is ``None`` are ignored.

    Raises:
        ConfigError: the file is missing or malformed, has an unknown key or an invalid value.
    """
    data: dict[str, Any] = {}
    source = "command-line flags"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist; pass --config with an existing TOML file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path} is not valid TOML: {err}") from err
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, model)) from err


def to_plain(value: Any) -> Any:
    """Convert a config value to TOML-serialisable data (paths to strings, ``None`` dropped)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value if v is not None]
    if isinstance(value, Path):
        return str(value)
    return value


def save_resolved(config: StageConfig, directory: Path, name: str = "config.toml") -> Path:
    """Write the fully resolved configuration as TOML into ``directory`` and return its path."""
    import tomli_w

    from balnmp_cache.fsio import atomic_write_text

    return atomic_write_text(Path(directory) / name, tomli_w.dumps(to_plain(config)))
