"""`--cond NAME=SPEC` through the CLI, with a toy whose condition is a float vector from a file."""

from pathlib import Path

import numpy as np
import pytest
import torch
from _cliassert import assert_one_line_error
from torch import nn
from typer.testing import CliRunner

import polydiff.registry as registry
from polydiff.cli import app
from polydiff.protocol import Modality

SEEN: list[torch.Tensor] = []


class StyleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2 + 1 + 3, 2)

    def forward(self, x, c_noise, style):
        SEEN.append(style.detach().clone())
        c = c_noise.reshape(-1, 1).expand(-1, 1)
        return self.lin(torch.cat([x, c, style], -1)) + 3 * style[:, :2]


class Styled(Modality):
    name = "styled"
    description = "2-D points conditioned on a 3-vector"
    builtin_datasets = ("pts",)
    conditions = ("style",)

    def default_config(self):
        return {"data": {"dataset": "pts"}, "model": {},
                "train": {"steps": 2, "batch_size": 4, "log_every": 1, "warmup_steps": 1},
                "sample": {"sampler": "euler", "steps": 2, "n": 3}}

    def build_dataset(self, source, config, split):
        g = torch.Generator().manual_seed(0)
        return [{"x": torch.randn(2, generator=g), "cond": {"style": torch.rand(3, generator=g)}}
                for _ in range(8)]

    def build_network(self, config):
        return StyleNet()

    def write_samples(self, samples, out_dir: Path, *, mask=None, cond=None, prefix="sample"):
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{prefix}s.pt"
        torch.save({"x": samples, "cond": cond}, path)
        return [path]


@pytest.fixture
def run(tmp_path, monkeypatch):
    reg = registry.Registry(autoload=False)
    reg.register(Styled(), distribution="styled-tests", version="0")
    monkeypatch.setattr(registry, "get_registry", lambda: reg)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-m", "styled", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _sample(run, out, *extra):
    return CliRunner().invoke(app, ["sample", str(run), "--out", str(out), "--guidance", "1", *map(str, extra)])


def test_float_vector_condition_from_a_file_reaches_the_network(run, tmp_path):
    txt, npy = tmp_path / "style.txt", tmp_path / "style.npy"
    np.savetxt(txt, [0.25, -1.0, 2.0])
    np.save(npy, np.array([[0.25, -1.0, 2.0]], dtype=np.float32))
    SEEN.clear()
    result = _sample(run, tmp_path / "a", "--cond", f"style={txt}")
    assert result.exit_code == 0, result.output
    expected = torch.tensor([0.25, -1.0, 2.0])
    assert SEEN and all(torch.allclose(s, expected.expand_as(s)) for s in SEEN)
    a = torch.load(tmp_path / "a" / "samples.pt")
    torch.testing.assert_close(a["cond"]["style"], expected.expand(3, 3))
    assert _sample(run, tmp_path / "b", "--cond", f"style={npy}").exit_code == 0
    b = torch.load(tmp_path / "b" / "samples.pt")
    torch.testing.assert_close(a["x"], b["x"])  # the same vector from either format
    assert_one_line_error(_sample(run, tmp_path / "c", "--cond", "style=1,1,1"), "one value per sample")
    assert _sample(run, tmp_path / "c", "--cond", "style=1.0,1,1").exit_code == 0
    c = torch.load(tmp_path / "c" / "samples.pt")
    assert not torch.allclose(a["x"], c["x"])  # the condition changes the samples
    assert _sample(run, tmp_path / "d", "--cond", "style=none").exit_code == 0
    assert torch.load(tmp_path / "d" / "samples.pt")["cond"]["style"].abs().sum() == 0


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("label=3", "takes style"),
        ("style", "NAME=SPEC"),
        ("style=missing.npy", "missing.npy"),
        ("style=a,b", "expected 'none'"),
    ],
)
def test_bad_conditions_are_one_line_errors(run, tmp_path, spec, needle):
    assert_one_line_error(_sample(run, tmp_path / "x", "--cond", spec), needle)
    assert not (tmp_path / "x").exists()


def test_rows_must_match_the_sample_count(run, tmp_path):
    bad = tmp_path / "rows.csv"
    np.savetxt(bad, np.ones((2, 3)), delimiter=",")
    assert_one_line_error(_sample(run, tmp_path / "x", "--n", "3", "--cond", f"style={bad}"), "2 rows for 3 samples")
    assert_one_line_error(_sample(run, tmp_path / "y", "--class", "1"), "--class")


def test_evaluate_takes_cond_too(run, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", str(run), "--n", "2", "--cond", "style=1,0,0"])
    assert_one_line_error(result, "defines no metrics")
