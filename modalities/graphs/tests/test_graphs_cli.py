"""Train, sample (with --cond nodes=N) and evaluate through the command line; the writer."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch
from polydiff_graphs import modality
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.config import resolve
from polydiff.errors import UserError

TINY = """
[model]
hidden = 16
edge_hidden = 8
layers = 1
heads = 2
powers = 2
reach = 0.5  # the optional reach channel, end to end through train, sample and evaluate
[train]
steps = 3
batch_size = 8
log_every = 1
warmup_steps = 1
device = "cpu"
[sample]
n = 4
steps = 2
"""


@pytest.fixture
def run(graphs_registry, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "-m", "graphs", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_train_sample_with_node_count_and_evaluate(run, tmp_path):
    assert (run / "samples" / "samples.png").is_file()
    assert json.loads((run / "config.json").read_text())["config"]["model"]["reach"] == 0.5
    out = tmp_path / "seven"
    result = CliRunner().invoke(app, ["sample", str(run), "--cond", "nodes=7,9", "--out", str(out), "--n", "3"])
    assert result.exit_code == 0, result.output
    sizes = [nx.read_graphml(out / f"sample-{i}.graphml").number_of_nodes() for i in range(3)]
    assert sizes == [7, 9, 7]
    result = CliRunner().invoke(app, ["evaluate", str(run), "--n", "4"])
    assert result.exit_code == 0, result.output
    assert "gdss/orbit" in result.output and "spectre/spectral" in result.output
    for spec in ("nodes=0", "nodes=seven"):  # a bad node count: one line, exit code 2
        result = CliRunner().invoke(app, ["sample", str(run), "--cond", spec, "--n", "2"])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "node counts" in result.output


def test_evaluate_refuses_non_finite_samples_and_writes_no_report(run, monkeypatch):
    """Samples of a diverged sampler (here every leaf of the mapping state made NaN) give one line
    and no report of NaN metrics."""
    import polydiff.generate
    from polydiff.state import tree_map

    real = polydiff.generate.generate

    def diverged(*args, **kwargs):
        x, layout, nfe = real(*args, **kwargs)
        return tree_map(lambda t: t * float("nan"), x), layout, nfe

    monkeypatch.setattr(polydiff.generate, "generate", diverged)
    result = CliRunner().invoke(app, ["evaluate", str(run), "--n", "4"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "non-finite" in result.stderr.strip().splitlines()[-1]
    assert not (run / "eval").exists()


def test_layout_draws_node_counts_from_the_training_set():
    cfg = resolve(modality)
    ds = modality.build_dataset("community-small", cfg, "train")
    layout = modality.sample_layout(cfg, 64, torch.Generator().manual_seed(0), dataset=ds)
    counts = layout.mask["nodes"].sum(1).long().tolist()
    assert set(counts) <= set(ds.node_counts()) and len(set(counts)) >= 5
    assert layout.cond["nodes"].tolist() == counts
    # by default in the training set's exact proportions (each size off by less than one graph)
    sizes = torch.tensor(ds.node_counts())
    for k in sizes.unique().tolist():
        want = 64 * float((sizes == k).double().mean())
        assert abs(counts.count(k) - want) < 1, (k, counts.count(k), want)
    again = modality.sample_layout(cfg, 64, torch.Generator().manual_seed(0), dataset=ds)
    assert again.mask["nodes"].sum(1).long().tolist() == counts
    # "random": independent draws, which scatter around the proportions
    rnd = {**cfg, "data": {**cfg["data"], "sample_nodes_draw": "random"}}
    drawn = modality.sample_layout(rnd, 64, torch.Generator().manual_seed(0), dataset=ds)
    drawn_counts = drawn.mask["nodes"].sum(1).long().tolist()
    assert set(drawn_counts) <= set(ds.node_counts()) and sorted(drawn_counts) != sorted(counts)
    bad = {**cfg, "data": {**cfg["data"], "sample_nodes_draw": "stratified"}}
    with pytest.raises(UserError, match="sample_nodes_draw"):
        modality.sample_layout(bad, 4, torch.Generator().manual_seed(0), dataset=ds)


def test_node_draw_is_checked_with_the_config(tmp_path):
    toml = tmp_path / "draw.toml"
    toml.write_text('[data]\nsample_nodes_draw = "stratified"\n')
    with pytest.raises(UserError, match=r'draw.toml: data.sample_nodes_draw = "stratified": expected "proportional"'):
        resolve(modality, toml)


def test_writer_round_trips_graphml(tmp_path):
    adj = torch.full((2, 4, 4), -0.7)
    adj[0, 0, 1] = adj[0, 1, 0] = adj[0, 1, 2] = adj[0, 2, 1] = 0.6
    adj[:, range(4), range(4)] = 0
    nodes = torch.ones(2, 4, 1)
    node_mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]])
    adj[1, 3] = adj[1, :, 3] = 0
    nodes[1, 3] = 0
    from polydiff.state import pair_mask

    paths = modality.write_samples({"nodes": nodes, "adjacency": adj}, tmp_path / "w",
                                   mask={"nodes": node_mask, "adjacency": pair_mask(node_mask)})
    assert paths[0].suffix == ".png" and len(paths) == 3
    g0, g1 = (nx.read_graphml(p) for p in paths[1:])
    assert g0.number_of_nodes() == 4 and g0.number_of_edges() == 2
    assert g1.number_of_nodes() == 3 and g1.number_of_edges() == 0
    json.dumps([str(p) for p in paths])


def test_presets_resolve_to_valid_configurations():
    from pathlib import Path

    import polydiff_graphs

    from polydiff.config import resolve

    presets = sorted((Path(polydiff_graphs.__file__).parent / "presets").glob("*.toml"))
    assert {p.stem for p in presets} >= {"community-small", "grid", "planar", "sbm"}
    for path in presets:
        cfg = resolve(polydiff_graphs.modality, config_file=path)
        assert cfg["data"]["dataset"] == path.stem
        if path.stem == "community-small":  # the benchmark row: the default network + reach, trained longer
            assert cfg["model"]["features"] == "raw" and cfg["train"]["lr_schedule"] == "cosine"
            assert cfg["model"]["reach"] == 0.9
            assert cfg["sample"]["sampler"] == "ddpm" and cfg["sample"]["steps"] == 400
        else:
            assert cfg["model"]["features"] == "soft" and cfg["model"]["size_embedding"] is True
