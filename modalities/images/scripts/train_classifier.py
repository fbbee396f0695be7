"""Train a reference classifier (``digits`` or ``shapes``) and write it into the package's assets.

    python modalities/images/scripts/train_classifier.py [--dataset digits] [--epochs N] [--out PATH]

Deterministic (fixed seed, one thread, deterministic kernels): the same command writes the same
weights on the same torch build. Trains on the *train* split only (digits: the default split of
``polydiff_images.DEFAULT_CONFIG``; shapes: the fixed 32x32 RGB train set) with random shifts of up
to two pixels (and, for shapes, random left-right flips), and reports the accuracy on the held-out
test split, which it never trains or selects on. Defaults: digits 40 epochs, shapes 12.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from polydiff_images import DEFAULT_CONFIG
from polydiff_images.classifier import ASSETS, REFERENCE_CLASSIFIERS, ReferenceClassifier
from polydiff_images.data import build_digits
from polydiff_images.shapes import SHAPES_SEEDS, SHAPES_TEST, SHAPES_TRAIN, build_shapes
from safetensors.torch import save_file


def shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by a random integer offset in [-max_shift, max_shift]^2 (fill -1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


#: images per forward pass when measuring (digits' 1,500 train images fit in one)
EVAL_BATCH = 2048


@torch.no_grad()
def accuracy(model: ReferenceClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + EVAL_BATCH]).argmax(1) for i in range(0, len(x), EVAL_BATCH)])
    return float((pred == y).float().mean())


EPOCHS = {"digits": 40, "shapes": 12}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(REFERENCE_CLASSIFIERS), default="digits")
    p.add_argument("--epochs", type=int, default=None, help="default: digits 40, shapes 12")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--max-shift", type=int, default=2)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--feature-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="default: the package's asset file")
    a = p.parse_args()
    if a.epochs is None:
        a.epochs = EPOCHS[a.dataset]
    if a.out is None:
        a.out = ASSETS / REFERENCE_CLASSIFIERS[a.dataset][0]
    channels, size, _ = REFERENCE_CLASSIFIERS[a.dataset][1]
    num_classes = REFERENCE_CLASSIFIERS[a.dataset][2]
    flip = a.dataset == "shapes"  # every shapes class is mirror-symmetric as a distribution

    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    if a.dataset == "digits":
        data_cfg = DEFAULT_CONFIG["data"]
        train, test = build_digits(data_cfg, "train"), build_digits(data_cfg, "test")
        split = f"test_size={data_cfg['test_size']} split_seed={data_cfg['split_seed']}"
    else:
        data_cfg = {"resolution": size, "channels": channels}
        train, test = build_shapes(data_cfg, "train"), build_shapes(data_cfg, "test")
        split = (f"train={SHAPES_TRAIN} seed={SHAPES_SEEDS['train']} "
                 f"test={SHAPES_TEST} seed={SHAPES_SEEDS['test']}")
    x_tr, y_tr = train.images, train.labels
    x_te, y_te = test.images, test.labels
    print(f"{a.dataset}: {len(x_tr)} train, {len(x_te)} test images {tuple(x_tr.shape[1:])}")

    model = ReferenceClassifier(
        width=a.width,
        feature_dim=a.feature_dim,
        num_classes=num_classes,
        in_channels=channels,
        image_size=size,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    per_epoch = math.ceil(len(x_tr) / a.batch_size)
    total = a.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / per_epoch) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    t0 = time.perf_counter()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        running = 0.0
        for start in range(0, len(perm), a.batch_size):
            idx = perm[start : start + a.batch_size]
            xb = shift(x_tr[idx], a.max_shift, gen)
            if flip:
                mirror = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(mirror[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(idx)
        if (epoch + 1) % 5 == 0 or epoch == a.epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {running / len(x_tr):.4f}  "
                  f"train acc {accuracy(model, x_tr, y_tr):.4f}  ({time.perf_counter() - t0:.0f} s)")

    # the shipped weights are float16: measure the model as it will be loaded
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    with torch.no_grad():  # features / scale have mean square 1 over the train split
        pooled = [model.pooled(x_tr[i : i + EVAL_BATCH]) for i in range(0, len(x_tr), EVAL_BATCH)]
        scale = torch.cat(pooled).square().mean().sqrt()
    model.feature_scale.fill_(scale)
    state["feature_scale"] = model.feature_scale.detach().clone().half()
    model.feature_scale.copy_(state["feature_scale"].float())
    train_acc, test_acc = accuracy(model, x_tr, y_tr), accuracy(model, x_te, y_te)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset": a.dataset,
        "width": str(a.width),
        "feature_dim": str(a.feature_dim),
        "epochs": str(a.epochs),
        "seed": str(a.seed),
        "max_shift": str(a.max_shift),
        "split": split,
        "feature_scale": f"{float(state['feature_scale']):.4f}",
        "train_accuracy": f"{train_acc:.4f}",
        "test_accuracy": f"{test_acc:.4f}",
        "torch": torch.__version__,
    }
    save_file(state, str(a.out), metadata=meta)
    params = sum(v.numel() for v in state.values())
    print(f"train accuracy {train_acc:.4f}; held-out test accuracy {test_acc:.4f} "
          f"({int(test_acc * len(x_te) + 0.5)}/{len(x_te)})")
    print(f"wrote {a.out} ({params} parameters, {a.out.stat().st_size / 1024:.0f} KiB float16)")


if __name__ == "__main__":
    main()
