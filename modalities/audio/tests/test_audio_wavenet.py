"""The WaveNet: receptive field, any length, conditions, the mel upsampler."""

from __future__ import annotations

import pytest
import torch
from polydiff_audio.wavenet import MelUpsampler, WaveNet, receptive_field


def _randomised(net):
    # the output layer starts at zero (DiffWave's init); give it weights so gradients flow
    torch.nn.init.normal_(net.output.weight)
    return net


@pytest.mark.parametrize("layers, cycle", [(3, 3), (5, 2), (4, 4)])
def test_receptive_field_is_exact(layers, cycle):
    torch.manual_seed(0)
    net = _randomised(WaveNet(residual_layers=layers, residual_channels=4, dilation_cycle=cycle, embedding_dim=8))
    t, centre = 200, 100
    x = torch.randn(1, 1, t, requires_grad=True)
    net(x, torch.zeros(1))[0, 0, centre].backward()
    touched = torch.nonzero(x.grad[0, 0].abs() > 0).flatten()
    half = (receptive_field(layers, cycle) - 1) // 2
    assert receptive_field(layers, cycle) == 1 + 2 * sum(2 ** (i % cycle) for i in range(layers))
    assert touched.min() == centre - half and touched.max() == centre + half
    assert len(touched) == net.receptive_field


@pytest.mark.parametrize("t", [1, 17, 333])
def test_any_length_and_channels(t):
    net = _randomised(WaveNet(channels=2, residual_layers=2, residual_channels=4, dilation_cycle=2,
                              embedding_dim=8, num_classes=3, n_mels=5, hop=16))
    x = torch.randn(2, 2, t)
    mel = torch.rand(2, 5, t // 16 + 1)
    out = net(x, torch.tensor([0.1, -0.3]), label=torch.tensor([2, -1]), mel=mel)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert net(x, torch.zeros(2)).shape == x.shape  # conditions may be absent


def test_label_and_mel_change_the_output_and_null_label_is_its_own_class():
    torch.manual_seed(0)
    net = _randomised(WaveNet(residual_layers=2, residual_channels=4, dilation_cycle=2, embedding_dim=8,
                              num_classes=3, n_mels=5, hop=16))
    x, c = torch.randn(1, 1, 64), torch.zeros(1)
    a = net(x, c, label=torch.tensor([0]))
    b = net(x, c, label=torch.tensor([1]))
    null = net(x, c, label=torch.tensor([-1]))
    assert not torch.allclose(a, b) and not torch.allclose(a, null)
    assert torch.allclose(null, net(x, c, label=torch.tensor([3])))  # out of range = null
    m = net(x, c, mel=torch.rand(1, 5, 5))
    assert not torch.allclose(m, net(x, c))


def test_upsampler_stretches_by_the_hop():
    for hop in (4, 64, 128, 256):
        up = MelUpsampler(hop)
        assert up.factors[0] * up.factors[1] == hop
        assert up(torch.rand(2, 7, 9)).shape == (2, 7, 9 * hop)
    with pytest.raises(ValueError):
        MelUpsampler(100)
