"""The official PyTorch checkpoint (``ATNet-checkpoint.pth``) <-> Flax variables of A-Net and T-Net.

The Flax module names mirror the PyTorch attributes, so the mapping is mechanical: a Flax path
``encoder_6ch/res2_0/conv1/kernel`` is the PyTorch key ``encoder_6ch.res2.0.conv1.weight``.
A-Net owns ``encoder_6ch``, ``decoder_iact`` and ``indicator_encoder``; T-Net owns ``encoder_3ch``,
``decoder_prop``, ``prev_conv1x1`` and ``conv1x1``.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from atnet_jax.errors import WeightsError
from atnet_jax.models.build import NETWORKS, abstract_variables
from atnet_jax.models.config import ModelConfig

_INDEXED = re.compile(r"^(.*)_(\d+)$")
_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
_IGNORED_SUFFIX = ".num_batches_tracked"


class ConversionError(WeightsError):
    """A state_dict that does not match the networks (unknown, missing or mis-shaped keys)."""


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """PyTorch state_dict key of the Flax leaf ``path`` in ``collection`` (``params`` or ``batch_stats``)."""
    modules = [_INDEXED.sub(r"\1.\2", name) for name in path[:-1]]
    try:
        leaf = _LEAF_NAMES[(collection, path[-1])]
    except KeyError:
        raise ConversionError(f"no PyTorch counterpart for Flax leaf {collection}/{'/'.join(path)}") from None
    return ".".join([*modules, leaf])


def _to_flax(value: np.ndarray, leaf: str) -> np.ndarray:
    # PyTorch conv weights are OIHW, Flax kernels HWIO.
    return np.transpose(value, (2, 3, 1, 0)) if leaf == "kernel" and value.ndim == 4 else value


def _to_torch(value: np.ndarray, leaf: str) -> np.ndarray:
    return np.transpose(value, (3, 2, 0, 1)) if leaf == "kernel" else value


def _leaves(tree: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...], Any]]:
    out = []
    for collection, sub in tree.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(sub)[0]:
            out.append((collection, tuple(p.key for p in path), leaf))
    return out


def torch_to_flax(
    state_dict: Mapping[str, np.ndarray], config: ModelConfig, networks: tuple[str, ...] = NETWORKS
) -> dict[str, dict[str, Any]]:
    """Map a PyTorch-named state_dict to ``{"anet": {"params", "batch_stats"}, "tnet": ...}`` of NumPy arrays.

    Every key must be used exactly once: unknown, missing and mis-shaped keys raise
    :class:`ConversionError` naming the key (``num_batches_tracked`` counters are accepted and dropped).
    """
    remaining = {k for k in state_dict if not k.endswith(_IGNORED_SUFFIX)}
    result: dict[str, dict[str, Any]] = {}
    for net, abstract in abstract_variables(config, networks).items():
        converted: dict[str, Any] = {}
        for collection, path, spec in _leaves(abstract):
            key = torch_key(collection, path)
            if key not in state_dict:
                raise ConversionError(f"missing key {key!r} (needed for {net} {collection}/{'/'.join(path)})")
            value = _to_flax(np.asarray(state_dict[key]), path[-1])
            if value.shape != spec.shape:
                want = _to_torch(np.empty(spec.shape, np.uint8), path[-1]).shape
                raise ConversionError(
                    f"key {key!r} has shape {tuple(np.shape(state_dict[key]))}, expected {tuple(want)}"
                )
            remaining.discard(key)
            node = converted.setdefault(collection, {})
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = value.astype(spec.dtype)
        result[net] = converted
    if remaining:
        unknown = sorted(remaining)
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConversionError(f"unknown key {unknown[0]!r}{more}: not part of the {'/'.join(networks)} networks")
    return result


def flax_to_torch(variables: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The inverse of :func:`torch_to_flax`: PyTorch key -> NumPy array (OIHW conv weights)."""
    out: dict[str, np.ndarray] = {}
    for net in variables.values():
        for collection, path, value in _leaves(net):
            out[torch_key(collection, path)] = _to_torch(np.asarray(value), path[-1])
    return out


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch-named state_dict from ``.pth``/``.pt``/``.bin`` (a ``torch.save`` file, read without
    PyTorch by :mod:`atnet_jax.io.torch_file`) or ``.npz`` (NumPy arrays).

    Accepts a bare state_dict or a dict wrapping it under ``state_dict``/``model``; a ``module.`` prefix
    (DataParallel) is removed.
    """
    from atnet_jax.io.torch_file import read_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    elif path.suffix in (".pth", ".pt", ".bin"):
        state = read_state_dict(path)
    else:
        raise ValueError(f"checkpoint {path}: expected a .pth/.pt (PyTorch) or .npz file")
    return {k.removeprefix("module."): v for k, v in state.items()}


def torch_shapes(config: ModelConfig, networks: tuple[str, ...] = NETWORKS) -> dict[str, tuple[int, ...]]:
    """PyTorch state_dict key -> shape that :func:`torch_to_flax` expects for ``config`` (no FLOPs)."""
    shapes = {}
    for abstract in abstract_variables(config, networks).values():
        for collection, path, spec in _leaves(abstract):
            shapes[torch_key(collection, path)] = _to_torch(np.empty(spec.shape, np.uint8), path[-1]).shape
    return shapes


def _shape(state_dict: Mapping[str, np.ndarray], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(f"cannot tell the network size: missing key {key!r}")
    shape = tuple(np.shape(state_dict[key]))
    if len(shape) != ndim:
        raise ConversionError(f"key {key!r} has shape {shape}, expected {ndim} dimensions")
    return shape


def infer_model_config(state_dict: Mapping[str, np.ndarray], base: ModelConfig | None = None) -> ModelConfig:
    """The :class:`ModelConfig` whose networks have the parameter shapes of ``state_dict`` (PyTorch-named).

    Widths and block counts are read from A-Net's encoder and decoder (``encoder_6ch.*``,
    ``decoder_iact.aspp_decoder.*``); :func:`torch_to_flax` then checks every key of both networks against it.
    What weights do not show (dilations, dropout, softmax variants, dtype) comes from ``base`` (default: the
    released network's settings); res5's dilations are ``base``'s when it has as many blocks, else
    ``2, 4, 8, ...``, the released network's rule. :class:`ConversionError` names a key that is missing or
    has the wrong number of dimensions.
    """
    base = base or ModelConfig()
    stem = _shape(state_dict, "encoder_6ch.conv0_6ch.weight", 4)[0]
    widths, blocks = [], []
    for stage in range(2, 6):
        widths.append(_shape(state_dict, f"encoder_6ch.res{stage}.0.conv1.weight", 4)[0])
        pattern = re.compile(rf"^encoder_6ch\.res{stage}\.(\d+)\.")
        blocks.append(len({m.group(1) for k in state_dict if (m := pattern.match(k))}))
    out2 = _shape(state_dict, "encoder_6ch.res2.0.conv3.weight", 4)[0]
    squeeze = _shape(state_dict, "encoder_6ch.res2.0.conv_down.weight", 4)[0]
    decoder = _shape(state_dict, "decoder_iact.aspp_decoder.aspp1.atrous_conv.weight", 4)[0]
    if out2 % widths[0] or out2 % squeeze:
        raise ConversionError(f"key 'encoder_6ch.res2.0.conv3.weight' has {out2} output channels: not a multiple "
                              f"of the bottleneck width {widths[0]} and the SE width {squeeze}")
    dilations = base.res5_dilations
    if len(dilations) != blocks[3]:
        dilations = tuple(2 ** (i + 1) for i in range(blocks[3]))
    return dataclasses.replace(base, stem_width=stem, stage_widths=tuple(widths), stage_blocks=tuple(blocks),
                               expansion=out2 // widths[0], se_reduction=out2 // squeeze,
                               res5_dilations=dilations, decoder_width=decoder)
