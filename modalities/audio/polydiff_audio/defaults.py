"""The audio modality's default configuration and its presets (light: no torch).

:mod:`polydiff_audio` re-exports :data:`DEFAULT_CONFIG`; the data, network, writer and metrics read
it to fill keys a run's configuration leaves out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CONFIG", "PRESETS"]

DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": "notes",  # built-in: deterministic pitched tones, labelled by pitch
        "path": "",  # a folder of WAV/FLAC/OGG files (--data PATH); subfolders are classes
        "sample_rate": 16000,
        "clip_seconds": 1.0,
        # train on random windows of this many samples of each clip (0: the whole clip); the
        # WaveNet is convolutional, so it samples whole clips all the same, and a window a few
        # receptive fields long keeps a CPU step cheap
        "train_crop": 2048,
        # notes: MIDI pitches (one class each), clips per split
        "pitches": [57, 59, 60, 62, 64, 65, 67, 69],
        "train_size": 512,
        "test_size": 128,
        # folders: share of each class held out for the test split, and which files
        "test_fraction": 0.1,
        "split_seed": 0,
        # folders: every file is scaled to this RMS (peak capped at 0.99)
        "loudness_rms": 0.1,
        # log-mel spectrogram (vocoding condition, writer, metrics); hop_length a power of two
        "n_fft": 1024,
        "hop_length": 256,
        "n_mels": 80,
        "f_min": 20.0,
    },
    "model": {
        # receptive field 1 + 2·Σ dilations = 541 samples (34 ms at 16 kHz, 7 periods of the lowest
        # note): a tone's pitch must be visible inside it; a cycle of 6 (253 samples) or the quick
        # preset's first 6 × cycle 3 (29 samples, shorter than one period at 8 kHz) made no tones
        "residual_layers": 12,
        "residual_channels": 32,
        "dilation_cycle": 8,
        "embedding_dim": 128,
        # -1: the data's class count (notes: one per pitch; a folder: its class folders, 0 when
        # flat); 0: unconditional
        "num_classes": -1,
        # condition on the log-mel spectrogram of the clip (a vocoder: --cond mel=FILE)
        "mel": False,
        # long-range context (wavenet.ContextBranch): channels of a frame-rate branch over the
        # whole clip, 0 for none; it learns envelopes only from whole clips (data.train_crop 0)
        "context_channels": 0,
        # its dilated convolutions over frames: 1 + 2·(2^layers − 1) frames seen (6: 127, two
        # seconds at hop 256 and 16 kHz)
        "context_layers": 6,
    },
    "param": {"sigma_data": 0.2},
    # 800 steps: 8 min 39 s with the final samples (1.85 steps/s, one thread, another job on the
    # second core); 97 % of 64 samples within a quarter-tone of a data-set pitch and all 8 pitches
    # covered. At 500 steps the lowest pitch (A3) was never produced (README.md)
    "train": {
        "steps": 800,
        "batch_size": 16,
        "lr": 1e-3,
        "ema_decay": 0.995,
        "warmup_steps": 100,
        "grad_clip": 1.0,
        "log_every": 100,
        # one intra-op thread: on a shared 2-core machine two OpenMP threads ran 3-9x slower per
        # step than one (measured under load: 2.9-8.9 s against 1.0-2.5 s)
        "threads": 1,
        "cond_dropout": 0.2,
    },
    "sample": {
        "sampler": "heun",
        "steps": 18,
        "n": 16,
        "guidance": 1.0,
        "inpaint_sampler": "ddpm",
        "inpaint_steps": 50,
        # vocoding (a mel condition): projections of each clean estimate onto the mel
        # (polydiff_audio.phase, as GLA-Grad) at noise levels >= the sigma below; 0: none. 32:
        # chosen on training clips (README.md: 4 / 8 / 16 / 32 per call, 32 best, ~20 % slower)
        "mel_projection_iters": 32,
        "mel_projection_sigma_min": 0.0,
    },
}

#: documented overrides (``polydiff train --config``), also used by examples and tests
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # 8 kHz, a small network: a quick check of the whole pipeline
    "quick": {
        "data": {"sample_rate": 8000, "n_fft": 512, "hop_length": 128, "n_mels": 40,
                 "train_crop": 2048, "train_size": 128, "test_size": 64},
        # receptive field 511 samples (64 ms at 8 kHz)
        "model": {"residual_layers": 8, "residual_channels": 16, "dilation_cycle": 8},
        # 600 steps: 2.5 min of wall-clock (104 s of CPU) on the shared 2-core machine; 88 % of
        # 32 samples within a quarter-tone of a data-set pitch, 7 of the 8 pitches (README.md)
        "train": {"steps": 600},
    },
    # a mel-conditioned vocoder: every clip's spectrogram in, its waveform out
    "vocoder": {
        "model": {"mel": True, "num_classes": 0},
        "train": {"cond_dropout": 0.0},
        "sample": {"guidance": 1.0},
    },
}
