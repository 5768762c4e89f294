"""README.md's shell commands, run the way a user runs them: the repo's Python in a subprocess, in a fresh
working directory (one for the whole module, so that later commands find what earlier ones wrote, as a
reader following the README would).

Every fenced ``bash`` block is either run or excused: a block is excused by a comment line
``# not run by tests: <reason>`` inside it. Any other command must be one this module knows how to run
(:func:`classify`), else ``test_every_bash_block_is_run_or_excused`` fails. A line of steps joined by ``&&`` counts
step by step. The two lines of the Quick start section (install and demo; test tools and tests) are run as they
are written, in a copy of the repository, by ``test_quick_start_lines``.

The DAVIS commands run on the demo's generated DAVIS folder, through this mapping of their arguments
(flags and values other than these paths stay as the README has them):

- ``DAVIS`` (a path's first component) -> ``atnet_demo/data``, the folder ``python -m atnet_jax.infer`` writes;
- ``bear`` (a sequence name or path component) -> ``shapes``, the demo's sequence;
- ``round2.json`` (the user's own corrections) -> ``atnet_demo/round2.json``, the demo's round-2 scribble;
- ``weights/atnet`` (a converted official checkpoint) -> the demo weights shipped in the package.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atnet_jax.demo import DEFAULT_CHECKPOINT, DEMO_SEQUENCE

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "# not run by tests:"
QUICK_START_STEPS = {"python -m venv .venv", ". .venv/bin/activate", "pip install -r requirements.txt -e .",
                     "pip install -r requirements-test.txt", "python -m pytest -q"}
"""Steps of the quick-start lines that only ``test_quick_start_lines`` runs (it runs the lines whole)."""
QUICK_START_TESTS = "tests/test_clone.py tests/test_torch_file.py tests/test_cli.py"
"""The tests that the quick start's ``python -m pytest -q`` runs here (``PYTEST_ADDOPTS``): the whole suite is
what CI runs, this test among them."""
DEMO = "python -m atnet_jax.infer"
DEMO_OUT = "atnet_demo"
PATH_MAP = {"DAVIS": f"{DEMO_OUT}/data", "weights/atnet": str(DEFAULT_CHECKPOINT),
            "round2.json": f"{DEMO_OUT}/round2.json"}
SEQUENCE_MAP = {"bear": DEMO_SEQUENCE}
DEMO_SIZE, DEMO_FRAMES = (432, 240), 12  # (W, H) as PIL reports it


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """Fenced ```bash blocks of Markdown ``text`` -> [(line number of the fence, body)]."""
    blocks, body, start = [], None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if body is None and stripped.startswith("```bash"):
            body, start = [], number
        elif body is not None and stripped.startswith("```"):
            blocks.append((start, "\n".join(body)))
            body = None
        elif body is not None:
            body.append(line)
    assert body is None, f"README.md: the ```bash block at line {start} is not closed"
    return blocks


