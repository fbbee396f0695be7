"""Graph generation against the published tables: community-small and grid under the GDSS
protocol (GraphRNN's kernels), planar and SBM under SPECTRE's, both protocols always computed.

For each seed: train the default graphs model (`polydiff train -m graphs` settings, or --steps),
sample as many graphs as the test set (node counts from the training set: allotted in its
proportions by default, or drawn at random as GDSS does with --node-draw random), score them
against the test set with `polydiff_graphs.evaluation.evaluate_graphs`, and record the training
time. community-small and grid are read from the exact GDSS graph lists in
../shared/data/graphs/ (their first 20 % is the test set) when that folder exists, else rebuilt
by our recipes (or --data FILE). Prints a table; --write puts it into docs/benchmarks.md between
the graphs markers (results accumulate per data set in a JSON comment there).

    python benchmarks/graphs.py --dataset community-small --seeds 3 --write
    python benchmarks/graphs.py --dataset planar --device cuda --steps 20000 --write
    # seeds side by side: --seed K --save sK.json each, then --merge s0.json s1.json s2.json --write
    # the same checkpoints sampled both ways, one table: --merge ... --compare r0.json r1.json r2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "graphs"
REFERENCE_FILES = {"community-small": "community_small.json", "grid": "grid.json"}
START, END = "<!-- graphs:start -->", "<!-- graphs:end -->"
DATA_RE = re.compile(r"<!-- graphs-bench-data (.*?) -->", re.S)
STATS = ("degree", "clustering", "orbit", "spectral")

# published rows (squared MMD; V.U.N. in %), as printed in the papers' tables
PUBLISHED = {
    "community-small": [
        ("GraphRNN (GDSS Table 1)", "gdss", {"degree": 0.080, "clustering": 0.120, "orbit": 0.040}),
        ("EDP-GNN (GDSS Table 1)", "gdss", {"degree": 0.053, "clustering": 0.144, "orbit": 0.026}),
        ("GDSS (GDSS Table 1)", "gdss", {"degree": 0.045, "clustering": 0.086, "orbit": 0.007}),
    ],
    "grid": [("GDSS (GDSS Table 1)", "gdss", {"degree": 0.111, "clustering": 0.005, "orbit": 0.070})],
    "planar": [("DiGress (DiGress Table)", "spectre", {"vun": 0.75})],
    "sbm": [("DiGress (DiGress Table)", "spectre", {"vun": 0.74})],
}


def load_data(name: str, data: str | None) -> tuple[str, str]:
    """(source for build_dataset, description)."""
    if data:
        return data, f"`{data}`"
    ref = SHARED / REFERENCE_FILES.get(name, "-")
    if ref.is_file():
        return str(ref), f"the GDSS graph list `../shared/data/graphs/{ref.name}` (first 20 % test)"
    return name, f"our `{name}` recipe (built-in)"


def run_seed(args: argparse.Namespace, source: str, seed: int, out: Path) -> dict[str, Any]:
    import torch
    from polydiff_graphs.evaluation import evaluate_graphs
    from polydiff_graphs.graphs import decode

    from polydiff.checkpoint import load_weights
    from polydiff.config import resolve
    from polydiff.generate import build_denoiser, generate
    from polydiff.registry import get_registry
    from polydiff.train import train

    graphs = get_registry().load("graphs")
    overrides: dict[str, Any] = {"train": {"seed": seed, "device": args.device}, "sample": {"seed": seed}}
    overrides["data"] = {"path": source} if source not in graphs.builtin_datasets else {"dataset": source}
    if args.steps:
        overrides["train"]["steps"] = args.steps
    if args.batch_size:
        overrides["train"]["batch_size"] = args.batch_size
    if args.threads:
        overrides["train"]["threads"] = args.threads
    if args.validate:  # choose settings here: score on graphs held out of the training split
        overrides["data"]["validation"] = args.validate
    if args.node_draw:
        overrides["data"]["sample_nodes_draw"] = args.node_draw
    config = resolve(graphs, config_file=args.config, overrides=overrides)
    sampler = args.sampler or config["sample"]["sampler"]
    sample_steps = args.sample_steps or int(config["sample"]["steps"])
    if args.eval_run:  # score an existing run's latest checkpoint (its training time unknown)
        from polydiff.cli.runs import read_record
        from polydiff.training.run_folder import latest_checkpoint

        config = read_record(args.eval_run)[0]
        if args.node_draw:  # a sampling setting: the run's recorded one may be changed
            config["data"]["sample_nodes_draw"] = args.node_draw
        # the run's own thread count: several scorings side by side on a small machine lose
        # many times their speed to OpenMP threads waiting for each other
        torch.set_num_threads(args.threads or int(config["train"].get("threads") or torch.get_num_threads()))
        checkpoint = args.checkpoint or latest_checkpoint(args.eval_run)
        done = int(re.search(r"step-(\d+)", checkpoint.name).group(1))
        result = argparse.Namespace(checkpoint=checkpoint, steps=done)
        # the training process's CPU seconds up to that checkpoint, when measured from outside
        train_wall, train_cpu = args.train_wall_s, args.train_cpu_s
    else:
        if config["train"].get("compile"):
            # inductor compiles in worker processes by default, whose CPU time process_time()
            # would not see: compile here, so the training minutes include compilation
            import torch._inductor.config

            torch._inductor.config.compile_threads = 1
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = train(graphs, config, out / f"seed{seed}", sample_at_end=False)
        train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    test = graphs.build_dataset(source, config, "validation" if args.validate else "test")
    train_set = graphs.build_dataset(source, config, "train")
    denoiser = build_denoiser(graphs, config)
    denoiser.load_state_dict(load_weights(result.checkpoint)[1])
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    denoiser.to(device).eval()
    validity = args.dataset if args.dataset in ("planar", "sbm") else None
    options = sampler_options(args.sampler_option)
    reference, train_graphs = test.networkx(), train_set.networkx()

    def sample_and_score(sample_seed: int, floor: bool = True) -> tuple[dict[str, float], float, int]:
        t1 = time.perf_counter()
        x, layout, nfe = generate(graphs, config, denoiser, n=len(test), sampler=sampler, steps=sample_steps,
                                  seed=sample_seed, device=device, dataset=train_set, **options)
        sample_s = time.perf_counter() - t1
        generated = decode({k: v.cpu() for k, v in x.items()}, {k: v.cpu() for k, v in layout.mask.items()})
        # counting 4-node orbits by enumeration explodes on dense graphs (an undertrained model's
        # 200-node samples): skip the orbit statistic then, and say so in the table
        dense = sum(g.number_of_edges() for g in generated) > 3 * sum(g.number_of_edges() for g in reference)
        stats = [s for s in STATS if not (dense and s == "orbit")]
        scores = evaluate_graphs(generated, reference, train_graphs, validity=validity, stats=stats, floor=floor)
        for key in ("gdss/orbit", "spectre/orbit") + (("reference/gdss/orbit", "reference/spectre/orbit",
                                                        "gdss/orbit_ratio", "spectre/orbit_ratio") if floor else ()):
            scores.setdefault(key, float("nan"))
        return scores, sample_s, nfe

    out = {"seed": seed, "steps": result.steps, "train_wall_s": train_wall, "train_cpu_s": train_cpu,
           "sampler": sampler, "sample_steps": sample_steps, "sampler_options": options, "n": len(test),
           "node_draw": str(config["data"].get("sample_nodes_draw") or "proportional")}
    if args.sampling_seeds:  # model selection: one checkpoint scored from many sampling seeds
        first, _, last = args.sampling_seeds.partition(":")
        # the floor is the same for every sampling seed: not recomputed (nor needed) here
        per_seed = [sample_and_score(s, floor=False)[0] for s in range(int(first), int(last))]
        out["sampling_seeds"] = args.sampling_seeds
        out["per_seed"] = per_seed  # settings compared seed by seed share each seed's node counts
        out["scores"] = {k: statistics.mean(r[k] for r in per_seed) for k in per_seed[0]}
        out["scores_std"] = {k: statistics.stdev(r[k] for r in per_seed) for k in per_seed[0]} \
            if len(per_seed) > 1 else {}
        return out
    scores, sample_s, nfe = sample_and_score(seed)
    return {**out, "load": os.getloadavg()[0], "sample_s": sample_s, "nfe": nfe, "scores": scores}


def sampler_options(pairs: list[str]) -> dict[str, Any]:
    """``["snr=0.05", "n_corrector=1"]`` -> keyword arguments of the sampler (numbers parsed)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--sampler-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


