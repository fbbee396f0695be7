"""Write a complete, minimal modality plugin to start from (``polydiff plugin new NAME [DIR]``).

The generated distribution installs (``pip install -e DIR``), is listed ``ok`` by ``polydiff
modalities``, trains and samples as written, and passes :func:`polydiff.testing.check_modality`
in its own test. Its data are procedural 1-D sequences (sums of sines) or the user's ``.npy``
file, so nothing is downloaded. The templates are Python strings rather than package data so the
core needs no data files installed; ``$placeholders`` (:class:`string.Template`) leave the braces
of the generated code alone.

This module imports neither torch nor the templates' dependencies: the CLI imports it for
``--help``.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from polydiff.errors import UserError
from polydiff.protocol import CONTRACT_VERSION

__all__ = ["NAME_PATTERN", "check_name", "package_name", "render_plugin", "write_plugin"]

#: a modality name: lowercase, starts with a letter, ends with a letter or digit (so that
#: ``polydiff-NAME`` is a valid distribution name, PEP 508)
NAME_PATTERN = re.compile(r"[a-z](?:[a-z0-9_-]*[a-z0-9])?")


def check_name(name: str) -> None:
    """Raise a one-line :class:`UserError` unless ``name`` can name a modality and its package."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"plugin name {name!r}: use lowercase letters, digits, '-' and '_', starting with a "
            "letter and ending with a letter or digit (e.g. 'spectra')"
        )


def package_name(name: str) -> str:
    """The import package of modality ``name``: ``polydiff_<name with - as _>``."""
    return "polydiff_" + name.replace("-", "_")


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]+", name)) + "Modality"


def render_plugin(name: str) -> dict[str, str]:
    """The files of plugin ``name``: ``{relative path: text}``, in the order they are written."""
    check_name(name)
    package = package_name(name)
    values = {
        "name": name,
        "package": package,
        "class_name": _class_name(name),
        "version": CONTRACT_VERSION,
    }
    return {
        "pyproject.toml": PYPROJECT.substitute(values),
        "README.md": README.substitute(values),
        f"{package}/__init__.py": INIT.substitute(values),
        f"{package}/core.py": CORE.substitute(values),
        "tests/test_conformance.py": TEST.substitute(values),
    }


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write plugin ``name`` into ``directory`` (new or empty); return the written files.

    Raises :class:`UserError` (one line, nothing written) for a bad name or a folder that exists
    and is not empty.
    """
    directory = Path(directory)
    # render first: a bad name must leave no folder behind
    files = render_plugin(name)
    if directory.exists():
        if not directory.is_dir():
            raise UserError(f"{directory}: exists and is not a folder; give a new or empty folder")
        if any(directory.iterdir()):
            raise UserError(
                f"{directory}: exists and is not empty; give a new or empty folder, nothing was written"
            )
    written = []
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# ------------------------------------------------------------------------------------- templates

PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "polydiff-$name"
version = "0.1.0"
description = "A polydiff modality: $name."
readme = "README.md"
requires-python = ">=3.10"
# torch and numpy come with polydiff; add what your data code needs
dependencies = ["polydiff"]

[project.optional-dependencies]
test = ["pytest"]

# how polydiff finds the modality: NAME = "package:object"
[project.entry-points."polydiff.modalities"]
$name = "$package:modality"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
''')

README = Template('''\
# polydiff-$name

A polydiff modality plugin, written by `polydiff plugin new $name`. As generated it learns 1-D
sequences of length 32 (random sums of sines, made on the fly) or your own `.npy` array of shape
`(N, 32)`.

```bash
pip install -e .                        # or: pip install -e ".[test]"
polydiff modalities                     # lists `$name` as ok
polydiff train --modality $name --out runs/first
polydiff sample runs/first
polydiff evaluate runs/first            # the `moments` metric
pytest                                  # the conformance test: run it after every change
```

## What to edit first

1. `$package/core.py`, `make_sines`: the built-in dataset. Replace it with a generator of your
   own, or train on a file: `polydiff train --modality $name --data mine.npy` (read by
   `read_npy`, which refuses bad files with a one-line `DataError` naming the file). Keep the
   data's standard deviation near 0.5 (`param.sigma_data`) or set `[param] sigma_data`.
2. `$package/core.py`, `Denoiser`: the network. Any `net(x_in, c_noise)` that returns a tensor
   shaped like `x_in` works; `c_noise` is the `(B,)` noise level.
3. `$package/core.py`, `write_samples` and `moments`: how samples land on disk (a CSV, plus a
   PNG when matplotlib is installed; the summary file first, every path inside `out_dir`) and
   how they are scored.
4. `$package/__init__.py`: the name, description and `default_config()` (every `[data]` and
   `[model]` key there can be set from a `--config` TOML file). This module must stay light:
   import torch and your heavy code only inside the methods, as it does now.

The contract (`protocol_version = "$version"`) and every optional member (conditions, ragged data
with masks, noise spaces, inpainting) are described in polydiff's `docs/plugins.md`.
''')

INIT = Template('''\
"""polydiff modality ``$name``: the object the entry point names.

