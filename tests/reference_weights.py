"""The golden vectors' deterministic weight recipe (``tests/data/reference/README.md`` section 1), in NumPy."""
from __future__ import annotations

import ast
import zlib
from pathlib import Path

import numpy as np

RULES = ("num_batches_tracked", "running_mean", "running_var", "bn_weight", "bias", "conv_weight")


def recipe_rule(key: str, ndim: int) -> str:
    """Which of the six recipe rules makes the tensor ``key``."""
    if key.endswith("num_batches_tracked"):
        return "num_batches_tracked"
    if key.endswith("running_mean"):
        return "running_mean"
    if key.endswith("running_var"):
        return "running_var"
    if key.endswith("weight") and ndim == 1:
        return "bn_weight"
    if key.endswith("bias"):
        return "bias"
    if key.endswith("weight"):
        return "conv_weight"
    raise ValueError(f"no recipe rule for {key}")


def recipe_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """One state_dict tensor: a fresh PCG64 seeded with crc32(key), one draw, float64 rounded to float32."""
    rule = recipe_rule(key, len(shape))
    if rule == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    if rule == "running_mean":
        value = 0.1 * rng.standard_normal(shape)
    elif rule == "running_var":
        value = 1.0 + 0.2 * rng.random(shape)
    elif rule == "bn_weight":
        value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif rule == "bias":
        value = 0.05 * rng.standard_normal(shape)
    else:
        value = rng.standard_normal(shape) * np.sqrt(1.0 / np.prod(shape[1:]))
    return value.astype(np.float32)


def recipe_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Recipe weights for every ``key -> shape``."""
    return {key: recipe_tensor(key, tuple(shape)) for key, shape in shapes.items()}


def read_key_table(path: Path) -> dict[str, tuple[int, ...]]:
    """``atnet_state_dict_keys.tsv`` -> ordered ``key -> shape``."""
    rows = path.read_text().splitlines()[1:]
    return {key: tuple(ast.literal_eval(shape)) for key, shape, _dtype, _kind in (r.split("\t") for r in rows)}
