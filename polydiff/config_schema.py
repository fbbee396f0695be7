"""What every core configuration key means, its type and its allowed values, as data.

:data:`SCHEMA` declares each key of :data:`CORE_DEFAULTS` (kept here beside it and re-exported by
:mod:`polydiff.config`) section by section as
a :class:`Setting`. ``docs/config.md`` holds the table :func:`config_table_markdown` renders from
it; ``python -m polydiff.config_schema`` rewrites that table (``--check``: exit 1 when it is out of
date), and ``tests/test_docs.py`` fails when a key lacks a declaration, a declaration names no key,
a default breaks its own declaration, or the table in the docs is stale.

:func:`config_problem` checks a whole configuration against these declarations, a modality's own
(its optional ``config_schema`` attribute, the same mapping of sections to :class:`Setting`) and,
for a plugin key declared nowhere, the type of its default; :func:`polydiff.config.check_values`
turns the first problem into a one-line error before any run folder is made. The allowed values are written out rather than imported from :mod:`polydiff.losses`,
:mod:`polydiff.sde` and the like, because those import torch and this module must stay as light as
:mod:`polydiff.config`; the tests compare the two.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CORE_DEFAULTS",
    "SCHEMA",
    "TYPES",
    "Setting",
    "check_value",
    "config_problem",
    "config_table_markdown",
    "schema_problems",
    "update_docs",
]

#: the declared type names and the Python types a TOML value of each may have
TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),  # TOML writes 1 for 1.0
    # a plugin key known only by its numeric default: an int default may still take a float
    "number": (int, float),
    "bool": (bool,),
    "str": (str,),
    "list[float]": (list,),
    "bool | str": (bool, str),
}


@dataclass(frozen=True)
class Setting:
    """One configuration key: its type (a name in :data:`TYPES`), its meaning in one line, and,
    where they are fixed, its allowed values (``choices``) or range (``minimum`` / ``maximum``,
    each inclusive unless marked exclusive)."""

    type: str
    meaning: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    pattern: str = ""  # a regular expression a string value must match whole

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown type {self.type!r}; declared types: {', '.join(TYPES)}")

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``"≥ 1"``, ``"[0, 1)"``, ``"adamw | adam"``."""
        if self.choices:
            return " | ".join(_toml(c) for c in self.choices)
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            left = "(" if self.exclusive_minimum else "["
            right = ")" if self.exclusive_maximum else "]"
            return f"{left}{_num(lo)}, {_num(hi)}{right}"
        if lo is not None:
            return f"{'>' if self.exclusive_minimum else '≥'} {_num(lo)}"
        if hi is not None:
            return f"{'<' if self.exclusive_maximum else '≤'} {_num(hi)}"
        return ""


def _int(meaning: str, minimum: int | None = None, maximum: int | None = None) -> Setting:
    return Setting("int", meaning, minimum=minimum, maximum=maximum)


#: the devices a run may name
DEVICE_PATTERN = r"auto|cpu|cuda(:[0-9]+)?"
#: seeds torch, numpy and Python all accept
MAX_SEED = 2**32 - 1
#: more steps than any grid needs, and more samples than one call should draw: beyond these a typo
#: (a missing decimal point) would hang or exhaust memory instead of failing in one line
MAX_SAMPLE_STEPS = 100_000
MAX_SAMPLES = 1_000_000


def _float(
    meaning: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: bool = False,
    below: bool = False,
) -> Setting:
    return Setting(
        "float",
        meaning,
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=above,
        exclusive_maximum=below,
    )


def _choice(meaning: str, *choices: Any) -> Setting:
    return Setting("str", meaning, choices=choices)


#: every core key's default (``polydiff.config`` re-exports it): core defaults <- the modality's
#: <- the user's TOML <- CLI flags
CORE_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"dataset": "", "num_workers": 0, "skip_bad": False},
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
        # local data-parallel processes `polydiff train` starts (capped by cores, or GPUs on CUDA)
        "processes": 1,
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


