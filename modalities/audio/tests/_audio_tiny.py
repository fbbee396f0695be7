"""A tiny configuration for tests: 8 kHz quarter-second clips, a 3-layer WaveNet."""

TINY = {
    "data": {"sample_rate": 8000, "clip_seconds": 0.25, "n_fft": 256, "hop_length": 64, "n_mels": 20,
             "train_crop": 0, "train_size": 16, "test_size": 8},
    "model": {"residual_layers": 3, "residual_channels": 8, "dilation_cycle": 3, "embedding_dim": 16},
}
