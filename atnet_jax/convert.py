"""``python -m atnet_jax.convert``: the official PyTorch checkpoint -> an atnet_jax weights folder."""
from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli

EXAMPLES = """examples:
  # the released checkpoint (read without PyTorch; zip and legacy torch.save formats)
  python -m atnet_jax.convert --input ATNet-checkpoint.pth --output weights/atnet
  # the same tensors saved as a .npz of numpy arrays with the PyTorch key names
  python -m atnet_jax.convert --input atnet_state_dict.npz --output weights/atnet
  # a network trained with an experiment config: its size is read from the weights, or give the config
  python -m atnet_jax.convert --input tiny.npz --output weights/tiny --config experiments/configs/tiny.py
  # then segment with them
  python -m atnet_jax.infer --checkpoint weights/atnet --input DAVIS --sequence bear \\
      --scribbles DAVIS/Scribbles/bear/001.json --output results
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.convert",
        "Convert the official IVOS-ATNet PyTorch checkpoint (A-Net + T-Net state_dict) into an orbax "
        "checkpoint of Flax params and batch statistics that the other atnet_jax commands load.",
        EXAMPLES,
    )
    cli.add_argument(parser, "--input", old_names=("--torch",), dest="input", required=True, type=Path,
                     metavar="CHECKPOINT", help="ATNet-checkpoint.pth (a torch.save file, read without PyTorch) "
                     "or a .npz with the same state_dict keys (--torch is the old name of this flag)")
    cli.add_argument(parser, "--output", old_names=("--out",), dest="output", required=True, type=Path,
                     metavar="DIR", help="weights folder to write (--out is the old name of this flag)")
    parser.add_argument("--model", choices=("auto", "paper", "tiny"), default="auto",
                        help="network size the checkpoint holds: auto reads it from the weights' shapes (default), "
                             "paper is the released network, tiny the tests' network (tiny_model_config)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="take the network from an experiment config's model (e.g. "
                             "experiments/configs/tiny.py), including settings that weights do not show")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it already holds files")
    return parser


def convert(args: argparse.Namespace) -> None:
    from atnet_jax.io.torch_weights import infer_model_config, load_state_dict, torch_to_flax
    from atnet_jax.io.weights import save_weights
    from atnet_jax.models import paper_model_config, tiny_model_config
    from atnet_jax.models.build import count_params

    cli.require_path(args.input, "--input")
    if args.input.is_dir():
        raise cli.UsageError(f"--input {args.input} is a folder, expected a .pth or .npz file")
    if args.input.suffix not in (".pth", ".pt", ".bin", ".npz"):
        raise cli.UsageError(f"--input {args.input}: expected a PyTorch .pth/.pt file or a .npz of numpy arrays")
    cli.require_writable_folder(args.output, "--output")
    if args.output.exists() and any(args.output.iterdir()) and not args.overwrite:
        raise FileExistsError(f"--output {args.output} already holds files (pass --overwrite to replace them)")
    if args.input.suffix == ".npz" and not zipfile.is_zipfile(args.input):
        raise ValueError(f"--input {args.input} is not a .npz archive (a zip of .npy arrays)")
    if args.config is not None and args.model != "auto":
        raise cli.UsageError("pass --config FILE or --model, not both")
    if args.config is not None:
        from atnet_jax.training.config import load_config

        cli.require_path(args.config, "--config")
        try:
            config = load_config(args.config).model
        except Exception as err:  # noqa: BLE001 (any error of the user's config file)
            raise cli.UsageError(f"--config {args.config}: {type(err).__name__}: {cli.one_line(err)}") from err
    try:
        state = load_state_dict(args.input)
    except (ValueError, OSError, EOFError) as err:  # not a zip/npz, truncated, pickled objects
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"--input {args.input} cannot be read as a state_dict: {cli.one_line(err)}") from err
    print(f"read {len(state)} tensors from {args.input}")
    if args.model == "paper":
        config = paper_model_config()
    elif args.model == "tiny":
        config = tiny_model_config()
    elif args.config is None:
        config = infer_model_config(state)
        print(f"network size read from the weights: stem {config.stem_width}, stage widths "
              f"{config.stage_widths}, blocks {config.stage_blocks}, decoder {config.decoder_width}")
    variables = torch_to_flax(state, config)
    for name, label in (("anet", "A-Net"), ("tnet", "T-Net")):
        print(f"{label}: {count_params(variables[name]):,} parameters")
    out = save_weights(args.output, variables, config, overwrite=args.overwrite,
                       extra={"source": str(args.input.name)})
    print(f"wrote {out} (A-Net and T-Net weights for python -m atnet_jax.infer / evaluate --checkpoint)")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), convert, argv)


if __name__ == "__main__":
    sys.exit(main())
