"""What every ``python -m atnet_jax.<verb>`` shares: flag names, exit codes, one-line errors, ``--debug``.

Flag names mean the same in every command: ``--checkpoint`` (an atnet_jax weights folder to read),
``--input`` (what the command reads), ``--output`` (where it writes), ``--overwrite`` (replace earlier
results instead of refusing) and ``--debug`` (full tracebacks).

Exit codes: 0 success, 1 runtime failure (bad file contents, failed computation), 2 usage error (bad or
out-of-range arguments, paths that do not exist, outputs that would be overwritten, cannot be written or are
being written by another run), 130 interrupted (Ctrl-C, at any moment: :mod:`atnet_jax.interrupts`).
Errors are one line on stderr, ``<prog>: error: <what is wrong>`` (``<prog>: interrupted`` for Ctrl-C);
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atnet_jax import __version__, interrupts
from atnet_jax.errors import (  # noqa: F401 (the commands' names for them)
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AtnetError,
    AtnetWarning,
    Interrupted,
    UsageError,
    one_line,
)
from atnet_jax.io.safe import check_writable_folder as require_writable_folder  # noqa: F401 (the commands' name)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and examples' line breaks; leaves old flag names out of ``--help``."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <what is wrong>`` (exit 2), as the commands'
    own errors are."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _end_progress_bars()
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (--help lists the flags)\n")


def make_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An argument parser with the shared ``--debug`` and ``--version`` flags; ``epilog`` holds the examples.

    Paragraphs of ``description`` (separated by blank lines) that are one line long are wrapped; others keep
    their line breaks.
    """
    description = "\n\n".join(p if "\n" in p else textwrap.fill(p, 100) for p in description.split("\n\n"))
    parser = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=_HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("--version", action="version", version=f"atnet_jax {__version__}")
    return parser


def add_argument(parser: argparse.ArgumentParser, *names: str, old_names: Sequence[str] = (),
                 **kwargs: Any) -> argparse.Action:
    """``parser.add_argument(*names, **kwargs)`` that also accepts ``old_names`` (earlier spellings of the
    flag, kept so that old commands still work) without listing them in ``--help``."""
    action = parser.add_argument(*names, *old_names, **kwargs)
    action.hidden_aliases = tuple(old_names)  # read by _HelpFormatter
    return action


# ------------------------------------------------------------------ argument types (argparse ``type=``)


def int_range(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """An argparse ``type=``: an integer in ``[low, high]`` (no upper bound for None); ``what`` names the unit
    in the message (e.g. "pixels")."""
    unit = f" {what}" if what else ""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number{unit}, got {value!r}") from None
        if number < low or (high is not None and number > high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}{unit}, got {number}")
        return number

    parse.__name__ = f"int_range({low}, {high})"
    return parse


positive_int = int_range(1)
"""An argparse ``type=``: a whole number >= 1 (rounds, steps, sizes, counts, batch sizes)."""
nonnegative_int = int_range(0)
"""An argparse ``type=``: a whole number >= 0 (an index, a seed)."""
port = int_range(0, 65535)
"""An argparse ``type=``: a TCP port, 0 for any free one."""


def positive_float(value: str) -> float:
    """An argparse ``type=``: a finite number > 0 (a time budget, a rate)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a number greater than 0, got {value}")
    return number


def require_path(path: Path, flag: str) -> Path:
    """``path`` if it exists; else a :class:`UsageError` naming the flag."""
    if not path.exists():
        raise UsageError(f"{flag} {path} does not exist")
    return path


def require_sequence_input(path: Path, sequence: str | None) -> None:
    """With ``--sequence``, ``--input`` must be a folder (a DAVIS root): UsageError for a file (a video)."""
    if sequence is not None and path.is_file():
        raise UsageError(f"--sequence {sequence} names a sequence of a DAVIS folder, but --input {path} is a file; "
                         "leave --sequence out for a video file")


def load_checkpoint(path: Path, flag: str = "--checkpoint") -> tuple[dict[str, Any], Any]:
    """``io.weights.load_weights(path)`` -> (variables, model config), with errors that say what was
    expected instead: a UsageError for a missing path or a file, a CheckpointError (exit 1) otherwise."""
    from atnet_jax.errors import WeightsError
    from atnet_jax.io.weights import CheckpointError, load_weights

    require_path(path, flag)
    if not path.is_dir():
        hint = (" (a PyTorch checkpoint: convert it first with python -m atnet_jax.convert)"
                if path.suffix in (".pth", ".pt", ".npz") else "")
        raise UsageError(f"{flag} {path} is a file, expected an atnet_jax weights folder{hint}")
    try:
        return load_weights(path)
    except WeightsError as err:  # names the folder and what is wrong with it
        raise CheckpointError(f"{flag} {one_line(err)}") from err
    except Exception as err:  # orbax: a damaged variables/ folder or a tree that does not match the metadata
        raise CheckpointError(f"{flag} {path}: cannot restore the weights ({type(err).__name__}: "
                              f"{one_line(err)})") from err


PRECISIONS = ("float32", "bf16")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision {float32,bf16}``, read by :func:`load_predictor`."""
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="the networks' compute precision: bf16 runs convolutions and matmuls in bfloat16 "
                             "(batch norm, softmax and probabilities stay float32), faster on GPUs and TPUs, "
                             "probabilities within about 0.03 of float32's; slow on CPUs (default: float32)")


