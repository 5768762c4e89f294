"""A clone of the repository alone runs the equivalence proof: the golden vectors and the real DAVIS frames the
tests read live in ``tests/data``, and no test reads anything beside the clone."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import copy_repo

ROOT = Path(__file__).resolve().parents[1]


def test_no_test_reads_outside_the_clone():
    pattern = re.compile("|".join(map(re.escape, ["../" + "shared", "ATNET_JAX_" + "SHARED", '"' + 'shared"'])))
    files = [p for p in sorted(ROOT.glob("tests/*.py")) if p.name != Path(__file__).name] + [ROOT / ".ci" / "run"]
    offenders = [f"{path}:{n}" for path in files
                 for n, line in enumerate(path.read_text().splitlines(), start=1) if pattern.search(line)]
    assert not offenders, offenders


def test_a_clone_alone_runs_the_golden_tests_with_none_skipped(tmp_path):
    clone = copy_repo(tmp_path / "clone")  # nothing beside it: tmp_path holds no shared/ folder
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(clone)
    # The golden inputs, recipe checksums and kernel vectors (seconds); the full-size network comparisons of
    # test_golden.py read the same files and run in the suite itself.
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "tests/test_golden.py::test_recipe_weights_match_checksums",
            "tests/test_golden.py::test_preprocessing_is_bit_exact",
            "tests/test_transfer.py::test_local_golden", "tests/test_transfer.py::test_global_golden",
            "tests/test_convert.py::test_full_size_keys_and_shapes_equal_the_released_state_dict",
            "tests/test_robot.py::test_real_tennis_masks"]
    result = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert re.search(r"\b10 passed in\b", out) and "skipped" not in out and "failed" not in out, out
    imported = subprocess.run([sys.executable, "-c", "import atnet_jax; print(atnet_jax.__file__)"], cwd=clone,
                              env=env, capture_output=True, text=True, check=True).stdout
    assert imported.startswith(str(clone)), imported
