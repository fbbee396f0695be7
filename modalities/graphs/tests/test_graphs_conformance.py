"""The graphs plugin against the contract: `polydiff.testing.check_modality`, every check."""

from polydiff_graphs import modality

from polydiff.testing import CHECKS, check_modality

TINY = {"model": {"hidden": 16, "edge_hidden": 8, "layers": 1, "heads": 2, "powers": 2}}


def _malformed(folder):
    bad = folder / "broken.graphml"
    bad.write_text("<graphml><graph><node id='a'/><edge source='a'")
    return bad


def test_graphs_plugin_conforms(tmp_path):
    report = check_modality(modality, tmp_path, config=TINY, bad_file=_malformed)
    assert report.passed == list(CHECKS)


def test_node_counts_given_through_the_python_api_shape_the_mask():
    import torch

    from polydiff.config import deep_merge, resolve
    from polydiff.generate import build_denoiser, generate

    cfg = deep_merge(resolve(modality), TINY)
    den = build_denoiser(modality, cfg).eval()
    x, layout, _ = generate(modality, cfg, den, n=3, sampler="euler", steps=2,
                            cond={"nodes": torch.tensor([5, 7, 5])})
    assert layout.mask["nodes"].sum(1).tolist() == [5, 7, 5]
    assert float(x["adjacency"][0, 5:].abs().sum()) == 0
