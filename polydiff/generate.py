"""Drawing samples from a trained model of any modality (shared by training and `polydiff sample`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from polydiff import hooks
from polydiff.conditions import null_conditions
from polydiff.guidance import cfg_denoiser
from polydiff.param import Denoiser
from polydiff.protocol import Batch, implemented
from polydiff.sampling import get_sampler, run_sampler
from polydiff.sde import SDE, build_sde
from polydiff.state import State, check_mask, randn_like_state


def build_denoiser(modality: Any, config: Mapping[str, Any]) -> Denoiser:
    net = modality.build_network(config)
    p = config["param"]
    return Denoiser(net, build_sde(config["sde"]), p["parameterisation"], p["sigma_data"])


def sample_layout(
    modality: Any,
    config: Mapping[str, Any],
    n: int,
    seed: int,
    dataset: Any = None,
    cond: Mapping[str, Any] | None = None,
) -> Batch:
    """Shapes, masks and conditions of ``n`` samples: the modality's ``sample_layout`` (by default
    ``n`` training items; ``dataset`` when the caller already holds the training set), its mask
    checked against its state."""
    gen = torch.Generator().manual_seed(seed)
    given = {k: v for k, v in (cond or {}).items() if v is not None}
    layout = hooks.call(modality, "sample_layout", config, n, gen, dataset=dataset, cond=given)
    check_mask(layout.x, layout.mask, f"{getattr(modality, 'name', '?')}.sample_layout")
    return layout


def filter_cond(modality: Any, cond: Mapping[str, Any]) -> dict[str, Any]:
    accepted = set(getattr(modality, "conditions", ()) or ())
    return {k: v for k, v in cond.items() if k in accepted}


def _check_given(base: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """A condition given by the caller must have the per-sample shape of the training data's."""
    from polydiff.errors import UserError

    for k, v in given.items():
        ref = base.get(k)
        if isinstance(ref, torch.Tensor) and isinstance(v, torch.Tensor) and v.shape[1:] != ref.shape[1:]:
            hint = " (integers separated by commas are one value per sample; write 1.0,2,3 for one vector)" if v.ndim == 1 else ""
            raise UserError(
                f"condition {k!r}: shape {tuple(v.shape[1:])} per sample, but the training data "
                f"have {tuple(ref.shape[1:])}{hint}"
            )


def _refined(modality: Any, config: Mapping[str, Any], denoiser: Callable[..., State]) -> Callable[..., State]:
    """``denoiser`` followed by the modality's ``refine_denoised`` on every call."""

    def refined(x: State, sigma: Any, **cond: Any) -> State:
        return hooks.call(modality, "refine_denoised", denoiser(x, sigma, **cond), sigma, cond, config)

    return refined


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

    ``cond`` overrides, name by name, the conditions of the layout (by default those of ``n``
    training items, so a conditional model samples the data's class balance; a ``None`` value
    stands for that condition's null value); the returned layout carries the conditions used.
    ``guidance`` is the classifier-free guidance scale (default ``config["sample"]["guidance"]``;
    1 = the plain conditional model), contrasting each condition with its null value
    (:mod:`polydiff.conditions`). Other ``options`` go to
    :func:`polydiff.sampling.run_sampler` (e.g. ``known=(values, known_mask)`` to impute).
    """
    get_sampler(sampler)  # fail before any work on an unknown name
    layout = sample_layout(modality, config, n, seed, dataset, cond).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    space = hooks.noise_space(modality, config)
    noise = space.project(randn_like_state(layout.x, generator=gen), layout.mask)
    sde = sde or build_sde(config["sde"])
    base = filter_cond(modality, layout.cond)
    given = dict(cond or {})
    for k in [k for k, v in given.items() if v is None and k in base]:
        given[k] = null_conditions({k: base[k]}, modality)[k]  # None: the null condition
    _check_given(base, given)
    use_cond = {**base, **{k: v for k, v in given.items() if v is not None}}
    use_cond = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in use_cond.items()}
    layout = Batch(layout.x, layout.mask, use_cond)
    if guidance is None:
        guidance = float((config.get("sample") or {}).get("guidance", 1.0))
    if guidance != 1.0 and use_cond:
        denoiser = cfg_denoiser(denoiser, guidance, null_conditions(use_cond, modality))
    if implemented(modality, "refine_denoised"):
        denoiser = _refined(modality, config, denoiser)
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
            project=space.project,
            generator=gen,
            callback=callback,
            **options,
        )
    return result.x, layout, result.nfe
