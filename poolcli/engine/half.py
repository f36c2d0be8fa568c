"""Float16 to float32 and back, bit for bit as NumPy's ``astype``, in a few vectorised whole-array passes.

NumPy converts float16 one element at a time (about 3 ns an element to float32 and 6 ns back on the
benchmark machine, twenty to forty times a float32 copy), so a float16 input computed in float32 blocks spent
most of its time in the two casts. These functions give the same bits: every float16 value (the tests
try all 65536) widens exactly, and float32 narrows with round-to-nearest-even, overflow to infinity,
float16 subnormals, and NaN payloads kept as NumPy keeps them.

>>> h = np.array([1.0, -2.5, 65504.0, 6e-8, np.inf], dtype=np.float16)
>>> np.array_equal(to_float32(h), h.astype(np.float32))
True
>>> x = np.array([0.1, 65519.0, -3e-8, 1e-3], dtype=np.float32)
>>> np.array_equal(to_float16(x).view(np.uint16), x.astype(np.float16).view(np.uint16))
True
"""

from __future__ import annotations

import numpy as np

from poolcli.engine.kernels import memory_order

_WIDEN = np.float32(2.0**112)  # a float16's bits, moved to float32's mantissa position, times this: its value
_HALF_MAX = np.float32(65536.0)  # |widened bits| at least this: the float16 was Inf or NaN (exponent 31)
_NORMAL = np.uint32(113 << 23)  # float32 bits of 2**-14, the smallest normal float16 (the subnormals' exponent)
_OVERFLOW = np.uint32(143 << 23)  # float32 bits of 2**16: at least this becomes Inf (or stays NaN)
_INF = np.uint32(0x7F800000)
_NARROW = np.float32(2.0**-112)


def to_float32(h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``h`` (float16) as float32, the same bits as ``h.astype(np.float32)``, in ``h``'s memory order; into ``out``
    if given.

    >>> to_float32(np.array([0.5, -0.0], dtype=np.float16)).tolist()
    [0.5, -0.0]
    """
    t = np.empty_like(h, dtype=np.int32) if out is None else out.view(np.int32)
    np.copyto(t, h.view(np.int16), casting="unsafe")  # sign-extended: a negative half has bits 28-31 set
    t <<= 13
    t &= np.int32(-0x70000001)  # 0x8FFFFFFF: the sign bit and the exponent and mantissa, shifted
    f = t.view(np.float32)
    f *= _WIDEN  # exact for normal and subnormal halves (a power of two)
    if h.size and (h.view(np.int16).max() >= 0x7C00 or h.view(np.uint16).max() >= 0xFC00):  # Inf and NaN:
        special = np.abs(f) >= _HALF_MAX  # exponent all ones (the bits read as int16 and as uint16)
        bits = (h.view(np.int16)[special].astype(np.int32) << 13) & np.int32(-0x70000001)
        t[special] = bits | np.int32(0x7F800000)
    return f


def to_float16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32) rounded to float16, the same bits as ``x.astype(np.float16)``; into ``out`` if given.

    The magnitude is rounded in float32 by adding and subtracting a power of two whose last mantissa bit is
    the float16 quantum at that exponent (2**-24 for the subnormals), so the float unit rounds to nearest even;
    times 2**-112 the rounded value's float32 bits, shifted right by 13, are the float16's (subnormal halves land
    on float32 subnormals, which shift the same way; 2**16 and above become 0x7C00, Inf).

    >>> to_float16(np.array([1.00048828125, 1.00146484375], dtype=np.float32)).tolist()  # halfway: to even
    [1.0, 1.001953125]
    """
    order = memory_order(x) if not x.flags.c_contiguous else None
    if order is not None and (out is None or memory_order(out) == order):  # contiguous in another axis order
        back = np.argsort(order)  # (Fortran, channels-last): rounded in that order
        return to_float16(x.transpose(order), None if out is None else out.transpose(order)).transpose(back)
    x = np.ascontiguousarray(x)
    if x.size > 2 * NARROW_RUN:  # in runs whose dozen passes stay in cache (2 Mi values: 3.7 → 3.2 ms)
        result = np.empty(x.shape, np.float16) if out is None else out
        flat, into = x.reshape(-1), result.reshape(-1)
        if not np.may_share_memory(into, result):  # a target that is no one flat view (its copy) is rounded whole
            return _narrow(x, out)
        for start in range(0, flat.size, NARROW_RUN):
            _narrow(flat[start:start + NARROW_RUN], into[start:start + NARROW_RUN])
        return result
    return _narrow(x, out)


NARROW_RUN = 1 << 18  # float32 values rounded at a time by to_float16 (1 MiB of them)


def _narrow(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``to_float16`` of a C-contiguous float32 array, all of it at once."""
    magnitude = np.abs(x)
    quantum = magnitude.view(np.uint32) & _INF  # the exponent: 2**e
    np.clip(quantum, _NORMAL, _OVERFLOW, out=quantum)
    quantum += np.uint32(13 << 23)  # 2**(e+13): its last mantissa bit is 2**(e-10)
    with np.errstate(invalid="ignore"):  # NaN is put right below
        magnitude += quantum.view(np.float32)
        magnitude -= quantum.view(np.float32)
    magnitude *= _NARROW
    bits = magnitude.view(np.uint32)
    bits >>= np.uint32(13)  # at most 0x7C00 (Inf: from 65520 up to 2**16), but from 2**16 on and for NaN
    if bits.size and bits.max() > 0x7C00:  # (no float minimum first: against a scalar it is a slow loop)
        beyond = np.flatnonzero(bits.reshape(-1) > 0x7C00)
        wide = x.reshape(-1)[beyond]
        nan = np.isnan(wide)  # NaN keeps the top of its payload and stays NaN (NumPy's rule); the rest is Inf
        payload = (wide.view(np.uint32) & np.uint32(0x7FFFFF)) >> np.uint32(13)
        bits.reshape(-1)[beyond] = np.where(nan, np.uint32(0x7C00) + np.maximum(payload, np.uint32(1)), 0x7C00)
    result = np.empty(x.shape, np.float16) if out is None else out
    half = result.view(np.uint16)
    np.copyto(half, bits, casting="unsafe")
    half |= np.multiply(np.signbit(x), np.uint16(0x8000), dtype=np.uint16)  # the sign (of -0 and NaN too)
    return result
