"""The training loop of one stage: data, sharded steps, logs, orbax checkpoints that resume, weights export.

Workdir layout (per stage ``anet`` / ``tnet``)::

    WORKDIR/<stage>/config.json      the config the run started with (a resume must use the same)
    WORKDIR/<stage>/checkpoints/<step>/{state,data,meta}   train state, per-host data-iterator state and
                                     the training time so far (orbax)
    WORKDIR/<stage>/metrics.csv      step, loss terms, gradient norm, learning rate, examples/s, elapsed time
    WORKDIR/tnet/frozen_anet.json    stage 2: the fingerprint of the A-Net it trains against
    WORKDIR/<stage>/weights/         an atnet_jax weights folder (stage 1: A-Net; stage 2: A-Net + T-Net)

With several processes (``jax.distributed``) every process runs every step, save, restore and the final
barrier; each reads only its rows of every global batch; process 0 alone prints, writes ``metrics.csv``,
``config.json`` and the weights. A stop request (SIGTERM, Ctrl-C, the time limit) that reaches one process
stops all of them after the same step, and the checkpoint they save together is the one a rerun resumes from.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from atnet_jax import errors
from atnet_jax.data.pipeline import AnetExamples, TnetExamples, make_loader
from atnet_jax.data.sources import ConcatVideoSource, DavisVideos, SBDImages, TfdsDavisVideos, YouTubeVOSVideos
from atnet_jax.errors import AtnetError, ConflictError, WeightsError
from atnet_jax.io.safe import write_text
from atnet_jax.io.weights import load_weights, network_size, save_weights, tree_fingerprint
from atnet_jax.models.build import count_params, init_variables
from atnet_jax.training.config import STAGES, TrainConfig, to_json
from atnet_jax.training.distributed import barrier, is_main_process, max_over_processes
from atnet_jax.training.optim import learning_rate_schedule
from atnet_jax.training.state import TrainState, create_train_state
from atnet_jax.training.steps import compile_train_step, make_mesh, replicated, shard_batch
from atnet_jax.training.warm_start import tnet_from_anet

_LOG_FIELDS = ("step", "loss", "bce", "local_mse", "grad_norm", "learning_rate", "examples_per_s", "elapsed_s")


# Keys that may change between a run and its resume: they decide when to log, save or stop, not what is learnt.
_RUN_CONTROL_KEYS = ("checkpoint_every", "keep_checkpoints", "log_every")
# Why a run stopped early, ordered: the processes agree on the largest code any of them saw.
_STOP_REASONS = (None, "time limit", "SIGTERM", "SIGINT")


class NonFiniteLossError(AtnetError):
    """The loss became NaN or infinite; the message names the step and where the batch was saved."""


class Interrupted(errors.Interrupted):
    """Ctrl-C stopped the run after every process saved the same checkpoint."""


class ResumeMismatchError(ConflictError):
    """The workdir's checkpoints were made with another config or against another A-Net."""


@dataclasses.dataclass
class RunResult:
    """What :func:`train` did: the last step, whether it finished the schedule, and the weights it wrote."""

    step: int
    finished: bool
    weights: Path | None
    interrupted: bool = False
    stopped_by: str | None = None  # "SIGTERM" where a signal stopped the run (SIGINT raises KeyboardInterrupt)


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
        if not Path(data.synthetic).is_dir():
            raise FileNotFoundError(
                f"the synthetic videos of data.synthetic={data.synthetic} are missing: make them with python -m "
                f"atnet_jax.data.synthetic --output {data.synthetic} --videos 60 (or --set data.synthetic=DIR)")
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


