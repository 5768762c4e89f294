"""One error family: every kind maps to its exit code in the commands and to its HTTP status in the studio, in one
place each, with one one-line message."""
from __future__ import annotations

import argparse
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*httpx.*")

from starlette.testclient import TestClient  # noqa: E402

from atnet_jax import cli  # noqa: E402
from atnet_jax.errors import (  # noqa: E402
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    KINDS,
    AtnetError,
    ConflictError,
    InputError,
    Interrupted,
    NotFoundError,
    UsageError,
    WeightsError,
    one_line,
)

EXPECTED = {  # kind -> (exit code, HTTP status): written out here, independently of the classes
    UsageError: (EXIT_USAGE, 400),
    NotFoundError: (EXIT_USAGE, 404),
    InputError: (EXIT_FAILURE, 422),
    WeightsError: (EXIT_FAILURE, 422),
    ConflictError: (EXIT_USAGE, 409),
    Interrupted: (EXIT_INTERRUPTED, 409),
}


def test_every_kind_is_covered_and_derives_from_the_base():
    assert set(KINDS) == set(EXPECTED)
    assert all(issubclass(kind, AtnetError) for kind in KINDS)
    # The built-in types callers caught before still catch them.
    assert issubclass(InputError, ValueError) and issubclass(UsageError, ValueError)
    assert issubclass(ConflictError, FileExistsError) and issubclass(Interrupted, KeyboardInterrupt)


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda k: k.__name__)
def test_a_command_exits_with_the_kinds_code_and_one_line(kind, capsys):
    def main(args: argparse.Namespace) -> None:
        raise kind("what went wrong\nthe details")

    code = cli.run(cli.make_parser("python -m atnet_jax.example", "An example.", ""), main, [])
    assert code == EXPECTED[kind][0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    if kind is Interrupted:
        assert err == "python -m atnet_jax.example: interrupted: what went wrong (--debug shows the details)\n"
    else:
        assert err == "python -m atnet_jax.example: error: what went wrong (--debug shows the details)\n"


class _Stub:
    """Stands in for the studio's controller: its state request raises the error under test."""

    live = None

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def summary(self) -> dict:
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize("kind", list(EXPECTED), ids=lambda k: k.__name__)
def test_the_studio_answers_with_the_kinds_status_and_one_line(kind):
    from atnet_jax.studio.app import create_app

    with TestClient(create_app(_Stub(kind("what went wrong\nthe details")))) as client:
        response = client.get("/api/state")
    assert response.status_code == EXPECTED[kind][1]
    assert response.json() == {"error": "what went wrong"}


def test_one_line():
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(ValueError("a\nb")) == "a (--debug shows the details)"
    assert one_line(ValueError("a\nb"), hint=False) == "a"
