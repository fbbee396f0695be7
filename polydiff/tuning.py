"""Noise-level grids tuned to one model and one solver, without training.

A fixed grid (Karras, log-SNR) depends only on the SDE's sigma range; the best grid also depends on
the data (where the denoiser changes fast) and on the solver. :func:`tune_sigmas` searches the
grid that minimises the RMS distance, on a calibration batch, between the solver's output and a
fine-step solution of the probability-flow ODE from the same noise.

Why this objective rather than the KL bound of "Align Your Steps" (Sabour et al. 2024): that bound
is derived for the stochastic solvers and needs the data; our distance is exactly the error the
analytic benchmark measures, needs nothing but the denoiser (so every modality has it through the
contract, guided and conditional models included), and sees the solver as implemented — its
multistep history, lower-order final steps, UniPC's corrector. It is checked on held-out noise
(``holdout`` below): a tuned grid that does worse there than the default grid is not kept.

The search is a coordinate pattern search on log sigma: each level except sigma_max (the prior's
level) moves toward either neighbour by a fraction of the gap, a move kept when it lowers the
objective, the fraction halved after a sweep without gain. Every candidate stays strictly
decreasing inside [sigma_min, sigma_max] by construction, and the search never returns a grid
worse than the one it started from. Each evaluation costs one sampling run of N calls on the
calibration batch; no gradient flows through the solver (its step coefficients are Python floats).

Tuned grids live in the run folder, ``schedules.json``, keyed by sampler and steps; ``polydiff
sample|evaluate RUN --schedule tuned`` reads them through :func:`schedule_options`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polydiff.errors import UserError
from polydiff.protocol import DataError
from polydiff.sampling import get_sampler, get_sigmas, run_sampler
from polydiff.sde import SDE
from polydiff.state import Mask, State, pack, pack_mask

SCHEDULES_FILE = "schedules.json"
TUNED = "tuned"
#: the fine-step solution tuned grids are measured against (third order, smooth on log-SNR)
REFERENCE_SAMPLER, REFERENCE_STEPS = "dpmpp_3m", 100
#: options of a reference sampler: dpmpp_3m with its Taylor-exact third-order weights (its default
#: weights are damped for coarse grids, which a 100-step reference does not need)
REFERENCE_OPTIONS: dict[str, dict[str, Any]] = {"dpmpp_3m": {"taylor": True}}


@dataclass
class TunedSchedule:
    """A tuned grid and how it compares with the default grid it started from."""

    sampler: str
    steps: int
    nfe: int
    sigmas: list[float]
    default_sigmas: list[float]
    error: float  # RMS distance to the reference on the calibration batch
    default_error: float
    holdout_error: float | None = None
    default_holdout_error: float | None = None
    evaluations: int = 0
    seconds: float = 0.0
    reference: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return schedule_key(self.sampler, self.steps)

    def tensor(self) -> Tensor:
        return torch.tensor(self.sigmas, dtype=torch.float64)


def schedule_key(sampler: str, steps: int) -> str:
    return f"{sampler}/{int(steps)}"


# ---- the search ----------------------------------------------------------------------------------


def tune_sigmas(
    objective: Callable[[Tensor], float],
    init: Tensor,
    sde: SDE,
    *,
    max_evals: int = 300,
    min_step: float = 1e-3,
    init_value: float | None = None,
) -> tuple[Tensor, float, int]:
    """Minimise ``objective(sigmas)`` over grids with the first level and the final 0 of ``init``
    fixed; returns (best grid, its value, evaluations). ``init`` is a decreasing float64 grid;
    ``init_value``, its objective when already known (not evaluated again)."""
    sig = init.detach().to("cpu", torch.float64).clone()
    zero_end = float(sig[-1]) == 0.0
    logs = sig[: -1 if zero_end else None].log().tolist()
    lo_bound = math.log(sde.sigma_min)
    free = list(range(1, len(logs)))

    first = float(sig[0])  # the prior's level, kept bit for bit

    def grid(ls: list[float]) -> Tensor:
        out = torch.tensor([first, *(math.exp(v) for v in ls[1:])], dtype=torch.float64)
        return torch.cat([out, out.new_zeros(1)]) if zero_end else out

    if init_value is None:
        best, evals = float(objective(grid(logs))), 1
    else:
        best, evals = float(init_value), 0
    step = 0.5
    while step >= min_step and evals < max_evals and free:
        improved = False
        for i in free:
            upper = logs[i - 1]
            lower = logs[i + 1] if i + 1 < len(logs) else lo_bound
            for target in (upper, lower):
                cand = logs[i] + step * (target - logs[i])
                if not lower < cand < upper and not (i + 1 == len(logs) and cand == lower):
                    continue
                trial = [*logs[:i], cand, *logs[i + 1 :]]
                value = float(objective(grid(trial)))
                evals += 1
                if math.isfinite(value) and value < best:
                    best, logs, improved = value, trial, True
                    break
                if evals >= max_evals:
                    break
            if evals >= max_evals:
                break
        if not improved:
            step *= 0.5
    return grid(logs), best, evals


#: the family searched for a starting grid: Karras rho (log-SNR is its rho -> infinity limit) and
#: the lowest nonzero level as a multiple of sigma_min
FAMILY_RHO = (3.0, 5.0, 7.0, 10.0, 15.0, 30.0, 60.0)
FAMILY_LOW = (1.0, 2.5, 5.0, 10.0, 20.0)


def best_of_family(
    objective: Callable[[Tensor], float], sde: SDE, steps: int, extra: tuple[str, ...] = (),
    max_evals: int | None = None,
) -> tuple[Tensor, int]:
    """The grid of :data:`FAMILY_RHO` x :data:`FAMILY_LOW` (and the built-in grids ``extra``)
    with the lowest ``objective``; returns (grid, evaluations). With ``max_evals`` below the
    family's size, the built-in grids and an even spread of the family are scored."""
    from polydiff.sampling.schedules import karras

    cands = [get_sigmas(sde, steps, name, dtype=torch.float64) for name in extra]
    family = []
    for low in FAMILY_LOW:
        lo = sde.sigma_min * low
        if lo >= sde.sigma_max or steps < 2:
            continue
        family += [karras(lo, sde.sigma_max, steps, rho) for rho in FAMILY_RHO]
    room = len(family) if max_evals is None else max(max_evals - len(cands), 0)
    if room < len(family):
        family = [family[round(i * (len(family) - 1) / max(room - 1, 1))] for i in range(room)]
    cands += family
    scored = [(float(objective(c)), i) for i, c in enumerate(cands)]
    finite = [v for v in scored if math.isfinite(v[0])]
    if not finite:
        return cands[0], len(cands)
    return cands[min(finite)[1]], len(cands)


