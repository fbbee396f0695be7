"""polydiff: score-based diffusion models across modalities.

Importing the package is cheap; the numerical core (torch) loads on first use of ``sample``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def sample(denoiser: Any, sde: Any, **kwargs: Any) -> Any:
    """Draw samples with a named sampler: see :func:`polydiff.sampling.sample`."""
    from polydiff.sampling import sample as _sample

    return _sample(denoiser, sde, **kwargs)


def __getattr__(name: str) -> Any:
    # lazy submodules keep `polydiff --help` and plugin listing free of torch
    if name in {"sde", "param", "losses", "sampling", "state", "train", "registry", "protocol", "likelihood", "guidance"}:
        import importlib

        return importlib.import_module(f"polydiff.{name}")
    raise AttributeError(f"module 'polydiff' has no attribute {name!r}")
