"""What `polydiff sample|evaluate` generate: conditions (``--cond NAME=SPEC``, with ``--class`` as
shorthand for ``label``) and inpainting inputs (``--inpaint``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from polydiff.cli.common import fail

#: the condition name ``--class`` abbreviates
LABEL = "label"

#: ``--cond NAME=SPEC``, repeatable, shared by `polydiff sample` and `polydiff evaluate`
CondOption = Annotated[
    list[str] | None,
    typer.Option(
        "--cond",
        help="A condition for every sample, NAME=SPEC (repeatable); the modality reads SPEC "
        "(e.g. label=3, mel=speech.wav, nodes=20, style=vec.npy; NAME=none: the null condition).",
    ),
]

#: ``--class`` and ``--guidance``, shared by `polydiff sample` and `polydiff evaluate`
ClassOption = Annotated[
    str | None,
    typer.Option(
        "--class",
        help="Class label(s) of a class-conditional model: N, or N,M,... used in turn; "
        "'none' = unconditional; 'data' (default) = the training data's class balance.",
    ),
]
GuidanceOption = Annotated[
    float | None,
    typer.Option(help="Classifier-free guidance scale (1 = no guidance; default from the run)."),
]


def check_number(
    option: str, value: float | None, *, minimum: float | None = None, maximum: float | None = None
) -> None:
    """A numeric option is finite and within its range, else one line naming it (Click's own
    ``min=`` lets ``nan`` through: every comparison with it is false)."""
    import math

    if value is None:
        return
    if not math.isfinite(float(value)):
        raise fail(f"{option} {value}: expected a finite number")
    if minimum is not None and value < minimum:
        raise fail(f"{option} {value}: expected a number >= {minimum:g}")
    if maximum is not None and value > maximum:
        raise fail(f"{option} {value}: expected a number <= {maximum:g}")


def check_device(name: str) -> None:
    """``--device NAME`` is auto, cpu, cuda or cuda:N with a GPU N that exists, before any work."""
    import re

    from polydiff.config_schema import DEVICE_PATTERN

    if not re.fullmatch(DEVICE_PATTERN, name):
        raise fail(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda:"):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count and int(name[5:]) >= count:
            raise fail(f"--device {name}: this machine has CUDA devices 0..{count - 1}")


def check_schedule(name: str) -> None:
    """``--schedule NAME`` names a noise grid (or ``default``: the sampler's own)."""
    from polydiff.sampling.schedules import SCHEDULES

    if name != "default" and name not in SCHEDULES:
        raise fail(f"--schedule {name}: unknown noise grid; available: default, {', '.join(SCHEDULES)}")


def class_labels(spec: str | None, plugin: Any, num_classes: int, n: int) -> Any:
    """The ``label`` condition for ``n`` samples, or ``None`` to keep the data's class balance.

    ``spec``: ``None`` / ``"data"`` (labels drawn like the training data), ``"none"`` (the null
    class: the unconditional model), or integers separated by commas, used in turn.
    ``num_classes`` is the network's (its ``num_classes`` attribute; 0: unconditional).
    """
    if spec is None or spec.strip().lower() == "data":
        return None
    import torch

    if LABEL not in (getattr(plugin, "conditions", ()) or ()):
        raise fail(f"--class: the {plugin.name} modality takes no class label")
    if spec.strip().lower() == "none":
        from polydiff.conditions import null_conditions

        return null_conditions({LABEL: torch.zeros(n, dtype=torch.long)}, plugin)[LABEL]
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise fail(f"--class {spec}: expected integers separated by commas, 'data' or 'none'") from None
    if not values:
        raise fail(f"--class {spec}: no class given")
    if num_classes <= 0:
        raise fail("--class: this run's model is unconditional (trained without class labels)")
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise fail(f"--class {bad[0]}: out of range; this model has classes 0..{num_classes - 1}")
    return torch.tensor([values[i % len(values)] for i in range(n)], dtype=torch.long)


def read_conditions(
    specs: list[str] | None, plugin: Any, config: dict[str, Any], n: int
) -> dict[str, Any]:
    """``{name: tensor with n rows}`` from ``--cond NAME=SPEC`` options, through the plugin's
    ``read_condition`` (a condition the modality does not take is an error, not ignored)."""
    from polydiff.hooks import call

    accepted = tuple(getattr(plugin, "conditions", ()) or ())
    out: dict[str, Any] = {}
    for item in specs or []:
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or not name or not spec.strip():
            raise fail(f"--cond {item}: expected NAME=SPEC")
        if name not in accepted:
            takes = ", ".join(accepted) if accepted else "no conditions"
            raise fail(f"--cond {name}: the {plugin.name} modality takes {takes}")
        if name in out:
            raise fail(f"--cond {name}: given twice")
        if spec.strip().lower() == "none":
            out[name] = None  # generate() puts the null value of the data's own condition here
            continue
        value = call(plugin, "read_condition", name, spec, config, n)
        if getattr(value, "shape", (None,))[:1] != (n,):
            shape = tuple(getattr(value, "shape", ()))
            raise fail(f"--cond {name}={spec}: the modality returned shape {shape}, not {n} rows")
        out[name] = value
    return out


def network_classes(run: Any) -> int:
    """The class count of a loaded run's network (0 when it takes no label)."""
    return int(getattr(getattr(run.denoiser, "net", None), "num_classes", 0) or 0)


def inpainting_inputs(
    image: Path, mask: str | None, plugin: Any, config: dict[str, Any], n: int
) -> tuple[Any, Any]:
    """(values, known_mask) for ``n`` samples, each with a leading batch dimension of ``n``."""
    from polydiff.hooks import call, implemented
    from polydiff.state import check_mask, tree_map

    if not (implemented(plugin, "read_state") and implemented(plugin, "read_mask")):
        raise fail(f"--inpaint: the {plugin.name} modality cannot read inputs for inpainting")
    if mask is None:
        raise fail("--inpaint needs --mask (a mask file or a preset name)")
    if not image.is_file():
        raise fail(f"{image}: file not found")
    value = call(plugin, "read_state", image, config)  # a DataError becomes one line
    known = call(plugin, "read_mask", mask, config, value)
    check_mask(tree_map(lambda t: t.unsqueeze(0), value), tree_map(lambda t: t.unsqueeze(0), known),
               f"{plugin.name}.read_mask")

    def expand(t: Any) -> Any:
        return t.unsqueeze(0).expand(n, *t.shape).contiguous()

    return tree_map(expand, value), tree_map(expand, known)
