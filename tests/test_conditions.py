"""Null conditions and condition dropout (classifier-free guidance training)."""

import torch

from polydiff.conditions import drop_conditions, null_conditions


def test_null_values_by_dtype():
    cond = {"label": torch.tensor([3, 1]), "emb": torch.ones(2, 4), "name": "keep"}
    null = null_conditions(cond)
    assert null["label"].tolist() == [-1, -1]
    assert torch.equal(null["emb"], torch.zeros(2, 4))
    assert null["name"] == "keep"


def test_modality_hook_overrides_null():
    class M:
        def null_condition(self, name, value):
            return torch.full_like(value, 10)

    assert null_conditions({"label": torch.tensor([1, 2])}, M())["label"].tolist() == [10, 10]


def test_dropout_rate_and_joint_drop():
    n = 20000
    cond = {"label": torch.arange(n) % 7, "emb": torch.ones(n, 3)}
    gen = torch.Generator().manual_seed(0)
    out = drop_conditions(cond, 0.25, generator=gen)
    dropped = out["label"] < 0
    # one draw per item drops all its conditions together
    assert torch.equal(dropped, (out["emb"] == 0).all(1))
    assert abs(dropped.float().mean().item() - 0.25) < 0.015
    kept = ~dropped
    assert torch.equal(out["label"][kept], cond["label"][kept])


def test_dropout_reproducible_from_global_rng_and_zero_rate_is_identity():
    cond = {"label": torch.arange(64)}
    torch.manual_seed(5)
    a = drop_conditions(cond, 0.5)["label"]
    torch.manual_seed(5)
    b = drop_conditions(cond, 0.5)["label"]
    assert torch.equal(a, b) and (a < 0).any() and (a >= 0).any()
    assert drop_conditions(cond, 0.0)["label"] is cond["label"]
