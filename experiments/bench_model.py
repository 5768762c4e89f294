"""Benchmark the full-size A-Net and T-Net on this machine: compile time, forward medians, peak memory.

    python experiments/bench_model.py                      # 480x854 and 240x427 frames, then the local kernel
    python experiments/bench_model.py --sizes 240x427 --repeats 3 --skip-kernels

Each frame size runs in its own process so its peak RSS is its own. Weights are random (NumPy-filled);
timings do not depend on their values. Reference (PyTorch 2.13 CPU, 2 threads, 480p): A-Net 4.67 s,
T-Net step 5.84 s per frame per object.
"""
from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TORCH_REFERENCE_480P = {"anet_s": 4.67, "tnet_step_s": 5.84}


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, median run seconds) of ``jax.jit(fn)`` on ``args``."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, statistics.median(times)


def worker(height: int, width: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from atnet_jax.models import AnnotationNet, TransferNet, paper_model_config
    from atnet_jax.models.build import random_variables
    from atnet_jax.models.preprocess import pad_info_for

    (top, bottom), (left, right) = pad_info_for(height, width)
    h, w = height + top + bottom, width + left + right
    cfg = paper_model_config()
    variables = random_variables(cfg)
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.standard_normal((1, h, w, 3)), jnp.float32)
    interaction = jnp.asarray(rng.random((1, h, w, 3)), jnp.float32)
    anet, tnet = AnnotationNet(cfg), TransferNet(cfg)
    result = {"frame": f"{height}x{width}", "padded": f"{h}x{w}"}

    result["anet_compile_s"], result["anet_s"] = _timed(
        lambda v, x, i: anet.apply(v, x, i)[0], variables["anet"], image, interaction, repeats=repeats)
    encode = functools.partial(tnet.apply, method=TransferNet.encode)
    result["tnet_encode_compile_s"], result["tnet_encode_s"] = _timed(
        encode, variables["tnet"], image, repeats=repeats)

    feats = jax.jit(encode)(variables["tnet"], image)
    decode = functools.partial(tnet.apply, method=TransferNet.decode)
    c5 = cfg.out_channels[3]
    for objects in (1, 2):
        indicators = jnp.asarray(rng.standard_normal((1, objects, h // 16, w // 16, c5)), jnp.float32)
        prev_prob = jnp.asarray(rng.random((objects, h, w, 1)), jnp.float32)
        compile_s, run_s = _timed(
            lambda v, t, a, i, r2, p: decode(v, t, a, i, r2, p)[0],
            variables["tnet"], feats, feats["r5"][None], indicators, feats["r2"], prev_prob, repeats=repeats)
        result[f"tnet_decode_{objects}obj_compile_s"], result[f"tnet_decode_{objects}obj_s"] = compile_s, run_s
    result["tnet_step_s"] = result["tnet_encode_s"] + result["tnet_decode_1obj_s"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _print_table(rows: list[dict]) -> None:
    lines = [
        ("frame (padded)", lambda r: f"{r['frame']} ({r['padded']})"),
        ("A-Net compile [s]", lambda r: f"{r['anet_compile_s']:.1f}"),
        ("A-Net forward, 1 object [s]", lambda r: f"{r['anet_s']:.3f}"),
        ("T-Net encoder compile [s]", lambda r: f"{r['tnet_encode_compile_s']:.1f}"),
        ("T-Net encoder (once per frame) [s]", lambda r: f"{r['tnet_encode_s']:.3f}"),
        ("T-Net decode compile [s]", lambda r: f"{r['tnet_decode_1obj_compile_s']:.1f}"),
        ("T-Net decode, 1 object [s]", lambda r: f"{r['tnet_decode_1obj_s']:.3f}"),
        ("T-Net decode, 2 objects [s]", lambda r: f"{r['tnet_decode_2obj_s']:.3f}"),
        ("T-Net step (encode + decode), 1 object [s]", lambda r: f"{r['tnet_step_s']:.3f}"),
        ("peak RSS [MB]", lambda r: f"{r['peak_rss_mb']:.0f}"),
    ]
    width = max(len(name) for name, _ in lines)
    print("\nFull-size networks (float32, jit, median of repeats; PyTorch reference at 480p: "
          f"A-Net {TORCH_REFERENCE_480P['anet_s']} s, T-Net step {TORCH_REFERENCE_480P['tnet_step_s']} s)")
    for name, fmt in lines:
        print(f"  {name:<{width}}  " + "  ".join(f"{fmt(r):>20}" for r in rows))
    for r in rows:
        if r["frame"] == "480x854":
            print(f"  speed-up over PyTorch at 480p: A-Net x{TORCH_REFERENCE_480P['anet_s'] / r['anet_s']:.2f}, "
                  f"T-Net step x{TORCH_REFERENCE_480P['tnet_step_s'] / r['tnet_step_s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="480x854,240x427", help="comma-separated HxW frame sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--skip-kernels", action="store_true", help="skip the local-transfer kernel comparison")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        height, width = map(int, args.worker.split("x"))
        print(json.dumps(worker(height, width, args.repeats)))
        return

    import jax

    print(f"jax {jax.__version__}, devices {jax.devices()}")
    rows = []
    for size in args.sizes.split(","):
        print(f"measuring {size} ...", flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", size, "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    _print_table(rows)
    if not args.skip_kernels:
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_local_transfer as local

        print("\nLocal-transfer kernel vs a naive masked dense affinity (1/4-resolution grids, C=256, B=1)")
        print(f"  agreement on a 20x26 grid (outputs and gradients): {local.check_agreement():.2g}")
        print(local.format_table(local.run(repeats=args.repeats)))


if __name__ == "__main__":
    main()
