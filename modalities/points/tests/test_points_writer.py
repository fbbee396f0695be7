"""The writer's PLY files read back with trimesh; the PNG grid; completion helpers."""

import numpy as np
import torch
from PIL import Image
from polydiff_points.completion import half_space, mirror_baseline
from polydiff_points.writer import VIEW, write_inpainting, write_samples


def test_ply_round_trip_and_grid(tmp_path):
    import trimesh

    x = torch.randn(5, 30, 3)
    mask = torch.ones(5, 30)
    mask[2, 20:] = 0
    paths = write_samples(x, tmp_path, mask=mask)
    assert paths[0].name == "samples.png" and len(paths) == 6
    with Image.open(paths[0]) as img:  # 4 clouds a row, 2 rows; 3 views per cloud
        assert img.size == (4 * (3 * VIEW + 4), 2 * (VIEW + 4))
    cloud = trimesh.load(str(paths[3]))
    np.testing.assert_allclose(np.asarray(cloud.vertices), x[2, :20].numpy(), atol=1e-6)


def test_inpainting_colours_known_and_generated(tmp_path):
    import trimesh

    x = torch.randn(2, 10, 3)
    known = torch.zeros(2, 10)
    known[:, :4] = 1
    paths = write_inpainting(x, x, known, tmp_path)
    cloud = trimesh.load(str(paths[1]))
    colours = np.asarray(cloud.colors)[:, :3]
    assert (colours[:4] == (40, 90, 200)).all() and (colours[4:] == (235, 120, 20)).all()


def test_mirror_baseline_is_exact_for_a_symmetric_cloud():
    half = torch.rand(1, 8, 3) + torch.tensor([0.1, 0, 0])
    other = half.clone()
    other[..., 0] = -other[..., 0]
    cloud = torch.cat([half, other], 1)
    known = half_space(cloud)
    assert known.sum() == 8
    out = mirror_baseline(cloud, known)
    torch.testing.assert_close(out[0, :8], cloud[0, :8])
    # the unknown half is rebuilt as a set: every true mirrored point appears once
    got = {tuple(np.round(p, 5)) for p in out[0, 8:].numpy()}
    want = {tuple(np.round(p, 5)) for p in other[0].numpy()}
    assert got == want
