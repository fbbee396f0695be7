"""The real ``polydiff train`` process with the in-memory toy modality, and Ctrl-C through it.

Run as a script, this file is a launcher: ``python tests/test_train_launcher.py train -m toy ...``
(or ``torchrun ... tests/test_train_launcher.py train ...``) registers the toy modality in a
registry of its own, installs the test hooks below and calls :func:`polydiff.cli.main`.

Hooks (environment variables), for the crash tests:

* ``POLYDIFF_TEST_STEP_DELAY``: after every optimizer step print ``@step N`` and sleep this long;
* ``POLYDIFF_TEST_WRITE_DELAY``: inside every atomic write of a checkpoint file, after the data is
  in the temporary file and before the rename, print ``@writing NAME`` and sleep this long.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LAUNCHER = Path(__file__).resolve()
STEP_DELAY = "POLYDIFF_TEST_STEP_DELAY"
WRITE_DELAY = "POLYDIFF_TEST_WRITE_DELAY"


def launch() -> None:
    sys.path.insert(0, str(LAUNCHER.parent))
    from toy_modality import ToyModality

    import polydiff.registry as registry

    reg = registry.Registry(autoload=False)
    reg.register(ToyModality(), distribution="toy-tests", version="0")
    registry.get_registry = lambda: reg
    install_hooks(
        float(os.environ.get(STEP_DELAY, "0") or 0), float(os.environ.get(WRITE_DELAY, "0") or 0)
    )

    import torch

    torch.set_num_threads(1)
    from polydiff.cli import main

    main()


def install_hooks(step_delay: float, write_delay: float) -> None:
    """Print ``@step N`` after each step / ``@writing NAME`` inside each checkpoint write, and
    sleep there, so that a test can kill the process at those points."""
    if step_delay > 0:
        from polydiff.train import Trainer

        step = Trainer.train_step

        def slow_step(self, micro):
            out = step(self, micro)
            print(f"@step {self.step}", flush=True)
            time.sleep(step_delay)
            return out

        Trainer.train_step = slow_step
    if write_delay > 0:
        import polydiff.checkpoint as ckpt

        atomic = ckpt._atomic_write

        def slow_atomic(path, write):
            def slow(tmp):
                write(tmp)
                print(f"@writing {Path(path).name}", flush=True)
                time.sleep(write_delay)

            atomic(path, slow)

        ckpt._atomic_write = slow_atomic


def start(args: list[str], **env: str) -> subprocess.Popen:
    """``polydiff ARGS`` in a subprocess through this launcher; stdout is line-buffered text."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **env)
    return subprocess.Popen(
        [sys.executable, str(LAUNCHER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


def _warm_imports() -> None:
    """Import here, once, what every child would import again (children inherit modules)."""
    import contextlib

    import polydiff.cli  # noqa: F401
    import polydiff.train  # noqa: F401

    with contextlib.suppress(ImportError):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401


class Forked:
    """``polydiff ARGS`` in a forked child of the test process: a separate process (killable,
    with its own files and exit status) that starts at once, since torch is already imported.
    stdout and stderr of the child come back, merged, through :meth:`lines`."""

    def __init__(
        self,
        args: list[str],
        *,
        step_delay: float = 0.0,
        write_delay: float = 0.0,
        env: dict[str, str] | None = None,
    ):
        _warm_imports()
        read_fd, write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.environ.update(env or {})
                os.close(read_fd)
                os.dup2(write_fd, 1)
                os.dup2(write_fd, 2)
                sys.stdout = sys.stderr = os.fdopen(write_fd, "w", buffering=1)
                import torch

                torch.set_num_threads(1)  # as DataLoader workers do after a fork
                install_hooks(step_delay, write_delay)
                from polydiff.cli import app

                try:
                    app([str(a) for a in args], prog_name="polydiff")
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write_fd)
        self._fd = read_fd
        self._buffer = b""
        self.output: list[str] = []
        self.returncode: int | None = None

    def lines(self, timeout: float = 60.0) -> Iterator[str]:
        """The child's output lines as they come (until it closes its output)."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.output.append(text)
                yield text
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("child timed out:\n" + "\n".join(self.output[-20:]))
            ready, _, _ = select.select([self._fd], [], [], left)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    return
                self._buffer += chunk

    def wait_for(self, prefix: str, timeout: float = 60.0) -> str:
        for line in self.lines(timeout):
            if line.startswith(prefix):
                return line
        raise AssertionError(f"never saw {prefix!r}:\n" + "\n".join(self.output[-20:]))

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 60.0) -> int:
        if self.returncode is None:
            for _ in self.lines(timeout):
                pass
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            os.close(self._fd)
        return self.returncode


def wait_for(proc: subprocess.Popen, prefix: str, timeout: float = 60.0) -> str:
    """Read stdout lines until one starts with ``prefix``; returns it."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.strip()
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"never saw {prefix!r}; stderr: {proc.stderr.read()}")


# ---------------------------------------------------------------------------------------- tests


def test_ctrl_c_saves_prints_where_and_exits_130(tmp_path, toy_registry):
    out = tmp_path / "run"
    args = ["train", "-m", "toy", "--out", str(out), "--steps", "400", "--seed", "3"]
    proc = start(args, **{STEP_DELAY: "0.02"})
    wait_for(proc, "@step 6")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "checkpoint saved to" in stderr and "--resume" in stderr, stderr
    pointer = json.loads((out / "checkpoints" / "latest.json").read_text())
    steps = [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("@step")]
    # stopped after the step in progress, and that step is the checkpoint it names
    assert pointer["step"] == steps[-1]
    assert str(out / "checkpoints" / pointer["weights"]) in stderr.replace("\n", "")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, pointer["step"] + 1))
    # (resuming from such a checkpoint is covered by test_train_kill and test_train_loop)


if __name__ == "__main__":
    launch()
