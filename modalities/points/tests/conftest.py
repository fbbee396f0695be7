import pytest


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    # the default run compiles its network (a minute of inductor per new shape, repaid over its
    # 1,550 steps); the tests' few-step runs of tiny models would only pay the minute
    from polydiff_points.defaults import DEFAULT_CONFIG

    monkeypatch.setitem(DEFAULT_CONFIG["train"], "compile", False)
