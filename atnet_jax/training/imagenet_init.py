"""Initialising the A-Net and T-Net encoders from a local ImageNet ResNet50 / SE-ResNet50 weight file.

Nothing is downloaded: pass a file you already have, ``.pth`` (read without torch) or ``.npz`` holding the same key
names (NumPy only). Two naming schemes are recognised:

- ``torchvision``: torchvision ``resnet50`` (``conv1``, ``bn1``, ``layer1..4``, ``fc``); it has no SE modules,
  so our ``conv_down``/``conv_up`` keep their initial values.
- ``senet``: Cadene ``pretrainedmodels`` ``se_resnet50`` (``layer0.conv1``, ``layer0.bn1``, ``layer1..4`` with
  ``se_module.fc1/fc2``, ``last_linear``). Our SE convs have no bias (as in the released ATNet), so the
  ImageNet SE biases are dropped.

Mapping, for ``encoder_6ch`` (A-Net) and ``encoder_3ch`` (T-Net)::

    conv1.weight                -> conv0_{n}ch/kernel: RGB in input channels 0-2, zeros after; bias zero
    bn1.*                       -> bn1 (weight/bias -> params scale/bias, running stats -> batch_stats)
    layer{1..4}.{i}.*           -> res{2..5}_{i}: conv1-3, bn1-3, downsample_0/1
    layer*.{i}.se_module.fc1/2  -> res*_{i}/conv_down, conv_up (kernels only)
    fc.*, last_linear.*         -> ignored

Our res5 has stride 1 and dilations, and our blocks stride the 3x3 ``conv2`` where Cadene's stride ``conv1``:
kernel shapes are the same, so the weights are copied unchanged. Images are normalised with the ImageNet
mean/std (:mod:`atnet_jax.models.preprocess`), as both sources expect.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from atnet_jax.io.torch_weights import ConversionError, _leaves, _to_flax, load_state_dict, torch_key

ENCODERS = {"anet": "encoder_6ch", "tnet": "encoder_3ch"}
SCHEMES = ("torchvision", "senet")
_DESCRIPTION = {"torchvision": "torchvision ResNet50", "senet": "Cadene SE-ResNet50"}
_SIGNATURE = {
    "torchvision": ("conv1.weight", "layer1.0.conv1.weight"),
    "senet": ("layer0.conv1.weight", "layer1.0.se_module.fc1.weight"),
}
_STEM_PREFIX = {"torchvision": "", "senet": "layer0."}
_BLOCK = r"(conv[123]\.weight|bn[123]\.\w+|downsample\.[01]\.\w+)"
_KNOWN = (
    re.compile(rf"^(conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\.{_BLOCK}|fc\.(weight|bias))$"),
    re.compile(
        rf"^(layer0\.(conv1\.weight|bn1\.\w+)|layer[1-4]\.\d+\.({_BLOCK}|se_module\.fc[12]\.(weight|bias))"
        r"|last_linear\.(weight|bias))$"
    ),
)
_IGNORED = re.compile(r"^(fc|last_linear)\.|\.num_batches_tracked$")
_SE_BIAS = re.compile(r"\.se_module\.fc[12]\.bias$")
_SE_NAMES = {"conv_down": "fc1", "conv_up": "fc2"}
_RES = re.compile(r"^res([2-5])\.(\d+)\.([^.]+)\.(.+)$")
_RGB = 3

Variables = dict[str, Any]
Report = dict[str, Any]


def load_imagenet_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """ImageNet key -> NumPy array (conv weights OIHW) from ``.pth``/``.pt`` (read without torch) or ``.npz``."""
    return load_state_dict(path)


def _few(keys: list[str], n: int = 5) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(repr(k) for k in keys[:n]) + more


def detect_scheme(state_dict: Mapping[str, Any], source: str = "state dict") -> str:
    """``"torchvision"`` or ``"senet"`` (see the module docstring); :class:`ConversionError` (a ``ValueError``)
    naming ``source`` and a few unexpected keys when the names fit neither."""
    found = [s for s, keys in _SIGNATURE.items() if all(k in state_dict for k in keys)]
    if len(found) == 1:
        return found[0]
    unexpected = sorted(k for k in state_dict if not any(p.match(k) for p in _KNOWN))
    listed = _few(unexpected or sorted(state_dict)) or "none, it is empty"
    raise ConversionError(
        f"{source}: not an ImageNet torchvision ResNet50 (conv1.weight, layer1.0.conv1.weight, ...) nor a Cadene "
        f"SE-ResNet50 (layer0.conv1.weight, layer1.0.se_module.fc1.weight, ...) state dict; "
        f"{'unexpected' if unexpected else 'its'} keys: {listed}"
    )


def imagenet_key(scheme: str, key: str) -> str | None:
    """ImageNet key of our encoder-relative PyTorch key (``res2.0.conv_down.weight``, as
    :func:`atnet_jax.io.torch_weights.torch_key` names it below ``encoder_6ch``); ``None`` if it has none."""
    if key.startswith("conv0_"):
        return f"{_STEM_PREFIX[scheme]}conv1.weight" if key.endswith(".weight") else None
    match = _RES.match(key)
    if match is None:
        return f"{_STEM_PREFIX[scheme]}{key}"
    stage, block, module, rest = match.groups()
    if module in _SE_NAMES:
        if scheme == "torchvision":
            return None
        module = f"se_module.{_SE_NAMES[module]}"
    return f"layer{int(stage) - 1}.{block}.{module}.{rest}"


def _torch_shape(shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
    return (shape[3], shape[2], shape[0], shape[1]) if leaf == "kernel" else tuple(shape)


def _encoder_updates(
    net_vars: Mapping[str, Any], net: str, state_dict: Mapping[str, Any], scheme: str, source: str
) -> tuple[dict[tuple[str, ...], np.ndarray], set[str], Report]:
    """New values of one network's encoder leaves, keyed by ``(collection, *path)``; the ImageNet keys used;
    the network's report entry."""
    encoder = ENCODERS[net]
    stem = f"conv0_{encoder.removeprefix('encoder_')}"
    updates: dict[tuple[str, ...], np.ndarray] = {}
    used: set[str] = set()
    kept: list[str] = []
    outside = zeroed = 0
    for collection, path, leaf in _leaves(net_vars):
        if path[0] != encoder:
            outside += 1
            continue
        rel = path[1:]
        name = "/".join((collection, *path))
        if rel[0] == stem and rel[-1] == "bias":
            updates[(collection, *path)] = np.zeros(leaf.shape, leaf.dtype)
            zeroed += 1
            continue
        key = imagenet_key(scheme, torch_key(collection, rel))
        if key is None:
            kept.append(name)
            continue
        if key not in state_dict:
            raise ConversionError(f"{source}: missing key {key!r} (needed for {net} {name})")
        value = np.asarray(state_dict[key])
        want = _torch_shape(leaf.shape, rel[-1])
        if rel[0] == stem:
            want = (want[0], _RGB, *want[2:])
        if value.shape != want:
            raise ConversionError(
                f"{source}: key {key!r} has shape {value.shape}, but {net} {name} needs {want}"
            )
        value = _to_flax(value, rel[-1])
        if rel[0] == stem:
            extra = np.zeros((*value.shape[:2], leaf.shape[2] - _RGB, value.shape[3]), value.dtype)
            value = np.concatenate([value, extra], axis=2)
        updates[(collection, *path)] = value.astype(leaf.dtype)
        used.add(key)
    report = {
        "copied": len(updates) - zeroed,
        "zeroed": zeroed,
        "not_initialised": kept,
        "outside_encoder": outside,
    }
    return updates, used, report


