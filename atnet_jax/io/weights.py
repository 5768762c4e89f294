"""Weight checkpoints: Flax variables of A-Net and/or T-Net in an orbax folder, with a metadata file.

Layout of a weights folder::

    DIR/atnet_jax.json   {"format": "atnet_jax.weights", "networks": ["anet", "tnet"], "model_config": {...}}
    DIR/variables/       orbax StandardCheckpointer tree {"anet": {"params", "batch_stats"}, "tnet": ...}

Folders are written next to the target and renamed into place, so a crash never leaves a half-written one.
"""
from __future__ import annotations

import hashlib
import json
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
        raise CheckpointError(f"{directory} is not an atnet_jax weights checkpoint (no {METADATA_FILE})") from None
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
    restored = ocp.StandardCheckpointer().restore(directory / _VARIABLES_DIR, target)
    return {n: restored[n] for n in networks}, config


def load_predictor(directory: str | Path) -> ATNetPredictor:
    """The networks of a weights folder, ready for a session (:class:`~atnet_jax.models.predictor.ATNetPredictor`)."""
    variables, config = load_weights(directory)
    return ATNetPredictor(variables, config)


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
