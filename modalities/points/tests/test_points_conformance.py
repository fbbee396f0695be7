"""The points plugin against the contract: `polydiff.testing.check_modality`, every check."""

from _points_tiny import TINY
from polydiff_points import modality

from polydiff.testing import CHECKS, check_modality


def _truncated_ply(folder):
    bad = folder / "chair" / "broken.ply"
    bad.parent.mkdir()
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n" \
             b"property float y\nproperty float z\nend_header\n"
    bad.write_bytes(header + b"\x00" * 17)  # 100 vertices promised, under 2 delivered
    return folder


def test_points_plugin_conforms(tmp_path):
    report = check_modality(modality, tmp_path, config=TINY, bad_file=_truncated_ply)
    assert report.passed == list(CHECKS)
