"""Property-based tests (hypothesis) of the reliability mechanisms: the config schema against an
independent reading of its declarations, the safe file walker on random trees with links, loops
and FIFOs, and the samplers on random shapes, masks and dtypes."""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polydiff.config_schema import CORE_DEFAULTS, SCHEMA, Setting, check_value, config_problem
from polydiff.files import walk_files

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SETTINGS = [(s, k, v) for s, keys in SCHEMA.items() for k, v in keys.items()]
values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=8), st.sampled_from(["cpu", "cuda:0", "cuda:x", "auto ", "adamw", "edm"]),
    st.lists(st.floats(allow_nan=False, width=32), max_size=3),
)


def _fits(setting: Setting, value) -> bool:
    """What the declaration allows, written independently of check_value."""
    if type(value) is bool:
        return setting.type in ("bool", "bool | str") and (not setting.choices or value in [
            c for c in setting.choices if type(c) is bool])
    if setting.type == "list[float]":
        return isinstance(value, list) and all(type(v) in (int, float) for v in value)
    if setting.type == "bool":
        return False
    if setting.type in ("str", "bool | str"):
        if not isinstance(value, str):
            return False
        if setting.pattern:
            return re.fullmatch(setting.pattern, value) is not None
        return not setting.choices or value in setting.choices
    if setting.type == "int" and type(value) is not int:
        return False
    if setting.type == "float" and type(value) not in (int, float):
        return False
    if not math.isfinite(value):
        return False
    lo, hi = setting.minimum, setting.maximum
    if lo is not None and (value <= lo if setting.exclusive_minimum else value < lo):
        return False
    return not (hi is not None and (value >= hi if setting.exclusive_maximum else value > hi))


@FAST
@given(st.sampled_from(SETTINGS), values)
def test_check_value_agrees_with_the_declaration(item, value):
    section, key, setting = item
    why = check_value(setting, value)
    assert (why is None) == _fits(setting, value), (section, key, value, why)
    assert why is None or "\n" not in why


@FAST
@given(st.sampled_from(SETTINGS), values)
def test_config_problem_names_the_key_of_a_bad_value(item, value):
    section, key, setting = item
    cfg = {s: dict(v) for s, v in CORE_DEFAULTS.items()}
    cfg[section][key] = value
    problem = config_problem(cfg)
    if _fits(setting, value):
        assert problem is None
    else:
        assert problem is not None and problem.startswith(f"{section}.{key} = ")


# -- the walker --------------------------------------------------------------------------------------

names = st.sampled_from(["a.png", "b.PNG", "c.txt", ".hidden.png", "d", "e.png"])
entries = st.lists(
    st.tuples(st.integers(0, 3), names, st.sampled_from(["file", "dir", "fifo", "link"]),
              st.integers(0, 9)),
    max_size=14,
)


def _build(root: Path, plan) -> None:
    folders = [root]
    made = [root]
    for depth, name, kind, target in plan:
        parent = folders[min(depth, len(folders) - 1)]
        path = parent / name
        if path.exists() or path.is_symlink():
            continue
        if kind == "file":
            path.write_bytes(b"x")
        elif kind == "dir":
            path.mkdir()
            folders.append(path)
        elif kind == "fifo":
            os.mkfifo(path)
        else:  # a link to anything made so far, to itself (a loop) or to nothing
            pool = [*made, path, root / "missing"]
            os.symlink(pool[target % len(pool)], path)
        made.append(path)


@FAST
@given(entries)
def test_walker_returns_only_regular_accepted_files_and_terminates(tmp_path_factory, plan):
    root = tmp_path_factory.mktemp("walk")
    _build(root, plan)
    accept = lambda name: name.lower().endswith(".png")  # noqa: E731
    walk = walk_files(root, accept)
    rels = [p.relative_to(root).as_posix() for p in walk.files]
    assert rels == sorted(rels) and len(set(rels)) == len(rels)
    for path in walk.files:
        assert stat.S_ISREG(os.stat(path).st_mode) and accept(path.name)
        assert not any(part.startswith(".") for part in path.relative_to(root).parts)
    # every real (unlinked) accepted regular file is found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if accept(name) and not name.startswith(".") and not path.is_symlink() and path.is_file():
                assert path in walk.files
            if accept(name) and not name.startswith(".") and stat.S_ISFIFO(os.lstat(path).st_mode):
                assert any(s.path == path for s in walk.skipped)


# -- the samplers ------------------------------------------------------------------------------------

@FAST
@given(
    batch=st.integers(1, 3),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    sampler=st.sampled_from(["euler", "heun", "dpmpp_2m", "ddim", "unipc"]),
    padded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_samplers_keep_shape_dtype_mask_and_finiteness(batch, shape, dtype, sampler, padded, seed):
    from polydiff.sampling import run_sampler
    from polydiff.sde import EDM

    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, *shape, generator=g, dtype=dtype)
    mask = None
    if padded:
        mask = (torch.rand(batch, shape[0], generator=g) > 0.4).to(dtype)
        mask = mask.reshape(batch, shape[0], *([1] * (len(shape) - 1))).expand(batch, *shape)
    s2 = 0.25  # data ~ N(0, s2): the exact denoiser is x * s2 / (s2 + sigma^2)

    def denoiser(x, sigma):
        return x * (s2 / (s2 + sigma.to(x.dtype) ** 2)).reshape(-1, *([1] * (x.ndim - 1)))

    result = run_sampler(denoiser, EDM(), noise=noise, sampler=sampler, steps=3, mask=mask,
                         generator=g)
    assert result.x.shape == noise.shape and result.x.dtype == dtype
    assert torch.isfinite(result.x).all()
    if mask is not None:
        assert (result.x[mask == 0] == 0).all()


@FAST
@given(extra=st.integers(1, 3))
def test_samplers_refuse_a_mask_of_another_shape(extra):
    from polydiff.sampling import run_sampler
    from polydiff.sde import EDM
    from polydiff.state import MaskError

    noise = torch.randn(2, 4)
    with pytest.raises(MaskError) as err:
        run_sampler(lambda x, s: x, EDM(), noise=noise, sampler="euler", steps=2,
                    mask=torch.ones(2, 4 + extra))
    assert "\n" not in str(err.value)
