"""The host's last step of the networks: a sigmoid and an upsampling from basic float operations, within 2 ulp of
the exact sigmoid, equal to the jitted networks' own to about 1e-7, and the same bits however it is cut up."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

from atnet_jax.models.expand import expand_logits, sigmoid
from atnet_jax.models.layers import resize_bilinear


def test_sigmoid_is_within_2_ulp_of_the_exact_value():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-80, 80, 400_001, dtype=np.float32), rng.normal(0, 6, 100_000).astype(np.float32),
                        np.float32([0.0, -0.0, 1e-30, -1e-30, 15.9424, -15.9424])])
    exact = expit(x.astype(np.float64))
    ulps = np.abs(sigmoid(x).astype(np.float64) - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert sigmoid(x).dtype == np.float32
    assert ulps.max() <= 2.5, ulps.max()


def test_sigmoid_saturates_without_overflow_or_denormals():
    out = sigmoid(np.float32([-1e30, -1000, -80, 80, 1000, 1e30, np.float32(3e38)]))
    assert out[0] == out[1] == out[2] > np.finfo(np.float32).tiny
    assert (out[3:] == 1.0).all()


def test_expand_matches_the_jitted_upsampling_and_sigmoid():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 6, (2, 17, 27)).astype(np.float32)
    full = jax.jit(lambda y: jax.nn.sigmoid(resize_bilinear(y[..., None], (68, 108))))(jnp.asarray(logits))
    full = np.asarray(full)[..., 0]
    window = (3, 5, 60, 100)
    out = expand_logits(logits, 4, window)
    assert out.shape == (2, 60, 100) and out.dtype == np.float32
    np.testing.assert_allclose(out, full[:, 3:63, 5:105], rtol=0, atol=3e-7)


def test_expand_gives_the_same_bits_for_any_window():
    """Computing only the window gives the window of the whole map, bit for bit (each value depends on its own
    inputs alone, in a fixed order of operations)."""
    logits = np.random.default_rng(2).normal(0, 4, (3, 12, 20)).astype(np.float32)
    whole = expand_logits(logits, 4, (0, 0, 48, 80))
    for top, left, h, w in [(0, 0, 1, 1), (7, 9, 30, 50), (47, 79, 1, 1), (5, 0, 40, 80)]:
        part = expand_logits(logits, 4, (top, left, h, w))
        np.testing.assert_array_equal(part.view(np.uint32), whole[:, top : top + h, left : left + w].view(np.uint32))
    with pytest.raises(ValueError, match="outside"):
        expand_logits(logits, 4, (1, 0, 48, 80))
