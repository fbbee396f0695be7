"""Image metrics in a feature space the user names (``polydiff evaluate --features``)."""

import sys

import pytest
import torch
from polydiff_images.evaluation import evaluate_images

from polydiff.errors import UserError
from polydiff.metrics import load_feature_extractor


def _mean_pixel(x):
    return x.mean(dim=(1, 2, 3), keepdim=False)[:, None]


def _images(values):
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 4, 4)


def test_fd_in_a_one_dimensional_user_space_matches_the_closed_form():
    fake = _images([0.0, 0.2, 0.4, 0.6, 0.8])
    real = _images([-0.5, -0.3, -0.1, 0.1, 0.3, 0.5])
    out = evaluate_images(fake, None, real, extractor=_mean_pixel, extractor_name="mean")
    # 1-D Gaussians: FD = (m1 - m2)^2 + (s1 - s2)^2 with unbiased standard deviations
    m1, m2 = 0.4, 0.0
    s1 = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8]).std().item()
    s2 = torch.tensor([-0.5, -0.3, -0.1, 0.1, 0.3, 0.5]).std().item()
    assert out["fd"] == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-4, abs=1e-6)
    assert out["features"] == "mean" and "mean" in out["note"]
    assert "class_tv" not in out


def test_user_probabilities_give_class_metrics():
    def extractor(x):
        m = _mean_pixel(x)
        probs = torch.cat([(m < 0).float(), (m >= 0).float()], dim=1)
        return m, probs

    fake = _images([0.1, 0.2, 0.3, -0.2, 0.4])  # predicted classes 1,1,1,0,1
    real = _images([-0.5, -0.3, 0.1, 0.3, 0.5, 0.6])
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    out = evaluate_images(fake, None, real, labels, extractor=extractor, extractor_name="sign")
    # histograms: fake (0.2, 0.8), data (1/3, 2/3) -> TV = 0.5 * (|0.2-1/3| + |0.8-2/3|)
    assert out["class_tv"] == pytest.approx(0.5 * (abs(0.2 - 1 / 3) + abs(0.8 - 2 / 3)))
    assert out["confident"] == 1.0


def test_without_extractor_a_user_folder_is_scored_in_pixels():
    fake, real = torch.rand(6, 1, 4, 4) * 2 - 1, torch.rand(7, 1, 4, 4) * 2 - 1
    out = evaluate_images(fake, None, real)
    assert out["features"] == "pixels" and "pixel space" in out["note"] and "fd" not in out


def test_load_feature_extractor_module_class_and_torchscript(tmp_path, monkeypatch):
    (tmp_path / "myfeats.py").write_text(
        "import torch\n"
        "def flat(x):\n    return x.flatten(1)\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x.mean((2, 3))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    x = torch.rand(2, 3, 4, 4)
    assert load_feature_extractor("myfeats:flat")(x).shape == (2, 48)
    net = load_feature_extractor("myfeats:Net")
    assert isinstance(net, torch.nn.Module) and net(x).shape == (2, 3)
    scripted = tmp_path / "feats.pt"
    torch.jit.script(net).save(str(scripted))
    assert torch.allclose(load_feature_extractor(str(scripted))(x), x.mean((2, 3)))
    sys.modules.pop("myfeats", None)


@pytest.mark.parametrize(
    "spec, message",
    [("nosuchmodule_xyz:f", "cannot import"), ("json:nope", "no attribute"),
     ("missing.pt", "file not found"), ("justaname", "expected a TorchScript file")],
)
def test_bad_feature_specs_are_one_line_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        load_feature_extractor(spec)


def test_not_torchscript_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a TorchScript model"):
        load_feature_extractor(str(bad))
