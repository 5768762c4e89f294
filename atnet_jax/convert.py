"""``python -m atnet_jax.convert``: the official PyTorch checkpoint -> an atnet_jax weights folder."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli

EXAMPLES = """examples:
  # the released checkpoint (needs torch to read .pth)
  python -m atnet_jax.convert --torch ATNet-checkpoint.pth --out weights/atnet
  # the same tensors saved as a .npz of numpy arrays with the PyTorch key names (no torch needed)
  python -m atnet_jax.convert --torch atnet_state_dict.npz --out weights/atnet
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.convert",
        "Convert the official IVOS-ATNet PyTorch checkpoint (A-Net + T-Net state_dict) into an orbax "
        "checkpoint of Flax params and batch statistics that the other atnet_jax commands load.",
        EXAMPLES,
    )
    parser.add_argument("--torch", required=True, type=Path, metavar="CHECKPOINT",
                        help="ATNet-checkpoint.pth (PyTorch) or a .npz with the same state_dict keys")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="weights folder to write")
    parser.add_argument("--model", choices=("paper", "tiny"), default="paper",
                        help="network size the checkpoint holds (default: paper, the released network)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it already holds files")
    return parser


def convert(args: argparse.Namespace) -> None:
    from atnet_jax.checkpointing import save_weights
    from atnet_jax.convert_torch import load_state_dict, torch_to_flax
    from atnet_jax.models import paper_model_config, tiny_model_config
    from atnet_jax.models.build import count_params

    if not args.torch.exists():
        raise FileNotFoundError(f"--torch {args.torch}: no such file")
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"--out {args.out} already holds files (pass --overwrite to replace them)")
    config = paper_model_config() if args.model == "paper" else tiny_model_config()
    state = load_state_dict(args.torch)
    print(f"read {len(state)} tensors from {args.torch}")
    variables = torch_to_flax(state, config)
    for name, label in (("anet", "A-Net"), ("tnet", "T-Net")):
        print(f"{label}: {count_params(variables[name]):,} parameters")
    out = save_weights(args.out, variables, config, overwrite=args.overwrite,
                       extra={"source": str(args.torch.name)})
    print(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), convert, argv)


if __name__ == "__main__":
    sys.exit(main())
