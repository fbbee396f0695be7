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
