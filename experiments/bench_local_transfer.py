"""Benchmark: the windowed local-transfer kernel vs a naive dense-affinity version.

At the 1/4-resolution grids of a 480x854 frame (padded 512x864 -> 128x216) and a 240x427 frame (padded
256x448 -> 64x112), C = 256, B = 1, released-code setting (9x9 window, stride 2, softmax over height).
Per variant and grid: compile time, median forward time, median forward+gradient time (gradient w.r.t.
both feature maps, as in T-Net training), memory and XLA's own temp-buffer size. Memory is the peak
resident set of a fresh process (`ru_maxrss`: JAX runtime + inputs + compilation + runs) and the growth
of the peak over the resident set while the compiled kernel runs (`/proc/self/clear_refs` resets the
high-water mark after compiling; Linux only, else that column is omitted). Every measurement runs in
its own subprocess so that peaks do not mix. A variant whose XLA buffers
(arguments + outputs + temps) would exceed `memory_limit_gb` is compiled but not run.

    python experiments/bench_local_transfer.py [--repeats 5] [--memory-limit-gb 8]

`run(sizes)` returns the rows (dicts) for other scripts (e.g. experiments/bench_model.py).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from atnet_jax.models.transfer import local_transfer  # noqa: E402

SIZES: dict[str, tuple[int, int]] = {"480p": (128, 216), "240p": (64, 112)}
CHANNELS = 256
MAX_DISPLACEMENT, STRIDE = 8, 2
VARIANTS = ("ours", "dense")


def naive_dense_local_transfer(target: jax.Array, prev: jax.Array, prev_prob: jax.Array, *,
                               max_displacement: int = MAX_DISPLACEMENT,
                               stride: int = STRIDE) -> jax.Array:
    """Same maths as `local_transfer(..., softmax_axis="height")` through a full HW x HW affinity.

    target, prev: [B, H, W, C]; prev_prob: [B, H, W] -> [B, H, W, 1]. The affinity is zeroed outside
    each pixel's stride-2 window, then the K window entries of each row are gathered.
    """
    b, h, w, c = target.shape
    affinity = jnp.einsum("bqc,bpc->bqp", target.reshape(b, h * w, c), prev.reshape(b, h * w, c)) / c
    yq, xq = jnp.divmod(jnp.arange(h * w), w)
    dy, dx = yq[None, :] - yq[:, None], xq[None, :] - xq[:, None]
    in_window = ((jnp.abs(dy) <= max_displacement) & (jnp.abs(dx) <= max_displacement)
                 & (dy % stride == 0) & (dx % stride == 0))
    affinity = jnp.where(in_window, affinity, 0.0)

    steps = np.arange(-max_displacement, max_displacement + 1, stride)
    ddy, ddx = np.repeat(steps, len(steps)), np.tile(steps, len(steps))  # dy slow, dx fast
    ys, xs = yq[:, None] + ddy, xq[:, None] + ddx  # [HW, K]
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    source = jnp.where(valid, ys * w + xs, 0)
    corr = jnp.where(valid, jnp.take_along_axis(affinity, source[None], axis=2), 0.0)
    warped = jnp.where(valid, prev_prob.reshape(b, h * w)[:, source], 0.0)
    # Softmax over height with height moved last (XLA:CPU's gradient over axis 1 is pathological).
    corr = corr.reshape(b, h, w, -1).transpose(0, 2, 3, 1)
    warped = warped.reshape(b, h, w, -1).transpose(0, 2, 3, 1)
    out = jnp.sum(jax.nn.softmax(corr, axis=-1) * warped, axis=2).transpose(0, 2, 1)
    return out[..., None]


def _kernel(variant: str):
    if variant == "ours":
        return lambda t, p, prob: local_transfer(t, p, prob, max_displacement=MAX_DISPLACEMENT,
                                                 stride=STRIDE)
    if variant == "dense":
        return naive_dense_local_transfer
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def _inputs(h: int, w: int, channels: int = CHANNELS, batch: int = 1):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    return (jax.random.normal(k1, (batch, h, w, channels)), jax.random.normal(k2, (batch, h, w, channels)),
            jax.random.uniform(k3, (batch, h, w)), jax.random.normal(k4, (batch, h, w, 1)))


def check_agreement(h: int = 20, w: int = 26, channels: int = 16, tol: float = 1e-5) -> float:
    """Max abs difference between ours and the dense version (outputs and gradients) on a small grid."""
    t, p, prob, weights = _inputs(h, w, channels, batch=2)
    errs = []
    for kernel in (_kernel("ours"), _kernel("dense")):
        loss = lambda t, p, f=kernel: jnp.sum(f(t, p, prob) * weights)  # noqa: E731
        errs.append((kernel(t, p, prob), *jax.grad(loss, argnums=(0, 1))(t, p)))
    err = max(float(jnp.abs(a - b).max() / max(1.0, float(jnp.abs(b).max())))
              for a, b in zip(*errs))
    assert err <= tol, f"dense and windowed local transfer disagree: {err:.3g}"
    return err


def _measure(variant: str, mode: str, h: int, w: int, repeats: int, memory_limit_bytes: float) -> dict:
    """Runs in a fresh process: compile, time and measure one (variant, mode) at one grid."""
    jax.config.update("jax_default_matmul_precision", "highest")
    kernel = _kernel(variant)
    t, p, prob, weights = jax.block_until_ready(_inputs(h, w))
    if mode == "fwd":
        fn = jax.jit(lambda t, p: kernel(t, p, prob))
    else:
        fn = jax.jit(jax.value_and_grad(lambda t, p: jnp.sum(kernel(t, p, prob) * weights), argnums=(0, 1)))
    start = time.perf_counter()
    compiled = fn.lower(t, p).compile()
    result = {"compile_s": time.perf_counter() - start}
    analysis = compiled.memory_analysis()
    if analysis is not None:
        result["xla_temp_mb"] = analysis.temp_size_in_bytes / 2**20
        need = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                + analysis.output_size_in_bytes)
        result["xla_total_mb"] = need / 2**20
        if need > memory_limit_bytes:
            result["skipped"] = (f"XLA buffers need {need / 2**30:.1f} GiB > limit "
                                 f"{memory_limit_bytes / 2**30:.1f} GiB")
            return result
    rss_before = _reset_peak_rss()
    jax.block_until_ready(compiled(t, p))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(t, p))
        times.append(time.perf_counter() - start)
    result.update(median_ms=1e3 * statistics.median(times),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if rss_before is not None:
        result["run_peak_growth_mb"] = (_proc_status_kb("VmHWM") - rss_before) / 1024
    return result


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> int | None:
    """Resets the kernel's peak-RSS mark (VmHWM) and returns the current RSS in KiB; None if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return _proc_status_kb("VmRSS")
    except (OSError, KeyError):
        return None


