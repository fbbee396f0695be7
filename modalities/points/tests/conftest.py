import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # the suite shares two cores with other jobs: one intra-op thread is faster than contention
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
