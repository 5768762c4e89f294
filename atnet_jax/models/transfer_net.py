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


class TransferNet(nn.Module):
    """T-Net: ``encode`` a frame once, then ``decode`` it for every object batch and round.

    ``__call__`` does both (training). Submodule names mirror the released state_dict: ``encoder_3ch``,
    ``decoder_prop``, ``prev_conv1x1`` (local-transfer features, shared by target and previous frame) and
    ``conv1x1`` (fuses target r5 with the global-transfer output).
    """

    config: ModelConfig

    def setup(self) -> None:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        self.encoder_3ch = Encoder(cfg, 3)
        self.decoder_prop = Decoder(cfg)
        self.prev_conv1x1 = Conv(cfg.out_channels[0], 1, dtype=dtype)
        self.conv1x1 = Conv(cfg.out_channels[3], 1, dtype=dtype)

    def encode(self, image: jax.Array, *, train: bool = False) -> dict[str, jax.Array]:
        """``image: [B, H, W, 3]`` normalised RGB -> ``{"r2", "r3", "r4", "r5"}``."""
        return self.encoder_3ch(image, train=train)

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
        cfg = self.config
        batch = indicators.shape[1]
        # Frame features (target, annotated, previous) stay at batch 1 where given so: the affinities and
        # the refine modules' skip branches are computed once for all objects.
        frames = max(annotated_r5.shape[1], target["r5"].shape[0])
        glob = global_transfer(_batch_to(annotated_r5, frames, axis=1), _batch_to(target["r5"], frames),
                               indicators, frame_mask=frame_mask, softmax_axis=cfg.global_softmax)
        t_r5 = _batch_to(target["r5"], batch)
        r5cat = self.conv1x1(jnp.concatenate([t_r5, glob.astype(t_r5.dtype)], axis=-1))

        t_r2 = target["r2"]
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
        logits, dec = self.decoder_prop(r5cat, target["r3"], t_r2, local, train=train)
        return logits, {"global": glob, "r5cat": r5cat, "local": local, "prev_ds": prev_ds, "m2": dec["m2"]}

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