SCHEMA: dict[str, dict[str, Setting]] = {
    "data": {
        "dataset": Setting(
            "str", "built-in dataset name (`--data NAME`); the modality sets its default"
        ),
        "num_workers": _int(
            "DataLoader worker processes for training (0: load in the training process)", 0
        ),
        "skip_bad": Setting(
            "bool",
            "unreadable data files are skipped, counted and named (`--skip-bad`) instead of an error",
        ),
    },
    # the network's settings belong to the modality: no core keys
    "model": {},
    "sde": {
        # vp and subvp (polydiff.sde) take beta_min, beta_max ... instead of sigma_min, sigma_max,
        # keys a config cannot set yet: only the two below build from a config
        "name": _choice("forward process: EDM's or the variance-exploding SDE", "edm", "ve"),
        "sigma_min": _float(
            "smallest noise level σ: where sampling ends, lower clamp of training levels",
            0,
            above=True,
        ),
        "sigma_max": _float(
            "largest noise level σ: the prior's scale, where sampling starts", 0, above=True
        ),
    },
    "param": {
        "parameterisation": _choice(
            "what the network predicts (polydiff.param): EDM's F, ε, x₀, v or the scaled score",
            "edm",
            "eps",
            "x0",
            "v",
            "score",
        ),
        "sigma_data": _float(
            "standard deviation of the data, for the preconditioning and the edm weighting",
            0,
            above=True,
        ),
    },
    "loss": {
        "weighting": _choice(
            "λ(σ) on the error |D − x₀|² (polydiff.losses)",
            "edm",
            "simple",
            "likelihood",
            "min_snr",
        ),
        "sigma_sampling": _choice(
            "how training noise levels are drawn", "lognormal", "uniform_t", "importance"
        ),
        "p_mean": _float("mean of ln σ for lognormal noise levels"),
        "p_std": _float("standard deviation of ln σ for lognormal noise levels", 0, above=True),
    },
    "train": {
        "steps": _int("optimizer steps of the run", 1),
        "batch_size": _int("items per optimizer step, over all processes and micro-batches", 1),
        "lr": _float("learning rate after warm-up", 0, above=True),
        "weight_decay": _float("weight decay (decoupled for adamw)", 0),
        "beta1": _float("Adam β₁", 0, 1, below=True),
        "beta2": _float("Adam β₂", 0, 1, below=True),
        "warmup_steps": _int("steps of linear learning-rate warm-up", 0),
        "grad_clip": _float("global gradient-norm clipping threshold (0: off)", 0),
        "ema_decay": _float(
            "decay of the EMA that samples, warmed up as min(decay, (1+n)/(10+n))", 0, 1, below=True
        ),
        "log_every": _int("steps per metrics.jsonl row", 1),
        "checkpoint_every": _int(
            "steps between checkpoints (0: by the clock and at the end only)", 0
        ),
        "checkpoint_minutes": _float(
            "also checkpoint after this many minutes of training, whichever is due first (0: off)",
            0,
        ),
        "seed": _int("seed of the weights, the data order and the noise", 0, MAX_SEED),
        "device": Setting(
            "str",
            "`auto`, `cpu`, `cuda` or `cuda:N` (auto: CUDA when available)",
            pattern=DEVICE_PATTERN,
        ),
        "threads": _int("CPU threads of torch (0: torch's default)", 0),
        "processes": _int("local data-parallel processes of `polydiff train` (capped by the cores, "
                          "or the GPUs on CUDA; ignored under torchrun)", 1),
        "optimizer": _choice("the optimizer (fused kernels on CUDA)", "adamw", "adam"),
        "eps": _float("Adam ε", 0, above=True),
        "lr_schedule": _choice(
            "learning rate after warm-up: constant, or a cosine down to lr_min at steps",
            "constant",
            "cosine",
        ),
        "lr_min": _float("learning rate the cosine schedule ends at", 0),
        "grad_accum": _int(
            "micro-batches per step; batch_size must divide by world size × grad_accum", 1
        ),
        "ema_decays": Setting(
            "list[float]",
            "several EMAs side by side, each in [0, 1); the first samples; []: [ema_decay]",
        ),
        "precision": _choice(
            "autocast precision; auto: bf16 on CUDA GPUs that support it, else fp32",
            "auto",
            "fp32",
            "bf16",
        ),
        "compile": Setting("bool", "torch.compile the training forward"),
        "channels_last": Setting(
            "bool | str",
            "memory-format hint passed to the network the plugin builds (images: channels-last on CUDA)",
            choices=(True, False, "auto"),
        ),
        "dist_backend": _choice(
            "torch.distributed backend; auto: nccl on CUDA, else gloo", "auto", "nccl", "gloo"
        ),
        "keep_last": _int("step checkpoints kept, besides the best one", 1),
        "plot_every": _int("steps between redraws of loss.png (0: at the end only)", 0),
        "snapshot_every": _int("steps between sample snapshots in samples/step-N/ (0: never)", 0),
        "snapshot_n": _int("samples per snapshot", 1),
        "max_nonfinite": _int("non-finite steps in a row that stop the run", 1),
        "cond_dropout": _float(
            "share of items trained with their conditions withheld (classifier-free guidance)",
            0,
            1,
            below=True,
        ),
    },
    "sample": {
        "sampler": Setting("str", "sampler name (`polydiff samplers`)"),
        "steps": _int("nonzero noise levels in the sampling grid", 1, MAX_SAMPLE_STEPS),
        "n": _int("samples drawn at the end of training and by `polydiff sample`", 1, MAX_SAMPLES),
        "schedule": _choice(
            "noise grid; default: the sampler's own",
            "default",
            "karras",
            "uniform",
            "quadratic",
            "logsnr",
            "tuned",
        ),
        "seed": _int("seed of the sampling noise and layout", 0, MAX_SEED),
        "guidance": _float(
            "classifier-free guidance scale (1: the conditional model, 0: the unconditional one)", 0
        ),
        "imputation_resample": _int("RePaint rounds per step when inpainting", 1),
        "imputation_guidance": _float("reconstruction-guidance weight when inpainting (0: off)", 0),
        "inpaint_sampler": Setting("str", "sampler for `--inpaint` (empty: `sampler`)"),
        "inpaint_steps": _int("steps for `--inpaint` (0: `steps`)", 0),
    },
}


