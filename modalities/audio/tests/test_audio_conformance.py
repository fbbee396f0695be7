"""The audio plugin against the contract: `polydiff.testing.check_modality`, every check."""

import copy

from _audio_tiny import TINY
from polydiff_audio import modality

from polydiff.testing import CHECKS, check_modality


def _not_audio(folder):
    (folder / "a").mkdir()
    (folder / "a" / "clip.wav").write_bytes(b"RIFF....this is not a WAV file")
    return folder


def test_audio_plugin_conforms(tmp_path):
    report = check_modality(modality, tmp_path, config=TINY, bad_file=_not_audio)
    assert report.passed == list(CHECKS)


def test_mel_conditioned_plugin_conforms(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["model"]["mel"] = True
    report = check_modality(modality, tmp_path, config=cfg, skip=["light_import", "bad_file"])
    assert not report.failed
