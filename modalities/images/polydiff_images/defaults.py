"""The images modality's default configuration, in a module of its own so the data sources, the
layout and the metrics can read it without importing the package that dispatches to them.

Light on purpose (no torch, PIL or scikit-learn): :mod:`polydiff_images` re-exports it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CONFIG"]

#: Tuned so that ``polydiff train --modality images`` trains in about 5-6 minutes on 2 CPU cores
#: (681k parameters, ~5.5 steps/s at batch 32 on one thread of an idle 2-core EPYC) and its
#: 64-sample grid shows recognisable digits; see README.md for the measurements.
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": "digits",  # built-in: digits (16x16 gray), shapes (32x32 RGB)
        "path": "",  # a folder of images (--data PATH); overrides `dataset` when set
        # Every source is served at this size (square) and channel count (1 gray, 3 RGB); 0 =
        # auto, the source's own: digits 16 and 1, shapes 32 and 3, a folder 32 and 1 when all
        # its images are stored grayscale, else 3 (polydiff_images.data.resolve_data_config).
        "resolution": 0,
        "channels": 0,
        "test_size": 297,  # digits: images held out for the test split
        "test_fraction": 0.1,  # folders: share of each class held out for the test split
        "split_seed": 0,  # digits and folders: which images are held out
        "hflip": False,  # mirror train items left-right at random
    },
    "model": {
        "base_channels": 16,
        "channel_mult": [1, 2, 4],
        "num_blocks": 1,
        "attention_levels": [2],
        "attention_head_dim": 32,
        "norm_groups": 8,
        "dropout": 0.0,
        # -1 = the data's class count (digits 10, shapes 6, a folder its class folders, 0 when
        # flat): a class-conditional U-Net with a null class; 0 = unconditional
        "num_classes": -1,
    },
    "train": {
        "steps": 1800,
        "batch_size": 32,
        "lr": 2e-3,
        "weight_decay": 0.0,
        # a short run wants a short EMA horizon (~200 steps)
        "ema_decay": 0.995,
        "warmup_steps": 100,
        "grad_clip": 1.0,
        "log_every": 100,
        "seed": 0,
        # One intra-op thread: this network's ops are small, so a second thread gains only ~1.4x
        # on an idle 2-core machine, while any other busy process makes OpenMP's spinning threads
        # 3-10x slower than one thread (measured; see README.md).
        "threads": 1,
        # labels are withheld from 30 % of the items, so the same network also learns the
        # unconditional model (guidance, inpainting); measured against 15 %: the same
        # conditional quality, unconditional FD 4.3 instead of 6.3 (docs/benchmarks.md)
        "cond_dropout": 0.3,
    },
    "sample": {
        "sampler": "heun",
        "steps": 18,
        "n": 64,
        # mild classifier-free guidance: at 1.3 FD is as low as without (1.83 vs 1.89) while the
        # share of confidently classified samples rises from 0.92 to 0.95; at 2 FD doubles
        "guidance": 1.3,
        # inpainting: ancestral DDPM steps with reconstruction guidance restore the right class of
        # 86.5 % of half-masked test digits, against 49 % for plain replacement with Heun (100)
        "inpaint_sampler": "ddpm",
        "inpaint_steps": 30,
        "imputation_guidance": 30.0,
    },
}
