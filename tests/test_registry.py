"""The plugin registry against real entry points of throw-away distributions on ``sys.path``.

Every test names its plugin modules with a fresh prefix and forgets them afterwards, and asserts only
about its own modality names, so real plugins installed in the environment do not matter.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _distfactory import make_dist, modality_source

from polydiff import registry as reg
from polydiff.protocol import PROTOCOL_VERSION, Modality
from polydiff.registry import (
    DISABLE_ENV,
    BrokenPlugin,
    PluginConflict,
    PluginInfo,
    Registry,
    UnknownModality,
)


@pytest.fixture
def uid() -> Iterator[str]:
    """A module-name prefix unique to the test; its modules are dropped from ``sys.modules`` after."""
    prefix = f"regtest_{uuid.uuid4().hex[:10]}"
    yield prefix
    for mod in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[mod]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``sys.path`` entry to install throw-away distributions into (removed after the test)."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def plugin(site: Path, uid: str, name: str, *, dist: str | None = None, **source: str) -> str:
    """Install a one-modality distribution whose module is ``<uid>_<name>``; returns the module name."""
    module = f"{uid}_{name.replace('-', '_')}"
    make_dist(
        site,
        dist or f"{name}-dist",
        "1.0",
        {name: f"{module}:modality"},
        {f"{module}.py": modality_source(name, **source)},
    )
    return module


def mine(infos: list[PluginInfo], *names: str) -> dict[str, PluginInfo]:
    return {i.name: i for i in infos if i.name in names}


# ------------------------------------------------------------------------------------ happy path


def test_working_plugin_is_ok_and_load_returns_it(site: Path, uid: str) -> None:
    module = plugin(site, uid, "rt-ok")
    registry = Registry(autoload=True)

    info = mine(registry.infos(), "rt-ok")["rt-ok"]
    assert info == PluginInfo("rt-ok", "rt-ok-dist", "1.0", f"{module}:modality", "ok", None)

    obj = registry.load("rt-ok")
    assert isinstance(obj, Modality)
    assert obj is sys.modules[module].modality
    assert registry.load("rt-ok") is obj  # cached


def test_load_imports_only_the_requested_plugin(site: Path, uid: str) -> None:
    first = plugin(site, uid, "rt-first")
    second = plugin(site, uid, "rt-second")
    registry = Registry(autoload=True)

    registry.load("rt-first")
    assert first in sys.modules
    assert second not in sys.modules


def test_entry_point_naming_a_class_is_instantiated(site: Path, uid: str) -> None:
    module = f"{uid}_cls"
    make_dist(
        site,
        "rt-cls-dist",
        "2.0",
        {"rt-cls": f"{module}:ClassModality"},
        {
            f"{module}/__init__.py": modality_source(
                "rt-cls", class_name="ClassModality", instance=None
            )
        },
    )
    obj = Registry(autoload=True).load("rt-cls")
    assert isinstance(obj, sys.modules[module].ClassModality)


def test_same_distribution_seen_twice_is_one_plugin(
    tmp_path: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    for copy in ("a", "b"):  # e.g. an editable install plus a stale copy on sys.path
        plugin(tmp_path / copy, uid, "rt-twice")
        monkeypatch.syspath_prepend(str(tmp_path / copy))
    registry = Registry(autoload=True)

    infos = [i for i in registry.infos() if i.name == "rt-twice"]
    assert [i.status for i in infos] == ["ok"]
    registry.load("rt-twice")


# ----------------------------------------------------------------------------------- isolation


@pytest.mark.parametrize(
    ("preamble", "reason"),
    [
        ("raise RuntimeError('boom\\non two lines')", "RuntimeError: boom on two lines"),
        ("raise SystemExit(3)", "SystemExit: 3"),
        ("import regtest_no_such_module_xyz", "ModuleNotFoundError: No module named"),
    ],
)
def test_plugin_whose_import_fails_is_broken_and_others_still_load(
    site: Path, uid: str, preamble: str, reason: str
) -> None:
    plugin(site, uid, "rt-bad", preamble=preamble)
    plugin(site, uid, "rt-good")
    registry = Registry(autoload=True)

    infos = mine(registry.infos(), "rt-bad", "rt-good")  # must not raise
    assert infos["rt-good"].status == "ok"
    bad = infos["rt-bad"]
    assert (bad.status, bad.distribution, bad.version) == ("broken", "rt-bad-dist", "1.0")
    assert bad.reason is not None and bad.reason.startswith(reason)
    assert "\n" not in bad.reason

    with pytest.raises(BrokenPlugin) as caught:
        registry.load("rt-bad")
    message = str(caught.value)
    assert "\n" not in message
    assert "'rt-bad'" in message and "rt-bad-dist 1.0" in message and reason in message
    assert caught.value.__cause__ is not None  # the original error, for a --verbose traceback
    assert isinstance(registry.load("rt-good"), Modality)


def test_failed_import_is_not_retried(site: Path, uid: str) -> None:
    counter = f"{uid}_counter"
    (site / f"{counter}.py").write_text("calls = []\n", encoding="utf-8")
    plugin(
        site,
        uid,
        "rt-once",
        preamble=f"import {counter}\n{counter}.calls.append(1)\nraise RuntimeError('once')",
    )
    registry = Registry(autoload=True)
    registry.infos()
    for _ in range(2):
        with pytest.raises(BrokenPlugin):
            registry.load("rt-once")
    assert sys.modules[counter].calls == [1]


def test_plugin_missing_members_is_broken_naming_them(site: Path, uid: str) -> None:
    module = f"{uid}_duck"
    source = """
        class Duck:  # duck-typed, not a Modality subclass
            name = "rt-duck"
            protocol_version = 1

            def default_config(self):
                return {}

            def build_dataset(self, source, config, split):
                return []

            def build_network(self, config):
                return None

        modality = Duck()
    """
    make_dist(
        site, "rt-duck-dist", "0.3", {"rt-duck": f"{module}:modality"}, {f"{module}.py": source}
    )
    registry = Registry(autoload=True)

    info = mine(registry.infos(), "rt-duck")["rt-duck"]
    assert info.status == "broken"
    assert info.reason == "missing required members: description, write_samples"
    with pytest.raises(BrokenPlugin, match="description, write_samples"):
        registry.load("rt-duck")


def test_unimplemented_base_method_counts_as_missing(site: Path, uid: str) -> None:
    module = f"{uid}_half"
    source = """
        from polydiff.protocol import Modality

        class Half(Modality):
            name = "rt-half"
            description = "forgot everything"

        modality = Half()
    """
    make_dist(
        site, "rt-half-dist", "1.0", {"rt-half": f"{module}:modality"}, {f"{module}.py": source}
    )
    info = mine(Registry(autoload=True).infos(), "rt-half")["rt-half"]
    assert info.status == "broken"
    assert "default_config" in info.reason and "write_samples" in info.reason


def test_wrong_protocol_version_is_broken(site: Path, uid: str) -> None:
    plugin(site, uid, "rt-future", body="protocol_version = 99")
    registry = Registry(autoload=True)

    info = mine(registry.infos(), "rt-future")["rt-future"]
    assert info.status == "broken"
    assert "protocol_version 99" in info.reason and str(PROTOCOL_VERSION) in info.reason
    assert "upgrade polydiff" in info.reason
    with pytest.raises(BrokenPlugin, match="protocol_version 99"):
        registry.load("rt-future")


def test_name_mismatch_is_broken(site: Path, uid: str) -> None:
    module = f"{uid}_liar"
    make_dist(
        site,
        "rt-liar-dist",
        "1.0",
        {"rt-liar": f"{module}:modality"},
        {f"{module}.py": modality_source("rt-something-else")},
    )
    info = mine(Registry(autoload=True).infos(), "rt-liar")["rt-liar"]
    assert info.status == "broken"
    assert "'rt-something-else'" in info.reason and "'rt-liar'" in info.reason


def test_member_check_that_raises_is_contained(site: Path, uid: str) -> None:
    plugin(
        site,
        uid,
        "rt-prop",
        body="@property\ndef description(self):\n    raise KeyError('no description')",
    )
    info = mine(Registry(autoload=True).infos(), "rt-prop")["rt-prop"]
    assert info.status == "broken"
    assert "KeyError" in info.reason


def test_two_distributions_claiming_one_name_conflict(site: Path, uid: str) -> None:
    first = plugin(site, uid, "rt-dup", dist="rt-alpha")
    module_b = f"{uid}_dup_b"
    make_dist(
        site,
        "rt-beta",
        "2.5",
        {"rt-dup": f"{module_b}:modality"},
        {f"{module_b}.py": modality_source("rt-dup")},
    )
    plugin(site, uid, "rt-bystander")
    registry = Registry(autoload=True)

    infos = [i for i in registry.infos() if i.name == "rt-dup"]
    assert [(i.distribution, i.status) for i in infos] == [
        ("rt-alpha", "conflict"),
        ("rt-beta", "conflict"),
    ]
    assert "rt-beta 2.5" in infos[0].reason and "rt-alpha 1.0" in infos[1].reason
    assert registry.names().count("rt-dup") == 1

    with pytest.raises(PluginConflict) as caught:
        registry.load("rt-dup")
    message = str(caught.value)
    assert "\n" not in message and "rt-alpha 1.0" in message and "rt-beta 2.5" in message
    assert first not in sys.modules and module_b not in sys.modules  # neither was imported
    assert registry.load("rt-bystander").name == "rt-bystander"


# ------------------------------------------------------------------------------------ laziness


def test_listing_without_check_imports_nothing(site: Path, uid: str) -> None:
    module = plugin(site, uid, "rt-lazy")
    registry = Registry(autoload=True)

    assert "rt-lazy" in registry.names()
    info = mine(registry.infos(check=False), "rt-lazy")["rt-lazy"]
    assert (info.status, info.reason) == ("unchecked", None)
    assert module not in sys.modules

    registry.load("rt-lazy")
    assert mine(registry.infos(check=False), "rt-lazy")["rt-lazy"].status == "ok"


def test_registry_module_does_not_import_torch() -> None:
    code = "import polydiff.registry, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -------------------------------------------------------------------- unknown names and autoload


def test_unknown_name_lists_available_names(site: Path, uid: str) -> None:
    plugin(site, uid, "rt-there")
    plugin(site, uid, "rt-broken", preamble="raise ImportError('nope')")
    registry = Registry(autoload=True)
    registry.infos()

    with pytest.raises(UnknownModality) as caught:
        registry.load("rt-missing")
    message = str(caught.value)
    assert "\n" not in message and "'rt-missing'" in message and "rt-there" in message
    assert "rt-there" in caught.value.available
    assert "rt-broken" not in caught.value.available


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_env_var_disables_autoload_but_register_works(
    site: Path, uid: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    plugin(site, uid, "rt-hidden")
    monkeypatch.setenv(DISABLE_ENV, value)
    registry = Registry()

    assert registry.names() == []
    with pytest.raises(UnknownModality, match=DISABLE_ENV):
        registry.load("rt-hidden")

    class Memory(Modality):
        name = "rt-memory"
        description = "registered in memory"

        def default_config(self):
            return {}

        def build_dataset(self, source, config, split):
            return []

        def build_network(self, config):
            return None

        def write_samples(self, samples, out_dir, **kwargs):
            return []

    memory = Memory()
    registry.register(memory)
    assert registry.load("rt-memory") is memory
    assert registry.infos() == [
        PluginInfo("rt-memory", "<memory>", "", f"{__name__}:{Memory.__qualname__}", "ok", None)
    ]
    assert "rt-hidden" in Registry(autoload=True).names()  # an explicit argument wins


def test_env_var_other_values_keep_autoload(
    site: Path, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin(site, uid, "rt-visible")
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert "rt-visible" in Registry().names()


# ------------------------------------------------------------------------------------- register


def _memory_class(name: str, **members: object) -> type:
    namespace = {
        "name": name,
        "description": "in memory",
        "default_config": lambda self: {},
        "build_dataset": lambda self, source, config, split: [],
        "build_network": lambda self, config: None,
        "write_samples": lambda self, samples, out_dir, **kw: [],
    }
    namespace.update(members)
    return type("MemoryModality", (Modality,), namespace)


def test_register_validates_like_a_plugin() -> None:
    registry = Registry(autoload=False)
    with pytest.raises(BrokenPlugin, match="missing required members: description"):
        registry.register(_memory_class("rt-m", description=""))
    with pytest.raises(BrokenPlugin, match="protocol_version 0"):
        registry.register(
            _memory_class("rt-m", protocol_version=0), distribution="mine", version="3"
        )
    assert registry.names() == []


def test_register_accepts_a_class_and_replaces_same_distribution() -> None:
    registry = Registry(autoload=False)
    registry.register(_memory_class("rt-m"))
    first = registry.load("rt-m")
    registry.register(_memory_class("rt-m"))
    second = registry.load("rt-m")
    assert isinstance(second, Modality) and second is not first
    registry.register(_memory_class("rt-m"), distribution="other", version="1")
    with pytest.raises(PluginConflict, match="<memory>.*other 1"):
        registry.load("rt-m")


def test_register_clashing_with_installed_plugin_conflicts(site: Path, uid: str) -> None:
    plugin(site, uid, "rt-clash")
    registry = Registry(autoload=True)
    registry.register(_memory_class("rt-clash"))
    with pytest.raises(PluginConflict, match="rt-clash-dist 1.0"):
        registry.load("rt-clash")


# ----------------------------------------------------------------------------- discovery edges


def test_malformed_metadata_elsewhere_does_not_hide_plugins(site: Path, uid: str) -> None:
    plugin(site, uid, "rt-survivor")
    info = site / "rt_malformed-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rt-malformed\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[polydiff.modalities]\nthis line has no equals sign\n")
    registry = Registry(autoload=True)

    assert registry.load("rt-survivor").name == "rt-survivor"
    assert any("rt-malformed 0.1" in line for line in registry.discovery_errors)


def test_get_registry_is_one_lazy_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_default", None)
    first = reg.get_registry()
    assert reg.get_registry() is first
    reg.reset_registry()
    assert reg.get_registry() is not first
