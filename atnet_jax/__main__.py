"""``python -m atnet_jax``: the commands, one line each; ``python -m atnet_jax COMMAND ...`` runs one."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from atnet_jax import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "infer": ("atnet_jax.infer", "segment a video from scribble or click files (no arguments: the demo)"),
    "evaluate": ("atnet_jax.evaluate", "the DAVIS interactive benchmark: robot rounds, AUC and J@60s"),
    "studio": ("atnet_jax.studio.__main__", "a local web page to scribble, run rounds and export masks"),
    "scribble": ("atnet_jax.scribble", "write a first scribble file from a ground-truth mask"),
    "convert": ("atnet_jax.convert", "the official PyTorch checkpoint -> a weights folder (no PyTorch needed)"),
    "train": ("atnet_jax.train", "train A-Net and T-Net (two stages, resumable, several hosts)"),
    "synthetic": ("atnet_jax.data.synthetic.__main__", "write a DAVIS-format folder of generated videos"),
}
"""Command name -> (module with ``main(argv) -> int``, what it does)."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: python -m atnet_jax COMMAND [--help] ...   (atnet_jax {__version__})", "",
             "IVOS-ATNet interactive video object segmentation in JAX. Commands (also python -m "
             "atnet_jax.<module> and atnet-<command>):", ""]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "python -m atnet_jax COMMAND --help explains a command, with examples."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"atnet_jax {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"{usage()}\n\npython -m atnet_jax: error: unknown command {args[0]!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return module.main(args[1:])


if __name__ == "__main__":
    sys.exit(main())