def _initial_state(config: TrainConfig, stage: str, workdir: Path, rng: jax.Array,
                   say: Callable[[str], None]) -> tuple[TrainState, Path | None]:
    """The fresh state of ``stage`` and, in stage 2, the weights folder of the frozen A-Net."""
    frozen, source = None, None
    if stage == "tnet":
        source = Path(config.tnet.init_from) if config.tnet.init_from else workdir / "anet" / "weights"
        if not source.exists():
            raise FileNotFoundError(f"the T-Net stage loads the trained A-Net from {source}, which does not "
                                    "exist: run --stage anet first or set tnet.init_from=DIR")
        weights, model_config = load_weights(source, ("anet",))
        if model_config != config.model:
            raise WeightsError(f"{source} holds an A-Net of another size than config.model: "
                               f"{network_size(model_config)} there; {network_size(config.model)} in the config")
        frozen = weights["anet"]
    variables = None
    if stage == "tnet" and config.tnet.start_from_anet:
        # A-Net's encoder replaces all of T-Net's, so ImageNet weights would be overwritten: not read here.
        variables, report = tnet_from_anet(init_variables(config.model, rng, networks=("tnet",))["tnet"], frozen)
        say(f"tnet: encoder and decoder start from the A-Net in {source} ({report['copied']} arrays; "
            f"{report['kept']} of T-Net's own keep their initialisation)")
    elif config.imagenet_weights:
        from atnet_jax.training.imagenet_init import format_report, init_encoders_from_imagenet

        variables, report = init_encoders_from_imagenet(
            init_variables(config.model, rng, networks=(stage,)), config.imagenet_weights, networks=(stage,))
        say(format_report(report))
        variables = variables[stage]
    return create_train_state(config, stage, rng, variables=variables, frozen=frozen), source


def _flat_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for name, sub in tree.items() for k, v in _flat_config(sub, f"{prefix}{name}.").items()}
    return {prefix[:-1]: tree}


def _check_config(config: TrainConfig, stage: str, run_dir: Path) -> None:
    """Refuse to resume ``run_dir`` with a config that differs from the one it started with, naming the keys
    (the run-control keys, the other stage's keys and ``<stage>.time_limit_minutes`` may change)."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    try:
        saved = _flat_config(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise ResumeMismatchError(f"{path} is not valid JSON ({err}); it records the run's config") from None
    new = _flat_config(json.loads(to_json(config)))
    free = {*_RUN_CONTROL_KEYS, f"{stage}.time_limit_minutes"}
    differ = sorted(k for k in set(saved) | set(new) if k.split(".")[0] not in set(STAGES) - {stage}
                    and k not in free and saved.get(k, "<missing>") != new.get(k, "<missing>"))
    if differ:
        shown = ", ".join(f"{k} {saved.get(k, '<missing>')} -> {new.get(k, '<missing>')}" for k in differ[:6])
        raise ResumeMismatchError(
            f"{run_dir} was started with another config ({len(differ)} key(s) differ: {shown}"
            f"{', ...' if len(differ) > 6 else ''}); resume with the same config and --set values, or use a "
            "new --workdir")


def _check_frozen(record: Path, frozen: Any, source: Path, resuming: bool) -> dict[str, str]:
    """Stage 2: the record of the frozen A-Net; on resume, refuse an A-Net other than the recorded one."""
    found = {"source": str(source), "sha256": tree_fingerprint(frozen)}
    if resuming and record.exists():
        saved = json.loads(record.read_text())
        if saved["sha256"] != found["sha256"]:
            raise ResumeMismatchError(
                f"{record.parent} trains T-Net against the A-Net {saved['source']} (sha256 {saved['sha256'][:12]}), "
                f"but {source} holds another A-Net (sha256 {found['sha256'][:12]}); put that A-Net back "
                "(tnet.init_from) or use a new --workdir")
    return found


class _StopRequest:
    """SIGTERM / SIGINT set a flag that the loop checks after each step (a second Ctrl-C aborts at once)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
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


def _save(manager: ocp.CheckpointManager, state: TrainState, iterator: Any, step: int, elapsed_s: float) -> None:
    """Every process: the (replicated) state once, each process's data-iterator state, the training time."""
    import grain

    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.checkpoint_items()),
                                               data=grain.checkpoint.CheckpointSave(iterator),
                                               meta=ocp.args.JsonSave({"elapsed_s": elapsed_s})), force=True)
    manager.wait_until_finished()


