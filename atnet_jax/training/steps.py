"""The pure training step of each stage and its data-parallel compilation over a ``("data",)`` mesh."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from atnet_jax.models import AnnotationNet, ModelConfig, TransferNet
from atnet_jax.training.losses import balanced_bce, local_map_mse
from atnet_jax.training.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def anet_loss(
    params: Any, batch_stats: Any, frozen: Any, batch: Batch, rng: jax.Array, *, model_config: ModelConfig,
    local_loss_weight: float,
) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """Stage 1. ``batch``: ``image [B, H, W, 3]``, ``interaction [B, H, W, 3]``, ``target`` and
    ``valid [B, H, W, 1]`` (see ``atnet_jax.data.pipeline.AnetExamples``)."""
    del frozen, local_loss_weight
    (logits, _), updates = AnnotationNet(model_config).apply(
        {"params": params, "batch_stats": batch_stats}, batch["image"], batch["interaction"], train=True,
        mutable=["batch_stats"], rngs={"dropout": rng},
    )
    loss = balanced_bce(logits, batch["target"], batch["valid"])
    return loss, (updates["batch_stats"], {"loss": loss, "bce": loss})


def _propagate(module: TransferNet, frames: jax.Array, prob0: jax.Array, indicator: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """T-Net over a mini-sequence, as a session propagates: frame 0 annotated (A-Net's ``prob0`` and
    ``indicator``), each later frame decoded from the previous one's prediction (no gradient through it).

    ``frames [B, T, H, W, 3]`` -> logits ``[B, T-1, H, W, 1]``, local maps ``[B, T-1, H/4, W/4, 1]``.
    """
    b, t = frames.shape[:2]
    feats = module.encode(frames.reshape(b * t, *frames.shape[2:]), train=True)
    feats = {k: feats[k].reshape(b, t, *feats[k].shape[1:]) for k in ("r2", "r3", "r5")}
    annotated_r5, indicators = feats["r5"][None, :, 0], indicator[None]
    prev_prob, prev_r2 = prob0, feats["r2"][:, 0]
    logits_all, local_all = [], []
    for i in range(1, t):
        target = {k: v[:, i] for k, v in feats.items()}
        logits, aux = module.decode(target, annotated_r5, indicators, prev_r2, prev_prob, train=True)
        logits_all.append(logits)
        local_all.append(aux["local"])
        prev_prob, prev_r2 = jax.lax.stop_gradient(jax.nn.sigmoid(logits)), target["r2"]
    return jnp.stack(logits_all, axis=1), jnp.stack(local_all, axis=1)


def tnet_loss(
    params: Any, batch_stats: Any, frozen: Any, batch: Batch, rng: jax.Array, *, model_config: ModelConfig,
    local_loss_weight: float,
) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """Stage 2: A-Net (``frozen``, inference mode) segments frame 0 from ``interaction``; T-Net propagates
    to frames 1..4. Loss per frame: balanced BCE + ``local_loss_weight`` x MSE(local map, GT at 1/4),
    averaged over the frames. ``batch``: ``frames [B, 5, H, W, 3]``, ``targets``/``valid [B, 5, H, W, 1]``,
    ``interaction [B, H, W, 3]`` (``atnet_jax.data.pipeline.TnetExamples``)."""
    anet_logits, aux = AnnotationNet(model_config).apply(frozen, batch["frames"][:, 0], batch["interaction"])
    prob0 = jax.lax.stop_gradient(jax.nn.sigmoid(anet_logits))
    indicator = jax.lax.stop_gradient(aux["indicator"])
    (logits, local), updates = TransferNet(model_config).apply(
        {"params": params, "batch_stats": batch_stats}, batch["frames"], prob0, indicator, method=_propagate,
        mutable=["batch_stats"], rngs={"dropout": rng},
    )
    targets, valid = batch["targets"][:, 1:], batch["valid"][:, 1:]
    steps = logits.shape[1]
    bce = sum(balanced_bce(logits[:, i], targets[:, i], valid[:, i]) for i in range(steps)) / steps
    mse = sum(local_map_mse(local[:, i], targets[:, i], valid[:, i]) for i in range(steps)) / steps
    loss = bce + local_loss_weight * mse
    return loss, (updates["batch_stats"], {"loss": loss, "bce": bce, "local_mse": mse})


LOSSES: dict[str, Callable[..., Any]] = {"anet": anet_loss, "tnet": tnet_loss}


def train_step(
    state: TrainState, batch: Batch, rng: jax.Array, *, stage: str, model_config: ModelConfig,
    local_loss_weight: float = 0.1,
) -> tuple[TrainState, Metrics]:
    """One Adam step of ``stage`` on a global ``batch``; dropout randomness from ``rng`` and the step."""
    loss_fn = functools.partial(LOSSES[stage], model_config=model_config, local_loss_weight=local_loss_weight)
    step_rng = jax.random.fold_in(rng, state.step)
    (_, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, state.frozen, batch, step_rng
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), metrics


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D ``("data",)`` mesh over ``devices`` (default: all devices of all hosts), ordered by process:
    each process's devices hold consecutive rows of a global batch, in process order (see ``shard_batch``)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(sorted(devices, key=lambda d: (d.process_index, d.id))), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def compile_train_step(
    mesh: Mesh, *, stage: str, model_config: ModelConfig, local_loss_weight: float = 0.1
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
    """``train_step`` jitted once for ``mesh``: batch sharded on ``"data"``, state and rng replicated,
    the state's buffers donated."""
    fn = functools.partial(train_step, stage=stage, model_config=model_config, local_loss_weight=local_loss_weight)
    rep = replicated(mesh)
    return jax.jit(fn, in_shardings=(rep, data_sharding(mesh), rep), out_shardings=(rep, rep), donate_argnums=0)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> Batch:
    """This host's rows of the global batch (numpy) -> global arrays sharded on ``"data"``: process ``i``'s
    rows come ``i``-th (the mesh orders devices by process)."""
    sharding = data_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}
