"""Readers (every format, and malformed files), area-uniform mesh sampling, normalisation, the
built-in shapes, collation of ragged clouds."""

import struct

import numpy as np
import pytest
import torch
from _points_tiny import TINY
from polydiff_points import modality
from polydiff_points.data import build_dataset, collate
from polydiff_points.readers import read_cloud, read_points

from polydiff.config import deep_merge, defaults_for
from polydiff.protocol import DataError

CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
CUBE_F = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                   [2, 3, 7], [2, 7, 6], [1, 2, 6], [1, 6, 5], [0, 4, 7], [0, 7, 3]])


def _config(**data):
    cfg = deep_merge(defaults_for(modality), TINY)
    cfg["data"].update(data)
    return cfg


def _ply_ascii(path, v, f=None):
    lines = ["ply", "format ascii 1.0", f"element vertex {len(v)}", "property float x",
             "property float y", "property float z"]
    if f is not None:
        lines += [f"element face {len(f)}", "property list uchar int vertex_indices"]
    lines += ["end_header"] + [" ".join(map(str, p)) for p in v]
    if f is not None:
        lines += ["3 " + " ".join(map(str, t)) for t in f]
    path.write_text("\n".join(lines) + "\n")


def _ply_binary(path, v, f=None):
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {len(v)}",
            "property float x", "property float y", "property float z"]
    if f is not None:
        head += [f"element face {len(f)}", "property list uchar int vertex_indices"]
    body = np.asarray(v, "<f4").tobytes()
    if f is not None:
        body += b"".join(struct.pack("<B3i", 3, *t) for t in f)
    path.write_bytes(("\n".join(head + ["end_header"]) + "\n").encode() + body)


def _obj(path, v, f):
    path.write_text("".join(f"v {a} {b} {c}\n" for a, b, c in v) + "".join(
        f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f))


def _off(path, v, f):
    path.write_text(f"OFF\n{len(v)} {len(f)} 0\n" + "".join(f"{a} {b} {c}\n" for a, b, c in v)
                    + "".join(f"3 {a} {b} {c}\n" for a, b, c in f))


def _stl(path, v, f):
    import trimesh

    trimesh.Trimesh(v, f, process=False).export(str(path))


def _on_cube_surface(p):
    near = np.minimum(np.abs(p), np.abs(p - 1)).min(1)
    return bool((near < 1e-5).all() and (p > -1e-6).all() and (p < 1 + 1e-6).all())


@pytest.mark.parametrize("writer,suffix", [(_ply_ascii, ".ply"), (_ply_binary, ".ply"), (_obj, ".obj"),
                                           (_off, ".off"), (_stl, ".stl")])
def test_meshes_are_sampled_on_their_surface(tmp_path, writer, suffix):
    path = tmp_path / f"cube{suffix}"
    writer(path, CUBE_V, CUBE_F)
    p = read_points(path, 300)
    assert p.shape == (300, 3) and p.dtype == np.float32
    assert _on_cube_surface(p)
    # the six faces have equal areas: each gets about a sixth of the points
    counts = [int(((np.abs(p[:, a] - s) < 1e-5)).sum()) for a in range(3) for s in (0, 1)]
    assert min(counts) > 20