def _replace(tree: Any, updates: Mapping[tuple[str, ...], np.ndarray]) -> Any:
    def put(path: tuple[Any, ...], leaf: Any) -> Any:
        value = updates.get(tuple(p.key for p in path))
        if value is None:
            return leaf
        return jnp.asarray(value) if isinstance(leaf, jax.Array) else value

    return jax.tree_util.tree_map_with_path(put, tree)


def init_encoders_from_state_dict(
    variables: Mapping[str, Variables],
    state_dict: Mapping[str, Any],
    networks: tuple[str, ...] = ("anet", "tnet"),
    source: str = "state dict",
) -> tuple[dict[str, Variables], Report]:
    """:func:`init_encoders_from_imagenet` on an already loaded ImageNet ``state_dict`` (key -> OIHW array)."""
    scheme = detect_scheme(state_dict, source)
    for net in networks:
        if net not in ENCODERS:
            raise ValueError(f"unknown network {net!r}: expected some of {tuple(ENCODERS)}")
        if net not in variables or ENCODERS[net] not in variables[net]["params"]:
            raise ValueError(f"variables have no {net} {ENCODERS[net]} to initialise")
    result = dict(variables)
    used: set[str] = set()
    report: Report = {"source": source, "scheme": scheme}
    for net in networks:
        updates, net_used, report[net] = _encoder_updates(variables[net], net, state_dict, scheme, source)
        result[net] = _replace(variables[net], updates)
        used |= net_used
    left = sorted(k for k in state_dict if k not in used and not _IGNORED.search(k))
    dropped = [k for k in left if _SE_BIAS.search(k)]
    unused = [k for k in left if not _SE_BIAS.search(k)]
    if unused:
        raise ConversionError(
            f"{source}: {_DESCRIPTION[scheme]} keys that our encoders do not use (a deeper network?): {_few(unused)}"
        )
    notes = []
    if scheme == "torchvision":
        notes.append("no SE modules in a torchvision ResNet50: conv_down/conv_up keep their initial values")
    else:
        notes.append("Cadene SE-ResNet50 strides conv1 of a block, ours conv2: same shapes, copied unchanged")
    if dropped:
        notes.append(f"{len(dropped)} SE biases (se_module.fc1/fc2.bias) dropped: our SE convs have no bias")
    if "anet" in networks:
        notes.append("A-Net stem: ImageNet RGB kernel in input channels 0-2, zeros for mask/positive/negative")
    report["dropped"] = dropped
    report["notes"] = notes
    return result, report


