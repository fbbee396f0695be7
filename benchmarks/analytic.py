"""Samplers on an analytic target: polydiff beside k-diffusion, driven by the exact denoiser.

The target is a mixture of five isotropic Gaussians in d = 16 with unequal weights (a minority
mode of 2 %), so the exact denoiser D(x, sigma) = E[x_0 | x] is known and every error below is the
sampler's own. For each sampler and NFE budget (5, 10, 20, 50, 200) the script reports

- SW2: sliced Wasserstein-2 distance to exact samples (the floor: between two exact sample sets);
- mode TV: total variation between the recovered mode weights (each sample assigned to the
  component of highest posterior probability) and the true weights;
- RMSE (deterministic solvers): root-mean-square distance, per coordinate, to a high-accuracy
  solution of the probability-flow ODE from the same noise (rk45, rtol = atol = 1e-9, float64).

k-diffusion's samplers (``k_diffusion.sampling``, loaded without its image-only imports) run on
the same target, noise and sigma range with its Karras schedule (rho = 7). Each sampler gets the
largest number of steps whose denoiser calls fit the budget; the NFE actually used is counted
(shown in parentheses where it is below the budget).

    python benchmarks/analytic.py            # prints the tables
    python benchmarks/analytic.py --write    # also writes docs/benchmarks.md and the plot
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import re
import sys
import time
import types
from pathlib import Path

import torch

from polydiff.sampling import get_sampler, run_sampler
from polydiff.sampling.analytic import GaussianMixture
from polydiff.sde import EDM

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = (5, 10, 20, 50, 200)
HEADING = "## Samplers on an analytic target"

# (label, sampler, options): each polydiff sampler with its default schedule
POLYDIFF = [
    ("euler", "euler", {}),
    ("heun", "heun", {}),
    ("ddim", "ddim", {}),
    ("dpmpp_2m", "dpmpp_2m", {}),
    ("dpmpp_3m", "dpmpp_3m", {}),
    ("unipc (order 3)", "unipc", {}),
    ("unipc (order 2)", "unipc", {"order": 2}),
    ("euler_maruyama", "euler_maruyama", {}),
    ("pc (1 corrector)", "pc", {}),
    ("ddpm", "ddpm", {}),
    ("ddim eta=1", "ddim", {"eta": 1.0}),
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}),
]
# (label, function name, options, denoiser calls per step (2: a final Euler step saves one), deterministic)
KDIFF = [
    ("euler", "sample_euler", {}, 1, True),
    ("heun", "sample_heun", {}, 2, True),
    ("dpm_2", "sample_dpm_2", {}, 2, True),
    ("lms", "sample_lms", {}, 1, True),
    ("dpmpp_2m", "sample_dpmpp_2m", {}, 1, True),
    ("dpmpp_2m_sde eta=0", "sample_dpmpp_2m_sde", {"eta": 0.0}, 1, True),
    ("dpmpp_3m_sde eta=0", "sample_dpmpp_3m_sde", {"eta": 0.0}, 1, True),
    ("euler_ancestral", "sample_euler_ancestral", {}, 1, False),
    ("dpm_2_ancestral", "sample_dpm_2_ancestral", {}, 2, False),
    ("dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral", {}, 2, False),
    ("dpmpp_sde", "sample_dpmpp_sde", {}, 2, False),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {}, 1, False),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde", {}, 1, False),
]


def make_target(d: int = 16, seed: int = 0) -> GaussianMixture:
    """Five components on a sphere of radius 1.5, weights 40/30/18/10/2 %, stds 0.25-0.4."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(5, d, generator=g, dtype=torch.float64)
    means = 1.5 * means / means.norm(dim=1, keepdim=True)
    weights = torch.tensor([0.40, 0.30, 0.18, 0.10, 0.02])
    stds = torch.tensor([0.30, 0.40, 0.25, 0.35, 0.30])
    return GaussianMixture(weights, means, stds)


class _NoBar:
    """Stand-in for tqdm: iterates, and works as a context manager with ``update``."""

    def __init__(self, iterable=None, **_):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *_):
        pass


