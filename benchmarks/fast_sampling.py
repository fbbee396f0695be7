"""Fast sampling: a trained teacher at its default NFE, its best solvers at 4, 6, 10 NFE on default
and tuned grids, and progressively distilled students at 1, 2, 4 NFE, per modality.

    python benchmarks/fast_sampling.py --teacher images=RUN_DIR            # reuse a trained run
    python benchmarks/fast_sampling.py --modalities images --write          # trains what is missing

For each modality of ``--modalities`` (default: images; any of images, audio, points, graphs):

1. the teacher: ``--teacher NAME=RUN`` or a run trained here with the modality's default config;
2. the teacher with its configured sampler and steps (the default NFE), then ``dpmpp_2m`` and
   ``unipc`` at 4, 6 and 10 NFE on their default grids and on grids tuned to the teacher by
   :mod:`polydiff.tuning` (calibration batch of ``--tune-n``, seed 0; the scored samples use
   another seed);
3. one progressive distillation to 1 step (:mod:`polydiff.distill`, chain 1 <- 2 <- ... <- 32),
   whose round teachers are the students at 16, 8, 4 and 2 steps: the 4- and 2-step students are
   read from ``distill/round-03`` and ``round-04``, the 1-step one from the final EMA. CPU time
   is measured per round (process time, all threads).

Every row samples ``--n`` items with the same seed and scores them with the modality's own metrics
(images on digits: classifier Fréchet distance and the share of confidently classified samples);
"s/sample" is the wall time of sampling divided by n, on this machine as loaded as it was.

``--write`` rewrites the section between ``<!-- fast_sampling:start -->`` and
``<!-- fast_sampling:end -->`` in docs/benchmarks.md and draws docs/benchmarks_fast_sampling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- fast_sampling:start -->", "<!-- fast_sampling:end -->"
NFES = (4, 6, 10)
SOLVERS = ("dpmpp_2m", "unipc")
#: the field's headline numbers per modality: (metric key, label, lower is better)
HEADLINE = {
    "images": [("fd", "classifier FD", True), ("confident", "confident", False)],
    "graphs": [("gdss/degree", "degree MMD", True), ("gdss/clustering", "clustering MMD", True),
               ("gdss/orbit", "orbit MMD", True)],
    "audio": [("pitch_accuracy", "pitch accuracy", False), ("fid", "classifier FID", True)],
    "points": [("1-NNA-CD", "1-NNA-CD", True), ("MMD-CD", "MMD-CD", True), ("COV-CD", "COV-CD", False)],
}

#: what each modality's ``reference/`` rows score (the floor printed under its table)
FLOOR = {
    "images": "a random train subset of the same size against the train set",
    "graphs": "the training set against the test set",
    "audio": "pitch: a train subset of the same size; classifier FID: the test set against the train set",
    "points": "none reported",
}


def headline(modality: str, results: dict[str, dict[str, Any]]) -> list[tuple[str, str, float]]:
    """(label, key, value) of the metrics reported for ``modality``: its headline keys, or the
    first two numeric ones of its first metric."""
    flat = {k: v for group in results.values() for k, v in group.items()}
    keys = HEADLINE.get(modality)
    if keys is None:
        first = next(iter(results.values()))
        keys = [(k, k, True) for k, v in first.items() if isinstance(v, (int, float)) and "/" not in k][:2]
    return [(label, key, float(flat[key])) for key, label, _ in keys if key in flat]


def load_run(run_dir: Path, device: str = "cpu"):
    from polydiff.checkpoint import load_weights
    from polydiff.generate import build_denoiser
    from polydiff.registry import get_registry
    from polydiff.training.run_folder import latest_checkpoint

    record = json.loads((run_dir / "config.json").read_text())
    cfg, name = record["config"], record["modality"]
    plugin = get_registry().load(name)
    model_sd, ema_sd, meta = load_weights(latest_checkpoint(run_dir))
    net = build_denoiser(plugin, cfg)
    net.load_state_dict(ema_sd or model_sd)
    return plugin, cfg, net.to(device).eval()


def score(plugin, cfg, net, *, sampler, steps, n, seed, sigmas=None, guidance=None, dataset=None):
    """Sample n items and score them: (metrics, nfe, seconds per sample)."""
    from polydiff.generate import generate
    from polydiff.metrics import evaluate_samples

    options = {} if sigmas is None else {"sigmas": sigmas}
    t0 = time.perf_counter()
    with torch.no_grad():
        x, layout, nfe = generate(
            plugin, cfg, net, n=n, sampler=sampler, steps=steps, seed=seed, guidance=guidance,
            dataset=dataset, **options,
        )
    per = (time.perf_counter() - t0) / n
    eval_cfg = {**cfg, "sample": {**cfg["sample"], "seed": seed}, "eval": {"features": None, "extractor": None}}
    res = evaluate_samples(plugin, x, eval_cfg, mask=layout.mask, cond=layout.cond)
    return res, nfe, per


def teacher_rows(plugin, cfg, net, args, dataset) -> list[dict]:
    from polydiff.sde import build_sde
    from polydiff.tuning import steps_for_nfe, tune_modality

    sde = build_sde(cfg["sde"])
    sc = cfg["sample"]
    rows = []
    res, nfe, per = score(plugin, cfg, net, sampler=sc["sampler"], steps=int(sc["steps"]),
                          n=args.n, seed=args.seed, dataset=dataset)
    rows.append({"model": "teacher", "solver": sc["sampler"], "grid": "default", "nfe": nfe,
                 "per": per, "metrics": res})
    print_row(plugin.name, rows[-1])
    for solver in SOLVERS:
        for budget in NFES:
            steps = steps_for_nfe(solver, budget, sde)
            res, nfe, per = score(plugin, cfg, net, sampler=solver, steps=steps, n=args.n,
                                  seed=args.seed, dataset=dataset)
            rows.append({"model": "teacher", "solver": solver, "grid": "default", "nfe": nfe,
                         "per": per, "metrics": res})
            print_row(plugin.name, rows[-1])
            if solver not in args.tune_solvers.split(","):
                continue
            tuned = tune_modality(
                plugin, cfg, net, sampler=solver, steps=steps, n=args.tune_n, seed=0,
                holdout_seed=1, max_evals=args.tune_evals, reference_steps=args.reference_steps,
                dataset=dataset,
            )
            res, nfe, per = score(plugin, cfg, net, sampler=solver, steps=steps, n=args.n,
                                  seed=args.seed, sigmas=tuned.tensor().float(), dataset=dataset)
            rows.append({"model": "teacher", "solver": solver, "grid": "tuned", "nfe": nfe,
                         "per": per, "metrics": res, "tune_s": tuned.seconds,
                         "kept_default": bool(tuned.extra.get("kept_default"))})
            print_row(plugin.name, rows[-1])
    return rows


def student_rows(plugin, cfg, net, args, dataset, work: Path) -> tuple[list[dict], dict]:
    from polydiff.distill import DISTILL_DIR, distill, distill_levels, read_spec
    from polydiff.sde import build_sde

    out = work / f"{plugin.name}-student"
    done = (out / "checkpoints" / "latest.json").exists() and read_spec(out).rounds * args.steps_per_round <= _step(out)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if not done:
        resume = (out / "checkpoints" / "latest.json").exists()
        distill(plugin, None if resume else Path(args.teacher_dirs[plugin.name]), out, k=1,
                steps_per_round=args.steps_per_round, base_levels=32, resume=resume,
                teacher_substeps=args.teacher_substeps,
                teacher=None if resume else (cfg, net, {"run_dir": args.teacher_dirs[plugin.name]}))
    cost = {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0, "fresh": not done,
            "rounds": _round_times(out, args.steps_per_round), "threads": torch.get_num_threads()}
    spec = read_spec(out)
    sde = build_sde(cfg["sde"])
    student_cfg = json.loads((out / "config.json").read_text())["config"]
    from safetensors.torch import load_file

    _, _, model = load_run(out)
    final = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    for k, source in ((4, "round-03"), (2, "round-04"), (1, None)):
        # one network, its weights swapped: the round teachers, then the final EMA
        weights = final if source is None else load_file(str(out / DISTILL_DIR / f"{source}.safetensors"))
        model.load_state_dict(weights)
        res, nfe, per = score(plugin, student_cfg, model, sampler="euler", steps=k, n=args.n,
                              seed=args.seed, sigmas=distill_levels(sde, k).float(), guidance=1.0,
                              dataset=dataset)
        rows.append({"model": f"student ({k}-step)", "solver": "euler (DDIM)", "grid": "distilled",
                     "nfe": nfe, "per": per, "metrics": res})
        print_row(plugin.name, rows[-1])
    cost["chain"] = spec.chain
    return rows, cost


def consistency_rows(plugin, cfg, net, args, dataset, work: Path) -> tuple[list[dict], dict]:
    """Consistency distillation (``polydiff.distill``, method "consistency") with the same number
    of training steps as the progressive chain to 1 step, then the one student at 1, 2 and 4
    steps of the consistency sampler."""
    from polydiff.distill import distill, distill_levels, level_chain
    from polydiff.sde import build_sde

    out = work / f"{plugin.name}-consistency"
    total = (len(level_chain(1, 32)) - 1) * args.steps_per_round
    done = (out / "checkpoints" / "latest.json").exists() and _step(out) >= total
    cpu0, t0 = time.process_time(), time.perf_counter()
    if not done:
        resume = (out / "checkpoints" / "latest.json").exists()
        distill(plugin, None if resume else Path(args.teacher_dirs[plugin.name]), out, k=4,
                steps_per_round=total, base_levels=32, resume=resume, method="consistency",
                teacher_substeps=2,
                teacher=None if resume else (cfg, net, {"run_dir": args.teacher_dirs[plugin.name]}))
    cost = {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0,
            "fresh": not done, "steps": total, "levels": 32, "threads": torch.get_num_threads()}
    sde = build_sde(cfg["sde"])
    student_cfg = json.loads((out / "config.json").read_text())["config"]
    _, _, model = load_run(out)
    rows = []
    for k in (4, 2, 1):
        res, nfe, per = score(plugin, student_cfg, model, sampler="consistency", steps=k, n=args.n,
                              seed=args.seed, sigmas=distill_levels(sde, k).float(), guidance=1.0,
                              dataset=dataset)
        rows.append({"model": f"consistency ({k}-step)", "solver": "consistency",
                     "grid": "distilled", "nfe": nfe, "per": per, "metrics": res})
        print_row(plugin.name, rows[-1])
    return rows, cost


def _step(run_dir: Path) -> int:
    from polydiff.training.run_folder import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    return int(ckpt.stem.split("-")[-1]) if ckpt else 0


def _round_times(run_dir: Path, spr: int) -> list[float]:
    """Training seconds of each round, from metrics.jsonl's cumulative ``time``."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    times = {r["step"]: r["time"] for r in rows if "time" in r}
    marks = sorted(s for s in times if s % spr == 0)
    out, prev = [], 0.0
    for s in marks:
        out.append(times[s] - prev)
        prev = times[s]
    return out


