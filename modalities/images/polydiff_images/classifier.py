"""The reference classifiers that image metrics measure in: small CNNs for the built-in data sets.

One per built-in set (``digits`` 1x16x16, ``shapes`` 3x32x32), trained by
``modalities/images/scripts/train_classifier.py --dataset NAME`` on its *train* split only; the
weights ship in ``polydiff_images/assets/NAME_classifier.safetensors`` (float16, loaded as
float32). :meth:`ReferenceClassifier.features` gives the penultimate layer (128 values after a ReLU
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
    "ReferenceClassifier",
    "load_reference_classifier",
]

ASSETS = Path(__file__).parent / "assets"
#: data set name -> (weights file in ASSETS, input (channels, height, width), number of classes)
REFERENCE_CLASSIFIERS: dict[str, tuple[str, tuple[int, int, int], int]] = {
    "digits": ("digits_classifier.safetensors", (1, 16, 16), 10),
    "shapes": ("shapes_classifier.safetensors", (3, 32, 32), 6),
}


class ReferenceClassifier(nn.Module):
    """``(N, C, S, S)`` images in [-1, 1] -> logits; ``features`` -> ``(N, feature_dim)``.

    Two 3x3 convolutions per resolution (S -> S/2 -> S/4), then a 3x3 convolution to
    ``feature_dim`` channels, ReLU and global average pooling; a linear head on top. The defaults
    are the digits classifier's (1 channel, 16x16, 10 classes).
    """

    def __init__(
        self,
        width: int = 32,
        feature_dim: int = 128,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 16,
    ):
        super().__init__()
        w = width
        self.input_shape = (in_channels, image_size, image_size)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # S/2
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # S/4
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
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            want = ", ".join(str(v) for v in self.input_shape)
            raise ValueError(f"expected (N, {want}) images, got shape {tuple(x.shape)}")
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


#: the digits classifier's name from before there were several
DigitsClassifier = ReferenceClassifier


def load_reference_classifier(dataset: str = "digits") -> ReferenceClassifier:
    """The shipped classifier for a built-in data set, on the CPU in eval mode (float32)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if dataset not in REFERENCE_CLASSIFIERS:
        raise KeyError(
            f"no reference classifier for {dataset!r}; available: {', '.join(REFERENCE_CLASSIFIERS)}"
        )
    filename, (channels, size, _), num_classes = REFERENCE_CLASSIFIERS[dataset]
    path = ASSETS / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {dataset} classifier weights are missing from the package")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    model = ReferenceClassifier(
        width=int(meta.get("width", 32)),
        feature_dim=int(meta.get("feature_dim", 128)),
        num_classes=num_classes,
        in_channels=channels,
        image_size=size,
    )
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()
