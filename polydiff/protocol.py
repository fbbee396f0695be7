"""The Modality contract between the core and its plugins (contract version 2.1).

A plugin registers one object under the entry-point group ``polydiff.modalities``. Importing the
module that defines it must stay light: no torch, torchaudio or torch_geometric at import time —
the core imports the object to list it, and heavy imports belong inside the methods.

Every member the core may call is declared here, on :class:`Modality`, with its default; the core
calls optional members through :func:`polydiff.hooks.call` only, never by ``getattr`` at a call
site. At load the registry compares each member a plugin implements with its declaration here
(:func:`signature_problems`), the way pluggy verifies hook implementations, and lists a mismatch
as broken, naming the member. ``docs/plugins.md`` documents each member; a test keeps the two in
step.

Dataset items are mappings ``{"x": state, "mask": mask or absent, "cond": {name: value} or absent}``
without the batch dimension; :meth:`Modality.collate` turns a list of them into a :class:`Batch`.
A state is a tensor or a mapping of named tensors (see :mod:`polydiff.state`); a network maps
``(x_in, c_noise, **cond)`` to a tensor or mapping of the same structure as ``x_in``.

Versions (``major.minor``). A plugin declares the version it was written for in
``protocol_version`` (``"2.0"``; an int ``1`` means contract 1). Same major, older or equal minor:
loads. Same major, newer minor: loads with a warning (upgrade polydiff). Major 1: loads through
the compatibility rules below. Any other major: broken, with the reason.

History:
  1   — first contract; optional members found by name; ``shape_noise(noise, mask)``.
  2.0 — every member declared and signature-checked; ``noise_space(config)`` replaces
        ``shape_noise`` (a contract-1 ``shape_noise`` is still accepted, with a deprecation
        warning, as the projection of a noise space whose dimension is the valid-entry count);
        ``sample_layout`` takes ``dataset=`` and ``cond=``; ``read_condition`` for
        ``--cond NAME=SPEC``; ``config_schema`` declares a plugin's config keys; writers
        receive ``config=``.
  2.1 — ``refine_denoised(denoised, sigma, cond, config)``: a sampling-time projection of the
        denoiser's clean estimate onto what the conditions imply (optional; 2.0 plugins load
        unchanged).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps this module free of torch
    from torch import Tensor, nn
    from torch.utils.data import Dataset

    from polydiff.noise_space import NoiseSpace
    from polydiff.state import Mask, State

#: the contract this polydiff implements, ``"major.minor"``
CONTRACT_VERSION = "2.1"
#: kept for plugins that import it: the contract version a new plugin should declare
PROTOCOL_VERSION = CONTRACT_VERSION
#: majors this polydiff can load (1 through the compatibility rules)
SUPPORTED_MAJORS: tuple[int, ...] = (1, 2)

#: members a plugin object must provide; the registry marks a plugin broken when one is missing.
REQUIRED_MEMBERS: tuple[str, ...] = (
    "name",
    "protocol_version",
    "description",
    "default_config",
    "build_dataset",
    "build_network",
    "write_samples",
)
#: optional methods, each declared on :class:`Modality` with its default
OPTIONAL_METHODS: tuple[str, ...] = (
    "collate",
    "noise_space",
    "sample_layout",
    "null_condition",
    "read_condition",
    "read_state",
    "read_mask",
    "write_inpainting",
    "metrics",
    "refine_denoised",
)
#: optional data attributes and the type of their values
OPTIONAL_ATTRIBUTES: dict[str, type] = {"builtin_datasets": str, "conditions": str}
#: contract-1 names accepted (with a deprecation warning) for a contract-2 member
RENAMED: dict[str, str] = {"shape_noise": "noise_space"}
#: the methods the core calls, required and optional
METHODS: tuple[str, ...] = (
    "default_config",
    "build_dataset",
    "build_network",
    "write_samples",
    *OPTIONAL_METHODS,
)

SPLITS: tuple[str, ...] = ("train", "test")


class DataError(ValueError):
    """Bad user data. The message names the file and the problem in one line.

    Import it from here (``from polydiff.protocol import DataError``); the CLI prints it as one
    line with a non-zero exit, never a traceback.
    """


@dataclass
class Batch:
    """A collated batch: the state, its mask (``None`` when nothing is padded) and conditions."""

    x: State
    mask: Mask = None
    cond: dict[str, Any] = field(default_factory=dict)

    def to(self, device: Any) -> Batch:
        from polydiff.state import tree_map

        def move(v: Any) -> Any:
            if hasattr(v, "to"):
                return v.to(device, non_blocking=True)
            return v

        x = tree_map(move, self.x)
        mask = None if self.mask is None else tree_map(move, self.mask)
        return Batch(x, mask, {k: move(v) for k, v in self.cond.items()})


class Modality:
    """The contract: required members raise ``NotImplementedError``, optional ones hold defaults.

    Plugins subclass it (or duck-type it: a missing optional member falls back to the default
    here). See ``docs/plugins.md`` for when each member is called and what it receives.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    protocol_version: ClassVar[str | int] = CONTRACT_VERSION
    #: names accepted by ``build_dataset`` without a path (generated or shipped, never downloaded);
    #: the first is the default ``data.dataset`` unless the plugin's config sets another
    builtin_datasets: ClassVar[Sequence[str]] = ()
    #: condition names the network accepts (e.g. ``("label",)``); the core drops the rest
    conditions: ClassVar[Sequence[str]] = ()
    #: declarations of the plugin's own config keys, ``{section: {key: Setting}}`` with
    #: :class:`polydiff.config_schema.Setting` (type, range or choices, meaning); a value they
    #: refuse is a one-line error before any run folder is made. Keys left out are checked by the
    #: type of their default.
    config_schema: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    # ------------------------------------------------------------------------------ required

    def default_config(self) -> dict[str, dict[str, Any]]:
        """Sections ``data`` and ``model`` (the plugin's own keys), and optionally overrides of the
        core sections ``train``, ``sde``, ``param``, ``loss``, ``sample``."""
        raise NotImplementedError

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str) -> Dataset:
        """A map-style dataset of items. ``source`` is ``data.path`` when set, else ``data.dataset``
        (a name in :attr:`builtin_datasets`); ``split`` is one of :data:`SPLITS`.

        Raises :class:`DataError` for unreadable or malformed user files.
        """
        raise NotImplementedError

    def build_network(self, config: Mapping[str, Any]) -> nn.Module:
        """A network ``net(x_in, c_noise, **cond)`` returning the structure of ``x_in``.

        ``x_in`` is the preconditioned noisy state, ``c_noise`` the ``(B,)`` noise-level embedding
        input (see :mod:`polydiff.param`); ``cond`` holds the names of :attr:`conditions`.
        """
        raise NotImplementedError

    def write_samples(
        self,
        samples: State,
        out_dir: Path,
        *,
        mask: Mask = None,
        cond: Mapping[str, Any] | None = None,
        prefix: str = "sample",
        config: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """Write CPU samples in the field's formats under ``out_dir``; returns the written paths,
        a summary file (grid, index) first. ``config`` is the run's resolved configuration (a
        sample rate, a normalisation to undo), ``None`` when the caller has none."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ optional

    def collate(self, items: Sequence[Mapping[str, Any]]) -> Batch:
        """Stack fixed-size items; ragged modalities override this to pad and build a mask."""
        import torch
        from torch.utils.data import default_collate

        xs = default_collate([it["x"] for it in items])
        masks = [it.get("mask") for it in items]
        mask = None if masks[0] is None else default_collate(masks)
        conds = [it.get("cond") or {} for it in items]
        cond = {k: torch.as_tensor(default_collate([c[k] for c in conds])) for k in conds[0]}
        return Batch(xs, mask, cond)

    def noise_space(self, config: Mapping[str, Any]) -> NoiseSpace:
        """The linear subspace data and noise live in (default: every valid entry).

        The core projects every noise draw, the denoiser's output and the likelihood's probes onto
        it, and counts its dimensions for the prior density and bits/dim.
        """
        from polydiff.noise_space import FULL

        return FULL

    def sample_layout(
        self,
        config: Mapping[str, Any],
        n: int,
        generator: Any,
        *,
        dataset: Any = None,
        cond: Mapping[str, Any] | None = None,
    ) -> Batch:
        """Shapes (zeros), mask and conditions of ``n`` samples; the trainer passes ``dataset``
        (its training set); ``cond`` holds the conditions the caller gives (``--cond``: a tensor
        with ``n`` rows per name), for a layout they shape (a graph's node count sets its mask).
        Default: ``n`` items drawn from the training data."""
        import torch

        from polydiff.config import data_source
        from polydiff.state import tree_map

        if dataset is None:
            dataset = self.build_dataset(data_source(config["data"]), config, "train")
        idx = torch.randint(len(dataset), (n,), generator=generator).tolist()
        batch = self.collate([dataset[i] for i in idx])
        return Batch(tree_map(torch.zeros_like, batch.x), batch.mask, batch.cond)

    def null_condition(self, name: str, value: Tensor) -> Tensor:
        """The "no condition" value of ``value`` (classifier-free guidance, condition dropout):
        -1 for integer conditions (labels), 0 for floating ones."""
        import torch

        if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
            return torch.zeros_like(value)
        return torch.full_like(value, -1)

    def read_condition(self, name: str, spec: str, config: Mapping[str, Any], n: int) -> Tensor:
        """The condition ``name`` for ``n`` samples from the text of ``--cond NAME=SPEC``.

        Default: ``none`` (the null condition), integers or numbers separated by commas (integers
        are used in turn, one per sample; several floats form one vector for every sample), or a
        ``.npy``/``.txt``/``.csv`` file of numbers (one row for all samples or ``n`` rows).
        """
        from polydiff.condition_specs import parse_condition

        if implemented(self, "null_condition"):
            return parse_condition(name, spec, n, lambda v: self.null_condition(name, v))
        return parse_condition(name, spec, n, lambda v: Modality.null_condition(self, name, v))

    def read_state(self, path: Path, config: Mapping[str, Any]) -> State:
        """One item (no batch dimension) from a user file, preprocessed like the training data,
        for ``--inpaint``; raises :class:`DataError` for a bad file."""
        raise NotImplementedError

    def read_mask(self, spec: str, config: Mapping[str, Any], like: State) -> Mask:
        """A known-entries mask for the item ``like`` (no batch dimension; 1 = known, 0 = to
        generate) from a mask file or a preset name; the same structure and leading dimensions as
        ``like`` (see :func:`polydiff.state.check_mask`)."""
        raise NotImplementedError

    def write_inpainting(
        self,
        samples: State,
        values: State,
        known_mask: Mask,
        out_dir: Path,
        *,
        prefix: str = "inpaint",
        config: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        """Write inputs, masks and results side by side (CPU tensors, batch first). Default: the
        samples through :meth:`write_samples`."""
        names = accepted_keywords(self.write_samples)  # a contract-1 writer takes no config
        extra = {"config": config} if names is None or "config" in names else {}
        return self.write_samples(samples, out_dir, prefix=prefix, **extra)

    def metrics(self) -> Mapping[str, Any]:
        """Named metric callables for ``polydiff evaluate``: ``fn(samples, config, *, mask=None,
        cond=None) -> {key: number or str}`` (keywords it does not declare are not passed)."""
        return {}

    def refine_denoised(
        self, denoised: State, sigma: Tensor, cond: Mapping[str, Tensor], config: Mapping[str, Any]
    ) -> State:
        """Sampling only: the denoiser's estimate of the clean batch at noise level ``sigma`` (as
        the sampler passes it), after guidance and before the sampler steps with it; return it
        moved toward what ``cond`` implies (audio: projected onto the conditioning mel, after
        GLA-Grad). Training never calls it. Default: unchanged (and not wrapped)."""
        return denoised


def accepted_keywords(fn: Any) -> frozenset[str] | None:
    """The keyword names ``fn`` accepts; ``None`` when it takes any (``**kwargs``, or no signature)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


# ------------------------------------------------------------------------------------ versions


def parse_version(value: Any) -> tuple[int, int]:
    """``(major, minor)`` of a declared ``protocol_version``: ``1``, ``"2.0"``, ``"2"``, ``(2, 1)``."""
    if isinstance(value, bool):
        raise ValueError(f"protocol_version {value!r} is not a version")
    if isinstance(value, int):
        return value, 0
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    if isinstance(value, str):
        parts = value.strip().split(".")
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    raise ValueError(f"protocol_version {value!r} is not 'major.minor'")


def version_problem(value: Any) -> tuple[str | None, str | None]:
    """(why the plugin cannot load, or None; a warning to show, or None) for its declared version."""
    ours = parse_version(CONTRACT_VERSION)
    try:
        major, minor = parse_version(value)
    except ValueError as exc:
        return str(exc), None
    if major not in SUPPORTED_MAJORS:
        side = "polydiff" if major > ours[0] else "the plugin"
        return (
            f"protocol_version {value!r}: written for contract {major}.{minor}; this polydiff implements {CONTRACT_VERSION} "
            f"(and loads {', '.join(str(m) for m in SUPPORTED_MAJORS)}.x); upgrade {side}",
            None,
        )
    if major == ours[0] and minor > ours[1]:
        return None, (
            f"written for contract {major}.{minor}, newer than this polydiff's {CONTRACT_VERSION}: "
            "members it relies on may be ignored; upgrade polydiff"
        )
    return None, None


# ----------------------------------------------------------------------------------- members


def implemented(obj: object, member: str) -> bool:
    """Whether ``obj`` provides ``member`` itself (not the default of :class:`Modality`)."""
    try:
        value = inspect.getattr_static(obj, member)
    except AttributeError:
        return False
    return value is not inspect.getattr_static(Modality, member, None)


def missing_members(obj: object) -> list[str]:
    """Required members that ``obj`` lacks or leaves unimplemented."""
    missing = []
    for member in REQUIRED_MEMBERS:
        value = getattr(obj, member, None)
        if value is None or value == "":
            missing.append(member)
            continue
        func = getattr(type(obj), member, None)
        if callable(func) and getattr(Modality, member, None) is func:
            missing.append(member)
    return missing


def declared_signature(member: str) -> inspect.Signature:
    """The declared signature of a method member, without ``self``."""
    sig = inspect.signature(getattr(Modality, member))
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def format_signature(member: str) -> str:
    """``member(a, b, *, c=None)`` without annotations, for messages and docs."""
    parts: list[str] = []
    star = False
    for p in declared_signature(member).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return f"{member}({', '.join(parts)})"


def _impl_problem(member: str, impl: Any) -> str | None:
    """Why the implementation ``impl`` (a bound method or function) cannot be called as declared.

    The core passes the declared positional parameters by position and the keyword-only ones by
    name, leaving out keywords an implementation does not take (pluggy's rule: an implementation
    may take fewer arguments than its specification, never others).
    """
    if not callable(impl):
        return f"{member} is not callable"
    try:
        sig = inspect.signature(impl)
    except (TypeError, ValueError):
        return None  # builtins and C callables: nothing to compare
    spec = declared_signature(member).parameters
    spec_pos = [p for p in spec.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    spec_kw = {p.name for p in spec.values() if p.kind is p.KEYWORD_ONLY}
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        extra: list[inspect.Parameter] = []
    else:
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < len(spec_pos):
            return (
                f"{member} takes {len(positional)} positional parameters, the contract passes "
                f"{len(spec_pos)}: {format_signature(member)}"
            )
        extra = positional[len(spec_pos) :]
    for p in extra:
        if p.name not in spec_kw and p.default is p.empty:
            return f"{member} requires {p.name!r}, which the contract never passes: {format_signature(member)}"
        if p.name not in spec_kw:
            return f"{member} takes {p.name!r}, which is not part of the contract: {format_signature(member)}"
        if p.kind is p.POSITIONAL_ONLY:
            return f"{member}: {p.name!r} must be passable by keyword: {format_signature(member)}"
    for p in params:
        if p.kind is not p.KEYWORD_ONLY:
            continue
        if p.name not in spec_kw:
            kind = "requires" if p.default is p.empty else "takes"
            return f"{member} {kind} keyword {p.name!r}, which is not part of the contract: {format_signature(member)}"
    return None


def signature_problems(obj: object) -> list[str]:
    """One line per member of ``obj`` that does not match its declaration (empty when all do)."""
    problems: list[str] = []
    for member in METHODS:
        if not implemented(obj, member):
            continue
        problem = _impl_problem(member, getattr(obj, member))
        if problem:
            problems.append(problem)
    for old, new in RENAMED.items():
        if implemented(obj, old) and not implemented(obj, new):
            sig_problem = _legacy_problem(old, getattr(obj, old))
            if sig_problem:
                problems.append(sig_problem)
    schema = getattr(obj, "config_schema", {})
    if not isinstance(schema, Mapping) or not all(isinstance(v, Mapping) for v in schema.values()):
        problems.append("config_schema must map sections to {key: Setting}")
    for attr, kind in OPTIONAL_ATTRIBUTES.items():
        value = getattr(obj, attr, ())
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(
            isinstance(v, kind) for v in value
        ):
            problems.append(f"{attr} must be a sequence of {kind.__name__}, not {value!r}")
    return problems


def _legacy_problem(member: str, impl: Any) -> str | None:
    """Contract 1's ``shape_noise(noise, mask)``: two positional parameters."""
    try:
        inspect.signature(impl).bind(None, None)
    except TypeError:
        return f"{member} must take (noise, mask)"
    except ValueError:  # no signature to read (a builtin): nothing to check
        pass
    return None


def deprecations(obj: object) -> list[str]:
    """Contract-1 member names ``obj`` still uses, each with its replacement."""
    return [
        f"{old}() is contract 1; implement {new}() instead"
        for old, new in RENAMED.items()
        if implemented(obj, old) and not implemented(obj, new)
    ]