def print_row(name: str, row: dict) -> None:
    vals = ", ".join(f"{label} {value:.4g}" for label, _, value in headline(name, row["metrics"]))
    print(f"{name:<7} {row['model']:<17} {row['solver']:<13} {row['grid']:<9} NFE {row['nfe']:3d}  "
          f"{vals}  {row['per'] * 1000:.1f} ms/sample", flush=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", default="images")
    parser.add_argument("--teacher", action="append", default=[], help="NAME=RUN_DIR")
    parser.add_argument("--work", default="/tmp/polydiff-fast-sampling")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--n-of", action="append", default=[],
                        help="NAME=N: the sample count of rows saved without one (older runs)")
    parser.add_argument("--tune-n-of", action="append", default=[],
                        help="NAME=N: the calibration batch of rows saved without one")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tune-n", type=int, default=64)
    parser.add_argument("--tune-evals", type=int, default=60)
    parser.add_argument("--reference-steps", type=int, default=60)
    parser.add_argument("--steps-per-round", type=int, default=150)
    parser.add_argument("--teacher-substeps", type=int, default=1)
    parser.add_argument("--tune-solvers", default="unipc")
    parser.add_argument("--part", choices=("teacher", "students", "consistency", "all", "none"),
                        default="all",
                        help="run one half (results kept in --work, so two processes can share "
                        "it); none: only merge what --work holds (with --write)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("POLYDIFF_BENCH_THREADS", "1")))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.teacher_dirs = dict(t.split("=", 1) for t in args.teacher)
    n_of = {k: int(v) for k, v in (t.split("=", 1) for t in args.n_of)}
    tune_n_of = {k: int(v) for k, v in (t.split("=", 1) for t in args.tune_n_of)}
    load = os.getloadavg()[0]
    results = {}
    for name in [m for m in args.modalities.split(",") if m]:
        from polydiff.config import data_source

        if name not in args.teacher_dirs:
            args.teacher_dirs[name] = str(train_teacher(name, work))
        if args.part != "none":
            plugin, cfg, net = load_run(Path(args.teacher_dirs[name]))
            dataset = plugin.build_dataset(data_source(cfg["data"]), cfg, "train")
        if args.part in ("teacher", "all"):
            rows = teacher_rows(plugin, cfg, net, args, dataset)
            _save(work / f"{name}-teacher-rows.json", {"rows": rows, "load": load, "n": args.n,
                                                            "tune_n": args.tune_n})
        if args.part in ("students", "all"):
            srows, cost = student_rows(plugin, cfg, net, args, dataset, work)
            _save(work / f"{name}-student-rows.json", {"rows": srows, "cost": cost, "load": load})
            print(f"{name}: distillation {cost['cpu_s'] / 60:.1f} CPU min, rounds {cost['rounds']}")
        if args.part in ("consistency", "all"):
            crows, ccost = consistency_rows(plugin, cfg, net, args, dataset, work)
            _save(work / f"{name}-consistency-rows.json", {"rows": crows, "cost": ccost, "load": load})
            print(f"{name}: consistency distillation {ccost['cpu_s'] / 60:.1f} CPU min")
        tpath, spath = (work / f"{name}-{p}-rows.json" for p in ("teacher", "student"))
        if tpath.exists():  # students are optional: a modality may have only its teacher rows
            t = json.loads(tpath.read_text())
            st = json.loads(spath.read_text()) if spath.exists() else {"rows": [], "cost": None, "load": 0}
            results[name] = {"rows": t["rows"] + st["rows"], "cost": st["cost"],
                             "teacher": args.teacher_dirs[name], "load": max(t["load"], st["load"]),
                             "n": int(t.get("n") or n_of.get(name, args.n)),
                             "tune_n": int(t.get("tune_n") or tune_n_of.get(name, args.tune_n))}
            cpath = work / f"{name}-consistency-rows.json"
            if cpath.exists():
                c = json.loads(cpath.read_text())
                results[name]["rows"] += c["rows"]
                results[name]["consistency_cost"] = c["cost"]
                results[name]["load"] = max(results[name]["load"], c["load"])
    out = {"results": results, "load": max([r["load"] for r in results.values()] or [load]),
           "args": {"steps_per_round": args.steps_per_round, "tune_n": args.tune_n,
                    "tune_evals": args.tune_evals, "reference_steps": args.reference_steps,
                    "teacher_substeps": args.teacher_substeps}}
    if args.write and results:
        write_docs(out)
    return out


def _save(path: Path, data: dict) -> None:
    from polydiff.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, default=float))


