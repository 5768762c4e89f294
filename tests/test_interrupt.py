"""Ctrl-C (a real SIGINT to a real process) stops every command with exit 130 and one line, at any moment:
during the imports, while XLA compiles, after the first compile; never a segfault at shutdown (exit 139), a
traceback, or an interrupt lost in a garbage-collector callback (the run going on to exit 0)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from atnet_jax import cli, interrupts
from atnet_jax.interrupts import InterruptGuard

ROOT = Path(__file__).resolve().parent.parent
T, H, W = 5, 96, 128


def interrupt(argv: list[str], cwd: Path, *, after: str | None, delay: float, timeout: float = 120) -> tuple[int, str]:
    """Start ``python -m <argv>``; send SIGINT ``delay`` s after the stdout line containing ``after``; return
    (exit code, stderr). Fails where the command ended before the signal.

    With ``after`` None the signal is sent ``delay`` s after ``atnet_jax.interrupts`` is imported (``-X
    importtime`` reports it on stderr): the command's own imports are still running, and a signal that a slow
    machine delivers while the interpreter itself is still starting, before any of the package runs, cannot
    make the test fail."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    importtime = ["-X", "importtime"] if after is None else []
    proc = subprocess.Popen([sys.executable, *importtime, "-m", *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, proc.kill)  # a command that never prints what is awaited
    watchdog.start()
    try:
        if after is None:
            for line in proc.stderr:  # "import time: self | cumulative |   <nested> module"
                if line.rsplit("|", 1)[-1].strip() == "atnet_jax.interrupts":
                    break
            else:
                pytest.fail(f"{argv[0]} ended before importing atnet_jax.interrupts")
        else:
            seen = []
            for line in proc.stdout:
                seen.append(line)
                if after in line:
                    break
            else:
                pytest.fail(f"{argv[0]} ended before printing {after!r}: {''.join(seen)} {proc.stderr.read()}")
        time.sleep(delay)
        assert proc.poll() is None, f"{argv[0]} ended before the signal ({after!r} + {delay} s)"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=timeout)
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    return proc.returncode, err