def _restore(manager: ocp.CheckpointManager, state: TrainState, iterator: Any, step: int
             ) -> tuple[TrainState, float]:
    """``state`` (placed as it is to be restored: replicated on the mesh) and the iterator from ``step``;
    returns the restored state and the training time before it."""
    import grain

    folder = Path(manager.directory) / str(step)
    own = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if (folder / "data").is_dir() and not (folder / "data" / own).exists():
        written = sorted(p.name for p in (folder / "data").glob("process_*.json"))
        raise ResumeMismatchError(f"{folder} holds the data positions of {len(written)} process(es), this run has "
                                  f"{jax.process_count()}: resume with as many processes")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state.checkpoint_items())
    items = {"state": ocp.args.StandardRestore(abstract), "data": grain.checkpoint.CheckpointRestore(iterator)}
    if (folder / "meta").exists():  # older checkpoints hold no training time
        items["meta"] = ocp.args.JsonRestore()
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    elapsed = float(restored["meta"]["elapsed_s"]) if "meta" in items else 0.0
    return state.replace(**restored["state"]), elapsed


class _CsvLog:
    """``metrics.csv``, appended to; rows after ``last_step`` (written before a crash, past the checkpoint
    the run resumes from) are dropped first, so that no step appears twice."""

    def __init__(self, path: Path, last_step: int) -> None:
        if path.exists():
            with path.open(newline="") as f:
                rows = list(csv.reader(f))
            kept = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= last_step]
            if len(kept) != len(rows) - 1:
                lines = [",".join(_LOG_FIELDS)] + [",".join(r) for r in kept]
                write_text(path, "\n".join(lines) + "\n")
        new = not path.exists()
        self._file = path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=_LOG_FIELDS, extrasaction="ignore",
                                      lineterminator="\n")
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


def _quiet(message: str) -> None:
    del message


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:  # grain worker processes: stopped here, their shared memory freed
        close()


def train(
    config: TrainConfig, workdir: str | Path, stage: str, *, max_steps: int | None = None, progress: bool = True,
) -> RunResult:
    """Train ``stage`` ('anet' or 'tnet') in ``workdir/<stage>``, resuming from its newest checkpoint.

    Stops at the end of the schedule (``epochs x steps_per_epoch`` steps), at ``max_steps`` (a limit on the
    global step), at ``time_limit_minutes`` or on SIGTERM / Ctrl-C, saving a checkpoint in every case; unless
    stopped by a signal it then exports the weights to ``workdir/<stage>/weights``. After Ctrl-C (SIGINT) it
    raises :class:`Interrupted` (a KeyboardInterrupt) once the checkpoint is saved; after SIGTERM it returns
    with ``stopped_by``.
    Raises :class:`ResumeMismatchError` when the workdir was started with another config (or, stage 2,
    against another A-Net).
    """
    main = is_main_process()
    say = print if main else _quiet
    stage_config = config.stage(stage)
    run_dir = Path(workdir) / stage
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh()
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    if stage_config.batch_size % n_dev:
        raise ValueError(f"{stage}.batch_size {stage_config.batch_size} is not divisible by the {n_dev} devices")
    host_batch = stage_config.batch_size // n_proc

    manager = _checkpoint_manager(run_dir / "checkpoints", config)
    latest = manager.latest_step()
    if latest is not None:
        _check_config(config, stage, run_dir)
    examples = build_examples(config, stage)
    batches = iter(make_loader(examples, batch_size=host_batch, seed=config.seed,
                               worker_count=config.data.worker_count, shard_index=jax.process_index(),
                               shard_count=n_proc))
    try:
        return _train(config, stage, run_dir, manager, batches, latest, mesh, max_steps=max_steps,
                      progress=progress, say=say, main=main, num_examples=len(examples))
    finally:
        manager.close()
        _close(batches)