``polydiff modalities`` imports this module to list the plugin, so it stays light: it imports
only ``polydiff.protocol``; torch, numpy and the data code load inside the methods, from
``$package.core``. The conformance test checks that this stays true.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polydiff.protocol import Modality

if TYPE_CHECKING:  # typing only: importing torch here would make listing plugins slow
    from torch import Tensor, nn
    from torch.utils.data import Dataset


class $class_name(Modality):
    name = "$name"
    description = "1-D sequences: random sums of sines, or your .npy array of shape (N, L)"
    protocol_version = "$version"
    #: made on the fly, never downloaded; the first is the default data.dataset
    builtin_datasets = ("sines",)

    def default_config(self) -> dict[str, dict[str, Any]]:
        # [data] and [model] are this plugin's own keys; the rest override polydiff's defaults
        return {
            "data": {"dataset": "sines", "length": 32, "size": 2048},
            "model": {"width": 128, "depth": 3},
            "train": {
                "steps": 400,
                "batch_size": 64,
                "lr": 2e-3,
                "warmup_steps": 20,
                "log_every": 50,
                "checkpoint_every": 200,
                "snapshot_every": 0,
            },
            "sample": {"sampler": "heun", "steps": 18, "n": 16},
        }

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str) -> Dataset:
        from $package.core import build_dataset

        return build_dataset(source, config, split)

    def build_network(self, config: Mapping[str, Any]) -> nn.Module:
        from $package.core import Denoiser

        model = config["model"]
        return Denoiser(int(config["data"]["length"]), int(model["width"]), int(model["depth"]))

    def write_samples(
        self,
        samples: Tensor,
        out_dir: Path,
        *,
        mask: Tensor | None = None,
        cond: Mapping[str, Any] | None = None,
        prefix: str = "sample",
    ) -> list[Path]:
        from $package.core import write_samples

        return write_samples(samples, Path(out_dir), prefix=prefix)

    def metrics(self) -> Mapping[str, Any]:
        from $package.core import moments

        return {"moments": moments}


modality = $class_name()
''')

CORE = Template('''\
"""Data, network, writer and metric of the ``$name`` modality: the heavy half (torch, numpy).

Items are ``{"x": tensor of shape (1, L)}``: one channel of length ``L`` (``data.length``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from polydiff.protocol import DataError
from torch import nn

# ----------------------------------------------------------------------------------------- data


class Sequences(torch.utils.data.Dataset):
    """``(N, L)`` values as items ``{"x": (1, L)}``."""

    def __init__(self, values: torch.Tensor):
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.values[i][None]}


def make_sines(n: int, length: int, seed: int) -> torch.Tensor:
    """``n`` sums of two sines of 1-3 periods, random phase and amplitude -> ``(n, length)``.

    The amplitudes put the standard deviation near 0.5, the ``param.sigma_data`` polydiff assumes.
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length)
    periods = torch.randint(1, 4, (n, 2, 1), generator=g).float()
    phase = 2 * math.pi * torch.rand(n, 2, 1, generator=g)
    amplitude = 0.35 + 0.3 * torch.rand(n, 2, 1, generator=g)
    return (amplitude * torch.sin(2 * math.pi * periods * t + phase)).sum(1)


def read_npy(path: Path, length: int) -> torch.Tensor:
    """Your data: a ``.npy`` array of ``N`` sequences, shape ``(N, length)``.

    Raises :class:`DataError` with one line naming the file for anything else.
    """
    expected = f"expected a .npy array of shape (N, {length})"
    if path.suffix != ".npy":
        raise DataError(f"{path}: {expected} (or the built-in dataset 'sines')")
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: not a readable .npy array ({reason})") from None
    if not isinstance(values, np.ndarray) or values.ndim != 2 or len(values) < 1:
        raise DataError(f"{path}: {expected}, got shape {getattr(values, 'shape', '?')}")
    if values.shape[1] != length:
        raise DataError(
            f"{path}: {expected}, got length {values.shape[1]}; set [data] length = "
            f"{values.shape[1]} in a --config file"
        )
    if values.dtype.kind not in "iuf" or not np.isfinite(values).all():
        raise DataError(f"{path}: {expected} of finite real numbers, got dtype {values.dtype}")
    return torch.as_tensor(values, dtype=torch.float32)


