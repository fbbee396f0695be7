"""Tiny settings shared by the points tests: 64-point clouds, a few per class, a small network."""

TINY = {
    "data": {"num_points": 64, "train_per_class": 3, "test_per_class": 2},
    "model": {"width": 16, "blocks": 1, "k": 8},
}
