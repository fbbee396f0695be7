"""The points modality's default configuration (light: no torch, numpy or trimesh)."""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CONFIG", "VALID"]

#: the condition that carries each cloud's validity mask to the network (the contract passes the
#: network only the state, the noise level and conditions, so a ragged batch's mask rides here)
VALID = "valid"

#: Speed, on 2 CPU cores: the default compiles (inductor fuses the many per-neighbour operations;
#: about 1.75x an eager step, for a minute or so of compilation) and trains on two single-threaded
#: processes with the batch split between them (`train.processes`; a second intra-op thread made
#: the compiled step slower). k = 8 neighbours rather than 12: a step costs about a third less
#: and, spent on more steps in the same time, scored no worse on validation clouds (76.3 % 1-NNA-CD
#: at 1,900 steps against 77.5 % at 1,400 with k = 12; 200 clouds, noise about 2 points).
#: 1,400 steps: `polydiff train --modality points` took 517 s end to end (cold inductor cache,
#: end-of-run samples included) on the slower 2-core Intel Xeon, where one process at k = 12 took
#: 899 s; 1,550 and 1,700 steps took 616 and 615 s there (the machine's speed drifts by a fifth),
#: so 1,400 keeps a margin (docs/benchmarks.md, "Point clouds"). Class-conditional since stop 26:
#: the same 1,400 steps and 517 s, and on the validation clouds 76.5 % against 79.5 % unconditional,
#: COV 0.42 against 0.37, with every class among the samples' nearest references.
DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": "shapes",  # built-in: procedural shapes (8 classes)
        "path": "",  # a folder of meshes and clouds (--data PATH); overrides `dataset`
        "num_points": 512,  # meshes are sampled to this; larger clouds are subsampled to it
        # box: each shape's bounding box centred, longest side 2 (coordinates in [-1, 1]);
        # global: each shape's centroid removed, divided by the training split's one std
        "normalize": "box",
        # zero centre of mass (state and noise): likelihoods count 3(N - 1) dimensions
        "center": True,
        "train_per_class": 200,  # shapes: clouds per class in the train split
        "test_per_class": 25,  # shapes: clouds per class in the test split
        "test_fraction": 0.1,  # folders: share of each class held out for the test split
        "split_seed": 0,
    },
    "model": {
        "width": 64,
        "blocks": 3,
        "k": 8,
        "groups": 8,  # attention weights per group of width/groups channels (width: per channel)
        "knn_chunk": 1024,  # query rows per cdist chunk (memory is chunk x N per cloud)
        "latents": 0,  # learned queries of the set attention in every block (0: pooling only)
        "heads": 4,  # attention heads of the set attention
        # -1: the data's class count (shapes: 8; a folder: its class subfolders, 0 when flat);
        # 0: unconditional. Samples then draw their labels from the training split, as often
        # as each class occurs there; `--class K` asks for one
        "num_classes": -1,
    },
    "train": {
        "steps": 1400,
        "batch_size": 16,
        "lr": 2e-3,
        "ema_decay": 0.995,
        "warmup_steps": 100,
        "log_every": 50,
        "threads": 1,
        # two single-threaded data-parallel processes: a second intra-op thread buys little here
        # (inductor's compiled kernels even run slower on two), a second process ~1.5x the steps/s
        "processes": 2,
        # where inductor cannot compile (no C++ compiler) training goes on eagerly, about 1.75x slower
        "compile": True,
        # the label is withheld from this share of the batch, so the model also learns the
        # unconditional score: completion of a cloud of unknown class, `--guidance`
        "cond_dropout": 0.1,
    },
    # completion (`--inpaint`): 4 RePaint rounds with reconstruction guidance of weight 5, chosen on
    # 32 validation clouds (unseen train-stream indices) with the long preset's model: mean CD
    # 0.030 without guidance, 0.027 / 0.020 / 0.018 / 0.016 at weights 1 / 2 / 3 / 5, diverged at
    # 10 (the default preset's model at 5: 0.026, stable); the mirror baseline scores 0.035 there
    "sample": {"sampler": "heun", "steps": 24, "n": 32, "imputation_resample": 4, "imputation_guidance": 5.0},
}
