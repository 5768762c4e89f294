"""The compiled network calls an interactive session needs, behind one small interface.

A session (:mod:`atnet_jax.inference.session`) asks a :class:`Predictor` for four things: annotate a frame
(A-Net), encode a frame (T-Net's encoder), fuse an annotated frame's global features, and one propagation step
(T-Net's decoder). :class:`ATNetPredictor` runs the released ATNet with jit-compiled calls; a second network is a
second implementation of the same four methods (tests drive whole sessions with a NumPy one).

Shapes (``hp, wp``: the padded processing size; K objects; B frames; N annotated frames so far, padded):
  annotate(images [K, hp, wp, 3], interaction [K, hp, wp, 3]) -> (outputs, indicator)
  encode(images [B, hp, wp, 3]) -> {"r2", "r5", "r5_fused", "s3", "s2": [B, ...]} (what depends on a frame alone)
  fuse(indicator) -> fused indicator (what ``step`` reads per annotated frame)
  step(target, annotated_r5 [N, 1, ...], fused [N, K, ...], frame_mask [N], prev_r2, prev_prob [K, hp, wp, 1])
      -> outputs
  step_chains(targets, annotated_r5, fused, frame_mask, prev_r2s, prev_probs): ``step`` for D chains at once
      (D targets, previous r2 and previous probabilities, one each; the annotated frames shared) -> D outputs
  probabilities(outputs) -> [K, hp, wp, 1] (what the next step reads as ``prev_prob``)
  logits(outputs) -> the logits before the last upsampling, [K, hp / s, wp / s, 1] with s = ``logits_stride``, or None
By default the outputs are the probabilities themselves and there are no logits. ``ATNetPredictor``'s outputs
are (probabilities, logits at 1/4): a session stores :func:`atnet_jax.models.expand.expand_logits` of the logits,
which the studio can recompute exactly from them. Arrays may be JAX or NumPy: the session copies what it keeps to
the host.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax

from atnet_jax.models.annotation_net import AnnotationNet
from atnet_jax.models.config import ModelConfig
from atnet_jax.models.transfer_net import TransferNet

PRECISIONS = {"float32": "float32", "bf16": "bfloat16"}
"""``precision`` names -> the networks' compute dtype (:attr:`ModelConfig.dtype`)."""


class Predictor(abc.ABC):
    """What a session needs of a network. ``warmed`` holds the shape keys compiled so far (see
    :meth:`atnet_jax.inference.session.Session.warmup`); ``trace_counts`` how often each call was compiled."""

    warmed: set[tuple[int, ...]]
    logits_stride: int | None = None
    """The stride of :meth:`logits` (None: the outputs hold no logits)."""

    @abc.abstractmethod
    def annotate(self, images: Any, interaction: Any) -> tuple[Any, Any]:
        """A-Net on one frame for every object -> (outputs, converter features)."""

    @abc.abstractmethod
    def encode(self, images: Any) -> dict[str, Any]:
        """T-Net's encoder features of ``B`` frames (what :meth:`step` reads as ``target`` and ``prev_r2``)."""

    @abc.abstractmethod
    def fuse(self, indicator: Any) -> Any:
        """An annotated frame's converter features as :meth:`step` reads them."""

    @abc.abstractmethod
    def step(self, target: dict[str, Any], annotated_r5: Any, fused: Any, frame_mask: Any, prev_r2: Any,
             prev_prob: Any) -> Any:
        """One propagation step: the target frame's outputs from the previous frame's probabilities."""

    def step_chains(self, targets: Sequence[dict[str, Any]], annotated_r5: Any, fused: Any, frame_mask: Any,
                    prev_r2s: Sequence[Any], prev_probs: Sequence[Any]) -> list[Any]:
        """:meth:`step` for D independent chains (e.g. a round's backward and forward chains) that share the
        annotated frames -> D outputs. This default runs them one after the other; a
        network can run them as one batch."""
        return [self.step(target, annotated_r5, fused, frame_mask, prev_r2, prev_prob)
                for target, prev_r2, prev_prob in zip(targets, prev_r2s, prev_probs, strict=True)]

    def probabilities(self, outputs: Any) -> Any:
        """The probabilities ``[K, hp, wp, 1]`` of :meth:`annotate`'s or :meth:`step`'s outputs."""
        return outputs

    def logits(self, outputs: Any) -> Any | None:
        """The outputs' logits at 1/:attr:`logits_stride` before the last upsampling and sigmoid, or None."""
        return None

    @property
    def trace_counts(self) -> dict[str, int]:
        return {}


@dataclasses.dataclass
class _Compiled:
    """The jitted calls of one network config, shared by every predictor of that config (one compile per shape)."""

    annotate: Callable[..., Any]
    encode: Callable[..., Any]
    fuse: Callable[..., Any]
    step: Callable[..., Any]
    step_chains: Callable[..., Any]
    traces: dict[str, int]
    warmed: set[tuple[int, ...]] = dataclasses.field(default_factory=set)


