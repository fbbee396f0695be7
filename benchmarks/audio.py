"""Audio against the PyPI `diffwave` package (0.1.7): throughput, same-budget vocoding quality,
sampling speed and quality by NFE, and vocoding against Griffin–Lim.

    pip install -e "modalities/audio[bench]"
    python benchmarks/audio.py --budget 240 --n 16 --write

`diffwave` 0.1.7 ships only its mel-conditioned vocoder (its `DiffWave` model always has a
spectrogram upsampler), so every comparison is at one shared vocoder configuration (``CONFIG``):
``notes`` clips at 16 kHz, 80 mels, hop 256 (diffwave's fixed 16 × 16 upsampler), the same residual
layers, channels, dilation cycle, training crop and batch.

- **throughput** (``--part throughput``): training steps/s of each model's step (forward, backward,
  gradient clipping, Adam) on the same batches, in interleaved rounds; the median over rounds.
- **same budget** (``--part quality``): `polydiff train` and a loop over diffwave's own
  `DiffWaveLearner.train_step` (its L1 ε-loss, its 50-level β schedule, Adam at its documented
  2e-4) run side by side for ``--budget`` seconds of wall-clock each (SIGINT at the deadline).
  Both vocode the same held-out ``notes`` clips from their log-mel spectrograms: ours with
  DPM-Solver++(2M) at 6, 10, 20, 50 NFE (and Heun at 10 and 20 with ``--heun``), diffwave with its own reverse process (all 50
  training levels, and its fast 6-level schedule, following `diffwave.inference.predict`), and
  Griffin–Lim (torchaudio, 32 and 100 iterations) from the same mel magnitudes. Ours also with
  ``--projection K`` mel projections of each clean estimate (`polydiff_audio.phase`, after
  GLA-Grad), and the projection alone from noise, so the network's share is visible. Scored by
  `polydiff_audio`: log-mel L1, multi-resolution STFT distance, mel-cepstral distortion to the
  input, pitch accuracy (YIN f0 within a quarter-tone of a data-set pitch), label accuracy
  (the clip's own pitch), and the notes classifier's FID and class accuracy; the clips take
  each pitch in turn; real-time factor = sampling seconds / seconds of audio.

CPU timings on a shared machine are noisy: the script prints the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- audio:start -->", "<!-- audio:end -->"

#: the shared vocoder configuration (polydiff keys; diffwave's params are derived from it)
CONFIG: dict[str, dict[str, Any]] = {
    "data": {"sample_rate": 16000, "clip_seconds": 1.0, "n_fft": 1024, "hop_length": 256, "n_mels": 80,
             "train_crop": 2048, "train_size": 512, "test_size": 128},
    "model": {"residual_layers": 12, "residual_channels": 32, "dilation_cycle": 6, "mel": True, "num_classes": 0},
    "train": {"batch_size": 16, "lr": 1e-3, "cond_dropout": 0.0, "threads": 1, "log_every": 50,
              "steps": 1_000_000, "checkpoint_minutes": 0.5, "snapshot_every": 0, "plot_every": 0},
    "sample": {"n": 4, "steps": 4, "sampler": "dpmpp_2m"},
}
NFES = (6, 10, 20, 50)
#: Heun (2 calls a step) at the middle of the range only: sampling is the slow part on a CPU
HEUN_NFES = (10, 20)


def _load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _diffwave_params():
    from diffwave.params import AttrDict, params

    d, m, t = CONFIG["data"], CONFIG["model"], CONFIG["train"]
    return AttrDict(dict(params)).override({
        "batch_size": t["batch_size"], "sample_rate": d["sample_rate"], "n_mels": d["n_mels"],
        "n_fft": d["n_fft"], "hop_samples": d["hop_length"], "crop_mel_frames": d["train_crop"] // d["hop_length"],
        "residual_layers": m["residual_layers"], "residual_channels": m["residual_channels"],
        "dilation_cycle_length": m["dilation_cycle"],
    })


def _learner_class():
    """``diffwave.learner.DiffWaveLearner``. Its module imports tensorboard (which diffwave does not
    declare) only for ``_write_summary``; we call ``train_step`` alone, so when tensorboard is
    missing an empty stand-in module takes its place."""
    import types

    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        sys.modules["torch.utils.tensorboard"] = types.SimpleNamespace(SummaryWriter=None)  # type: ignore[assignment]
    from diffwave.learner import DiffWaveLearner

    return DiffWaveLearner


def _modality():
    from polydiff.registry import get_registry

    return get_registry().load("audio")


def _config():
    from polydiff.config import resolve

    return resolve(_modality(), overrides=CONFIG)


def _batches(cfg, n: int, seed: int = 0):
    """``n`` training batches of crops and their mels, the same for both models."""
    import torch

    audio = _modality()
    ds = audio.build_dataset("notes", cfg, "train")
    torch.manual_seed(seed)
    out = []
    for _ in range(n):
        idx = torch.randint(len(ds), (int(cfg["train"]["batch_size"]),))
        items = [ds[int(i)] for i in idx]
        out.append((torch.stack([it["x"] for it in items]), torch.stack([it["cond"]["mel"] for it in items])))
    return out


# ------------------------------------------------------------------------------------ throughput


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from diffwave.model import DiffWave

    from polydiff.generate import build_denoiser
    from polydiff.losses import DSMLoss
    from polydiff.sde import build_sde

    torch.set_num_threads(1)
    cfg = _config()
    batches = _batches(cfg, 4)
    ours = build_denoiser(_modality(), cfg)
    loss_fn = DSMLoss(build_sde(cfg["sde"]), sigma_data=float(cfg["param"]["sigma_data"]),
                      **{k: cfg["loss"][k] for k in ("weighting", "sigma_sampling", "p_mean", "p_std")})
    opt = torch.optim.Adam(ours.parameters(), lr=1e-3)

    def ours_step(x, mel):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(ours, x, cond={"mel": mel}).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        opt.step()

    p = _diffwave_params()
    peer = DiffWave(p)
    with tempfile.TemporaryDirectory() as tmp:
        learner = _learner_class()(tmp, peer, None, torch.optim.Adam(peer.parameters(), lr=p.learning_rate), p)

    def peer_step(x, mel):
        # diffwave pairs frame k with samples [k·hop, (k+1)·hop): T / hop frames, not our T / hop + 1
        learner.train_step({"audio": x[:, 0], "spectrogram": mel[..., : x.shape[-1] // p.hop_samples]})

    steps = {"ours": ours_step, "diffwave": peer_step}
    # steps per second of this thread's CPU time (what an idle core would give: on the shared
    # machine other jobs' time slices inflate wall-clock, not this) and of wall-clock
    rates: dict[str, list[float]] = {k: [] for k in steps}
    wall: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        for x, mel in batches[:2]:
            fn(x, mel)
    loads = [_load()]
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(steps)[::-1]
        for name in order:
            t0, c0 = time.perf_counter(), time.thread_time()
            for k in range(args.round_steps):
                x, mel = batches[k % len(batches)]
                steps[name](x, mel)
            rates[name].append(args.round_steps / (time.thread_time() - c0))
            wall[name].append(args.round_steps / (time.perf_counter() - t0))
        loads.append(_load())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} steps/CPU-s ({wall[k][-1]:.3f}/s wall)"
                                             for k, v in rates.items()) + f"  load {loads[-1]}", flush=True)

    def med(v: list[float]) -> float:
        return statistics.median(v)

    paired = [a / b for a, b in zip(rates["ours"], rates["diffwave"], strict=True)]
    paired_wall = [a / b for a, b in zip(wall["ours"], wall["diffwave"], strict=True)]
    return {
        "median": {k: med(v) for k, v in rates.items()}, "lo": {k: min(v) for k, v in rates.items()},
        "hi": {k: max(v) for k, v in rates.items()}, "wall_median": {k: med(v) for k, v in wall.items()},
        "ratio": med(rates["ours"]) / med(rates["diffwave"]), "paired_median": med(paired),
        "paired": paired, "paired_wall": paired_wall, "paired_wall_median": med(paired_wall),
        "params": {"ours": sum(t.numel() for t in ours.parameters()), "diffwave": sum(t.numel() for t in peer.parameters())},
        "rounds": args.rounds, "round_steps": args.round_steps, "load": f"{loads[0]} → {loads[-1]}",
        "clock": "thread CPU time",
    }


# ----------------------------------------------------------------------------- peer training


def peer_train(args: argparse.Namespace) -> None:
    """diffwave's own training step in a loop until SIGINT; then its weights to ``--out``."""
    import torch
    from diffwave.model import DiffWave

    torch.set_num_threads(1)
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    cfg = _config()
    p = _diffwave_params()
    torch.manual_seed(0)
    model = DiffWave(p)
    learner = _learner_class()(str(args.out), model, None, torch.optim.Adam(model.parameters(), lr=p.learning_rate), p)
    ds = _modality().build_dataset("notes", cfg, "train")
    steps = 0
    t0 = time.monotonic()
    while not stop["now"]:
        idx = torch.randint(len(ds), (p.batch_size,))
        items = [ds[int(i)] for i in idx]
        audio = torch.stack([it["x"][0] for it in items])
        mel = torch.stack([it["cond"]["mel"] for it in items])[..., : audio.shape[-1] // p.hop_samples]
        learner.train_step({"audio": audio, "spectrogram": mel})
        steps += 1
    torch.save({"model": model.state_dict(), "steps": steps, "seconds": time.monotonic() - t0}, args.out / "peer.pt")


def diffwave_vocode(model, mel, p, fast: bool, generator):
    """diffwave's reverse process (`diffwave.inference.predict`, rewritten for a model in memory)."""
    import numpy as np
    import torch

    train_beta = np.array(p.noise_schedule)
    talpha_cum = np.cumprod(1 - train_beta)
    beta = np.array(p.inference_noise_schedule) if fast else train_beta
    alpha = 1 - beta
    alpha_cum = np.cumprod(alpha)
    # the continuous training step each inference level corresponds to (paper's fast sampling)
    steps = []
    for s in range(len(beta)):
        for t in range(len(train_beta) - 1):
            if talpha_cum[t + 1] <= alpha_cum[s] <= talpha_cum[t]:
                tw = (talpha_cum[t] ** 0.5 - alpha_cum[s] ** 0.5) / (talpha_cum[t] ** 0.5 - talpha_cum[t + 1] ** 0.5)
                steps.append(t + tw)
                break
    steps = np.array(steps, dtype=np.float32)
    audio = torch.randn(mel.shape[0], p.hop_samples * mel.shape[-1], generator=generator)
    with torch.no_grad():
        for n in range(len(alpha) - 1, -1, -1):
            c1 = 1 / alpha[n] ** 0.5
            c2 = beta[n] / (1 - alpha_cum[n]) ** 0.5
            # one level for the whole batch, shape (1,), as predict() passes it (its interpolated
            # embedding does not broadcast over a batch of levels)
            t = torch.tensor([float(steps[n])])
            audio = c1 * (audio - c2 * model(audio, mel, t).squeeze(1))
            if n > 0:
                sigma = ((1.0 - alpha_cum[n - 1]) / (1.0 - alpha_cum[n]) * beta[n]) ** 0.5
                audio = audio + sigma * torch.randn(audio.shape, generator=generator)
            audio = audio.clamp(-1.0, 1.0)
    return audio.unsqueeze(1), len(alpha)


def griffin_lim(mel_norm, data, iters: int):
    """Invert the normalised log-mel: dB -> mel magnitude -> linear (least squares) -> Griffin–Lim."""
    import torchaudio.transforms as AT
    from polydiff_audio.audio_io import mel_amplitude

    rate, n_fft, hop = int(data["sample_rate"]), int(data["n_fft"]), int(data["hop_length"])
    mag = mel_amplitude(mel_norm)
    inv = AT.InverseMelScale(n_stft=n_fft // 2 + 1, n_mels=int(data["n_mels"]), sample_rate=rate,
                             f_min=float(data["f_min"]), f_max=rate / 2)
    gl = AT.GriffinLim(n_fft=n_fft, hop_length=hop, power=1.0, n_iter=iters)
    return gl(inv(mag)).unsqueeze(1)


def _score(x, ref, mel, labels, data, cfg, train, test) -> dict[str, float]:
    """Distances to the input clips, pitch, and the notes classifier's FID (against the train
    split, as DiffWave's table) and class accuracy."""
    from polydiff_audio.evaluation import classifier_table
    from polydiff_audio.notes import midi_to_hz
    from polydiff_audio.pitch import estimate_f0, pitch_scores
    from polydiff_audio.spectral import log_mel_l1, mel_cepstral_distortion, mr_stft_distance

    n = ref.shape[-1]
    x = x[..., :n].clamp(-1.0, 1.0)  # what a WAV of it holds
    if x.shape[-1] < n:
        import torch

        x = torch.nn.functional.pad(x, (0, n - x.shape[-1]))
    rate = int(data["sample_rate"])
    hz = [float(midi_to_hz(p)) for p in data["pitches"]]
    pitch = pitch_scores(estimate_f0(x, rate), hz, labels)
    out = {
        "log_mel_l1": float(log_mel_l1(x, ref, data).mean()),
        "mr_stft": float(mr_stft_distance(x, ref, rate).mean()),
        "mcd": float(mel_cepstral_distortion(x, ref, data).mean()),
        "pitch_accuracy": pitch["pitch_accuracy"],
        "label_accuracy": pitch["label_accuracy"],
    }
    tab = classifier_table(x, cfg, train=train, test=test, labels=labels)
    out.update({k: float(tab[k]) for k in ("fid", "class_accuracy") if k in tab})
    return out


def quality(args: argparse.Namespace) -> dict[str, Any]:
    if args.reuse is not None:  # score the models of an earlier run again
        tmp = Path(args.reuse)
        state = json.loads((tmp / "budget.json").read_text())
        args.budget, load_after = state["budget"], state["load_after"]
    else:
        tmp, load_after = _train_both(args)
    return _score_all(args, tmp, load_after)


def _train_both(args: argparse.Namespace) -> tuple[Path, str]:
    tmp = Path(tempfile.mkdtemp(prefix="polydiff-bench-audio-"))
    toml = tmp / "vocoder.toml"
    toml.write_text(_toml(CONFIG))
    py = sys.executable
    ours = subprocess.Popen([py, "-m", "polydiff", "train", "-m", "audio", "--config", str(toml), "--out", str(tmp / "ours")],
                            stdout=open(tmp / "ours.log", "w"), stderr=subprocess.STDOUT)
    peer = subprocess.Popen([py, __file__, "--peer-train", "--out", str(tmp)],
                            stdout=open(tmp / "peer.log", "w"), stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    print(f"training both for {args.budget:.0f} s in {tmp} (load {_load()})", flush=True)
    sent = False
    while ours.poll() is None or peer.poll() is None:
        if not sent and time.monotonic() >= t0 + args.budget:
            for proc in (ours, peer):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            sent = True
        time.sleep(0.2)
    load_after = _load()
    (tmp / "budget.json").write_text(json.dumps({"budget": args.budget, "load_after": load_after}))
    return tmp, load_after


def _spread_over_labels(labels, n: int) -> list[int]:
    """``n`` clip indices taking each label in turn (the test split cycles through the pitches,
    so an even stride can land on one pitch only)."""
    by_label: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        by_label.setdefault(int(lab), []).append(i)
    queues = [by_label[k] for k in sorted(by_label)]
    out: list[int] = []
    for rank in range(max(len(q) for q in queues)):
        out += [q[rank] for q in queues if rank < len(q)]
    return out[:n]


def _score_all(args: argparse.Namespace, tmp: Path, load_after: str) -> dict[str, Any]:
    import torch
    from polydiff_audio.audio_io import data_config

    from polydiff.checkpoint import load_weights
    from polydiff.generate import build_denoiser, generate

    torch.set_num_threads(max(1, args.threads))
    cfg = _config()
    data = data_config(cfg)
    audio = _modality()
    test = audio.build_dataset("notes", cfg, "test")
    pick = torch.tensor(_spread_over_labels(test.labels, args.n))
    items = [test.full_item(int(i)) for i in pick]
    ref = torch.stack([it["x"] for it in items])
    mel = torch.stack([it["cond"]["mel"] for it in items])
    labels = test.labels[pick]
    seconds = args.n * float(data["clip_seconds"])
    rows: list[dict[str, Any]] = []

    train_ds = audio.build_dataset("notes", cfg, "train")

    def score(x):
        return _score(x, ref, mel, labels, data, cfg, train_ds, test)

    ckpt = max((tmp / "ours" / "checkpoints").glob("step-*.safetensors"))
    denoiser = build_denoiser(audio, cfg)
    _, ema, _ = load_weights(ckpt)
    denoiser.load_state_dict(ema)
    denoiser.eval()
    ours_steps = _steps_from(ckpt)
    plain = {**cfg, "sample": {**cfg["sample"], "mel_projection_iters": 0}}
    projected = {**cfg, "sample": {**cfg["sample"], "mel_projection_iters": args.projection}}
    for sampler, nfes in (("dpmpp_2m", NFES), ("heun", HEUN_NFES if args.heun else ())):
        for nfe in nfes:
            steps = nfe if sampler == "dpmpp_2m" else (nfe + 1) // 2
            for run_cfg, suffix in ((plain, ""), (projected, f" + mel projection ×{args.projection}")):
                if suffix and args.projection <= 0:
                    continue
                t = time.perf_counter()
                x, _, used = generate(audio, run_cfg, denoiser, n=args.n, sampler=sampler, steps=steps, seed=0,
                                      cond={"mel": mel}, dataset=train_ds, guidance=1.0)
                rtf = (time.perf_counter() - t) / seconds
                rows.append({"method": f"ours, {sampler}{suffix}", "nfe": used, "rtf": rtf, **score(x)})
                print(rows[-1], flush=True)

    from diffwave.model import DiffWave

    p = _diffwave_params()
    state = torch.load(tmp / "peer.pt")
    model = DiffWave(p)
    model.load_state_dict(state["model"])
    model.eval()
    for fast in (True, False):
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        x, used = diffwave_vocode(model, mel, p, fast, g)
        rtf = (time.perf_counter() - t) / seconds
        name = "diffwave, fast 6-level schedule" if fast else "diffwave, 50 training levels"
        rows.append({"method": name, "nfe": used, "rtf": rtf, **score(x)})
        print(rows[-1], flush=True)
    for iters in (32, 100):
        t = time.perf_counter()
        x = griffin_lim(mel, data, iters)
        rtf = (time.perf_counter() - t) / seconds
        rows.append({"method": f"Griffin–Lim, {iters} iterations", "nfe": 0, "rtf": rtf, **score(x)})
        print(rows[-1], flush=True)
    # the projection without a network: from uniform noise (what the vocoder adds is its phase)
    from polydiff_audio.phase import project_onto_mel

    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    x = project_onto_mel(torch.rand(args.n, ref.shape[-1], generator=g) - 0.5, mel, data, 100)[:, None]
    rtf = (time.perf_counter() - t) / seconds
    rows.append({"method": "mel projection alone, 100 iterations from noise", "nfe": 0, "rtf": rtf, **score(x)})
    print(rows[-1], flush=True)
    rows.append({"method": "the input clips themselves", "nfe": 0, "rtf": 0.0, **score(ref)})
    return {
        "budget_s": args.budget, "n": args.n, "folder": str(tmp), "load_before_after": [_load(), load_after],
        "ours_steps": ours_steps, "peer_steps": int(state["steps"]), "peer_seconds": float(state["seconds"]),
        "rows": rows, "classifier_format": _classifier_format(),
    }


#: part (c) on a generation run: DPM-Solver++(2M) over the whole range; UniPC and DPM-Solver++(3M)
#: at 6 NFE, and whichever sampler does best there also at 50 (sampling is the slow part on a CPU)
GEN_GRID = (("dpmpp_2m", (6, 10, 20, 50)), ("unipc", (6,)), ("dpmpp_3m", (6,)))
#: solvers also run at 6 NFE on a grid tuned to the run (polydiff.tuning, as `polydiff schedule`)
TUNED_6 = ("unipc", "dpmpp_2m")


def generation(args: argparse.Namespace) -> dict[str, Any]:
    """Sample ``--n`` clips from a trained run (``--run``, e.g. the default `polydiff train -m audio`)
    at each NFE of ``GEN_GRID`` from the same seed, and score pitch and the classifier table."""
    import torch
    from polydiff_audio.evaluation import classifier_table, score_audio

    from polydiff.checkpoint import load_weights
    from polydiff.generate import build_denoiser, generate

    if args.run is None:
        raise SystemExit("--part generation needs --run RUN (a trained audio run folder)")
    torch.set_num_threads(max(1, args.threads))
    record = json.loads((args.run / "config.json").read_text())
    cfg = record.get("config", record)
    audio = _modality()
    ckpt = max((args.run / "checkpoints").glob("step-*.safetensors"))
    denoiser = build_denoiser(audio, cfg)
    _, ema, _ = load_weights(ckpt)
    denoiser.load_state_dict(ema)
    denoiser.eval()
    train = audio.build_dataset("notes", cfg, "train")
    test = audio.build_dataset("notes", cfg, "test")
    seconds = args.n * float(cfg["data"]["clip_seconds"])
    rows: list[dict[str, Any]] = []
    last: dict[str, Any] = {}

    def run(sampler: str, nfe: int, sigmas=None, grid: str = "default") -> None:
        t, c = time.perf_counter(), time.process_time()
        options = {} if sigmas is None else {"sigmas": sigmas}
        x, layout, used = generate(audio, cfg, denoiser, n=args.n, sampler=sampler, steps=nfe, seed=0,
                                   dataset=train, **options)
        rtf_cpu, rtf = (time.process_time() - c) / seconds, (time.perf_counter() - t) / seconds
        labels = (layout.cond or {}).get("label")
        last["q"] = q = score_audio(x, cfg, labels=labels, train=train, test=test)
        last["tab"] = tab = classifier_table(x, cfg, train=train, test=test, labels=labels)
        rows.append({"sampler": sampler, "grid": grid, "nfe": used, "rtf_cpu": rtf_cpu, "rtf": rtf,
                     **{k: q[k] for k in ("pitch_accuracy", "pitch_coverage", "voiced", "label_accuracy") if k in q},
                     **{k: tab[k] for k in ("fid", "is", "ndb_k", "class_accuracy") if k in tab},
                     "load": _load()})
        print(rows[-1], flush=True)

    for sampler, nfes in GEN_GRID:
        for nfe in nfes:
            run(sampler, nfe)
    if args.tune:
        from polydiff.sde import build_sde
        from polydiff.tuning import steps_for_nfe, tune_modality

        for sampler in TUNED_6:
            steps = steps_for_nfe(sampler, 6, build_sde(cfg["sde"]))
            # calibration on seeds 1 and 2, never the scored seed 0
            tuned = tune_modality(audio, cfg, denoiser, sampler=sampler, steps=steps, n=4, seed=1,
                                  holdout_seed=2, max_evals=12, reference_steps=30, dataset=train)
            run(sampler, steps, sigmas=tuned.tensor().float(), grid="tuned")
    best = max((r for r in rows if r["nfe"] <= 6), key=lambda r: r["pitch_accuracy"])
    if not any(r["sampler"] == best["sampler"] and r["nfe"] >= 49 for r in rows):
        run(best["sampler"], 50)
    q, tab = last["q"], last["tab"]
    real = {k.removeprefix("reference/"): v for k, v in tab.items() if k.startswith("reference/")}
    real_pitch = {k.removeprefix("reference/"): v for k, v in q.items() if k.startswith("reference/")}
    return {"run": str(args.run), "checkpoint": ckpt.name, "n": args.n, "rows": rows, "real": {**real_pitch, **real},
            "steps": _steps_from(ckpt), "classifier_format": _classifier_format()}


def _classifier_format() -> str:
    from polydiff_audio.classifier import CLASSIFIER_FORMAT

    return CLASSIFIER_FORMAT


def _classifier_words(part: dict[str, Any]) -> str:
    """Which classifier scored a stored part: results written before the key were format 1."""
    fmt = str(part.get("classifier_format", "1"))
    floor = "floored 80 dB below each clip's peak" if fmt != "1" else "the plugin's absolute log-mel floor"
    return f"the notes classifier (format {fmt}: {floor})"


def _steps_from(ckpt: Path) -> int:
    m = re.search(r"step-(\d+)", ckpt.name)
    return int(m.group(1)) if m else -1


def _toml(cfg: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------- docs


def render(results: dict[str, Any], command: str) -> str:
    m = CONFIG["model"]
    d = CONFIG["data"]
    out = [START, "## Audio (`benchmarks/audio.py`)", "",
           f"Configuration shared by both: `notes` at {d['sample_rate'] // 1000} kHz, {d['n_mels']} mels, hop "
           f"{d['hop_length']}, {m['residual_layers']} residual layers × {m['residual_channels']} channels, dilation "
           f"cycle {m['dilation_cycle']}, {d['train_crop']}-sample training crops, batch {CONFIG['train']['batch_size']}. "
           "`diffwave` 0.1.7 ships only its mel-conditioned vocoder, so the comparison is at vocoding. "
           f"Commands: {command}. CPU, 1 thread per process, on a 2-core machine shared with other jobs "
           "(load averages below): the timings are noisy.", ""]
    tp = results.get("throughput")
    if tp:
        cpu = tp.get("clock") == "thread CPU time"
        unit = "steps per CPU-second" if cpu else "steps/s"
        out += ["### Training-step throughput (interleaved rounds)", "",
                "Each model's own training step on the same batches, one thread, in one process, alternating "
                "which goes first: ours is `DSMLoss` (EDM preconditioning, log-normal σ, loss weighting) + "
                "backward + gradient clipping + Adam; diffwave's is its `DiffWaveLearner.train_step` (50-level "
                "β schedule, L1 ε-loss, clipping, Adam). Neither includes EMA or data loading."
                + (" Rates are per second of the benchmark thread's own CPU time (`time.thread_time`), which "
                   "other jobs on the shared machine do not inflate; wall-clock ratios beside them." if cpu else ""),
                "", f"| model | parameters | {unit} (median) | range |" + (" wall steps/s (median) |" if cpu else ""),
                "|---|---|---|---|" + ("---|" if cpu else "")]
        for k in ("ours", "diffwave"):
            row = f"| {k} | {tp['params'][k]:,} | {tp['median'][k]:.3f} | {tp['lo'][k]:.3f}–{tp['hi'][k]:.3f} |"
            out.append(row + (f" {tp['wall_median'][k]:.3f} |" if cpu else ""))
        verdict = "meets" if min(tp["ratio"], tp["paired_median"]) >= 1.2 else "misses"
        text = (f"Ours / diffwave: **{tp['ratio']:.2f}×** (ratio of medians; median of per-round ratios "
                f"{tp['paired_median']:.2f}×")
        if cpu:
            rounds = ", ".join(f"{v:.2f}" for v in tp["paired"])
            text += (f"; per-round ratios {rounds}; wall-clock: median of per-round ratios "
                     f"{tp['paired_wall_median']:.2f}×")
        out += ["", text + f"; {tp['rounds']} rounds of {tp['round_steps']} steps each; load average {tp['load']}). "
                f"This {verdict} the issue's target of 1.2×.", ""]
    q = results.get("quality")
    if q:
        out += [f"### Same wall-clock budget, then vocoding {q['n']} held-out clips", "",
                f"Both trainers ran side by side for {q['budget_s']:.0f} s: ours reached step {q['ours_steps']} "
                f"(its last checkpoint; EMA weights), diffwave's own step loop {q['peer_steps']} steps. Load average "
                f"after training: {q['load_before_after'][1]}; when scoring: {q['load_before_after'][0]}. RTF: sampling "
                "seconds per second of audio. Lower is better for log-mel L1, MR-STFT and MCD; pitch accuracy is "
                "the share of outputs within a quarter-tone of a data-set pitch, label accuracy the share at the "
                f"input clip's own pitch; FID and class accuracy in {_classifier_words(q)} (FID against the "
                "train split, as DiffWave's table; over so few clips it is a coarse figure, the same for every row). "
                "A row '+ mel projection ×K' is the same network, noise and steps with K projections of each clean "
                "estimate onto the input mel (`polydiff_audio.phase`, after GLA-Grad; `sample.mel_projection_iters`); "
                "'mel projection alone' runs 100 of them from uniform noise, without a network.", "",
                "| method | NFE | RTF | log-mel L1 | MR-STFT | MCD (dB) | pitch acc. | label acc. | FID | class acc. |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        nan = float("nan")
        for r in q["rows"]:
            out.append(f"| {r['method']} | {r['nfe']} | {r['rtf']:.2f} | {r['log_mel_l1']:.3f} | {r['mr_stft']:.3f} | "
                       f"{r['mcd']:.2f} | {r['pitch_accuracy']:.2f} | {r['label_accuracy']:.2f} | "
                       f"{r.get('fid', nan):.2f} | {r.get('class_accuracy', nan):.2f} |")
        out += ["", _verdict(q["rows"]), ""]
    g = results.get("generation")
    if g:
        out += [f"### Generation by NFE (class-conditional `notes` run, {g['n']} samples)", "",
                f"The run `{g['run']}` ({g['checkpoint']}), sampled from one seed at each NFE (the same "
                "initial noise and labels for every row). Pitch accuracy: share of clips whose YIN f0 lies "
                "within a quarter-tone of a data-set pitch; coverage: share of the 8 pitches hit; label "
                "accuracy: share at the requested pitch. FID, IS, NDB/K and class accuracy in "
                f"{_classifier_words(g)} (against the train split, as DiffWave's table). RTF: CPU seconds (and "
                "wall seconds) of sampling per second of audio, one thread. A tuned grid is "
                "`polydiff.tuning`'s (as `polydiff schedule`: 4 calibration clips on other seeds than "
                "the scored one, 12 sampling runs from each of two starting grids, against a 30-step "
                "dpmpp_3m solution).", "",
                "| sampler | NFE | RTF (CPU) | RTF (wall) | pitch acc. | coverage | label acc. | FID | IS | NDB/K | class acc. |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in g["rows"]:
            grid = ", tuned grid" if r.get("grid") == "tuned" else ""
            out.append(f"| {r['sampler']}{grid} | {r['nfe']} | {r['rtf_cpu']:.2f} | {r['rtf']:.2f} | {r['pitch_accuracy']:.3f} | "
                       f"{r['pitch_coverage']:.3f} | {r.get('label_accuracy', float('nan')):.3f} | {r['fid']:.2f} | "
                       f"{r['is']:.2f} | {r['ndb_k']:.2f} | {r.get('class_accuracy', float('nan')):.3f} |")
        real = g["real"]
        out.append(f"| real clips (pitch: a train subset; classifier: the test set) | – | – | – | {real.get('pitch_accuracy', float('nan')):.3f} | "
                   f"{real.get('pitch_coverage', float('nan')):.3f} | {real.get('label_accuracy', float('nan')):.3f} | "
                   f"{real['fid']:.2f} | {real['is']:.2f} | {real['ndb_k']:.2f} | – |")
        out += ["", _nfe_verdict(g["rows"]), ""]
    out += ["<!-- audio-bench-data " + json.dumps(results) + " -->", END]
    return "\n".join(out)


def _verdict(rows: list[dict[str, Any]]) -> str:
    """One sentence per comparison, read off the table."""
    def best(prefix: str) -> dict[str, Any]:
        return min((r for r in rows if r["method"].startswith(prefix)), key=lambda r: r["log_mel_l1"])

    def wins(ours: dict[str, Any], other: dict[str, Any]) -> str:
        won = [k for k in ("log_mel_l1", "mr_stft", "mcd", "fid") if k in ours and k in other and ours[k] < other[k]]
        won += ["pitch accuracy"] if ours["pitch_accuracy"] > other["pitch_accuracy"] else []
        return ", ".join(won) if won else "nothing"

    network_only = [r for r in rows if r["method"].startswith("ours") and "projection" not in r["method"]]
    plain = min(network_only, key=lambda r: r["log_mel_l1"])
    peer = best("diffwave")
    gl = next((r for r in rows if r["method"] == "Griffin–Lim, 100 iterations"), None) or best("Griffin")
    # same budget: the networks alone (the projection would serve diffwave's sampler as well)
    lines = [f"against diffwave's trainer ({peer['method']}) ours ({plain['method']}, {plain['nfe']} NFE) wins on "
             f"{wins(plain, peer)}"]
    ours = best("ours")
    lines.append(f"against {gl['method']} ours ({ours['method']}, {ours['nfe']} NFE) wins on {wins(ours, gl)}")
    if ours is not plain:
        lines.append(f"the network alone ({plain['method']}, {plain['nfe']} NFE) wins on {wins(plain, gl)}")
    alone = [r for r in rows if r["method"].startswith("mel projection alone")]
    if alone:
        lines.append(f"the projection alone from noise wins on {wins(alone[0], gl)}, and against it our best row "
                     f"wins on {wins(ours, alone[0])}")
    six = [r for r in network_only if r["nfe"] <= 6]
    fifty = [r for r in network_only if r["nfe"] >= 49]
    if six and fifty:
        lines.append(f"our 6-NFE pitch accuracy is {six[0]['pitch_accuracy']:.2f} against "
                     f"{fifty[0]['pitch_accuracy']:.2f} at 50 NFE")
    diffusion = [r for r in rows if r["method"].startswith(("ours", "diffwave"))]
    if all(r["pitch_accuracy"] == 0 for r in diffusion):
        lines.append("no diffusion vocoder makes a tone after this budget (every pitch accuracy is 0): "
                     "the budget is far too short for the comparison to rank the trainers")
    return "Read off the table: " + "; ".join(lines) + "."


def _nfe_verdict(rows: list[dict[str, Any]]) -> str:
    """Which sampler does best at 6 NFE, and how far that is from its own 50-NFE figure."""
    low = [r for r in rows if r["nfe"] <= 6]
    if not low:
        return ""
    best = max(low, key=lambda r: r["pitch_accuracy"])
    name = best["sampler"] + (" on its tuned grid" if best.get("grid") == "tuned" else "")
    high = [r for r in rows if r["sampler"] == best["sampler"] and r["nfe"] >= 49]
    if not high:
        return f"Best at 6 NFE: {name} ({best['pitch_accuracy']:.3f}); it was not run at 50 NFE."
    gap = 100 * (high[0]["pitch_accuracy"] - best["pitch_accuracy"])
    verdict = "within" if gap <= 5 else "not within"
    return (f"Read off the table: the best sampler at 6 NFE is {name} (pitch accuracy "
            f"{best['pitch_accuracy']:.3f}, against {high[0]['pitch_accuracy']:.3f} at 50 NFE: {gap:+.1f} points "
            f"lost, {verdict} the issue's 5 points).")


def write_docs(section: str) -> None:
    from _docs import splice_section

    splice_section(START, END, section, DOCS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "throughput", "quality", "generation"), default="all")
    parser.add_argument("--run", type=Path, default=None, help="--part generation: a trained audio run folder")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--round-steps", type=int, default=4)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of training for each trainer")
    parser.add_argument("--n", type=int, default=16, help="held-out clips to vocode")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="score the trained models in this folder of an earlier --part quality run")
    parser.add_argument("--render-only", action="store_true", help=f"rewrite {DOCS.name} from its stored results")
    parser.add_argument("--heun", action="store_true", help="also sample with Heun at 10 and 20 NFE")
    parser.add_argument("--tune", action="store_true",
                        help="--part generation: also unipc and dpmpp_2m at 6 NFE on grids tuned to the run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while sampling and scoring")
    parser.add_argument("--projection", type=int, default=8,
                        help="also vocode with this many mel projections per denoiser call (0: not)")
    parser.add_argument("--write", action="store_true", help=f"rewrite the audio section of {DOCS.name}")
    parser.add_argument("--peer-train", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_train:
        peer_train(args)
        return
    results: dict[str, Any] = {}
    if args.render_only:  # the stored results again, with the current text
        found = re.search(r"<!-- audio-bench-data (.*?) -->", DOCS.read_text())
        results = json.loads(found.group(1)) if found else {}
        commands = results.pop("commands", {})
        results["commands"] = commands
        section = render(results, "; ".join(f"`{c}`" for c in dict.fromkeys(commands.values())))
        write_docs(section)
        print(section)
        return
    if args.part in ("all", "throughput"):
        results["throughput"] = throughput(args)
    if args.part in ("all", "quality"):
        results["quality"] = quality(args)
    if args.part == "generation" or (args.part == "all" and args.run is not None):
        results["generation"] = generation(args)
    command = ("python benchmarks/audio.py " + " ".join(sys.argv[1:])).strip()
    commands = {part: command for part in results}
    if args.write:  # keep the parts this run did not redo
        found = re.search(r"<!-- audio-bench-data (.*?) -->", DOCS.read_text())
        if found:
            old = json.loads(found.group(1))
            commands = {**old.pop("commands", {}), **commands}
            results = {**old, **results}
    results["commands"] = commands
    section = render(results, "; ".join(f"`{c}`" for c in dict.fromkeys(commands.values())))
    print(section)
    if args.write:
        write_docs(section)
        print(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
