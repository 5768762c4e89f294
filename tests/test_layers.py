"""Torch-numerics helpers: align-corners resize, explicit padding, pre-processing."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atnet_jax.models.layers import Conv, Conv2d, TapConv, resize_bilinear, scaled_size, torch_padding
from atnet_jax.models.preprocess import crop_padding, normalize_frames, pad_info_for, reflect_pad


def numpy_resize_align_corners(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Loop reference: out[i, j] interpolates x at (i * (H-1)/(h-1), j * (W-1)/(w-1)), float64."""
    b, h, w, c = x.shape
    out = np.zeros((b, out_h, out_w, c))
    for i in range(out_h):
        sy = i * (h - 1) / (out_h - 1) if out_h > 1 else 0.0
        y0 = min(int(np.floor(sy)), h - 1)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(out_w):
            sx = j * (w - 1) / (out_w - 1) if out_w > 1 else 0.0
            x0 = min(int(np.floor(sx)), w - 1)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = (1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1]
            bottom = (1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]
            out[:, i, j] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize("in_hw,out_hw", [((4, 7), (16, 28)), ((16, 28), (4, 7)), ((5, 9), (10, 18)),
                                          ((1, 1), (6, 5)), ((12, 16), (3, 4)), ((7, 3), (7, 11))])
def test_resize_matches_align_corners_reference(in_hw, out_hw):
    x = np.random.default_rng(0).standard_normal((2, *in_hw, 3)).astype(np.float32)
    got = np.asarray(jax.jit(resize_bilinear, static_argnums=1)(jnp.asarray(x), out_hw))
    assert got.shape == (2, *out_hw, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, numpy_resize_align_corners(x.astype(np.float64), *out_hw), atol=2e-6)


def test_resize_keeps_corners_and_identity():
    x = jnp.asarray(np.random.default_rng(1).random((1, 6, 10, 2)), jnp.float32)
    y = resize_bilinear(x, (23, 37))
    for yi, xi in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        np.testing.assert_allclose(y[0, yi, xi], x[0, yi, xi], atol=1e-6)
    assert resize_bilinear(x, (6, 10)) is x
    with pytest.raises(ValueError, match="align_corners=True"):
        resize_bilinear(x, (3, 5), align_corners=False)


def test_resize_differs_from_jax_image_resize():
    # jax.image.resize is half-pixel and antialiased: not the released code's resize.
    x = jnp.asarray(np.random.default_rng(2).random((1, 16, 16, 1)), jnp.float32)
    ours = resize_bilinear(x, (4, 4))
    theirs = jax.image.resize(x, (1, 4, 4, 1), "bilinear")
    assert float(jnp.max(jnp.abs(ours - theirs))) > 1e-2


def test_scaled_size_floors():
    assert scaled_size((16, 28), 4) == (64, 112)
    assert scaled_size((64, 112), 0.25) == (16, 28)
    assert scaled_size((65, 113), 0.5) == (32, 56)


@pytest.mark.parametrize("size,pads", [(480, (16, 16)), (854, (5, 5)), (240, (8, 8)), (427, (10, 11)),
                                       (256, (16, 16)), (1, (15, 16))])
def test_pad_info_reaches_next_strictly_larger_multiple(size, pads):
    (top, bottom), (left, right) = pad_info_for(size, size)
    assert (top, bottom) == pads == (left, right)
    assert (size + top + bottom) % 32 == 0 and top + bottom > 0


def test_reflect_pad_and_crop_round_trip():
    x = np.random.default_rng(3).random((2, 20, 27, 3)).astype(np.float32)
    pad = pad_info_for(20, 27)
    padded = reflect_pad(x, pad)
    assert padded.shape == (2, 32, 32, 3)
    (top, _), (left, _) = pad
    # mirror without repeating the edge row/column
    np.testing.assert_array_equal(padded[:, top - 1, left : left + 27], x[:, 1])
    np.testing.assert_array_equal(padded[:, top : top + 20, left - 1], x[:, :, 1])
    np.testing.assert_array_equal(crop_padding(padded, pad), x)


