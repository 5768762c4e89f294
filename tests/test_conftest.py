"""tests/conftest.py: a missing ../shared skips a test locally, but fails it in CI (CI=true)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _run_needing_shared(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """pytest on a one-test file that needs ../shared, with ``ATNET_JAX_SHARED`` pointing nowhere."""
    test_file = tmp_path / "test_needs_shared.py"
    test_file.write_text(textwrap.dedent("""
        from conftest import shared_path

        def test_golden():
            shared_path("reference", "golden.npz")
    """))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(ATNET_JAX_SHARED=str(tmp_path / "missing"),
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")]))
    if ci is not None:
        env["CI"] = ci
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
            str(test_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


@pytest.mark.parametrize(("ci", "code", "needle"), [(None, 0, "1 skipped"), ("false", 0, "1 skipped"),
                                                     ("true", 1, "1 failed")])
def test_missing_shared_fails_the_run_only_in_ci(tmp_path, ci, code, needle):
    result = _run_needing_shared(tmp_path, ci)
    assert result.returncode == code, result.stdout + result.stderr
    assert needle in result.stdout and "missing" in result.stdout, result.stdout
    if ci == "true":
        assert "CI=true" in result.stdout
