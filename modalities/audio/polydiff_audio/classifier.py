"""The reference classifier the field's metrics measure in: a small CNN on the log-mel of ``notes``.

DiffWave's unconditional SC09 table scores samples in the features and logits of a classifier
trained on the data (a ResNeXT there); ours is trained by
``modalities/audio/scripts/train_classifier.py`` on the *train* stream of ``notes`` only (clips
``0 … N-1`` of the train seed; the test seed is never seen), and ships as
``polydiff_audio/assets/notes_classifier.safetensors`` (float16 weights, loaded as float32 without
unpickling). Its input is a one-second clip at 16 kHz (other rates are resampled, other lengths
cropped or zero-padded), turned into the plugin's normalised log-mel (1024-point FFT, hop 256,
80 mels), floored 80 dB below the clip's loudest bin (:data:`TOP_DB`); the mel bands are the
channels of a 1-D CNN over time, so the absolute frequency a pitch sits at stays visible to every
layer. :meth:`NotesClassifier.features` gives the
penultimate layer (``feature_dim`` values after a ReLU and mean pooling over time, divided by a
fixed scale so their mean square over the train stream is 1), the role Inception's pool3 plays
for FID; ``forward`` gives the logits over the 8 default pitches.

Loading checks the file's SHA-256 against :data:`CLASSIFIER_SHA256` and its format version, so a
stale or altered file is refused with one line instead of giving silently different numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ASSETS",
    "CLASSIFIER_FILE",
    "CLASSIFIER_FORMAT",
    "CLASSIFIER_SHA256",
    "FRONT_END",
    "NotesClassifier",
    "TOP_DB",
    "classifier_problem",
    "load_notes_classifier",
]

ASSETS = Path(__file__).parent / "assets"
CLASSIFIER_FILE = ASSETS / "notes_classifier.safetensors"
#: bumped whenever the architecture or the front end changes meaning
CLASSIFIER_FORMAT = "2"
#: SHA-256 of the shipped weights (printed by scripts/train_classifier.py after writing them)
CLASSIFIER_SHA256 = "6c29a18b8f06187532096e69fa04355e0449390096d30c6257f3b5a28f182d11"

#: the log-mel the classifier reads (the plugin's defaults for notes at 16 kHz)
FRONT_END: dict[str, Any] = {
    "sample_rate": 16000, "clip_seconds": 1.0, "n_fft": 1024, "hop_length": 256, "n_mels": 80, "f_min": 20.0,
}
#: each clip's log-mel is floored this many dB below its own loudest bin (librosa's ``top_db``
#: default). The plugin's absolute floor sits ~116 dB below a tone, so white noise at -90 dBFS,
#: below 16-bit rounding, moved the test clips' FID from 0.16 to 1.2 (format 1): the features
#: measured inaudible noise floors rather than tones, envelopes and timbre
TOP_DB = 80.0
#: the pitches (MIDI) its classes stand for: ``notes``' defaults, in order
CLASSIFIER_PITCHES = (57, 59, 60, 62, 64, 65, 67, 69)


class NotesClassifier(nn.Module):
    """``(N, C, T)`` waveforms at 16 kHz -> logits ``(N, num_classes)``; ``features`` -> ``(N, feature_dim)``.

    Three 1-D convolutions (kernel 3) over the log-mel frames with the mel bands as input channels,
    a max-pool halving time after the second, ReLUs; mean pooling over time; a linear head.
    """

    def __init__(self, width: int = 128, feature_dim: int = 128, num_classes: int = 8) -> None:
        super().__init__()
        n_mels = int(FRONT_END["n_mels"])
        self.body = nn.Sequential(
            nn.Conv1d(n_mels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(width, feature_dim, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(feature_dim, num_classes)
        #: root mean square of the pooled features over the train stream (set after training)
        self.register_buffer("feature_scale", torch.ones(()))
        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.length = round(float(FRONT_END["clip_seconds"]) * int(FRONT_END["sample_rate"]))

    def log_mel(self, wave: Tensor) -> Tensor:
        """``(N, C, T)`` or ``(N, T)`` audio at 16 kHz -> ``(N, n_mels, frames)``, mono, one second."""
        from polydiff_audio.audio_io import log_mel

        x = torch.as_tensor(wave).float()
        if x.dim() == 3:
            x = x.mean(1)
        if x.dim() != 2:
            raise ValueError(f"expected (N, C, T) or (N, T) audio, got shape {tuple(x.shape)}")
        x = x[:, : self.length].clamp(-1.0, 1.0)
        if x.shape[1] < self.length:
            x = F.pad(x, (0, self.length - x.shape[1]))
        mel = log_mel(x, FRONT_END)  # 0.01 per dB
        return mel.maximum(mel.amax(dim=(1, 2), keepdim=True) - TOP_DB / 100.0)

    def pooled_mel(self, mel: Tensor) -> Tensor:
        """The pooled activations the head reads, ``(N, feature_dim)``, from log-mel frames."""
        return self.body(mel).mean(-1)

    def features(self, wave: Tensor) -> Tensor:
        return self.pooled_mel(self.log_mel(wave)) / self.feature_scale

    def forward(self, wave: Tensor) -> Tensor:
        return self.head(self.dropout(self.pooled_mel(self.log_mel(wave))))

    @torch.no_grad()
    def predict(self, wave: Tensor, rate: int = 16000, batch_size: int = 256) -> tuple[Tensor, Tensor]:
        """``(features, class probabilities)`` of ``(N, C, T)`` audio at ``rate`` Hz, eval mode."""
        x = torch.as_tensor(wave).detach().float().cpu()
        if x.dim() == 2:
            x = x[:, None]
        if int(rate) != int(FRONT_END["sample_rate"]):
            import torchaudio.functional as AF

            x = AF.resample(x, int(rate), int(FRONT_END["sample_rate"]))
        was_training = self.training
        self.eval()
        feats, probs = [], []
        for chunk in x.split(batch_size):
            h = self.pooled_mel(self.log_mel(chunk))
            feats.append(h / self.feature_scale)
            probs.append(F.softmax(self.head(h), dim=1))
        self.train(was_training)
        return torch.cat(feats), torch.cat(probs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_notes_classifier(path: Path | None = None, *, check_hash: bool = True) -> NotesClassifier:
    """The shipped classifier on the CPU in eval mode (float32); refuses a file whose hash or
    format version is not the one this code was written for."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path or CLASSIFIER_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the notes classifier weights are missing from the package")
    if check_hash and path == CLASSIFIER_FILE and _sha256(path) != CLASSIFIER_SHA256:
        raise ValueError(
            f"{path}: SHA-256 {_sha256(path)[:12]}… is not the shipped classifier's "
            f"({CLASSIFIER_SHA256[:12]}…): reinstall polydiff-audio or update CLASSIFIER_SHA256"
        )
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path}: classifier format {meta.get('format')!r}, this code reads {CLASSIFIER_FORMAT!r}")
    model = NotesClassifier(
        width=int(meta.get("width", 128)), feature_dim=int(meta.get("feature_dim", 128)),
        num_classes=len(CLASSIFIER_PITCHES),
    )
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model.eval()


def classifier_problem(data: Mapping[str, Any], source: Any) -> str | None:
    """Why the notes classifier cannot score this run's data, or ``None`` when it can."""
    if str(source) != "notes":
        return "the reference classifier knows only the built-in notes"
    if tuple(int(p) for p in data.get("pitches", ())) != CLASSIFIER_PITCHES:
        return "the run's data.pitches differ from the classifier's 8 default pitches"
    return None
