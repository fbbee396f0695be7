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


def _literal_forward(net, x_in, c_noise, label=None, mel=None):
    """DiffWave's residual stack written out as the paper draws it (per-layer 1x1 convolutions,
    separate residual and skip halves, the last residual computed and discarded)."""
    import math

    import torch.nn.functional as F
    from polydiff_audio.wavenet import _fourier

    b, _, t = x_in.shape
    emb = net.embed(_fourier(c_noise, net.embedding_dim).to(x_in.dtype))
    if net.label is not None and label is not None:
        idx = label.long().clone()
        idx[(idx < 0) | (idx >= net.num_classes)] = net.num_classes
        emb = emb + net.label(idx)
    steps = net.step_proj(emb).view(b, net.layers, net.residual_channels, 1)
    cond = net._conditioning(mel, b, t, x_in)
    ctx = net.context(x_in, emb) if net.context is not None else None
    h = F.relu(net.input(x_in))
    skips = []
    for i in range(net.layers):
        y = net.dilated[i](h + steps[:, i])
        if cond is not None:
            y = y + net.mel_proj[i](cond)
        if ctx is not None:
            y = y + net.context_proj[i](ctx)
        gate, filt = y.chunk(2, dim=1)
        residual, s = net.out_proj[i](torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)
        h = (h + residual) / math.sqrt(2.0)
        skips.append(s)
    out = F.relu(net.skip(torch.stack(skips).sum(0) / math.sqrt(net.layers)))
    return net.output(out)


@pytest.mark.parametrize(("mel", "context"), [(False, 0), (True, 0), (True, 4)])
def test_forward_equals_the_literal_diffwave_stack(mel, context):
    torch.manual_seed(0)
    net = WaveNet(residual_layers=5, residual_channels=6, dilation_cycle=3, embedding_dim=8,
                  num_classes=3, n_mels=5 if mel else 0, hop=16, context_channels=context,
                  context_layers=2).double()
    for p in net.parameters():  # every bias and weight non-zero, so a dropped term shows
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 1, 100, dtype=torch.float64, requires_grad=True)
    kw = {"label": torch.tensor([0, 2, -1]), "mel": torch.rand(3, 5, 7, dtype=torch.float64) if mel else None}
    got = net(x, torch.tensor([0.1, -0.5, 1.0], dtype=torch.float64), **kw)
    want = _literal_forward(net, x, torch.tensor([0.1, -0.5, 1.0], dtype=torch.float64), **kw)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)
    # and so are the gradients, of the input and of every parameter
    g_got = torch.autograd.grad(got.square().sum(), [x, *net.parameters()], allow_unused=True)
    g_want = torch.autograd.grad(want.square().sum(), [x, *net.parameters()], allow_unused=True)
    for a, w in zip(g_got, g_want, strict=True):
        if w is None or a is None:  # the last layer's residual half: no gradient in either form
            assert (a is None or not a.abs().any()) and (w is None or not w.abs().any())
        else:
            assert torch.allclose(a, w, rtol=1e-9, atol=1e-10)

