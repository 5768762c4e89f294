"""T-Net: propagates the query objects to a target frame with the global and local transfer modules."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from atnet_jax.models.config import ModelConfig
from atnet_jax.models.decoder import Decoder
from atnet_jax.models.encoder import Encoder
from atnet_jax.models.layers import Conv, resize_bilinear
from atnet_jax.models.transfer import global_transfer, local_transfer


def _batch_to(x: jax.Array, batch: int, axis: int = 0) -> jax.Array:
    """Broadcast a per-frame array (batch 1) to the object batch."""
    if x.shape[axis] == batch:
        return x
    shape = list(x.shape)
    shape[axis] = batch
    return jnp.broadcast_to(x, shape)


class FusionConv(nn.Module):
    """T-Net's ``conv1x1`` on ``concat(target r5, global output)`` (2C -> C, with bias), splittable.

    Parameters as ``nn.Conv`` with a 1x1 kernel (``kernel [1, 1, 2C, C]``, ``bias [C]``), so checkpoints and
    the converter see the released layer. A 1x1 conv is linear per pixel: ``W [t; g] + b = (W_t t + b) + W_g g``,
    and ``W_g`` commutes with the global transfer's weighted sum over annotated positions
    (``W_g (sum_i F_i S_i) / N = (sum_i (W_g F_i) S_i) / N``). So :meth:`target_half` can be computed once
    per frame and :meth:`global_half` once per annotated frame and object, instead of the full conv per
    target frame and object. The bias goes with the target half.
    """

    features: int  # C; the input has 2C channels
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, 2 * self.features, self.features),
                                 jnp.float32)
        self.bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)

    def _weights(self, in_features: int) -> tuple[jax.Array, jax.Array]:
        if in_features != 2 * self.features:
            raise ValueError(f"conv1x1 takes {2 * self.features} channels (target r5 and global output), "
                             f"got {in_features}")
        return self.kernel[0, 0].astype(self.dtype), self.bias.astype(self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [..., 2C]`` -> ``[..., C]``: the unsplit layer."""
        kernel, bias = self._weights(x.shape[-1])
        return jnp.einsum("...i,io->...o", x.astype(self.dtype), kernel) + bias

    def target_half(self, target_r5: jax.Array) -> jax.Array:
        """``W_t t + b`` for ``target_r5: [..., C]`` -> ``[..., C]``."""
        kernel, bias = self._weights(2 * target_r5.shape[-1])
        return jnp.einsum("...i,io->...o", target_r5.astype(self.dtype), kernel[: target_r5.shape[-1]]) + bias

    def global_half(self, values: jax.Array) -> jax.Array:
        """``W_g v`` for ``values: [..., C]`` (indicators ``F_o`` or the global output) -> ``[..., C]``."""
        kernel, _ = self._weights(2 * values.shape[-1])
        return jnp.einsum("...i,io->...o", values.astype(self.dtype), kernel[values.shape[-1]:])