#: how the samples' node counts were chosen (runs saved before the setting existed drew them at random)
DRAWS = {"proportional": "node counts allotted in the training proportions",
         "random": "node counts drawn at random, as GDSS"}


def mean_std(values: list[float]) -> str:
    if any(v != v for v in values):  # NaN: not computed (see run_seed)
        return "n/c"
    if any(abs(v) == float("inf") for v in values):  # a ratio to a floor of exactly 0
        return "∞"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def render(entry: dict[str, Any]) -> list[str]:
    name, runs = entry["dataset"], entry["runs"]
    title = entry.get("title") or name
    lines = [f"### {title}", "", f"Data: {entry['data']}. {entry['setting']}", ""]
    if entry.get("note"):
        lines += [entry["note"], ""]
    for protocol in ("gdss", "spectre"):
        label = "GDSS / GraphRNN kernels (Gaussian-EMD; orbits Gaussian-L2, σ = 30)" if protocol == "gdss" \
            else "SPECTRE / DiGress kernels (Gaussian-TV)"
        lines += [f"**{label}**, squared MMD (lower is better); floor = train vs test:", ""]
        lines += ["| model | degree | clustering | orbit | spectral | V.U.N. | train min (wall / CPU) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for model, prot, vals in PUBLISHED.get(name, []):
            if prot != protocol:
                continue
            cells = [f"{vals[s]:.3f}" if s in vals else "–" for s in STATS]
            vun = f"{100 * vals['vun']:.0f} %" if "vun" in vals else "–"
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {vun} | – |")
        cells = [mean_std([r["scores"][f"{protocol}/{s}"] for r in runs]) for s in STATS]
        vun = mean_std([100 * r["scores"]["vun"] for r in runs]) + " %" if "vun" in runs[0]["scores"] else "–"
        minutes = mean_std([r["train_wall_s"] / 60 for r in runs]) + " / " + mean_std([r["train_cpu_s"] / 60 for r in runs])
        compare = entry.get("compare")
        how = f"; {DRAWS[runs[0].get('node_draw', 'random')]}" if compare else ""
        lines.append(f"| **polydiff** ({len(runs)} seeds{how}) | " + " | ".join(cells) + f" | {vun} | {minutes} |")
        if compare:  # the same checkpoints sampled another way, side by side
            other = compare["runs"]
            cells = [mean_std([r["scores"][f"{protocol}/{s}"] for r in other]) for s in STATS]
            lines.append(f"| polydiff ({len(other)} seeds; {DRAWS[other[0].get('node_draw', 'random')]}) | "
                         + " | ".join(cells) + " | – | same |")
        floor = [mean_std([r["scores"][f"reference/{protocol}/{s}"] for r in runs]) for s in STATS]
        lines.append("| floor: training set | " + " | ".join(floor) + " | – | – |")
        ratio = [mean_std([r["scores"][f"{protocol}/{s}_ratio"] for r in runs]) for s in STATS]
        lines.append("| polydiff / floor | " + " | ".join(ratio) + " | – | – |")
        lines.append("")
    extra = ["unique", "novel", "valid"]
    shown = [k for k in extra if k in runs[0]["scores"]]
    lines.append("Per seed: " + "; ".join(
        f"seed {r['seed']}: " + ", ".join(f"{k} {r['scores'][k]:.2f}" for k in shown)
        + f", {r['n']} graphs, sampling {r['sample_s']:.0f} s ({r['nfe']} NFE)" for r in runs) + ".")
    lines.append("")
    return lines


def write_docs(entries: dict[str, Any]) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    body = [START, "## Graph generation (graphs)", "",
            "Generated by `python benchmarks/graphs.py --dataset NAME --seeds 3 --write`. Squared MMD with the biased "
            "estimator, as the GraphRNN, GDSS and SPECTRE code compute it; as many generated graphs as test graphs; "
            "node counts from the training set (allotted in its proportions, or drawn at random as GDSS draws them: "
            "each row says which); mean ± std over seeds (the 20-graph test sets are noisy, so "
            "compare with the floor row: the training set scored the same way). Published rows are copied from the "
            "papers' tables (their protocol: GDSS's Table 1 uses the GDSS kernels, DiGress's V.U.N. SPECTRE's). n/c: not "
            "computed (the 4-node orbits are not counted when the samples hold over 3× the test set's edges: "
            "enumeration would take hours).", ""]
    order = ["community-small", "grid", "planar", "sbm"]
    for key in order + sorted(k for k in entries if k not in order):
        if key in entries:
            body += render(entries[key])
    missing = [n for n in ("community-small", "grid", "planar", "sbm") if n not in entries]
    if missing:
        body += [f"Not yet run: {', '.join(missing)}. `python benchmarks/graphs.py --dataset NAME --config "
                 "modalities/graphs/polydiff_graphs/presets/NAME.toml --write` runs one (`--device cuda` on a GPU); the "
                 "last attempt, with smoke-level budgets on the shared 2-core CPU, was stopped unfinished to let the "
                 "community-small seeds finish before the session's deadline.", ""]
    body += [f"<!-- graphs-bench-data {json.dumps(entries)} -->", END]
    from _docs import splice_section

    splice_section(START, END, "\n".join(body), path)
    print(f"wrote {path}")


def existing_entries() -> dict[str, Any]:
    path = ROOT / "docs" / "benchmarks.md"
    m = DATA_RE.search(path.read_text()) if path.exists() else None
    return json.loads(m.group(1)) if m else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="community-small", choices=["community-small", "grid", "planar", "sbm"])
    parser.add_argument("--data", default=None, help="a graph file or folder instead of the reference data")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: the default config's)")
    parser.add_argument("--batch-size", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None,
                        help="a TOML preset, e.g. modalities/graphs/polydiff_graphs/presets/community-small.toml")
    parser.add_argument("--validate", type=int, default=0,
                        help="hold out this many training graphs and score on them instead of the test set")
    parser.add_argument("--sampler", default="", help="default: the config's sample.sampler")
    parser.add_argument("--sample-steps", type=int, default=0, help="default: the config's sample.steps")
    parser.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a keyword of the sampler, e.g. snr=0.05 for pc (repeatable)")
    parser.add_argument("--node-draw", default="", choices=["", "proportional", "random"],
                        help="the samples' node counts: in the training set's exact proportions, or drawn "
                             "at random from it as GDSS and DiGress do (default: the config's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/polydiff-bench-graphs"))
    parser.add_argument("--seed", type=int, default=None, help="run this one seed only")
    parser.add_argument("--save", type=Path, default=None, help="write the (last) seed's result as JSON")
    parser.add_argument("--eval-run", type=Path, default=None, help="score this run folder's latest checkpoint (no training)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="with --eval-run: this checkpoint, not the latest")
    parser.add_argument("--train-cpu-s", type=float, default=float("nan"),
                        help="with --eval-run: the training CPU seconds to that checkpoint, measured outside")
    parser.add_argument("--train-wall-s", type=float, default=float("nan"), help="likewise, wall-clock seconds")
    parser.add_argument("--sampling-seeds", default="", metavar="A:B",
                        help="score one run (with --eval-run) from sampling seeds A..B-1 and print the "
                             "mean and std of each score: how settings are chosen on a --validate split")
    parser.add_argument("--merge", nargs="+", default=None, help="render seeds saved with --save")
    parser.add_argument("--compare", nargs="+", default=None,
                        help="with --merge: seeds of the same checkpoints sampled another way, a second row")
    parser.add_argument("--key", default=None, help="the table's title and key in the docs (default: the data set)")
    parser.add_argument("--note", default="", help="a sentence printed under the table's title")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)

    source, described = load_data(args.dataset, args.data)
    if args.merge:  # seeds run as separate processes (--seed K --save FILE), joined here
        runs = sorted((json.loads(Path(f).read_text()) for f in args.merge), key=lambda r: r["seed"])
        entry = make_entry(args, described, runs)
        if args.compare:
            entry["compare"] = {"runs": sorted((json.loads(Path(f).read_text()) for f in args.compare),
                                               key=lambda r: r["seed"])}
        print("\n".join(render(entry)))
        if args.write:
            entries = existing_entries()
            entries[args.key or args.dataset] = entry
            write_docs(entries)
        return
    runs = []
    # one checkpoint is scored once (its sampling seed: --seed, else 0), not once per training seed
    seeds = [args.seed] if args.seed is not None else [0] if args.eval_run else range(args.seeds)
    for seed in seeds:
        r = run_seed(args, source, seed, args.out / args.dataset)
        s = r["scores"]
        if args.sampling_seeds:
            sd = r["scores_std"]
            print(f"sampling seeds {args.sampling_seeds}, mean ± std: " + ", ".join(
                f"{p}/{k} {s[f'{p}/{k}']:.4f} ± {sd.get(f'{p}/{k}', float('nan')):.4f}"
                for p in ("gdss", "spectre") for k in STATS), flush=True)
            if args.save:
                args.save.write_text(json.dumps(r))
            continue
        print(f"seed {seed}: " + ", ".join(f"{p}/{k} {s[f'{p}/{k}']:.4f}" for p in ("gdss", "spectre") for k in STATS)
              + f"; train {r['train_wall_s'] / 60:.1f} min wall, {r['train_cpu_s'] / 60:.1f} min CPU", flush=True)
        runs.append(r)
        if args.save:
            args.save.write_text(json.dumps(r))
        entry = make_entry(args, described, runs)
        if args.write:  # after every seed, so an interrupted run still leaves its finished seeds
            entries = existing_entries()
            entries[args.dataset] = entry
            write_docs(entries)
    if runs:
        print("\n".join(render(make_entry(args, described, runs))))


def make_entry(args: argparse.Namespace, described: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    r0 = runs[0]
    loads = [r["load"] for r in runs if "load" in r] or [os.getloadavg()[0]]
    preset = f" with the preset `{args.config}`" if args.config else " with the default configuration"
    sampler = f"{r0.get('sampler', args.sampler)} {r0.get('sample_steps', args.sample_steps)} steps"
    if r0.get("sampler_options"):
        sampler += " (" + ", ".join(f"{k}={v}" for k, v in r0["sampler_options"].items()) + ")"
    # runs saved before the setting existed drew node counts at random
    draw = ", " + DRAWS[r0.get("node_draw", "random")]
    setting = (f"{r0['steps']} training steps per seed{preset} on {args.device} ({platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores shared with other jobs, load average {min(loads):.1f}-{max(loads):.1f} at the "
               f"end of each seed; seeds run side by side as one-thread processes, so wall ≫ CPU time), sampler {sampler}"
               f"{draw}.")
    return {"dataset": args.dataset, "data": described, "setting": setting, "runs": runs,
            "title": args.key or args.dataset, "note": args.note}


if __name__ == "__main__":
    main()