def load_predictor(path: Path, flag: str = "--checkpoint", precision: str = "float32") -> Any:
    """The networks of the weights folder ``path`` (:func:`load_checkpoint`'s checks and errors), ready for a
    session: an :class:`~atnet_jax.models.predictor.ATNetPredictor` computing in ``precision``."""
    from atnet_jax.models.predictor import ATNetPredictor

    variables, config = load_checkpoint(path, flag)
    return ATNetPredictor(variables, config, precision)


def _end_progress_bars() -> None:
    """Close the tqdm bars an error interrupted, so that the error message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _report(parser: argparse.ArgumentParser, message: str) -> None:
    _end_progress_bars()
    print(f"{parser.prog}: error: {message}", file=sys.stderr)


def _warning_printer(parser: argparse.ArgumentParser, default: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that prints the project's warnings as one line, ``<prog>: warning: ...``."""

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kwargs: Any) -> None:
        if issubclass(category, AtnetWarning):
            _end_progress_bars()
            print(f"{parser.prog}: warning: {one_line(message)}", file=sys.stderr)
        else:
            default(message, category, *rest, **kwargs)

    return show


def run(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` and run ``main``; map failures to a one-line message and an exit code: 0 done, 1 failed,
    2 usage error, 130 interrupted by Ctrl-C (``<prog>: interrupted``, as a shell reports SIGINT). A bad flag is
    returned as 2 too (argparse's message is printed); ``--help`` exits 0 as argparse does.

    Run from the command line (``argv`` None), an interrupted command leaves the process at once with 130
    (:func:`atnet_jax.interrupts.exit_interrupted`); called with ``argv`` (tests, scripts) it returns the code.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        if not exit_.code:
            raise
        return EXIT_USAGE
    interrupts.COMMAND_LINE.raising = True
    with interrupts.InterruptGuard():
        try:
            code = _run(parser, main, args, interrupted=interrupts.COMMAND_LINE.pending)
        finally:
            from atnet_jax.io.lock import release_all

            release_all()  # the output locks the command took (atnet_jax.io.lock.hold)
    if code == EXIT_INTERRUPTED and argv is None:
        interrupts.exit_interrupted()
    return code


def _interrupted(parser: argparse.ArgumentParser, detail: str = "") -> int:
    """Ctrl-C reached the command: ``<prog>: interrupted[: detail]`` on stderr, 130."""
    interrupts.handled()
    _end_progress_bars()
    print(f"{parser.prog}: interrupted" + (f": {detail}" if detail else ""), file=sys.stderr)
    return EXIT_INTERRUPTED


def _run(parser: argparse.ArgumentParser, main: Callable[[argparse.Namespace], None], args: argparse.Namespace,
         *, interrupted: bool = False) -> int:
    try:
        if interrupted:  # Ctrl-C before the command started
            raise KeyboardInterrupt
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(parser, warnings.showwarning)
            main(args)
    except AtnetError as err:
        if args.debug:
            raise
        if err.exit_code == EXIT_INTERRUPTED:
            _interrupted(parser, one_line(err) if str(err) else "")
        else:
            _report(parser, one_line(err))
        return err.exit_code
    except (FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        if args.debug:
            raise
        _report(parser, one_line(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return _interrupted(parser)
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        if args.debug:
            raise
        if interrupts.caused_by_interrupt(err):  # library code that turned Ctrl-C into another error
            return _interrupted(parser)
        _report(parser, one_line(err))
        return EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 (a bug: still one line, the traceback with --debug)
        if args.debug:
            raise
        if interrupts.caused_by_interrupt(err):
            return _interrupted(parser)
        _report(parser, f"unexpected {type(err).__name__}: {one_line(err)} (rerun with --debug for the traceback)")
        return EXIT_FAILURE
    return EXIT_OK
