"""Importing the plugin must stay light, and the object must satisfy the Modality contract."""

from __future__ import annotations

import subprocess
import sys

import polydiff_images

from polydiff.protocol import Modality, missing_members


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, polydiff_images\n"
        "m = polydiff_images.modality\n"
        "m.name, m.description, m.default_config()\n"
        "heavy = [k for k in ('torch', 'PIL', 'sklearn', 'numpy') if k in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_modality_satisfies_contract():
    m = polydiff_images.modality
    assert isinstance(m, Modality)
    assert missing_members(m) == []
    assert m.name == "images"
    assert tuple(m.builtin_datasets) == ("digits", "shapes")
    assert tuple(m.conditions) == ("label",)


def test_default_config_sections():
    cfg = polydiff_images.modality.default_config()
    assert cfg["data"]["dataset"] == "digits"
    assert cfg["data"]["resolution"] == 0  # auto: each source's natural size
    for key in ("steps", "batch_size", "lr", "ema_decay"):
        assert key in cfg["train"]
    assert cfg["sample"]["sampler"] == "heun"
    assert cfg["sample"]["n"] == 64
    assert cfg["model"]["num_classes"] == -1  # auto: the data's class count
    # a copy each time: callers may mutate it
    cfg["data"]["resolution"] = 99
    assert polydiff_images.modality.default_config()["data"]["resolution"] == 0


def test_entry_point_registered():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="polydiff.modalities") if ep.name == "images"]
    assert eps and eps[0].value == "polydiff_images:modality"