def load_kdiffusion_sampling():
    """``k_diffusion/sampling.py`` loaded on its own (the package imports image-only extras).

    Its ``from . import utils`` gets a stub with ``append_dims``; tqdm, torchsde and torchdiffeq
    get stubs only when missing. Returns None when k-diffusion is not installed.
    """
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "sampling.py"
    pkg = types.ModuleType("_kdiffusion")
    pkg.__path__ = []
    utils = types.ModuleType("_kdiffusion.utils")
    utils.append_dims = lambda x, n: x.reshape(*x.shape, *([1] * (n - x.ndim)))
    pkg.utils = utils
    stubs = {"_kdiffusion": pkg, "_kdiffusion.utils": utils}
    for name in ("tqdm", "tqdm.auto", "torchsde", "torchdiffeq"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.trange = lambda *a, **k: range(*a)
            stub.tqdm = _NoBar
            stub.odeint = stub.BrownianTree = None
            stubs[name] = stub
    for key, value in stubs.items():
        sys.modules.setdefault(key, value)
    mspec = importlib.util.spec_from_file_location("_kdiffusion.sampling", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    module.has_torchsde = "torchsde" not in stubs
    return module


class Metrics:
    """The three error measures against one exact sample set and one reference solution."""

    def __init__(self, gm: GaussianMixture, n: int, ref: torch.Tensor | None, seed: int = 0):
        self.gm = gm
        self.true = gm.sample(n, torch.Generator().manual_seed(seed + 100))
        self.ref = ref
        # sliced W2 with 512 fixed directions; the exact samples' sorted projections cached
        dirs = torch.randn(
            gm.dim, 512, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64
        )
        self.dirs = dirs / dirs.norm(dim=0, keepdim=True)
        self.true_proj = torch.sort((self.true @ self.dirs).T.contiguous(), dim=1).values

    def sw2(self, x: torch.Tensor) -> float:
        """Sliced W2 (as :func:`~polydiff.sampling.analytic.sliced_wasserstein`) to the exact samples."""
        proj = torch.sort((x.to(torch.float64) @ self.dirs).T.contiguous(), dim=1).values
        return float((proj - self.true_proj).pow(2).mean().sqrt())

    def mode_tv(self, x: torch.Tensor) -> float:
        counts = torch.bincount(self.gm.assign(x), minlength=self.gm.n_components).double()
        return float(0.5 * (counts / counts.sum() - self.gm.weights).abs().sum())

    def rmse(self, x: torch.Tensor) -> float:
        return float((x - self.ref).pow(2).mean().sqrt())


def polydiff_steps(name: str, budget: int, options: dict) -> int:
    if name == "heun":
        return (budget + 1) // 2
    if name == "pc":
        return max(budget // (1 + options.get("n_corrector", 1)), 1)
    return budget


def run_polydiff(gm, sde, noise, name, budget, options, seed):
    steps = polydiff_steps(name, budget, options)
    gen = torch.Generator().manual_seed(seed)
    res = run_sampler(gm, sde, noise=noise, sampler=name, steps=steps, generator=gen, **options)
    return res.x, res.nfe


def run_kdiffusion(kd, gm, sde, noise, fn_name, budget, options, per_step, seed):
    steps = budget if per_step == 1 else (budget + 1) // 2
    sigmas = kd.get_sigmas_karras(steps, sde.sigma_min, sde.sigma_max, rho=7.0).to(noise.dtype)
    calls = 0

    def model(x, sigma, **_):
        nonlocal calls
        calls += 1
        return gm(x, sigma)

    torch.manual_seed(seed)
    extra = {}
    fn = getattr(kd, fn_name)
    # independent Gaussian increments (what the default noise sampler of the ancestral samplers
    # draws, and distributionally what a Brownian tree gives a one-draw-per-step sampler), except
    # for dpmpp_sde, whose two draws per step need the Brownian tree's correlation (torchsde)
    if "noise_sampler" in fn.__code__.co_varnames and (
        fn_name != "sample_dpmpp_sde" or not kd.has_torchsde
    ):
        gen = torch.Generator().manual_seed(seed)
        extra["noise_sampler"] = lambda s, s_next: torch.randn(
            noise.shape, generator=gen, dtype=noise.dtype
        )
    x = fn(model, noise * sde.sigma_max, sigmas, disable=True, **options, **extra)
    return x, calls


def fmt(value: float | None, nfe: int | None = None, budget: int | None = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return text if nfe is None or nfe == budget else f"{text} ({nfe})"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="samples per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--write", action="store_true", help="write docs/benchmarks.md and the plot"
    )
    parser.add_argument("--no-kdiffusion", action="store_true")
    parser.add_argument(
        "--hard", action="store_true",
        help="the harder targets (separation, sharpness, anisotropy, d = 64) with tuned grids",
    )
    parser.add_argument(
        "--check-seeds", default="",
        help="with --hard: further seeds (other mixtures, noise and calibration draws) whose "
        "summaries are reported beside --seed's tables, e.g. 1,2",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.hard:
        return main_hard(args)
    t_start = time.perf_counter()

    gm = make_target(seed=args.seed)
    sde = EDM()  # sigma in [0.002, 80]
    noise = torch.randn(
        args.n, gm.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed + 1)
    )
    t0 = time.perf_counter()
    reference = run_sampler(gm, sde, noise=noise, sampler="rk45", steps=50, rtol=1e-9, atol=1e-9)
    ref_time = time.perf_counter() - t0
    m = Metrics(gm, args.n, reference.x, args.seed)
    floor_x = gm.sample(args.n, torch.Generator().manual_seed(args.seed + 200))
    floors = {"sw2": m.sw2(floor_x), "tv": m.mode_tv(floor_x)}
    converged = {"sw2": m.sw2(reference.x), "tv": m.mode_tv(reference.x)}
    print(f"reference: rk45 rtol=atol=1e-9, {reference.nfe} NFE, {ref_time:.1f}s")
    print(f"exact-vs-exact floor: SW2 {floors['sw2']:.4f}, mode TV {floors['tv']:.4f}")
    print(f"converged ODE:        SW2 {converged['sw2']:.4f}, mode TV {converged['tv']:.4f}")

    rows = []  # dicts: lib, label, deterministic, results {budget: (nfe, sw2, tv, rmse)}
    for label, name, options in POLYDIFF:
        spec = get_sampler(name)
        det = not spec.stochastic or (name == "ddim" and not options.get("eta"))
        res = {}
        for b in BUDGETS:
            x, nfe = run_polydiff(gm, sde, noise, name, b, options, args.seed + b)
            res[b] = (nfe, m.sw2(x), m.mode_tv(x), m.rmse(x) if det else None)
        sched = spec.default_schedule
        rows.append({"lib": "polydiff", "label": label, "schedule": sched, "det": det, "res": res})
        print_row(rows[-1])

    kd = None if args.no_kdiffusion else load_kdiffusion_sampling()
    if kd is None and not args.no_kdiffusion:
        print("k-diffusion is not installed (pip install k-diffusion --no-deps): skipped")
    if kd is not None:
        for label, fn_name, options, per_step, det in KDIFF:
            res = {}
            for b in BUDGETS:
                x, nfe = run_kdiffusion(
                    kd, gm, sde, noise, fn_name, b, options, per_step, args.seed + b
                )
                res[b] = (nfe, m.sw2(x), m.mode_tv(x), m.rmse(x) if det else None)
            rows.append(
                {"lib": "k-diffusion", "label": label, "schedule": "karras", "det": det, "res": res}
            )
            print_row(rows[-1])

    adaptive = []
    for tol in (1e-2, 1e-3, 1e-4):
        r = run_sampler(gm, sde, noise=noise, sampler="rk45", steps=10, rtol=tol, atol=tol)
        adaptive.append(("polydiff rk45", tol, r.nfe, m.sw2(r.x), m.mode_tv(r.x), m.rmse(r.x)))
    if kd is not None:
        for tol in (1e-2, 1e-3):
            calls = 0

            def model(x, sigma, **_):
                nonlocal calls
                calls += 1
                return gm(x, sigma)

            x = kd.sample_dpm_adaptive(
                model,
                noise * sde.sigma_max,
                sde.sigma_min,
                sde.sigma_max,
                rtol=tol,
                atol=tol,
                disable=True,
            )
            adaptive.append(
                ("k-diffusion dpm_adaptive", tol, calls, m.sw2(x), m.mode_tv(x), m.rmse(x))
            )
    for a in adaptive:
        print(
            f"{a[0]:<28} tol {a[1]:.0e}: NFE {a[2]:4d}  SW2 {a[3]:.4f}  TV {a[4]:.4f}  RMSE {a[5]:.2e}"
        )

    from benchmarks.overhead import measure_overhead

    overhead = measure_overhead()
    print(overhead["text"])
    targets = check_targets(rows, converged)
    for line in targets["lines"]:
        print(line)
    total = time.perf_counter() - t_start
    print(f"total {total:.0f}s")
    result = {
        "rows": rows,
        "floors": floors,
        "converged": converged,
        "reference_nfe": reference.nfe,
        "adaptive": adaptive,
        "overhead": overhead,
        "targets": targets,
        "n": args.n,
    }
    if args.write:
        write_docs(result)
    return result


def print_row(row: dict) -> None:
    cells = []
    for b in BUDGETS:
        nfe, sw2, tv, rmse = row["res"][b]
        r = f" rmse {rmse:.4f}" if rmse is not None else ""
        cells.append(f"[{nfe:3d}] sw2 {sw2:.4f} tv {tv:.4f}{r}")
    print(f"{row['lib']:<11} {row['label']:<20} " + " | ".join(cells), flush=True)


def check_targets(rows: list[dict], converged: dict) -> dict:
    def best(lib, metric_index, budget, det_only):
        cands = [
            (r["res"][budget][metric_index], r["label"])
            for r in rows
            if r["lib"] == lib
            and (r["det"] or not det_only)
            and r["res"][budget][metric_index] is not None
        ]
        return min(cands) if cands else (None, None)

    ours_rmse, ours_label = best("polydiff", 3, 10, True)
    kd_rmse, kd_label = best("k-diffusion", 3, 10, True)
    ours_sw2, sw2_label = best("polydiff", 1, 10, False)
    ours_tv, tv_label = best("polydiff", 2, 20, False)
    lines = []
    met = {}
    if kd_rmse is not None:
        met["rmse"] = ours_rmse <= 0.5 * kd_rmse
        lines.append(
            f"target 1 (10 NFE RMSE <= half of k-diffusion's best): polydiff {ours_label} "
            f"{ours_rmse:.4f} vs k-diffusion {kd_label} {kd_rmse:.4f} "
            f"(ratio {ours_rmse / kd_rmse:.2f}) -> {'met' if met['rmse'] else 'NOT met'}"
        )
    met["sw2"] = ours_sw2 <= 1.25 * converged["sw2"]
    lines.append(
        f"target 2 (10 NFE SW2 within 25% of the converged ODE's {converged['sw2']:.4f}): "
        f"{sw2_label} {ours_sw2:.4f} (+{100 * (ours_sw2 / converged['sw2'] - 1):.1f}%) -> "
        f"{'met' if met['sw2'] else 'NOT met'}"
    )
    met["tv"] = ours_tv <= 0.02
    n_ok = sum(r["res"][20][2] <= 0.02 for r in rows if r["lib"] == "polydiff")
    n_all = sum(r["lib"] == "polydiff" for r in rows)
    lines.append(
        f"target 3 (mode TV <= 0.02 at 20 NFE): best {tv_label} {ours_tv:.4f}; "
        f"{n_ok} of {n_all} polydiff samplers meet it -> {'met' if met['tv'] else 'NOT met'}"
    )
    return {"lines": lines, "met": met}


def write_docs(result: dict) -> None:
    docs = ROOT / "docs"
    plot = docs / "benchmarks_samplers.png"
    make_plot(result, plot)
    section = render_section(result, plot.name)
    path = docs / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"wrote {path} and {plot}")


def table(rows: list[dict], index: int, title: str, det_only: bool = False) -> list[str]:
    out = [
        f"**{title}**",
        "",
        "| library | sampler | schedule | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |",
        "|---|---|---|" + "---:|" * len(BUDGETS),
    ]
    for r in rows:
        if det_only and not r["det"]:
            continue
        cells = [fmt(r["res"][b][index], r["res"][b][0], b) for b in BUDGETS]
        out.append(f"| {r['lib']} | {r['label']} | {r['schedule']} | " + " | ".join(cells) + " |")
    return [*out, ""]


def render_section(result: dict, plot_name: str) -> str:
    rows, floors, conv = result["rows"], result["floors"], result["converged"]
    lines = [
        HEADING,
        "",
        "Generated by `python benchmarks/analytic.py --write` (CPU, float64, "
        f"{result['n']} samples per run). Target: a mixture of five isotropic Gaussians in d = 16, "
        "weights 40/30/18/10/2 %, component stds 0.25–0.4, means on a sphere of radius 1.5; "
        "the exact denoiser drives every sampler, so each error is the sampler's own. "
        "SDE: EDM, sigma in [0.002, 80]; all runs start from the same noise.",
        "",
        "- **SW2**: sliced Wasserstein-2 to exact samples (512 projections). Floor, exact vs exact: "
        f"{floors['sw2']:.4f}; the converged ODE solution: {conv['sw2']:.4f}.",
        "- **mode TV**: total variation between the recovered mode weights (each sample assigned "
        "to its most probable component) and the true weights. Floor (exact samples): "
        f"{floors['tv']:.4f}; converged ODE: {conv['tv']:.4f}.",
        "- **RMSE** (deterministic solvers): per-coordinate RMS distance to the probability-flow "
        f"ODE solved from the same noise by rk45 at rtol = atol = 1e-9 ({result['reference_nfe']} NFE).",
        "",
        "**How NFE is counted**: one NFE is one (batched) denoiser call. A grid of N noise levels "
        "plus the final 0 costs N calls for euler, ddim, ddpm, euler_maruyama, dpmpp_2m, dpmpp_3m, "
        "dpmpp_2m_sde and unipc (UniPC's corrector reuses the next step's call); heun costs "
        "2N - 1 (its last step to 0 is an Euler step), pc with one corrector 2N. Each sampler gets "
        "the largest N that fits the budget; the NFE used is in parentheses where it is less. "
        "k-diffusion's samplers get the same treatment on its Karras grid (rho = 7) over the same "
        "sigma range.",
        "",
        "**Schedules** are each sampler's default and depend only on the SDE's sigma range: Karras "
        "(rho = 7) for the sigma-space solvers and dpmpp_2m (chosen on the harder targets below, "
        "where it ties k-diffusion's dpmpp_2m), uniform in log-SNR (DPM-Solver's recommended grid) "
        "for dpmpp_3m, dpmpp_2m_sde and unipc. Those multistep solvers use lower-order final "
        "steps below 10 steps (the rule of DPM-Solver's code); dpmpp_2m keeps second order to the "
        "end. Nothing was tuned on this target's answers.",
        "",
        f"![error vs NFE]({plot_name})",
        "",
    ]
    lines += table(rows, 3, "RMSE to the reference ODE solution (deterministic solvers)", True)
    lines += table(rows, 1, "SW2 to exact samples")
    lines += table(rows, 2, "Mode-weight TV")
    lines += [
        "**Adaptive solvers** (NFE chosen by the tolerance):",
        "",
        "| solver | rtol = atol | NFE | SW2 | mode TV | RMSE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, tol, nfe, sw2, tv, rmse in result["adaptive"]:
        lines.append(f"| {name} | {tol:.0e} | {nfe} | {sw2:.4f} | {tv:.4f} | {rmse:.2e} |")
    lines += ["", "**Targets**:", ""]
    lines += [f"- {line}" for line in result["targets"]["lines"]]
    lines += [
        "",
        "**Reading the numbers.** Where both libraries run the same algorithm on the same grid "
        "(euler, heun; ddpm and euler_ancestral) the numbers agree to every digit, so the harness "
        "treats them alike. The differences come from the grid and the solver: the "
        "exponential integrators on a log-SNR grid (dpmpp_2m, dpmpp_3m, unipc) against the same "
        "or similar solvers on the Karras grid. polydiff's dpmpp_3m uses the exact weight of the "
        "second-derivative term; k-diffusion's `sample_dpmpp_3m_sde(eta=0)` weighs it by half "
        "(as DPM-Solver's multistep third-order update does) and measures order ≈ 2 in "
        "`tests/test_samplers_convergence.py`'s setting, against 3 for ours. Stochastic samplers "
        "need many more steps than the ODE solvers on this target (euler_maruyama and pc diverge "
        "below ~10 NFE; SW2 of the SDE multistep solvers is not monotone at low NFE in either "
        "library). Among adaptive solvers, k-diffusion's dpm_adaptive (an exponential "
        "integrator) beats polydiff's generic rk45 at loose tolerances. k-diffusion's stochastic "
        "samplers draw independent Gaussian increments, except dpmpp_sde, which keeps its "
        "Brownian tree.",
    ]
    lines += ["", "### Sampler overhead", "", result["overhead"]["markdown"], ""]
    return "\n".join(lines) + "\n"


def make_plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    palette = plt.get_cmap("tab20").colors
    colors = {}  # one colour per sampler name, shared by the two libraries
    for r in result["rows"]:
        colors.setdefault(r["label"], palette[len(colors) % len(palette)])
    panels = (
        (axes[0], 3, None, "RMSE to the reference ODE solution (deterministic)"),
        (axes[1], 1, "polydiff", "SW2 to exact samples: polydiff"),
        (axes[2], 1, "k-diffusion", "SW2 to exact samples: k-diffusion (Karras grid)"),
    )
    for ax, index, lib, title in panels:
        for r in result["rows"]:
            if (index == 3 and not r["det"]) or (lib is not None and r["lib"] != lib):
                continue
            nfe = [r["res"][b][0] for b in BUDGETS]
            val = [r["res"][b][index] for b in BUDGETS]
            style = "-o" if r["lib"] == "polydiff" else "--x"
            label = r["label"] if lib else f"{r['lib']} {r['label']}"
            ax.plot(nfe, val, style, color=colors[r["label"]], ms=4, lw=1.2, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if index == 1:
            ax.axhline(result["converged"]["sw2"], color="k", lw=0.8, ls=":", label="converged ODE")
            ax.set_ylim(0.8 * result["floors"]["sw2"], 10)
        ax.legend(fontsize=7, ncol=2 if index == 3 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- harder targets, default grids against k-diffusion's, and tuned grids ------------------------

HARD_HEADING = "## Harder analytic targets and tuned schedules"
HARD_BUDGETS = (5, 10, 20)
WEIGHTS = (0.40, 0.30, 0.18, 0.10, 0.02)
# (label, sampler, options): polydiff's deterministic solvers, each on every grid
HARD_OURS = [
    ("euler", "euler", {}),
    ("heun", "heun", {}),
    ("dpmpp_2m", "dpmpp_2m", {}),
    ("dpmpp_3m", "dpmpp_3m", {}),
    ("dpmpp_3m taylor", "dpmpp_3m", {"taylor": True}),
    ("unipc", "unipc", {}),
]
HARD_GRIDS = ("karras", "logsnr")
# the same algorithm in k-diffusion, for the "never worse than its twin" check
TWINS = {"euler": "euler", "heun": "heun", "dpmpp_2m": "dpmpp_2m", "dpmpp_3m": "dpmpp_3m_sde eta=0"}
HARD_KD = [k for k in KDIFF if k[4]]  # its deterministic samplers
TUNE = ("dpmpp_2m", "dpmpp_3m", "unipc")
CALIB_N, TUNE_EVALS = 1024, 300  # calibration draws; sampling runs from each starting grid


def _sphere(n: int, d: int, radius: float, g: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, d, generator=g, dtype=torch.float64)
    return radius * m / m.norm(dim=1, keepdim=True)


def hard_targets(seed: int = 0) -> list[tuple[str, str, GaussianMixture]]:
    """Mixtures of five components, weights 40/30/18/10/2 %, spanning the regimes where a grid
    chosen from the sigma range alone goes wrong."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor(WEIGHTS)
    out = [("close isotropic, d=16", "radius 1.5, stds 0.25-0.4 (the target above)",
            make_target(seed=seed))]
    out.append(("separated sharp, d=16", "radius 5, isotropic stds 0.04-0.1",
                GaussianMixture(w, _sphere(5, 16, 5.0, g), torch.tensor([0.05, 0.1, 0.04, 0.08, 0.06]))))
    scales = torch.exp(torch.empty(5, 16, dtype=torch.float64).uniform_(math.log(0.03), math.log(0.3), generator=g))
    out.append(("anisotropic, d=16", "radius 2, per-dimension stds 0.03-0.3",
                GaussianMixture(w, _sphere(5, 16, 2.0, g), scales)))
    scales = torch.exp(torch.empty(5, 64, dtype=torch.float64).uniform_(math.log(0.02), math.log(0.2), generator=g))
    out.append(("separated anisotropic, d=64", "radius 6, per-dimension stds 0.02-0.2",
                GaussianMixture(w, _sphere(5, 64, 6.0, g), scales)))
    return out


def _ours(gm, sde, noise, name, budget, options, sigmas=None):
    steps = polydiff_steps(name, budget, options)
    if sigmas is not None:
        return run_sampler(gm, sde, noise=noise, sampler=name, sigmas=sigmas, **options)
    return run_sampler(gm, sde, noise=noise, sampler=name, steps=steps, **options)


def main_hard(args) -> dict:
    from polydiff.tuning import tune_denoiser

    t_start = time.perf_counter()
    sde = EDM()
    n = min(args.n, 2000)
    kd = None if args.no_kdiffusion else load_kdiffusion_sampling()
    results = []
    for ti, (name, desc, gm) in enumerate(hard_targets(args.seed)):
        noise = torch.randn(n, gm.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed + 1))
        ref = run_sampler(gm, sde, noise=noise, sampler="rk45", steps=50, rtol=1e-8, atol=1e-8)
        err = {}  # (lib, label, grid) -> {budget: (nfe, rmse)}
        for label, smp, opts in HARD_OURS:
            for grid in HARD_GRIDS:
                row = {}
                for b in HARD_BUDGETS:
                    r = _ours(gm, sde, noise, smp, b, {**opts, "schedule": grid})
                    row[b] = (r.nfe, float((r.x - ref.x).pow(2).mean().sqrt()))
                err[("polydiff", label, grid)] = row
        if kd is not None:
            for label, fn_name, opts, per_step, _ in HARD_KD:
                row = {}
                for b in HARD_BUDGETS:
                    x, calls = run_kdiffusion(kd, gm, sde, noise, fn_name, b, opts, per_step, args.seed)
                    row[b] = (calls, float((x - ref.x).pow(2).mean().sqrt()))
                err[("k-diffusion", label, "karras")] = row
        tuned = {}
        calib = lambda s, d=gm.dim: torch.randn(  # noqa: E731
            CALIB_N, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1000 + s)
        )
        for smp in TUNE:
            res = tune_denoiser(gm, sde, calib, sampler=smp, steps=10, max_evals=TUNE_EVALS, reference_steps=200)
            r = run_sampler(gm, sde, noise=noise, sampler=smp, sigmas=res.tensor())
            tuned[smp] = {
                "rmse": float((r.x - ref.x).pow(2).mean().sqrt()), "nfe": r.nfe,
                "sigmas": res.sigmas, "seconds": res.seconds, "evals": res.evaluations,
                "default": err[("polydiff", smp, default_grid(smp))][10][1],
            }
        results.append({"name": name, "desc": desc, "err": err, "tuned": tuned, "ref_nfe": ref.nfe})
        print_hard(results[-1], ti)
    summary = hard_summary(results)
    for line in summary:
        print(line)
    checks = {}
    for seed in [int(v) for v in args.check_seeds.split(",") if v.strip()]:
        # the same benchmark on targets, noise and calibration draws the defaults never saw
        sub = main_hard(argparse.Namespace(**{**vars(args), "seed": seed, "check_seeds": "", "write": False}))
        checks[seed] = sub["summary"]
    print(f"total {time.perf_counter() - t_start:.0f}s")
    out = {"results": results, "summary": summary, "n": n, "seed": args.seed, "checks": checks}
    if args.write:
        write_hard_docs(out)
    return out


def print_hard(res: dict, index: int) -> None:
    print(f"\n[{index}] {res['name']} ({res['desc']}); reference rk45 {res['ref_nfe']} NFE")
    for (lib, label, grid), row in res["err"].items():
        cells = " | ".join(f"[{row[b][0]:3d}] {row[b][1]:.2e}" for b in HARD_BUDGETS)
        print(f"  {lib:<11} {label:<20} {grid:<7} {cells}", flush=True)
    for smp, t in res["tuned"].items():
        print(f"  tuned {smp:<10} 10 NFE: {t['rmse']:.2e} (default grid {t['default']:.2e}; "
              f"{t['evals']} runs, {t['seconds']:.1f}s)")


def default_grid(label: str) -> str:
    """The default grid of one of :data:`HARD_OURS`."""
    return get_sampler({a: b for a, b, _ in HARD_OURS}[label]).default_schedule


def _best(err: dict, lib: str, budget: int, grid: str | None = None) -> tuple[float, str]:
    cands = []
    for (lb, label, g), row in err.items():
        if lb != lib:
            continue
        if lib == "polydiff" and grid == "default" and g != default_grid(label):
            continue
        cands.append((row[budget][1], f"{label} ({g})"))
    return min(cands)


def hard_summary(results: list[dict]) -> list[str]:
    lines = []
    for res in results:
        err = res["err"]
        have_kd = any(k[0] == "k-diffusion" for k in err)
        best_t = min((t["rmse"], s) for s, t in res["tuned"].items())
        ours10, ours_label = _best(err, "polydiff", 10, "default")
        if have_kd:
            kd10, kd_label = _best(err, "k-diffusion", 10)
            ok = best_t[0] <= 0.5 * kd10
            lines.append(
                f"{res['name']}: tuned {best_t[1]} {best_t[0]:.2e} vs k-diffusion's best {kd_label} "
                f"{kd10:.2e} (ratio {best_t[0] / kd10:.2f}; target <= 0.5 -> {'met' if ok else 'NOT met'}); "
                f"our best on default grids {ours_label} {ours10:.2e} ({ours10 / kd10:.2f}x)"
            )
            for ours, twin in TWINS.items():
                grid = default_grid(ours)
                losses = [
                    b for b in HARD_BUDGETS
                    if err[("polydiff", ours, grid)][b][1] > err[("k-diffusion", twin, "karras")][b][1] * 1.0001
                    and err[("polydiff", ours, grid)][b][0] <= err[("k-diffusion", twin, "karras")][b][0]
                ]
                if losses:
                    lines.append(f"  default grid of {ours} ({grid}) loses to k-diffusion's {twin} at NFE {losses}")
    return lines


def write_hard_docs(out: dict) -> None:
    lines = [
        HARD_HEADING,
        "",
        "Generated by `python benchmarks/analytic.py --hard --write` (CPU, float64, "
        f"{out['n']} samples per target, EDM sigma in [0.002, 80], the same noise for every solver). "
        "Five-component mixtures, weights 40/30/18/10/2 %, driven by their exact denoisers; the error "
        "is the per-coordinate RMS distance to the probability-flow ODE solved by rk45 at rtol = "
        "atol = 1e-8 from the same noise. Every polydiff solver runs on both grids (Karras rho = 7, "
        "uniform log-SNR); k-diffusion's on its Karras grid. **Tuned**: `polydiff.tuning` at 10 NFE "
        f"on a separate calibration batch of {CALIB_N} draws ({TUNE_EVALS} sampling runs from each of "
        "two starting grids, the default and the best of a family, against a "
        "200-step dpmpp_3m solution), scored on the benchmark's noise, which the search never saw.",
        "",
    ]
    for res in out["results"]:
        lines += [f"**{res['name']}** — {res['desc']}", "",
                  "| library | solver | grid | " + " | ".join(f"NFE {b}" for b in HARD_BUDGETS) + " |",
                  "|---|---|---|" + "---:|" * len(HARD_BUDGETS)]
        for (lib, label, grid), row in res["err"].items():
            default = lib == "polydiff" and default_grid(label) == grid
            cells = " | ".join(
                f"{row[b][1]:.2e}" + ("" if row[b][0] == b else f" ({row[b][0]})") for b in HARD_BUDGETS
            )
            lines.append(f"| {lib} | {label} | {grid}{' (default)' if default else ''} | {cells} |")
        for smp, t in res["tuned"].items():
            lines.append(f"| polydiff | {smp} | **tuned** | – | {t['rmse']:.2e} | – |")
        lines.append("")
    lines += ["**Summary** (10 NFE):", ""] + [f"- {s.strip()}" for s in out["summary"]] + [""]
    for seed, summary in out.get("checks", {}).items():
        lines += [f"**Check on seed {seed}** (other mixtures of the same kinds, other noise and "
                  "calibration draws; tables not shown):", ""]
        lines += [f"- {s.strip()}" for s in summary] or ["- (nothing to report)"]
        lines.append("")
    lines += [
        "**Reading the numbers.** On these targets the error at 5-20 NFE is dominated by samples "
        "that end in another mode than the exact ODE solution from the same noise (one such flip "
        "costs the distance between two modes), so it is not smooth in NFE and a grid that wins "
        "on close modes loses on separated ones. Default grids: euler, heun and dpmpp_2m run "
        "k-diffusion's algorithm on its Karras grid and tie it to every digit. dpmpp_3m uses the "
        "second-derivative weight of Lu et al.'s reference code (as diffusers and k-diffusion's "
        "`sample_dpmpp_3m_sde(eta=0)` do: half the Taylor coefficient) on the Karras grid, so it "
        "ties k-diffusion at 10 and 20 NFE and wins at 5, where lower-order final steps apply; the "
        "Taylor-exact weights (`taylor=True`, order 3 where the reference weights are order 2) lost "
        "to k-diffusion by up to 4x at 15-30 NFE on the separated anisotropic target on every grid "
        "we tried, because the extrapolated second derivative is poor on sharp data. The tuned "
        "grids come from `polydiff.tuning` exactly as `polydiff schedule` runs it on a trained "
        "model: a pattern search started from the default grid and from the best of a family "
        "(Karras rho 3-60 x lowest level 1-20 sigma_min, and log-SNR); the search never sees the "
        "noise they are scored on.",
        "",
    ]
    docs = ROOT / "docs" / "benchmarks.md"
    text = docs.read_text()
    section = "\n".join(lines) + "\n"
    # the section ends at the next heading or another script's marker (<!-- name:start -->)
    pattern = re.compile(rf"^{re.escape(HARD_HEADING)}\n.*?(?=^## |^<!-- |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    docs.write_text(text)
    print(f"wrote {docs}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
