"""Throw-away installed distributions for tests that need real entry points.

``make_dist`` writes what an installer would leave on ``sys.path`` — a ``<name>-<version>.dist-info``
folder with ``METADATA`` and ``entry_points.txt`` beside the plugin's modules — so
``importlib.metadata`` discovers it exactly like an installed plugin, without pip or network. Add the
root to ``sys.path`` yourself (``monkeypatch.syspath_prepend(root)``, which also restores it)::

    make_dist(tmp_path, "toy-dist", "1.0", {"toy": "toyplug:modality"},
              {"toyplug/__init__.py": modality_source("toy")})
    monkeypatch.syspath_prepend(tmp_path)

Give every test its own module names (or drop them from ``sys.modules`` afterwards): Python caches
imported modules, so a name reused across tests would return the first test's module.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from pathlib import Path

ENTRY_POINT_GROUP = "polydiff.modalities"


def make_dist(
    root: Path,
    dist: str,
    version: str,
    entry_points: dict[str, str],
    modules: dict[str, str],
    *,
    group: str = ENTRY_POINT_GROUP,
) -> None:
    """Write distribution ``dist`` (``version``) under ``root``.

    ``entry_points`` maps entry-point names to targets (``"pkg.mod:attr"``) in ``group``;
    ``modules`` maps file paths relative to ``root`` (``"toyplug/__init__.py"``) to their source.
    Import caches are invalidated afterwards so files written after ``root`` went onto ``sys.path``
    are seen too.
    """
    root = Path(root)
    # the folder name is how importlib.metadata finds the distribution (PEP 427 escaping)
    info = root / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = [f"[{group}]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for rel, source in modules.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    importlib.invalidate_caches()


def modality_source(
    name: str,
    *,
    class_name: str = "ToyModality",
    instance: str | None = "modality",
    body: str = "",
    preamble: str = "",
) -> str:
    """Source of a module defining a minimal, valid :class:`polydiff.protocol.Modality` subclass.

    The class is named ``class_name``; when ``instance`` is given, a module-level instance of that
    name is created too. ``body`` (class-level lines, indented 4 spaces) overrides members, e.g.
    ``"protocol_version = 99"``; ``preamble`` runs at import time before the class.
    """
    lines = [
        "from polydiff.protocol import Modality",
        "",
        textwrap.dedent(preamble),
        "",
        f"class {class_name}(Modality):",
        f"    name = {name!r}",
        f"    description = 'test modality {name}'",
        "",
        "    def default_config(self):",
        "        return {'data': {}, 'model': {}}",
        "",
        "    def build_dataset(self, source, config, split):",
        "        return []",
        "",
        "    def build_network(self, config):",
        "        return None",
        "",
        "    def write_samples(self, samples, out_dir, *, mask=None, cond=None, prefix='sample'):",
        "        return []",
    ]
    if body:
        lines += ["", textwrap.indent(textwrap.dedent(body), "    ")]
    if instance:
        lines += ["", f"{instance} = {class_name}()"]
    return "\n".join(lines) + "\n"