def test_normalize_frames():
    frames = np.array([[[[0, 128, 255]]]], np.uint8)
    got = normalize_frames(frames)
    want = (np.array([0, 128, 255]) / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0, 0, 0], want, rtol=1e-6)


@pytest.mark.parametrize("size,kernel,stride,dilation", [(9, 3, 2, 1), (10, 7, 2, 1), (8, 3, 1, 4), (11, 1, 2, 1)])
def test_conv_uses_torch_symmetric_padding(size, kernel, stride, dilation):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, size, size, 2)).astype(np.float32)
    conv = Conv(3, kernel, stride=stride, dilation=dilation, use_bias=False)
    variables = conv.init(jax.random.key(0), jnp.asarray(x))
    w = np.asarray(variables["params"]["kernel"], np.float64)
    p = torch_padding(kernel, dilation)[0][0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    out_size = (size + 2 * p - dilation * (kernel - 1) - 1) // stride + 1
    want = np.zeros((1, out_size, out_size, 3))
    for i in range(out_size):
        for j in range(out_size):
            for ky in range(kernel):
                for kx in range(kernel):
                    want[0, i, j] += xp[0, i * stride + ky * dilation, j * stride + kx * dilation] @ w[ky, kx]
    got = np.asarray(conv.apply(variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_torch_padding_default_keeps_size():
    assert torch_padding(3) == ((1, 1), (1, 1))
    assert torch_padding(3, dilation=8) == ((8, 8), (8, 8))
    assert torch_padding(7, padding=3) == ((3, 3), (3, 3))
    assert isinstance(Conv(4), Conv2d)


def numpy_conv(x: np.ndarray, kernel: np.ndarray, dilation: int) -> np.ndarray:
    """Loop reference of a stride-1 conv with padding ``dilation * (k - 1) // 2``, float64, zero outside."""
    b, h, w, _ = x.shape
    k = kernel.shape[0]
    p = dilation * (k - 1) // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((b, h, w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += padded[:, i * dilation: i * dilation + h, j * dilation: j * dilation + w] @ kernel[i, j]
    return out


@pytest.mark.parametrize("dilation, kernel_size, use_bias", [(1, 3, True), (3, 3, False), (7, 3, False),
                                                               (18, 3, False), (2, 5, True)])
def test_tap_conv_equals_the_convolution(dilation, kernel_size, use_bias):
    """Dilations below, near and beyond the map's size (7x9): the taps' GEMM and shifted sum give the conv."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 5))
    conv = Conv(4, kernel_size, dilation=dilation, use_bias=use_bias)
    variables = conv.init(jax.random.key(1), x)
    if use_bias:
        variables = jax.tree.map(lambda v: v + 0.5 if v.ndim == 1 else v, variables)
    tap = TapConv(4, kernel_size, dilation, use_bias=use_bias)
    assert jax.tree.map(jnp.shape, tap.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, variables)
    expected = numpy_conv(np.asarray(x), np.asarray(variables["params"]["kernel"]), dilation)
    if use_bias:
        expected += np.asarray(variables["params"]["bias"])
    np.testing.assert_allclose(np.asarray(tap.apply(variables, x)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(conv.apply(variables, x)), expected, atol=1e-5)


def test_conv_over_many_channels_sums_groups_on_a_cpu():
    """600 input channels: three convolutions of at most 256 channels on a CPU, the loop reference's result;
    a dilated kernel convolves whole."""
    x = jax.random.normal(jax.random.key(0), (1, 6, 7, 600))
    conv = Conv(4, 3)
    variables = conv.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias
    got = np.asarray(conv.apply(variables, x))
    want = numpy_conv(np.asarray(x), np.asarray(variables["params"]["kernel"]), 1) + 0.1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    def groups(conv) -> list[int]:
        eqns = jax.make_jaxpr(conv.apply)(variables, x).jaxpr.eqns
        return [e.invars[0].aval.shape[-1] for e in eqns if e.primitive.name == "conv_general_dilated"]

    assert groups(conv) == ([256, 256, 88] if jax.default_backend() == "cpu" else [600])
    assert groups(Conv(4, 3, dilation=2)) == [600]
