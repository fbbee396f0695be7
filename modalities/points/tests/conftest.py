import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # the suite shares two cores with other jobs: one intra-op thread is faster than contention
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    # the default run compiles its network (a minute of inductor per new shape, repaid over its
    # 1,400 steps); the tests' few-step runs of tiny models would only pay the minute
    from polydiff_points.defaults import DEFAULT_CONFIG

    monkeypatch.setitem(DEFAULT_CONFIG["train"], "compile", False)
