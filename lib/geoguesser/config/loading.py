"""Reading a config: YAML, `--set` overrides (OmegaConf), the schema's check, and one line
per problem, with the closest known name when a key is misspelt.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from geoguesser.config.checks import check_run_name
from geoguesser.config.sections import Section, Settings
from geoguesser.errors import UserError


def _format_error(error: dict, known: dict[str, list[str]]) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        parent = ".".join(str(part) for part in error["loc"][:-1])
        close = difflib.get_close_matches(str(error["loc"][-1]), known.get(parent, []), n=1)
        hint = f"; did you mean {'.'.join(filter(None, [parent, close[0]]))}?" if close else ""
        return f"{where}: unknown setting{hint}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        return f"{where}: {message}"
    return f"{where}: {message} (got {error['input']!r})"


def known_setting_problems(section: type[Section], values: dict) -> list[str]:
    """How `values` fail to validate as `section` today, one line each (as a config's would).

    For settings saved elsewhere (a checkpoint's), which may predate a change of the schema.
    """
    try:
        section.model_validate(values)
    except ValidationError as exc:
        known = {"": list(section.model_fields)}
        return [_format_error(error, known) for error in exc.errors()]
    return []


def _known_keys() -> dict[str, list[str]]:
    known = {"": list(Settings.model_fields)}
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            known[name] = list(field.annotation.model_fields)
    return known


def _merged(path: Path | None, overrides: list[str]) -> dict:
    """The config file (or nothing) with `key=value` overrides on top, as plain data."""
    base = OmegaConf.create()
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: config not found") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, not a config file") from None
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{path}: a config is a mapping of sections")
        loaded.pop("history", None)  # a run's config.yaml also loads; its history is not a setting
        base = OmegaConf.create(loaded)
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value, e.g. train.max_epochs=3")
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"--set: {str(exc).splitlines()[0]}") from None


def load_settings(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Settings:
    """Settings from a YAML file and overrides, checked; every problem found is one line."""
    path = None if path is None else Path(path)
    values = _merged(path, list(overrides))
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        known = _known_keys()
        lines = [_format_error(error, known) for error in exc.errors()]
        raise UserError("\n".join(lines)) from None
    if settings.name is None:
        name = path.stem if path is not None else "dev"
        settings = settings.model_copy(update={"name": check_run_name(name)})
    return settings
