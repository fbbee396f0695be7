"""The U-Net's own memory-format hint: channels-last weights and input where it pays (CUDA), the
same numbers either way, and nothing but 4-D tensors touched."""

from __future__ import annotations

import pytest
import torch
from polydiff_images.unet import UNet, build_unet

CL = torch.channels_last


def small(**kw):
    torch.manual_seed(0)
    net = UNet(base_channels=8, channel_mult=(1, 2), num_blocks=1, attention_head_dim=8, **kw)
    with torch.no_grad():  # open the zero-initialised output layer, so outputs are not all 0
        w = net.conv_out.weight  # (filled through copy_: normal_ would follow the memory order)
        w.copy_(0.1 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))
    return net


def four_d(net):
    return [p for p in net.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1]


def test_channels_last_on_request_only_touches_rank_4():
    net = small(channels_last=True).to("cpu")
    assert all(p.is_contiguous(memory_format=CL) and not p.is_contiguous() for p in four_d(net))
    assert all(p.is_contiguous() for p in net.parameters() if p.ndim != 4)
    seen = []
    net.conv_in.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    x = torch.randn(2, 4, 8, 8)[:, :1]  # a channels-first view: the network converts it
    net(x, torch.rand(2))
    assert seen[0].is_contiguous(memory_format=CL)


def test_auto_is_contiguous_on_cpu_and_same_numbers():
    auto, cl, plain = small(), small(channels_last=True), small(channels_last=False)
    assert all(p.is_contiguous() for p in auto.to("cpu").parameters())
    x, c = torch.randn(3, 1, 8, 8), torch.rand(3)
    torch.testing.assert_close(cl(x, c), plain(x, c))
    torch.testing.assert_close(auto(x, c), plain(x, c))
    assert auto.uses_channels_last(torch.device("cuda")) and not auto.uses_channels_last(torch.device("cpu"))
    assert not plain.uses_channels_last(torch.device("cuda"))


def test_build_unet_passes_the_setting_and_refuses_nonsense():
    assert build_unet({"channels_last": False}).channels_last is False
    assert build_unet({}).channels_last == "auto"
    with pytest.raises(ValueError, match="channels_last"):
        UNet(channels_last="sometimes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_turns_channels_last_on_cuda_and_back():
    net = small().to("cuda")
    assert all(p.is_contiguous(memory_format=CL) for p in four_d(net))
    out = net(torch.randn(2, 1, 8, 8, device="cuda"), torch.rand(2, device="cuda"))
    assert out.shape == (2, 1, 8, 8)
    assert all(p.is_contiguous() for p in net.cpu().parameters())