def steps_for_nfe(sampler: str, nfe: int, sde: SDE, **options: Any) -> int:
    """The most steps (nonzero levels) whose run makes at most ``nfe`` denoiser calls."""
    get_sampler(sampler)
    for steps in range(nfe, 0, -1):
        if nfe_of(sampler, steps, sde, **options) <= nfe:
            return steps
    raise UserError(f"{sampler} needs more than {nfe} network evaluations for a single step")


def rms_distance(x: State, ref: State, mask: Mask = None) -> float:
    """Root-mean-square distance per valid entry between two states."""
    a, _ = pack(x)
    b, _ = pack(ref)
    diff = (a.to(torch.float64) - b.to(torch.float64)) ** 2
    m = pack_mask(mask, x)
    if m is None:
        return float(diff.mean().sqrt())
    m = m.to(diff.dtype).expand_as(diff)
    return float(((diff * m).sum() / m.sum().clamp_min(1)).sqrt())


def tune(
    solve: Callable[[Tensor, int], State],
    sde: SDE,
    *,
    sampler: str,
    steps: int,
    schedule: str | None = None,
    reference: Callable[[int], State],
    mask: Callable[[int], Mask] | None = None,
    seed: int = 0,
    holdout_seed: int | None = 1,
    max_evals: int = 300,
    options: Mapping[str, Any] | None = None,
    starts: tuple[str, ...] = ("karras", "logsnr"),
) -> TunedSchedule:
    """Tune the grid of ``sampler`` at ``steps`` levels for any model (``max_evals`` sampling runs
    from each of two starting grids: the default, and the best of a family that includes
    ``starts``; see :func:`best_of_family`).

    ``solve(sigmas, seed)`` samples the calibration batch drawn with ``seed`` on the grid ``sigmas``;
    ``reference(seed)`` is the fine-step solution from the same noise; ``mask(seed)`` the batch's
    valid entries. ``holdout_seed``: a second batch, never seen by the search, scored for both grids.
    """
    spec = get_sampler(sampler)
    if spec.stochastic:
        raise UserError(
            f"{sampler} is stochastic: tuned grids target the probability-flow ODE, so tune a "
            "deterministic sampler (euler, heun, dpmpp_2m, dpmpp_3m, unipc, ddim ...)"
        )
    t0 = time.perf_counter()
    init = get_sigmas(sde, steps, schedule or spec.default_schedule, dtype=torch.float64)
    ref = reference(seed)
    m = mask(seed) if mask is not None else None

    def objective(sig: Tensor) -> float:
        return rms_distance(solve(sig, seed), ref, m)

    default_error = objective(init)
    # the pattern search is local, so it starts twice: from the default grid (it can only improve
    # on it) and from the best member of a family of grids (Karras rho x lowest level, and
    # log-SNR). The lowest level matters most on sharp data: a grid that spends steps far below the
    # data's own scale wastes them (benchmarks/analytic.py --hard: on separated sharp modes the
    # family start cut the tuned 10-NFE error of dpmpp_3m 2.7x against starting from Karras and
    # log-SNR alone)
    family, evals = best_of_family(objective, sde, steps, starts, max_evals=max_evals)
    evals += 1  # the default grid's own score
    best = None
    for start in (init, family):
        known = default_error if start is init else None
        found = tune_sigmas(objective, start, sde, max_evals=max_evals, init_value=known)
        evals += found[2]
        if best is None or found[1] < best[1]:
            best = found
    sigmas, error, _ = best
    result = TunedSchedule(
        sampler=sampler,
        steps=steps,
        nfe=nfe_of(sampler, steps, sde, **dict(options or {})),
        sigmas=sigmas.tolist(),
        default_sigmas=init.tolist(),
        error=error,
        default_error=default_error,
        evaluations=evals,
        options=dict(options or {}),
    )
    if holdout_seed is not None:
        ref_h = reference(holdout_seed)
        m_h = mask(holdout_seed) if mask is not None else None
        result.holdout_error = rms_distance(solve(sigmas, holdout_seed), ref_h, m_h)
        result.default_holdout_error = rms_distance(solve(init, holdout_seed), ref_h, m_h)
        if result.holdout_error > result.default_holdout_error:
            # fitted to the calibration batch only: keep the default grid rather than ship a
            # grid that is worse on noise it has not seen
            result.extra["kept_default"] = True
            result.sigmas, result.error = init.tolist(), default_error
            result.holdout_error = result.default_holdout_error
    result.seconds = time.perf_counter() - t0
    return result


