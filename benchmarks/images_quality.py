"""Quality of the default images run: sample metrics and inpainting of held-out digits.

    python benchmarks/images_quality.py --train            # time `polydiff train --modality images`
    python benchmarks/images_quality.py RUN_DIR            # score an existing run
    python benchmarks/images_quality.py RUN_DIR --write    # also write docs/benchmarks.md
    python benchmarks/images_quality.py RUN_DIR --inpaint-sweep heun:18:1:0,ddpm:30:1:30

Scores, with the shipped digits classifier (see ``polydiff_images.evaluation``):

- **samples** as `polydiff sample` draws them by default (the run's sampler, steps, guidance and
  the data's class balance), and for a class-conditional run also unconditionally (null class,
  no guidance): classifier Fréchet distance, class-coverage TV, share confidently classified,
  precision / recall; real train digits scored the same way give the floor;
- **inpainting**: every held-out (test split) digit with its left half regenerated (the core's
  imputation with the run's inpainting sampler, reconstruction guidance and RePaint rounds, null
  class); the share whose completion
  the classifier assigns the digit's true class, beside the classifier on the complete digits
  (the ceiling) and on the right halves alone, the left half blank (what inpainting starts from).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Images: quality of the default run"


def train_default(out: Path) -> float:
    """Run the real CLI with the defaults; returns wall seconds."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "polydiff", "train", "--modality", "images", "--out", str(out)]
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _open(run_dir: Path):
    from polydiff.cli.runs import load_denoiser, read_record
    from polydiff.registry import get_registry

    cfg, name = read_record(run_dir)
    plugin = get_registry().load(name)
    return load_denoiser(run_dir, plugin, cfg, device="cpu")


def sample_metrics(run: Any, n: int, *, cond: Any = None, guidance: float | None = None) -> dict:
    from polydiff.generate import generate
    from polydiff.metrics import evaluate_samples

    sc = run.config["sample"]
    t0 = time.perf_counter()
    x, layout, nfe = generate(
        run.plugin, run.config, run.denoiser, n=n, sampler=sc["sampler"], steps=int(sc["steps"]),
        seed=int(sc["seed"]), cond=cond, guidance=guidance,
    )
    seconds = time.perf_counter() - t0
    result = evaluate_samples(run.plugin, x, run.config)["quality"]
    return {**result, "nfe": nfe, "sample_seconds": round(seconds, 1)}


def inpainting(
    run: Any, limit: int | None, batch: int = 100, sample: dict[str, Any] | None = None
) -> dict:
    from polydiff_images.classifier import load_reference_classifier
    from polydiff_images.inputs import preset_mask

    from polydiff.config import data_source
    from polydiff.generate import generate

    cfg = run.config
    test = run.plugin.build_dataset(data_source(cfg["data"]), cfg, "test")
    images, labels = test.images, test.labels
    if limit:
        images, labels = images[:limit], labels[:limit]
    keep = preset_mask("left", images.shape[-1]).expand_as(images[0])
    sc = {**cfg["sample"], **(sample or {})}
    rounds = int(sc.get("imputation_resample", 1))
    weight = float(sc.get("imputation_guidance", 0.0))
    sampler = sc.get("inpaint_sampler") or sc["sampler"]
    steps = int(sc.get("inpaint_steps") or sc["steps"])
    done = []
    t0 = time.perf_counter()
    for start in range(0, len(images), batch):
        values = images[start : start + batch]
        m = len(values)
        x, _, _ = generate(
            run.plugin, cfg, run.denoiser, n=m, sampler=sampler, steps=steps,
            seed=int(sc["seed"]) + start, cond={"label": torch.full((m,), -1)}, guidance=1.0,
            known=(values, keep.expand_as(values)), imputation_resample=rounds,
            imputation_guidance=weight,
        )
        done.append(x)
    seconds = time.perf_counter() - t0
    filled = torch.cat(done)
    clf = load_reference_classifier("digits")

    def accuracy(x: torch.Tensor) -> float:
        return float((clf.predict(x.clamp(-1, 1))[1].argmax(1) == labels).float().mean())

    blank = torch.where(keep.bool(), images, torch.full_like(images, -1.0))
    return {
        "n": len(images),
        "sampler": f"{sampler} {steps}",
        "resample": rounds,
        "guidance_weight": weight,
        "accuracy": accuracy(filled),
        "accuracy_complete": accuracy(images),
        "accuracy_right_half_only": accuracy(blank),
        "seconds": round(seconds, 1),
    }


ROWS = [
    ("fd", "classifier Fréchet distance", "lower"),
    ("class_tv", "class coverage TV", "≤ 0.05"),
    ("confident", "share confident ≥ 0.9", "≥ 0.90"),
    ("precision", "precision (k = 3)", ""),
    ("recall", "recall (k = 3)", ""),
]


