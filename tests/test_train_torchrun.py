"""The real launcher: ``torchrun --nproc-per-node 2`` running the CLI (toy modality, gloo on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from test_train_launcher import LAUNCHER

from polydiff.train import read_metrics


def test_torchrun_two_processes_train_one_run(tmp_path):
    torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    out = tmp_path / "run"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\ncheckpoint_every = 2\nplot_every = 0\nsnapshot_every = 0\nlog_every = 1\n"
                   "device = \"cpu\"\n")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", str(LAUNCHER),
         "train", "-m", "toy", "--out", str(out), "--steps", "4", "--batch-size", "8",
         "--config", str(cfg)],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 processes" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.count("done") == 1  # the summary comes from rank 0 only
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4]
    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 4
    assert (out / "samples" / "samples.pt").exists()
