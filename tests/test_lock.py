"""Output locks: a second run writing the same output stops at once (ConflictError, exit 2) naming the holder;
a lock left by a dead process is taken over; a process does not conflict with itself."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from atnet_jax import cli
from atnet_jax.errors import ConflictError
from atnet_jax.io import lock

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds a lock (folder, part) until killed -> (folder, part) -> Popen."""
    procs = []

    def start(folder: Path, part: str | None = None, flag: str = "--output") -> subprocess.Popen:
        code = textwrap.dedent(f"""
            import sys, time
            from atnet_jax.io.lock import hold
            hold({str(folder)!r}, {part!r}, flag={flag!r})
            print("held", flush=True)
            time.sleep(120)
        """)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_second_holder_is_refused_naming_the_first(tmp_path, holder):
    out = tmp_path / "out"
    first = holder(out)
    with pytest.raises(ConflictError) as info:
        lock.hold(out)
    message = str(info.value)
    assert message.startswith(f"--output {out.absolute()} is in use by another run (pid {first.pid} on "
                              f"{socket.gethostname()}, started 20")
    assert "wait for it to end or stop it" in message
    record = json.loads((out / lock.LOCK_NAME).read_text())
    assert record["pid"] == first.pid and record["host"] == socket.gethostname()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, holder):
    out = tmp_path / "out"
    first = holder(out)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / lock.LOCK_NAME).exists()  # the file stays; the kernel released the flock
    lock.hold(out)
    try:
        assert json.loads((out / lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release_all()
    assert not (out / lock.LOCK_NAME).exists()


def test_same_process_holds_again_and_release_removes_the_folder_it_made(tmp_path):
    out = tmp_path / "new"
    first = lock.hold(out, "bear")
    assert lock.hold(out, "bear") is first
    other = lock.hold(out, "tennis")  # another part of the same folder
    assert other is not first and lock.other_entries(out) == []
    lock.release_all()
    assert not out.exists()


def test_parts_of_a_folder_are_locked_apart(tmp_path, holder):
    out = tmp_path / "results"
    holder(out, "bear")
    lock.hold(out, "tennis")
    lock.release_all()
    with pytest.raises(ConflictError, match="the results of bear"):
        lock.hold(out, "bear")


def test_second_evaluate_on_the_same_output_stops_at_once(tmp_path, holder, capsys, monkeypatch):
    from atnet_jax import evaluate

    out = tmp_path / "eval"
    first = holder(out)
    root = tmp_path / "davis"
    (root / "JPEGImages" / "480p").mkdir(parents=True)
    monkeypatch.setattr(cli, "load_checkpoint", lambda *a, **k: pytest.fail("weights read before the lock"))
    assert evaluate.main(["--input", str(root), "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--output {out.absolute()} is in use by another run (pid {first.pid}" in err[0]


def test_second_infer_of_the_same_sequence_stops_before_computing(tmp_path, holder, capsys, monkeypatch):
    from test_bad_inputs import _frames_folder, _scribble_file

    from atnet_jax import infer

    _frames_folder(tmp_path / "video")
    out = tmp_path / "results"
    first = holder(out, "video")
    monkeypatch.setattr(cli, "load_checkpoint", lambda *a, **k: pytest.fail("weights read before the lock"))
    argv = ["--input", str(tmp_path / "video"), "--scribbles", str(_scribble_file(tmp_path / "s.json")),
            "--output", str(out), "--overlay", "none"]
    assert infer.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"(the results of video) is in use by another run (pid {first.pid}" in err[0]


def test_second_studio_on_a_workspace_and_second_training_stop_at_once(tmp_path, holder, capsys, monkeypatch):
    from atnet_jax import train
    from atnet_jax.studio.__main__ import main as studio

    monkeypatch.setattr(cli, "load_checkpoint", lambda *a, **k: pytest.fail("weights read before the lock"))
    workspace = tmp_path / "ws"
    first = holder(workspace, flag="--workspace")
    assert studio(["--workspace", str(workspace), "--no-browser", "--port", "0"]) == 2
    assert f"--workspace {workspace.absolute()} is in use by another run (pid {first.pid}" in capsys.readouterr().err
    run = tmp_path / "run"
    first = holder(run / "anet", flag="--workdir")
    assert train.main(["--config", str(ROOT / "experiments" / "configs" / "tiny.py"), "--workdir", str(run),
                       "--stage", "anet", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"--workdir {(run / 'anet').absolute()} is in use by another run (pid {first.pid}" in err[-1]


def test_release_removes_the_parent_folders_the_lock_made(tmp_path):
    lock.hold(tmp_path / "runs" / "tiny" / "anet", flag="--workdir")
    lock.release_all()
    assert list(tmp_path.iterdir()) == []
