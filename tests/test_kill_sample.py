"""SIGKILL `polydiff sample` (the real images plugin, a real process) at random moments and inside
random file writes: never a partial file under a final name, only whole PNGs (and at worst a
hidden temporary file), and the next `sample` never mixes its files with the killed one's.

Run as a script, this file is the launcher: it installs a hook that prints ``@writing NAME`` inside
every atomic write (after the data is in the temporary file, before the rename) and sleeps there
``POLYDIFF_TEST_WRITE_DELAY`` seconds, then runs the CLI.
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

WRITE_DELAY = "POLYDIFF_TEST_WRITE_DELAY"
TRIALS = 2  # kills inside writes, plus as many at random moments: 6 processes in all

TINY = """
[data]
resolution = 8
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
snapshot_every = 0
plot_every = 0
[sample]
n = 2
steps = 1
"""


def launch() -> None:
    delay = float(os.environ.get(WRITE_DELAY, "0") or 0)
    if delay > 0:
        import polydiff.atomic as atomic

        plain = atomic.atomic_write

        def slow(path, write):
            def wrapped(tmp):
                write(tmp)
                print(f"@writing {Path(path).name}", flush=True)
                time.sleep(delay)

            plain(path, wrapped)

        atomic.atomic_write = slow
    from polydiff.cli import main

    sys.argv = ["polydiff", *sys.argv[1:]]
    main()


def _start(args, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, WRITE_DELAY: str(delay), "OMP_NUM_THREADS": "1"}
    env.pop("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.Popen([sys.executable, __file__, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _wait_line(proc: subprocess.Popen, prefix: str, timeout: float = 60.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line.strip()
    proc.kill()
    raise AssertionError(f"no {prefix!r} line from the process")


def _check_outputs(folder: Path) -> int:
    """Every visible file is a whole PNG; returns how many there are."""
    from PIL import Image

    n = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert path.stat().st_size > 0, f"{path}: empty file under a final name"
            with Image.open(path) as im:
                im.load()  # raises on a truncated PNG
            n += 1
    return n


@pytest.fixture(scope="module")
def images_run(tmp_path_factory):
    pytest.importorskip("polydiff_images")
    root = tmp_path_factory.mktemp("killsample")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY)
    run = root / "run"
    # trained in this process (no interpreter start to pay); only the killed ones are processes
    from typer.testing import CliRunner

    import polydiff.registry as registry
    from polydiff.cli import app

    registry.reset_registry()
    try:
        result = CliRunner().invoke(app, ["train", "-m", "images", "--config", str(cfg), "--out", str(run)])
    finally:
        registry.reset_registry()
    assert result.exit_code == 0, result.output
    return run


def test_sigkill_during_sample_leaves_only_whole_files(images_run, tmp_path):
    rng = random.Random(0)
    base = ["sample", images_run, "--n", 12, "--steps", 2, "--sampler", "euler"]
    outcomes = []
    for trial in range(TRIALS):
        out = tmp_path / f"inside-{trial}"
        proc = _start([*base, "--out", out], delay=0.2)
        k = rng.randint(1, 13)  # the grid, then 12 samples
        for _ in range(k):
            _wait_line(proc, "@writing")
        proc.kill()
        proc.wait()
        outcomes.append(("inside write", k, _check_outputs(out)))
    for trial in range(TRIALS):
        out = tmp_path / f"anywhere-{trial}"
        proc = _start([*base, "--out", out])
        time.sleep(rng.uniform(1.0, 6.0))  # start-up, sampling or writing
        proc.kill()
        proc.wait()
        if out.exists():
            outcomes.append(("anywhere", trial, _check_outputs(out)))
    # a kill inside write k leaves the k-1 files renamed before it, whole
    assert [o[2] for o in outcomes if o[0] == "inside write"] == [
        o[1] - 1 for o in outcomes if o[0] == "inside write"
    ]

    # the next run into the default folder after a killed one starts a fresh folder
    killed = images_run / "samples" / "euler-2"
    proc = _start(base, delay=0.2)
    _wait_line(proc, "@writing")
    _wait_line(proc, "@writing")
    proc.kill()
    proc.wait()
    kept = sorted(p.name for p in killed.iterdir())
    finished = _start(base)
    assert finished.wait(timeout=120) == 0
    assert sorted(p.name for p in killed.iterdir()) == kept
    assert _check_outputs(images_run / "samples" / "euler-2-2") == 13


if __name__ == "__main__":
    launch()
