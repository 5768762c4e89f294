"""The optimizer: Adam with the paper's step schedule, updating only the parameters a stage trains."""
from __future__ import annotations

import re
from typing import Any

import jax
import optax

from atnet_jax.training.config import StageConfig


def learning_rate_schedule(stage: StageConfig) -> optax.Schedule:
    """``learning_rate * lr_decay ** floor(step / (lr_decay_epochs * steps_per_epoch))``."""
    return optax.exponential_decay(
        stage.learning_rate,
        transition_steps=stage.lr_decay_epochs * stage.steps_per_epoch,
        decay_rate=stage.lr_decay,
        staircase=True,
    )


def param_path(path: tuple[Any, ...]) -> str:
    """A pytree key path as ``'encoder_6ch/res2_0/conv1/kernel'``."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def trainable_mask(params: Any, pattern: str) -> Any:
    """A pytree of bools: ``True`` where the parameter's path matches ``pattern`` (``re.search``)."""
    regex = re.compile(pattern)
    mask = jax.tree_util.tree_map_with_path(lambda p, _: bool(regex.search(param_path(p))), params)
    if not any(jax.tree.leaves(mask)):
        raise ValueError(f"trainable pattern {pattern!r} matches no parameter")
    return mask


def make_optimizer(stage: StageConfig, params: Any) -> optax.GradientTransformation:
    """Adam on the parameters matching ``stage.trainable``; the others get zero updates and no Adam state."""
    adam = optax.adam(learning_rate_schedule(stage))
    mask = trainable_mask(params, stage.trainable)
    if all(jax.tree.leaves(mask)):
        return adam
    labels = jax.tree.map(lambda m: "train" if m else "freeze", mask)
    return optax.multi_transform({"train": adam, "freeze": optax.set_to_zero()}, labels)
