"""Building blocks with PyTorch numerics: explicit padding, conv + BN, align-corners resize."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

BN_MOMENTUM = 0.9  # Flax convention: PyTorch's momentum 0.1
BN_EPSILON = 1e-5


def torch_padding(kernel_size: int, dilation: int = 1, padding: int | None = None) -> tuple[tuple[int, int], ...]:
    """Explicit symmetric padding as PyTorch's ``Conv2d(padding=p)``.

    ``'SAME'`` pads asymmetrically at stride 2, so it never matches PyTorch there. Default ``p`` keeps the
    size at stride 1: ``dilation * (kernel_size - 1) // 2``.
    """
    p = dilation * (kernel_size - 1) // 2 if padding is None else padding
    return ((p, p), (p, p))


def Conv(
    features: int,
    kernel_size: int = 3,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: int | None = None,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """``torch.nn.Conv2d`` in NHWC: explicit symmetric padding, stride, dilation, optional bias."""
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=torch_padding(kernel_size, dilation, padding),
        kernel_dilation=(dilation, dilation),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def batch_norm(name: str, train: bool) -> nn.BatchNorm:
    """``torch.nn.BatchNorm2d`` (eps 1e-5, momentum 0.1) computed in float32."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        name=name,
    )


def _align_corners_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-tap indices and weights of 1-D bilinear resampling with ``align_corners=True``.

    Source coordinate ``i * (in - 1) / (out - 1)`` in float32, as PyTorch computes it.
    """
    scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0.0)
    src = np.arange(out_size, dtype=np.float32) * scale
    lo = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float32)
    return lo, hi, frac


def resize_bilinear(x: jax.Array, size: tuple[int, int], *, align_corners: bool = True) -> jax.Array:
    """Bilinear resize of ``x: [B, H, W, C]`` to ``size = (h, w)``, as ``F.interpolate(..., align_corners=True)``.

    Point sampling at ``i * (H - 1) / (h - 1)``, no antialiasing, also when shrinking (``jax.image.resize``
    antialiases, so it differs). Only ``align_corners=True`` exists in the released code.
    """
    if not align_corners:
        raise ValueError("resize_bilinear: only align_corners=True is implemented (the released code's mode)")
    if x.ndim != 4:
        raise ValueError(f"resize_bilinear expects [B, H, W, C], got shape {x.shape}")
    out_h, out_w = size
    if (out_h, out_w) == x.shape[1:3]:
        return x
    for axis, out_size in ((1, out_h), (2, out_w)):
        lo, hi, frac = _align_corners_taps(x.shape[axis], out_size)
        shape = [1, 1, 1, 1]
        shape[axis] = out_size
        w = jnp.asarray(frac, dtype=x.dtype).reshape(shape)
        a = jnp.take(x, jnp.asarray(lo), axis=axis)
        b = jnp.take(x, jnp.asarray(hi), axis=axis)
        x = a * (1 - w) + b * w
    return x


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """PyTorch's output size for ``scale_factor``: ``floor(in * scale)`` per side."""
    return int(np.floor(size[0] * scale)), int(np.floor(size[1] * scale))
