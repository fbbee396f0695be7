"""Fixtures of the audio tests (the one-thread fixture is the repository's, in ../../../conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def audio_registry(monkeypatch):
    """A registry holding only the audio modality (no entry-point scan)."""
    from polydiff_audio import AudioModality

    from polydiff.testing import registry_of

    return registry_of(monkeypatch, AudioModality(), "polydiff-audio", "0.1.0")