def busy(seconds: float) -> None:
    """Run Python code (where a signal handler can run) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.fixture
def guard():
    with InterruptGuard() as guard:
        assert guard.previous is not None, "the tests run in the main thread with Python's own SIGINT handler"
        yield guard
    interrupts.handled()


def swallowed_interrupt() -> None:
    """Ctrl-C while library code runs a bare ``except:`` (as JAX's tracing does): the interrupt is dropped."""
    try:
        signal.raise_signal(signal.SIGINT)
    except:  # noqa: E722
        pass


def test_an_interrupt_that_library_code_swallows_is_raised_again(guard):
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        swallowed_interrupt()
        busy(5.0)
    assert time.monotonic() - start < 2.0


def test_the_cleanup_of_an_interrupt_runs_to_its_end_undisturbed(guard):
    steps = []
    with pytest.raises(KeyboardInterrupt) as info:
        try:
            try:
                signal.raise_signal(signal.SIGINT)
            finally:
                busy(3 * InterruptGuard.CHECK_EVERY)
                steps.append("finally")
        except KeyboardInterrupt:
            try:
                raise ValueError("an error handled during the cleanup")
            except ValueError:
                busy(3 * InterruptGuard.CHECK_EVERY)
            steps.append("except")
            raise
    assert steps == ["finally", "except"]
    assert info.value.__context__ is None, "a second KeyboardInterrupt replaced the first one"


def test_an_interrupt_that_was_handled_is_not_raised_again(guard):
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    interrupts.handled()
    busy(4 * InterruptGuard.CHECK_EVERY)


def test_ctrl_c_turned_into_another_error_by_library_code_exits_130(capsys):
    def main(args):
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException as err:  # noqa: BLE001
            raise RuntimeError("Error calling __set_name__") from err

    assert cli.run(cli.make_parser("python -m atnet_jax.infer", "", ""), main, []) == 130
    assert capsys.readouterr().err.strip() == "python -m atnet_jax.infer: interrupted"
    busy(3 * InterruptGuard.CHECK_EVERY)  # and no interrupt left over


def check_interrupted(code: int, err: str, prog: str) -> None:
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and "%|" not in line and not line.startswith("import time:")]
    assert code == 130, f"exit {code}: {err[-2000:]}"
    assert lines and lines[-1].startswith(f"python -m {prog}: interrupted"), err[-2000:]
    for bad in ("Traceback", "Exception ignored", "Fatal Python error", "Segmentation fault"):
        assert bad not in err, err[-2000:]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A folder of frames and two scribble files (rounds on frames 0 and 3)."""
    root = tmp_path_factory.mktemp("interrupt")
    frames = root / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for t in range(T):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    scribbles = []
    for i, frame in enumerate((0, 3)):
        per_frame = [[] for _ in range(T)]
        per_frame[frame] = [{"path": [[0.2, 0.5], [0.6, 0.55]], "object_id": 1, "start_time": 0, "end_time": 1}]
        path = root / f"round{i + 1}.json"
        path.write_text(json.dumps({"scribbles": per_frame}))
        scribbles.append(str(path))
    return root, ["--input", str(frames), "--scribbles", *scribbles, "--overlay", "none"]


@pytest.mark.parametrize("after, delay", [
    (None, 0.3),  # during the imports
    ("frames of", 0.4),  # the first round's compile
    ("round 1:", 0.0),  # after the first compile: round 2
], ids=["imports", "compiling", "after-compile"])
def test_ctrl_c_in_infer_exits_130_at_every_moment(video, after, delay):
    root, argv = video
    for attempt in range(2):
        out = root / f"out-{after is None}-{delay}-{attempt}"
        code, err = interrupt(["atnet_jax.infer", *argv, "--output", str(out)], root, after=after, delay=delay)
        check_interrupted(code, err, "atnet_jax.infer")
        assert not out.exists() or not any(out.iterdir()), "an interrupted run left results or a staging folder"


def test_ctrl_c_in_evaluate_synthetic_and_convert_exits_130(tmp_path):
    from atnet_jax.data.synthetic.__main__ import main as synthetic

    assert synthetic(["--output", str(tmp_path / "data"), "--videos", "1", "--frames", "4", "--height", "64",
                      "--width", "96"]) == 0
    for after, delay in ((None, 0.3), ("sample(s)", 0.3)):
        code, err = interrupt(["atnet_jax.evaluate", "--input", str(tmp_path / "data"), "--output",
                               str(tmp_path / f"eval{delay}{after}"), "--max-rounds", "2"], tmp_path, after=after,
                              delay=delay)
        check_interrupted(code, err, "atnet_jax.evaluate")
    code, err = interrupt(["atnet_jax.data.synthetic", "--output", str(tmp_path / "many"), "--videos", "500"],
                          tmp_path, after=None, delay=1.0)
    check_interrupted(code, err, "atnet_jax.data.synthetic")
    assert not (tmp_path / "many").exists()
    from atnet_jax.demo import DEFAULT_CHECKPOINT
    from atnet_jax.io.torch_weights import flax_to_torch
    from atnet_jax.io.weights import load_weights

    npz = tmp_path / "weights.npz"
    np.savez(npz, **flax_to_torch(load_weights(DEFAULT_CHECKPOINT)[0]))
    for after, delay in ((None, 0.5), ("read", 0.0)):
        out = tmp_path / f"w{delay}"
        code, err = interrupt(["atnet_jax.convert", "--input", str(npz), "--output", str(out)], tmp_path,
                              after=after, delay=delay)
        check_interrupted(code, err, "atnet_jax.convert")
        assert not out.exists(), "an interrupted conversion left a weights folder"


def test_ctrl_c_in_the_studio_and_train_exits_130(video, tmp_path):
    root, _ = video
    for after, delay in ((None, 0.5), ("the studio is at", 0.3)):
        code, err = interrupt(["atnet_jax.studio", "--input", str(root / "frames"), "--workspace",
                               str(tmp_path / f"ws{delay}"), "--no-browser", "--port", "0"], tmp_path, after=after,
                              delay=delay)
        check_interrupted(code, err, "atnet_jax.studio")
    code, err = interrupt(["atnet_jax.train", "--config", str(ROOT / "experiments" / "configs" / "tiny.py"),
                           "--workdir", str(tmp_path / "run"), "--stage", "anet", "--no-progress", "--set",
                           f"data.synthetic={tmp_path / 'none'}"], tmp_path, after=None, delay=0.5)
    check_interrupted(code, err, "atnet_jax.train")
