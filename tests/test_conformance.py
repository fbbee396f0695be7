"""The conformance kit on the core's toy modalities, and on a plugin that breaks it."""

import pytest
import torch
from toy_modality import ToyModality
from toy_spaces import ToyClouds, ToyGraphs

from polydiff.protocol import DataError
from polydiff.testing import CHECKS, ConformanceError, check_modality


def _bad(folder):
    path = folder / "bad.bin"
    path.write_bytes(b"\x00\x01")
    return path


@pytest.mark.parametrize("modality", [ToyModality(), ToyClouds(), ToyGraphs()], ids=["toy", "clouds", "graphs"])
def test_toy_modalities_conform(modality, tmp_path):
    # the toys live in test modules that import torch at the top: no light-import check for them
    report = check_modality(modality, tmp_path, bad_file=_bad, skip=["light_import"])
    assert set(report.passed) == set(CHECKS) - {"light_import"}
    assert report.samples is not None


class Broken(ToyClouds):
    """Breaks several rules at once: the kit must name every one."""

    name = "broken"
    conditions = "label"  # a string, not a sequence of names

    def build_dataset(self, source, config, split):
        if str(source) != "gauss":
            raise OSError(f"cannot read {source}")  # not a DataError
        return super().build_dataset(source, config, split)

    def noise_space(self, config):
        from polydiff.noise_space import NoiseSpace

        class Doubling(NoiseSpace):  # not idempotent
            def project(self, state, mask):
                return state * 2

        return Doubling()

    def write_samples(self, samples, out_dir, *, mask=None, cond=None, prefix="sample"):
        path = out_dir.parent / "outside.pt"
        torch.save(samples, path)
        return [path]


def test_every_breach_is_reported_by_name(tmp_path):
    with pytest.raises(ConformanceError) as info:
        check_modality(Broken(), tmp_path, bad_file=_bad, skip=["light_import"])
    message = str(info.value)
    for check, needle in [("members", "conditions"), ("noise_space", "idempotent"),
                          ("writer", "outside out_dir"), ("bad_file", "OSError")]:
        assert f"{check}: " in message and needle in message, (check, message)
    report = check_modality(Broken(), tmp_path / "again", bad_file=_bad, skip=["light_import"], raise_on_failure=False)
    assert "train_step" in report.passed and "sample" in report.passed


def test_light_import_catches_a_heavy_entry_module(tmp_path, monkeypatch):
    (tmp_path / "heavyplug.py").write_text(
        "import torch\nfrom polydiff.protocol import Modality\n"
        "class Heavy(Modality):\n    name = 'heavy'\n    description = 'imports torch at the top'\n"
        "modality = Heavy()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    import heavyplug

    report = check_modality(heavyplug.modality, tmp_path, raise_on_failure=False)
    assert "imports torch" in report.failed["light_import"]
    assert "default_config" in report.failed["members"]
    assert DataError  # the kit's bad_file check expects this type
