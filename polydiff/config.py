"""Run configuration: core defaults <- the modality's defaults <- the user's TOML <- CLI flags.

The merged defaults define the valid keys: a user file may only set keys that exist there, so a
typo is an error that names the key and the valid ones instead of a silently ignored setting.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polydiff.config_schema import CORE_DEFAULTS as _CORE_DEFAULTS
from polydiff.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Config = dict[str, dict[str, Any]]

# the defaults live beside their declarations (type, range, meaning) in polydiff.config_schema
CORE_DEFAULTS: Config = _CORE_DEFAULTS


def data_source(data: Mapping[str, Any]) -> str:
    """Where a run's data comes from, given its ``[data]`` section: the user's ``path`` (set by
    ``--data PATH``), else the built-in ``dataset``."""
    return str(data.get("path") or data.get("dataset") or "")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def defaults_for(modality: Any) -> Config:
    """Core defaults with the modality's sections merged over them (it may add keys); with no
    ``data.dataset`` set, the modality's first built-in data set is the default."""
    cfg = deep_merge(CORE_DEFAULTS, modality.default_config())
    builtins = tuple(getattr(modality, "builtin_datasets", ()) or ())
    if not cfg["data"].get("dataset") and builtins:
        cfg["data"]["dataset"] = str(builtins[0])
    return cfg


def check_keys(over: Mapping[str, Any], valid: Mapping[str, Any], source: str) -> None:
    """Raise a one-line :class:`UserError` for the first key of ``over`` not in ``valid``."""
    for section, values in over.items():
        if section not in valid:
            raise UserError(
                f"{source}: unknown section [{section}]; valid sections: {', '.join(valid)}"
            )
        if not isinstance(values, Mapping):
            raise UserError(f"{source}: [{section}] must be a table of settings")
        for key in values:
            if key not in valid[section]:
                keys = ", ".join(valid[section]) or "(none)"
                raise UserError(
                    f"{source}: unknown key '{section}.{key}'; valid keys in [{section}]: {keys}"
                )


def load_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text, as TOML must be (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def resolve(
    modality: Any, config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """The full configuration of a run."""
    cfg = defaults_for(modality)
    if config_file is not None:
        user = load_toml(config_file)
        check_keys(user, cfg, str(config_file))
        cfg = deep_merge(cfg, user)
        check_values(cfg, str(config_file), modality)  # a bad value is blamed on its source
    if overrides:
        cfg = deep_merge(cfg, overrides)
    check_values(cfg, "command line" if overrides else f"defaults of {modality.name}", modality)
    return cfg


def check_values(cfg: Mapping[str, Any], source: str, modality: Any = None) -> None:
    """Raise a one-line :class:`UserError` naming ``source``, the key, the value and what is
    allowed for the first setting its declaration refuses (core keys by
    :data:`polydiff.config_schema.SCHEMA`; a modality's keys by its ``config_schema`` attribute,
    else by the type of their defaults), before any run folder is made."""
    from polydiff.config_schema import config_problem

    defaults = declared = None
    if modality is not None:
        defaults = defaults_for(modality)
        declared = getattr(modality, "config_schema", None) or None
    problem = config_problem(cfg, defaults, declared)
    if problem:
        raise UserError(f"{source}: {problem}")
