"""Metric math against values worked out by hand, the modality contract, and `polydiff evaluate`
on the toy modality."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _cliassert import assert_one_line_error
from toy_modality import ToyModality
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.config import resolve
from polydiff.errors import UserError
from polydiff.metrics import (
    class_coverage_tv,
    confident_fraction,
    evaluate_samples,
    frechet_distance,
    kernel_distance,
    precision_recall,
)
from polydiff.train import train

# ----------------------------------------------------------------------------- Fréchet distance


def test_frechet_1d_is_mean_gap_plus_std_gap():
    # a: mean 1, unbiased variance 2; b: mean 7, unbiased variance 4
    a = torch.tensor([0.0, 2.0])
    b = torch.tensor([5.0, 7.0, 9.0])
    expected = (7 - 1) ** 2 + (math.sqrt(2) - 2) ** 2  # = 42 - 4 sqrt(2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-12)


def test_frechet_2d_scaled_and_shifted():
    # a: mean 0, covariance diag(2/3, 8/3); b = 2 a + (3, 4): covariance 4 Σa.
    # FD = |(3, 4)|^2 + Tr(Σ + 4Σ - 2 (4 Σ^2)^(1/2)) = 25 + Tr(Σ) = 25 + 10/3
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    b = 2 * a + torch.tensor([3.0, 4.0])
    assert frechet_distance(a, b) == pytest.approx(25 + 10 / 3, rel=1e-12)


def test_frechet_non_commuting_covariances():
    # a = (±2, 0): mean 0, Σa = diag(8, 0) (unbiased); b = (0, ±2): Σb = diag(0, 8).
    # Σa^1/2 Σb Σa^1/2 = 0, so FD = |Δμ|^2 + Tr Σa + Tr Σb = 0 + 8 + 8.
    a = torch.tensor([[2.0, 0.0], [-2.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, -2.0]])
    assert frechet_distance(a, b) == pytest.approx(16.0, abs=1e-9)
    # a rotated copy: Gaussians with equal spectra but rotated axes, against an independent solver
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.2], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    y = x @ q.T + 0.5
    scipy_linalg = pytest.importorskip("scipy.linalg")
    ca, cb = torch.cov(x.T).numpy(), torch.cov(y.T).numpy()
    cross = scipy_linalg.sqrtm(ca @ cb).real
    gap = float((x.mean(0) - y.mean(0)).square().sum())
    expected = gap + ca.trace() + cb.trace() - 2 * cross.trace()
    assert frechet_distance(x, y) == pytest.approx(float(expected), rel=1e-8)


def test_frechet_identical_zero_and_rank_deficient_finite():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(50, 8, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # more dimensions than samples: singular covariances, still a finite non-negative number
    wide_a, wide_b = torch.randn(5, 40, generator=g), torch.randn(6, 40, generator=g)
    value = frechet_distance(wide_a, wide_b)
    assert math.isfinite(value) and value >= 0
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_distance(a, a[:, :3])


# ------------------------------------------------------------------------ precision / recall


def test_precision_recall_1d_by_hand():
    # real radii (k=1): 1 everywhere. Fake 0.5 and 3.9 (0.9 from 3) lie inside, 10 and 11 outside.
    # Fake radii (k=1): 3.4, 3.4, 1, 1: every real point is within 3.4 of 0.5 or 3.9.
    real = torch.tensor([0.0, 1.0, 2.0, 3.0])
    fake = torch.tensor([0.5, 3.9, 10.0, 11.0])
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
    # k=2: real radii 2, 1, 1, 2 -> still only 0.5 and 3.9 inside; fake radii 9.5, 6.1, 6.1, 7.1
    assert precision_recall(real, fake, k=2) == (0.5, 1.0)


def test_precision_recall_missing_mode_lowers_recall():
    # real has two modes; fake covers only the first. Fake radii (k=1) are 1: 10..13 are 6.9+ away.
    real = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0])
    fake = torch.tensor([0.1, 1.1, 2.1, 3.1])
    assert precision_recall(real, fake, k=1) == (1.0, 0.5)
    # swapping the roles swaps the numbers
    assert precision_recall(fake, real, k=1) == (0.5, 1.0)


def test_precision_recall_2d_boundary_is_inside():
    # unit-square corners, k=1 radii 1. (2, 0) is exactly 1 from (1, 0): inside (<=).
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    fake = torch.tensor([[2.0, 0.0], [0.5, 0.5], [3.0, 3.0], [-1.5, 0.0]])
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == 0.5 and recall == 1.0
    with pytest.raises(ValueError, match="k = 4"):
        precision_recall(real, fake, k=4)


# ------------------------------------------------------------------------ classes and confidence


def test_class_coverage_tv_by_hand():
    pred = torch.tensor([0, 0, 1, 1])  # histogram (1/2, 1/2, 0)
    ref = torch.tensor([0.5, 0.25, 0.25])
    assert class_coverage_tv(pred, ref, 3) == pytest.approx(0.25)  # (0 + 1/4 + 1/4) / 2
    assert class_coverage_tv(pred, torch.tensor([2.0, 1.0, 1.0]), 3) == pytest.approx(0.25)  # counts
    assert class_coverage_tv(pred, torch.tensor([0, 1, 2, 0]), 3) == pytest.approx(0.25)  # labels
    assert class_coverage_tv(pred, pred, 3) == 0.0
    assert class_coverage_tv(torch.tensor([0, 0]), torch.tensor([1, 2]), 3) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        class_coverage_tv(torch.tensor([3]), ref, 3)
    with pytest.raises(ValueError, match="3 entries"):
        class_coverage_tv(pred, torch.tensor([0.5, 0.5]), 3)


def test_confident_fraction_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    assert confident_fraction(probs) == 0.5  # 0.95 and 0.9 (>=)
    assert confident_fraction(probs, threshold=0.8) == 0.75


# ------------------------------------------------------------------------ kernel distance


def test_kernel_distance_by_hand():
    # d = 1, k(x, y) = (x y + 1)^3. a = (0, 1): k(0, 1) = 1. b = (1, 2): k(1, 2) = 27.
    # cross: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37.  MMD² = 1 + 27 - 2 * 37/4
    assert kernel_distance(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])) == pytest.approx(9.5)
    # d = 2 (the kernel divides x.y by d): within a: (0 + 1)^3 = 1; within b: (-2/2 + 1)^3 = 0;
    # cross: 1.5^3, 0.5^3, 1.5^3, 0.5^3 -> mean 1.75.  MMD² = 1 + 0 - 3.5 (unbiased: can be < 0)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    assert kernel_distance(a, b) == pytest.approx(-2.5)


def test_kernel_distance_same_distribution_near_zero():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(600, 4, generator=g), torch.randn(600, 4, generator=g)
    shifted = torch.randn(600, 4, generator=g) + 1.0
    same, different = kernel_distance(a, b), kernel_distance(a, shifted)
    assert abs(same) < 0.05 < different
    # subsets: deterministic for a seed, the full estimate when the subset is everything
    assert kernel_distance(a, b, subset_size=100, seed=3) == kernel_distance(a, b, subset_size=100, seed=3)
    assert abs(kernel_distance(a, b, subset_size=100, num_subsets=20)) < 0.1
    assert kernel_distance(a, b, subset_size=600) == same


# ------------------------------------------------------------------------ the modality contract


class Scored(ToyModality):
    """The toy with metrics: every calling convention of the contract at once."""

    def metrics(self):
        def plain(samples, config):
            return {"mean_val": samples["val"].mean(), "kind": "plain"}

        def with_mask(samples, config, mask=None):
            m = mask["val"]
            return {
                "masked_mean": float((samples["val"] * m).sum() / m.sum()),
                "reference/masked_mean": 0.0,
                "n": int(m.shape[0]),
            }

        def with_kwargs(samples, config, **context):
            return {"got": ",".join(sorted(context))}

        return {"plain": plain, "masked": with_mask, "context": with_kwargs}


def test_evaluate_samples_contract():
    toy = Scored()
    x = {"pos": torch.zeros(3, 6, 2), "val": torch.ones(3, 6)}
    mask = {"pos": torch.ones(3, 6), "val": torch.ones(3, 6)}
    out = evaluate_samples(toy, x, {}, mask=mask, cond={})
    assert out["plain"] == {"mean_val": 1.0, "kind": "plain"}
    assert out["masked"] == {"masked_mean": 1.0, "reference/masked_mean": 0.0, "n": 3}
    assert out["context"] == {"got": "cond,mask"}
    with pytest.raises(UserError, match="defines no metrics"):
        evaluate_samples(ToyModality(), x, {})


@pytest.fixture
def scored_registry(monkeypatch):
    import polydiff.registry as registry

    reg = registry.Registry(autoload=False)
    reg.register(Scored(), distribution="toy-tests", version="0")
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    return reg


def _trained(toy, run):
    quiet = {"checkpoint_every": 0, "plot_every": 0, "snapshot_every": 0, "log_every": 1, "threads": 1}
    train(toy, resolve(toy, overrides={"train": {**quiet, "steps": 2}}), run, sample_at_end=False)
    return run


def test_cli_evaluate_writes_table_and_json(scored_registry, tmp_path):
    run = _trained(scored_registry.load("toy"), tmp_path / "run")
    result = CliRunner().invoke(app, ["evaluate", str(run), "--n", "6", "--steps", "2", "--seed", "4"])
    assert result.exit_code == 0, result.output
    for text in ("mean_val", "masked_mean", "real data", "euler-2.json"):
        assert text in result.stdout
    report = json.loads((run / "eval" / "euler-2.json").read_text())
    assert report["n"] == 6 and report["sampler"] == "euler" and report["steps"] == 2
    assert report["seed"] == 4 and report["step"] == 2 and report["weights"] == "ema"
    assert report["metrics"]["masked"]["n"] == 6
    assert report["metrics"]["plain"]["kind"] == "plain"
    assert report["metrics"]["context"]["got"] == "cond,mask"
    # same seed, same numbers
    again = CliRunner().invoke(app, ["evaluate", str(run), "--n", "6", "--steps", "2", "--seed", "4"])
    assert again.exit_code == 0
    assert json.loads((run / "eval" / "euler-2.json").read_text())["metrics"] == report["metrics"]




def test_cli_evaluate_errors(toy_registry, tmp_path):
    runner = CliRunner()
    assert_one_line_error(runner.invoke(app, ["evaluate", str(tmp_path)]), "not a run folder")
    run = _trained(toy_registry.load("toy"), tmp_path / "run")
    # the plain toy defines no metrics
    assert_one_line_error(runner.invoke(app, ["evaluate", str(run), "--n", "4"]), "toy", "no metrics")
    assert not (run / "eval").exists()


def test_cli_evaluate_unknown_sampler(scored_registry, tmp_path):
    run = _trained(scored_registry.load("toy"), tmp_path / "run")
    assert_one_line_error(CliRunner().invoke(app, ["evaluate", str(run), "--sampler", "nope"]), "nope")
