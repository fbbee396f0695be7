"""`train.processes`: how many ranks `polydiff train` starts by itself (the launch itself is tested
through the points plugin, whose default trains on two processes)."""

from __future__ import annotations

import pytest

from polydiff.cli import launch


@pytest.fixture
def cores(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)

    def set_cores(n: int) -> None:
        monkeypatch.setattr(launch, "available_workers", lambda device: n)

    return set_cores


def test_processes_are_capped_by_the_hardware(cores):
    cores(2)
    assert launch.processes_for({"processes": 1}) == 1
    assert launch.processes_for({"processes": 2}) == 2
    assert launch.processes_for({"processes": 8}) == 2
    assert launch.processes_for({}) == 1
    cores(1)
    assert launch.processes_for({"processes": 2}) == 1


def test_nothing_is_started_under_a_launcher(cores, monkeypatch):
    cores(8)
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun has started the ranks already
    assert launch.processes_for({"processes": 4}) == 1


def test_available_workers_counts_usable_cores_on_cpu():
    assert launch.available_workers("cpu") >= 1


def test_a_signal_killed_rank_reports_128_plus_the_signal():
    assert launch._status(-15) == 143 and launch._status(2) == 2 and launch._status(0) == 0


def test_a_rank_failing_alone_stops_the_others_and_is_reported(monkeypatch, capsys):
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(launch, "GRACE_S", 0.3)
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    log = tempfile.TemporaryFile()
    failing = subprocess.Popen([sys.executable, "-c", "import sys; print('error: rank 1 broke'); sys.exit(3)"],
                               stdout=log, stderr=log)
    try:
        assert launch._wait([stuck, failing], [None, log]) == 3
    finally:
        stuck.kill()
    assert stuck.returncode is not None  # rank 0 was stopped, not left to hang in a collective
    assert "rank 1 broke" in capsys.readouterr().err
