"""Keep the graphs tests quick on small shared machines: one intra-op thread while they run."""

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
def graphs_registry(monkeypatch):
    """A registry holding only the graphs modality (no entry-point scan)."""
    from polydiff_graphs import GraphsModality

    from polydiff.testing import registry_of

    return registry_of(monkeypatch, GraphsModality(), "polydiff-graphs", "0.1.0")
