"""Drawing samples from a trained model of any modality (shared by training and `polydiff sample`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from polydiff.conditions import null_conditions
from polydiff.config import data_source
from polydiff.guidance import cfg_denoiser
from polydiff.param import Denoiser
from polydiff.protocol import Batch
from polydiff.sampling import get_sampler, run_sampler
from polydiff.sde import SDE, build_sde
from polydiff.state import State, randn_like_state, tree_map


def build_denoiser(modality: Any, config: Mapping[str, Any]) -> Denoiser:
    net = modality.build_network(config)
    p = config["param"]
    return Denoiser(net, build_sde(config["sde"]), p["parameterisation"], p["sigma_data"])


def sample_layout(
    modality: Any, config: Mapping[str, Any], n: int, seed: int, dataset: Any = None
) -> Batch:
    """Shapes, masks and conditions of ``n`` samples.

    A modality may define ``sample_layout(config, n, generator)`` (given ``dataset=`` too when
    its signature takes it and the caller holds the training data); otherwise ``n`` items drawn
    from its training data (``dataset`` when the caller already holds it) give the shapes (and,
    for ragged data, the size distribution).
    """
    gen = torch.Generator().manual_seed(seed)
    custom = getattr(modality, "sample_layout", None)
    if callable(custom):
        if dataset is not None and "dataset" in inspect.signature(custom).parameters:
            return custom(config, n, gen, dataset=dataset)
        return custom(config, n, gen)
    if dataset is None:
        data = config["data"]
        dataset = modality.build_dataset(data_source(data), config, "train")
    idx = torch.randint(len(dataset), (n,), generator=gen).tolist()
    batch = modality.collate([dataset[i] for i in idx])
    return Batch(tree_map(torch.zeros_like, batch.x), batch.mask, batch.cond)


def filter_cond(modality: Any, cond: Mapping[str, Any]) -> dict[str, Any]:
    accepted = set(getattr(modality, "conditions", ()) or ())
    return {k: v for k, v in cond.items() if k in accepted}


def generate(
    modality: Any,
    config: Mapping[str, Any],
    denoiser: nn.Module | Callable[..., State],
    *,
    n: int,
    sampler: str,
    steps: int,
    schedule: str = "default",
    seed: int = 0,
    device: torch.device | str = "cpu",
    sde: SDE | None = None,
    callback: Callable | None = None,
    cond: Mapping[str, Any] | None = None,
    dataset: Any = None,
    guidance: float | None = None,
    **options: Any,
) -> tuple[State, Batch, int]:
    """Sample ``n`` items; returns (samples, the layout batch, number of denoiser calls).

    ``cond`` replaces the conditions of the layout (by default those of ``n`` training items, so
    a conditional model samples the data's class balance); the returned layout carries the
    conditions used. ``guidance`` is the classifier-free guidance scale (default
    ``config["sample"]["guidance"]``; 1 = the plain conditional model), contrasting each condition
    with its null value (:mod:`polydiff.conditions`). Other ``options`` go to
    :func:`polydiff.sampling.run_sampler` (e.g. ``known=(values, known_mask)`` to impute).
    """
    get_sampler(sampler)  # fail before any work on an unknown name
    layout = sample_layout(modality, config, n, seed, dataset).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = modality.shape_noise(randn_like_state(layout.x, generator=gen), layout.mask)
    sde = sde or build_sde(config["sde"])
    use_cond = filter_cond(modality, layout.cond) if cond is None else dict(cond)
    use_cond = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in use_cond.items()}
    layout = Batch(layout.x, layout.mask, use_cond)
    if guidance is None:
        guidance = float((config.get("sample") or {}).get("guidance", 1.0))
    if guidance != 1.0 and use_cond:
        denoiser = cfg_denoiser(denoiser, guidance, null_conditions(use_cond, modality))
    with torch.no_grad():
        result = run_sampler(
            denoiser,
            sde,
            noise=noise,
            sampler=sampler,
            steps=steps,
            schedule=None if schedule in ("default", "", None) else schedule,
            mask=layout.mask,
            cond=use_cond,
            noise_fn=modality.shape_noise,
            generator=gen,
            callback=callback,
            **options,
        )
    return result.x, layout, result.nfe