def tune_denoiser(
    denoiser: Callable[..., State],
    sde: SDE,
    noise_fn: Callable[[int], State],
    *,
    sampler: str,
    steps: int,
    schedule: str | None = None,
    reference_sampler: str = REFERENCE_SAMPLER,
    reference_steps: int = REFERENCE_STEPS,
    seed: int = 0,
    holdout_seed: int | None = 1,
    max_evals: int = 300,
    **options: Any,
) -> TunedSchedule:
    """:func:`tune` for a plain denoiser callable (an analytic target, a bare network):
    ``noise_fn(seed)`` draws the standard-normal calibration noise. ``options`` go to the sampler."""

    def solve(sig: Tensor, s: int) -> State:
        return run_sampler(denoiser, sde, noise=noise_fn(s), sampler=sampler, sigmas=sig, **options).x

    cache: dict[int, State] = {}

    def reference(s: int) -> State:
        if s not in cache:
            cache[s] = run_sampler(
                denoiser, sde, noise=noise_fn(s), sampler=reference_sampler, steps=reference_steps,
                **REFERENCE_OPTIONS.get(reference_sampler, {}),
            ).x
        return cache[s]

    result = tune(
        solve, sde, sampler=sampler, steps=steps, schedule=schedule, reference=reference,
        seed=seed, holdout_seed=holdout_seed, max_evals=max_evals, options=options,
    )
    result.reference = {"sampler": reference_sampler, "steps": reference_steps}
    return result