def train_teacher(name: str, work: Path) -> Path:
    from polydiff.config import resolve
    from polydiff.registry import get_registry
    from polydiff.train import train

    run = work / f"{name}-teacher"
    if not (run / "checkpoints" / "latest.json").exists():
        plugin = get_registry().load(name)
        train(plugin, resolve(plugin), run, sample_at_end=False)
    return run


def write_docs(out: dict) -> None:
    lines = [
        START,
        "## Fast sampling: tuned grids and distilled students",
        "",
        "Generated by `python benchmarks/fast_sampling.py --write` (CPU, one thread, machine shared "
        f"with other jobs: load average {out['load']:.1f} on 2 cores at the start, so wall times are "
        f"noisy; one seed; the samples per row and the calibration batch are given with each "
        f"table). Tuned grids: `polydiff.tuning` on a calibration batch, {out['args']['tune_evals']} sampling runs "
        "from each of two starting grids (the default, and the best of a family of Karras and "
        "log-SNR grids), against a "
        f"{out['args']['reference_steps']}-step dpmpp_3m solution, the default kept when a held-out "
        "batch prefers it; students: "
        f"progressive distillation to 1 step, {out['args']['steps_per_round']} steps per round, "
        f"first-round teacher steps integrated with {out['args']['teacher_substeps']} Heun "
        "substep(s) (1: plain DDIM, as in PD) (the 4- and 2-step students are the round teachers "
        "of the 1-step run).",
        "",
        "![quality vs NFE](benchmarks_fast_sampling.png)",
        "",
    ]
    for name, res in out["results"].items():
        labels = [label for label, _, _ in headline(name, res["rows"][0]["metrics"])]
        lines += [f"**{name}** (teacher `{Path(res['teacher']).name}`, {res['n']} samples per row, calibration batch {res['tune_n']})", "",
                  "| model | solver | grid | NFE | " + " | ".join(labels) + " | ms/sample |",
                  "|---|---|---|---:|" + "---:|" * len(labels) + "---:|"]
        for r in res["rows"]:
            vals = " | ".join(f"{v:.4g}" for _, _, v in headline(name, r["metrics"]))
            grid = r["grid"] + (" (kept default)" if r.get("kept_default") else "")
            lines.append(f"| {r['model']} | {r['solver']} | {grid} | {r['nfe']} | {vals} | "
                         f"{r['per'] * 1000:.1f} |")
        flat = {k: v for g in res["rows"][0]["metrics"].values() for k, v in g.items()}
        floor = [f"{label} {flat['reference/' + key]:.4g}" for label, key, _ in
                 headline(name, res["rows"][0]["metrics"]) if f"reference/{key}" in flat]
        if floor:
            lines += ["", f"Real data scored the same way ({FLOOR[name]}): {', '.join(floor)}."]
        lines += ["", _reading(name, res["rows"])]
        c = res["cost"]
        if c is None:
            lines += ["", "No distilled students for this modality in this run (not measured)."]
            c = {"rounds": [], "chain": [], "cpu_s": 0.0, "wall_s": 0.0}
        rounds = ", ".join(f"{t / 60:.1f}" for t in c["rounds"])
        if c["rounds"]:
            lines += ["", f"Progressive distillation (chain {c['chain']}, {len(c['rounds'])} "
                      f"rounds): {c['cpu_s'] / 60:.1f} CPU minutes of process time (all threads), "
                      f"{c['wall_s'] / 60:.1f} minutes wall clock on the shared machine; training "
                      f"minutes per round, finest student first: {rounds}."]
        cc = res.get("consistency_cost")
        if cc:
            lines += ["", f"Consistency distillation (the same {cc['steps']} training steps, one run "
                      f"against the teacher on {cc['levels']} levels, one Heun teacher step per "
                      f"pair, stop-gradient target): {cc['cpu_s'] / 60:.1f} CPU minutes of process "
                      f"time, {cc['wall_s'] / 60:.1f} minutes wall clock; its one student samples "
                      "at every K."]
        lines.append("")
    lines += [
        "Caveats: one seed and 64-250 samples per row, so small differences (FD a few tenths "
        "near the real-data floor, a few points of 1-NNA or pitch accuracy on 64 samples, "
        "audio FID on 64 clips, which is biased upward at that size) are within what another "
        "seed could change (not measured here); "
        "the students sample without the doubled classifier-free-guidance batch (their guidance is "
        "distilled in), which is part of their lower time per sample; rows were timed while other "
        "jobs shared the CPU.",
        "",
        END,
    ]
    from _docs import splice_section

    path = ROOT / "docs" / "benchmarks.md"
    splice_section(START, END, "\n".join(lines), path)
    make_plot(out, ROOT / "docs" / "benchmarks_fast_sampling.png")
    print(f"wrote {path}")


