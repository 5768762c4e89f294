"""Training: losses against NumPy, the schedule, data-parallel steps, freezing, checkpoints that resume."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import cached_env

from atnet_jax.data.synthetic import write_dataset
from atnet_jax.training.config import DataConfig, StageConfig, TrainConfig, keys, load_config, override
from atnet_jax.training.losses import balanced_bce, local_map_mse
from atnet_jax.training.optim import learning_rate_schedule, trainable_mask
from atnet_jax.training.state import create_train_state
from atnet_jax.training.steps import compile_train_step, make_mesh, shard_batch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CROP = (64, 64)


# ----------------------------------------------------------------------------------------------- NumPy references


def np_balanced_bce(logits, target, valid):
    out = []
    for lg, t, v in zip(logits, target, valid):
        p = 1 / (1 + np.exp(-lg.astype(np.float64)))
        pos, neg = (t * v).sum(), ((1 - t) * v).sum()
        loss_pos = -(t * v * np.log(p)).sum()
        loss_neg = -((1 - t) * v * np.log(1 - p)).sum()
        total = pos + neg
        out.append((neg / total * loss_pos + pos / total * loss_neg) / total)
    return np.mean(out)


def np_resize_align_corners(x, size):
    """[H, W] -> size, bilinear with align_corners=True."""
    h, w = x.shape
    ys = np.arange(size[0]) * (h - 1) / max(size[0] - 1, 1)
    xs = np.arange(size[1]) * (w - 1) / max(size[1] - 1, 1)
    out = np.zeros(size)
    for i, y in enumerate(ys):
        for j, xx in enumerate(xs):
            y0, x0 = int(np.floor(y)), int(np.floor(xx))
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            dy, dx = y - y0, xx - x0
            out[i, j] = ((1 - dy) * (1 - dx) * x[y0, x0] + (1 - dy) * dx * x[y0, x1]
                         + dy * (1 - dx) * x[y1, x0] + dy * dx * x[y1, x1])
    return out


def test_balanced_bce_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 12, 10, 1)).astype(np.float32)
    target = (rng.random((3, 12, 10, 1)) < [[[[0.1]]], [[[0.5]]], [[[0.9]]]]).astype(np.float32)
    valid = (rng.random((3, 12, 10, 1)) < 0.8).astype(np.float32)
    got = float(balanced_bce(jnp.asarray(logits), jnp.asarray(target), jnp.asarray(valid)))
    np.testing.assert_allclose(got, np_balanced_bce(logits, target, valid), rtol=1e-5)


def test_balanced_bce_weighs_classes_by_the_other_share():
    # 1 positive, 3 negatives, all predicted 0.5: loss = (3 * ln2 * 1 + 1 * ln2 * 3) / 16 = 6 ln2 / 16
    target = jnp.asarray([1.0, 0, 0, 0]).reshape(1, 2, 2, 1)
    got = float(balanced_bce(jnp.zeros((1, 2, 2, 1)), target, jnp.ones((1, 2, 2, 1))))
    np.testing.assert_allclose(got, 6 * np.log(2) / 16, rtol=1e-6)
    # void pixels do not count
    valid = jnp.asarray([1.0, 1, 0, 0]).reshape(1, 2, 2, 1)
    got = float(balanced_bce(jnp.zeros((1, 2, 2, 1)), target, valid))
    np.testing.assert_allclose(got, 2 * np.log(2) / 4, rtol=1e-6)


def test_local_map_mse_matches_numpy():
    rng = np.random.default_rng(1)
    target = (rng.random((2, 16, 12, 1)) < 0.4).astype(np.float32)
    valid = np.ones_like(target)
    valid[1, :4] = 0
    local = rng.random((2, 4, 3, 1)).astype(np.float32)
    want = []
    for b in range(2):
        small = np_resize_align_corners(target[b, ..., 0], (4, 3))
        small_valid = np_resize_align_corners(valid[b, ..., 0], (4, 3)) > 0.5
        want.append(((local[b, ..., 0] - small) ** 2 * small_valid).sum() / small_valid.sum())
    got = float(local_map_mse(jnp.asarray(local), jnp.asarray(target), jnp.asarray(valid)))
    np.testing.assert_allclose(got, np.mean(want), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- config, schedule


def test_every_experiment_config_loads():
    for path in sorted((PROJECT_ROOT / "experiments" / "configs").glob("*.py")):
        config = load_config(path)
        assert isinstance(config, TrainConfig), path
    paper = load_config(PROJECT_ROOT / "experiments" / "configs" / "paper.py")
    assert (paper.anet.batch_size, paper.anet.epochs, paper.anet.steps_per_epoch) == (6, 60, 7000)
    assert (paper.tnet.batch_size, paper.tnet.epochs, paper.tnet.steps_per_epoch) == (8, 40, 6000)
    assert paper.anet.learning_rate == paper.tnet.learning_rate == 1e-5
    assert paper.tnet.local_loss_weight == 0.1


def test_overrides_parse_types_and_reject_typos():
    config = override(TrainConfig(), ["anet.batch_size=8", "data.crop=256,320", "data.tfds_davis=true",
                                      "tnet.learning_rate=3e-4", "model.local_max_displacement=4"])
    assert config.anet.batch_size == 8 and config.data.crop == (256, 320) and config.data.tfds_davis is True
    assert config.tnet.learning_rate == 3e-4 and config.model.local_max_displacement == 4
    with pytest.raises(ValueError, match="unknown config key 'anet.batchsize'"):
        override(TrainConfig(), ["anet.batchsize=8"])
    with pytest.raises(ValueError, match="anet.batch_size takes a int"):
        override(TrainConfig(), ["anet.batch_size=eight"])
    with pytest.raises(ValueError, match="data.crop must be two multiples of 32"):
        override(TrainConfig(), ["data.crop=100,100"])
    assert ("anet.batch_size", 6) in keys(TrainConfig())


def test_learning_rate_steps_down_every_20_epochs():
    schedule = learning_rate_schedule(StageConfig(steps_per_epoch=10, epochs=60))
    got = [float(schedule(s)) for s in (0, 199, 200, 399, 400, 599)]
    np.testing.assert_allclose(got, [1e-5, 1e-5, 2e-6, 2e-6, 4e-7, 4e-7], rtol=1e-6)


def test_trainable_mask_selects_by_path():
    params = {"encoder_6ch": {"conv0_6ch": {"kernel": 0}}, "decoder_iact": {"head": {"kernel": 0}}}
    mask = trainable_mask(params, "^decoder")
    assert mask == {"encoder_6ch": {"conv0_6ch": {"kernel": False}}, "decoder_iact": {"head": {"kernel": True}}}
    with pytest.raises(ValueError, match="matches no parameter"):
        trainable_mask(params, "^nothing")


# ----------------------------------------------------------------------------------------------- steps


def _config(tiny_config, **stage_overrides) -> TrainConfig:
    stage = dict(batch_size=2, epochs=1, steps_per_epoch=100, learning_rate=1e-3)
    stage.update(stage_overrides)
    return TrainConfig(model=tiny_config, data=DataConfig(crop=CROP, worker_count=0),
                       anet=StageConfig(**stage), tnet=StageConfig(**stage), checkpoint_every=2, log_every=1)


def _anet_batch(rng, batch=2):
    h, w = CROP
    target = (rng.random((batch, h, w, 1)) < 0.3).astype(np.float32)
    return {"image": rng.normal(size=(batch, h, w, 3)).astype(np.float32),
            "interaction": rng.random((batch, h, w, 3)).astype(np.float32),
            "target": target, "valid": np.ones_like(target)}


def _tnet_batch(rng, batch=2):
    h, w = CROP
    targets = (rng.random((batch, 5, h, w, 1)) < 0.3).astype(np.float32)
    return {"frames": rng.normal(size=(batch, 5, h, w, 3)).astype(np.float32), "targets": targets,
            "valid": np.ones_like(targets), "interaction": rng.random((batch, h, w, 3)).astype(np.float32)}


def _run_steps(config, stage, mesh, batches, frozen=None, tx=None):
    state = create_train_state(config, stage, jax.random.key(0), frozen=frozen)
    if tx is not None:
        state = state.replace(tx=tx, opt_state=tx.init(state.params))
    state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step = compile_train_step(mesh, stage=stage, model_config=config.model)
    metrics = []
    for batch in batches:
        state, m = step(state, shard_batch(batch, mesh), jax.random.key(1))
        metrics.append(jax.device_get(m))
    return jax.device_get(state), metrics, step


def test_sharded_step_equals_single_device_step(tiny_config):
    # SGD, not Adam: Adam scales every update to ~lr, so float noise in a zero gradient (a bias before BN)
    # would become an lr-sized difference; the step function is the same.
    assert jax.device_count() == 2, "conftest sets 2 fake CPU devices"
    config = _config(tiny_config)
    rng = np.random.default_rng(0)
    batches = [_anet_batch(rng, batch=4) for _ in range(2)]
    init = jax.device_get(create_train_state(config, "anet", jax.random.key(0)))
    one, m_one, _ = _run_steps(config, "anet", make_mesh(jax.devices()[:1]), batches, tx=optax.sgd(0.5))
    two, m_two, step = _run_steps(config, "anet", make_mesh(), batches, tx=optax.sgd(0.5))
    assert step._cache_size() == 1, "one compile serves every step"
    assert int(one.step) == int(two.step) == 2
    np.testing.assert_allclose([m["loss"] for m in m_one], [m["loss"] for m in m_two], rtol=1e-5)
    d_one = jax.tree.map(lambda a, b: a - b, one.params, init.params)
    d_two = jax.tree.map(lambda a, b: a - b, two.params, init.params)
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(d_one))
    for a, b in zip(jax.tree.leaves(d_one), jax.tree.leaves(d_two)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * scale)
    for a, b in zip(jax.tree.leaves(one.batch_stats), jax.tree.leaves(two.batch_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_anet_loss_falls_on_a_fixed_batch(tiny_config):
    config = _config(tiny_config, learning_rate=3e-3)
    batch = _anet_batch(np.random.default_rng(3))
    yy, xx = np.mgrid[:CROP[0], :CROP[1]]
    discs = np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 < 15 ** 2 for cy, cx in ((20, 30), (40, 36))])
    batch["target"] = discs[..., None].astype(np.float32)  # bright discs in the image: learnable
    batch["image"] = batch["image"] * 0.2 + 2.0 * batch["target"]
    _, metrics, _ = _run_steps(config, "anet", make_mesh(), [batch] * 15)
    losses = [float(m["loss"]) for m in metrics]
    assert losses[-1] < 0.7 * losses[0], losses


def test_tnet_stage_trains_tnet_and_leaves_anet_untouched(tiny_config, tiny_variables):
    config = _config(tiny_config, trainable="^decoder_prop")
    rng = np.random.default_rng(4)
    frozen = jax.tree.map(np.asarray, tiny_variables["anet"])
    state, metrics, _ = _run_steps(config, "tnet", make_mesh(), [_tnet_batch(rng) for _ in range(2)], frozen=frozen)
    assert all(np.isfinite(m["loss"]) and m["local_mse"] > 0 for m in metrics)
    for a, b in zip(jax.tree.leaves(state.frozen), jax.tree.leaves(frozen)):
        np.testing.assert_array_equal(a, b)
    init = create_train_state(config, "tnet", jax.random.key(0), frozen=frozen).params
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), state.params, init)
    assert any(jax.tree.leaves(changed["decoder_prop"]))
    assert not any(jax.tree.leaves({k: v for k, v in changed.items() if k != "decoder_prop"}))


# ----------------------------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth") / "davis", videos=3, num_frames=8, height=64, width=96)


def _loop_config(tiny_config, root) -> TrainConfig:
    config = _config(tiny_config)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, synthetic=str(root)))


def _params(weights_dir, network):
    from atnet_jax.io.weights import load_weights

    return load_weights(weights_dir, (network,))[0][network]


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tiny_config, synthetic_root, tmp_path):
    from atnet_jax.training.loop import train

    config = _loop_config(tiny_config, synthetic_root)
    straight = train(config, tmp_path / "straight", "anet", max_steps=5, progress=False)
    first = train(config, tmp_path / "resumed", "anet", max_steps=3, progress=False)
    assert first.step == 3 and sorted(p.name for p in (tmp_path / "resumed/anet/checkpoints").iterdir()) == ["2", "3"]
    second = train(config, tmp_path / "resumed", "anet", max_steps=5, progress=False)
    assert straight.step == second.step == 5
    leaves = [jax.tree.leaves(_params(run.weights, "anet")) for run in (straight, second)]
    for a, b in zip(*leaves):
        np.testing.assert_array_equal(a, b)
    rows = (tmp_path / "resumed/anet/metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]

    # stage 2 reads the stage-1 weights of the workdir, and exports both networks with A-Net unchanged;
    # start_from_anet gives T-Net A-Net's decoder (only T-Net's own prev_conv1x1 trains here)
    config = dataclasses.replace(config, tnet=dataclasses.replace(config.tnet, start_from_anet=True,
                                                                  trainable="^prev_conv1x1"))
    result = train(config, tmp_path / "resumed", "tnet", max_steps=1, progress=False)
    anet = _params(second.weights, "anet")
    for a, b in zip(jax.tree.leaves(_params(result.weights, "anet")), jax.tree.leaves(anet)):
        np.testing.assert_array_equal(a, b)
    tnet = _params(result.weights, "tnet")["params"]
    for a, b in zip(jax.tree.leaves(tnet["decoder_prop"]), jax.tree.leaves(anet["params"]["decoder_iact"])):
        np.testing.assert_array_equal(a, b)


def test_sigterm_saves_and_the_rerun_resumes(tiny_config, synthetic_root, tmp_path):
    config_file = tmp_path / "config.py"
    config_file.write_text(
        "import dataclasses\n"
        "from atnet_jax.models.config import tiny_model_config\n"
        "from atnet_jax.training.config import DataConfig, StageConfig, TrainConfig\n"
        "def get_config():\n"
        "    stage = StageConfig(batch_size=2, epochs=1, steps_per_epoch=100000, learning_rate=1e-3)\n"
        f"    return TrainConfig(model=tiny_model_config(), data=DataConfig(crop={CROP}, worker_count=0, "
        f"synthetic={str(synthetic_root)!r}), anet=stage, tnet=stage, checkpoint_every=1000, log_every=1)\n"
    )
    env = cached_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    cmd = [sys.executable, "-m", "atnet_jax.train", "--config", str(config_file), "--workdir", str(tmp_path / "run"),
           "--stage", "anet", "--no-progress"]
    proc = subprocess.Popen(cmd + ["--max-steps", "10000"], env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "run/anet/metrics.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out  # stopped before the end: a scheduler may requeue the job
    assert "SIGTERM received: saved step" in out and "stopped by SIGTERM" in out, out
    saved = sorted(int(p.name) for p in (tmp_path / "run/anet/checkpoints").iterdir())
    assert len(saved) == 1 and saved[0] >= 2
    assert not (tmp_path / "run/anet/weights").exists()
    out = subprocess.run(cmd + ["--max-steps", str(saved[0] + 1)], env=env, cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resumed from" in out.stdout and f"at step {saved[0] + 1}" in out.stdout
    steps = [int(r.split(",")[0]) for r in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, saved[0] + 2))


def test_non_finite_loss_stops_naming_the_step(tiny_config, synthetic_root, tmp_path, monkeypatch):
    import atnet_jax.training.loop as loop

    real = loop.build_examples

    class Poisoned:
        def __init__(self, examples):
            self.examples = examples

        def __len__(self):
            return len(self.examples)

        def __getitem__(self, key):
            example = self.examples[key]
            return {**example, "image": np.full_like(example["image"], np.nan)}

    monkeypatch.setattr(loop, "build_examples", lambda config, stage: Poisoned(real(config, stage)))
    with pytest.raises(loop.NonFiniteLossError, match=r"the loss is nan at step 1 .*nonfinite_batch_step1.npz"):
        loop.train(_loop_config(tiny_config, synthetic_root), tmp_path, "anet", max_steps=3, progress=False)
    assert np.isnan(np.load(tmp_path / "anet/nonfinite_batch_step1.npz")["image"]).all()
    assert not (tmp_path / "anet/checkpoints").exists() or not any((tmp_path / "anet/checkpoints").iterdir())


def test_train_cli_errors(tmp_path):
    from atnet_jax.train import main

    paper = str(PROJECT_ROOT / "experiments/configs/paper.py")
    assert main(["--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path), "--stage", "anet"]) == 2
    assert main(["--config", paper, "--workdir", str(tmp_path), "--stage", "anet", "--set", "anet.lr=1"]) == 2
    assert main(["--config", paper, "--workdir", str(tmp_path), "--stage", "anet"]) == 1  # no data configured
    assert main(["--config", paper, "--workdir", str(tmp_path), "--stage", "tnet",
                 "--set", "data.synthetic=/nonexistent"]) == 2  # no stage-1 weights


# ----------------------------------------------------------------------------------------------- resuming safely


def test_resume_with_another_config_stops_naming_the_keys_and_keeps_config_json(tiny_config, synthetic_root,
                                                                               tmp_path, capsys):
    from atnet_jax.train import main
    from atnet_jax.training.loop import ResumeMismatchError, train

    config = _loop_config(tiny_config, synthetic_root)
    train(config, tmp_path, "anet", max_steps=1, progress=False)
    saved = (tmp_path / "anet/config.json").read_text()
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, decoder_width=32))
    with pytest.raises(ResumeMismatchError, match=r"1 key\(s\) differ: model.decoder_width 16 -> 32"):
        train(wider, tmp_path, "anet", max_steps=2, progress=False)
    assert (tmp_path / "anet/config.json").read_text() == saved
    # keys that only decide when to log, save or stop may change
    train(dataclasses.replace(config, log_every=5, checkpoint_every=7), tmp_path, "anet", max_steps=2, progress=False)
    assert (tmp_path / "anet/config.json").read_text() == saved

    # the command: exit 2 and one line
    config_file = tmp_path / "config.py"
    config_file.write_text(
        "from atnet_jax.models.config import tiny_model_config\n"
        "from atnet_jax.training.config import DataConfig, StageConfig, TrainConfig\n"
        "def get_config():\n"
        "    stage = StageConfig(batch_size=2, epochs=1, steps_per_epoch=100, learning_rate=1e-3)\n"
        f"    return TrainConfig(model=tiny_model_config(), data=DataConfig(crop={CROP}, worker_count=0, "
        f"synthetic={str(synthetic_root)!r}), anet=stage, tnet=stage, checkpoint_every=2, log_every=1)\n")
    capsys.readouterr()
    assert main(["--config", str(config_file), "--workdir", str(tmp_path), "--stage", "anet", "--no-progress",
                 "--set", "model.decoder_width=32", "seed=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.decoder_width 16 -> 32" in err[0] and "seed 0 -> 3" in err[0], err
    assert (tmp_path / "anet/config.json").read_text() == saved


def test_tnet_refuses_to_resume_against_another_anet(tiny_config, tiny_variables, synthetic_root, tmp_path):
    from atnet_jax.io.weights import save_weights
    from atnet_jax.io.weights import tree_fingerprint as fingerprint
    from atnet_jax.training.loop import ResumeMismatchError, train

    anet = jax.tree.map(np.asarray, tiny_variables["anet"])
    save_weights(tmp_path / "anet_a", {"anet": anet}, tiny_config)
    other = jax.tree.map(lambda x: x * np.float32(1.01) if x.dtype == np.float32 else x, anet)
    save_weights(tmp_path / "anet_b", {"anet": other}, tiny_config)
    config = _loop_config(tiny_config, synthetic_root)
    config = dataclasses.replace(config, tnet=dataclasses.replace(config.tnet, init_from=str(tmp_path / "anet_a"),
                                                                  trainable="^prev_conv1x1"))
    train(config, tmp_path / "run", "tnet", max_steps=1, progress=False)
    record = json.loads((tmp_path / "run/tnet/frozen_anet.json").read_text())
    assert record == {"source": str(tmp_path / "anet_a"), "sha256": fingerprint(anet)}
    shutil.rmtree(tmp_path / "anet_a")
    (tmp_path / "anet_b").rename(tmp_path / "anet_a")  # the same path now holds another A-Net
    with pytest.raises(ResumeMismatchError, match="holds another A-Net"):
        train(config, tmp_path / "run", "tnet", max_steps=2, progress=False)
    assert json.loads((tmp_path / "run/tnet/frozen_anet.json").read_text()) == record


def _metrics(workdir: Path) -> list[dict[str, str]]:
    with (workdir / "anet/metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_metrics_csv_drops_rows_past_the_restored_step_after_a_crash(tiny_config, synthetic_root, tmp_path):
    from atnet_jax.training.loop import train

    config = _loop_config(tiny_config, synthetic_root)  # a checkpoint every 2 steps
    train(config, tmp_path, "anet", max_steps=2, progress=False)
    with (tmp_path / "anet/metrics.csv").open("a") as f:  # a crash after logging steps 3 and 4, unsaved
        f.write("3,9,9,,9,0.001,1,99\n4,9,9,,9,0.001,1,99\n")
    train(config, tmp_path, "anet", max_steps=4, progress=False)
    rows = _metrics(tmp_path)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]
    assert all(r["loss"] != "9" for r in rows)


def test_elapsed_time_continues_after_a_resume(tiny_config, synthetic_root, tmp_path):
    from atnet_jax.training.loop import train

    config = _loop_config(tiny_config, synthetic_root)
    train(config, tmp_path, "anet", max_steps=2, progress=False)
    before = float(_metrics(tmp_path)[-1]["elapsed_s"])
    train(config, tmp_path, "anet", max_steps=3, progress=False)
    elapsed = [float(r["elapsed_s"]) for r in _metrics(tmp_path)]
    assert len(elapsed) == 3 and elapsed[2] > before >= elapsed[0] > 0


def test_ctrl_c_saves_then_exits_130_without_worker_traceback(synthetic_root, tmp_path):
    # Ctrl-C in a terminal reaches the whole process group: the training process and its grain worker.
    # Exit code 130 comes from cli.run mapping KeyboardInterrupt (after the save) to it.
    config_file = tmp_path / "config.py"
    config_file.write_text(
        "from atnet_jax.models.config import tiny_model_config\n"
        "from atnet_jax.training.config import DataConfig, StageConfig, TrainConfig\n"
        "def get_config():\n"
        "    stage = StageConfig(batch_size=2, epochs=1, steps_per_epoch=100000, learning_rate=1e-3)\n"
        f"    return TrainConfig(model=tiny_model_config(), data=DataConfig(crop={CROP}, worker_count=1, "
        f"synthetic={str(synthetic_root)!r}), anet=stage, tnet=stage, checkpoint_every=1000, log_every=1)\n")
    env = cached_env(XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=str(PROJECT_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "atnet_jax.train", "--config", str(config_file), "--workdir",
                             str(tmp_path / "run"), "--stage", "anet", "--no-progress"], env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = tmp_path / "run/anet/metrics.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "SIGINT received: saved step" in out, out
    assert "Traceback" not in out and "leaked" not in out, out
    assert proc.returncode == 130, out