def tune_modality(
    modality: Any,
    config: Mapping[str, Any],
    denoiser: Callable[..., State],
    *,
    sampler: str,
    steps: int,
    n: int = 64,
    seed: int = 0,
    holdout_seed: int | None = 1,
    device: torch.device | str = "cpu",
    guidance: float | None = None,
    schedule: str | None = None,
    reference_sampler: str = REFERENCE_SAMPLER,
    reference_steps: int = REFERENCE_STEPS,
    max_evals: int = 300,
    dataset: Any = None,
) -> TunedSchedule:
    """:func:`tune` for a trained model of any modality, through :func:`polydiff.generate.generate`
    (so the calibration batch has the layout, masks, conditions, guidance and noise-space
    projection that sampling will have)."""
    from polydiff.config import data_source
    from polydiff.generate import generate
    from polydiff.sde import build_sde

    sde = build_sde(config["sde"])
    if dataset is None:
        dataset = modality.build_dataset(data_source(config["data"]), config, "train")
    masks: dict[int, Mask] = {}

    def draw(sampler_name: str, s: int, **kw: Any) -> State:
        with torch.no_grad():
            x, layout, _ = generate(
                modality, config, denoiser, n=n, sampler=sampler_name, seed=s, device=device,
                guidance=guidance, dataset=dataset, **kw,
            )
        masks[s] = layout.mask
        return x

    def solve(sig: Tensor, s: int) -> State:
        return draw(sampler, s, steps=steps, sigmas=sig)

    cache: dict[int, State] = {}

    def reference(s: int) -> State:
        if s not in cache:
            cache[s] = draw(
                reference_sampler, s, steps=reference_steps,
                **REFERENCE_OPTIONS.get(reference_sampler, {}),
            )
        return cache[s]

    result = tune(
        solve, sde, sampler=sampler, steps=steps, schedule=schedule, reference=reference,
        mask=lambda s: masks.get(s), seed=seed, holdout_seed=holdout_seed, max_evals=max_evals,
    )
    result.reference = {"sampler": reference_sampler, "steps": reference_steps, "n": n}
    return result


def nfe_of(sampler: str, steps: int, sde: SDE, **options: Any) -> int:
    """Denoiser calls of ``sampler`` on a grid of ``steps`` levels ending in 0 (counted on a
    one-entry probe, so the rule of every sampler is its own)."""
    probe = torch.zeros(1, 1, dtype=torch.float64)
    return run_sampler(
        lambda x, s, **_: torch.zeros_like(x), sde, noise=probe, sampler=sampler, steps=steps,
        generator=torch.Generator().manual_seed(0), **options,
    ).nfe


# ---- the run folder ------------------------------------------------------------------------------


def read_schedules(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The tuned grids of a run folder by key ``sampler/steps`` (empty when none)."""
    path = Path(run_dir) / SCHEDULES_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        entries = data["schedules"]
        if not isinstance(entries, dict):
            raise TypeError("'schedules' is not a mapping")
        for key, entry in entries.items():
            sig = entry["sigmas"]
            if not isinstance(sig, list) or not all(isinstance(v, (int, float)) for v in sig):
                raise TypeError(f"{key}: sigmas is not a list of numbers")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable tuned schedules ({exc})") from None
    return entries


def save_schedule(run_dir: Path, result: TunedSchedule, **provenance: Any) -> Path:
    """Add (or replace) ``result`` in the run folder's ``schedules.json``; returns the file."""
    return _store(run_dir, result.key, {**asdict(result), **provenance})


def store_grid(run_dir: Path, sampler: str, steps: int, sigmas: Tensor, **info: Any) -> Path:
    """Store a grid made elsewhere (a distilled student's) as the run's tuned ``sampler/steps``."""
    entry = {"sampler": sampler, "steps": int(steps), "sigmas": sigmas.tolist(), **info}
    return _store(run_dir, schedule_key(sampler, steps), entry)


def _store(run_dir: Path, key: str, entry: dict[str, Any]) -> Path:
    from polydiff.atomic import atomic_write_text

    entries = read_schedules(run_dir)
    entries[key] = entry
    path = Path(run_dir) / SCHEDULES_FILE
    atomic_write_text(path, json.dumps({"version": 1, "schedules": entries}, indent=2) + "\n")
    return path


def tuned_sigmas(run_dir: Path, sampler: str, steps: int) -> Tensor:
    """The tuned grid of ``sampler`` at ``steps`` levels stored in ``run_dir``, or a one-line error
    saying which grids exist and how to make this one."""
    entries = read_schedules(run_dir)
    entry = entries.get(schedule_key(sampler, steps))
    if entry is None:
        have = ", ".join(sorted(entries)) or "none"
        raise UserError(
            f"{run_dir}: no tuned schedule for {sampler} at {steps} steps (tuned: {have}); make one "
            f"with: polydiff schedule {run_dir} --sampler {sampler} --steps {steps}"
        )
    return torch.tensor(entry["sigmas"], dtype=torch.float64)


def schedule_options(run_dir: Path, schedule: str | None, sampler: str, steps: int) -> dict[str, Any]:
    """Extra sampling options for a ``--schedule`` value: ``{"sigmas": grid}`` for ``tuned`` (the
    run folder's grid for this sampler and step count), nothing for a named grid."""
    if schedule != TUNED:
        return {}
    return {"sigmas": tuned_sigmas(run_dir, sampler, steps).to(torch.float32)}