@functools.lru_cache(maxsize=4)
def _compiled(config: ModelConfig) -> _Compiled:
    anet, tnet = AnnotationNet(config), TransferNet(config)
    traces = {"anet": 0, "encode": 0, "fuse": 0, "step": 0, "step_chains": 0}

    def annotate(variables, images, interaction):
        traces["anet"] += 1
        logits, aux = anet.apply(variables, images, interaction)
        return (jax.nn.sigmoid(logits), aux["coarse"]), aux["indicator"]

    def encode(variables, images):
        # With conv1x1's target half and the decoder's skip maps: they depend on the frame alone, so they are
        # cached with the features and every later step and round reads them.
        traces["encode"] += 1
        return tnet.apply(variables, images, method=TransferNet.encode_split)

    def fuse(variables, indicator):
        traces["fuse"] += 1
        return tnet.apply(variables, indicator, method=TransferNet.fuse_global)

    def decode(variables, target, annotated_r5, fused, frame_mask, prev_r2, prev_prob):
        logits, aux = tnet.apply(variables, target, annotated_r5, fused, prev_r2, prev_prob, frame_mask,
                                 method=TransferNet.decode_split)
        return jax.nn.sigmoid(logits), aux["coarse"]

    def step(variables, target, annotated_r5, fused, frame_mask, prev_r2, prev_prob):
        traces["step"] += 1
        return decode(variables, target, annotated_r5, fused, frame_mask, prev_r2, prev_prob)

    def step_chains(variables, targets, annotated_r5, fused, frame_mask, prev_r2s, prev_probs):
        # vmap over the chains: each keeps its target at batch 1 for its K objects (one affinity per frame), and
        # the annotated frames are shared; one call, so the chains' convolutions run as one batch.
        traces["step_chains"] += 1
        stack = functools.partial(jax.tree_util.tree_map, lambda *xs: jax.numpy.stack(xs))
        out = jax.vmap(decode, in_axes=(None, 0, None, None, None, 0, 0))(
            variables, stack(*targets), annotated_r5, fused, frame_mask, stack(*prev_r2s), stack(*prev_probs))
        return [(probabilities, logits) for probabilities, logits in zip(*out, strict=True)]

    return _Compiled(jax.jit(annotate), jax.jit(encode), jax.jit(fuse), jax.jit(step), jax.jit(step_chains), traces)


class ATNetPredictor(Predictor):
    """The released ATNet (A-Net + T-Net) with jit-compiled calls.

    Args:
      variables: ``{"anet": ..., "tnet": ...}`` Flax variables (``atnet_jax.io.weights.load_weights``, or
        ``atnet_jax.io.weights.load_predictor`` for a weights folder).
      config: the networks' :class:`ModelConfig`.

      precision: ``"float32"`` (default) or ``"bf16"``: bfloat16 convolutions and matmuls (parameters and
        activations cast), for GPUs and TPUs; batch norm, softmax and the probabilities stay float32.

    Predictors of one config share their compiled calls, so a second session on the same shapes compiles nothing.
    Outputs are ``(probabilities [K, hp, wp, 1], logits [K, hp / 4, wp / 4, 1])``.
    """

    logits_stride = 4

    def __init__(self, variables: dict[str, Any], config: ModelConfig, precision: str = "float32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        config = dataclasses.replace(config, dtype=PRECISIONS[precision])
        self.config, self.precision = config, precision
        self._variables = jax.device_put(variables)
        self._compiled = _compiled(config)
        self.warmed = self._compiled.warmed

    def annotate(self, images: Any, interaction: Any) -> tuple[Any, Any]:
        return self._compiled.annotate(self._variables["anet"], images, interaction)

    def encode(self, images: Any) -> dict[str, Any]:
        return self._compiled.encode(self._variables["tnet"], images)

    def fuse(self, indicator: Any) -> Any:
        return self._compiled.fuse(self._variables["tnet"], indicator)

    def step(self, target: dict[str, Any], annotated_r5: Any, fused: Any, frame_mask: Any, prev_r2: Any,
             prev_prob: Any) -> Any:
        return self._compiled.step(self._variables["tnet"], target, annotated_r5, fused, frame_mask, prev_r2,
                                   prev_prob)

    def step_chains(self, targets: Sequence[dict[str, Any]], annotated_r5: Any, fused: Any, frame_mask: Any,
                    prev_r2s: Sequence[Any], prev_probs: Sequence[Any]) -> list[Any]:
        """:meth:`step` for D chains in one jitted call (one compile per D)."""
        return self._compiled.step_chains(self._variables["tnet"], list(targets), annotated_r5, fused, frame_mask,
                                          list(prev_r2s), list(prev_probs))

    def probabilities(self, outputs: Any) -> Any:
        return outputs[0]

    def logits(self, outputs: Any) -> Any:
        return outputs[1]

    @property
    def trace_counts(self) -> dict[str, int]:
        """How often each jitted call was traced (compiled) so far, shared by the predictors of a config."""
        return dict(self._compiled.traces)