def _train(config: TrainConfig, stage: str, run_dir: Path, manager: ocp.CheckpointManager, batches: Any,
           latest: int | None, mesh: Any, *, max_steps: int | None, progress: bool, say: Callable[[str], None],
           main: bool, num_examples: int) -> RunResult:
    stage_config = config.stage(stage)
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    say(f"{stage}: {num_examples:,} training examples")
    rng = jax.random.key(config.seed)
    state, anet_source = _initial_state(config, stage, run_dir.parent, rng, say)
    record = run_dir.parent / "tnet" / "frozen_anet.json"
    frozen_record = _check_frozen(record, state.frozen, anet_source, latest is not None) if stage == "tnet" else None
    say(f"{stage}: {count_params({'params': state.params}):,} parameters, {n_dev} device(s) on {n_proc} "
        f"process(es), global batch {stage_config.batch_size}, {stage_config.total_steps:,} steps")
    state = jax.device_put(state, replicated(mesh))
    elapsed_before = 0.0
    if latest is not None:
        state, elapsed_before = _restore(manager, state, batches, latest)
        say(f"{stage}: resumed from {run_dir / 'checkpoints' / str(latest)}")
    if main and (latest is None or not (run_dir / "config.json").exists()):
        write_text(run_dir / "config.json", to_json(config) + "\n")
    if main and frozen_record is not None and (latest is None or not record.exists()):
        write_text(record, json.dumps(frozen_record, indent=2) + "\n")
    step_fn = compile_train_step(mesh, stage=stage, model_config=config.model,
                                 local_loss_weight=stage_config.local_loss_weight)
    dropout_rng = jax.random.fold_in(rng, 1)
    schedule = learning_rate_schedule(stage_config)
    last = stage_config.total_steps if max_steps is None else min(max_steps, stage_config.total_steps)
    step = int(state.step)
    log = _CsvLog(run_dir / "metrics.csv", step) if main else None
    deadline = time.monotonic() + 60 * stage_config.time_limit_minutes if stage_config.time_limit_minutes else math.inf
    bar = None
    if progress and main:
        from tqdm import tqdm

        bar = tqdm(total=last, initial=step, desc=f"train {stage}", unit="step", dynamic_ncols=True)
    start, window_start, window_steps = time.monotonic(), time.monotonic(), 0
    stop = _StopRequest()
    stopped_by = None

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - start

    try:
        with stop:
            while step < last:
                local = _STOP_REASONS.index(stop.signal) if stop.signal else int(time.monotonic() >= deadline)
                stopped_by = _STOP_REASONS[max_over_processes(local)]  # the same in every process
                if stopped_by is not None:
                    break
                # Copied out of the workers' shared memory at once, so that grain frees each segment while the
                # run goes on, not at exit (where an interrupted run would leave the last one behind).
                batch = {k: np.array(v) for k, v in next(batches).items()}
                state, metrics = step_fn(state, shard_batch(batch, mesh), dropout_rng)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not math.isfinite(metrics["loss"]):
                    suffix = f"_process{jax.process_index()}" if n_proc > 1 else ""
                    path = run_dir / f"nonfinite_batch_step{step + 1}{suffix}.npz"
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
                               "examples_per_s": rate, "elapsed_s": elapsed()})
                    window_start, window_steps = time.monotonic(), 0
                if step % config.checkpoint_every == 0:
                    _save(manager, state, batches, step, elapsed())
        if manager.latest_step() != step:
            _save(manager, state, batches, step, elapsed())
    finally:
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
    where = run_dir / "checkpoints" / str(step)
    if stopped_by in ("SIGTERM", "SIGINT"):
        say(f"{stage}: {stopped_by} received: saved step {step} to {where}; run the same command to resume")
        if stopped_by == "SIGINT":
            raise Interrupted
        return RunResult(step, False, None, interrupted=True, stopped_by=stopped_by)
    finished = step >= stage_config.total_steps
    weights = _export(config, stage, state, run_dir / "weights") if main else None
    barrier("atnet_jax_weights_written")
    reason = "end of schedule" if finished else "time limit" if stopped_by else f"step limit {last}"
    say(f"{stage}: {reason} at step {step}: saved {where}" + (f" and weights {weights}" if weights else ""))
    return RunResult(step, finished, weights)
