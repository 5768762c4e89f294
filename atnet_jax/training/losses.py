"""Training losses: class-balanced BCE on the masks, MSE on T-Net's local-transfer map."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from atnet_jax.models.layers import resize_bilinear

_EPS = 1e-6


def balanced_bce(logits: jax.Array, target: jax.Array, valid: jax.Array) -> jax.Array:
    """Class-balanced binary cross-entropy (as OSVOS), mean over the batch.

    ``logits, target, valid: [B, H, W, 1]`` (``target``, ``valid`` in {0, 1}). Per example, with ``P`` and
    ``N`` the valid positive and negative pixels: ``(N * loss_pos + P * loss_neg) / (P + N)^2``, where
    ``loss_pos`` / ``loss_neg`` sum the cross-entropy over positive / negative pixels, so each class weighs
    by the other's share and the result is a per-pixel mean.
    """
    logits = logits.astype(jnp.float32)
    axes = tuple(range(1, logits.ndim))
    pos_mask, neg_mask = target * valid, (1.0 - target) * valid
    num_pos, num_neg = jnp.sum(pos_mask, axes), jnp.sum(neg_mask, axes)
    total = jnp.maximum(num_pos + num_neg, _EPS)
    loss_pos = -jnp.sum(pos_mask * jax.nn.log_sigmoid(logits), axes)
    loss_neg = -jnp.sum(neg_mask * jax.nn.log_sigmoid(-logits), axes)
    return jnp.mean((num_neg * loss_pos + num_pos * loss_neg) / (total * total))


def downsample_target(target: jax.Array, valid: jax.Array, size: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """``[B, H, W, 1]`` GT and valid mask -> ``[B, h, w, 1]``: bilinear GT (align corners, as the network
    resizes the previous mask), valid where the resized valid mask is over 0.5."""
    return resize_bilinear(target, size), (resize_bilinear(valid, size) > 0.5).astype(jnp.float32)


def local_map_mse(local: jax.Array, target: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean squared error of the local-transfer map ``L [B, h, w, 1]`` against the GT ``[B, H, W, 1]``
    downsampled to ``h x w``, over valid pixels, mean over the batch."""
    small, small_valid = downsample_target(target, valid, local.shape[1:3])
    axes = tuple(range(1, local.ndim))
    err = jnp.sum(small_valid * (local.astype(jnp.float32) - small) ** 2, axes)
    return jnp.mean(err / jnp.maximum(jnp.sum(small_valid, axes), 1.0))
