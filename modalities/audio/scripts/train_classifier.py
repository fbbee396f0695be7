"""Train the ``notes`` reference classifier and write it into the package's assets.

    python modalities/audio/scripts/train_classifier.py [--train-size 2048] [--epochs 12] [--out PATH]

Deterministic (fixed seed, one thread, deterministic kernels): the same command writes the same
weights on the same torch build. Trains on clips ``0 … train_size-1`` of the ``notes`` *train*
stream at 16 kHz (the run's default train split is the first 512 of them), with a random gain
(×0.5–1.5), a random circular shift of up to 50 ms and, on half the clips, white noise at 0–30 dB
SNR (so that the class probabilities stay meaningful for the noisy clips a half-trained model
makes: without it, every sample of a 500-step model fell into one class), and reports the
accuracy on the default 128-clip *test* split, clean and noisy, which it never trains or
selects on. It then prints the file's
SHA-256: copy it into ``polydiff_audio/classifier.py`` (``CLASSIFIER_SHA256``), which refuses
any other file.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from polydiff_audio.classifier import (
    CLASSIFIER_FILE,
    CLASSIFIER_FORMAT,
    CLASSIFIER_PITCHES,
    FRONT_END,
    NotesClassifier,
)
from polydiff_audio.notes import notes_split
from safetensors.torch import save_file

EVAL_BATCH = 512


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: int, noise: float) -> torch.Tensor:
    """Random gain in [0.5, 1.5], a circular shift of up to ``max_shift`` and, for a share
    ``noise`` of the clips, white noise at an SNR drawn uniformly in [0, 30] dB; clipped to [-1, 1]."""
    gain = 0.5 + torch.rand(len(x), 1, generator=gen)
    shifts = torch.randint(-max_shift, max_shift + 1, (len(x),), generator=gen).tolist()
    x = torch.stack([row.roll(s) for row, s in zip(x, shifts, strict=True)]) * gain
    snr_db = 30.0 * torch.rand(len(x), 1, generator=gen)
    level = x.square().mean(1, keepdim=True).sqrt() * 10.0 ** (-snr_db / 20.0)
    noisy = torch.rand(len(x), 1, generator=gen) < noise
    x = x + noisy * level * torch.randn(x.shape, generator=gen)
    return x.clamp(-1.0, 1.0)


def noisy_accuracy(model: NotesClassifier, x: torch.Tensor, y: torch.Tensor, snr_db: float) -> float:
    """Accuracy on ``x`` with white noise ``snr_db`` below each clip's RMS (seeded)."""
    gen = torch.Generator().manual_seed(1)
    level = x.square().mean(1, keepdim=True).sqrt() * 10.0 ** (-snr_db / 20.0)
    return accuracy(model, model.log_mel((x + level * torch.randn(x.shape, generator=gen)).clamp(-1, 1)), y)


@torch.no_grad()
def accuracy(model: NotesClassifier, mel: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model.head(model.pooled_mel(m)).argmax(1) for m in mel.split(EVAL_BATCH)])
    return float((pred == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-size", type=int, default=2048)
    p.add_argument("--test-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--noise", type=float, default=0.5, help="share of clips given white noise each epoch")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--feature-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=CLASSIFIER_FILE)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    rate = int(FRONT_END["sample_rate"])
    length = round(float(FRONT_END["clip_seconds"]) * rate)
    t0 = time.perf_counter()
    x_tr, y_tr = (torch.from_numpy(v) for v in notes_split("train", a.train_size, CLASSIFIER_PITCHES, rate, length))
    x_te, y_te = (torch.from_numpy(v) for v in notes_split("test", a.test_size, CLASSIFIER_PITCHES, rate, length))
    print(f"notes: {len(x_tr)} train, {len(x_te)} test clips at {rate} Hz ({time.perf_counter() - t0:.0f} s)")

    model = NotesClassifier(width=a.width, feature_dim=a.feature_dim, num_classes=len(CLASSIFIER_PITCHES))
    mel_tr, mel_te = model.log_mel(x_tr), model.log_mel(x_te)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    per_epoch = math.ceil(len(x_tr) / a.batch_size)
    total = a.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / per_epoch) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    max_shift = int(0.05 * rate)
    for epoch in range(a.epochs):
        model.train()
        with torch.no_grad():  # a fresh augmentation of every clip each epoch
            mel_aug = model.log_mel(augment(x_tr, gen, max_shift, a.noise))
        perm = torch.randperm(len(x_tr), generator=gen)
        running = 0.0
        for start in range(0, len(perm), a.batch_size):
            idx = perm[start : start + a.batch_size]
            loss = F.cross_entropy(model.head(model.dropout(model.pooled_mel(mel_aug[idx]))), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(idx)
        if (epoch + 1) % 5 == 0 or epoch == a.epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {running / len(x_tr):.4f}  "
                  f"train acc {accuracy(model, mel_tr, y_tr):.4f}  ({time.perf_counter() - t0:.0f} s)")

    # the shipped weights are float16: measure the model as it will be loaded
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    with torch.no_grad():  # features / scale have mean square 1 over the train stream
        pooled = torch.cat([model.pooled_mel(m) for m in mel_tr.split(EVAL_BATCH)])
    state["feature_scale"] = pooled.square().mean().sqrt().half()
    model.feature_scale.copy_(state["feature_scale"].float())
    train_acc, test_acc = accuracy(model, mel_tr, y_tr), accuracy(model, mel_te, y_te)
    noisy = {snr: noisy_accuracy(model, x_te, y_te, snr) for snr in (20, 10)}
    meta = {
        "format": CLASSIFIER_FORMAT,
        "dataset": "notes",
        "width": str(a.width),
        "feature_dim": str(a.feature_dim),
        "epochs": str(a.epochs),
        "seed": str(a.seed),
        "train": f"notes train stream, clips 0-{a.train_size - 1}, {rate} Hz",
        "feature_scale": f"{float(state['feature_scale']):.4f}",
        "train_accuracy": f"{train_acc:.4f}",
        "test_accuracy": f"{test_acc:.4f}",
        "noise": str(a.noise),
        "test_accuracy_snr20": f"{noisy[20]:.4f}",
        "test_accuracy_snr10": f"{noisy[10]:.4f}",
        "torch": torch.__version__,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(a.out), metadata=meta)
    params = sum(v.numel() for k, v in state.items() if k != "feature_scale")
    print(f"train accuracy {train_acc:.4f}; held-out test accuracy {test_acc:.4f} "
          f"({round(test_acc * len(x_te))}/{len(x_te)}); with white noise at 20 / 10 dB SNR "
          f"{noisy[20]:.4f} / {noisy[10]:.4f}; {time.perf_counter() - t0:.0f} s")
    print(f"wrote {a.out} ({params} parameters, {a.out.stat().st_size / 1024:.0f} KiB float16)")
    print(f"CLASSIFIER_SHA256 = \"{hashlib.sha256(a.out.read_bytes()).hexdigest()}\"")


if __name__ == "__main__":
    main()
