"""The docs stay true: the config table, the contract reference and the Python API examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _cliassert import assert_one_line_error
from typer.testing import CliRunner

from polydiff import config_schema
from polydiff.config import CORE_DEFAULTS
from polydiff.config_schema import (
    SCHEMA,
    Setting,
    check_value,
    config_table_markdown,
    schema_problems,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


# ---------------------------------------------------------------------------- config table


def test_every_core_key_is_declared_and_every_declaration_names_a_key():
    missing = [
        f"{s}.{k}" for s, keys in CORE_DEFAULTS.items() for k in keys if k not in SCHEMA.get(s, {})
    ]
    extra = [
        f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys if k not in CORE_DEFAULTS.get(s, {})
    ]
    assert not missing, f"declare in polydiff/config_schema.py: {missing}"
    assert not extra, f"declared in polydiff/config_schema.py but not in CORE_DEFAULTS: {extra}"
    assert set(SCHEMA) == set(CORE_DEFAULTS)


def test_every_default_fits_its_declaration():
    assert schema_problems() == []


def test_docs_config_table_is_the_generated_one():
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    start, end = text.index(config_schema.START), text.index(config_schema.END)
    table = text[start + len(config_schema.START) : end].strip("\n") + "\n"
    assert table == config_table_markdown(), (
        "docs/config.md is out of date: run python -m polydiff.config_schema"
    )


def test_schema_problems_name_undeclared_and_missing_keys():
    defaults = {s: dict(keys) for s, keys in CORE_DEFAULTS.items()}
    defaults["train"]["new_key"] = 1
    del defaults["sample"]["seed"]
    defaults["train"]["steps"] = 0
    problems = schema_problems(defaults)
    assert any("train.new_key has no declaration" in p for p in problems)
    assert any("sample.seed, which CORE_DEFAULTS lacks" in p for p in problems)
    assert any(p.startswith("train.steps: the default breaks") for p in problems)


@pytest.mark.parametrize(
    ("setting", "value", "ok"),
    [
        (Setting("int", "m", minimum=1), 1, True),
        (Setting("int", "m", minimum=1), 0, False),
        (Setting("int", "m"), True, False),  # a boolean is no integer here
        (Setting("float", "m", minimum=0, maximum=1, exclusive_maximum=True), 1, False),
        (Setting("float", "m", minimum=0, exclusive_minimum=True), 3, True),
        (Setting("float", "m"), float("nan"), False),
        (Setting("str", "m", choices=("a", "b")), "c", False),
        (Setting("bool | str", "m", choices=(True, False, "auto")), 1, False),
        (Setting("bool | str", "m", choices=(True, False, "auto")), "auto", True),
        (Setting("list[float]", "m"), [0.9, 1], True),
        (Setting("list[float]", "m"), ["x"], False),
    ],
)
def test_check_value(setting, value, ok):
    assert (check_value(setting, value) is None) == ok


def test_declared_choices_match_the_code():
    from polydiff.losses import SIGMA_SAMPLINGS, WEIGHTINGS
    from polydiff.param import PARAMETERISATIONS
    from polydiff.sampling import SAMPLERS, SCHEDULES
    from polydiff.sde import SDES
    from polydiff.training.hardware import PRECISIONS
    from polydiff.training.optim import LR_SCHEDULES, OPTIMIZERS

    assert set(SCHEMA["sde"]["name"].choices) <= set(SDES)
    assert SCHEMA["param"]["parameterisation"].choices == PARAMETERISATIONS
    assert SCHEMA["loss"]["weighting"].choices == WEIGHTINGS
    assert SCHEMA["loss"]["sigma_sampling"].choices == SIGMA_SAMPLINGS
    assert SCHEMA["train"]["optimizer"].choices == OPTIMIZERS
    assert SCHEMA["train"]["lr_schedule"].choices == LR_SCHEDULES
    assert SCHEMA["train"]["precision"].choices == PRECISIONS
    assert SCHEMA["sample"]["schedule"].choices == ("default", *SCHEDULES)
    assert CORE_DEFAULTS["sample"]["sampler"] in SAMPLERS


def test_config_schema_script_reports_a_stale_table(tmp_path, monkeypatch):
    doc = tmp_path / "config.md"
    doc.write_text(f"intro\n{config_schema.START}\nold\n{config_schema.END}\nend\n")
    monkeypatch.setattr(config_schema, "DOC", doc)
    assert config_schema.main(["--check"]) == 1
    assert config_schema.main([]) == 0
    assert config_schema.main(["--check"]) == 0
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{config_schema.END}\nend\n")


def test_unknown_key_message_names_the_section(toy_registry, tmp_path):
    # the section in brackets once vanished as rich markup: "valid keys in : ..."
    from polydiff.cli import app

    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nstepz = 3\n")
    result = CliRunner().invoke(
        app, ["train", "-m", "toy", "--config", str(bad), "--out", str(tmp_path / "r")]
    )
    assert_one_line_error(result, "unknown key 'train.stepz'", "valid keys in [train]: steps,")
    bad.write_text("[bogus]\nx = 1\n")
    result = CliRunner().invoke(
        app, ["train", "-m", "toy", "--config", str(bad), "--out", str(tmp_path / "r")]
    )
    assert_one_line_error(result, "unknown section [bogus]; valid sections: data,")


# ------------------------------------------------------------------------ contract reference


def test_plugin_docs_name_every_attribute_and_check():
    from polydiff.protocol import OPTIONAL_ATTRIBUTES, RENAMED, REQUIRED_MEMBERS
    from polydiff.testing import CHECKS

    docs = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for name in [*REQUIRED_MEMBERS, *OPTIONAL_ATTRIBUTES, *RENAMED, *RENAMED.values(), *CHECKS]:
        assert f"`{name}" in docs, name
    assert "polydiff plugin new NAME [DIR]" in docs
    assert "examples/third_party_plugin/" in docs


# ------------------------------------------------------------------------------ Python API


def _python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block of ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if re.match(r"^```python\s*$", lines[i]):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append((i + 2, "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return blocks


def test_api_examples_run(tmp_path, monkeypatch):
    # one namespace for the whole page, as a reader runs it top to bottom; outputs land in tmp_path
    monkeypatch.chdir(tmp_path)
    path = DOCS / "api.md"
    blocks = _python_blocks(path)
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "docs_api"}
    for line, code in blocks:
        exec(compile(code, f"{path}:{line}", "exec"), namespace)
    assert (tmp_path / "runs" / "blobs" / "config.json").is_file()
    assert namespace["x"].shape == (256, 2)
