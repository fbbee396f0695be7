"""Fixtures of the images tests (the one-thread fixture is the repository's, in ../../../conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def images_registry(monkeypatch):
    """A registry holding only the images modality (no entry-point scan)."""
    from polydiff_images import ImagesModality

    from polydiff.testing import registry_of

    return registry_of(monkeypatch, ImagesModality(), "polydiff-images", "0.1.0")
