"""Training-step benchmark: step time and examples per second of both stages, tiny and paper sizes.

    python experiments/bench_train.py                 # tiny config (its batch and crop) + paper size at batch 1
    python experiments/bench_train.py --skip-paper    # tiny only

Random batches of the training shapes, the jitted data-parallel ``train_step`` on all local devices; the
median of ``--repeats`` steps after the compile (paper size: ``--paper-repeats``, default 1, since a CPU
step of the full networks takes long). Peak RSS is the process's high-water mark so far.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import time
from pathlib import Path

import jax
import numpy as np

from atnet_jax.training.config import TrainConfig, load_config
from atnet_jax.training.state import create_train_state
from atnet_jax.training.steps import compile_train_step, make_mesh, replicated, shard_batch

ROOT = Path(__file__).resolve().parents[1]


def random_batch(stage: str, batch: int, crop: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = crop
    if stage == "anet":
        target = (rng.random((batch, h, w, 1)) < 0.3).astype(np.float32)
        return {"image": rng.normal(size=(batch, h, w, 3)).astype(np.float32),
                "interaction": rng.random((batch, h, w, 3)).astype(np.float32), "target": target,
                "valid": np.ones_like(target)}
    targets = (rng.random((batch, 5, h, w, 1)) < 0.3).astype(np.float32)
    return {"frames": rng.normal(size=(batch, 5, h, w, 3)).astype(np.float32), "targets": targets,
            "valid": np.ones_like(targets), "interaction": rng.random((batch, h, w, 3)).astype(np.float32)}


def bench(config: TrainConfig, stage: str, batch: int, repeats: int) -> dict[str, float]:
    from atnet_jax.models.build import random_variables

    mesh = make_mesh()
    variables = random_variables(config.model, networks=("anet", "tnet"))
    frozen = variables["anet"] if stage == "tnet" else None
    state = create_train_state(config, stage, jax.random.key(0), variables=variables[stage], frozen=frozen)
    state = jax.device_put(state, replicated(mesh))
    step = compile_train_step(mesh, stage=stage, model_config=config.model)
    data = shard_batch(random_batch(stage, batch, config.data.crop, np.random.default_rng(0)), mesh)
    rng = jax.random.key(1)
    start = time.perf_counter()
    state, metrics = step(state, data, rng)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, data, rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"compile+first": first, "step": median, "examples_per_s": batch / median,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paper-repeats", type=int, default=1)
    parser.add_argument("--skip-paper", action="store_true")
    args = parser.parse_args()
    tiny = load_config(ROOT / "experiments/configs/tiny.py")
    paper = load_config(ROOT / "experiments/configs/paper.py")
    cases = [("tiny", tiny, "anet", tiny.anet.batch_size, args.repeats),
             ("tiny", tiny, "tnet", tiny.tnet.batch_size, args.repeats)]
    if not args.skip_paper:
        cases += [("paper", paper, "anet", 1, args.paper_repeats), ("paper", paper, "tnet", 1, args.paper_repeats)]
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; float32; median of the timed steps")
    print(f"{'config':7} {'stage':6} {'batch':>5} {'crop':>9} {'compile+1st s':>13} {'step s':>8} {'ex/s':>7} "
          f"{'peak RSS MB':>11}")
    for name, config, stage, batch, repeats in cases:
        r = bench(dataclasses.replace(config), stage, batch, repeats)
        crop = "x".join(map(str, config.data.crop))
        print(f"{name:7} {stage:6} {batch:>5} {crop:>9} {r['compile+first']:>13.2f} {r['step']:>8.3f} "
              f"{r['examples_per_s']:>7.2f} {r['rss_mb']:>11.0f}", flush=True)


if __name__ == "__main__":
    main()
