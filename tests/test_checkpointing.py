"""Weights folders: save/restore round trip, refusing to clobber, clear errors for the wrong kind."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from atnet_jax.io.weights import METADATA_FILE, CheckpointError, load_weights, read_metadata, save_weights


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_round_trip_both_networks(tmp_path, tiny_config, tiny_variables):
    out = save_weights(tmp_path / "w", tiny_variables, tiny_config, extra={"source": "test"})
    restored, config = load_weights(out)
    assert config == tiny_config
    _assert_same(restored, tiny_variables)
    assert read_metadata(out)["source"] == "test"
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary folders left behind


def test_one_network_and_wrong_kind(tmp_path, tiny_config, tiny_variables):
    out = save_weights(tmp_path / "anet_only", {"anet": tiny_variables["anet"]}, tiny_config)
    restored, _ = load_weights(out, ("anet",))
    _assert_same(restored["anet"], tiny_variables["anet"])
    with pytest.raises(CheckpointError, match="holds anet weights, but tnet is needed"):
        load_weights(out)


def test_refuses_to_overwrite(tmp_path, tiny_config, tiny_variables):
    target = tmp_path / "w"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_weights(target, tiny_variables, tiny_config)
    assert (target / "keep.txt").read_text() == "user data"
    save_weights(target, tiny_variables, tiny_config, overwrite=True)
    assert not (target / "keep.txt").exists()
    load_weights(target)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_metadata(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not an atnet_jax weights checkpoint"):
        read_metadata(tmp_path)
    (tmp_path / METADATA_FILE).write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(CheckpointError, match="format is 'something.else'"):
        read_metadata(tmp_path)
