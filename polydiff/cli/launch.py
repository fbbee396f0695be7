"""`train.processes`: one `polydiff train` command that trains on several local processes.

A CPU step of a small network is made of many small kernels, and a second intra-op thread buys
little (inductor's compiled kernels even slow down on two threads); two single-threaded processes
that average their gradients use both cores of a laptop or a CI box fully. The parent resolves and
checks the configuration (so a bad value is still one line from one process), then starts the ranks
with the variables torchrun would set, waits, and answers with their exit status. Under torchrun (or
any launcher that sets ``WORLD_SIZE``) nothing is started: the launcher has done it.

Signals: the ranks run in a session of their own, so a terminal's Ctrl-C reaches only this process,
which hands each signal on once; a second Ctrl-C then aborts without saving, as it does for one
process. Only rank 0's output is shown; another rank's is shown when that rank alone fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

__all__ = ["PARAMS_ENV", "available_workers", "launch", "processes_for"]

#: the environment variable that hands the parent's command parameters to a rank
PARAMS_ENV = "POLYDIFF_TRAIN_PARAMS"
#: after one rank fails, how long the others get to notice before they are stopped
GRACE_S = 20.0


def available_workers(device: str) -> int:
    """How many processes the hardware can usefully run: GPUs on CUDA, otherwise usable cores."""
    if device.startswith("cuda") or device == "auto":
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def processes_for(train_config: Mapping[str, Any]) -> int:
    """The number of processes a run starts: ``train.processes``, capped by the hardware; 1 under a
    launcher (torchrun has already started the ranks)."""
    if "WORLD_SIZE" in os.environ:
        return 1
    wanted = int(train_config.get("processes", 1) or 1)
    if wanted <= 1:
        return 1
    return min(wanted, available_workers(str(train_config.get("device", "auto"))))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """A rank whose parent is killed outright should not train on alone (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def launch(n: int, params: Mapping[str, Any], resolved: Mapping[str, Any]) -> int:
    """Run ``polydiff train`` with ``params`` (the command's own keyword arguments) as ``n``
    data-parallel ranks on this machine, each training the configuration ``resolved`` here (not
    re-resolved from the files, which could have changed, nor from defaults this process may have
    adjusted); returns the exit status to end with."""
    port = _free_port()
    procs: list[subprocess.Popen] = []
    logs: list[IO[bytes] | None] = []
    for rank in range(n):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(n),
                   LOCAL_WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        env[PARAMS_ENV] = json.dumps({"params": dict(params), "resolved": resolved})
        # one OpenMP thread per rank unless the user chose: N ranks already fill N cores
        # (train.threads, when set, still applies in each rank)
        env.setdefault("OMP_NUM_THREADS", "1")
        log = None if rank == 0 else tempfile.TemporaryFile()
        logs.append(log)
        out, err = (_target("stdout"), _target("stderr")) if rank == 0 else (log, log)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "from polydiff.cli.train import rank_main; rank_main()"],
            env=env, stdout=out, stderr=err, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        ))
    relays = [threading.Thread(target=_relay, args=(pipe, name), daemon=True)
              for pipe, name in ((procs[0].stdout, "stdout"), (procs[0].stderr, "stderr"))
              if pipe is not None]
    for t in relays:
        t.start()

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    # signal handlers can only be set from the main thread (a CLI called from a worker thread
    # leaves signals to whoever owns them)
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        code = _wait(procs, logs)
        for t in relays:
            t.join()
        return code
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            if log is not None:
                log.close()


def _target(name: str) -> int | None:
    """Rank 0 writes straight to this process's terminal or file (a live progress bar keeps its
    terminal); where ``sys.stdout``/``sys.stderr`` are not those descriptors (a test runner, a
    notebook) its output is piped and written through them."""
    stream = getattr(sys, name)
    try:
        return None if stream.fileno() == {"stdout": 1, "stderr": 2}[name] else subprocess.PIPE
    except (AttributeError, OSError, ValueError):
        return subprocess.PIPE


def _relay(pipe: IO[bytes], name: str) -> None:
    for line in iter(pipe.readline, b""):
        stream = getattr(sys, name)
        stream.write(line.decode(errors="replace"))
        stream.flush()
    pipe.close()


def _wait(procs: list[subprocess.Popen], logs: list[IO[bytes] | None]) -> int:
    """Wait for every rank; the exit status to end with (rank 0's, or the failed rank's)."""
    # once a rank has failed the others usually fail at their next collective; one stuck in it is
    # asked to stop after GRACE_S, and killed after twice that
    failed_at: float | None = None
    asked: set[int] = set()
    while any(p.poll() is None for p in procs):
        if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
            failed_at = time.monotonic()
        waited = 0.0 if failed_at is None else time.monotonic() - failed_at
        for rank, p in enumerate(procs):
            if p.poll() is None and waited > 2 * GRACE_S:
                p.kill()
            elif p.poll() is None and waited > GRACE_S and rank not in asked:
                p.terminate()
                asked.add(rank)
        time.sleep(0.1)
    codes = [p.wait() for p in procs]
    if codes[0] != 0 and 0 not in asked:  # rank 0 failed on its own and said why
        return _status(codes[0])
    for code, log in zip(codes[1:], logs[1:], strict=True):
        if code != 0 and log is not None:  # rank 0 ended well, or was stopped: show this rank's why
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            return _status(code)
    return _status(codes[0])


def _status(code: int) -> int:
    """A rank killed by a signal reports it negatively; a shell reports it as 128 + signal."""
    return 128 - code if code < 0 else code
