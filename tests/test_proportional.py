"""Layouts in the data's exact proportions (polydiff.proportional)."""

import pytest
import torch

from polydiff.proportional import proportional_counts, proportional_draw


def test_proportional_counts_by_hand():
    assert proportional_counts(torch.tensor([1.0, 1.0, 2.0]), 8).tolist() == [2, 2, 4]
    # 10 * (0.15, 0.25, 0.6) = 1.5, 2.5, 6: remainders .5, .5, 0 -> the first two tie, stable order
    assert proportional_counts(torch.tensor([15, 25, 60]), 10).tolist() == [2, 2, 6]
    assert proportional_counts(torch.tensor([3, 3, 3]), 7).tolist() == [3, 2, 2]
    assert int(proportional_counts(torch.tensor([5, 0, 7]), 13).sum()) == 13


def test_draw_keeps_the_mix_and_shuffles_by_the_generator():
    values = [12] * 10 + [15] * 30 + [20] * 40  # shares 1/8, 3/8, 1/2
    got = proportional_draw(values, 16, torch.Generator().manual_seed(0))
    assert sorted(got.tolist()) == [12] * 2 + [15] * 6 + [20] * 8
    again = proportional_draw(values, 16, torch.Generator().manual_seed(0))
    other = proportional_draw(values, 16, torch.Generator().manual_seed(1))
    assert torch.equal(got, again) and not torch.equal(got, other)
    # fewer samples than distinct values: the largest shares win, nothing outside the data
    assert proportional_draw(values, 1, torch.Generator().manual_seed(0)).tolist() == [20]
    with pytest.raises(ValueError, match="at least one value"):
        proportional_draw([], 3, torch.Generator())
