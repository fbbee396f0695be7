"""Hardware policy: the device a run trains on, its CPU threads and its autocast precision.

Memory formats (channels-last) are not decided here: they are the network's own business, since
only the network knows whether its layers profit (see the images U-Net).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polydiff import distributed
from polydiff.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device, or a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


def select_device(tc: Mapping[str, Any]) -> torch.device:
    """This process's device for the ``[train]`` settings (a rank's own GPU under torchrun), made
    current, with ``train.threads`` applied."""
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    device = distributed.device_for(resolve_device(str(tc["device"])))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` (``None``: plain fp32).

    ``auto`` is bf16 on CUDA devices that support it and fp32 on CPUs: on the AVX2 CPU we measured
    (see docs/training.md) bf16 autocast made a step several times slower, since without native bf16
    instructions every matmul and convolution converts. Ask for ``bf16`` explicitly on CPUs with
    AMX / AVX512-BF16 after measuring with benchmarks/train_speed.py.
    """
    setting = str(setting).lower()
    if setting not in PRECISIONS:
        raise UserError(f"train.precision = {setting!r}: expected one of {', '.join(PRECISIONS)}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if setting == "fp32" or (setting == "auto" and not cuda_bf16):
        return None
    if setting == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise UserError("train.precision = 'bf16': this GPU does not support bfloat16 (use fp32)")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def uses_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` keeps its 4-D weights in channels-last order (reported, never imposed)."""
    return any(
        p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )


class CompiledOrEager(nn.Module):
    """``torch.compile(model)`` that falls back to eager execution where compilation fails.

    Inductor needs a C++ compiler on CPUs (and Triton on GPUs); a machine without one should
    train at eager speed, with torch's warning, rather than stop at the first step: the setting
    is a speed-up, so it must never cost a run. Compilation happens lazily, inside the first
    calls, so the fallback is switched on around each call only: other compiled code in the
    process keeps torch's default of raising.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.compiled = torch.compile(model)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        import torch._dynamo

        with torch._dynamo.config.patch(suppress_errors=True):
            return self.compiled(*args, **kwargs)
