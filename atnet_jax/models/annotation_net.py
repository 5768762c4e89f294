"""A-Net: segments the annotated frame from RGB, the previous mask and scribble maps; plus its converter."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from atnet_jax.models.config import ModelConfig
from atnet_jax.models.decoder import Decoder
from atnet_jax.models.encoder import Encoder, SEBottleneck
from atnet_jax.models.layers import Conv


class Converter(nn.Module):
    """The A-Net -> T-Net bridge (``indicator_encoder``): query-object features ``F_o`` at 1/16.

    Two SE bottlenecks with stride 2 on the decoder's ``m2 [B, H/4, W/4, 2*width]`` (no max-pool in the
    released code), concatenated with the encoder's ``r5`` and fused by a 1x1 conv with bias
    -> ``[B, H/16, W/16, C5]``.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, m2: jax.Array, r5: jax.Array, *, train: bool) -> jax.Array:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        x = m2
        for i in (2, 3):
            x = SEBottleneck(
                cfg.stage_widths[i], cfg.out_channels[i], stride=2, se_reduction=cfg.se_reduction, dtype=dtype,
                name=f"block{i - 1}",
            )(x, train=train)
        x = jnp.concatenate([x, r5.astype(x.dtype)], axis=-1)
        return Conv(cfg.out_channels[3], 1, dtype=dtype, name="conv1x1")(x)


class AnnotationNet(nn.Module):
    """A-Net. ``image: [B, H, W, 3]`` normalised RGB, ``interaction: [B, H, W, 3]`` = [previous mask,
    positive scribbles, negative scribbles] (round 1: previous mask 0.5, negative 0); H, W multiples of 32.

    Returns ``(logits [B, H, W, 1] float32, aux)``; ``aux`` holds the encoder features ``r2..r5``, the
    decoder's ``m2``, its logits at 1/4 before the upsampling ``coarse`` and the converter output ``indicator``
    (``F_o``, [B, H/16, W/16, C5]).
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self, image: jax.Array, interaction: jax.Array, *, train: bool = False
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        x = jnp.concatenate([image, interaction.astype(image.dtype)], axis=-1)
        feats = Encoder(self.config, 6, name="encoder_6ch")(x, train=train)
        logits, dec = Decoder(self.config, name="decoder_iact")(feats["r5"], feats["r3"], feats["r2"], train=train)
        indicator = Converter(self.config, name="indicator_encoder")(dec["m2"], feats["r5"], train=train)
        return logits, {**feats, "m2": dec["m2"], "coarse": dec["coarse"], "indicator": indicator}
