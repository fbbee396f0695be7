"""The reference classifier that image metrics measure in: a small CNN for the built-in ``digits``.

Trained by ``modalities/images/scripts/train_classifier.py`` on the digits *train* split only; its
weights ship in ``polydiff_images/assets/digits_classifier.safetensors`` (float16, loaded as
float32). :meth:`DigitsClassifier.features` gives the penultimate layer (128 values after a ReLU
and global average pooling, the role Inception's pool3 layer plays for FID), divided by a fixed
scale so that their mean square over the train split is 1 (KID's polynomial kernel then sees
inputs of order one, as with Inception features); ``forward`` gives the logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ASSETS",
    "REFERENCE_CLASSIFIERS",
    "DigitsClassifier",
    "load_reference_classifier",
]

ASSETS = Path(__file__).parent / "assets"
#: data set name -> (weights file in ASSETS, input (channels, height, width), number of classes)
REFERENCE_CLASSIFIERS: dict[str, tuple[str, tuple[int, int, int], int]] = {
    "digits": ("digits_classifier.safetensors", (1, 16, 16), 10),
}


class DigitsClassifier(nn.Module):
    """``(N, 1, 16, 16)`` images in [-1, 1] -> 10 logits; ``features`` -> ``(N, feature_dim)``.

    Two 3x3 convolutions per resolution (16 -> 8 -> 4), then a 3x3 convolution to
    ``feature_dim`` channels, ReLU and global average pooling; a linear head on top.
    """

    def __init__(self, width: int = 32, feature_dim: int = 128, num_classes: int = 10):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(2 * w, feature_dim, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(feature_dim, num_classes)
        #: root mean square of the pooled features over the train split (set after training)
        self.register_buffer("feature_scale", torch.ones(()))
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def pooled(self, x: Tensor) -> Tensor:
        """The pooled activations the head reads, ``(N, feature_dim)``, non-negative."""
        if x.dim() != 4 or x.shape[1:] != (1, 16, 16):
            raise ValueError(f"expected (N, 1, 16, 16) images, got shape {tuple(x.shape)}")
        return self.body(x).mean(dim=(2, 3))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features ``(N, feature_dim)``: :meth:`pooled` / ``feature_scale``."""
        return self.pooled(x) / self.feature_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.pooled(x)))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 512) -> tuple[Tensor, Tensor]:
        """``(features, probabilities)`` for images in [-1, 1] (clamped), in batches, eval mode."""
        was_training = self.training
        self.eval()
        feats, probs = [], []
        device = next(self.parameters()).device
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device, torch.float32).clamp(-1, 1)
            h = self.pooled(xb)
            feats.append((h / self.feature_scale).cpu())
            probs.append(F.softmax(self.head(h), dim=1).cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(probs)


def load_reference_classifier(dataset: str = "digits") -> DigitsClassifier:
    """The shipped classifier for a built-in data set, on the CPU in eval mode (float32)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if dataset not in REFERENCE_CLASSIFIERS:
        raise KeyError(
            f"no reference classifier for {dataset!r}; available: {', '.join(REFERENCE_CLASSIFIERS)}"
        )
    filename, _, num_classes = REFERENCE_CLASSIFIERS[dataset]
    path = ASSETS / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {dataset} classifier weights are missing from the package")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    model = DigitsClassifier(
        width=int(meta.get("width", 32)),
        feature_dim=int(meta.get("feature_dim", 128)),
        num_classes=num_classes,
    )
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()
