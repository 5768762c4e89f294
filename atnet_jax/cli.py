"""What every ``python -m atnet_jax.<verb>`` shares: exit codes, one-line errors, ``--debug``.

Exit codes: 0 success, 1 runtime failure (bad file contents, failed computation), 2 usage error (bad
arguments, paths that do not exist, outputs that would be overwritten).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line: reported in one line, exit code 2."""


def make_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """An argument parser with the shared ``--debug`` flag; ``epilog`` holds the examples."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def run(
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` and run ``main``; map failures to a one-line message and an exit code."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except (UsageError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
