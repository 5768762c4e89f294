"""The project's one error family: a base class and a kind per cause.

Every error the library raises on purpose is an :class:`AtnetError`. The commands map a kind to an exit code in
one place (:func:`atnet_jax.cli.run`), the studio to an HTTP status in one place (``atnet_jax.studio.app``), both
through the class attributes below; :func:`one_line` is the one formatter of a message for a terminal or a JSON
body. The kinds also derive from the built-in type that callers caught before (``ValueError``,
``FileExistsError``, ``KeyboardInterrupt``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class AtnetError(Exception):
    """Base of the project's errors. ``exit_code`` for the commands, ``http_status`` for the studio."""

    exit_code: int = EXIT_FAILURE
    http_status: int = 500


class UsageError(AtnetError, ValueError):
    """A bad argument or request: a flag's value, a path that does not exist, an id outside its range."""

    exit_code = EXIT_USAGE
    http_status = 400


class NotFoundError(UsageError):
    """A request names something that does not exist (an object, a step, a sequence)."""

    http_status = 404


class InputError(AtnetError, ValueError):
    """Bad input data: a file or a value whose contents cannot be used (corrupt, wrong size, wrong format)."""

    exit_code = EXIT_FAILURE
    http_status = 422


class WeightsError(InputError):
    """A weights folder or checkpoint that cannot be loaded: corrupt, truncated, another network size."""


class ConflictError(AtnetError, FileExistsError):
    """The work would overwrite or clash with existing results, or with work in progress (a round running,
    another process holding the output)."""

    exit_code = EXIT_USAGE
    http_status = 409


class Interrupted(AtnetError, KeyboardInterrupt):
    """The work was stopped on request (Ctrl-C, SIGTERM, a cancelled round); what was finished is kept."""

    exit_code = EXIT_INTERRUPTED
    http_status = 409


class AtnetWarning(UserWarning):
    """Something the work can go on with but the user should know (a scribble file naming another video); the
    commands print it as one line, ``<prog>: warning: <message>``."""


KINDS: tuple[type[AtnetError], ...] = (UsageError, NotFoundError, InputError, WeightsError, ConflictError, Interrupted)


def one_line(err: BaseException, *, hint: bool = True) -> str:
    """The first line of an error's message (the type's name for an empty message); where it had more lines and
    ``hint``, a pointer to ``--debug`` for the rest."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    return lines[0] + (" (--debug shows the details)" if len(lines) > 1 and hint else "")
