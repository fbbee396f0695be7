"""polydiff-audio: the audio modality for polydiff.

The entry point ``polydiff_audio:modality`` is an :class:`AudioModality`. Importing this package
stays light (no torch, torchaudio or soundfile): the core imports it to list plugins, and the
heavy modules (:mod:`polydiff_audio.data`, :mod:`polydiff_audio.wavenet`,
:mod:`polydiff_audio.writer`, :mod:`polydiff_audio.evaluation`) load inside the methods.

States are ``(C, T)`` waveforms in [-1, 1] (``C = 1``: files are mixed to mono); a padded clip
carries a ``(1, T)`` mask, ``(B, 1, T)`` batched, which broadcasts over the channels.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from polydiff.config_schema import Setting
from polydiff.protocol import Modality
from polydiff_audio.defaults import DEFAULT_CONFIG, PRESETS

__version__ = "0.1.0"
__all__ = ["DEFAULT_CONFIG", "PRESETS", "AudioModality", "modality", "resolve_num_classes"]


def resolve_num_classes(config: Mapping[str, Any]) -> int:
    """``model.num_classes``, -1 resolved to the data's class count."""
    model = {**DEFAULT_CONFIG["model"], **(config.get("model") or {})}
    k = int(model.get("num_classes", 0))
    if k >= 0:
        return k
    from polydiff_audio.data import data_classes

    return data_classes(config)


class AudioModality(Modality):
    """Audio clips ``(C, T)``; built-in ``notes`` or folders of WAV/FLAC/OGG files."""

    name: ClassVar[str] = "audio"
    description: ClassVar[str] = (
        "Audio (C, T) waveforms: built-in 'notes' (pitched tones, 16 kHz), folders of WAV/FLAC/OGG, "
        "a DiffWave-family WaveNet, label and mel (vocoding) conditions, WAV + log-mel PNG writer"
    )
    protocol_version: ClassVar[str] = "2.1"
    builtin_datasets: ClassVar[tuple[str, ...]] = ("notes",)
    conditions: ClassVar[tuple[str, ...]] = ("label", "mel")
    # checked by the core before any run folder is made; hop_length's power of two and a clip
    # holding one hop stay in audio_io.data_config, an even embedding_dim in build_wavenet
    config_schema: ClassVar[dict[str, dict[str, Setting]]] = {
        "data": {
            "sample_rate": Setting("int", "samples per second", minimum=1000, maximum=384_000),
            "clip_seconds": Setting("float", "clip length in seconds", minimum=0.0, maximum=600.0,
                                    exclusive_minimum=True),
            "train_crop": Setting("int", "training window in samples (0: the whole clip)", minimum=0),
            "train_size": Setting("int", "notes: train clips", minimum=1),
            "test_size": Setting("int", "notes: test clips", minimum=1),
            "test_fraction": Setting("float", "folders: share of each class held out", minimum=0.0, maximum=0.9),
            "split_seed": Setting("int", "seed of the train/test split", minimum=0),
            "loudness_rms": Setting("float", "folders: RMS every file is scaled to", minimum=0.0, maximum=1.0,
                                    exclusive_minimum=True),
            "n_fft": Setting("int", "STFT size of the log-mel", minimum=8, maximum=65_536),
            "hop_length": Setting("int", "log-mel hop, a power of two", minimum=4, maximum=65_536),
            "n_mels": Setting("int", "mel bands", minimum=1, maximum=512),
            "f_min": Setting("float", "lowest mel frequency in Hz", minimum=0.0),
        },
        "model": {
            "residual_layers": Setting("int", "WaveNet residual layers", minimum=1, maximum=256),
            "residual_channels": Setting("int", "WaveNet channels", minimum=1, maximum=4096),
            # 2^23 samples of dilation is minutes of audio at 48 kHz
            "dilation_cycle": Setting("int", "dilation doubles over this many layers, then restarts",
                                      minimum=1, maximum=24),
            "embedding_dim": Setting("int", "Fourier features of the noise level (even)", minimum=2, maximum=4096),
            "num_classes": Setting("int", "-1: the data's classes, 0: unconditional", minimum=-1),
            "mel": Setting("bool", "condition on the log-mel (a vocoder)"),
            "context_channels": Setting("int", "channels of the frame-rate context branch (0: none)",
                                        minimum=0, maximum=4096),
            "context_layers": Setting("int", "dilated frame convolutions of the context branch",
                                      minimum=1, maximum=16),
        },
    }

    def default_config(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(DEFAULT_CONFIG)

    def build_dataset(self, source: str | Path, config: Mapping[str, Any], split: str):
        from polydiff_audio.data import build_dataset

        return build_dataset(source, config, split)

    def build_network(self, config: Mapping[str, Any]):
        from polydiff_audio.audio_io import data_config
        from polydiff_audio.wavenet import build_wavenet

        model = {**DEFAULT_CONFIG["model"], **(config.get("model") or {})}
        return build_wavenet(model, data_config(config), resolve_num_classes(config))

    def sample_layout(self, config: Mapping[str, Any], n: int, generator: Any, *, dataset: Any = None):
        from polydiff_audio.data import sample_layout

        return sample_layout(self, config, n, generator, dataset)

    def write_samples(
        self, samples: Any, out_dir: Path, *, mask: Any = None, cond: Mapping[str, Any] | None = None,
        prefix: str = "sample", config: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        from polydiff_audio.writer import write_samples

        return write_samples(samples, out_dir, _data(config), mask=mask, cond=cond, prefix=prefix)

    def read_condition(self, name: str, spec: str, config: Mapping[str, Any], n: int):
        if name == "mel" and spec.strip().lower() != "none":
            from polydiff.errors import UserError
            from polydiff_audio.inputs import read_mel

            if not {**DEFAULT_CONFIG["model"], **(config.get("model") or {})}.get("mel"):
                raise UserError("--cond mel=...: this run's network is not mel-conditioned (model.mel = false)")

            return read_mel(spec, config, n)
        return super().read_condition(name, spec, config, n)

    def read_state(self, path: Path, config: Mapping[str, Any]):
        from polydiff_audio.inputs import read_clip

        return read_clip(path, config)

    def read_mask(self, spec: str, config: Mapping[str, Any], like: Any):
        from polydiff_audio.inputs import read_mask

        return read_mask(spec, config, like)

    def write_inpainting(
        self, samples: Any, values: Any, known_mask: Any, out_dir: Path, *, prefix: str = "inpaint",
        config: Mapping[str, Any] | None = None,
    ) -> list[Path]:
        from polydiff_audio.writer import write_inpainting

        return write_inpainting(samples, values, known_mask, out_dir, _data(config), prefix=prefix)

    def metrics(self) -> Mapping[str, Any]:
        from polydiff_audio.evaluation import metrics_for_modality

        return metrics_for_modality(self)

    def refine_denoised(self, denoised: Any, sigma: Any, cond: Mapping[str, Any], config: Mapping[str, Any]):
        from polydiff_audio.phase import refine_vocoder_estimate

        return refine_vocoder_estimate(denoised, sigma, cond, config)


def _data(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``data`` section the writers need (the sample rate); the defaults without a config."""
    return {**DEFAULT_CONFIG["data"], **((config or {}).get("data") or {})}


modality = AudioModality()
