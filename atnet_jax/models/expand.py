"""The networks' last step on the host, reproducible to the bit on any machine: coarse logits -> probabilities.

Both decoders end with a 1-channel conv at 1/4 of the padded frame, a bilinear x4 upsampling
(``align_corners=True``) and a sigmoid. :func:`expand_logits` does those last two in NumPy from IEEE basic
operations only (no libm, no fused multiply-add, no SIMD-dependent transcendental), so the same logits give the
same float32 bits on every machine and NumPy build. A session stores what it returns; the studio then keeps a
round's coarse logits (16x fewer values) instead of its probabilities and recomputes them exactly
(:mod:`atnet_jax.studio.history`). It agrees with the jitted networks' own upsampling and sigmoid to about 1e-7.
"""
from __future__ import annotations

import numpy as np

from atnet_jax.models.layers import align_corners_taps

# exp(r) on |r| <= ln(2) / 2 by its Taylor series to r**7 (relative error below 2**-27), after the Cody-Waite
# reduction r = z - k ln2 with ln2 split so that k * _LN2_HI is exact for |k| < 2**15.
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_LOG2E = np.float32(1.44269504)
_TAYLOR = tuple(np.float32(1.0 / f) for f in (5040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0))
# Beyond |x| = 80 the sigmoid is 1 or below 2e-35 in float32; clipping there keeps every intermediate a normal
# float, so a process that flushes denormals to zero gets the same bits as one that does not.
_CLIP = np.float32(80.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32, the same bits on every machine (within 2 ulp of the exact value)."""
    z = np.clip(np.asarray(x, np.float32), -_CLIP, _CLIP)
    np.negative(z, out=z)
    k = np.rint(z * _LOG2E)
    r = z - k * _LN2_HI
    r -= k * _LN2_LO
    p = np.full_like(r, _TAYLOR[0])
    for c in _TAYLOR[1:]:
        p *= r
        p += c
    # 2**k from its bits (|k| <= 116: a normal float), an exact scaling as ldexp's but faster
    p *= ((k.astype(np.int32) + 127) << 23).view(np.float32)
    p += np.float32(1.0)
    return np.reciprocal(p, out=p)


def _resample(x: np.ndarray, axis: int, out_size: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` (along ``axis``) of ``x`` resized bilinearly to ``out_size`` with aligned corners,
    computed as the networks do: ``a * (1 - w) + b * w`` in float32."""
    lo, hi, frac = (v[start:stop] for v in align_corners_taps(x.shape[axis], out_size))
    shape = [1] * x.ndim
    shape[axis] = stop - start
    w = frac.reshape(shape)
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    return a * (np.float32(1.0) - w) + b * w


def expand_logits(logits: np.ndarray, stride: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """Coarse logits ``[K, hc, wc]`` -> probabilities ``[K, h, w]`` float32: the sigmoid of the logits resized
    (bilinear, aligned corners) to ``stride`` times their size, cropped to ``window = (top, left, h, w)`` (only
    the window is computed)."""
    logits = np.asarray(logits, np.float32)
    if logits.ndim != 3:
        raise ValueError(f"expand_logits expects [K, hc, wc] logits, got shape {logits.shape}")
    top, left, h, w = window
    out_h, out_w = logits.shape[1] * stride, logits.shape[2] * stride
    if top < 0 or left < 0 or top + h > out_h or left + w > out_w:
        raise ValueError(f"window {window} is outside the {out_h}x{out_w} upsampled map")
    rows = _resample(logits, 1, out_h, top, top + h) if out_h != logits.shape[1] else logits[:, top : top + h]
    full = _resample(rows, 2, out_w, left, left + w) if out_w != logits.shape[2] else rows[:, :, left : left + w]
    return sigmoid(full)
