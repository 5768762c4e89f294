"""Weight checkpoints: Flax variables of A-Net and/or T-Net in an orbax folder, with a metadata file.

Layout of a weights folder::

    DIR/atnet_jax.json   {"format": "atnet_jax.weights", "networks": ["anet", "tnet"], "model_config": {...}}
    DIR/variables/       orbax StandardCheckpointer tree {"anet": {"params", "batch_stats"}, "tnet": ...}

Folders are written next to the target and renamed into place, so a crash never leaves a half-written one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from atnet_jax.errors import WeightsError
from atnet_jax.io.safe import replace_dir, staging_dir
from atnet_jax.models.build import NETWORKS, abstract_variables
from atnet_jax.models.config import ModelConfig
from atnet_jax.models.predictor import ATNetPredictor

FORMAT = "atnet_jax.weights"
METADATA_FILE = "atnet_jax.json"
_VARIABLES_DIR = "variables"


class CheckpointError(WeightsError):
    """A folder that is not an atnet_jax weights checkpoint, or not the kind asked for."""


def save_weights(
    directory: str | Path,
    variables: dict[str, Any],
    config: ModelConfig,
    *,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``variables`` (``{"anet": ..., "tnet": ...}``, either or both) and ``config`` to ``directory``.

    Refuses an existing non-empty ``directory`` unless ``overwrite``. ``extra`` is stored in the metadata
    (e.g. where the weights came from).
    """
    directory = Path(directory).resolve()
    unknown = sorted(set(variables) - set(NETWORKS))
    if unknown or not variables:
        raise ValueError(f"variables must hold some of {NETWORKS}, got {sorted(variables)}")
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(f"{directory} already exists and is not empty (pass --overwrite to replace it)")
    tmp = staging_dir(directory)  # beside the target, with the usual folder mode (mkdtemp's is 0700)
    try:
        # Host arrays written by this process alone (with several processes, only one of them exports).
        this = jax.process_index()
        checkpointer = ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=this, active_processes={this}))
        checkpointer.save(tmp / _VARIABLES_DIR, jax.device_get(variables))
        checkpointer.wait_until_finished()
        metadata = {
            "format": FORMAT,
            "networks": [n for n in NETWORKS if n in variables],
            "model_config": config.to_dict(),
            **(extra or {}),
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The metadata of a weights folder; :class:`CheckpointError` where it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    meta_path = directory / METADATA_FILE
    try:
        metadata = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not an atnet_jax weights checkpoint (no {METADATA_FILE})"
                              f"{_weights_hint(directory)}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{meta_path} is not valid JSON: {err}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: format is {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata


def load_weights(
    directory: str | Path, networks: tuple[str, ...] = NETWORKS
) -> tuple[dict[str, Any], ModelConfig]:
    """Restore ``networks`` from a weights folder -> (``{"anet": ..., ...}``, model config).

    Raises :class:`CheckpointError` naming the folder where it lacks one of ``networks``.
    """
    directory = Path(directory).resolve()
    metadata = read_metadata(directory)
    missing = [n for n in networks if n not in metadata["networks"]]
    if missing:
        raise CheckpointError(
            f"{directory} holds {'/'.join(metadata['networks'])} weights, but {'/'.join(missing)} is needed"
        )
    config = ModelConfig.from_dict(metadata["model_config"])
    target = abstract_variables(config, tuple(metadata["networks"]))
    damaged = (f"{directory} is damaged: a file of its {_VARIABLES_DIR}/ folder is missing, truncated or corrupt "
               "(an incomplete copy or download?); copy it again, or convert or export the weights again")
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # orbax's own warnings about a damaged folder: the error below says it
    try:
        with ocp.StandardCheckpointer() as checkpointer:  # closed on errors too: no thread outlives the call
            try:
                _read_all(directory / _VARIABLES_DIR)
                stored = checkpointer.metadata(directory / _VARIABLES_DIR)
                stored = _shapes(getattr(stored, "item_metadata", stored))
            except Exception as err:  # noqa: BLE001 (orbax/tensorstore raise many kinds for a damaged folder)
                raise WeightsError(damaged) from err
            if not stored:
                raise WeightsError(damaged)
            if stored != _shapes(target):
                raise WeightsError(f"{directory} holds weights of another network size than its {METADATA_FILE} "
                                   f"says: the weights are {_stored_size(stored)}; {METADATA_FILE}: "
                                   f"{network_size(config)}")
            try:
                restored = checkpointer.restore(directory / _VARIABLES_DIR, target)
            except Exception as err:  # noqa: BLE001 (as above)
                raise WeightsError(damaged) from err
    finally:
        absl_logger.setLevel(level)
    return {n: restored[n] for n in networks}, config


def load_predictor(directory: str | Path, precision: str = "float32") -> ATNetPredictor:
    """The networks of a weights folder, ready for a session (:class:`~atnet_jax.models.predictor.ATNetPredictor`);
    ``precision``: ``"float32"`` or ``"bf16"`` (bfloat16 compute, for GPUs and TPUs)."""
    variables, config = load_weights(directory)
    return ATNetPredictor(variables, config, precision)


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over the names and contents of every file of a weights folder: what a run read, without loading it
    (an evaluation's shards compare their weights by it)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def tree_fingerprint(tree: Any) -> str:
    """A SHA-256 of a pytree of arrays: paths, dtypes, shapes and bytes. Equal networks give equal fingerprints
    whatever files they were read from (training checks its frozen A-Net by it)."""
    digest = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(tree)[0], key=lambda x: jax.tree_util.keystr(x[0])):
        array = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
def _read_all(variables_dir: Path) -> None:
    """Read every stored value once (raises where a data file is truncated or missing).

    Orbax's restore reads many arrays at once; when one read fails, the others end after its event loop has
    closed and each prints a traceback of its own. Read here first, without an event loop, so that a damaged
    folder fails cleanly; the restore then reads from the page cache.
    """
    import tensorstore as ts

    if not (variables_dir / "manifest.ocdbt").is_file():
        return  # not an OCDBT checkpoint: left to orbax
    store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{variables_dir.resolve()}/"}).result()
    for read in [store.read(key) for key in store.list().result()]:
        read.result()


def network_size(config: ModelConfig) -> str:
    """The sizes of a network in words: stem, stage widths and blocks, decoder width."""
    return (f"stem {config.stem_width}, stage widths {config.stage_widths}, blocks {config.stage_blocks}, "
            f"decoder {config.decoder_width}")


def _shapes(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
    """'/'-free key path -> shape of every leaf of a (metadata, abstract or real) variables tree."""
    leaves = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
    return {tuple(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape) for path, leaf in leaves
            if hasattr(leaf, "shape")}


def _stored_size(shapes: dict[tuple[str, ...], tuple[int, ...]]) -> str:
    """The network size that stored parameter shapes show (read as a converted state_dict would be)."""
    from atnet_jax.io.torch_weights import flax_to_torch, infer_model_config

    tree: dict[str, Any] = {}
    for path, shape in shapes.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.broadcast_to(np.uint8(0), shape)  # a shape without memory
    try:
        return network_size(infer_model_config(flax_to_torch(tree)))
    except Exception:  # noqa: BLE001 (no A-Net among them: count instead)
        return f"{sum(int(np.prod(s)) for s in shapes.values()):,} numbers"


def _weights_hint(directory: Path) -> str:
    """Where the weights are when ``directory`` is a training run's folder or one of its checkpoints."""
    if directory.parent.name == "checkpoints" and directory.name.isdigit():
        stage_dir, what = directory.parent.parent, f": it is checkpoint {directory.name} of a training run"
    elif directory.name == "checkpoints":
        stage_dir, what = directory.parent, ": it holds a training run's checkpoints"
    elif (directory / "weights").is_dir() or (directory / "checkpoints").is_dir():
        stage_dir, what = directory, ": it is a training stage's folder"
    else:
        return ""
    weights = stage_dir / "weights"
    if weights.is_dir():
        return f"{what}; pass its weights folder {weights}/"
    return (f"{what}; the stage writes its weights to {weights}/ when it stops (at the end of the schedule, "
            "at --max-steps, on Ctrl-C or SIGTERM)")
