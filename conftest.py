"""Fixtures every test tree shares (tests/ and each plugin's modalities/*/tests)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # the suite's tensors are tiny and the machines small and shared: one intra-op thread beats
    # OpenMP threads waiting for each other; the caller's setting comes back afterwards
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
