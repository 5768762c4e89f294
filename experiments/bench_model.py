"""Benchmark the full-size A-Net and T-Net on this machine: compile time, the fastest forward of the repeats,
achieved GFLOP/s, peak memory.

    python experiments/bench_model.py                      # 480x854 and 240x427 frames, then the local kernel
    python experiments/bench_model.py --sizes 240x427 --repeats 3 --skip-kernels
    python experiments/bench_model.py --sizes 480x854 --skip-kernels --precision bf16   # on a GPU or TPU

Each frame size runs in its own process so its peak RSS is its own. Weights are random (NumPy-filled);
timings do not depend on their values. Beside each time: the call's floating-point operations as XLA's own
cost analysis counts them (``compiled.cost_analysis()``) and the GFLOP/s achieved, so that efficiency reads
the same on any machine (times alone compare only within one run on one machine).

T-Net per target frame, as a session runs it: ``encode_split`` (the encoder with conv1x1's target half and the
decoder's refine skip branches, cached per frame) and the split decode (``decode_split``: the skip maps read from
the cache, the global transfer on indicators already through conv1x1's global half, computed once per annotated
frame and object per round). For comparison: the split decode that recomputes the skip branches, and the unsplit
``decode`` (conv1x1 whole and the skip branches in every call).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _flops(compiled) -> float:
    """Floating-point operations of one call, from XLA's cost analysis (NaN where the backend gives none)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def _timed(fn, *args, repeats: int) -> tuple[float, float, float]:
    """(compile seconds, fastest run seconds, GFLOP per call) of ``jax.jit(fn)`` on ``args``.

    The fastest of the repeats: load from elsewhere on the machine only ever slows a run down."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    gflop = _flops(compiled) / 1e9
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return compile_s, min(times), gflop


def conv_peak(height: int, width: int, repeats: int) -> dict:
    """GFLOP/s of the networks' most common convolution, a 3x3 256 -> 256 conv (the decoders' refine modules and
    head) at 1/4 of the padded frame: the peak the networks' efficiencies are read against (measured after every
    network, the fastest kept: a load that comes and goes then meets the peak as it meets the networks)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, height // 4, width // 4, 256)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 256, 256)) / 48, jnp.float32)

    def conv(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    _, seconds, gflop = _timed(conv, x, kernel, repeats=max(repeats, 5))
    return {"conv_peak_s": seconds, "conv_peak_gflop": gflop}


def worker(height: int, width: int, repeats: int, unsplit: bool = True, precision: str = "float32") -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from atnet_jax.models import AnnotationNet, TransferNet, paper_model_config
    from atnet_jax.models.build import random_variables
    from atnet_jax.models.predictor import PRECISIONS
    from atnet_jax.models.preprocess import pad_info_for

    (top, bottom), (left, right) = pad_info_for(height, width)
    h, w = height + top + bottom, width + left + right
    cfg = paper_model_config()
    variables = random_variables(cfg)
    cfg = dataclasses.replace(cfg, dtype=PRECISIONS[precision])
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.standard_normal((1, h, w, 3)), jnp.float32)
    interaction = jnp.asarray(rng.random((1, h, w, 3)), jnp.float32)
    anet, tnet = AnnotationNet(cfg), TransferNet(cfg)
    result = {"frame": f"{height}x{width}", "padded": f"{h}x{w}", **conv_peak(h, w, repeats)}

    def record(name: str, timed: tuple[float, float, float]) -> None:
        result[f"{name}_compile_s"], result[f"{name}_s"], result[f"{name}_gflop"] = timed
        again = conv_peak(h, w, repeats)
        if again["conv_peak_s"] < result["conv_peak_s"]:
            result.update(again)

    record("anet", _timed(lambda v, x, i: anet.apply(v, x, i)[0], variables["anet"], image, interaction,
                          repeats=repeats))

    # What a session caches per frame: r2, r5, conv1x1's target half and the decoder's skip maps.
    encode = functools.partial(tnet.apply, method=TransferNet.encode_split)
    record("tnet_encode", _timed(encode, variables["tnet"], image, repeats=repeats))
    feats = jax.jit(encode)(variables["tnet"], image)
    raw = jax.jit(functools.partial(tnet.apply, method=TransferNet.encode))(variables["tnet"], image)
    decode = functools.partial(tnet.apply, method=TransferNet.decode)
    decode_split = functools.partial(tnet.apply, method=TransferNet.decode_split)
    skips = functools.partial(tnet.apply, method=TransferNet.skips)
    fuse_global = functools.partial(tnet.apply, method=TransferNet.fuse_global)
    c5 = cfg.out_channels[3]
    for objects in (1, 2):
        indicators = jnp.asarray(rng.standard_normal((1, objects, h // 16, w // 16, c5)), jnp.float32)
        prev_prob = jnp.asarray(rng.random((objects, h, w, 1)), jnp.float32)
        record(f"tnet_fuse_{objects}obj", _timed(fuse_global, variables["tnet"], indicators, repeats=repeats))
        fused = jax.jit(fuse_global)(variables["tnet"], indicators)
        record(f"tnet_decode_{objects}obj", _timed(
            lambda v, t, a, i, r2, p: decode_split(v, t, a, i, r2, p)[0],
            variables["tnet"], feats, feats["r5"][None], fused, feats["r2"], prev_prob, repeats=repeats))
        if unsplit:
            cached = {k: feats[k] for k in ("r2", "r5", "r5_fused")}
            record(f"tnet_recomputed_{objects}obj", _timed(
                lambda v, t, r, a, i, r2, p: decode_split(v, {**t, **skips(v, r)}, a, i, r2, p)[0],
                variables["tnet"], cached, raw, feats["r5"][None], fused, feats["r2"], prev_prob, repeats=repeats))
            record(f"tnet_unsplit_{objects}obj", _timed(
                lambda v, t, a, i, r2, p: decode(v, t, a, i, r2, p)[0],
                variables["tnet"], raw, feats["r5"][None], indicators, feats["r2"], prev_prob, repeats=repeats))
    result["tnet_step_s"] = result["tnet_encode_s"] + result["tnet_decode_1obj_s"]
    result["tnet_step_gflop"] = result["tnet_encode_gflop"] + result["tnet_decode_1obj_gflop"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _rate(r: dict, name: str) -> str:
    """``time s (GFLOP, GFLOP/s)`` of one measured call."""
    if f"{name}_s" not in r:
        return "-"
    seconds, gflop = r[f"{name}_s"], r[f"{name}_gflop"]
    rate = gflop / seconds
    if name == "conv_peak" or "conv_peak_s" not in r:
        return f"{seconds:.3f} s ({gflop:.0f} GF, {rate:.0f} GF/s)"
    peak = r["conv_peak_gflop"] / r["conv_peak_s"]
    return f"{seconds:.3f} s ({gflop:.0f} GF, {rate:.0f} GF/s, {100 * rate / peak:.0f}%)"


def _print_table(rows: list[dict], cpu: str, precision: str) -> None:
    lines = [
        ("frame (padded)", lambda r: f"{r['frame']} ({r['padded']})"),
        ("3x3 conv 256->256 at 1/4 (the peak)", lambda r: _rate(r, "conv_peak")),
        ("A-Net compile [s]", lambda r: f"{r['anet_compile_s']:.1f}"),
        ("A-Net forward, 1 object", lambda r: _rate(r, "anet")),
        ("T-Net encoder + conv1x1 target half + skip maps (once per frame)", lambda r: _rate(r, "tnet_encode")),
        ("T-Net decode compile [s]", lambda r: f"{r['tnet_decode_1obj_compile_s']:.1f}"),
        ("T-Net decode (split, cached skip maps), 1 object", lambda r: _rate(r, "tnet_decode_1obj")),
        ("T-Net decode (split, cached skip maps), 2 objects", lambda r: _rate(r, "tnet_decode_2obj")),
        ("T-Net decode (split, skip maps recomputed), 1 object", lambda r: _rate(r, "tnet_recomputed_1obj")),
        ("T-Net decode (split, skip maps recomputed), 2 objects", lambda r: _rate(r, "tnet_recomputed_2obj")),
        ("T-Net decode (unsplit conv1x1 and skips), 1 object", lambda r: _rate(r, "tnet_unsplit_1obj")),
        ("T-Net decode (unsplit conv1x1 and skips), 2 objects", lambda r: _rate(r, "tnet_unsplit_2obj")),
        ("conv1x1 global half, per annotated frame, 1 obj", lambda r: _rate(r, "tnet_fuse_1obj")),
        ("T-Net step (encode + split decode), 1 object", lambda r: _rate(r, "tnet_step")),
        ("peak RSS [MB]", lambda r: f"{r['peak_rss_mb']:.0f}"),
    ]
    width = max(len(name) for name, _ in lines)
    print(f"\nFull-size networks ({precision}, jit, fastest of repeats; GF = GFLOP per call from XLA's cost analysis; "
          f"% = efficiency, GFLOP/s against the 3x3 conv's) on {cpu}")
    for name, fmt in lines:
        print(f"  {name:<{width}}  " + "  ".join(f"{fmt(r):>38}" for r in rows))


def cpu_model() -> str:
    """The processor's model name and core count (``lscpu``), for the record."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="480x854,240x427", help="comma-separated HxW frame sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (the fastest reported)")
    parser.add_argument("--skip-kernels", action="store_true", help="skip the local-transfer kernel comparison")
    parser.add_argument("--skip-unsplit", action="store_true",
                        help="skip the comparisons: T-Net's split decode with the skip maps recomputed, and the "
                             "unsplit decode")
    parser.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                        help="the networks' compute precision (bf16: bfloat16 convolutions and matmuls; the peak "
                             "conv stays float32)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        height, width = map(int, args.worker.split("x"))
        print(json.dumps(worker(height, width, args.repeats, not args.skip_unsplit, args.precision)))
        return

    import jax

    cpu = cpu_model()
    print(f"jax {jax.__version__}, devices {jax.devices()}, CPU {cpu}")
    rows = []
    for size in args.sizes.split(","):
        print(f"measuring {size} ...", flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--worker", size, "--repeats", str(args.repeats), "--precision", args.precision]
            + (["--skip-unsplit"] if args.skip_unsplit else []),
            check=True, capture_output=True, text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    _print_table(rows, cpu, args.precision)
    if not args.skip_kernels:
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_local_transfer as local

        print("\nLocal-transfer kernel vs a naive masked dense affinity (1/4-resolution grids, C=256, B=1)")
        print(f"  agreement on a 20x26 grid (outputs and gradients): {local.check_agreement():.2g}")
        print(local.format_table(local.run(repeats=args.repeats)))


if __name__ == "__main__":
    main()
