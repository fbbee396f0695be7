"""Fixtures of the graphs tests (the one-thread fixture is the repository's, in ../../../conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def graphs_registry(monkeypatch):
    """A registry holding only the graphs modality (no entry-point scan)."""
    from polydiff_graphs import GraphsModality

    from polydiff.testing import registry_of

    return registry_of(monkeypatch, GraphsModality(), "polydiff-graphs", "0.1.0")
