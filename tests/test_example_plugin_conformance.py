"""examples/third_party_plugin, unchanged, against the conformance kit."""

import sys
from pathlib import Path

import numpy as np

from polydiff.testing import CHECKS, check_modality

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "third_party_plugin"


def _bad_npy(folder):
    path = folder / "bad.npy"
    np.save(path, np.zeros((4, 3, 2)))
    return path


def test_example_plugin_conforms(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLE))  # the light-import check runs a subprocess
    try:
        from polydiff_curves import modality

        report = check_modality(
            modality, tmp_path, config={"model": {"width": 8, "blocks": 1}, "data": {"size": 16}},
            bad_file=_bad_npy,
        )
    finally:
        for name in [m for m in sys.modules if m.startswith("polydiff_curves")]:
            del sys.modules[name]
    assert report.passed == list(CHECKS)
