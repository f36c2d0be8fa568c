"""The vectorised float16 casts give NumPy's bits: every float16 widened, and float32 values around every
rounding boundary (halfway points, their neighbours, subnormals, overflow, NaN) narrowed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import poolcli
from poolcli.engine.half import to_float16, to_float32

EVERY_HALF = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)


def numpy_half(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy warns of overflow in the cast
        return x.astype(np.float16)


def same_halves(mine: np.ndarray, theirs: np.ndarray) -> None:
    """Equal bits, except that any NaN equals any NaN (a platform may quiet payloads)."""
    nan = np.isnan(theirs)
    np.testing.assert_array_equal(np.isnan(mine), nan)
    np.testing.assert_array_equal(mine.view(np.uint16)[~nan], theirs.view(np.uint16)[~nan])


def test_every_float16_widens_to_numpys_float32_bits():
    np.testing.assert_array_equal(to_float32(EVERY_HALF).view(np.uint32), EVERY_HALF.astype(np.float32).view(np.uint32))


def test_widening_keeps_shape_and_memory_order():
    h = np.asfortranarray(EVERY_HALF[:24].reshape(2, 3, 4))
    f = to_float32(h)
    assert f.shape == h.shape and f.flags.f_contiguous
    np.testing.assert_array_equal(f, h.astype(np.float32))


@pytest.mark.parametrize("layout", ["Fortran", "channels-last", "strided"])
def test_narrowing_keeps_the_memory_order_of_a_contiguous_array(layout):
    """A Fortran-ordered or channels-last float32 array narrows in its own order (no transposing copy), to the
    same bits; one contiguous in no order (a strided view) comes back C-ordered."""
    wide = EVERY_HALF.astype(np.float32)[: 4 * 6 * 8 * 10].reshape(4, 6, 8, 10)
    x = {"Fortran": np.asfortranarray(wide), "channels-last": np.moveaxis(np.moveaxis(wide, 1, -1).copy(), -1, 1),
         "strided": np.repeat(wide, 2, axis=-1)[..., ::2]}[layout]
    h = to_float16(x)
    same_halves(h, numpy_half(wide))
    kept = tuple(s // 2 for s in x.strides) if layout != "strided" else np.ascontiguousarray(h).strides
    assert h.strides == kept


def test_values_at_every_rounding_boundary_narrow_as_numpy():
    wide = EVERY_HALF.astype(np.float32)
    finite = np.unique(wide[np.isfinite(wide)].astype(np.float64))
    halfway = ((finite[1:] + finite[:-1]) / 2).astype(np.float32)  # exact in float32: ties to even
    up, down = np.float32(np.inf), np.float32(-np.inf)
    with np.errstate(invalid="ignore"):  # the neighbours of NaN
        x = np.concatenate([wide, halfway, np.nextafter(halfway, up), np.nextafter(halfway, down),
                            np.nextafter(wide, up), np.nextafter(wide, down),
                            np.float32([65519.996, 65520.0, -65520.0, 1e30, -1e30, 2.0**-25, 2.0**-26, 3e-8])])
    same_halves(to_float16(x), numpy_half(x))


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=200))
def test_any_float32_bits_narrow_as_numpy(bits):
    x = np.array(bits, dtype=np.uint64).astype(np.uint32).view(np.float32)
    same_halves(to_float16(x), numpy_half(x))


@pytest.mark.parametrize("target", ["new", "contiguous", "strided"])
def test_large_arrays_narrow_in_runs_as_numpy(target, monkeypatch):
    """An array over two runs is rounded run by run (a last run shorter), into a new array or a given one;
    a strided target is rounded whole: NumPy's bits every way, boundary values and NaN included."""
    import poolcli.engine.half as half

    monkeypatch.setattr(half, "NARROW_RUN", 1000)
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(7, 13, 71)) * rng.choice([1e-6, 1.0, 3e4, 1e5], size=(7, 13, 71))).astype(np.float32)
    x.flat[::997] = np.nan
    out = {"new": None, "contiguous": np.full(x.shape, 7, np.float16),
           "strided": np.full(x.shape[::-1], 7, np.float16).T}[target]
    got = to_float16(x, out=out)
    assert out is None or got is out
    same_halves(got, numpy_half(x))


def test_narrowing_into_a_strided_target():
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6)
    out = np.zeros((6, 4), dtype=np.float16).T
    to_float16(x, out=out)
    np.testing.assert_array_equal(out, numpy_half(x))


@given(st.integers(0, 2**32 - 1), st.sampled_from(["max", "min"]),
       st.sampled_from([dict(kernel=2), dict(kernel=3, stride=2, padding=1), dict(kernel=5, stride=1, padding=2),
                        dict(global_pool=True), dict(output_size=3)]), st.booleans())
def test_float16_max_and_min_pick_what_float32_picks(seed, op, window, nan):
    """Max and min of float16 run on int16 keys in the values' order: over every kind of float16 (subnormals,
    ±0, ±inf) they give the float32 result; with NaN, NaN where float32 gives it."""
    rng = np.random.default_rng(seed)
    x = rng.choice(EVERY_HALF[~np.isnan(EVERY_HALF)], size=(2, 3, 7, 9)).astype(np.float16)
    if nan:
        x[tuple(rng.integers(0, n) for n in x.shape)] = np.nan
    y = poolcli.forward(x, op, **window)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, numpy_half(poolcli.forward(x.astype(np.float32), op, **window)))
