"""Tuned noise grids: the search against a closed form, tuned vs default grids on an exact denoiser,
and `polydiff schedule` / `sample --schedule tuned` through the CLI."""

import json
import math

import pytest
import torch
from _cliassert import assert_one_line_error
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.sampling.analytic import GaussianMixture
from polydiff.sde import EDM
from polydiff.tuning import steps_for_nfe, tune_denoiser, tune_sigmas, tuned_sigmas

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_search_finds_a_known_optimum():
    sde = EDM()
    target = torch.tensor([80.0, 20.0, 3.0, 0.7, 0.05, 0.0], dtype=torch.float64)
    init = torch.tensor([80.0, 40.0, 10.0, 1.0, 0.002, 0.0], dtype=torch.float64)

    def objective(sig):
        return float(((sig[:-1].log() - target[:-1].log()) ** 2).sum())

    best, value, evals = tune_sigmas(objective, init, sde, max_evals=2000, min_step=1e-6)
    assert evals <= 2000 and value < 1e-4
    assert torch.allclose(best[:-1].log(), target[:-1].log(), atol=1e-2)


def test_search_keeps_the_grid_valid_and_never_worsens():
    sde = EDM()
    init = torch.tensor([80.0, 5.0, 0.5, 0.0], dtype=torch.float64)
    # an objective that pushes every level below sigma_min: the grid must stay inside the range
    best, value, _ = tune_sigmas(lambda s: float(s[1:-1].sum()), init, sde, max_evals=200)
    assert value <= float(init[1:-1].sum())
    assert best[0] == 80.0 and best[-1] == 0.0
    assert bool((best[:-2] > best[1:-1]).all()) and float(best[-2]) >= sde.sigma_min * (1 - 1e-9)


def test_steps_for_nfe_counts_each_samplers_calls():
    sde = EDM()
    assert steps_for_nfe("euler", 7, sde) == 7
    assert steps_for_nfe("heun", 9, sde) == 5  # 2 steps - 1 calls
    assert steps_for_nfe("unipc", 10, sde) == 10


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler"])
def test_tuned_grid_beats_the_default_on_an_exact_denoiser(sampler):
    g = torch.Generator().manual_seed(0)
    means = 3.0 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    gm = GaussianMixture(torch.tensor([0.6, 0.3, 0.1]), means, torch.tensor([0.05, 0.2, 0.1]))

    def noise(seed):
        return torch.randn(128, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))

    res = tune_denoiser(gm, EDM(), noise, sampler=sampler, steps=5, max_evals=80, reference_steps=60)
    assert res.nfe == 5 and len(res.sigmas) == 6
    # calibration and held-out noise both closer to the fine ODE solution than the default grid
    assert res.error < 0.7 * res.default_error
    assert res.holdout_error < 0.8 * res.default_holdout_error


def test_stochastic_sampler_is_refused():
    gm = GaussianMixture(torch.ones(1), torch.zeros(1, 2), 1.0)
    with pytest.raises(Exception, match="stochastic"):
        tune_denoiser(gm, EDM(), lambda s: torch.randn(4, 2), sampler="ddpm", steps=3)


def test_schedule_command_and_sample_with_the_tuned_grid(toy_registry, tmp_path):
    run = tmp_path / "run"
    assert _run("train", "-m", "toy", "--out", run, "--steps", 3, "--seed", 1).exit_code == 0
    result = _run("schedule", run, "--sampler", "euler", "--nfe", 3, "--n", 6, "--max-evals", 6,
                  "--reference-steps", 8)
    assert result.exit_code == 0, result.output
    entry = json.loads((run / "schedules.json").read_text())["schedules"]["euler/3"]
    assert entry["error"] <= entry["default_error"] and entry["checkpoint"].startswith("step-")
    sig = tuned_sigmas(run, "euler", 3)
    assert len(sig) == 4 and sig[-1] == 0 and math.isclose(float(sig[0]), 80.0)

    result = _run("sample", run, "--n", 3, "--sampler", "euler", "--steps", 3, "--schedule", "tuned",
                  "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert "3 network evaluations" in result.output
    # no grid for that step count: one line naming what exists and how to make it
    assert_one_line_error(
        _run("sample", run, "--sampler", "euler", "--steps", 5, "--schedule", "tuned"),
        "euler/3", "polydiff schedule",
    )
    assert_one_line_error(_run("schedule", run, "--sampler", "ddpm", "--nfe", 3), "stochastic")


def test_damaged_schedules_file_is_one_line(toy_registry, tmp_path):
    run = tmp_path / "run"
    assert _run("train", "-m", "toy", "--out", run, "--steps", 2).exit_code == 0
    (run / "schedules.json").write_text("{not json")
    assert_one_line_error(
        _run("sample", run, "--sampler", "euler", "--steps", 2, "--schedule", "tuned"),
        "schedules.json",
    )
