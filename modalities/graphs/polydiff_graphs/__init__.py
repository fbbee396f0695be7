"""polydiff-graphs: the graphs modality for polydiff.

The entry point ``polydiff_graphs:modality`` is a :class:`GraphsModality`. Importing this package
stays light (no torch, networkx or scipy): the heavy modules load inside the methods.

The state is ``{"nodes": (B, N, F), "adjacency": (B, N, N)}`` with the mask
``{"nodes": (B, N), "adjacency": pair_mask(node_mask)}``; the adjacency lives in the core's
``SymmetricHollow`` noise space (``polydiff_graphs.defaults.ADJ_SCALE`` for its scaling).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from polydiff.config_schema import Setting
from polydiff.protocol import Modality
from polydiff_graphs.defaults import BUILTINS, DEFAULT_CONFIG

__version__ = "0.1.0"
__all__ = ["DEFAULT_CONFIG", "GraphsModality", "modality"]


class GraphsModality(Modality):
    """Undirected graphs: node features and a dense adjacency, padded with a node mask."""

    name: ClassVar[str] = "graphs"
    protocol_version: ClassVar[str] = "2.0"
    description: ClassVar[str] = (
        "Undirected graphs (node features + symmetric adjacency): built-in community-small, grid, "
        "planar, sbm; GraphML/GML/edge-list files; a dense graph-attention network; GraphML + PNG"
    )
    builtin_datasets: ClassVar[tuple[str, ...]] = BUILTINS
    # the node count of each graph: it shapes the layout's mask (see read_condition); the network
    # takes its node mask (padding is at the end) and, optionally, a size embedding from it
    conditions: ClassVar[tuple[str, ...]] = ("nodes",)
    config_schema: ClassVar[dict[str, dict[str, Setting]]] = {
        "data": {
            "sample_nodes_draw": Setting("str", "how samples take the training set's node counts",
                                         choices=("proportional", "random")),
        },
        "model": {
            "reach": Setting("float", "damping of the personalised-PageRank channel (0: off)",
                             minimum=0.0, maximum=1.0, exclusive_maximum=True),
        },
    }

    def default_config(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(DEFAULT_CONFIG)

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str):
        from polydiff_graphs.datasets import build_dataset

        return build_dataset(source, config, split)

    def build_network(self, config: Mapping[str, Any]):
        from polydiff_graphs.network import build_network

        return build_network(config)

    def collate(self, items: Any):
        from polydiff_graphs.graphs import collate

        return collate(items)

    def noise_space(self, config: Mapping[str, Any]):
        from polydiff.noise_space import PerKey, SymmetricHollow

        return PerKey({"adjacency": SymmetricHollow()})

    def sample_layout(
        self, config: Mapping[str, Any], n: int, generator: Any, *, dataset: Any = None,
        cond: Mapping[str, Any] | None = None,
    ):
        """Graphs with the node counts given as the ``nodes`` condition (``--cond nodes=N``), else
        those of ``data.sample_nodes`` when set, else the training set's: allotted in its exact
        proportions (``data.sample_nodes_draw = "proportional"``) or drawn at random ("random")."""
        import torch

        from polydiff.config import data_source
        from polydiff.config_schema import check_value
        from polydiff.errors import UserError
        from polydiff.proportional import proportional_draw
        from polydiff_graphs.graphs import layout, node_counts_from_spec

        data = config.get("data") or {}
        spec = str(data.get("sample_nodes") or "")
        if cond and cond.get("nodes") is not None:
            counts = [int(c) for c in cond["nodes"].reshape(-1).tolist()]
        elif spec:
            counts = node_counts_from_spec(spec, n, "data.sample_nodes")
        else:
            ds = dataset if dataset is not None else self.build_dataset(data_source(data), config, "train")
            sizes = ds.node_counts() if hasattr(ds, "node_counts") else [ds[i]["x"]["nodes"].shape[0] for i in range(len(ds))]
            # a run recorded before the key existed gets today's default; an in-memory config
            # that skipped `resolve` is checked against the same declaration
            how = data.get("sample_nodes_draw") or DEFAULT_CONFIG["data"]["sample_nodes_draw"]
            why = check_value(self.config_schema["data"]["sample_nodes_draw"], how)
            if why:
                raise UserError(f"data.sample_nodes_draw = {how!r}: {why}")
            if how == "proportional":
                counts = proportional_draw(sizes, n, generator).tolist()
            else:
                idx = torch.randint(len(sizes), (n,), generator=generator).tolist()
                counts = [sizes[i] for i in idx]
        return layout(counts, 1 + len(list(data.get("node_attributes") or [])))

    def null_condition(self, name: str, value: Any):
        # the node count is structure, not a condition to withhold: it stays what it is
        return value

    def read_condition(self, name: str, spec: str, config: Any, n: int):
        """``--cond nodes=N`` or ``nodes=N1,N2,...`` (used in turn): the samples' node counts,
        which :meth:`sample_layout` receives as ``cond`` and turns into the mask."""
        import torch

        from polydiff.protocol import DataError
        from polydiff_graphs.graphs import node_counts_from_spec

        if name != "nodes":
            raise DataError(f"--cond {name}: the graphs modality takes only nodes=N")
        try:
            counts = node_counts_from_spec(spec, n, f"--cond {name}")
        except ValueError as exc:
            raise DataError(str(exc)) from None
        return torch.tensor(counts, dtype=torch.long)

    def write_samples(self, samples: Any, out_dir: Path, *, mask: Any = None,
                      cond: Mapping[str, Any] | None = None, prefix: str = "sample") -> list[Path]:
        from polydiff_graphs.writer import write_samples

        return write_samples(samples, out_dir, mask=mask, cond=cond, prefix=prefix)

    def metrics(self) -> Mapping[str, Any]:
        from polydiff_graphs.evaluation import metrics_for_modality

        return metrics_for_modality(self)


modality = GraphsModality()