def _measure_in_subprocess(variant: str, mode: str, h: int, w: int, repeats: int,
                           memory_limit_bytes: float) -> dict:
    spec = json.dumps({"variant": variant, "mode": mode, "h": h, "w": w, "repeats": repeats,
                       "memory_limit_bytes": memory_limit_bytes})
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", spec],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"skipped": f"subprocess failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: dict[str, tuple[int, int]] | None = None, *, variants: tuple[str, ...] = VARIANTS,
        repeats: int = 5, memory_limit_gb: float = 8.0) -> list[dict]:
    """One row per (grid, variant): compile/forward/forward+grad timings and memory, in subprocesses.

    sizes: name -> (H, W) of the 1/4-resolution grid (default `SIZES`).
    """
    rows = []
    for name, (h, w) in (sizes or SIZES).items():
        for variant in variants:
            row = {"size": name, "grid": f"{h}x{w}", "channels": CHANNELS, "variant": variant}
            for mode in ("fwd", "grad"):
                print(f"measuring {variant} {mode} at {name} ({h}x{w})...", file=sys.stderr, flush=True)
                res = _measure_in_subprocess(variant, mode, h, w, repeats, memory_limit_gb * 2**30)
                row.update({f"{mode}_{key}": value for key, value in res.items()})
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    columns = [("size", "size", "{}"), ("grid", "HxW", "{}"), ("variant", "variant", "{}"),
               ("fwd_compile_s", "compile s", "{:.2f}"), ("fwd_median_ms", "fwd ms", "{:.0f}"),
               ("fwd_peak_rss_mb", "fwd maxrss MB", "{:.0f}"), ("fwd_run_peak_growth_mb", "run +MB", "{:.0f}"),
               ("fwd_xla_temp_mb", "fwd XLA temp MB", "{:.0f}"),
               ("grad_compile_s", "grad compile s", "{:.2f}"), ("grad_median_ms", "fwd+grad ms", "{:.0f}"),
               ("grad_peak_rss_mb", "grad maxrss MB", "{:.0f}"), ("grad_run_peak_growth_mb", "run +MB", "{:.0f}"),
               ("grad_xla_temp_mb", "grad XLA temp MB", "{:.0f}")]
    table = [[title for _, title, _ in columns]]
    for row in rows:
        table.append([fmt.format(row[key]) if key in row else "-" for key, _, fmt in columns])
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("maxrss: peak RSS of the measuring process (JAX runtime, inputs, compilation, runs); run +MB: "
                 "peak RSS growth while the compiled kernel runs; XLA temp: the compiled program's temp buffers.")
    for row in rows:
        for mode in ("fwd", "grad"):
            if f"{mode}_skipped" in row:
                lines.append(f"{row['size']} {row['variant']} {mode}: skipped, {row[f'{mode}_skipped']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--memory-limit-gb", type=float, default=8.0,
                        help="do not run a variant whose XLA buffers exceed this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(_measure(spec["variant"], spec["mode"], spec["h"], spec["w"], spec["repeats"],
                                  spec["memory_limit_bytes"])))
        return
    jax.config.update("jax_default_matmul_precision", "highest")
    print(f"ours vs dense on a 20x26 grid (outputs and gradients): max normalised difference "
          f"{check_agreement():.2g}")
    print(f"local transfer, C={CHANNELS}, B=1, window {2 * MAX_DISPLACEMENT // STRIDE + 1}^2 stride {STRIDE}, "
          f"softmax over height; {jax.devices()[0].device_kind}, median of {args.repeats}\n")
    print(format_table(run(repeats=args.repeats, memory_limit_gb=args.memory_limit_gb)))


if __name__ == "__main__":
    main()
