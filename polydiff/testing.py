"""Conformance checks any modality plugin can run in its own tests.

::

    from polydiff.testing import check_modality

    def test_conforms(tmp_path):
        check_modality(modality, tmp_path, config={"model": {"width": 8}},
                       bad_file=lambda d: (d / "broken.ply").write_bytes(b"ply\\n") or d / "broken.ply")

:func:`check_modality` runs the plugin through the whole contract — light import, members and
signatures, each built-in dataset's item schema, collation and masks, the network's output
structure with and without each condition (and with the null condition), the noise space, one
training step, a two-step sample with two samplers, the writer, the metrics' schema, and a
:class:`~polydiff.protocol.DataError` on a bad file — and raises one :class:`ConformanceError`
listing every breach by name, not just the first. Checks are independent where they can be; a
check that needs an earlier result (the sample needs the trained network) is reported as
skipped when that result is missing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polydiff import hooks
from polydiff.protocol import (
    DataError,
    deprecations,
    missing_members,
    signature_problems,
    version_problem,
)
from polydiff.state import check_mask, leaves, tree_map

__all__ = ["CHECKS", "ConformanceError", "Report", "check_modality", "registry_of"]

#: every check, in the order it runs; pass names to ``skip`` to leave some out
CHECKS: tuple[str, ...] = (
    "light_import",
    "members",
    "config",
    "datasets",
    "collate",
    "network",
    "noise_space",
    "train_step",
    "sample",
    "writer",
    "metrics",
    "bad_file",
)

#: modules an entry-point module must not import (the registry imports it to list plugins)
HEAVY_MODULES: tuple[str, ...] = ("torch", "torchaudio", "torch_geometric", "scipy", "sklearn", "PIL")


class ConformanceError(AssertionError):
    """One or more checks failed; the message lists each as ``check: what is wrong``."""


@dataclass
class Report:
    """Outcome of :func:`check_modality`: ``passed``, ``failed`` (``{check: message}``) and
    ``skipped`` (``{check: why}``) check names, and the samples drawn (for further tests)."""

    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    samples: Any = field(default=None, repr=False)

    def summary(self) -> str:
        lines = [f"{name}: {why}" for name, why in self.failed.items()]
        return f"{len(self.failed)} conformance check(s) failed:\n  " + "\n  ".join(lines)


def check_modality(
    modality: Any,
    tmp_path: Path,
    *,
    config: Mapping[str, Any] | None = None,
    datasets: Iterable[str] | None = None,
    bad_file: Path | Callable[[Path], Path] | None = None,
    samplers: tuple[str, str] = ("euler", "heun"),
    n_samples: int = 8,
    skip: Iterable[str] = (),
    raise_on_failure: bool = True,
) -> Report:
    """Certify ``modality`` against the contract; raise :class:`ConformanceError` listing breaches.

    ``config``: overrides merged over the plugin's defaults (make the network and data tiny here;
    the kit already sets 2 training steps, batch 4, no snapshots). ``datasets``: built-in names to
    check (default: all of ``builtin_datasets``). ``bad_file``: a file the plugin must refuse with
    a ``DataError`` (or a function writing one into the folder it is given and returning its
    path); without it the check is skipped. ``skip``: check names (:data:`CHECKS`) to leave out,
    e.g. ``"light_import"`` for a modality defined in a test module. ``n_samples``: how many
    samples each sampler draws (the writer and the metrics get those of the first).
    """
    from polydiff.config import data_source, deep_merge, defaults_for

    tmp_path = Path(tmp_path)
    report = Report()
    skip = set(skip)
    unknown = skip - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks to skip: {', '.join(sorted(unknown))}")
    state: dict[str, Any] = {}

    def run(name: str, fn: Callable[[], None], needs: Iterable[str] = ()) -> None:
        if name in skip:
            report.skipped[name] = "skipped by the caller"
            return
        missing = [n for n in needs if n not in state]
        if missing:
            report.skipped[name] = f"needs {', '.join(missing)}, which failed"
            return
        try:
            fn()
        except Exception as exc:  # every breach is collected, none stops the others
            message = " ".join(str(exc).split()) or type(exc).__name__
            report.failed[name] = f"{type(exc).__name__}: {message}"
        else:
            report.passed.append(name)

    tiny = {
        "train": {
            "steps": 2, "batch_size": 4, "log_every": 1, "warmup_steps": 1, "snapshot_every": 0,
            "plot_every": 0, "checkpoint_every": 1000, "device": "cpu", "threads": 1,
            "compile": False,  # the contract is checked, not the speed: no minute of inductor
        },
        "sample": {"n": 4, "steps": 2},
    }

    def light_import() -> None:
        module = type(modality).__module__
        if module in ("__main__", "builtins"):
            raise AssertionError(f"the modality's class lives in {module}; it cannot be imported")
        code = (
            "import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print(','.join(m for m in sys.argv[2].split(',') if m in sys.modules))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, module, ",".join(HEAVY_MODULES)],
            capture_output=True, text=True, timeout=120,
        )
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            raise AssertionError(f"importing {module} failed: {last}")
        heavy = out.stdout.strip()
        if heavy:
            raise AssertionError(f"importing {module} imports {heavy}; import them inside methods")

    def members() -> None:
        problems = [f"missing {m}" for m in missing_members(modality)]
        bad_version, _ = version_problem(getattr(modality, "protocol_version", None))
        problems += [bad_version] if bad_version else []
        problems += signature_problems(modality)
        problems += deprecations(modality)
        if not isinstance(getattr(modality, "description", None), str) or not modality.description:
            problems.append("description must be a non-empty string")
        if problems:
            raise AssertionError("; ".join(problems))

    def config_check() -> None:
        defaults = modality.default_config()
        if not isinstance(defaults, Mapping) or not all(isinstance(v, Mapping) for v in defaults.values()):
            raise AssertionError("default_config() must return a mapping of sections (mappings)")
        for section in ("data", "model"):
            if section not in defaults:
                raise AssertionError(f"default_config() has no [{section}] section")
        json.dumps(defaults)  # a run folder records it as JSON
        cfg = deep_merge(deep_merge(defaults_for(modality), tiny), config or {})
        names = list(datasets) if datasets is not None else list(getattr(modality, "builtin_datasets", ()))
        source = data_source(cfg["data"])
        if not source and names:
            cfg["data"]["dataset"] = names[0]
        state["config"] = cfg
        state["names"] = names

    def datasets_check() -> None:
        cfg = state["config"]
        problems = []
        built: dict[str, Any] = {}
        names = state["names"] or [data_source(cfg["data"])]
        for name in names:
            for split in ("train", "test"):
                try:
                    ds = modality.build_dataset(name, cfg, split)
                    if len(ds) < 1:
                        raise AssertionError("is empty")
                    for i in range(min(len(ds), 4)):
                        _check_item(ds[i], modality)
                except Exception as exc:
                    problems.append(f"{name}/{split}: {type(exc).__name__}: {exc}")
                    continue
                built[(name, split)] = ds
        if problems:
            raise AssertionError("; ".join(problems))
        first = data_source(cfg["data"]) or names[0]
        state["dataset"] = built.get((first, "train")) or next(iter(built.values()))

    def collate_check() -> None:
        ds = state["dataset"]
        items = [ds[i % len(ds)] for i in range(3)]
        batch = hooks.collate(modality, items)
        if _batch_size(batch.x) != 3:
            raise AssertionError(f"collate of 3 items gave a batch of {_batch_size(batch.x)}")
        state["batch"] = batch

    def network_check() -> None:
        cfg, batch = state["config"], state["batch"]
        net = modality.build_network(cfg)
        if not isinstance(net, torch.nn.Module):
            raise AssertionError(f"build_network returned {type(net).__name__}, not a torch.nn.Module")
        b = _batch_size(batch.x)
        c_noise = torch.full((b,), 0.25)
        accepted = tuple(getattr(modality, "conditions", ()) or ())
        cond = {k: v for k, v in batch.cond.items() if k in accepted}
        variants = {"no conditions": {}} if not cond else {}
        if cond:
            from polydiff.conditions import null_conditions

            variants["all conditions"] = cond
            variants["null conditions"] = null_conditions(cond, modality)
            for k in cond:
                variants[f"only {k}"] = {k: cond[k]}
        net.eval()
        with torch.no_grad():
            for label, c in variants.items():
                out = net(batch.x, c_noise, **c)
                _same_structure(out, batch.x, f"output with {label}")
        state["network"] = net

    def noise_space_check() -> None:
        cfg, batch = state["config"], state["batch"]
        space = hooks.noise_space(modality, cfg)
        g = torch.Generator().manual_seed(0)
        z = tree_map(lambda t: torch.randn(t.shape, generator=g), batch.x)
        p1 = space.project(z, batch.mask)
        p2 = space.project(p1, batch.mask)
        _close(p1, p2, "projection is not idempotent")
        _close(space.project(_as_float(batch.x), batch.mask), _as_float(batch.x),
               "training data do not lie in the noise space")
        padded = _padded_max(p1, batch.mask)
        if padded > 0:
            raise AssertionError(f"projection leaves padded entries nonzero (max |value| {padded:.3g})")
        dims = space.dims(batch.x, batch.mask)
        if dims.shape != (_batch_size(batch.x),) or not bool((dims > 0).all()):
            raise AssertionError(f"dims() must be positive, one per sample; got {tuple(dims.tolist())}")
        state["space"] = space

    def train_step() -> None:
        from polydiff.train import train

        result = train(modality, state["config"], tmp_path / "run", sample_at_end=False)
        if result.steps < 1 or not math.isfinite(float(result.final_loss)):
            raise AssertionError(f"training gave step {result.steps}, loss {result.final_loss}")
        state["run"] = result

    def sample() -> None:
        from polydiff.generate import build_denoiser, generate

        cfg = state["config"]
        denoiser = build_denoiser(modality, cfg)
        outs = []
        for name in samplers:
            x, layout, nfe = generate(
                modality, cfg, denoiser.eval(), n=n_samples, sampler=name, steps=2, dataset=state["dataset"]
            )
            if nfe < 1:
                raise AssertionError(f"{name}: no network evaluations")
            for t in leaves(x):
                if not torch.isfinite(t).all():
                    raise AssertionError(f"{name}: samples are not finite")
            check_mask(x, layout.mask, f"samples of {name}")
            if "space" in state:
                _close(state["space"].project(x, layout.mask), x, f"{name}: samples leave the noise space")
            outs.append((x, layout))
        state["samples"] = outs[0]
        report.samples = outs[0][0]

    def writer() -> None:
        x, layout = state["samples"]
        out_dir = (tmp_path / "written").resolve()
        cpu = tree_map(lambda t: t.detach().cpu(), x)
        mask = None if layout.mask is None else tree_map(lambda t: t.cpu(), layout.mask)
        paths = hooks.call(modality, "write_samples", cpu, out_dir, mask=mask, cond=layout.cond,
                           config=state["config"])
        if not isinstance(paths, list) or not paths:
            raise AssertionError("write_samples must return a non-empty list of paths (summary first)")
        for p in paths:
            p = Path(p)
            if not p.resolve().is_relative_to(out_dir):
                raise AssertionError(f"wrote {p} outside out_dir {out_dir}")
            if not p.is_file():
                raise AssertionError(f"returned {p}, which does not exist")

    def metrics() -> None:
        from polydiff.metrics import evaluate_samples

        if not hooks.call(modality, "metrics"):
            return
        x, layout = state["samples"]
        cpu = tree_map(lambda t: t.detach().cpu(), x)
        mask = None if layout.mask is None else tree_map(lambda t: t.cpu(), layout.mask)
        result = evaluate_samples(modality, cpu, state["config"], mask=mask, cond=layout.cond)
        for metric, values in result.items():
            if not values:
                raise AssertionError(f"metric {metric!r} returned nothing")

    def bad_file_check() -> None:
        if bad_file is None:
            report.skipped["bad_file"] = "no bad_file given"
            return
        folder = tmp_path / "bad-data"
        folder.mkdir(parents=True, exist_ok=True)
        path = bad_file(folder) if callable(bad_file) else Path(bad_file)
        try:
            ds = modality.build_dataset(str(path), state["config"], "train")
            for i in range(len(ds)):
                ds[i]
        except DataError as exc:
            if "\n" in str(exc) or not str(exc):
                raise AssertionError(f"DataError must be one non-empty line, got {str(exc)!r}") from None
            return
        raise AssertionError(f"{path}: read without a DataError")

    run("light_import", light_import)
    run("members", members)
    run("config", config_check)
    run("datasets", datasets_check, needs=["config"])
    run("collate", collate_check, needs=["dataset"])
    run("network", network_check, needs=["batch"])
    run("noise_space", noise_space_check, needs=["batch"])
    run("train_step", train_step, needs=["network"])
    run("sample", sample, needs=["network"])
    run("writer", writer, needs=["samples"])
    run("metrics", metrics, needs=["samples"])
    run("bad_file", bad_file_check, needs=["config"])
    if "bad_file" in report.skipped and "bad_file" in report.passed:
        report.passed.remove("bad_file")
    if report.failed and raise_on_failure:
        raise ConformanceError(report.summary())
    return report


def registry_of(monkeypatch: Any, modality: Any, distribution: str, version: str = "0") -> Any:
    """A registry holding only ``modality`` (no entry-point scan), made the one every CLI command
    uses for the rest of the test (``monkeypatch`` is pytest's fixture); returns it."""
    import polydiff.registry as registry

    reg = registry.Registry(autoload=False)
    reg.register(modality, distribution=distribution, version=version)
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    return reg


# ----------------------------------------------------------------------------------- helpers


def _batch_size(x: Any) -> int:
    return leaves(x)[0].shape[0]


def _check_item(item: Any, modality: Any) -> None:
    if not isinstance(item, Mapping) or "x" not in item:
        raise AssertionError(f"an item must be a mapping with 'x', got {type(item).__name__}")
    unknown = set(item) - {"x", "mask", "cond"}
    if unknown:
        raise AssertionError(f"an item has unknown keys {sorted(unknown)} (x, mask, cond)")
    x = item["x"]
    for t in leaves(x):
        if not isinstance(t, Tensor):
            raise AssertionError(f"'x' holds a {type(t).__name__}, not a tensor")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise AssertionError("'x' holds NaN or infinite values")
    if item.get("mask") is not None:
        check_mask(tree_map(lambda t: t[None], x), tree_map(lambda t: t[None], item["mask"]), "item mask")
    cond = item.get("cond") or {}
    if not isinstance(cond, Mapping):
        raise AssertionError("'cond' must be a mapping of condition names")


def _same_structure(out: Any, like: Any, what: str) -> None:
    if isinstance(like, Mapping):
        if not isinstance(out, Mapping) or set(out) != set(like):
            got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
            raise AssertionError(f"{what}: expected keys {sorted(like)}, got {got}")
        for k in like:
            _same_structure(out[k], like[k], f"{what} [{k}]")
        return
    if not isinstance(out, Tensor) or out.shape != like.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise AssertionError(f"{what}: expected shape {tuple(like.shape)}, got {got}")
    if not torch.isfinite(out).all():
        raise AssertionError(f"{what}: not finite")


def _as_float(x: Any) -> Any:
    return tree_map(lambda t: t.float(), x)


def _close(a: Any, b: Any, what: str, tol: float = 1e-4) -> None:
    for ta, tb in zip(leaves(a), leaves(b), strict=True):
        err = float((ta.float() - tb.float()).abs().max()) if ta.numel() else 0.0
        scale = max(1.0, float(tb.float().abs().max()) if tb.numel() else 0.0)
        if err > tol * scale:
            raise AssertionError(f"{what} (max difference {err:.3g})")


def _padded_max(x: Any, mask: Any) -> float:
    from polydiff.state import expand_mask, mask_leaf

    if mask is None:
        return 0.0
    items = x.items() if isinstance(x, Mapping) else [(None, x)]
    worst = 0.0
    for key, v in items:
        m = expand_mask(mask_leaf(mask, key), v)
        if m is not None and bool((m <= 0).any()):
            worst = max(worst, float(v[m <= 0].abs().max()))
    return worst
