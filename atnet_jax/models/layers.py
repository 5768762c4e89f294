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


# XLA:CPU runs an undilated k x k convolution over more than 256 input channels below the speed of one over 256
# (512 -> 256 channels at 1/4 of 480p: 0.89x of the time when split in two; dilated ones gain nothing): there, it
# sums convolutions over groups of this many input channels. Other backends convolve whole.
CPU_CHANNEL_GROUP = 256


class Conv2d(nn.Module):
    """``torch.nn.Conv2d`` in NHWC: explicit symmetric padding, stride, dilation, optional bias.

    Parameters as ``nn.Conv`` (``kernel [k, k, Cin, features]`` in float32, ``bias [features]``), computed in
    ``dtype``. On a CPU an undilated k x k kernel (k > 1) over more than :data:`CPU_CHANNEL_GROUP` input channels is
    the sum of convolutions over groups of that many channels: same result up to the order of the sums, same FLOPs.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    padding: int | None = None
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, cin = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, cin, self.features), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        grouped = k > 1 and self.dilation == 1 and jax.default_backend() == "cpu"
        group = CPU_CHANNEL_GROUP if grouped else cin
        y = None
        for start in range(0, cin, group):
            part = jax.lax.conv_general_dilated(
                x[..., start : start + group], kernel[:, :, start : start + group], (self.stride, self.stride),
                torch_padding(k, self.dilation, self.padding), rhs_dilation=(self.dilation, self.dilation),
                dimension_numbers=("NHWC", "HWIO", "NHWC"))
            y = part if y is None else y + part
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32).astype(self.dtype)
        return y


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
) -> Conv2d:
    """``torch.nn.Conv2d`` in NHWC (:class:`Conv2d`): explicit symmetric padding, stride, dilation, optional bias."""
    return Conv2d(features, kernel_size, stride, dilation, padding, use_bias, dtype, name=name)


class TapConv(nn.Module):
    """:func:`Conv` at stride 1 with the default padding, computed as one GEMM per kernel tap.

    ``x: [B, H, W, Cin]`` -> ``[B, H, W, features]``. Tap ``(i, j)`` of a dilation-``d`` kernel reads the input
    shifted by ``(i*d - p, j*d - p)``; its GEMM takes only the input rectangle that lands inside the output, and the
    k*k products are summed, each padded back to its place. Same parameters (``kernel [k, k, Cin, features]``,
    optional ``bias``), result (up to the order of the sums) and FLOPs (XLA counts the taps that meet the map) as
    ``Conv(features, k, dilation=d)``. XLA:CPU's dilated convolution is several times slower per FLOP when the
    dilated kernel spans more than the map (ASPP's dilation 18 at 1/16 of 480p); GEMMs run at full speed.
    """

    features: int
    kernel_size: int = 3
    dilation: int = 1
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, d = self.kernel_size, self.dilation
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features),
                            jnp.float32).astype(self.dtype)
        x = x.astype(self.dtype)
        _, h, w, _ = x.shape
        p = d * (k - 1) // 2
        y = None
        for i in range(k):
            for j in range(k):
                dy, dx = i * d - p, j * d - p  # output (r, c) reads input (r + dy, c + dx)
                top, bottom, left, right = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
                if top >= bottom or left >= right:
                    continue  # the tap meets only padding
                part = jnp.einsum("bhwc,co->bhwo", x[:, top + dy: bottom + dy, left + dx: right + dx], kernel[i, j])
                part = jnp.pad(part, ((0, 0), (top, h - bottom), (left, w - right), (0, 0)))
                y = part if y is None else y + part
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32).astype(self.dtype)
        return y


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


def align_corners_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        lo, hi, frac = align_corners_taps(x.shape[axis], out_size)
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
