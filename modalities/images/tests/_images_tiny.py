"""A tiny images run configuration for the CLI tests (seconds, not minutes)."""


def tiny_toml(data: str = "", model: str = "") -> str:
    """TOML text: a one-level 8-channel U-Net, 2 steps, 2 euler samples; extra ``[data]`` and
    ``[model]`` lines (``key = value``, newline-separated) go into their tables."""
    return f"""
[data]
{data}

[model]
base_channels = 8
channel_mult = [1]
attention_levels = []
attention_head_dim = 8
norm_groups = 4
{model}

[train]
steps = 2
batch_size = 4
threads = 1
plot_every = 0
snapshot_every = 0
checkpoint_every = 0

[sample]
n = 2
steps = 2
sampler = "euler"
"""
