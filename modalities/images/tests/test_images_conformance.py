"""The images plugin against the contract: `polydiff.testing.check_modality`, every check."""

from polydiff_images import modality

from polydiff.testing import CHECKS, check_modality

TINY = {
    "data": {"test_size": 64},
    "model": {"base_channels": 8, "channel_mult": [1], "attention_levels": [],
              "attention_head_dim": 8, "norm_groups": 4},
}


def _not_an_image(folder):
    (folder / "7").mkdir()
    bad = folder / "7" / "digit.png"
    bad.write_bytes(b"this is not a PNG")
    return folder


def test_images_plugin_conforms(tmp_path):
    report = check_modality(modality, tmp_path, config=TINY, bad_file=_not_an_image)
    assert report.passed == list(CHECKS)
