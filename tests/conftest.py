"""Shared test setup: fake CPU devices, full float32 precision, paths to the reference data in tests/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
_cache = Path(os.environ.get("ATNET_JAX_TEST_CACHE", Path.home() / ".cache" / "atnet_jax_xla"))
jax.config.update("jax_compilation_cache_dir", str(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)



def cached_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with ``extra``, for a subprocess that compiles: it shares the tests' XLA compilation cache,
    so a second run of the same program (a resume, another test's training) compiles nothing."""
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(_cache), **extra}


PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "tests" / "data"
"""The tests' reference data, kept in the repo (``tests/data/README.md``): golden vectors, real DAVIS frames."""


def data_path(*parts: str) -> Path:
    """Path under ``tests/data``; a missing file fails the calling test (it is part of every clone)."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} not found: tests/data is part of the repository (see tests/data/README.md)",
                    pytrace=False)
    return path


def copy_repo(dest: Path) -> Path:
    """Copy what a clone of the repository holds (tracked and not-ignored files of this working tree) to
    ``dest``, for tests that run something as a user with a fresh clone would."""
    import shutil
    import subprocess

    git = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True)
    if git.returncode != 0:  # not a git checkout (a copy made by this function): all but what a run adds
        ignore = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.egg-info", ".pytest_cache", "atnet_demo")
        shutil.copytree(PROJECT_ROOT, dest, ignore=ignore, dirs_exist_ok=True)
        return dest
    for name in git.stdout.splitlines():
        if (PROJECT_ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def tiny_config():
    from atnet_jax.models import tiny_model_config

    return tiny_model_config()


@pytest.fixture(scope="session")
def tiny_state_dict(tiny_config):
    """Recipe weights (the golden vectors' NumPy recipe) for the tiny networks, PyTorch-named."""
    from reference_weights import recipe_state_dict

    from atnet_jax.io.torch_weights import torch_shapes

    return recipe_state_dict(torch_shapes(tiny_config))


@pytest.fixture(scope="session")
def tiny_variables(tiny_config, tiny_state_dict):
    """Flax variables of the tiny A-Net and T-Net, made without compiling an init."""
    from atnet_jax.io.torch_weights import torch_to_flax

    return jax.tree.map(jax.numpy.asarray, torch_to_flax(tiny_state_dict, tiny_config))
