"""Input-pipeline throughput: batches per second of the A-Net (batch 6) and T-Net (batch 8) pipelines.

Synthetic DAVIS-format videos (480x848, written to a temp folder) read through a DAVIS-folder
``VideoSource``, augmented and cropped to ``--height`` x ``--width``. The paper does not state its training
crop size: 384x384 is our assumption. Median seconds per batch over ``--batches`` batches after
``--warmup``, for each worker count in ``--workers``.

    python experiments/bench_data.py [--batches 24 --warmup 4 --workers 0,2]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from atnet_jax.data.pipeline import AnetExamples, TnetExamples, make_loader
from atnet_jax.data.sources import DavisVideos
from atnet_jax.data.synthetic import write_dataset

FLAGS = flags.FLAGS
flags.DEFINE_integer("height", 384, "training crop height")
flags.DEFINE_integer("width", 384, "training crop width")
flags.DEFINE_integer("videos", 4, "synthetic videos to write")
flags.DEFINE_integer("frames", 12, "frames per synthetic video")
flags.DEFINE_integer("batches", 24, "timed batches per configuration")
flags.DEFINE_integer("warmup", 4, "untimed batches first (worker start-up)")
flags.DEFINE_list("workers", ["0", "2"], "worker counts to measure")


def time_loader(examples, batch_size: int, workers: int) -> float:
    """Median batches per second of ``make_loader(examples, ...)`` after warm-up."""
    it = iter(make_loader(examples, batch_size=batch_size, seed=0, worker_count=workers))
    try:
        for _ in range(FLAGS.warmup):
            next(it)
        times = []
        for _ in range(FLAGS.batches):
            start = time.perf_counter()
            next(it)
            times.append(time.perf_counter() - start)
    finally:
        if hasattr(it, "close"):
            it.close()
    return 1.0 / statistics.median(times)


def main() -> None:
    size = (FLAGS.height, FLAGS.width)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {FLAGS.videos} synthetic videos of {FLAGS.frames} frames at 480x848 ...", flush=True)
        videos = DavisVideos(write_dataset(Path(tmp) / "davis", videos=FLAGS.videos, num_frames=FLAGS.frames,
                                            height=480, width=848))
        pipelines = [("A-Net", AnetExamples(videos, None, size=size, seed=0), 6),
                     ("T-Net", TnetExamples(videos, size=size, seed=0), 8)]
        print(f"crop {size[0]}x{size[1]}; median over {FLAGS.batches} batches after {FLAGS.warmup} warm-up")
        print(f"{'pipeline':8} {'batch':>5} {'workers':>7} {'batches/s':>10} {'examples/s':>10}")
        for name, examples, batch in pipelines:
            for workers in (int(w) for w in FLAGS.workers):
                rate = time_loader(examples, batch, workers)
                print(f"{name:8} {batch:5d} {workers:7d} {rate:10.2f} {rate * batch:10.1f}", flush=True)


if __name__ == "__main__":
    FLAGS(sys.argv)
    main()
