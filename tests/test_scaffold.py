"""`polydiff plugin new`: the files it writes, what it refuses, and the generated plugin working —
first imported from its folder, then installed into a fresh virtual environment and driven
through the real command line exactly as its README says."""

import importlib
import importlib.util
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from _cliassert import assert_one_line_error
from typer.testing import CliRunner

from polydiff.cli import app
from polydiff.errors import UserError
from polydiff.protocol import CONTRACT_VERSION
from polydiff.scaffold import package_name, write_plugin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

runner = CliRunner()

FILES = [
    "pyproject.toml",
    "README.md",
    "{package}/__init__.py",
    "{package}/core.py",
    "tests/test_conformance.py",
]


def _files(name: str) -> list[str]:
    return [f.format(package=package_name(name)) for f in FILES]


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_new_writes_the_plugin_into_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plugin", "new", "my-sines"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "polydiff-my-sines"
    assert _tree(root) == sorted(_files("my-sines"))
    assert "pip install -e polydiff-my-sines" in result.output

    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "polydiff-my-sines"
    assert project["project"]["dependencies"] == ["polydiff"]
    assert project["project"]["optional-dependencies"]["test"] == ["pytest"]
    entry_points = project["project"]["entry-points"]["polydiff.modalities"]
    assert entry_points == {"my-sines": "polydiff_my_sines:modality"}
    init = (root / "polydiff_my_sines" / "__init__.py").read_text()
    assert f'protocol_version = "{CONTRACT_VERSION}"' in init and 'name = "my-sines"' in init


def test_new_into_an_empty_folder_returns_the_files(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    written = write_plugin("spectra", target)
    assert [p.relative_to(target).as_posix() for p in written] == _files("spectra")


def test_refuses_a_folder_that_is_not_empty(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["plugin", "new", "spectra", str(target)])
    assert_one_line_error(result, str(target), "not empty")
    assert _tree(target) == ["notes.txt"]

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(UserError, match="not a folder"):
        write_plugin("spectra", a_file)


@pytest.mark.parametrize("name", ["Spectra", "1d", "_x", "x-", "a b", "a.b", "audio/x", ""])
def test_refuses_a_bad_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plugin", "new", name, str(tmp_path / "out")])
    assert_one_line_error(result, "plugin name", "lowercase")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def generated(tmp_path, monkeypatch):
    """A plugin written into tmp_path/src and importable from there (also by subprocesses: the
    conformance kit's light-import check imports the package in a fresh interpreter)."""
    name = "scaffold-probe"
    root = tmp_path / "src"
    write_plugin(name, root)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    yield name, root
    for module in [m for m in sys.modules if m.startswith(package_name(name)) or m == "_scaffold_generated_test"]:
        del sys.modules[module]


def test_generated_plugin_passes_its_own_conformance_test(generated, tmp_path):
    name, root = generated
    package = importlib.import_module(package_name(name))
    assert package.modality.name == name
    # the generated test module itself, imported by path under a name no other test uses
    spec = importlib.util.spec_from_file_location("_scaffold_generated_test", root / "tests" / "test_conformance.py")
    tests = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tests
    spec.loader.exec_module(tests)
    (tmp_path / "kit").mkdir()
    (tmp_path / "reader").mkdir()
    tests.test_conformance(tmp_path / "kit")  # check_modality with every check, light import included
    tests.test_reads_a_user_file(tmp_path / "reader")


def test_generated_plugin_refuses_bad_files_in_one_line(generated, tmp_path):
    import numpy as np

    from polydiff.config import defaults_for
    from polydiff.protocol import DataError

    name, _ = generated
    modality = importlib.import_module(package_name(name)).modality
    cfg = defaults_for(modality)
    cases = {
        "short.npy": lambda p: np.save(p, np.zeros((3, 7))),
        "words.npy": lambda p: np.save(p, np.array([["a"] * 32])),
        "nan.npy": lambda p: np.save(p, np.full((2, 32), np.nan)),
        "junk.npy": lambda p: p.write_bytes(b"not numpy"),
        "data.csv": lambda p: p.write_text("1,2,3\n"),
    }
    for file, write in cases.items():
        path = tmp_path / file
        write(path)
        with pytest.raises(DataError) as err:
            modality.build_dataset(str(path), cfg, "train")
        assert str(path) in str(err.value) and "\n" not in str(err.value), file


def test_generated_writer_plots_only_when_matplotlib_imports(generated, tmp_path, monkeypatch):
    import torch

    name, _ = generated
    modality = importlib.import_module(package_name(name)).modality
    samples = torch.randn(3, 1, 32)
    with_plot = modality.write_samples(samples, tmp_path / "a")
    assert [p.name for p in with_plot] == ["samples.png", "samples.csv"]
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now raises ImportError
    without = modality.write_samples(samples, tmp_path / "b", prefix="draw")
    assert [p.name for p in without] == ["draws.csv"]
    assert len((tmp_path / "b" / "draws.csv").read_text().splitlines()) == 3


def test_generated_code_is_ruff_clean(tmp_path):
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed")
    write_plugin("lint-probe", tmp_path)
    # the repository's rules, applied from the plugin's own root (its package is first-party there)
    rules = ["--isolated", "--select", "E,F,W,I,UP,B", "--line-length", "100", "--target-version", "py310"]
    out = subprocess.run([sys.executable, "-m", "ruff", "check", *rules, "."], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------ the real installation


def _make_venv(venv: Path) -> Path:
    """A virtual environment seeing this interpreter's packages (torch, the editable polydiff),
    so nothing is downloaded; its python."""
    # --without-pip: ensurepip takes ~6 s; the system pip, run by the venv's python, installs
    # into the venv (sys.prefix) all the same
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if sys.prefix != sys.base_prefix:
        # run from inside a venv: --system-site-packages would reach the base interpreter's
        # packages, not this venv's, so chain them in (addsitedir also runs their .pth files,
        # which is how editable installs are found)
        found = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True)
        lines = [f"import site; site.addsitedir({d!r})" for d in site.getsitepackages()]
        (Path(found.stdout.strip()) / "_outer_env.pth").write_text("\n".join(lines) + "\n")
    return python


def test_generated_plugin_installs_trains_and_samples_in_a_fresh_venv(tmp_path):
    name = "venv-probe"
    plugin = tmp_path / "plugin"
    result = runner.invoke(app, ["plugin", "new", name, str(plugin)])
    assert result.exit_code == 0, result.output
    python = _make_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD")}
    env["PIP_NO_INDEX"] = "1"  # proof that nothing is fetched

    def run(*args: str) -> str:
        out = subprocess.run([str(python), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    # --no-build-isolation: an isolated build would install setuptools into a fresh build env
    run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "-e", str(plugin))
    # the venv has no bin/polydiff (polydiff lives in the system site-packages); `python -m
    # polydiff` is the same command under the venv's interpreter
    listing = run("-m", "polydiff", "modalities")
    row = next(ln.split() for ln in listing.splitlines() if ln.split()[:1] == [name])
    assert row[1:4] == [f"polydiff-{name}", "0.1.0", "ok"], listing
    run("-m", "polydiff", "train", "--modality", name, "--out", "run", "--steps", "3", "--device", "cpu")
    run("-m", "polydiff", "sample", "run", "--out", "drawn", "--n", "4", "--steps", "3", "--device", "cpu")
    csv = (tmp_path / "drawn" / "samples.csv").read_text().splitlines()
    assert len(csv) == 4 and len(csv[0].split(",")) == 32
    run("-m", "pytest", str(plugin / "tests"), "-q", "-p", "no:cacheprovider")
