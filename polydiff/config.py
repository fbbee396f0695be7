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

from polydiff.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Config = dict[str, dict[str, Any]]

CORE_DEFAULTS: Config = {
    "data": {"dataset": "", "num_workers": 0},
    "model": {},
    "sde": {"name": "edm", "sigma_min": 0.002, "sigma_max": 80.0},
    "param": {"parameterisation": "edm", "sigma_data": 0.5},
    "loss": {"weighting": "edm", "sigma_sampling": "lognormal", "p_mean": -1.2, "p_std": 1.2},
    "train": {
        "steps": 2000,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "beta1": 0.9,
        "beta2": 0.99,
        "warmup_steps": 100,
        "grad_clip": 1.0,
        "ema_decay": 0.999,
        "log_every": 25,
        "checkpoint_every": 500,
        # also checkpoint after this much training time, so a SIGKILL loses at most that (0: off)
        "checkpoint_minutes": 5.0,
        "seed": 0,
        "device": "auto",
        "threads": 0,
        # optimizer and schedule
        "optimizer": "adamw",  # adamw | adam
        "eps": 1e-8,
        "lr_schedule": "constant",  # constant | cosine (to lr_min at `steps`, after warm-up)
        "lr_min": 0.0,
        "grad_accum": 1,  # micro-batches per step; batch_size is per step, over all processes
        "ema_decays": [],  # several EMAs side by side, the first samples; [] = [ema_decay]
        # speed
        "precision": "auto",  # auto | fp32 | bf16 (auto: bf16 on CUDA, fp32 on CPU)
        "compile": False,  # torch.compile the training forward
        "channels_last": "auto",  # true | false | "auto" (CUDA + 2-D convolutions)
        "dist_backend": "auto",  # torch.distributed backend: auto (nccl on CUDA, gloo) | nccl | gloo
        # checkpoints and observability
        "keep_last": 2,  # step checkpoints kept, besides the best one
        "plot_every": 250,  # redraw loss.png (0: only at the end)
        "snapshot_every": 1000,  # write snapshot_n samples to samples/step-N/ (0: never)
        "snapshot_n": 8,
        "max_nonfinite": 10,  # this many non-finite steps in a row stop the run
        # classifier-free guidance: share of items trained with their conditions withheld
        "cond_dropout": 0.0,
    },
    "sample": {
        "sampler": "heun",
        "steps": 18,
        "n": 64,
        "schedule": "default",
        "seed": 0,
        "guidance": 1.0,  # classifier-free guidance scale (1: the plain conditional model)
        "imputation_resample": 1,  # RePaint rounds per step when inpainting / imputing
        "imputation_guidance": 0.0,  # reconstruction-guidance weight when inpainting (0: off)
        "inpaint_sampler": "",  # sampler for --inpaint ("": the sampler above)
        "inpaint_steps": 0,  # steps for --inpaint (0: the steps above)
    },
}


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
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def resolve(
    modality: Any, config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """The full configuration of a run."""
    cfg = defaults_for(modality)
    if config_file is not None:
        user = load_toml(config_file)
        check_keys(user, cfg, str(config_file))
        cfg = deep_merge(cfg, user)
    if overrides:
        cfg = deep_merge(cfg, overrides)
    check_values(cfg, str(config_file) if config_file is not None else "config")
    return cfg


def check_values(cfg: Mapping[str, Any], source: str) -> None:
    """Raise a one-line :class:`UserError` for a core setting outside its range, before any run
    folder is made."""
    p = cfg.get("train", {}).get("cond_dropout", 0.0)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= float(p) < 1.0:
        raise UserError(f"{source}: train.cond_dropout must lie in [0, 1), got {p!r}")
