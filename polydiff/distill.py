"""Progressive distillation (Salimans & Ho 2022), or consistency distillation (Song et al. 2023), of
any trained run into a student that samples in K network calls, K in {1, 2, 4}.

The student is an ordinary run folder: its network comes from the teacher's own factory
(``modality.build_network`` through :func:`polydiff.generate.build_denoiser`) and starts from the
teacher's weights; it trains through :class:`polydiff.train.Trainer` (optimizer, EMA, checkpoints,
exact resume, DDP, metrics, loss plot), with the denoising loss replaced by
:class:`ProgressiveLoss`. Its config samples with ``euler`` — DDIM in the unscaled view — on the
Karras grid of K levels, so ``polydiff sample|evaluate STUDENT`` need nothing special.

**The grids** (:func:`distill_levels`): n levels uniform in sigma^(1/7) from sigma_max, stopping one
ramp step short of sigma_min, then 0; the grid of 2n levels holds the grid of n plus one level
inside each of its intervals. Distilling to K walks the chain K <- 2K <- 4K ... up to
``base_levels``: round r trains the student on the chain's (r+1)-th coarsest grid against a
teacher taking two DDIM steps for each student step on the next finer one. The first round's
teacher is the trained run — with classifier-free guidance applied, so the guided teacher is the
target and the student samples unguided (``sample.guidance = 1``); each later round's teacher is a
frozen copy of the student's EMA at the end of the round before, written to
``distill/round-RR.safetensors`` so that a resumed run finds it.

**The target** (Salimans & Ho 2022, Alg. 2, in the unscaled view x = x_0 + sigma eps): from
x = x_0 + a eps the teacher steps a -> m -> b with DDIM, x' = (s'/s) x + (1 - s'/s) D(x, s); the
student's x_0 estimate that reaches the same x_b in one DDIM step a -> b is
x~_0 = (x_b - (b/a) x) / (1 - b/a)  (= the teacher's final D when b = 0).

**The weighting** is PD's "SNR + 1" in the units of the data: lambda = 1/sigma_d^2 + 1/sigma^2 on
|D_student - x~_0|^2, i.e. the truncated-SNR idea that keeps the high-noise steps (which a 1-step
student depends on entirely) in the loss.

Why progressive is the default and consistency distillation (``method="consistency"``,
:class:`ConsistencyLoss`) the option, from measurements at equal training steps:

- digits (``benchmarks/fast_sampling.py``, 600 steps each from the same teacher): PD's students
  score classifier FD 1.97 / 1.99 / 2.21 at 4 / 2 / 1 calls (teacher 1.94 at 35), the consistency
  student 4.57 / 4.71 / 4.81, and it took 4.7 CPU minutes against PD's 1.9 (a Heun teacher step
  and a second student pass per example);
- community-small graphs (the same benchmark, 150 steps each, 20 test graphs): mixed — the
  consistency student's degree and orbit MMDs at 4 and 2 calls are lower (orbit 0.086 / 0.097
  against PD's 0.219 / 0.197), PD's clustering MMD is lower at 4 and 2 calls (0.103 / 0.090
  against 0.136 / 0.148); at 20 graphs a seed moves these by as much, and both cost 2 CPU minutes;
- audio (notes, 600 steps each, 64 clips): PD's students keep pitch accuracy 0.75 / 0.73 / 0.77 at
  4 / 2 / 1 calls (teacher 0.86 at 35), the consistency student makes no tones at any K;
  points (shapes, 600 steps each): neither method is usable (1-NNA-CD 99-100 %, teacher 83 %);
- a Gaussian with an exact teacher (``tests/test_distill.py``, 360 steps each): PD's 2-step
  student lands 0.006 RMS from the teacher's ODE solution, the consistency student's one step
  0.032, its stds 5-12 % off.

PD's student is also deterministic, so its samples are a function of the noise that can be
checked against the teacher's ODE, and its loss needs nothing modality-specific; Song et al.
(2023) rank consistency distillation ahead of PD with LPIPS as the distance, a learned image metric
with no counterpart for audio, point clouds or graphs. What consistency distillation offers is one
student for every K (``polydiff sample STUDENT --steps K`` with K up to its ``--nfe``).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polydiff import distributed
from polydiff.conditions import null_conditions
from polydiff.errors import UserError
from polydiff.generate import build_denoiser
from polydiff.guidance import cfg_denoiser
from polydiff.losses import zero_padded
from polydiff.sde import SDE, build_sde
from polydiff.state import (
    Mask,
    State,
    apply_mask,
    batch_size,
    masked_mean_per_sample,
    randn_like_state,
    state_device,
    tree_map,
)
from polydiff.tuning import SCHEDULES_FILE, store_grid

DISTILL_FILE = "distill.json"
DISTILL_DIR = "distill"
TEACHER_WEIGHTS = "teacher.safetensors"
STUDENT_SAMPLER = "euler"
#: the sampler of each method's student: PD's is deterministic (DDIM), a consistency student
#: denoises and re-noises (Song et al. 2023, Alg. 1)
STUDENT_SAMPLERS = {"progressive": STUDENT_SAMPLER, "consistency": "consistency"}
METHODS = tuple(STUDENT_SAMPLERS)
DEFAULT_BASE_LEVELS = 24


@dataclass
class DistillSpec:
    """What a distillation run is, stored in ``distill.json`` beside the student's config."""

    k: int
    chain: list[int]  # levels from the student's (k) up to the first teacher's
    steps_per_round: int
    guidance: float
    teacher: dict[str, Any]
    teacher_substeps: int = 1
    method: str = "progressive"
    weighting: str = "snr+1"

    @property
    def rounds(self) -> int:
        return len(self.chain) - 1

    def levels(self, round_: int) -> tuple[int, int]:
        """(student levels, teacher levels) of round ``round_`` (0: against the trained run)."""
        r = self.rounds - 1 - round_
        return self.chain[r], self.chain[r + 1]


