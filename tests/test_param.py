"""Every parameterisation, fed its exact target, makes D the exact posterior mean E[x_0 | x]."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.param import PARAMETERISATIONS, Denoiser, broadcast_sigma, coefficients
from polydiff.sde import EDM, VE, VP
from polydiff.state import append_dims

F64 = torch.float64
MU, C = 0.4, 0.8  # x_0 ~ N(MU, C^2 I), elementwise



def _sigma_from_c_noise(sde, c):
    if isinstance(sde, VP):
        return sde.sigma(c / 999)
    return torch.exp(4 * c)  # EDM / VE: c_noise = log(sigma) / 4


def _target(param, x, sigma, sd, x0=None, eps=None):
    """The exact regression target F_* of each parameterisation, from its own definition.

    With x0/eps given it is the per-sample ("oracle") target; otherwise the posterior mean of it
    under x_0 ~ N(MU, C^2): E[x_0|x] = MU + C^2/(C^2+sigma^2)(x - MU), E[eps|x] = (x - E[x_0|x])/sigma.
    """
    if x0 is None:
        x0 = MU + C**2 / (C**2 + sigma**2) * (x - MU)
        eps = (x - x0) / sigma
    if param == "x0":
        return x0
    if param == "eps":
        return eps
    if param == "score":
        # sigma * grad_x log p(x; sigma); for the oracle, the conditional score (x_0 - x)/sigma^2
        score = (x0 - x) / sigma**2
        return sigma * score
    if param == "v":
        # Salimans & Ho: v = alpha eps - sigma_t x_0 on data normalised by sd
        alpha = sd / torch.sqrt(sigma**2 + sd**2)
        sigma_t = sigma / torch.sqrt(sigma**2 + sd**2)
        return alpha * eps - sigma_t * x0 / sd
    # EDM Table 1: c_skip = sd^2/(s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2)
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
    return (x0 - c_skip * x) / c_out


class ExactNet(nn.Module):
    """Recovers x and sigma from (c_in x, c_noise) and returns the exact target."""

    def __init__(self, sde, param, sd, oracle=None):
        super().__init__()
        self.sde, self.param, self.sd, self.oracle = sde, param, sd, oracle
        self.seen = []

    def forward(self, x_in, c_noise):
        self.seen.append(c_noise)
        if isinstance(x_in, dict):
            return {
                k: self._leaf(v, c_noise[k] if isinstance(c_noise, dict) else c_noise, k)
                for k, v in x_in.items()
            }
        return self._leaf(x_in, c_noise, None)

    def _leaf(self, x_in, c, key):
        sigma = append_dims(_sigma_from_c_noise(self.sde, c), x_in.ndim)
        x = x_in * torch.sqrt(sigma**2 + self.sd**2)  # undo c_in
        if self.oracle is None:
            return _target(self.param, x, sigma, self.sd)
        x0, eps = self.oracle
        if key is not None:
            x0, eps = x0[key], eps[key]
        return _target(self.param, x, sigma, self.sd, x0, eps)


def _posterior_mean(x, sigma):
    return MU + C**2 / (C**2 + sigma**2) * (x - MU)


SDES = [EDM(), VP(), VE()]


@pytest.mark.parametrize("param", PARAMETERISATIONS)
@pytest.mark.parametrize("sde", SDES, ids=["edm", "vp", "ve"])
@pytest.mark.parametrize("sd", [0.5, 1.0])
def test_exact_target_gives_posterior_mean(param, sde, sd):
    g = torch.Generator().manual_seed(0)
    b = 6
    sigma = torch.exp(torch.linspace(math.log(0.05), math.log(20), b, dtype=F64))
    x0 = MU + C * torch.randn(b, 3, 4, generator=g, dtype=F64)
    x = x0 + append_dims(sigma, 3) * torch.randn(b, 3, 4, generator=g, dtype=F64)
    den = Denoiser(ExactNet(sde, param, sd), sde, param, sigma_data=sd)
    out = den(x, sigma)
    torch.testing.assert_close(out, _posterior_mean(x, append_dims(sigma, 3)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("param", PARAMETERISATIONS)
def test_oracle_target_recovers_x0(param):
    """Fed the per-sample target built from (x_0, eps), D returns x_0 itself (VP, v with sd = 1 is
    exactly Salimans & Ho's v = alpha_t eps - sigma_t x_0 on x_t = alpha_t x_0 + sigma_t eps)."""
    sde = VP()
    g = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.02, 0.5, 3.0, 40.0], dtype=F64)
    x0 = torch.randn(4, 7, generator=g, dtype=F64)
    eps = torch.randn(4, 7, generator=g, dtype=F64)
    x = x0 + sigma[:, None] * eps
    den = Denoiser(ExactNet(sde, param, 1.0, oracle=(x0, eps)), sde, param, sigma_data=1.0)
    torch.testing.assert_close(den(x, sigma), x0, rtol=1e-9, atol=1e-9)
    if param == "v":
        t = sde.sigma_inv(sigma)[:, None]
        alpha, sigma_t = sde.scale(t), sde.scale(t) * sigma[:, None]
        assert torch.allclose(alpha**2 + sigma_t**2, torch.ones_like(alpha))
        v = alpha * eps - sigma_t * x0
        x_t = alpha * x0 + sigma_t * eps
        torch.testing.assert_close(alpha * x_t - sigma_t * v, x0)  # the textbook inversion
        torch.testing.assert_close(_target("v", x, sigma[:, None], 1.0, x0, eps), v)