class TransferNet(nn.Module):
    """T-Net: ``encode`` a frame once, then ``decode`` it for every object batch and round.

    ``__call__`` does both (training). Sessions run the split pair: :meth:`encode_split` computes, once per
    frame, everything of the decode that depends on the target frame alone (conv1x1's target half, the refine
    modules' skip branches), and :meth:`decode_split` reads it. Submodule names mirror the released state_dict:
    ``encoder_3ch``, ``decoder_prop``, ``prev_conv1x1`` (local-transfer features, shared by target and previous
    frame) and ``conv1x1`` (fuses target r5 with the global-transfer output).
    """

    config: ModelConfig

    def setup(self) -> None:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        self.encoder_3ch = Encoder(cfg, 3)
        self.decoder_prop = Decoder(cfg)
        self.prev_conv1x1 = Conv(cfg.out_channels[0], 1, dtype=dtype)
        self.conv1x1 = FusionConv(cfg.out_channels[3], dtype=dtype)

    def encode(self, image: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """``image: [B, H, W, 3]`` normalised RGB -> ``{"r2", "r3", "r4", "r5"}``."""
        return self.encoder_3ch(image, train=train)

    def encode_split(self, image: jax.Array) -> dict[str, jax.Array]:
        """What :meth:`decode_split` reads of a target frame, ``image: [B, H, W, 3]`` -> ``{"r2", "r5",
        "r5_fused", "s3", "s2"}``: the encoder's r2 (local transfer) and r5 (global transfer), conv1x1's target
        half (:meth:`fuse_target`) and the decoder's skip maps (:meth:`skips`; r3 is read by nothing else)."""
        feats = self.encode(image)
        return {"r2": feats["r2"], "r5": feats["r5"], "r5_fused": self.fuse_target(feats["r5"]),
                **self.skips(feats)}

    def skips(self, target: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The decoder's refine skip branches on the target's r3 and r2: ``{"s3": [B, H/8, W/8, W_d], "s2":
        [B, H/4, W/4, W_d]}`` (``W_d`` = decoder width), in the compute dtype."""
        return self.decoder_prop.skips(target["r3"], target["r2"])

    def local_features(self, r2: jax.Array) -> jax.Array:
        """The shared 1x1 conv applied to r2 before the local correlation."""
        return self.prev_conv1x1(r2)

    def decode(
        self,
        target: dict[str, jax.Array],
        annotated_r5: jax.Array,
        indicators: jax.Array,
        prev_r2: jax.Array,
        prev_prob: jax.Array,
        frame_mask: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Segment the target frame for a batch of B objects.

        Args:
          target: the target frame's ``encode`` output (batch 1 or B).
          annotated_r5: ``[N, 1 or B, h, w, C5]`` T-Net-encoder r5 of the N annotated frames.
          indicators: ``[N, B, h, w, C5]`` A-Net converter output (``F_o``) of each annotated frame.
          prev_r2: ``[1 or B, H/4, W/4, C2]`` raw T-Net-encoder r2 of the previous frame.
          prev_prob: ``[B, H, W, 1]`` the previous frame's object probability.
          frame_mask: optional ``[N]`` bool marking the valid annotated frames (padding to a fixed N).

        Returns ``(logits [B, H, W, 1], aux)`` with the ``global`` output, ``r5cat``, the ``local`` map
        ``L [B, H/4, W/4, 1]``, ``prev_ds`` and the decoder's ``m2``.
        """
        batch = indicators.shape[1]
        glob = self._global(target, annotated_r5, indicators, frame_mask)
        t_r5 = _batch_to(target["r5"], batch)
        r5cat = self.conv1x1(jnp.concatenate([t_r5, glob.astype(t_r5.dtype)], axis=-1))
        logits, aux = self._decode_fused(r5cat, target["r2"], self.skips(target), prev_r2, prev_prob, train=train)
        return logits, {"global": glob, "r5cat": r5cat, **aux}

    def fuse_target(self, r5: jax.Array) -> jax.Array:
        """``conv1x1``'s target half with its bias, ``r5: [B, h, w, C5]`` -> ``[B, h, w, C5]``: computed once per
        frame (with the encoder features) for :meth:`decode_split`."""
        return self.conv1x1.target_half(r5)

    def fuse_global(self, indicators: jax.Array) -> jax.Array:
        """``conv1x1``'s global half applied to the converter features, ``[..., C5] -> [..., C5]``: once per
        annotated frame and object for :meth:`decode_split` (it commutes with the global transfer)."""
        return self.conv1x1.global_half(indicators)

    def decode_split(
        self,
        target: dict[str, jax.Array],
        annotated_r5: jax.Array,
        fused_indicators: jax.Array,
        prev_r2: jax.Array,
        prev_prob: jax.Array,
        frame_mask: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """:meth:`decode` with the per-frame work done beforehand (equal up to float rounding, without the 2C -> C
        conv per frame and object, nor the refine modules' skip branches per frame and round): ``target`` is
        :meth:`encode_split`'s output (r2, r5, ``"r5_fused"``, the skip maps ``"s3"`` and ``"s2"``);
        ``fused_indicators = fuse_global(indicators)``. Returns ``(logits, aux)`` with ``r5cat`` and the
        decoder's maps."""
        batch = fused_indicators.shape[1]
        glob = self._global(target, annotated_r5, fused_indicators, frame_mask)
        fused = _batch_to(target["r5_fused"], batch)
        r5cat = fused + glob.astype(fused.dtype)
        skips = {"s3": target["s3"], "s2": target["s2"]}
        logits, aux = self._decode_fused(r5cat, target["r2"], skips, prev_r2, prev_prob, train=train)
        return logits, {"r5cat": r5cat, **aux}

    def _global(self, target: dict[str, jax.Array], annotated_r5: jax.Array, values: jax.Array,
                frame_mask: jax.Array | None) -> jax.Array:
        # Frame features (target, annotated, previous) stay at batch 1 where given so: the affinities and
        # the refine modules' skip branches are computed once for all objects.
        frames = max(annotated_r5.shape[1], target["r5"].shape[0])
        return global_transfer(_batch_to(annotated_r5, frames, axis=1), _batch_to(target["r5"], frames),
                               values, frame_mask=frame_mask, softmax_axis=self.config.global_softmax)

    def _decode_fused(self, r5cat: jax.Array, t_r2: jax.Array, skips: dict[str, jax.Array], prev_r2: jax.Array,
                      prev_prob: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Local transfer and decoder from the fused r5 and the target's skip maps."""
        cfg = self.config
        prev_ds = resize_bilinear(prev_prob.astype(jnp.float32), t_r2.shape[1:3])
        frames = max(t_r2.shape[0], prev_r2.shape[0])
        local = local_transfer(
            self.local_features(_batch_to(t_r2, frames)),
            self.local_features(_batch_to(prev_r2, frames)),
            prev_ds[..., 0],
            max_displacement=cfg.local_max_displacement,
            stride=cfg.local_stride,
            softmax_axis=cfg.local_softmax,
        )
        logits, dec = self.decoder_prop.from_skips(r5cat, skips, local, train=train)
        return logits, {"local": local, "prev_ds": prev_ds, "m2": dec["m2"], "coarse": dec["coarse"]}

    def __call__(
        self,
        image: jax.Array,
        annotated_r5: jax.Array,
        indicators: jax.Array,
        prev_r2: jax.Array,
        prev_prob: jax.Array,
        frame_mask: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``encode`` the target ``image [B, H, W, 3]`` and ``decode`` it (see :meth:`decode`)."""
        target = self.encode(image, train=train)
        return self.decode(target, annotated_r5, indicators, prev_r2, prev_prob, frame_mask, train=train)
