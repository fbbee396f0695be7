"""The one way the core calls a plugin's members.

:func:`call` runs a member as declared on :class:`polydiff.protocol.Modality`: the plugin's own
implementation when it has one (keywords it does not take are left out, as pluggy does), else the
declared default — so duck-typed plugins and plugins written for an older contract get the same
behaviour as subclasses. The registry has already checked the implementation's signature at load
(:func:`polydiff.protocol.signature_problems`).

Also here, the derived calls every caller would otherwise repeat: the noise space (with the
contract-1 ``shape_noise`` read as one) and collation with mask validation.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from polydiff.protocol import RENAMED, Batch, Modality, accepted_keywords, implemented

__all__ = ["call", "collate", "implemented", "noise_space"]

_KEYWORDS: dict[tuple[type, str], frozenset[str] | None] = {}


def _keywords(modality: Any, member: str) -> frozenset[str] | None:
    """The keyword names ``member`` of ``modality`` accepts, cached per class."""
    key = (type(modality), member)
    if key not in _KEYWORDS:
        _KEYWORDS[key] = accepted_keywords(getattr(modality, member))
    return _KEYWORDS[key]


def call(modality: Any, member: str, *args: Any, **kwargs: Any) -> Any:
    """``modality.member(*args, **kwargs)`` as the contract declares it (module docstring)."""
    if implemented(modality, member):
        names = _keywords(modality, member)
        if names is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in names}
        return getattr(modality, member)(*args, **kwargs)
    default = getattr(Modality, member, None)
    if default is None:
        raise AttributeError(f"{member!r} is not a member of the modality contract")
    return default(modality, *args, **kwargs)


def noise_space(modality: Any, config: Mapping[str, Any]) -> Any:
    """The modality's :class:`~polydiff.noise_space.NoiseSpace` for ``config``."""
    if not implemented(modality, "noise_space"):
        for old, new in RENAMED.items():
            if new == "noise_space" and implemented(modality, old):
                from polydiff.noise_space import LegacyShapeNoise

                warnings.warn(
                    f"modality {getattr(modality, 'name', '?')!r}: {old}() is contract 1; "
                    f"implement {new}(config) returning a polydiff.noise_space.NoiseSpace",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return LegacyShapeNoise(getattr(modality, old))
    return call(modality, "noise_space", config)


def collate(modality: Any, items: Sequence[Mapping[str, Any]], where: str = "collate") -> Batch:
    """The plugin's collation of ``items``, its mask checked against its state."""
    from polydiff.state import check_mask

    batch = call(modality, "collate", items)
    check_mask(batch.x, batch.mask, f"{getattr(modality, 'name', '?')}.{where}")
    return batch
