"""README.md runs as written: every `polydiff` command of its shell blocks, and its Python snippet.

Each ``## `` section (and the overview above the first) is a walk-through from a fresh clone, so it
runs in its own empty working directory in which the repository's files appear at their usual
relative paths (symlinks), so the README's inputs (``modalities/...``) resolve while its outputs
(``runs/...``) land in the temporary directory. Training is the only slow step: each ``polydiff
train`` gets a tiny configuration appended and ``polydiff evaluate`` a small ``--n``; the other
commands run exactly as written (the tiny run's own sample settings keep them quick). ``pip install`` is not repeated, and the test command
is checked against the one CI runs instead of being run inside the suite.
"""

from __future__ import annotations

import re
import shlex
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import polydiff.registry as registry
from polydiff.cli import app

pytest.importorskip("polydiff_images")

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CI = REPO / ".ci" / "run"

SHELL_LANGS = ("", "bash", "console", "sh", "shell")

# seconds instead of minutes: a one-level U-Net, a few steps, two samples of two Euler steps
TINY = """
[model]
base_channels = 8
channel_mult = [1]
attention_levels = []
attention_head_dim = 8
norm_groups = 4

[train]
steps = 2
batch_size = 4
threads = 1
plot_every = 0
snapshot_every = 0
checkpoint_every = 0

[sample]
n = 2
steps = 2
sampler = "euler"
inpaint_steps = 2
"""


@dataclass
class Block:
    section: str
    lang: str
    line: int  # README line of the block's first code line
    code: str


def readme_blocks() -> list[Block]:
    blocks, section, lines = [], "overview", README.read_text().splitlines()
    i = 0
    while i < len(lines):
        text = lines[i]
        if text.startswith("## "):
            section = text[3:].strip()
        fence = re.match(r"^```(\w*)\s*$", text)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(section, fence.group(1), i + 2, "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return blocks


def commands(block: Block) -> list[tuple[int, str, list[str]]]:
    """``(README line, text, argv)`` of each command in a shell block; ``a && b`` gives two."""
    out, pending, start = [], "", block.line
    for k, raw in enumerate(block.code.splitlines()):
        text = raw.strip()
        if block.lang == "console":  # prompts and printed output: only "$ " lines are commands
            if not text.startswith("$ ") and not pending:
                continue
            text = text.removeprefix("$ ")
        if not pending:
            start = block.line + k
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        argvs, operators = split_shell(text)
        assert operators <= {"&&"}, f"README.md:{start}: {text!r}: this test only knows '&&', not {operators}"
        out.extend((start, text, argv) for argv in argvs)
    return out


def split_shell(text: str) -> tuple[list[list[str]], set[str]]:
    """The simple commands of one shell line (comments dropped) and the operators between them."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argvs, operators, argv = [], set(), []
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            operators.add(token)
            argvs.append(argv)
            argv = []
        else:
            argv.append(token)
    return [a for a in [*argvs, argv] if a], operators


def _is_pip(argv: list[str]) -> bool:
    return argv[0] == "pip" or argv[:3] == ["python", "-m", "pip"]


def _is_pytest(argv: list[str]) -> bool:
    return argv[0] == "pytest" or argv[:3] == ["python", "-m", "pytest"]


def _fresh_clone(where: Path) -> Path:
    where.mkdir(parents=True)
    for entry in REPO.iterdir():
        if not entry.name.startswith(".") and entry.name != "runs":
            (where / entry.name).symlink_to(entry)
    return where


def _quick(argv: list[str], tiny: Path, where: str) -> list[str]:
    args = argv[1:]
    if args and args[0] == "train" and "--resume" not in args:
        assert "--config" not in args, f"{where}: the README passes its own --config; teach this test to merge it"
        args = [*args, "--config", str(tiny)]
    if args and args[0] == "evaluate" and "--n" not in args:
        args = [*args, "--n", "16"]  # the default 500 samples would be most of this test's time
    return args


def test_readme_test_command_is_what_ci_runs():
    ci = [argv for t in CI.read_text().splitlines() for argv in split_shell(t)[0]]
    ci_pytest = [argv for argv in ci if _is_pytest(argv)]
    ci_pip = [argv for argv in ci if _is_pip(argv)]
    assert ci_pytest == [["python", "-m", "pytest"]], ci_pytest
    shown = [(line, argv) for b in readme_blocks() if b.lang in SHELL_LANGS for line, _, argv in commands(b)]
    readme_pytest = [argv for _, argv in shown if _is_pytest(argv)]
    assert readme_pytest == ci_pytest, f"README runs the tests with {readme_pytest}, CI with {ci_pytest}"
    # the README's install before its test command must install what CI installs (quiet flag aside)
    before = [argv for _, argv in shown[: [argv for _, argv in shown].index(readme_pytest[0])] if _is_pip(argv)]
    assert before, "README.md: no pip install before the test command"

    def targets(argv):
        return [a for a in argv[argv.index("install") + 1 :] if a != "-q"]

    assert targets(before[-1]) == targets(ci_pip[0]), (before[-1], ci_pip[0])


def test_readme_runs_as_written(tmp_path, monkeypatch):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY)
    runner = CliRunner()
    sections: dict[str, Path] = {}
    ran = 0
    registry.reset_registry()
    try:
        for block in readme_blocks():
            if block.lang not in (*SHELL_LANGS, "python"):
                continue
            if block.section not in sections:
                sections[block.section] = _fresh_clone(tmp_path / f"clone{len(sections)}")
            monkeypatch.chdir(sections[block.section])
            if block.lang == "python":
                try:
                    exec(compile(block.code, f"README.md:{block.line}", "exec"), {"__name__": "__readme__"})
                except Exception:
                    pytest.fail(f"README.md:{block.line}: the Python block fails\n{traceback.format_exc()}")
                ran += 1
                continue
            for line, text, argv in commands(block):
                where = f"README.md:{line}"
                if _is_pip(argv) or _is_pytest(argv):
                    continue
                assert argv[0] == "polydiff", f"{where}: {text!r}: not a polydiff command; teach this test how"
                result = runner.invoke(app, _quick(argv, tiny, where))
                if result.exit_code != 0:
                    detail = "".join(traceback.format_exception(result.exception)) if result.exception else ""
                    if isinstance(result.exception, SystemExit):
                        detail = ""
                    pytest.fail(
                        f"{where}: `{' '.join(argv)}` exited with {result.exit_code}\n{result.output}{detail}"
                    )
                ran += 1
    finally:
        registry.reset_registry()
    assert ran >= 5, f"only {ran} README commands found: did the README's code blocks change format?"
