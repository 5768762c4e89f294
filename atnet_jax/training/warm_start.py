"""Start T-Net from the trained A-Net: the encoder (RGB channels of the stem) and the decoder.

Without ImageNet weights (small networks trained from scratch) T-Net would otherwise learn its features
from nothing; the stage-1 A-Net already encodes objects in the same data. The two networks share the
encoder and decoder structure: ``encoder_6ch`` -> ``encoder_3ch`` (the stem conv keeps its first 3 input
channels, the RGB ones) and ``decoder_iact`` -> ``decoder_prop``. T-Net's own layers (``conv1x1``,
``prev_conv1x1``) keep their initialisation.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

_MODULES = {"encoder_3ch": "encoder_6ch", "decoder_prop": "decoder_iact"}
_STEM = ("conv0_3ch", "conv0_6ch")


def _anet_key(key: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(key) < 2 or key[1] not in _MODULES:
        return None
    rest = tuple(_STEM[1] if part == _STEM[0] else part for part in key[2:])
    return (key[0], _MODULES[key[1]], *rest)


def tnet_from_anet(tnet: dict[str, Any], anet: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """T-Net ``variables`` with every encoder and decoder leaf taken from A-Net's ``variables``.

    Returns ``(variables, report)``; ``report`` counts the leaves ``copied`` and ``kept`` (T-Net's own).
    Raises ValueError naming the leaf when the networks differ in size.
    """
    source = flatten_dict(anet)
    out, report = {}, {"copied": 0, "kept": 0}
    for key, value in flatten_dict(tnet).items():
        anet_key = _anet_key(key)
        if anet_key is None:
            out[key], report["kept"] = value, report["kept"] + 1
            continue
        if anet_key not in source:
            raise ValueError(f"A-Net has no {'/'.join(anet_key)} for T-Net's {'/'.join(key)}")
        new = np.asarray(source[anet_key])
        if _STEM[1] in anet_key and key[-1] == "kernel":
            new = new[..., :3, :]  # [kh, kw, 6, C] -> the RGB input channels
        if new.shape != np.shape(value):
            raise ValueError(f"A-Net's {'/'.join(anet_key)} has shape {new.shape}, T-Net's {'/'.join(key)} "
                             f"{np.shape(value)}: the networks differ in size")
        out[key], report["copied"] = new.astype(np.asarray(value).dtype), report["copied"] + 1
    return unflatten_dict(out), report
