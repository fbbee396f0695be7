from __future__ import annotations

import pytest
import torch
from polydiff_images import modality
from polydiff_images.unet import UNet


def small(**kw):
    return UNet(base_channels=8, channel_mult=(1, 2), num_blocks=1, attention_head_dim=8, **kw)


def test_default_network_shape_and_zero_init():
    net = modality.build_network(modality.default_config())
    x = torch.randn(3, 1, 16, 16)
    out = net(x, torch.randn(3))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output convolution


def test_output_depends_on_input_and_noise_after_a_step():
    torch.manual_seed(0)
    net = small()
    x = torch.randn(4, 1, 8, 8)
    for _ in range(3):  # zero-initialised layers open up one after another (plain SGD)
        net.zero_grad()
        (net(x, torch.randn(4)) - x).pow(2).mean().backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.1 * p.grad
    with torch.no_grad():
        a = net(x, torch.zeros(4))
        b = net(x, torch.ones(4))
    assert a.abs().sum() > 0
    assert not torch.allclose(a, b)


def test_scalar_c_noise_broadcasts():
    net = small()
    out = net(torch.randn(2, 1, 8, 8), torch.tensor(0.3))
    assert out.shape == (2, 1, 8, 8)


def test_label_conditioning():
    torch.manual_seed(0)
    net = small(num_classes=10)
    assert net.label_emb.num_embeddings == 11  # row 10 is the null class
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    labels = torch.tensor([0, 3, 9, 10])
    assert net(x, c, label=labels).shape == x.shape
    assert net(x, c).shape == x.shape  # no label -> the null class
    for p in net.parameters():  # leave zero init so outputs differ by label
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        assert not torch.allclose(net(x, c, label=labels), net(x, c))
        assert torch.allclose(net(x, c), net(x, c, label=torch.full((4,), 10)))


def test_unconditional_network_ignores_labels():
    net = small()
    assert net.label_emb is None
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        assert torch.equal(net(x, c, label=torch.tensor([1, 2])), net(x, c))


def test_rgb_and_config_errors():
    cfg = modality.default_config()
    cfg["data"]["channels"] = 3
    cfg["model"].update(base_channels=8, channel_mult=[1, 2], attention_levels=[1])
    net = modality.build_network(cfg)
    assert net(torch.randn(2, 3, 8, 8), torch.randn(2)).shape == (2, 3, 8, 8)
    cfg["model"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        modality.build_network(cfg)


def test_denoiser_wrapping():
    from polydiff.param import Denoiser
    from polydiff.sde import EDM

    den = Denoiser(small(), EDM(), "edm", 0.5)
    x = torch.randn(2, 1, 8, 8)
    sigma = torch.tensor([0.5, 2.0])
    out = den(x, sigma, label=torch.tensor([1, 2]))
    c_skip = 0.25 / (sigma**2 + 0.25)
    assert torch.allclose(out, c_skip.reshape(-1, 1, 1, 1) * x)
