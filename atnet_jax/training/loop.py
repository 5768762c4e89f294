"""The training loop of one stage: data, sharded steps, logs, orbax checkpoints that resume, weights export.

Workdir layout (per stage ``anet`` / ``tnet``)::

    WORKDIR/<stage>/config.json      the config of the latest start
    WORKDIR/<stage>/checkpoints/<step>/{state,data}   train state + per-host data-iterator state (orbax)
    WORKDIR/<stage>/metrics.csv      step, loss terms, gradient norm, learning rate, examples/s
    WORKDIR/<stage>/weights/         an atnet_jax weights folder (stage 1: A-Net; stage 2: A-Net + T-Net)
"""
from __future__ import annotations

import csv
import dataclasses
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from atnet_jax.checkpointing import load_weights, save_weights
from atnet_jax.data.pipeline import AnetExamples, TnetExamples, make_loader
from atnet_jax.data.sources import ConcatVideoSource, DavisVideos, SBDImages, TfdsDavisVideos, YouTubeVOSVideos
from atnet_jax.models.build import count_params, init_variables
from atnet_jax.training.config import TrainConfig, to_json
from atnet_jax.training.optim import learning_rate_schedule
from atnet_jax.training.state import TrainState, create_train_state
from atnet_jax.training.steps import compile_train_step, make_mesh, replicated, shard_batch
from atnet_jax.training.warm_start import tnet_from_anet

_LOG_FIELDS = ("step", "loss", "bce", "local_mse", "grad_norm", "learning_rate", "examples_per_s", "elapsed_s")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and where the batch was saved."""


@dataclasses.dataclass
class RunResult:
    """What :func:`train` did: the last step, whether it finished the schedule, and the weights it wrote."""

    step: int
    finished: bool
    weights: Path | None
    interrupted: bool = False


def build_examples(config: TrainConfig, stage: str) -> AnetExamples | TnetExamples:
    """The training examples of ``stage`` from the datasets ``config.data`` names."""
    data = config.data
    videos = []
    if data.davis:
        videos.append(DavisVideos(data.davis, data.davis_subset or None))
    if data.youtube_vos:
        videos.append(YouTubeVOSVideos(data.youtube_vos))
    if data.tfds_davis:
        videos.append(TfdsDavisVideos("train", data.tfds_data_dir or None))
    if data.synthetic:
        videos.append(DavisVideos(data.synthetic, data.synthetic_subset or None))
    images = SBDImages(data.sbd) if data.sbd and stage == "anet" else None
    if not videos and images is None:
        raise ValueError("no training data: set at least one of data.davis, data.youtube_vos, data.sbd, "
                         "data.tfds_davis, data.synthetic (e.g. --set data.synthetic=DIR)")
    video_source = (videos[0] if len(videos) == 1 else ConcatVideoSource(videos)) if videos else None
    if stage == "anet":
        return AnetExamples(video_source, images, size=data.crop, seed=config.seed)
    if video_source is None:
        raise ValueError("the T-Net stage needs videos: set data.davis, data.youtube_vos, data.tfds_davis or "
                         "data.synthetic")
    return TnetExamples(video_source, size=data.crop, seed=config.seed)


def _initial_state(config: TrainConfig, stage: str, workdir: Path, rng: jax.Array) -> TrainState:
    frozen = None
    if stage == "tnet":
        source = Path(config.tnet.init_from) if config.tnet.init_from else workdir / "anet" / "weights"
        if not source.exists():
            raise FileNotFoundError(f"the T-Net stage loads the trained A-Net from {source}, which does not "
                                    "exist: run --stage anet first or set tnet.init_from=DIR")
        weights, model_config = load_weights(source, ("anet",))
        if model_config != config.model:
            raise ValueError(f"{source} holds an A-Net of another size than config.model")
        frozen = weights["anet"]
    variables = None
    if stage == "tnet" and config.tnet.start_from_anet:
        # A-Net's encoder replaces all of T-Net's, so ImageNet weights would be overwritten: not read here.
        variables, report = tnet_from_anet(init_variables(config.model, rng, networks=("tnet",))["tnet"], frozen)
        print(f"tnet: encoder and decoder start from the A-Net in {source} ({report['copied']} arrays; "
              f"{report['kept']} of T-Net's own keep their initialisation)")
    elif config.imagenet_weights:
        from atnet_jax.training.imagenet_init import format_report, init_encoders_from_imagenet

        variables, report = init_encoders_from_imagenet(
            init_variables(config.model, rng, networks=(stage,)), config.imagenet_weights, networks=(stage,))
        print(format_report(report))
        variables = variables[stage]
    return create_train_state(config, stage, rng, variables=variables, frozen=frozen)


class _StopRequest:
    """SIGTERM / SIGINT set a flag that the loop checks after each step (a second Ctrl-C aborts at once)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _checkpoint_manager(directory: Path, config: TrainConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.resolve(), options=options)


def _save(manager: ocp.CheckpointManager, state: TrainState, iterator: Any, step: int) -> None:
    import grain

    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.checkpoint_items()),
                                               data=grain.checkpoint.CheckpointSave(iterator)), force=True)
    manager.wait_until_finished()


def _restore(manager: ocp.CheckpointManager, state: TrainState, iterator: Any, step: int) -> TrainState:
    import grain

    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state.checkpoint_items())
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             data=grain.checkpoint.CheckpointRestore(iterator)))
    return state.replace(**restored["state"])