def init_encoders_from_imagenet(
    variables: Mapping[str, Variables], path: str | Path, networks: tuple[str, ...] = ("anet", "tnet")
) -> tuple[dict[str, Variables], Report]:
    """Copy ImageNet weights from the local file ``path`` into the encoders of ``networks``.

    ``variables``: ``{"anet": {"params", "batch_stats"}, "tnet": ...}`` as from
    :func:`atnet_jax.models.build.init_variables`; it is not modified. Returns new variables (encoder leaves
    replaced, every other leaf the same object) and a report: ``scheme``, ``source``, per network ``copied``
    and ``zeroed`` leaf counts, ``not_initialised`` (encoder leaves left at their initial values, e.g. SE
    kernels from a torchvision file), ``outside_encoder`` (leaves left unchanged), plus ``dropped`` ImageNet
    keys and ``notes``. Raises :class:`atnet_jax.io.torch_weights.ConversionError` (a ``ValueError``) on an
    unknown naming scheme, a missing, unused or mis-shaped key (e.g. a tiny-width config).
    """
    return init_encoders_from_state_dict(variables, load_imagenet_state_dict(path), networks, source=str(path))


def format_report(report: Report) -> str:
    """The report in a few lines, for the training log."""
    lines = [f"encoders initialised from {report['source']} ({_DESCRIPTION[report['scheme']]})"]
    for net in ENCODERS:
        if net in report:
            r = report[net]
            lines.append(
                f"  {net} {ENCODERS[net]}: {r['copied']} leaves copied, {r['zeroed']} zeroed (stem bias), "
                f"{len(r['not_initialised'])} left at their initial values; "
                f"{r['outside_encoder']} leaves outside the encoder unchanged"
            )
    lines += [f"  {note}" for note in report["notes"]]
    return "\n".join(lines)
