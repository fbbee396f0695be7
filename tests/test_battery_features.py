"""``polydiff evaluate --features FILE``: a feature extractor loads without unpickling anything.

A ``torch.export`` archive whose weights, constants or sample inputs would be unpickled by
``torch.export.load`` is refused before that function sees it; the payloads below prove (on an
unguarded ``torch.export.load``) that they would have run, and that through polydiff they do not.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from polydiff.errors import UserError
from polydiff.metrics import load_feature_extractor, pt2_problem


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _export(path: Path) -> Path:
    program = torch.export.export(torch.nn.Linear(3, 2), (torch.randn(1, 3),))
    torch.export.save(program, str(path))
    return path


def _rewrite(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            zout.writestr(info, data)
    return dst


def _pickled_weight(marker: Path):
    def edit(name, data):
        if name.endswith("weights_config.json"):
            config = json.loads(data)
            config["config"]["weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("weights/weight_0"):
            return pickle.dumps(Payload(marker))
        return data
    return edit


def _pickled_inputs(marker: Path):
    def edit(name, data):
        return pickle.dumps(Payload(marker)) if "sample_inputs/" in name else data
    return edit


@pytest.mark.parametrize("make", [_pickled_weight, _pickled_inputs], ids=["weights", "sample-inputs"])
def test_pt2_payload_never_runs(tmp_path, make):
    clean = _export(tmp_path / "clean.pt2")
    assert pt2_problem(clean) is None
    assert load_feature_extractor(str(clean))(torch.ones(1, 3)).shape == (1, 2)

    marker = tmp_path / "marker"
    hostile = _rewrite(clean, tmp_path / "hostile.pt2", make(marker))
    # the unguarded loader runs the payload: the test can tell
    try:
        torch.export.load(str(hostile))
    except Exception:  # noqa: BLE001 - the payload has run or not; that is what is checked
        pass
    assert marker.exists(), "the payload did not run on torch.export.load: the test proves nothing"
    marker.unlink()

    with pytest.raises(UserError) as err:
        load_feature_extractor(str(hostile))
    assert not marker.exists()
    msg = str(err.value)
    assert "hostile.pt2" in msg and "\n" not in msg and ("pickle" in msg or "unpickling" in msg)


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"\x80\x04junk")
    with pytest.raises(UserError, match="junk.pt2: refused: not a torch.export archive"):
        load_feature_extractor(str(junk))
