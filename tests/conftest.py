import sys
from pathlib import Path

import pytest

# tests import helpers (toy_modality, _distfactory) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def toy_registry(monkeypatch):
    """A registry holding only the in-memory toy modality, used by every CLI entry point."""
    from toy_modality import ToyModality

    from polydiff.testing import registry_of

    return registry_of(monkeypatch, ToyModality(), "toy-tests", "0")


@pytest.fixture(autouse=True)
def _threads():
    # the tests' tensors are tiny: one thread avoids sync overhead that dominates on 2 shared cores
    import torch

    torch.set_num_threads(1)