def test_clouds_are_read_as_stored(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    _ply_ascii(tmp_path / "a.ply", pts)
    _ply_binary(tmp_path / "b.ply", pts)
    np.savetxt(tmp_path / "c.xyz", pts)
    np.savetxt(tmp_path / "d.txt", np.c_[pts, np.ones(50)], delimiter=",")  # extra column (normals)
    np.save(tmp_path / "e.npy", pts)
    np.savez(tmp_path / "f.npz", points=pts, other=np.zeros(3))
    for name in "a.ply b.ply c.xyz d.txt e.npy f.npz".split():
        np.testing.assert_allclose(read_points(tmp_path / name, 10), pts, atol=1e-6, err_msg=name)


def test_large_clouds_are_subsampled_deterministically(tmp_path):
    pts = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    np.save(tmp_path / "big.npy", pts)
    a, b = read_cloud(tmp_path / "big.npy", 64), read_cloud(tmp_path / "big.npy", 64)
    assert a.shape == (64, 3)
    np.testing.assert_array_equal(a, b)
    assert {tuple(r) for r in a} <= {tuple(r) for r in pts}


def test_mesh_sampling_is_uniform_by_area(tmp_path):
    # two disjoint squares in the plane z = 0 with areas 1 and 3: a quarter of the points on the first
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                  [2, 0, 0], [5, 0, 0], [5, 1, 0], [2, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    _obj(tmp_path / "two.obj", v, f)
    n = 4000
    p = read_points(tmp_path / "two.obj", n, seed=3)
    share = float((p[:, 0] <= 1).mean())
    sd = np.sqrt(0.25 * 0.75 / n)
    assert abs(share - 0.25) < 4 * sd, share
    # within the big square, uniform in x: its mean x is the centre 3.5 (sd of the mean ~0.87/sqrt(3000))
    big = p[p[:, 0] > 1]
    assert abs(float(big[:, 0].mean()) - 3.5) < 4 * (3 / np.sqrt(12)) / np.sqrt(len(big))


def _assert_one_line(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    for needle in needles:
        assert needle in msg, msg


def test_malformed_files_get_one_line_errors(tmp_path):
    cases = {}
    _obj(tmp_path / "nofaces.obj", CUBE_V, np.zeros((0, 3), int))
    (tmp_path / "nofaces.obj").write_text("".join(f"v {a} {b} {c}\n" for a, b, c in CUBE_V))
    cases["nofaces.obj"] = "no faces"
    v = CUBE_V.copy()
    v[2, 1] = np.nan
    _off(tmp_path / "nan.off", v, CUBE_F)
    cases["nan.off"] = "NaN"
    _ply_binary(tmp_path / "trunc.ply", CUBE_V, CUBE_F)
    data = (tmp_path / "trunc.ply").read_bytes()
    (tmp_path / "trunc.ply").write_bytes(data[: len(data) - 60])
    cases["trunc.ply"] = "trunc.ply"
    np.save(tmp_path / "flat.npy", np.zeros((10, 2)))
    cases["flat.npy"] = "(N, 3)"
    (tmp_path / "garbage.stl").write_bytes(b"\x00\x01garbage" * 3)
    cases["garbage.stl"] = "garbage.stl"
    (tmp_path / "words.xyz").write_text("1 2 3\nfour five six\n")
    cases["words.xyz"] = "line 2"
    (tmp_path / "nan.txt").write_text("1 2 3\nnan 0 0\n")
    cases["nan.txt"] = "NaN"
    (tmp_path / "bad.npz").write_bytes(b"PK not really")
    cases["bad.npz"] = "bad.npz"
    (tmp_path / "cloud.png").write_bytes(b"\x89PNG")
    cases["cloud.png"] = "unsupported"
    for name, needle in cases.items():
        with pytest.raises(DataError) as exc:
            read_points(tmp_path / name, 32)
        _assert_one_line(exc, name, needle)


def test_folder_errors_name_the_folder(tmp_path):
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(DataError) as exc:
        build_dataset(tmp_path, _config(), "train")
    _assert_one_line(exc, str(tmp_path), "no point-cloud or mesh files")
    with pytest.raises(DataError) as exc:
        build_dataset(tmp_path / "missing", _config(), "train")
    _assert_one_line(exc, "no such file")


def test_folder_classes_split_and_normalisation(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("chairs", "lamps"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            np.save(tmp_path / cls / f"{i}.npy", rng.normal(size=(80, 3)) * [1, 2, 3] + 5)
    cfg = _config(test_fraction=0.2)
    train, test = build_dataset(tmp_path, cfg, "train"), build_dataset(tmp_path, cfg, "test")
    assert (len(train), len(test)) == (8, 2)
    assert train.classes == ["chairs", "lamps"] and sorted(test.labels) == [0, 1]
    for x in train.clouds:
        assert x.shape == (64, 3)
        assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-5)  # centred
    box = build_dataset(tmp_path, _config(center=False), "train")
    for x in box.clouds:  # longest side exactly 2, centred box
        ext = x.max(0).values - x.min(0).values
        assert abs(float(ext.max()) - 2) < 1e-5
        assert torch.allclose(x.max(0).values + x.min(0).values, torch.zeros(3), atol=1e-5)
    glob_train = build_dataset(tmp_path, _config(normalize="global"), "train")
    allc = torch.cat(glob_train.clouds)
    assert abs(float(allc.std(unbiased=False)) - 1) < 1e-4
    glob_test = build_dataset(tmp_path, _config(normalize="global"), "test")
    assert glob_test.scale == glob_train.scale


def test_shapes_are_fixed_and_splits_disjoint():
    cfg = _config()
    a, b = build_dataset("shapes", cfg, "train"), build_dataset("shapes", cfg, "train")
    test = build_dataset("shapes", cfg, "test")
    assert len(a) == 8 * 3 and len(test) == 8 * 2 and len(set(a.labels)) == 8
    assert all(torch.equal(x, y) for x, y in zip(a.clouds, b.clouds, strict=True))
    assert not any(torch.allclose(x, y) for x in a.clouds for y in test.clouds)
    assert all(float(x.abs().max()) <= 2.0 for x in a.clouds)


def test_ragged_clouds_collate_with_a_mask(tmp_path):
    np.save(tmp_path / "small.npy", np.random.default_rng(0).normal(size=(20, 3)))
    np.save(tmp_path / "large.npy", np.random.default_rng(1).normal(size=(90, 3)))
    ds = build_dataset(tmp_path, _config(test_fraction=0.0), "train")
    batch = collate([ds[i] for i in range(len(ds))])
    sizes = sorted(int(m.sum()) for m in batch.mask)
    assert batch.x.shape == (2, 64, 3) and sizes == [20, 64]
    assert torch.equal(batch.cond["valid"], batch.mask)
    assert float(batch.x[batch.mask == 0].abs().max()) == 0.0
    space = modality.noise_space(_config())
    assert sorted(space.dims(batch.x, batch.mask).tolist()) == [3 * 19, 3 * 63]  # 3(N - 1)


def test_items_carry_their_class_and_the_class_count_follows_the_data(tmp_path):
    from polydiff_points.data import collate, resolve_num_classes

    cfg = _config()
    ds = build_dataset("shapes", cfg, "train")
    batch = collate([ds[0], ds[len(ds) - 1]])
    assert batch.cond["label"].tolist() == [0, 7]
    assert resolve_num_classes(cfg) == 8
    assert resolve_num_classes({**cfg, "model": {"num_classes": 0}}) == 0
    flat = tmp_path / "flat"
    flat.mkdir()
    np.save(flat / "a.npy", np.random.default_rng(0).normal(size=(70, 3)))
    assert resolve_num_classes(_config(path=str(flat))) == 0
    for cls in ("chairs", "lamps", "mugs"):
        (tmp_path / "nested" / cls).mkdir(parents=True)
        np.save(tmp_path / "nested" / cls / "a.npy", np.random.default_rng(1).normal(size=(70, 3)))
    assert resolve_num_classes(_config(path=str(tmp_path / "nested"))) == 3