def level_chain(k: int, base_levels: int = DEFAULT_BASE_LEVELS) -> list[int]:
    """K, 2K, 4K ... until ``base_levels``: the student's levels, then each round's teacher's."""
    if k < 1:
        raise UserError(f"--nfe {k}: a student needs at least one network evaluation")
    chain = [k]
    while chain[-1] < max(base_levels, k + 1):
        chain.append(2 * chain[-1])
    return chain


def distill_levels(sde: SDE, n: int, rho: float = 7.0) -> Tensor:
    """``n`` nonzero levels uniform in sigma^(1/rho) at ramps 0, 1/n, ..., (n-1)/n between
    sigma_max and sigma_min, then 0 (float64).

    Karras et al.'s ramp without its last point: the step from the lowest level goes straight to
    the student's x_0 estimate, so no call is spent at sigma_min, where D is nearly the identity
    (PD's grids end the same way). The grid of 2n levels holds this one, plus one level inside
    each of its intervals.
    """
    ramp = torch.arange(n, dtype=torch.float64) / n
    hi, lo = sde.sigma_max ** (1 / rho), sde.sigma_min ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=torch.float64)])


def round_plan(sde: SDE, student: int, teacher: int) -> Tensor:
    """``(n, 3)`` float64: for each student interval, the levels a > m > b the teacher passes."""
    if teacher != 2 * student:
        raise ValueError(f"a {student}-level student needs a {2 * student}-level teacher")
    big = distill_levels(sde, teacher)
    return torch.stack([big[0:-1:2], big[1::2], big[2::2]], dim=1)


def _per_sample(coef: Tensor, like: Tensor) -> Tensor:
    return coef.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _ddim(x: State, d: State, ratio: Tensor) -> State:
    """x' = r x + (1 - r) D with r = s'/s per sample."""
    return tree_map(lambda xv, dv: _per_sample(ratio, xv) * xv + _per_sample(1 - ratio, xv) * dv, x, d)


def _noised(x0: State, sigma: Tensor, mask: Mask, project: Any, generator: Any) -> State:
    """x0 + sigma eps per sample, eps in the noise space and zero at padding."""
    noise = randn_like_state(x0, generator)
    if project is not None:
        noise = project(noise, mask)
    noise = apply_mask(noise, mask)
    return tree_map(lambda v, n: v + _per_sample(sigma, v) * n, x0, noise)


