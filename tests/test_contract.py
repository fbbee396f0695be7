"""Contract 2: declared members checked at load, versions, contract-1 plugins, checked masks."""

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from _cliassert import assert_one_line_error
from _distfactory import make_dist
from typer.testing import CliRunner

import polydiff.registry as registry
from polydiff import hooks
from polydiff.cli import app
from polydiff.losses import DSMLoss
from polydiff.protocol import CONTRACT_VERSION, METHODS, Batch, Modality, format_signature
from polydiff.registry import BrokenPlugin, Registry
from polydiff.sampling import run_sampler
from polydiff.sde import EDM
from polydiff.state import MaskError, check_mask

# A plugin exactly as contract 1 allowed it: duck-typed (no polydiff import at all), version 1,
# shape_noise, a sample_layout without dataset=, metrics with the minimal signature.
CONTRACT_1_PLUGIN = '''
class Legacy:
    name = "legacy"
    description = "a contract-1 plugin, never edited"
    protocol_version = 1
    builtin_datasets = ("blobs",)

    def default_config(self):
        return {"data": {"dataset": "blobs"}, "model": {"width": 8},
                "train": {"steps": 2, "batch_size": 4, "log_every": 1, "warmup_steps": 1},
                "sample": {"sampler": "euler", "steps": 2, "n": 3}}

    def build_dataset(self, source, config, split):
        import torch
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return [{"x": torch.randn(4, 2, generator=g)} for _ in range(16)]

    def collate(self, items):
        import torch
        from polydiff.protocol import Batch
        return Batch(torch.stack([it["x"] for it in items]))

    def build_network(self, config):
        import torch
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(3, 2)
            def forward(self, x, c_noise):
                return self.lin(torch.cat([x, c_noise.reshape(-1, 1, 1).expand(*x.shape[:2], 1)], -1))
        return Net()

    def shape_noise(self, noise, mask):
        return noise - noise.mean(1, keepdim=True)

    def sample_layout(self, config, n, generator):
        import torch
        from polydiff.protocol import Batch
        return Batch(torch.zeros(n, 4, 2))

    def write_samples(self, samples, out_dir, *, mask=None, cond=None, prefix="sample"):
        import torch
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / (prefix + "s.pt")
        torch.save(samples, path)
        return [path]

    def metrics(self):
        return {"centre": lambda samples, config: {"mean_abs_centre": float(samples.mean(1).abs().mean())}}

modality = Legacy()
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install a plugin module as a real distribution; returns a function (name, source)."""
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    modules = []

    def install(name: str, source: str, dist: str | None = None) -> str:
        module = f"ct_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        modules.append(module)
        make_dist(site, dist or f"{name}-dist", "1.0", {name: f"{module}:modality"},
                  {f"{module}.py": textwrap.dedent(source)})
        registry.reset_registry()
        return module

    yield install
    registry.reset_registry()
    for m in modules:
        sys.modules.pop(m, None)


def test_contract_1_plugin_lists_ok_trains_samples_and_evaluates(installed, tmp_path):
    installed("legacy", CONTRACT_1_PLUGIN)
    runner = CliRunner()
    with pytest.warns(DeprecationWarning, match="shape_noise"):
        listing = runner.invoke(app, ["modalities"])
    line = next(ln for ln in listing.output.splitlines() if ln.strip().startswith("legacy"))
    assert " ok " in f" {line} " and "shape_noise" in line

    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "-m", "legacy", "--out", str(run)])
    assert result.exit_code == 0, result.output
    samples = torch.load(run / "samples" / "samples.pt")
    assert samples.shape == (3, 4, 2)
    assert float(samples.mean(1).abs().max()) < 1e-5  # shape_noise still shapes the noise, and the output
    result = runner.invoke(app, ["sample", str(run), "--n", "2", "--sampler", "heun", "--steps", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run), "--n", "4", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "mean_abs_centre" in result.output


def test_member_signature_mismatch_is_listed_broken_naming_the_member(installed):
    source = CONTRACT_1_PLUGIN.replace("def sample_layout(self, config, n, generator):",
                                       "def sample_layout(self, config, n):")
    installed("legacy", source)
    info = next(i for i in Registry(autoload=True).infos() if i.name == "legacy")
    assert info.status == "broken"
    assert "sample_layout" in info.reason and "positional" in info.reason and "\n" not in info.reason


@pytest.mark.parametrize(
    ("member", "signature"),
    [
        ("write_samples", "def write_samples(self, samples, out_dir, *, mask=None, colour='red'):"),
        ("read_condition", "def read_condition(self, name, spec, config, n, extra):"),
        ("metrics", "def metrics(self, samples):"),
    ],
)
def test_unknown_or_required_extra_parameters_are_refused(member, signature):
    ns: dict = {}
    exec(textwrap.dedent(f"""
        from polydiff.protocol import Modality
        class M(Modality):
            name = "m"
            description = "d"
            def default_config(self): return {{}}
            def build_dataset(self, source, config, split): return []
            def build_network(self, config): return None
            def write_samples(self, samples, out_dir, *, mask=None, cond=None, prefix="sample"): return []
            {signature}
                return None
    """), ns)
    with pytest.raises(BrokenPlugin, match=member):
        Registry(autoload=False).register(ns["M"]())


def test_newer_minor_loads_with_a_warning_and_other_major_is_broken(installed):
    newer = CONTRACT_1_PLUGIN.replace("protocol_version = 1", "protocol_version = '2.7'").replace(
        "def shape_noise(self, noise, mask):", "def _unused(self, noise, mask):")
    installed("legacy", newer)
    with pytest.warns(UserWarning, match="upgrade polydiff"):
        info = next(i for i in Registry(autoload=True).infos() if i.name == "legacy")
    assert info.status == "ok" and "2.7" in info.warning
    installed("future", newer.replace("'2.7'", "'3.0'").replace('name = "legacy"', 'name = "future"'))
    info = next(i for i in Registry(autoload=True).infos() if i.name == "future")
    assert info.status == "broken" and "upgrade polydiff" in info.reason and CONTRACT_VERSION in info.reason


def test_every_declared_member_has_a_default_and_a_signature():
    for member in METHODS:
        assert callable(getattr(Modality, member))
        assert format_signature(member).startswith(member + "(")


def test_duck_typed_plugin_gets_the_declared_defaults():
    class Duck:
        name = "duck"

    duck = Duck()
    assert hooks.call(duck, "metrics") == {}
    assert float(hooks.call(duck, "null_condition", "label", torch.tensor([3]))[0]) == -1
    cond = hooks.call(duck, "read_condition", "style", "0.5,1.5", {}, 3)
    assert cond.shape == (3, 2) and float(cond[2, 1]) == 1.5


# ----------------------------------------------------------------------------------- masks


@pytest.mark.parametrize(
    ("state", "mask", "needle"),
    [
        (torch.zeros(2, 1, 8), torch.ones(2, 8), "dimension 1 is 8 in the mask and 1 in the state"),
        (torch.zeros(2, 5, 3), torch.ones(3, 5), "dimension 0 is 3 in the mask and 2"),
        (torch.zeros(2, 5), torch.ones(2, 5, 1, 1), "rank"),
        ({"a": torch.zeros(2, 3), "b": torch.zeros(2, 4)}, {"a": torch.ones(2, 3)}, "no entry for state key 'b'"),
        ({"a": torch.zeros(2, 3)}, {"a": None, "z": torch.ones(2)}, "mask key 'z'"),
        ({"a": torch.zeros(2, 3)}, torch.ones(2, 3), "the state is a mapping"),
        ({"nodes": torch.zeros(2, 4, 1), "adj": torch.zeros(2, 4, 4)}, {"nodes": torch.ones(2, 4), "adj": torch.ones(2, 5, 5)}, "[adj]"),
    ],
)
def test_mask_mismatches_name_the_key_and_both_shapes(state, mask, needle):
    with pytest.raises(MaskError) as info:
        check_mask(state, mask, "here")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_channel_first_masks_broadcast_with_a_singleton():
    check_mask(torch.zeros(2, 3, 8), torch.ones(2, 1, 8))
    check_mask({"a": torch.zeros(2, 3), "b": torch.zeros(2, 4, 2)}, {"a": None, "b": torch.ones(2, 4)})


def test_loss_and_sampler_refuse_a_mismatched_mask():
    x = torch.zeros(2, 1, 8)
    with pytest.raises(MaskError, match="loss"):
        DSMLoss(EDM())(lambda x, s: x, x, mask=torch.ones(2, 8))
    with pytest.raises(MaskError, match="sampler|mask"):
        run_sampler(lambda x, s: x, EDM(), noise=x, steps=2, mask=torch.ones(2, 8))


def test_collate_with_a_bad_mask_names_the_modality():
    class Bad(Modality):
        name = "badmask"

        def collate(self, items):
            return Batch(torch.zeros(len(items), 4, 4), torch.ones(len(items), 3))

    with pytest.raises(MaskError, match="badmask.collate"):
        hooks.collate(Bad(), [{"x": 0}] * 2)


def test_cli_lists_a_plugin_with_a_bad_signature_as_broken(installed):
    installed("legacy", CONTRACT_1_PLUGIN.replace("def metrics(self):", "def metrics(self, samples):"))
    result = CliRunner().invoke(app, ["modalities"])
    assert result.exit_code == 0
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("legacy"))
    assert "broken" in line and "metrics" in line
    assert_one_line_error(CliRunner().invoke(app, ["train", "-m", "legacy"]), "metrics")


def test_docs_declare_every_member():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for member in METHODS:
        assert f"`{format_signature(member)}`" in docs, member