def check_value(setting: Setting, value: Any) -> str | None:
    """Why ``value`` does not fit ``setting`` (one line), or ``None`` when it does."""
    kinds = TYPES[setting.type]
    if isinstance(value, bool) and bool not in kinds:
        return f"expected {setting.type}, got a boolean"
    if not isinstance(value, kinds):
        kind = "a number" if setting.type == "number" else setting.type
        return f"expected {kind}, got {type(value).__name__} {value!r}"
    if setting.type == "list[float]":
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                return f"expected a list of numbers, got {item!r} in it"
        return None
    if setting.pattern and isinstance(value, str):
        import re

        if not re.fullmatch(setting.pattern, value):
            return f"expected {setting.meaning.split(' (')[0]}, got {_toml(value)}"
        return None
    if setting.choices:
        # compare types too: True == 1 in Python, and a choice of true must not admit 1
        if not any(c == value and type(c) is type(value) for c in setting.choices):
            return f"expected {setting.allowed()}, got {_toml(value)}"
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        lo, hi = setting.minimum, setting.maximum
        too_low = lo is not None and (value <= lo if setting.exclusive_minimum else value < lo)
        too_high = hi is not None and (value >= hi if setting.exclusive_maximum else value > hi)
        if too_low or too_high:
            return f"expected {setting.allowed()}, got {value!r}"
    return None


def _inferred(default: Any) -> Setting | None:
    """The loosest declaration a plugin key gets from its default when the plugin declares none:
    its kind of value (a number stays a number, a flag a flag). A number may also be the word
    ``"auto"``, which plugins take for "the data's own" (images: ``data.resolution``)."""
    if isinstance(default, bool):
        return Setting("bool", "")
    if isinstance(default, (int, float)):
        return Setting("number", "")  # int or float; finiteness is still checked
    if isinstance(default, list):
        return Setting("list[float]", "") if all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in default
        ) and default else None
    if isinstance(default, str):
        return Setting("str", "")
    return None


