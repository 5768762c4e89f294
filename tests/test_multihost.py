"""Several training processes on one machine (CPU, 127.0.0.1): they train as one process would, save and
resume together, stop together on SIGTERM to one of them, and fail together, fast, when one fails."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from atnet_jax.data.pipeline import make_loader
from atnet_jax.data.synthetic import write_dataset
from atnet_jax.training.config import load_config
from atnet_jax.training.state import create_train_state

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CROP = (64, 64)
TIMEOUT_S = 240


# ----------------------------------------------------------------------------------------------- data sharding


class _Keys:
    def __len__(self) -> int:
        return 7

    def __getitem__(self, key: int) -> dict[str, np.ndarray]:
        return {"key": np.int64(key)}


def _batches(it, n):
    return [next(it)["key"].tolist() for _ in range(n)]


def test_process_shards_stacked_in_order_are_the_one_process_batches():
    # 7 examples, global batch 6: global batches run across epochs, as with one process
    one = _batches(iter(make_loader(_Keys(), batch_size=6, seed=3)), 5)
    shards = [_batches(iter(make_loader(_Keys(), batch_size=2, seed=3, shard_index=s, shard_count=3)), 5)
              for s in range(3)]
    assert [[k for s in range(3) for k in shards[s][b]] for b in range(5)] == one
    keys = [k for batch in one for k in batch]
    assert sorted(keys[:7]) == list(range(7)) and sorted(keys[7:14]) == list(range(7, 14))
    finite = [list(iter(make_loader(_Keys(), batch_size=2, seed=3, num_epochs=2, shard_index=s, shard_count=3)))
              for s in range(3)]
    assert [len(f) for f in finite] == [2, 2, 2]  # 14 examples: two whole global batches of 6 for every process


# ----------------------------------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multihost")
    data = write_dataset(root / "davis", videos=3, num_frames=8, height=64, width=96)
    path = root / "config.py"
    path.write_text(
        "from atnet_jax.models.config import tiny_model_config\n"
        "from atnet_jax.training.config import DataConfig, StageConfig, TrainConfig\n"
        "def get_config():\n"
        "    stage = StageConfig(batch_size=2, epochs=1, steps_per_epoch=100000, learning_rate=1e-3)\n"
        f"    return TrainConfig(model=tiny_model_config(), data=DataConfig(crop={CROP}, worker_count=0, "
        f"synthetic={str(data)!r}), anet=stage, tnet=stage, checkpoint_every=1000, log_every=1)\n"
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    cache = os.environ.get("ATNET_JAX_TEST_CACHE", str(Path.home() / ".cache" / "atnet_jax_xla"))
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": str(PROJECT_ROOT), "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # every compile: the runs share them


def _command(config_file: Path, workdir: Path, max_steps: int) -> list[str]:
    return [sys.executable, "-m", "atnet_jax.train", "--config", str(config_file), "--workdir", str(workdir),
            "--stage", "anet", "--no-progress", "--max-steps", str(max_steps)]


def _start(config_file: Path, workdir: Path, max_steps: int, processes: int = 2, extra: tuple = ()
           ) -> list[subprocess.Popen]:
    """``processes`` training processes of one distributed job (1 CPU device each)."""
    port = _free_port()
    return [subprocess.Popen(
        _command(config_file, workdir, max_steps) + list(extra[i] if extra else ())
        + ["--distributed", "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(processes),
           "--process-id", str(i), "--heartbeat-timeout", "10"],
        env=_env(1), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)]


def _finish(procs: list[subprocess.Popen], timeout: float = TIMEOUT_S) -> list[tuple[int, str, str]]:
    out = []
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return out


def _checkpoint_params(config_file: Path, folder: Path) -> dict:
    config = load_config(config_file)
    state = jax.eval_shape(lambda: create_train_state(config, "anet", jax.random.key(0)).checkpoint_items())
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)
    return ocp.StandardCheckpointer().restore(folder / "state", abstract)


def _steps(workdir: Path) -> list[int]:
    return [int(r.split(",")[0]) for r in (workdir / "anet/metrics.csv").read_text().splitlines()[1:]]


def test_two_processes_train_like_one_resume_and_stop_together_on_sigterm(config_file, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    results = _finish(_start(config_file, two, 3))
    assert [r[0] for r in results] == [0, 0], results
    (_, out0, err0), (_, out1, err1) = results
    assert "step limit 3 at step 3" in out0 and "resumed" not in out0
    assert not [line for line in out1.splitlines() if not line.startswith("[Gloo]")], out1  # logs: process 0 only
    assert "Traceback" not in err0 + err1
    assert sorted(p.name for p in (two / "anet/checkpoints/3/data").glob("*.json")) == [
        "process_0-of-2.json", "process_1-of-2.json"]
    assert _steps(two) == [1, 2, 3] and (two / "anet/weights/atnet_jax.json").exists()

    # one process with two devices, the same global batch and seed: the same parameters
    ref = subprocess.run(_command(config_file, one, 3), env=_env(2), cwd=PROJECT_ROOT, capture_output=True,
                         text=True, timeout=TIMEOUT_S, check=False)
    assert ref.returncode == 0, ref.stderr
    got, want = _checkpoint_params(config_file, two / "anet/checkpoints/3"), _checkpoint_params(
        config_file, one / "anet/checkpoints/3")
    assert int(got["step"]) == int(want["step"]) == 3
    for a, b in zip(jax.tree.leaves(got["params"]), jax.tree.leaves(want["params"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    for a, b in zip(jax.tree.leaves(got["batch_stats"]), jax.tree.leaves(want["batch_stats"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)

    # a second 2-process run resumes from that checkpoint; SIGTERM to process 1 alone stops both at one step
    procs = _start(config_file, two, 10000)
    log, deadline = two / "anet/metrics.csv", time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and len(_steps(two)) < 5 and procs[0].poll() is None:
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
    (code0, out0, err0), (code1, out1, err1) = _finish(procs)
    assert (code0, code1) == (1, 1), (out0, err0, err1)
    assert "resumed from" in out0 and "SIGTERM received: saved step" in out0
    assert "Traceback" not in err0 + err1 and "stopped by SIGTERM" in err1
    saved = sorted(int(p.name) for p in (two / "anet/checkpoints").iterdir())
    assert saved[-1] >= 5 and not list((two / "anet/checkpoints").glob("*tmp*"))
    assert len(list((two / "anet/checkpoints" / str(saved[-1]) / "data").glob("process_*.json"))) == 2

    results = _finish(_start(config_file, two, saved[-1] + 1))
    assert [r[0] for r in results] == [0, 0], results
    assert f"resumed from {two / 'anet/checkpoints' / str(saved[-1])}" in results[0][1]
    assert _steps(two) == list(range(1, saved[-1] + 2))  # every step once, from process 0 alone
    elapsed = [float(r.split(",")[-1]) for r in log.read_text().splitlines()[1:]]
    assert elapsed == sorted(elapsed)


def test_a_failing_process_ends_the_job_within_seconds_with_one_line(config_file, tmp_path):
    # process 1 cannot read its data (a host without the dataset); process 0 must not wait for it
    extra = ((), ("--set", f"data.synthetic={tmp_path / 'missing'}"))
    start = time.monotonic()
    (code0, _, err0), (code1, _, err1) = _finish(_start(config_file, tmp_path / "run", 3, extra=extra), 120)
    took = time.monotonic() - start
    assert code1 == 2 and code0 == 1, (err0, err1)
    assert took < 60, took
    assert "Traceback" not in err0 + err1 and "Check failure" not in err0 + err1
    assert f"{tmp_path / 'missing'}" in err1.strip().splitlines()[-1]
    assert "process 1 failed" in err0.strip().splitlines()[-1]
