"""Point clouds: our point transformer against a matched PointTransformerConv model, the metric
suite's cost, sample quality of a trained run, and completion against a mirror baseline.

    python benchmarks/points.py throughput [--steps 15 --rounds 2 --compile]
    python benchmarks/points.py metrics [--metric-n 200 --metric-points 2048]
    python benchmarks/points.py quality --run RUN [--emd off]
    python benchmarks/points.py completion --run RUN
    python benchmarks/points.py processes [--steps 200 --rounds 2]
    ... --write   merges the results into docs/benchmarks.md (<!-- points:start --> ... end)

``throughput`` trains both networks under the same trainer (``polydiff.train.train``, same data,
batch, loss and optimizer), interleaved A, B, A, B, and reports steps/s of each round; the peer is
torch_geometric's ``PointTransformerConv`` (the ``bench`` extra) on k-NN edges computed in torch,
in blocks of the same layout as ours, its width chosen to match our parameter count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- points:start -->", "<!-- points:end -->"
DATA_RE = re.compile(r"<!-- points-bench-data (.*?) -->")


# ------------------------------------------------------------------------------ the peer model


def build_peer(width: int, blocks: int, k: int, latents: int = 0, heads: int = 4, num_classes: int = 0):
    """Our network with torch_geometric's PointTransformerConv as the neighbourhood attention:
    the same embedding, noise modulation, global context and MLPs, only ``attend`` swapped."""
    from polydiff_points.network import PointTransformer, PointTransformerBlock, knn
    from torch import nn
    from torch_geometric.nn import PointTransformerConv

    class PeerBlock(PointTransformerBlock):
        def __init__(self):
            super().__init__(width, groups=1, latents=latents, heads=heads)
            for name in ("qkv", "pos", "pos_key", "pos_value", "gamma", "proj"):
                delattr(self, name)
            self.conv = PointTransformerConv(
                width, width, pos_nn=nn.Sequential(nn.Linear(3, width), nn.SiLU(), nn.Linear(width, width)),
                attn_nn=nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)),
                add_self_loops=False)
            self.graph = None  # (pos, edge_index) of the batch, set by the network

        def attend(self, h, rel, idx, nb_valid):
            b, n, c = h.shape
            pos, edge_index = self.graph
            return self.conv(h.reshape(b * n, c), pos, edge_index).reshape(b, n, c)

    class PeerNet(PointTransformer):
        def __init__(self):
            super().__init__(width, blocks, k, groups=1, latents=latents, heads=heads, num_classes=num_classes)
            self.blocks = nn.ModuleList(PeerBlock() for _ in range(blocks))

        def forward(self, x, c_noise, valid=None, label=None):
            b, n, _ = x.shape
            mask = torch.ones(b, n) if valid is None else valid.to(x.dtype)
            idx = knn(x.detach(), mask, k)  # (B, N, k): edges j -> i, batch-offset into one graph
            offset = (torch.arange(b) * n).view(b, 1, 1)
            dst = (torch.arange(n).view(1, n, 1).expand(b, n, idx.shape[2]) + offset).reshape(-1)
            edge_index = torch.stack([(idx + offset).reshape(-1), dst])
            for block in self.blocks:
                block.graph = (x.reshape(b * n, 3), edge_index)
            return super().forward(x, c_noise, valid, label)

    return PeerNet()


def _params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def matched_peer_width(config: dict[str, Any]) -> int:
    from polydiff_points.data import resolve_num_classes
    from polydiff_points.network import build_network

    classes = resolve_num_classes(config)
    target = _params(build_network(config, classes))
    m = config["model"]
    return min(range(8, 257, 4), key=lambda w: abs(
        _params(build_peer(w, m["blocks"], m["k"], m["latents"], m["heads"], classes)) - target))


# ------------------------------------------------------------------------------------ sections


#: steps each throughput round runs before the timed stretch
THROUGHPUT_WARM_STEPS = 5


def throughput(args) -> dict[str, Any]:
    from polydiff_points import PointsModality
    from polydiff_points.data import resolve_num_classes

    from polydiff.config import resolve
    from polydiff.train import train

    class Peer(PointsModality):
        def build_network(self, config):
            m = config["model"]
            return build_peer(self.width, int(m["blocks"]), int(m["k"]), int(m["latents"]), int(m["heads"]),
                              resolve_num_classes(config))

    ours = PointsModality()
    # the rate is read between the first and the last logged step, so start-up (and, with
    # --compile, compilation) is not counted; both networks train eagerly unless --compile
    warm = THROUGHPUT_WARM_STEPS
    cfg = resolve(ours, overrides={"train": {"steps": args.steps, "snapshot_every": 0, "plot_every": 0,
                                             "log_every": warm, "checkpoint_every": 10**6,
                                             "warmup_steps": 1, "device": "cpu", "processes": 1,
                                             "compile": bool(args.compile)}})
    if args.steps <= warm:
        raise SystemExit(f"--steps must exceed the {warm} warm-up steps the rate leaves out")
    peer = Peer()
    peer.width = matched_peer_width(cfg)
    ours.build_dataset("shapes", cfg, "train")  # generated once and cached: not part of any round
    rows: dict[str, list[float]] = {"ours": [], "PointTransformerConv": []}
    import tempfile

    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="throughput-", dir=args.tmp))  # a fresh run folder per call
    for r in range(args.rounds):
        for name, mod in (("ours", ours), ("PointTransformerConv", peer)):
            run = out / f"{name}-{r}"
            train(mod, cfg, run, sample_at_end=False)
            log = {m["step"]: m["time"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
            last = max(log)
            rows[name].append((last - warm) / (log[last] - log[warm]))
            print(f"round {r}: {name:22s} {rows[name][-1]:.3f} steps/s", flush=True)

    m = cfg["model"]
    return {
        "config": f"batch {cfg['train']['batch_size']}, {cfg['data']['num_points']} points, k {m['k']}, "
                  f"{m['blocks']} blocks, {m['latents']} latents, {cfg['train']['steps']} steps per round "
                  f"(rate over the last {cfg['train']['steps'] - warm}), {args.rounds} rounds, "
                  f"{cfg['train']['threads']} thread, one process, "
                  f"{'compiled' if args.compile else 'eager'}",
        "params": {"ours": _params(ours.build_network(cfg)),
                   "PointTransformerConv": _params(build_peer(peer.width, m["blocks"], m["k"], m["latents"],
                                                              m["heads"], resolve_num_classes(cfg)))},
        "peer_width": peer.width, "width": m["width"],
        "steps_per_s": rows, "load": os.getloadavg()[0],
    }


def processes(args) -> dict[str, Any]:
    """`polydiff train --modality points` itself with ``--processes 1`` and ``2``, interleaved: the
    step rate after the first 50 steps (compilation and start-up excluded), read from each run's
    metrics, and the command's whole wall time."""
    import subprocess
    import tempfile

    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="processes-", dir=args.tmp))
    cfg = root / "bench.toml"
    cfg.write_text("[train]\nlog_every = 25\nsnapshot_every = 0\nplot_every = 0\n[sample]\nn = 2\n")
    rows: dict[str, list[float]] = {"1": [], "2": []}
    walls: dict[str, list[float]] = {"1": [], "2": []}
    for r in range(args.rounds):
        for n in ("1", "2"):
            out = root / f"p{n}-{r}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "polydiff", "train", "-m", "points", "--config", str(cfg),
                            "--steps", str(args.steps), "--processes", n, "--out", str(out)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[n].append(time.perf_counter() - t0)
            log = {m["step"]: m["time"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
            rows[n].append((args.steps - 50) / (log[args.steps] - log[50]))
            print(f"round {r}: {n} process(es) {rows[n][-1]:.3f} steps/s, {walls[n][-1]:.0f} s wall", flush=True)
    return {"steps": args.steps, "rounds": args.rounds, "steps_per_s": rows, "wall_s": walls,
            "cores": len(os.sched_getaffinity(0)), "load": os.getloadavg()[0]}


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def metrics_cost(args) -> dict[str, Any]:
    """The whole CD suite (MMD, COV, 1-NNA, JSD) on n x n clouds, timed end to end, and EMD per pair
    (exact and approximate) on a few pairs: 3 n^2 EMD pairs at 2,048 points are hours on a CPU."""
    from polydiff_points.data import build_dataset
    from polydiff_points.metrics import (
        chamfer_matrix,
        chamfer_pair,
        emd_approx,
        emd_exact,
        pointflow_metrics,
    )

    from polydiff.config import resolve
    from polydiff.registry import get_registry

    torch.set_num_threads(int(args.threads))
    n, p = args.metric_n, args.metric_points
    # real clouds: the shapes' test split as references, train clouds standing in for samples
    per = -(-n // 8)
    cfg = resolve(get_registry().load("points"), overrides={"data": {
        "num_points": p, "train_per_class": per, "test_per_class": per}})
    refs = torch.stack(build_dataset("shapes", cfg, "test").clouds[:n])
    samples = torch.stack(build_dataset("shapes", cfg, "train").clouds[:n])
    c0, t0 = _cpu(), time.perf_counter()
    res = pointflow_metrics(samples, refs, emd="off", progress=True)
    cd_cpu, cd_wall = _cpu() - c0, time.perf_counter() - t0
    # the brute-force CD (one cdist a pair), the old path, on a few pairs for the per-pair ratio
    k = max(1, args.emd_n)
    c0 = _cpu()
    for i in range(k):
        chamfer_pair(refs[i:i + 1], samples[i:i + 1])
    brute_ms = 1000 * (_cpu() - c0) / k
    c0 = _cpu()
    chamfer_matrix(refs[:k], samples[:k])
    tree_ms = 1000 * (_cpu() - c0) / (k * k)
    c0 = _cpu()
    exact = [emd_exact(refs[i], samples[i]) for i in range(k)]
    exact_s = (_cpu() - c0) / k
    c0 = _cpu()
    approx = [emd_approx(refs[i], samples[i]) for i in range(k)]
    approx_s = (_cpu() - c0) / k
    gap = [a / e - 1 for a, e in zip(approx, exact, strict=True)]
    pairs = n * n + n * (n - 1)  # ref x sample, and the two symmetric halves
    return {"n": n, "points": p, "cd_suite_cpu_s": cd_cpu, "cd_suite_wall_s": cd_wall,
            "one_nna_cd": res["1-NNA-CD"], "tree_pair_ms": tree_ms, "brute_pair_ms": brute_ms,
            "emd_n": k, "emd_exact_pair_s": exact_s, "emd_approx_pair_s": approx_s,
            "emd_gap_mean": sum(gap) / k, "emd_gap_max": max(gap), "emd_pairs": pairs,
            "threads": int(args.threads), "load": os.getloadavg()[0]}


def _load_run(run: Path):
    from polydiff.checkpoint import load_weights
    from polydiff.generate import build_denoiser
    from polydiff.registry import get_registry

    cfg = json.loads((run / "config.json").read_text())
    cfg = cfg.get("config", cfg)
    points = get_registry().load("points")
    denoiser = build_denoiser(points, cfg)
    ckpts = sorted((run / "checkpoints").glob("step-*.safetensors"))
    _, ema, _ = load_weights(ckpts[-1])
    denoiser.load_state_dict(ema)
    return points, cfg, denoiser.eval(), ckpts[-1]


def quality(args) -> dict[str, Any]:
    from polydiff_points.evaluation import as_references, references
    from polydiff_points.metrics import chamfer_matrix, pointflow_metrics

    from polydiff.generate import generate

    torch.set_num_threads(int(args.threads))
    points, cfg, denoiser, ckpt = _load_run(Path(args.run))
    refs, labels, ds = references(cfg, args.quality_n or 10**9)
    t0, c0 = time.perf_counter(), _cpu()
    x, _, nfe = generate(points, cfg, denoiser, n=len(refs), sampler=cfg["sample"]["sampler"],
                         steps=int(cfg["sample"]["steps"]))
    sample_s, sample_cpu_s = time.perf_counter() - t0, _cpu() - c0
    # the protocol of the normalisation mode (polydiff_points.evaluation); the samples as generated
    # too, the figure this table gave before the box protocol was followed
    measured = as_references(x.float(), cfg)
    cd_refs = chamfer_matrix(refs, progress="CD ref x ref")  # shared by the three rows below
    res = pointflow_metrics(measured, refs, emd=args.emd, progress=True, cd_refs=cd_refs)
    raw = (pointflow_metrics(x.float(), refs, emd="off", cd_refs=cd_refs)
           if cfg["data"]["normalize"] == "box" else None)
    # the floor: as many training clouds, scored the same way (what a perfect model would get)
    from polydiff_points.data import build_dataset

    train_ds = build_dataset("shapes" if not cfg["data"]["path"] else cfg["data"]["path"], cfg, "train")
    pick = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(2))[: len(refs)]
    floor = pointflow_metrics(torch.stack([train_ds.clouds[i] for i in pick]), refs, emd=args.emd, cd_refs=cd_refs)
    nearest = chamfer_matrix(measured, refs).argmin(1)
    counts = {c: 0 for c in ds.classes}
    for i in nearest.tolist():
        counts[ds.classes[labels[i]]] += 1
    points.write_samples(x[:32], Path(args.run) / "bench-samples")
    steps = int(ckpt.stem.split("-")[1])
    metrics = [json.loads(line) for line in (Path(args.run) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    wall = max((m.get("wall_time", m.get("time", 0)) or 0) for m in metrics) if metrics else float("nan")
    return {"run": str(args.run), "steps": steps, "train_wall_s": wall, "train_cpu_s": args.train_cpu_s,
            "load": os.getloadavg()[0], "n": len(refs), "nfe": nfe,
            "sample_s": sample_s, "sample_cpu_s": sample_cpu_s, "normalize": cfg["data"]["normalize"], "metrics": res, "metrics_as_generated": raw, "floor": floor,
            "nearest_class_counts": counts}


def completion(args) -> dict[str, Any]:
    from polydiff_points.completion import complete, half_space, mirror_baseline
    from polydiff_points.evaluation import references
    from polydiff_points.metrics import chamfer_pair

    torch.set_num_threads(int(args.threads))
    points, cfg, denoiser, _ = _load_run(Path(args.run))
    refs, labels, ds = references(cfg, args.completion_n, seed=1)
    known = half_space(refs)
    rows = {}
    for spec in args.variants.split(","):
        resample, _, weight = spec.partition(":")
        w = float(cfg["sample"].get("imputation_guidance", 0.0)) if weight == "config" else float(weight or 0)
        x = complete(points, cfg, denoiser, refs, known, steps=int(cfg["sample"]["steps"]),
                     resample=int(resample), guidance=w)
        name = f"model (RePaint x{resample}" + (f", reconstruction guidance {w:g})" if w else ")")
        rows[name] = chamfer_pair(x, refs).tolist()
    rows["mirror the known half"] = chamfer_pair(mirror_baseline(refs, known), refs).tolist()
    points.write_inpainting(x[:16], refs[:16], known[:16], Path(args.run) / "bench-completion")
    per_class = {ds.classes[c]: [i for i, lab in enumerate(labels) if lab == c] for c in sorted(set(labels))}
    return {"n": len(refs), "cd": rows, "per_class": per_class, "normalize": cfg["data"]["normalize"]}


# -------------------------------------------------------------------------------------- docs


def _mean(v):
    return sum(v) / len(v)


def _quality_lines(q: dict[str, Any] | None, title: str) -> list[str]:
    if not q:
        return []
    r = q["metrics"]
    cost = (f"{q['train_cpu_s']:.0f} CPU s of training (one thread)" if q.get("train_cpu_s")
            else f"{q['train_wall_s'] / 60:.0f} min of training on the shared CPU")
    lines = [f"### Quality on `shapes` (test split), {title}", "",
             f"Run `{Path(q['run']).name}`: {q['steps']} steps, {cost}; {q['n']} samples against the {q['n']} test "
             f"clouds ({q['normalize']} normalisation), {q['nfe']} network calls, sampling "
             + (f"{q['sample_cpu_s']:.0f} CPU s." if q.get("sample_cpu_s") else f"{q['sample_s']:.0f} s wall (shared machine)."), "",
             "| metric | samples | training clouds (floor) |", "|---|---|---|"]
    raw = q.get("metrics_as_generated")
    if raw:  # box protocol: the samples as generated too, side by side
        lines[-2:] = ["| metric | samples (normalised per shape, the box protocol) | samples as generated | "
                      "training clouds (floor) |", "|---|---|---|---|"]
        lines += [f"| {k} | {v:.4g} | {raw.get(k, float('nan')):.4g} | {q['floor'].get(k, float('nan')):.4g} |"
                  for k, v in r.items()]
    else:
        lines += [f"| {k} | {v:.4g} | {q['floor'].get(k, float('nan')):.4g} |" for k, v in r.items()]
    lines += ["", "Samples per nearest-reference class: "
              + ", ".join(f"{c} {n}" for c, n in q["nearest_class_counts"].items()) + ".", ""]
    return lines


def _rounds_cells(rates: list[float]) -> str:
    """Two table cells: every round's steps/s, then their mean."""
    return f"{', '.join(f'{v:.3f}' for v in rates)} | {_mean(rates):.3f}"


def _rounds(n: int) -> str:
    return "one round" if n == 1 else f"{n} interleaved rounds"


def render(entries: dict[str, Any]) -> list[str]:
    lines = [START, "## Point clouds (points)", "",
             "Generated by `python benchmarks/points.py SECTION --write` (sections: throughput, metrics, "
             "quality, completion, processes). CPU figures come from a shared 2-core machine; the load average at the "
             "time is given, since other jobs ran beside these.", ""]
    lines += list(entries.get("notes") or [])
    t = entries.get("throughput")
    if t:
        ours, peer = t["steps_per_s"]["ours"], t["steps_per_s"]["PointTransformerConv"]
        lines += ["### Training-step throughput", "",
                  f"Same trainer, data and optimizer; {t['config']}; load average {t['load']:.1f}. "
                  f"The peer uses torch_geometric's `PointTransformerConv` (per-channel vector attention) "
                  f"on k-NN edges computed in torch, width {t['peer_width']} to match our parameter count.", "",
                  "| model | parameters | steps/s per round | mean steps/s |", "|---|---|---|---|",
                  f"| ours (grouped vector attention, width {t['width']}) | {t['params']['ours']:,} | "
                  f"{_rounds_cells(ours)} |",
                  f"| PointTransformerConv | {t['params']['PointTransformerConv']:,} | {_rounds_cells(peer)} |", "",
                  f"Ratio of the means: **{_mean(ours) / _mean(peer):.2f}x**; per round (each pair run "
                  f"back to back): {', '.join(f'{a / b:.2f}x' for a, b in zip(ours, peer, strict=True))} "
                  "(target ≥ 1.2x).", ""]
    p = entries.get("processes")
    if p:
        one, two = p["steps_per_s"]["1"], p["steps_per_s"]["2"]
        lines += ["### One process or two (`train.processes`)", "",
                  f"`polydiff train --modality points --steps {p['steps']} --processes 1|2`, the default "
                  f"configuration (compiled, batch 16, one thread per process) on {p['cores']} cores, "
                  f"{_rounds(p['rounds'])}; steps/s after step 50 (compilation excluded); load "
                  f"average {p['load']:.1f}.", "",
                  "| processes | steps/s per round | mean steps/s | command wall time per round |", "|---|---|---|---|",
                  *(f"| {n} | {_rounds_cells(p['steps_per_s'][n])} | "
                    f"{', '.join(f'{v:.0f} s' for v in p['wall_s'][n])} |" for n in ("1", "2")), "",
                  f"Two processes: **{_mean(two) / _mean(one):.2f}x** the step rate of one.", ""]
    m = entries.get("metrics")
    if m and "cd_suite_cpu_s" in m:
        lines += ["### Metric suite cost", "",
                  f"{m['n']} samples × {m['n']} references of {m['points']} points (`shapes` clouds), "
                  f"{m['threads']} thread, load average {m['load']:.1f}. Measured end to end: MMD, COV and "
                  f"1-NNA with CD (3 matrices, {m['emd_pairs']:,} distinct pairs: the two same-set "
                  f"matrices are symmetric, each half computed once) and JSD: **{m['cd_suite_cpu_s']:.0f} CPU s** "
                  f"({m['cd_suite_wall_s']:.0f} s wall on the shared machine).", "",
                  "| per pair (CPU) | ours | before |", "|---|---|---|",
                  f"| Chamfer distance | {m['tree_pair_ms']:.1f} ms (k-d trees, exact float64) | "
                  f"{m['brute_pair_ms']:.1f} ms (one brute-force `cdist`) |",
                  f"| EMD | {m['emd_approx_pair_s']:.2f} s approximate (sparse assignment; "
                  f"{100 * m['emd_gap_mean']:.1f} % above exact on average, {100 * m['emd_gap_max']:.1f} % at most, "
                  f"{m['emd_n']} pairs) | {m['emd_exact_pair_s']:.2f} s exact (scipy's dense assignment) |", "",
                  f"The EMD rows at this size were not run: {m['emd_pairs']:,} pairs × "
                  f"{m['emd_approx_pair_s']:.2f} s ≈ {m['emd_pairs'] * m['emd_approx_pair_s'] / 3600:.0f} CPU hours "
                  f"approximate ({m['emd_pairs'] * m['emd_exact_pair_s'] / 3600:.0f} exact): EMD at 2,048 points "
                  "needs a GPU or fewer clouds. At 512 points (`auto` takes the exact one there) a pair costs "
                  "tens of milliseconds.", ""]
    for key, title in (("quality", "the default configuration"), ("quality_long", "the long preset")):
        lines += _quality_lines(entries.get(key), title)
    c = entries.get("completion")
    if c:
        lines += ["### Completion of held-out shapes from their x > 0 half", "",
                  f"{c['n']} test clouds ({c['normalize']} normalisation); Chamfer distance of the completed cloud "
                  "to the whole true cloud (lower is better); per class, the mean over its clouds; the last "
                  "column counts the clouds a method completes closer than the mirror does.", ""]
        classes = list((c.get("per_class") or {}).items())
        mirror = c["cd"].get("mirror the known half")
        lines += ["| method | mean CD | " + " | ".join(k for k, _ in classes) + " | closer than the mirror |",
                  "|---|---|" + "---|" * len(classes) + "---|"]
        for k, v in c["cd"].items():
            per = [f"{_mean([v[i] for i in idx]):.4g}" for _, idx in classes]
            closer = "–" if mirror is None or v is mirror else f"{sum(a < b for a, b in zip(v, mirror, strict=True))} of {len(v)}"
            lines.append(f"| {k} | {_mean(v):.4g} | " + " | ".join(per) + f" | {closer} |")
        lines += [""]
    lines += [f"<!-- points-bench-data {json.dumps(entries)} -->", END]
    return lines


def write_docs(entries: dict[str, Any]) -> None:
    from _docs import splice_section

    path = ROOT / "docs" / "benchmarks.md"
    splice_section(START, END, "\n".join(render(entries)), path)
    print(f"wrote {path}")


def existing_entries() -> dict[str, Any]:
    path = ROOT / "docs" / "benchmarks.md"
    m = DATA_RE.search(path.read_text()) if path.exists() else None
    return json.loads(m.group(1)) if m else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["throughput", "metrics", "quality", "completion", "processes",
                                            "merge"],
                        help="merge: write saved sections (--from) and --notes into the docs")
    parser.add_argument("--from", dest="sources", type=Path, nargs="*", default=[],
                        help="merge: JSON files written by --save")
    parser.add_argument("--notes", type=Path, help="merge: markdown shown at the top of the section")
    parser.add_argument("--train-cpu-s", type=float, default=0.0,
                        help="quality: the run's training CPU seconds, when measured outside the run")
    parser.add_argument("--run", type=Path, help="a trained points run (quality, completion)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--compile", action="store_true", help="throughput: compile both networks")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--metric-n", type=int, default=200)
    parser.add_argument("--metric-points", type=int, default=2048)
    parser.add_argument("--emd-n", type=int, default=8, help="metrics: EMD pairs timed")
    parser.add_argument("--emd", default="off", help="quality: exact | approx | auto | off")
    parser.add_argument("--completion-n", type=int, default=32)
    parser.add_argument("--variants", default="1:0,4:0,4:config",
                        help="completion: RePaint rounds:reconstruction-guidance weight, comma-separated "
                             "('config': the run's sample.imputation_guidance)")
    parser.add_argument("--quality-n", type=int, default=0, help="reference clouds (0: the test split)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tmp", default="/tmp/points-bench")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--save", type=Path, help="also write the section's raw result (JSON) here")
    args = parser.parse_args()
    if args.section == "merge":
        entries = existing_entries()
        for src in args.sources:
            entries.update(json.loads(src.read_text()))
        if args.notes:
            entries["notes"] = args.notes.read_text().rstrip("\n").split("\n") + [""]
        write_docs(entries)
        return
    if args.section in ("quality", "completion") and args.run is None:
        sys.exit(f"{args.section} needs --run RUN")
    result = {"throughput": throughput, "metrics": metrics_cost, "quality": quality,
              "completion": completion, "processes": processes}[args.section](args)
    print("\n".join(render({args.section: result})))  # the side-by-side table, as in the docs
    if args.save:
        args.save.write_text(json.dumps({args.section: result}))
    if args.write:
        entries = existing_entries()
        entries[args.section] = result
        write_docs(entries)


if __name__ == "__main__":
    main()