def config_problem(
    config: Mapping[str, Any],
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    declared: Mapping[str, Mapping[str, Setting]] | None = None,
) -> str | None:
    """The first value of ``config`` its declaration refuses, as ``"section.key = value: why"``
    (``None`` when all fit).

    Each key is checked against :data:`SCHEMA`, then ``declared`` (a modality's own
    declarations), then the type of its value in ``defaults`` (a plugin key declared nowhere:
    see :func:`_inferred`); keys none of them knows pass (:func:`polydiff.config.check_keys`
    refuses unknown keys earlier).
    """
    for section, values in config.items():
        if not isinstance(values, Mapping):
            return f"[{section}]: expected a table of settings, got {_toml(values)}"
        for key, value in values.items():
            setting = (declared or {}).get(section, {}).get(key) or SCHEMA.get(section, {}).get(key)
            loose = False
            if setting is None and defaults is not None and key in defaults.get(section, {}):
                setting, loose = _inferred(defaults[section][key]), True
            if setting is None:
                continue
            if loose and setting.type == "number" and isinstance(value, str) and (
                value.strip().lower() == "auto"
            ):
                continue  # the plugin reads the word
            why = check_value(setting, value)
            if why:
                return f"{section}.{key} = {_toml(value)}: {why}"
    return None


def schema_problems(defaults: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """One line per disagreement between :data:`SCHEMA` and ``defaults`` (default:
    ``CORE_DEFAULTS``): undeclared keys, declarations of missing keys, defaults that break their
    declaration."""
    if defaults is None:
        defaults = CORE_DEFAULTS
    problems = []
    for section in defaults:
        if section not in SCHEMA:
            problems.append(f"section [{section}] is not declared in SCHEMA")
    for section in SCHEMA:
        if section not in defaults:
            problems.append(f"SCHEMA declares section [{section}], which CORE_DEFAULTS lacks")
    for section, keys in defaults.items():
        declared = SCHEMA.get(section, {})
        for key, value in keys.items():
            if key not in declared:
                problems.append(f"{section}.{key} has no declaration in SCHEMA")
                continue
            why = check_value(declared[key], value)
            if why:
                problems.append(f"{section}.{key}: the default breaks its declaration ({why})")
        for key in declared:
            if key not in keys:
                problems.append(f"SCHEMA declares {section}.{key}, which CORE_DEFAULTS lacks")
    return problems


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _toml(value: Any) -> str:
    """A value as a TOML file would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def config_table_markdown() -> str:
    """The markdown table of every core key: section, key, default, type (and allowed values),
    meaning; one row per key in the order of ``CORE_DEFAULTS``."""
    rows = ["| section | key | default | type | meaning |", "| --- | --- | --- | --- | --- |"]
    for section, keys in CORE_DEFAULTS.items():
        for key, value in keys.items():
            setting = SCHEMA.get(section, {}).get(key)
            if setting is None:
                raise KeyError(
                    f"{section}.{key} has no declaration in polydiff.config_schema.SCHEMA"
                )
            if setting.choices:
                kind = " | ".join(f"`{_toml(c)}`" for c in setting.choices)
            else:
                kind = f"{setting.type} {setting.allowed()}".strip()
            rows.append(
                f"| `[{section}]` | `{key}` | `{_cell(_toml(value))}` | {_cell(kind)} | "
                f"{_cell(setting.meaning)} |"
            )
    return "\n".join(rows) + "\n"


START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def updated_doc(text: str) -> str:
    """``text`` with the table between the markers replaced by the generated one."""
    head, sep, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"the markers {START} and {END} are missing")
    return f"{head}{START}\n{config_table_markdown()}{END}{tail}"


def update_docs(path: Path = DOC, *, check: bool = False) -> bool:
    """Rewrite the table in ``path``; with ``check``, only say whether it is current."""
    text = path.read_text(encoding="utf-8")
    new = updated_doc(text)
    if check:
        return new == text
    if new != text:
        path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    if not DOC.is_file():
        print(f"{DOC}: not found (run from a source checkout)", file=sys.stderr)
        return 2
    problems = schema_problems()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if check:
        current = update_docs(DOC, check=True)
        if not current:
            print(
                f"{DOC}: the config table is out of date; run python -m polydiff.config_schema",
                file=sys.stderr,
            )
        return 0 if current else 1
    update_docs(DOC)
    print(f"wrote the config table of {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
