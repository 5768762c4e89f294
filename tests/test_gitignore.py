"""The output folders that the README's commands (and the commands' defaults) create are ignored by git, so a
run from the clone's root leaves ``git status`` clean."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_outputs() -> set[str]:
    """Relative paths given to --output / --workdir / --workspace in the README's bash blocks."""
    text = (ROOT / "README.md").read_text()
    found = set()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for match in re.finditer(r"--(?:output|workdir|workspace|out)\s+(\S+)", block.replace("\\\n", " ")):
            if not match.group(1).startswith("/"):
                found.add(match.group(1))
    return found


def default_outputs() -> set[str]:
    from atnet_jax.infer import DEMO_OUTPUT
    from atnet_jax.studio.__main__ import DEFAULT_WORKSPACE

    learn = re.search(r'"--workdir".*?default=Path\("([^"]+)"\)', (ROOT / "experiments" / "learn_synthetic.py")
                      .read_text())
    return {str(DEMO_OUTPUT), str(DEFAULT_WORKSPACE / "shapes"), learn.group(1)}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_output_folders_of_the_readme_commands_are_git_ignored():
    paths = readme_outputs() | default_outputs()
    assert {"results", "eval/val", "runs/paper", "atnet_demo", "atnet_studio/shapes"} <= paths
    unignored = [p for p in sorted(paths) if subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", f"{p}/file"], cwd=ROOT).returncode != 0]
    assert not unignored, f"not in .gitignore: {unignored}"
