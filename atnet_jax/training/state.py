"""The training state of one stage: the trained network's variables, Adam's state and the frozen A-Net."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from atnet_jax.models.build import init_variables
from atnet_jax.training.config import TrainConfig
from atnet_jax.training.optim import make_optimizer


@flax.struct.dataclass
class TrainState:
    """``params`` / ``batch_stats`` of the network being trained (A-Net in stage 1, T-Net in stage 2),
    ``opt_state`` of ``tx``, and ``frozen``: variables used but never updated (stage 2: A-Net's)."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    frozen: Any
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    def checkpoint_items(self) -> dict[str, Any]:
        """What a checkpoint holds (``frozen`` comes from its own weights folder)."""
        return {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
                "opt_state": self.opt_state}


def create_train_state(
    config: TrainConfig, stage: str, rng: jax.Array, *, variables: dict[str, Any] | None = None,
    frozen: dict[str, Any] | None = None,
) -> TrainState:
    """A fresh state for ``stage`` ('anet' or 'tnet').

    ``variables``: initial ``{"params", "batch_stats"}`` of the trained network (default: Flax's random
    init from ``rng``); ``frozen``: A-Net's variables for stage 2 (required there).
    """
    if variables is None:
        variables = init_variables(config.model, rng, networks=(stage,))[stage]
    if stage == "tnet" and frozen is None:
        raise ValueError("the T-Net stage needs the trained A-Net (frozen)")
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = make_optimizer(config.stage(stage), params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), frozen=frozen if frozen is not None else {}, tx=tx)