def build_dataset(source: str | Path, config: Mapping[str, Any], split: str) -> Sequences:
    data = config["data"]
    length = int(data["length"])
    if str(source) == "sines":
        return Sequences(make_sines(int(data["size"]), length, seed=0 if split == "train" else 1))
    # a user file serves both splits; hold rows out yourself if you need a test set
    return Sequences(read_npy(Path(source), length))


# -------------------------------------------------------------------------------------- network


class Denoiser(nn.Module):
    """``net(x_in, c_noise)``: an MLP over the whole sequence, told the noise level through a
    sinusoidal embedding of ``c_noise``. Shapes: ``(B, 1, L), (B,) -> (B, 1, L)``."""

    def __init__(self, length: int, width: int = 128, depth: int = 3):
        super().__init__()
        # fixed frequencies covering c_noise's range (log(sigma) / 4 under EDM: about -2 to 2)
        freqs = torch.exp(torch.linspace(0.0, math.log(64.0), 16))
        self.register_buffer("freqs", freqs, persistent=False)
        self.embed = nn.Sequential(nn.Linear(32, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(length, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)
            )
            for _ in range(depth)
        )
        self.out = nn.Linear(width, length)
        # a zero last layer starts the denoiser at the preconditioning's skip connection
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        f = c_noise.float()[:, None] * self.freqs
        emb = self.embed(torch.cat([f.sin(), f.cos()], dim=1))
        h = self.inp(x_in.flatten(1))
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h).reshape(x_in.shape)


# ------------------------------------------------------------------------------ writer, metric


def write_samples(samples: torch.Tensor, out_dir: Path, *, prefix: str = "sample") -> list[Path]:
    """``<prefix>s.png`` (a plot, when matplotlib is installed) and ``<prefix>s.csv`` (one
    sequence a row) in ``out_dir``; the summary comes first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    values = samples.reshape(len(samples), -1).float().numpy()
    csv = out_dir / f"{prefix}s.csv"
    np.savetxt(csv, values, delimiter=",", fmt="%.6f")
    png = _plot(values, out_dir / f"{prefix}s.png")
    return [csv] if png is None else [png, csv]


def _plot(values: np.ndarray, path: Path) -> Path | None:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # plotting is optional: the CSV holds everything
        return None
    shown = values[:16]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    # a Figure without pyplot: no GUI backend, no global state
    fig = Figure(figsize=(2.4 * cols, 1.5 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax, row in zip(axes.flat, shown, strict=False):
        ax.plot(row, linewidth=1.2)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    fig.savefig(path, dpi=80)
    return path


def moments(samples: torch.Tensor, config: Mapping[str, Any]) -> dict[str, float]:
    """Mean and standard deviation of the samples beside the data's (``reference/``), and the
    mean gap of their per-position values (0 for a perfect match)."""
    from polydiff.config import data_source

    real = build_dataset(data_source(config["data"]), config, "test").values.double()
    fake = samples.reshape(len(samples), -1).double()
    return {
        "mean": float(fake.mean()),
        "reference/mean": float(real.mean()),
        "std": float(fake.std(correction=0)),
        "reference/std": float(real.std(correction=0)),
        "mean_gap": float((fake.mean(0) - real.mean(0)).abs().mean()),
        "std_gap": float((fake.std(0, correction=0) - real.std(0, correction=0)).abs().mean()),
    }
''')

TEST = Template('''\
"""The plugin against polydiff's whole contract: run ``pytest`` after every change."""

from pathlib import Path

import numpy as np
from polydiff.config import defaults_for
from polydiff.testing import check_modality

from $package import modality

#: small enough for seconds; the kit itself trains 2 steps and samples with 2 steps
TINY = {"data": {"size": 16}, "model": {"width": 16, "depth": 1}}


def write_bad_npy(folder: Path) -> Path:
    """A file the reader must refuse with a one-line DataError: 3-D instead of (N, L)."""
    path = folder / "bad.npy"
    np.save(path, np.zeros((2, 3, 4)))
    return path


def test_conformance(tmp_path: Path) -> None:
    check_modality(modality, tmp_path, config=TINY, bad_file=write_bad_npy)


def test_reads_a_user_file(tmp_path: Path) -> None:
    config = defaults_for(modality)
    length = config["data"]["length"]
    path = tmp_path / "mine.npy"
    np.save(path, np.random.default_rng(0).normal(size=(8, length)))
    data = modality.build_dataset(str(path), config, "train")
    assert len(data) == 8 and data[0]["x"].shape == (1, length)
''')