class _CsvLog:
    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=_LOG_FIELDS, extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _export(config: TrainConfig, stage: str, state: TrainState, directory: Path) -> Path:
    trained = {"params": state.params, "batch_stats": state.batch_stats}
    variables = {"anet": trained} if stage == "anet" else {"anet": state.frozen, "tnet": trained}
    return save_weights(directory, jax.device_get(variables), config.model, overwrite=True,
                        extra={"trained": {"stage": stage, "step": int(state.step)}})


def train(
    config: TrainConfig, workdir: str | Path, stage: str, *, max_steps: int | None = None, progress: bool = True,
) -> RunResult:
    """Train ``stage`` ('anet' or 'tnet') in ``workdir/<stage>``, resuming from its newest checkpoint.

    Stops at the end of the schedule (``epochs x steps_per_epoch`` steps), at ``max_steps`` (a limit on the
    global step), at ``time_limit_minutes`` or on SIGTERM / Ctrl-C, saving a checkpoint in every case; unless
    interrupted by a signal it then exports the weights to ``workdir/<stage>/weights``.
    """
    stage_config = config.stage(stage)
    run_dir = Path(workdir) / stage
    run_dir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        (run_dir / "config.json").write_text(to_json(config) + "\n")
    mesh = make_mesh()
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if stage_config.batch_size % n_dev:
        raise ValueError(f"{stage}.batch_size {stage_config.batch_size} is not divisible by the {n_dev} devices")
    host_batch = stage_config.batch_size // n_proc

    examples = build_examples(config, stage)
    batches = iter(make_loader(examples, batch_size=host_batch, seed=config.seed,
                               worker_count=config.data.worker_count, shard_index=jax.process_index(),
                               shard_count=n_proc))
    print(f"{stage}: {len(examples):,} training examples")
    rng = jax.random.key(config.seed)
    state = _initial_state(config, stage, Path(workdir), rng)
    print(f"{stage}: {count_params({'params': state.params}):,} parameters, {n_dev} device(s) on {n_proc} "
          f"host(s), global batch {stage_config.batch_size}, {stage_config.total_steps:,} steps")
    manager = _checkpoint_manager(run_dir / "checkpoints", config)
    latest = manager.latest_step()
    if latest is not None:
        state = _restore(manager, state, batches, latest)
        print(f"{stage}: resumed from {run_dir / 'checkpoints' / str(latest)}")
    state = jax.device_put(state, replicated(mesh))
    step_fn = compile_train_step(mesh, stage=stage, model_config=config.model,
                                 local_loss_weight=stage_config.local_loss_weight)
    dropout_rng = jax.random.fold_in(rng, 1)
    schedule = learning_rate_schedule(stage_config)
    last = stage_config.total_steps if max_steps is None else min(max_steps, stage_config.total_steps)
    step = int(state.step)
    log = _CsvLog(run_dir / "metrics.csv") if jax.process_index() == 0 else None
    deadline = time.monotonic() + 60 * stage_config.time_limit_minutes if stage_config.time_limit_minutes else math.inf
    bar = None
    if progress and jax.process_index() == 0:
        from tqdm import tqdm

        bar = tqdm(total=last, initial=step, desc=f"train {stage}", unit="step", dynamic_ncols=True)
    start, window_start, window_steps = time.monotonic(), time.monotonic(), 0
    stop = _StopRequest()
    try:
        with stop:
            while step < last and stop.signal is None and time.monotonic() < deadline:
                batch = next(batches)
                state, metrics = step_fn(state, shard_batch(batch, mesh), dropout_rng)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not math.isfinite(metrics["loss"]):
                    path = run_dir / f"nonfinite_batch_step{step + 1}.npz"
                    np.savez(path, **batch)
                    raise NonFiniteLossError(
                        f"{stage}: the loss is {metrics['loss']} at step {step + 1} (the batch drawn after "
                        f"checkpoint step {manager.latest_step()}; saved to {path}); no checkpoint written")
                step += 1
                window_steps += 1
                rate = window_steps * stage_config.batch_size / max(time.monotonic() - window_start, 1e-9)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", ex_s=f"{rate:.1f}")
                if log is not None and (step % config.log_every == 0 or step == last):
                    log.write({"step": step, **metrics, "learning_rate": float(schedule(step - 1)),
                               "examples_per_s": rate, "elapsed_s": time.monotonic() - start})
                    window_start, window_steps = time.monotonic(), 0
                if step % config.checkpoint_every == 0:
                    _save(manager, state, batches, step)
        if manager.latest_step() != step:
            _save(manager, state, batches, step)
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
        manager.close()
    where = run_dir / "checkpoints" / str(step)
    if stop.signal is not None:
        print(f"{stage}: {stop.signal} received: saved step {step} to {where}; run the same command to resume")
        return RunResult(step, False, None, interrupted=True)
    finished = step >= stage_config.total_steps
    weights = _export(config, stage, state, run_dir / "weights") if jax.process_index() == 0 else None
    reason = "end of schedule" if finished else "time limit" if step < last else f"step limit {last}"
    print(f"{stage}: {reason} at step {step}: saved {where}" + (f" and weights {weights}" if weights else ""))
    return RunResult(step, finished, weights)