def _reading(name: str, rows: list[dict]) -> str:
    """One sentence read off a modality's table, on its first headline metric."""
    label, key, _ = headline(name, rows[0]["metrics"])[0]
    lower = next(low for k, _, low in HEADLINE.get(name, [(key, label, True)]) if k == key)

    def value(r: dict) -> float:
        return next(v for _, k, v in headline(name, r["metrics"]) if k == key)

    def best(rs: list[dict]) -> dict:
        return (min if lower else max)(rs, key=value)

    teacher = rows[0]
    fast = best([r for r in rows if r["model"] == "teacher" and r["nfe"] <= 6])
    parts = [f"Read off the table ({label}, {'lower' if lower else 'higher'} is better): the teacher "
             f"scores {value(teacher):.4g} at {teacher['nfe']} NFE; its best solver at 6 NFE or fewer, "
             f"{fast['solver']} on the {fast['grid']} grid at {fast['nfe']}, {value(fast):.4g}"]
    for prefix, what in (("student", "progressive"), ("consistency", "consistency")):
        for k in (4, 1):
            r = next((r for r in rows if r["model"] == f"{prefix} ({k}-step)"), None)
            if r is not None:
                parts.append(f"the {what} student at {k} step{'s' if k > 1 else ''} {value(r):.4g}")
    return "; ".join(parts) + "."


def make_plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(out["results"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = out["results"][name]["rows"]
        label, key, _ = headline(name, rows[0]["metrics"])[0]
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows[1:]:
            tag = ("progressive student" if r["model"].startswith("student")
                   else "consistency student" if r["model"].startswith("consistency")
                   else f"{r['solver']} ({r['grid']})")
            value = next(v for lab, k, v in headline(name, r["metrics"]) if k == key)
            series.setdefault(tag, []).append((r["nfe"], value))
        for tag, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=4, label=tag)
        base = next(v for lab, k, v in headline(name, rows[0]["metrics"]) if k == key)
        ax.axhline(base, color="k", ls=":", lw=1, label=f"teacher, {rows[0]['nfe']} NFE")
        ax.set_xscale("log")
        values = [v for pts in series.values() for _, v in pts] + [base]
        if min(values) > 0 and max(values) / min(values) > 3:  # bounded scores (accuracies) stay linear
            ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel(label)
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