def _weighted_error(out: State, target: State, weight: Tensor, mask: Mask) -> Tensor:
    """Per-sample masked mean of weight * (out - target)^2, in at least float32."""

    def sq(o: Tensor, t: Tensor) -> Tensor:
        dt = torch.promote_types(t.dtype, torch.float32)
        return _per_sample(weight, o).to(dt) * (o.to(dt) - t.to(dt)) ** 2

    err = tree_map(sq, out, target)
    if mask is not None:
        err = zero_padded(err, mask)
    return masked_mean_per_sample(err, mask)


class ProgressiveLoss:
    """Per-sample loss ``(B,)`` of one progressive-distillation round (module docstring).

    Called like :class:`polydiff.losses.DSMLoss`: ``loss(student, x0, mask=, cond=, project=)``.
    ``teacher(x, sigma, **cond)`` is the round's teacher (guided, for the first round).
    ``substeps`` > 1: each teacher step a -> m, m -> b integrates the ODE with that many Heun
    steps (geometric in sigma) instead of one DDIM step (4 x substeps teacher calls).
    """

    def __init__(self, teacher: Any, plan: Tensor, sigma_data: float, substeps: int = 1):
        self.teacher, self.plan, self.sigma_data = teacher, plan, float(sigma_data)
        self.substeps = int(substeps)

    def __call__(
        self,
        student: Any,
        x0: State,
        *,
        mask: Mask = None,
        cond: Mapping[str, Any] | None = None,
        project: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        cond = dict(cond or {})
        b = batch_size(x0)
        device = state_device(x0)
        idx = torch.randint(len(self.plan), (b,), device=device, generator=generator)
        a, m, s_b = (self.plan.to(device)[idx, j] for j in range(3))
        x = _noised(x0, a, mask, project, generator)

        def teach(y: State, s: Tensor) -> State:
            out = self.teacher(y, s.to(torch.float32), **cond)
            return project(out, mask) if project is not None else out

        with torch.no_grad():
            d1 = teach(x, a)
            if self.substeps == 1:  # PD: two DDIM steps
                x_m = _ddim(x, d1, m / a)
                d2 = teach(x_m, m)
                x_b = _ddim(x_m, d2, s_b / m)
            else:
                x_m = self._heun(teach, x, a, m, d1)
                d2 = teach(x_m, m)
                last = s_b == 0  # the step to 0 returns D
                x_h = self._heun(teach, x_m, m, torch.where(last, m, s_b), d2)
                x_b = tree_map(lambda h, d: torch.where(last.reshape(-1, *([1] * (h.ndim - 1))), d, h), x_h, d2)
            r = s_b / a
            target = tree_map(
                lambda xb, xv: (xb - _per_sample(r, xv) * xv) / _per_sample(1 - r, xv), x_b, x
            )
        out = student(x, a.to(torch.float32), **cond)
        if project is not None:
            out = project(out, mask)
        return _weighted_error(out, target, 1.0 / self.sigma_data**2 + 1.0 / a**2, mask)


    def _heun(self, teach: Any, x: State, s0: Tensor, s1: Tensor, d0: State) -> State:
        """Heun's method (EDM Alg. 1) from s0 to s1 > 0 per sample, ``self.substeps`` steps
        geometric in sigma; ``d0 = D(x, s0)`` is reused. Rows with s1 = s0 are left as they are."""
        n = self.substeps
        for k in range(n):
            sa = s0 * (s1 / s0) ** (k / n)
            sb = s0 * (s1 / s0) ** ((k + 1) / n)
            x = _heun_step(teach, x, sa, sb, d0 if k == 0 else teach(x, sa))
        return x


class ConsistencyLoss:
    """Per-sample loss ``(B,)`` of consistency distillation (Song et al. 2023, Alg. 2), with the
    improved recipe's stop-gradient target (Song & Dhariwal 2023: target EMA rate 0, weight
    1 / (a - b)).

    On the teacher's grid of levels (``levels``, ending in 0), a random adjacent pair a > b: from
    x = x_0 + a eps the teacher takes one Heun step to b (one DDIM step when ``substeps`` = 1; at
    b = 0 the step returns D); the student at a must match the student at b on that point, without
    a gradient through the target. At b = 0 the target is the point itself (the boundary condition
    f(x, 0) = x). Same call and masks as :class:`ProgressiveLoss`.
    """

    def __init__(self, teacher: Any, levels: Tensor, substeps: int = 2):
        self.teacher, self.levels, self.substeps = teacher, levels, int(substeps)

    def __call__(
        self,
        student: Any,
        x0: State,
        *,
        mask: Mask = None,
        cond: Mapping[str, Any] | None = None,
        project: Any = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        cond = dict(cond or {})
        b = batch_size(x0)
        device = state_device(x0)
        lev = self.levels.to(device)
        idx = torch.randint(len(lev) - 1, (b,), device=device, generator=generator)
        a, s_b = lev[idx], lev[idx + 1]
        last = s_b == 0
        x = _noised(x0, a, mask, project, generator)

        def proj(out: State) -> State:
            return project(out, mask) if project is not None else out

        def pick(y_last: State, y: State) -> State:
            return tree_map(
                lambda u, v: torch.where(last.reshape(-1, *([1] * (u.ndim - 1))), u, v), y_last, y
            )

        with torch.no_grad():
            d_a = proj(self.teacher(x, a.to(torch.float32), **cond))
            safe_b = torch.where(last, a, s_b)  # rows ending at 0 take D; keep sigma > 0 elsewhere
            if self.substeps == 1:
                x_b = _ddim(x, d_a, safe_b / a)
            else:
                x_b = _heun_step(
                    lambda y, s: proj(self.teacher(y, s.to(torch.float32), **cond)), x, a, safe_b, d_a
                )
            x_b = pick(d_a, x_b)
            target = pick(x_b, proj(student(x_b, safe_b.to(torch.float32), **cond)))
        out = proj(student(x, a.to(torch.float32), **cond))
        return _weighted_error(out, target, 1.0 / (a - s_b), mask)


def _heun_step(teach: Any, x: State, sa: Tensor, sb: Tensor, da: State) -> State:
    """x' = x + (sb - sa) (g_a + g_b) / 2 with g = (x - D) / sigma at both ends (Euler's x_e)."""
    slope = tree_map(lambda xv, dv: (xv - dv) / _per_sample(sa, xv), x, da)
    x_e = tree_map(lambda xv, g: xv + _per_sample(sb - sa, xv) * g, x, slope)
    db = teach(x_e, sb)
    half = (sb - sa) / 2
    return tree_map(
        lambda xv, g, xe, dv: xv + _per_sample(half, xv) * (g + (xe - dv) / _per_sample(sb, xv)),
        x, slope, x_e, db,
    )


# ---- the run ---------------------------------------------------------------------------------------


def read_spec(run_dir: Path) -> DistillSpec:
    path = Path(run_dir) / DISTILL_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: not a distillation run (no {DISTILL_FILE})")
    try:
        return DistillSpec(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path}: unreadable distillation record ({exc})") from None


def student_config(
    teacher_config: Mapping[str, Any],
    k: int,
    rounds: int,
    *,
    steps_per_round: int,
    lr: float | None = None,
    batch_size: int | None = None,
    ema_decay: float = 0.995,
    seed: int | None = None,
    device: str | None = None,
    sampler: str = STUDENT_SAMPLER,
) -> dict[str, Any]:
    """The teacher's config with the training and sampling sections of a K-step student."""
    cfg = copy.deepcopy(dict(teacher_config))
    tc = cfg["train"]
    tc["steps"] = rounds * steps_per_round
    tc["ema_decay"], tc["ema_decays"] = ema_decay, []
    tc["lr_schedule"] = "constant"
    tc["checkpoint_every"] = min(int(tc.get("checkpoint_every", steps_per_round)), steps_per_round)
    # a log row (and its training clock) at every round boundary
    tc["log_every"] = math.gcd(int(tc.get("log_every", steps_per_round)), steps_per_round)
    tc["snapshot_every"] = 0
    if lr is not None:
        tc["lr"] = lr
    if batch_size is not None:
        tc["batch_size"] = batch_size
    if seed is not None:
        tc["seed"] = seed
    if device is not None:
        tc["device"] = device
    sc = cfg["sample"]
    sc.update({"sampler": sampler, "steps": k, "schedule": "tuned", "guidance": 1.0})
    return cfg


def _load_weights_file(module: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: missing (the distillation run folder is incomplete)")
    module.load_state_dict(load_file(str(path)))


def _save_weights_file(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    from polydiff.atomic import atomic_write

    sd = {k: v.detach().contiguous().cpu().clone() for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(sd, str(tmp)))


def _frozen(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).requires_grad_(False).eval()


def _distill_trainer_class():
    from polydiff.train import Trainer

    class DistillTrainer(Trainer):
        """The trainer with :class:`ProgressiveLoss`, switching teachers at round boundaries."""

        def __init__(self, modality: Any, config: dict[str, Any], run_dir: Path, spec: DistillSpec):
            super().__init__(modality, config, run_dir)
            self.spec = spec
            self.round = -1
            self.sigma_data = float(config["param"]["sigma_data"])
            self.base_teacher = build_denoiser(modality, config).to(self.device)
            _load_weights_file(self.base_teacher, self.run_dir / DISTILL_DIR / TEACHER_WEIGHTS)
            self.base_teacher.requires_grad_(False).eval()

        def round_at(self, step: int) -> int:
            return min(step // self.spec.steps_per_round, self.spec.rounds - 1)

        def teacher_for(self, r: int) -> Any:
            if r == 0:
                w, modality = self.spec.guidance, self.modality
                base = self.base_teacher
                if w == 1.0:
                    return base

                def guided(x: State, sigma: Tensor, **cond: Any) -> State:
                    if not cond:
                        return base(x, sigma)
                    return cfg_denoiser(base, w, null_conditions(cond, modality))(x, sigma, **cond)

                return guided
            path = self.run_dir / DISTILL_DIR / f"round-{r:02d}.safetensors"
            teacher = _frozen(self.ema)
            if self.step == r * self.spec.steps_per_round:
                # the round starts now: its teacher is the student's EMA as it stands
                if self.is_main:
                    _save_weights_file(teacher, path)
                distributed.barrier()
            else:  # resumed inside the round: the teacher saved when it began
                _load_weights_file(teacher, path)
            return teacher

        def ensure_round(self) -> None:
            r = self.round_at(self.step)
            if r == self.round:
                return
            student, teacher = self.spec.levels(r)
            if self.spec.method == "consistency":  # one round against the trained run
                levels = distill_levels(self.sde, teacher)
                self.loss_fn = ConsistencyLoss(self.teacher_for(0), levels, self.spec.teacher_substeps)
            else:
                plan = round_plan(self.sde, student, teacher)
                substeps = self.spec.teacher_substeps if r == 0 else 1
                self.loss_fn = ProgressiveLoss(self.teacher_for(r), plan, self.sigma_data, substeps)
            self.round = r

        def micro_loss(self, batch: Any) -> Tensor:
            self.ensure_round()
            return super().micro_loss(batch)

    return DistillTrainer


def distill(
    modality: Any,
    teacher_dir: Path | None,
    out_dir: Path,
    *,
    k: int = 4,
    steps_per_round: int = 200,
    base_levels: int = DEFAULT_BASE_LEVELS,
    teacher_substeps: int = 2,
    guidance: float | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    ema_decay: float = 0.995,
    seed: int | None = None,
    device: str | None = None,
    resume: bool = False,
    console: Any = None,
    teacher: tuple[dict[str, Any], nn.Module, dict[str, Any]] | None = None,
    sample_at_end: bool = False,
    method: str = "progressive",
) -> Any:
    """Distil the run in ``teacher_dir`` into a K-step student in ``out_dir``; returns the
    :class:`polydiff.train.TrainResult`. ``resume``: continue ``out_dir`` (``teacher_dir`` unused).

    ``teacher``: ``(config, denoiser, provenance)`` instead of a run folder (the Python API; the
    denoiser must come from ``build_denoiser(modality, config)``).

    ``method``: "progressive" (rounds of ``steps_per_round``) or "consistency" (one run of
    ``steps_per_round`` steps against the trained run on its grid of ``base_levels`` levels; the
    student samples with the ``consistency`` sampler at any number of steps).
    """
    if method not in METHODS:
        raise UserError(f"unknown distillation method {method!r}; available: {', '.join(METHODS)}")
    from polydiff.train import check_new_run, run_to_end
    from polydiff.training.run_folder import read_run_record, start_run

    out_dir = Path(out_dir)
    if resume:
        spec = read_spec(out_dir)
        config, _ = read_run_record(out_dir)
    else:
        # what a distillation killed before its first checkpoint left: a rerun starts over
        check_new_run(out_dir, also_restartable=(DISTILL_DIR, DISTILL_FILE, SCHEDULES_FILE))
        if teacher is None:
            teacher = open_teacher(modality, teacher_dir)
        t_cfg, t_net, provenance = teacher
        if guidance is None:
            guidance = float(t_cfg["sample"].get("guidance", 1.0))
        chain = level_chain(k, base_levels)
        if method == "consistency":
            chain = [k, chain[-1]]
        spec = DistillSpec(
            k, chain, int(steps_per_round), float(guidance), dict(provenance), int(teacher_substeps),
            method=method,
        )
        config = student_config(
            t_cfg, k, spec.rounds, steps_per_round=steps_per_round, lr=lr, batch_size=batch_size,
            ema_decay=ema_decay, seed=seed, device=device, sampler=STUDENT_SAMPLERS[method],
        )
    tc = config["train"]
    distributed.setup(str(tc["device"]), str(tc.get("dist_backend", "auto")))
    distributed.barrier()  # every rank has checked the folder before rank 0 writes in it
    t0 = time.perf_counter()
    if not resume and distributed.info().is_main:
        from polydiff.atomic import atomic_write_text

        out_dir.mkdir(parents=True, exist_ok=True)
        _save_weights_file(t_net, out_dir / DISTILL_DIR / TEACHER_WEIGHTS)
        atomic_write_text(out_dir / DISTILL_FILE, json.dumps(asdict(spec), indent=2) + "\n")
        sde_ = build_sde(config["sde"])
        # a consistency student samples at any number of steps: store the grids up to K
        for n in (range(1, k + 1) if method == "consistency" else (k,)):
            store_grid(out_dir, STUDENT_SAMPLERS[method], n, distill_levels(sde_, n),
                       source=f"{method} distillation")
    distributed.barrier()
    trainer = _distill_trainer_class()(modality, config, out_dir, spec)
    if resume:
        trainer.restore()
    else:
        # the student starts as the teacher: same factory, same weights, every EMA too
        _load_weights_file(trainer.denoiser, out_dir / DISTILL_DIR / TEACHER_WEIGHTS)
        for ema in trainer.emas:
            ema.load_state_dict(trainer.denoiser.state_dict())
        if trainer.is_main:
            start_run(out_dir, modality, config)
    distributed.barrier()
    return run_to_end(
        trainer, modality, config, out_dir, t0=t0, sample_at_end=sample_at_end, console=console,
        resume_command=f"polydiff distill {out_dir} --resume",
    )


def open_teacher(modality: Any, teacher_dir: Path) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    """(config, EMA denoiser, provenance) of a trained run folder."""
    from polydiff.checkpoint import check_weights_fit, load_weights
    from polydiff.training.run_folder import latest_checkpoint, read_run_record

    config, name = read_run_record(teacher_dir)  # one-line errors for a damaged record
    if name != modality.name:
        raise UserError(f"{teacher_dir}: a {name} run, not {modality.name}")
    ckpt = latest_checkpoint(teacher_dir)
    if ckpt is None or not ckpt.is_file():
        raise UserError(f"{teacher_dir}: no checkpoint to distil")
    model_sd, ema_sd, meta = load_weights(ckpt)
    net = build_denoiser(modality, config)
    weights = ema_sd or model_sd
    check_weights_fit(net.state_dict(), weights, ckpt)
    net.load_state_dict(weights)
    provenance = {"run_dir": str(teacher_dir), "checkpoint": ckpt.name, "step": meta.get("step")}
    return config, net, provenance
