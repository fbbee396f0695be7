"""Keep the audio tests quick on small shared machines: one intra-op thread while they run."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def audio_registry(monkeypatch):
    """A registry holding only the audio modality (no entry-point scan)."""
    from polydiff_audio import AudioModality

    import polydiff.registry as registry

    reg = registry.Registry(autoload=False)
    reg.register(AudioModality(), distribution="polydiff-audio", version="0.1.0")
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    return reg
