"""ASPP + refine-module decoder shared by A-Net (``decoder_iact``) and T-Net (``decoder_prop``)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from atnet_jax.models.config import ModelConfig
from atnet_jax.models.layers import Conv, TapConv, batch_norm, resize_bilinear, scaled_size


def _upsample(x: jax.Array, scale: float) -> jax.Array:
    return resize_bilinear(x, scaled_size(x.shape[1:3], scale))


class _ASPPBranch(nn.Module):
    """One ASPP branch: conv (``atrous_conv``, no bias) -> BN -> ReLU."""

    width: int
    kernel_size: int
    dilation: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        if self.dilation > 1:  # XLA:CPU: 2-2.5x faster at dilations 12 and 18 on a 32x54 map, no slower at 6
            conv = TapConv(self.width, self.kernel_size, self.dilation, use_bias=False, dtype=self.dtype,
                           name="atrous_conv")
        else:
            conv = Conv(self.width, self.kernel_size, dilation=self.dilation, use_bias=False, dtype=self.dtype,
                        name="atrous_conv")
        y = conv(x)
        return nn.relu(batch_norm("bn", train)(y))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling on r5 (DeepLab v3): 1x1, three dilated 3x3, image pooling -> 1x1.

    ``x: [B, h, w, C] -> [B, h, w, width]``; conv/BN/ReLU branches without bias, dropout after fusion.
    """

    width: int
    rates: tuple[int, int, int]
    dropout: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        branches = [
            _ASPPBranch(self.width, 1 if i == 0 else 3, rate, dtype=self.dtype, name=f"aspp{i + 1}")(x, train=train)
            for i, rate in enumerate((1, *self.rates))
        ]
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
        pooled = Conv(self.width, 1, use_bias=False, dtype=self.dtype, name="global_avg_pool_1")(pooled)
        pooled = nn.relu(batch_norm("global_avg_pool_2", train)(pooled))
        branches.append(jnp.broadcast_to(pooled, branches[0].shape).astype(branches[0].dtype))
        y = jnp.concatenate(branches, axis=-1)
        y = Conv(self.width, 1, use_bias=False, dtype=self.dtype, name="conv1")(y)
        y = nn.relu(batch_norm("bn1", train)(y))
        return nn.Dropout(self.dropout, deterministic=not train)(y)


class Refine(nn.Module):
    """Refine module: fuse an encoder skip feature ``f`` with the coarser decoder map ``pm`` (upsampled x2).

    ``s = FS1(f); s = s + FS3(relu(FS2(relu(s)))); m = s + up2(pm); m = m + MM2(relu(MM1(relu(m))))``;
    all 3x3 convs with bias, no BN. The skip branch ``s`` (:meth:`skip`) depends on ``f`` alone, so a caller
    may compute it once per frame and :meth:`merge` it with every ``pm``.
    """

    width: int
    dtype: Any = jnp.float32

    def setup(self) -> None:
        conv = lambda: Conv(self.width, 3, dtype=self.dtype)  # noqa: E731
        self.convFS1, self.convFS2, self.convFS3 = conv(), conv(), conv()
        self.convMM1, self.convMM2 = conv(), conv()

    def skip(self, f: jax.Array) -> jax.Array:
        """``s = FS1(f) + FS3(relu(FS2(relu(FS1(f)))))``: ``f [B, h, w, C] -> [B, h, w, width]``."""
        s = self.convFS1(f)
        return s + self.convFS3(nn.relu(self.convFS2(nn.relu(s))))

    def merge(self, s: jax.Array, pm: jax.Array) -> jax.Array:
        """``m = s + up2(pm); m + MM2(relu(MM1(relu(m))))`` for a skip map ``s`` from :meth:`skip`."""
        m = s.astype(self.dtype) + _upsample(pm, 2)
        return m + self.convMM2(nn.relu(self.convMM1(nn.relu(m))))

    def __call__(self, f: jax.Array, pm: jax.Array) -> jax.Array:
        return self.merge(self.skip(f), pm)


