"""``python -m atnet_jax.train``: two-stage training (A-Net, then T-Net with A-Net frozen), resumable."""
from __future__ import annotations

import argparse
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli
from atnet_jax.io import lock

EXAMPLES = """examples:
  # the paper's schedule: stage 1 (A-Net), then stage 2 (T-Net, A-Net loaded from stage 1)
  python -m atnet_jax.train --config experiments/configs/paper.py --workdir runs/paper --stage anet \\
      --set data.davis=/data/DAVIS data.youtube_vos=/data/youtube-vos data.sbd=/data/SBD
  python -m atnet_jax.train --config experiments/configs/paper.py --workdir runs/paper --stage tnet \\
      --set data.davis=/data/DAVIS data.youtube_vos=/data/youtube-vos
  # a small network on synthetic videos, on a CPU
  python -m atnet_jax.data.synthetic --output data/synthetic --videos 60
  python -m atnet_jax.train --config experiments/configs/tiny.py --workdir runs/tiny --stage anet
  # one of several hosts (each runs the same command with its own --process-id; on SLURM and TPU pod
  # slices --distributed alone finds the others); WORKDIR must be a folder that every host sees
  python -m atnet_jax.train --config experiments/configs/paper.py --workdir runs/paper --stage anet \\
      --distributed --coordinator-address host0:1234 --num-processes 4 --process-id 0

A run resumes from the newest checkpoint in WORKDIR/<stage>/checkpoints, with the same config (else it stops,
naming the keys that differ). Ctrl-C saves a checkpoint in every process and exits 130. SIGTERM (a scheduler
preempting or cancelling the job) also saves one in every process, then exits 1, so that the scheduler counts
the job as not finished and can requeue it; the same command resumes from that checkpoint.
Outputs: WORKDIR/<stage>/metrics.csv, checkpoints/, config.json and, when the stage stops, weights/
(stage tnet: both networks, ready for python -m atnet_jax.infer and evaluate).
"""


def _key_help() -> str:
    from atnet_jax.training.config import TrainConfig, keys

    return "config keys (--set KEY=VALUE) and their defaults:\n" + "\n".join(
        f"  {k} = {v!r}" for k, v in keys(TrainConfig()))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        PROG,
        "Train ATNet in two stages on all local (or, with --distributed, all cluster) devices: stage anet "
        "trains A-Net on simulated points and scribbles; stage tnet trains T-Net on 5-frame mini-sequences "
        "with the stage-anet A-Net frozen. Data parallel: the batch is split over the devices.",
        EXAMPLES + "\n" + _key_help(),
    )
    parser.add_argument("--config", required=True, type=Path, metavar="FILE",
                        help="experiment file defining get_config(), e.g. experiments/configs/paper.py")
    parser.add_argument("--workdir", required=True, type=Path, metavar="DIR",
                        help="run folder: checkpoints, logs and weights go to DIR/<stage>/")
    parser.add_argument("--stage", required=True, choices=("anet", "tnet"),
                        help="anet (stage 1) or tnet (stage 2, needs stage 1's weights)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override config keys, e.g. anet.batch_size=8 data.crop=256,256 (list below)")
    parser.add_argument("--max-steps", type=cli.positive_int, metavar="N",
                        help="stop (and save) at global step N this time (default: the end of the schedule)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host GPU clusters, TPU pod slices)")
    parser.add_argument("--coordinator-address", metavar="HOST:PORT",
                        help="with --distributed: process 0's address (not needed on TPU or SLURM)")
    parser.add_argument("--num-processes", type=cli.positive_int, metavar="N",
                        help="with --distributed: number of hosts")
    parser.add_argument("--process-id", type=cli.nonnegative_int, metavar="I",
                        help="with --distributed: this host's index")
    parser.add_argument("--heartbeat-timeout", type=cli.positive_int, default=60, metavar="S",
                        help="with --distributed: a process silent for S seconds counts as dead (default: 60)")
    return parser


PROG = "python -m atnet_jax.train"
_failed_in_cluster = False  # a distributed run failed here: leave at once, without the shutdown barrier


def train_command(args: argparse.Namespace) -> None:
    from atnet_jax.training.config import load_config, override, to_json

    if (args.coordinator_address or args.num_processes is not None or args.process_id is not None) \
            and not args.distributed:
        raise cli.UsageError("--coordinator-address, --num-processes and --process-id need --distributed")
    if not args.config.is_file():
        raise FileNotFoundError(f"--config {args.config}: no such file")
    cli.require_writable_folder(args.workdir, "--workdir")
    try:
        config = override(load_config(args.config), args.overrides)
    except ValueError as err:
        raise cli.UsageError(str(err)) from None

    import jax

    if args.distributed:
        from atnet_jax.training import distributed

        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               heartbeat_timeout_s=args.heartbeat_timeout, prog=PROG)
    from atnet_jax.training.loop import Interrupted, ResumeMismatchError, train

    if jax.process_index() == 0:
        print(f"config {args.config} with {len(args.overrides)} override(s):\n{to_json(config)}")
        print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} on {jax.process_count()} "
              "process(es)")
    try:
        if jax.process_index() == 0:  # the processes of one run are one holder (a failure here ends them all)
            lock.hold(args.workdir / args.stage, flag="--workdir")
        result = train(config, args.workdir, args.stage, max_steps=args.max_steps, progress=not args.no_progress)
    except ResumeMismatchError as err:  # every process finds the same
        _fail_together(err, args.distributed, check_others=False)
        raise cli.UsageError(str(err)) from None
    except Interrupted:  # Ctrl-C, after every process saved the same step
        raise
    except BaseException as err:
        _fail_together(err, args.distributed)
        raise
    if result.stopped_by is not None:  # SIGTERM: saved in every process; a scheduler may requeue the job
        raise RuntimeError(f"stopped by {result.stopped_by} at step {result.step} (checkpoint saved)")


def _fail_together(err: BaseException, distributed_run: bool, *, check_others: bool = True) -> None:
    """In a distributed run: tell the other processes that this one fails (they stop within a second), or,
    where another one failed first and this error is only the consequence, say so; ``main`` then leaves
    without JAX's shutdown barrier."""
    global _failed_in_cluster
    if not distributed_run:
        return
    from atnet_jax.training import distributed

    if not distributed.claim_exit():  # the watchdog is ending this process already
        threading.Event().wait()
    _failed_in_cluster = True
    other = distributed.other_failure(wait_s=1.0) if check_others else None
    if other is not None:
        raise RuntimeError(f"{other}; stopping this process") from err
    if distributed.is_lost_peer(err):
        message = f"lost another process in a collective (killed, or its host failed): {cli.one_line(err)}"
        distributed.report_failure(message)
        raise RuntimeError(message) from err
    distributed.report_failure(cli.one_line(err) if str(err) else type(err).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = cli.run(build_parser(), train_command, argv)
    except BaseException:  # --debug: the traceback, then out without waiting for the others
        if not _failed_in_cluster:
            raise
        traceback.print_exc()
        code = cli.EXIT_FAILURE
    if _failed_in_cluster:
        from atnet_jax.training import distributed

        distributed.exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