def command_lines(block: str) -> list[str]:
    """The command lines of a block as written: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if shlex.split(line, comments=True)]


def commands(block: str) -> list[str]:
    """The commands of a block, a line's ``&&``-joined steps one by one."""
    out = []
    for line in command_lines(block):
        for step in line.split(" && "):
            words = shlex.split(step, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def quick_start_lines() -> list[str]:
    """The command lines of the README's Quick start section, as written."""
    section = README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return [line for _, block in bash_blocks(section) for line in command_lines(block)]


def excuse(block: str) -> str | None:
    """The reason given by the block's ``# not run by tests: <reason>`` line, if it has one."""
    for line in block.splitlines():
        if line.strip().startswith(MARKER):
            return line.strip()[len(MARKER):].strip() or None
    return None


def classify(command: str) -> str | None:
    """What kind of command this module runs it as, or None."""
    words = shlex.split(command)
    if command in QUICK_START_STEPS:
        return "quick start"
    if command == DEMO:
        return "demo"
    if words[:2] != ["python", "-m"] or len(words) < 3:
        return None
    if words[3:] == ["--help"]:
        return "help"
    return {"atnet_jax.infer": "infer", "atnet_jax.evaluate": "evaluate",
            "atnet_jax.data.synthetic": "synthetic", "atnet_jax.scribble": "scribble"}.get(words[2])


def readme_commands() -> list[tuple[int, str, str | None]]:
    """[(fence line, command, kind)] of every command in a block without the marker."""
    out = []
    for line, block in bash_blocks(README.read_text()):
        if excuse(block) is None:
            out += [(line, c, classify(c)) for c in commands(block)]
    return out


def map_argument(word: str) -> str:
    """The README's DAVIS paths -> the demo's files (see the module docstring)."""
    if word in PATH_MAP:
        return PATH_MAP[word]
    parts = word.split("/")
    if parts[0] in PATH_MAP and len(parts) > 1:
        parts = PATH_MAP[parts[0]].split("/") + parts[1:]
    parts = [SEQUENCE_MAP.get(p, p) for p in parts]
    return "/".join(parts)


def run(command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``command`` (starting with ``python``) with this interpreter, in ``cwd``."""
    words = shlex.split(command)
    assert words[0] == "python", command
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # conftest's fake devices: not a user's
    # The tests' compilation cache (conftest.py) spares repeated runs the compiles; it changes no result.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ.get(
        "ATNET_JAX_TEST_CACHE", str(Path.home() / ".cache" / "atnet_jax_xla")))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    print(f"$ {command}  ({time.perf_counter() - start:.0f} s, exit {result.returncode})\n{result.stdout}")
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_every_bash_block_is_run_or_excused():
    blocks = bash_blocks(README.read_text())
    assert len(blocks) >= 6
    unhandled = [f"line {line}: {c}" for line, c, kind in readme_commands() if kind is None]
    assert not unhandled, ("README commands that this test neither runs nor excuses (run them here, or add "
                           f"'{MARKER} <reason>' to their block): {unhandled}")
    for line, block in blocks:
        if MARKER in block:
            assert excuse(block), f"README.md line {line}: '{MARKER}' without a reason"
    kinds = {kind for _, _, kind in readme_commands()}
    assert {"demo", "infer", "evaluate", "synthetic"} <= kinds, kinds


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The user's working directory, after the README's demo command."""
    if not (DEFAULT_CHECKPOINT / "atnet_jax.json").is_file():
        pytest.fail(f"{DEFAULT_CHECKPOINT} holds no weights: the demo needs the shipped demo weights")
    cwd = tmp_path_factory.mktemp("user")
    assert any(c == DEMO for _, c, _ in readme_commands()), f"README.md does not show `{DEMO}`"
    start = time.perf_counter()
    result = run(DEMO, cwd)
    seconds = time.perf_counter() - start
    return cwd, result.stdout, seconds


def test_demo_writes_masks_and_overlays(workdir):
    cwd, log, seconds = workdir
    out = cwd / DEMO_OUT
    j = [float(x) for x in re.findall(r"round [12]:.*?J = ([0-9.]+) \(", log)]
    assert len(j) == 2 and all(0 <= v <= 1 for v in j), log
    assert str(Path(DEMO_OUT) / DEMO_SEQUENCE) in log and "overview.jpg" in log
    masks = sorted((out / DEMO_SEQUENCE).glob("*.png"))
    assert [p.name for p in masks] == [f"{t:05d}.png" for t in range(DEMO_FRAMES)]
    for path in masks:
        with Image.open(path) as im:
            assert im.mode == "P" and im.size == DEMO_SIZE
            assert set(np.unique(np.asarray(im))) <= {0, 1, 2}
    overlays = sorted((out / f"{DEMO_SEQUENCE}_overlay").glob("*.jpg"))
    assert len(overlays) == DEMO_FRAMES
    import cv2

    for path in overlays:
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (DEMO_SIZE[1], DEMO_SIZE[0], 3)
    with Image.open(out / "overview.jpg") as im:
        assert im.size[0] >= 4 * DEMO_SIZE[0] and im.size[1] >= 3 * DEMO_SIZE[1]
    round2 = json.loads((out / "round2.json").read_text())
    assert len(round2["scribbles"]) == DEMO_FRAMES
    assert seconds < 180, f"the demo took {seconds:.0f} s"


def test_help_of_every_command(tmp_path):
    verbs = sorted(set(re.findall(r"python -m (atnet_jax(?:\.\w+)+)", README.read_text())))
    assert {"atnet_jax.infer", "atnet_jax.evaluate", "atnet_jax.convert", "atnet_jax.data.synthetic"} <= set(verbs)
    for verb in verbs:
        out = run(f"python -m {verb} --help", tmp_path, timeout=120).stdout
        assert out.startswith(f"usage: python -m {verb}") and "--debug" in out, out


def test_davis_and_synthetic_commands(workdir):
    cwd, _, _ = workdir
    ran = set()
    for _line, command, kind in readme_commands():
        if kind not in ("infer", "evaluate", "synthetic", "scribble"):
            continue
        words = shlex.split(command)
        mapped = shlex.join(words[:3] + [map_argument(w) for w in words[3:]])
        result = run(mapped, cwd)
        flags = dict(zip(words, words[1:]))
        output = cwd / map_argument(flags["--output"])
        if kind == "infer":
            sequence = map_argument(flags["--sequence"])
            masks = sorted((output / sequence).glob("*.png"))
            assert len(masks) == DEMO_FRAMES, (command, masks)
            with Image.open(masks[0]) as im:
                assert im.mode == "P" and im.size == DEMO_SIZE
        elif kind == "scribble":
            from atnet_jax.io.scribbles import annotated_frames, load_scribbles

            scribbles = load_scribbles(output, num_frames=DEMO_FRAMES, sequence=map_argument(flags["--sequence"]))
            assert len(annotated_frames(scribbles)) == 1 and str(output.relative_to(cwd)) in result.stdout
        elif kind == "evaluate":
            summary = json.loads((output / "summary.json").read_text())
            assert 0 <= summary["auc"] <= 1 and (output / "report.csv").is_file() and (output / "curve.png").is_file()
            assert str(output.relative_to(cwd) / "summary.json") in result.stdout
        else:
            from atnet_jax.io.davis import DavisFolder

            assert len(DavisFolder(output).sequences()) == int(flags["--videos"])
        ran.add(kind)
    assert ran == {"infer", "evaluate", "synthetic", "scribble"}, ran


def test_quick_start_has_two_lines_of_known_steps():
    lines = quick_start_lines()
    assert len(lines) == 2, lines
    install, tests = ([shlex.join(shlex.split(step)) for step in line.split(" && ")] for line in lines)
    assert install[0] == "python -m venv .venv" and install[-1] == DEMO, install
    assert "pip install -r requirements.txt -e ." in install and tests[-1] == "python -m pytest -q", tests
    assert set(install[:-1]) | set(tests) <= QUICK_START_STEPS


@pytest.mark.slow
def test_quick_start_lines(tmp_path):
    """The README's two quick-start lines, as written, in a copy of the repository: a fresh virtual environment
    (the packages come from pip's configured index), the demo, the test tools and a subset of the tests."""
    from conftest import copy_repo

    install, tests = quick_start_lines()
    clone = copy_repo(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH", "VIRTUAL_ENV", "CI")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ.get(
        "ATNET_JAX_TEST_CACHE", str(Path.home() / ".cache" / "atnet_jax_xla")))
    for line in (install, tests):
        extra = {"PYTEST_ADDOPTS": f"-p no:cacheprovider {QUICK_START_TESTS}"} if line is tests else {}
        start = time.perf_counter()
        result = subprocess.run(["bash", "-c", line], cwd=clone, env=dict(env, **extra), capture_output=True,
                                text=True, timeout=1200)
        print(f"$ {line}  ({time.perf_counter() - start:.0f} s, exit {result.returncode})\n{result.stdout[-2000:]}")
        assert result.returncode == 0, f"{line}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        if line is install:
            assert re.search(r"round 2:.*J = [0-9.]+ \(", result.stdout), result.stdout
            assert (clone / DEMO_OUT / DEMO_SEQUENCE / "00000.png").is_file()
            where = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                                    "import atnet_jax, importlib.util; print(atnet_jax.__file__); "
                                    "print(importlib.util.find_spec('torch'))"], capture_output=True, text=True,
                                   env=env, cwd=tmp_path, check=True).stdout.split()
            assert where == [str(clone / "atnet_jax" / "__init__.py"), "None"], where
        else:
            assert re.search(r"\b\d+ passed\b", result.stdout) and "failed" not in result.stdout, result.stdout


def test_the_session_api_example_runs(tmp_path, monkeypatch, capsys):
    """The python block of README's "The session API" section, run as written in a fresh folder."""
    text = README.read_text()
    section = text[text.index("## The session API"):]
    block = section[section.index("```python") + len("```python"): section.index("```", section.index("```python") + 9)]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md (The session API)", "exec"), namespace)  # noqa: S102 (the README's own code)
    out = capsys.readouterr().out
    assert re.search(r"frame \d+: objects \{", out), out
    assert re.search(r"frame \d+ \(propagated\): 12 of 12", out), out
    assert "round 2 updated frames (8," in out, out
    labels = namespace["labels"]
    assert labels.shape == (240, 432) and not labels.flags.writeable
