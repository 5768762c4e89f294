"""SE-ResNet50 encoder with a dilated res5 (output stride 16), as in the released code."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from atnet_jax.models.config import ModelConfig
from atnet_jax.models.layers import Conv, batch_norm


class SEBottleneck(nn.Module):
    """SE-ResNet bottleneck: 1x1 -> 3x3 (stride, dilation) -> 1x1, BN after each, squeeze-excitation.

    ``relu(sigmoid(SE(bn3)) * bn3 + shortcut)``; the shortcut is ``downsample.0`` (1x1 conv) +
    ``downsample.1`` (BN) when the shape changes. Mirrors the PyTorch ``SEBottleneck`` state_dict names.
    """

    width: int
    out_channels: int
    stride: int = 1
    dilation: int = 1
    se_reduction: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = lambda f, k, name, **kw: Conv(f, k, use_bias=False, dtype=self.dtype, name=name, **kw)  # noqa: E731
        y = nn.relu(batch_norm("bn1", train)(conv(self.width, 1, "conv1")(x)))
        y = conv(self.width, 3, "conv2", stride=self.stride, dilation=self.dilation)(y)
        y = nn.relu(batch_norm("bn2", train)(y))
        y = batch_norm("bn3", train)(conv(self.out_channels, 1, "conv3")(y))
        s = jnp.mean(y, axis=(1, 2), keepdims=True)
        s = nn.relu(conv(self.out_channels // self.se_reduction, 1, "conv_down")(s))
        s = nn.sigmoid(conv(self.out_channels, 1, "conv_up")(s))
        if self.stride != 1 or x.shape[-1] != self.out_channels:
            shortcut = conv(self.out_channels, 1, "downsample_0", stride=self.stride)(x)
            shortcut = batch_norm("downsample_1", train)(shortcut)
        else:
            shortcut = x
        return nn.relu(y * s + shortcut)


class Encoder(nn.Module):
    """SE-ResNet50 on ``x: [B, H, W, in_channels]`` (6 for A-Net, 3 for T-Net).

    Returns ``{"r2": 1/4, "r3": 1/8, "r4": 1/16, "r5": 1/16}`` feature maps (256, 512, 1024, 2048 channels at
    full size). conv0 7x7/2 with bias -> BN -> ReLU -> maxpool 3x3/2; res3, res4 stride 2; res5 stride 1
    with multi-grid dilations.
    """

    config: ModelConfig
    in_channels: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        x = Conv(cfg.stem_width, 7, stride=2, padding=3, dtype=dtype, name=f"conv0_{self.in_channels}ch")(x)
        x = nn.relu(batch_norm("bn1", train)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        feats: dict[str, jax.Array] = {}
        strides = (1, 2, 2, 1)
        for stage, (width, out, blocks, stride) in enumerate(
            zip(cfg.stage_widths, cfg.out_channels, cfg.stage_blocks, strides)
        ):
            name = f"res{stage + 2}"
            for i in range(blocks):
                dilation = cfg.res5_dilations[i] if stage == 3 else 1
                x = SEBottleneck(
                    width,
                    out,
                    stride=stride if i == 0 else 1,
                    dilation=dilation,
                    se_reduction=cfg.se_reduction,
                    dtype=dtype,
                    name=f"{name}_{i}",
                )(x, train=train)
            feats[f"r{stage + 2}"] = x
        return feats
