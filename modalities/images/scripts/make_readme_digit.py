"""Write the digit that the README's inpainting example reads: ``polydiff_images/assets/digit.png``.

    python modalities/images/scripts/make_readme_digit.py [--label 3] [--out PATH]

The image is the first item of the given class in the *test* split of the built-in ``digits`` data
set (default split of ``polydiff_images.DEFAULT_CONFIG``), so no model trained on the defaults has
seen it. It is written at the data's own 16x16 gray size through the plugin's writer, and read back
through the plugin's ``read_state`` (what ``polydiff sample --inpaint`` uses) to check that the file
holds exactly that test item, up to the 8-bit rounding every PNG writer applies.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from polydiff_images import DEFAULT_CONFIG, modality
from polydiff_images.classifier import ASSETS
from polydiff_images.data import build_digits
from polydiff_images.writer import write_samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", type=int, default=3, help="digit class to take (default 3)")
    p.add_argument("--out", type=Path, default=ASSETS / "digit.png")
    args = p.parse_args()

    test = build_digits(DEFAULT_CONFIG["data"], "test")
    index = next((i for i in range(len(test)) if test[i]["cond"]["label"] == args.label), None)
    if index is None:
        p.error(f"no test digit with label {args.label}")
    x = test[index]["x"]

    # the writer names its files itself (grid + numbered samples); keep only the single image
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_samples(x[None], tmp, prefix="digit", upscale=1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths[1], args.out)

    back = modality.read_state(args.out, {"data": DEFAULT_CONFIG["data"]})
    err = float((back - x).abs().max())
    if back.shape != x.shape or err > 1 / 255 + 1e-6:
        raise SystemExit(f"{args.out}: read back as {tuple(back.shape)}, max error {err:.4f}")
    print(f"{args.out}: test item {index} (label {args.label}), {tuple(x.shape)}, round trip {err:.4f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