class Decoder(nn.Module):
    """Decoder on ``r5 [B, h, w, C5]`` with skips ``r3`` (1/8) and ``r2`` (1/4) -> logits ``[B, 4h*4, 4w*4, 1]``.

    ``local_map`` (T-Net only, ``[B, H/4, W/4, 1]``): the local-transfer estimate, added as ``0.5 * L`` to the
    1/8 (downsampled) and 1/4 refine outputs. Returns ``(logits, aux)`` with ``aux["m2"]`` = concat(refine
    output at 1/4, upsampled ASPP) -- the A-Net converter's input -- and ``aux["coarse"]``, the logits at 1/4
    before their upsampling (:func:`atnet_jax.models.expand.expand_logits` finishes them on the host).

    ``__call__`` = :meth:`from_skips` on :meth:`skips`: the refine modules' skip branches depend on ``r3`` and
    ``r2`` alone, so a caller that decodes one frame many times (T-Net) computes them once.
    """

    config: ModelConfig

    def setup(self) -> None:
        width, dtype = self.config.decoder_width, jnp.dtype(self.config.dtype)
        self.RF3 = Refine(width, dtype=dtype)
        self.RF2 = Refine(width, dtype=dtype)

    def skips(self, r3: jax.Array, r2: jax.Array) -> dict[str, jax.Array]:
        """The refine modules' skip branches: ``{"s3": [B, H/8, W/8, width], "s2": [B, H/4, W/4, width]}``."""
        return {"s3": self.RF3.skip(r3), "s2": self.RF2.skip(r2)}

    def __call__(
        self,
        r5: jax.Array,
        r3: jax.Array,
        r2: jax.Array,
        local_map: jax.Array | None = None,
        *,
        train: bool,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        return self.from_skips(r5, self.skips(r3, r2), local_map, train=train)

    @nn.compact
    def from_skips(
        self,
        r5: jax.Array,
        skips: dict[str, jax.Array],
        local_map: jax.Array | None = None,
        *,
        train: bool,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The decoder with the skip maps of :meth:`skips` given (batch 1 or B)."""
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        width = cfg.decoder_width
        aspp = ASPP(width, cfg.aspp_rates, cfg.aspp_dropout, dtype=dtype, name="aspp_decoder")(r5, train=train)
        aspp = _upsample(aspp, 4)

        conv = lambda name: Conv(width, 3, dtype=dtype, name=name)  # noqa: E731
        m4 = conv("convG2")(nn.relu(conv("convG1")(nn.relu(conv("convG0")(nn.relu(r5))))))
        m3 = self.RF3.merge(skips["s3"], m4)
        if local_map is not None:
            local_map = local_map.astype(m3.dtype)
            m3 = m3 + 0.5 * resize_bilinear(local_map, m3.shape[1:3])
        m2 = self.RF2.merge(skips["s2"], m3)
        if local_map is not None:
            m2 = m2 + 0.5 * local_map
        m2 = jnp.concatenate([m2, aspp.astype(m2.dtype)], axis=-1)

        y = Conv(width, 3, use_bias=False, dtype=dtype, name="lastconv_0")(m2)
        y = nn.relu(batch_norm("lastconv_1", train)(y))
        y = nn.Dropout(cfg.head_dropouts[0], deterministic=not train)(y)
        y = Conv(width, 3, use_bias=False, dtype=dtype, name="lastconv_4")(y)
        y = nn.relu(batch_norm("lastconv_5", train)(y))
        y = nn.Dropout(cfg.head_dropouts[1], deterministic=not train)(y)
        coarse = Conv(1, 1, dtype=dtype, name="lastconv_8")(y).astype(jnp.float32)
        return _upsample(coarse, 4), {"m2": m2, "aspp": aspp, "coarse": coarse}