@pytest.mark.parametrize("param", PARAMETERISATIONS)
def test_per_element_and_mapping_sigma(param):
    """Per-node levels (B, N) for a (B, N, F) state, full-shape levels, and one mapping of levels."""
    sde, sd = EDM(), 0.5
    g = torch.Generator().manual_seed(2)
    b, n = 3, 5
    sig_nodes = torch.exp(torch.randn(b, n, generator=g, dtype=F64))
    x = {
        "nodes": torch.randn(b, n, 2, generator=g, dtype=F64),
        "adj": torch.randn(b, n, n, generator=g, dtype=F64),
    }
    sig_adj = torch.exp(torch.randn(b, n, n, generator=g, dtype=F64))
    net = ExactNet(sde, param, sd)
    den = Denoiser(net, sde, param, sigma_data=sd)
    out = den(x, {"nodes": sig_nodes, "adj": sig_adj})
    torch.testing.assert_close(out["nodes"], _posterior_mean(x["nodes"], sig_nodes[..., None]))
    torch.testing.assert_close(out["adj"], _posterior_mean(x["adj"], sig_adj))
    # the net saw c_noise with the structure and shapes of sigma, as given
    assert set(net.seen[-1]) == {"nodes", "adj"}
    torch.testing.assert_close(net.seen[-1]["nodes"], sde.c_noise(sig_nodes))
    assert net.seen[-1]["adj"].shape == (b, n, n)
    # one (B, N) tensor for a plain (B, N, F) state; and the full (B, N, F) shape
    out = den(x["nodes"], sig_nodes)
    torch.testing.assert_close(out, _posterior_mean(x["nodes"], sig_nodes[..., None]))
    assert net.seen[-1].shape == (b, n)
    full = sig_nodes[..., None].expand(b, n, 2).contiguous()
    torch.testing.assert_close(den(x["nodes"], full), out)
    # a (B,) level shared by every key of a mapping state, and a python scalar
    out = den(x, sig_nodes[:, 0])
    torch.testing.assert_close(out["adj"], _posterior_mean(x["adj"], sig_nodes[:, 0, None, None]))
    out = den(x["nodes"], 0.7)
    torch.testing.assert_close(out, _posterior_mean(x["nodes"], torch.tensor(0.7, dtype=F64)))
    assert net.seen[-1].shape == (b,)


def test_bad_sigma_shapes_and_names():
    sde = EDM()
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="leading dimensions"):
        broadcast_sigma(torch.ones(2, 4), x)
    with pytest.raises(ValueError, match="mapping"):
        broadcast_sigma({"a": torch.ones(2)}, x)
    with pytest.raises(ValueError, match="available"):
        Denoiser(nn.Identity(), sde, "nope")
    with pytest.raises(ValueError, match="available"):
        coefficients(torch.ones(2), "nope", 0.5)


def test_dtypes_follow_the_state():
    sde = EDM()

    class Zero(nn.Module):
        def forward(self, x_in, c_noise):
            assert c_noise.dtype == x_in.dtype
            return torch.zeros_like(x_in)

    den = Denoiser(Zero(), sde, "edm", 0.5)
    assert den(torch.ones(2, 3), torch.ones(2)).dtype == torch.float32
    assert den(torch.ones(2, 3, dtype=F64), torch.ones(2)).dtype == F64


def test_coefficients_reduce_to_each_other():
    sigma = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    edm = coefficients(sigma, "edm", 0.5)
    v = coefficients(sigma, "v", 0.5)
    torch.testing.assert_close(v[0], edm[0])
    torch.testing.assert_close(v[1], -edm[1])
    torch.testing.assert_close(v[2], edm[2])
    eps = coefficients(sigma, "eps", 1.0)
    torch.testing.assert_close(eps[1], -sigma)
    torch.testing.assert_close(eps[2], 1 / torch.sqrt(1 + sigma**2))
