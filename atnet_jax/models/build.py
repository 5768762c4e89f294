"""Constructing A-Net and T-Net variables: abstract shapes (no FLOPs) or a jitted random init."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from atnet_jax.models.annotation_net import AnnotationNet
from atnet_jax.models.config import ModelConfig
from atnet_jax.models.transfer_net import TransferNet

Variables = dict[str, Any]
NETWORKS = ("anet", "tnet")

# Smallest input that passes every stride and resize of both networks; parameter shapes do not depend on it.
_INIT_SIZE = 64


def _init_fns(config: ModelConfig) -> dict[str, Any]:
    s, q, g = _INIT_SIZE, _INIT_SIZE // 4, _INIT_SIZE // 16
    c2, c5 = config.out_channels[0], config.out_channels[3]
    z = jnp.zeros
    return {
        "anet": lambda rng: AnnotationNet(config).init(rng, z((1, s, s, 3)), z((1, s, s, 3))),
        "tnet": lambda rng: TransferNet(config).init(
            rng, z((1, s, s, 3)), z((1, 1, g, g, c5)), z((1, 1, g, g, c5)), z((1, q, q, c2)), z((1, s, s, 1))
        ),
    }


def abstract_variables(config: ModelConfig, networks: tuple[str, ...] = NETWORKS) -> dict[str, Variables]:
    """``{"anet": {"params", "batch_stats"}, "tnet": ...}`` as ``jax.ShapeDtypeStruct`` leaves."""
    fns = _init_fns(config)
    return {name: jax.eval_shape(fns[name], jax.random.key(0)) for name in networks}


def init_variables(config: ModelConfig, rng: jax.Array, networks: tuple[str, ...] = NETWORKS) -> dict[str, Variables]:
    """Random initial variables (Flax default initialisers), one jitted init per network."""
    fns = _init_fns(config)
    keys = jax.random.split(rng, len(networks))
    return {name: jax.jit(fns[name])(key) for name, key in zip(networks, keys)}


def count_params(variables: Variables) -> int:
    """Number of trainable parameters (``params`` collection) of one network."""
    return sum(int(x.size) for x in jax.tree.leaves(variables["params"]))


def random_variables(config: ModelConfig, seed: int = 0, networks: tuple[str, ...] = NETWORKS) -> dict[str, Variables]:
    """Random variables filled in NumPy from the abstract shapes (no compile): He-normal kernels, zero biases,
    identity batch norm. For benchmarks and smoke tests; training uses :func:`init_variables`."""
    rng = np.random.default_rng(seed)

    def fill(path: tuple[Any, ...], spec: jax.ShapeDtypeStruct) -> jax.Array:
        leaf = path[-1].key
        if leaf == "kernel":
            fan_in = int(np.prod(spec.shape[:-1]))
            value = rng.standard_normal(spec.shape) * np.sqrt(2.0 / fan_in)
        elif leaf in ("scale", "var"):
            value = np.ones(spec.shape)
        else:
            value = np.zeros(spec.shape)
        return jnp.asarray(value, spec.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_variables(config, networks))