def markdown(result: dict) -> str:
    cols = [("default sampling", result["default"])]
    if "unconditional" in result:
        cols.append(("unconditional", result["unconditional"]))
    head = "| metric | target | " + " | ".join(c for c, _ in cols) + " | real digits |"
    lines = [head, "|" + "---|" * (len(cols) + 3)]
    for key, label, target in ROWS:
        vals = " | ".join(f"{r[key]:.3f}" if key in r else "" for _, r in cols)
        ref = cols[0][1].get("reference/" + key)
        lines.append(f"| {label} | {target} | {vals} | {'' if ref is None else f'{ref:.3f}'} |")
    inp = result["inpainting"]
    lines += [
        "",
        f"Inpainting, left half of {inp['n']} held-out digits regenerated "
        f"({inp['sampler']} steps, reconstruction guidance {inp['guidance_weight']:g}, "
        f"{inp['resample']} RePaint round(s), {inp['seconds']} s): the classifier finds the true "
        f"class in **{inp['accuracy']:.1%}** of the completions (target ≥ 80 %); on the complete "
        f"digits {inp['accuracy_complete']:.1%}, on the right halves alone "
        f"{inp['accuracy_right_half_only']:.1%}.",
    ]
    return "\n".join(lines)


def write_docs(result: dict) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    meta = result["meta"]
    body = "\n".join([
        HEADING,
        "",
        "`python benchmarks/images_quality.py --train --write` trains the default "
        "`polydiff train --modality images` and scores it (CPU, 2 cores, one torch thread).",
        "",
        f"Run: {meta['run_dir']} — training wall time {meta.get('train_seconds', '?')} s, "
        f"{meta['n']} samples per column, sampler {meta['sampler']} {meta['steps']} steps, "
        f"guidance {meta['guidance']}.",
        "",
        markdown(result),
        "",
        "How to read it: *default sampling* is what `polydiff sample` and `polydiff evaluate` do "
        "with the default run — the class-conditional model asked for each digit in the train "
        "split's exact proportions, guidance 1.3 — so its class TV measures how often a sample is "
        "recognised as the digit it was asked for. *Unconditional* is the same network with the "
        "null label and no guidance (trained on 30 % of the items); its class TV includes the "
        "multinomial noise of 500 free draws (about 0.05 for a perfect model). *Real digits* are "
        "500 train digits scored the same way against the 297 held-out ones (the floor; the "
        "classifier was trained on them, so their `confident` is higher than unseen digits' 0.96).",
        "",
    ])
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body, text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    doc.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", type=Path, help="a finished images run")
    p.add_argument("--train", action="store_true", help="train the default run first")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-images-default")
    p.add_argument("--n", type=int, default=500, help="samples per column")
    p.add_argument("--inpaint-n", type=int, default=0, help="held-out digits to inpaint (0: all)")
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    p.add_argument(
        "--inpaint-sweep", metavar="S:N:R:W,...",
        help="only compare inpainting settings on --inpaint-n digits (default 100): sampler, "
        "steps, RePaint rounds, reconstruction-guidance weight, e.g. heun:18:1:0,ddpm:30:1:30",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    meta: dict[str, Any] = {}
    run_dir = args.run_dir
    if args.train:
        run_dir = run_dir or args.out
        meta["train_seconds"] = round(train_default(run_dir), 1)
    if run_dir is None:
        p.error("give RUN_DIR or --train")
    run = _open(run_dir)
    sc = run.config["sample"]
    meta.update(run_dir=str(run_dir), n=args.n, sampler=sc["sampler"], steps=sc["steps"],
                guidance=sc.get("guidance", 1.0))
    if args.inpaint_sweep:
        print("| sampler | steps | RePaint rounds | guidance weight | right class | seconds |")
        print("|---|---:|---:|---:|---:|---:|")
        for spec in args.inpaint_sweep.split(","):
            sampler, steps, rounds, weight = spec.split(":")
            over = {"inpaint_sampler": sampler, "inpaint_steps": int(steps),
                    "imputation_resample": int(rounds), "imputation_guidance": float(weight)}
            r = inpainting(run, args.inpaint_n or 100, sample=over)
            print(f"| {sampler} | {steps} | {rounds} | {weight} | {r['accuracy']:.1%} | {r['seconds']} |",
                  flush=True)
        return
    result: dict[str, Any] = {"meta": meta, "default": sample_metrics(run, args.n)}
    if int(getattr(run.denoiser.net, "num_classes", 0)) > 0:
        result["unconditional"] = sample_metrics(
            run, args.n, cond={"label": torch.full((args.n,), -1)}, guidance=1.0
        )
    result["inpainting"] = inpainting(run, args.inpaint_n or None)
    print(markdown(result))
    print(json.dumps(result, indent=1, default=str))
    if args.write:
        write_docs(result)


if __name__ == "__main__":
    main()
