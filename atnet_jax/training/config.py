"""Training configuration: one frozen base config holding every key; experiment files only override.

An experiment file (``experiments/configs/paper.py``) defines ``get_config() -> TrainConfig``. The command
line overrides single keys with ``key=value`` on dotted paths (``anet.batch_size=8``, ``data.crop=256,256``);
an unknown key or a value of the wrong type is an error that names it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from atnet_jax.models.config import ModelConfig

STAGES = ("anet", "tnet")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training data lives; an empty path leaves that dataset out."""

    davis: str = ""  # DAVIS-2017 root (JPEGImages/480p, Annotations/480p, ImageSets/2017)
    davis_subset: str = "train"  # ImageSets/2017/<subset>.txt ('' = every sequence)
    youtube_vos: str = ""  # YouTube-VOS root holding train/JPEGImages, train/Annotations, train/meta.json
    sbd: str = ""  # SBD root (img/, inst/*.mat): still images, A-Net stage only
    tfds_davis: bool = False  # also read tfds davis/480p (train split), prepared beforehand
    tfds_data_dir: str = ""  # tfds data_dir ('' = tfds default)
    synthetic: str = ""  # a folder from `python -m atnet_jax.data.synthetic`
    synthetic_subset: str = "train"  # its ImageSets list ('' = every sequence)
    crop: tuple[int, int] = (384, 384)  # training size (H, W), multiples of 32
    worker_count: int = 2  # grain worker processes per host (0: build batches in the training process)


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One training stage: A-Net (stage 1) or T-Net (stage 2, A-Net frozen)."""

    batch_size: int = 6  # global batch (all hosts and devices together)
    epochs: int = 60  # epochs of steps_per_epoch steps
    steps_per_epoch: int = 7000
    learning_rate: float = 1e-5  # Adam
    lr_decay: float = 0.2  # learning rate x lr_decay ...
    lr_decay_epochs: int = 20  # ... every lr_decay_epochs epochs
    trainable: str = ".*"  # regex over '/'-joined parameter paths of the stage's network; others stay fixed
    local_loss_weight: float = 0.1  # T-Net: weight of the MSE on the local-transfer map
    init_from: str = ""  # T-Net: weights folder with the trained A-Net ('' = <workdir>/anet/weights)
    start_from_anet: bool = False  # T-Net: start encoder and decoder from that A-Net (then imagenet_weights unused)
    time_limit_minutes: float = 0.0  # stop (and save) after this much training time; 0 = no limit

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. The defaults are the paper's (sec. 3.4 and DESIGN "Training")."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    anet: StageConfig = StageConfig(batch_size=6, epochs=60, steps_per_epoch=7000)
    tnet: StageConfig = StageConfig(batch_size=8, epochs=40, steps_per_epoch=6000)
    imagenet_weights: str = ""  # local ResNet50 / SE-ResNet50 state_dict (.pth or .npz) for the encoders
    seed: int = 0  # parameter init, data order, augmentation and dropout
    checkpoint_every: int = 1000  # steps between checkpoints
    keep_checkpoints: int = 3  # newest checkpoints kept
    log_every: int = 50  # steps between lines of metrics.csv

    def stage(self, name: str) -> StageConfig:
        if name not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {name!r}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate(config: TrainConfig) -> TrainConfig:
    """Checks that span keys; raises ValueError naming the key."""
    crop = config.data.crop
    if len(crop) != 2 or any(c < 64 or c % 32 for c in crop):
        raise ValueError(f"data.crop must be two multiples of 32 of at least 64, got {crop}")
    for name in STAGES:
        stage = config.stage(name)
        for key in ("batch_size", "epochs", "steps_per_epoch", "lr_decay_epochs"):
            if getattr(stage, key) < 1:
                raise ValueError(f"{name}.{key} must be at least 1, got {getattr(stage, key)}")
        if not (math.isfinite(stage.learning_rate) and stage.learning_rate > 0):
            raise ValueError(f"{name}.learning_rate must be positive, got {stage.learning_rate}")
        if not 0 < stage.lr_decay <= 1:
            raise ValueError(f"{name}.lr_decay must be in (0, 1], got {stage.lr_decay}")
        for key in ("local_loss_weight", "time_limit_minutes"):
            if not (math.isfinite(getattr(stage, key)) and getattr(stage, key) >= 0):
                raise ValueError(f"{name}.{key} must be 0 or more, got {getattr(stage, key)}")
    for key in ("checkpoint_every", "keep_checkpoints", "log_every"):
        if getattr(config, key) < 1:
            raise ValueError(f"{key} must be at least 1, got {getattr(config, key)}")
    for key, value in (("seed", config.seed), ("data.worker_count", config.data.worker_count)):
        if value < 0:
            raise ValueError(f"{key} must be 0 or more, got {value}")
    return config


def load_config(path: str | Path) -> TrainConfig:
    """Run the experiment file ``path`` and return its ``get_config()``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"atnet_jax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config()")
    config = module.get_config()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{path}: get_config() must return a TrainConfig, got {type(config).__name__}")
    return validate(config)


def _parse(key: str, text: str, current: Any) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{key} takes true or false, got {text!r}")
    if isinstance(current, tuple):
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        kind = type(current[0]) if current else str
        try:
            return tuple(kind(p.strip()) for p in parts)
        except ValueError:
            raise ValueError(f"{key} takes comma-separated {kind.__name__} values, got {text!r}") from None
    try:
        return type(current)(text)
    except ValueError:
        raise ValueError(f"{key} takes a {type(current).__name__}, got {text!r}") from None


def keys(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every overridable ``(dotted key, value)`` of ``config``."""
    out = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            out += keys(value, f"{prefix}{field.name}.")
        else:
            out.append((f"{prefix}{field.name}", value))
    return out


def override(config: Any, assignments: Iterable[str]) -> Any:
    """Apply ``key=value`` strings to a (nested) frozen dataclass; validates a :class:`TrainConfig`."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise ValueError(f"override {assignment!r} is not key=value")
        config = _set(config, key.strip().split("."), text.strip(), key.strip())
    return validate(config) if isinstance(config, TrainConfig) else config


def _set(node: Any, path: Sequence[str], text: str, key: str) -> Any:
    names = {f.name for f in dataclasses.fields(node)}
    if path[0] not in names:
        raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(k for k, _ in keys(node))}")
    current = getattr(node, path[0])
    if dataclasses.is_dataclass(current):
        if len(path) == 1:
            raise ValueError(f"{key} is a group; set one of its keys, e.g. {key}.{dataclasses.fields(current)[0].name}")
        value = _set(current, path[1:], text, key)
    elif len(path) > 1:
        raise ValueError(f"unknown config key {key!r}")
    else:
        value = _parse(key, text, current)
    return dataclasses.replace(node, **{path[0]: value})


def to_json(config: TrainConfig) -> str:
    return json.dumps(config.to_dict(), indent=2)
