"""The README's exit codes hold for every command: a table of cases per command (argv -> exit code and the first
line of stderr), run in-process through each command's ``main(argv)`` (fd-level capture, so that a native
library's own lines would show). Ctrl-C (exit 130) needs real processes and real signals: tests/test_interrupt.py.

``python tests/test_exit_codes.py`` prints the table with what the code on ``PYTHONPATH`` answers.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROG = "python -m atnet_jax."
TINY = str(ROOT / "experiments" / "configs" / "tiny.py")
MODULES = {"infer": "atnet_jax.infer", "evaluate": "atnet_jax.evaluate", "train": "atnet_jax.train",
           "convert": "atnet_jax.convert", "synthetic": "atnet_jax.data.synthetic.__main__",
           "studio": "atnet_jax.studio.__main__"}
PROGS = {"synthetic": "data.synthetic", "studio": "studio"}

# (id, command, argv with {placeholders} from the inputs fixture, exit code, pattern of stderr's first line)
CASES = [
    ("infer-missing-input", "infer", "--input {missing} --scribbles {scribbles} --output {out}", 2,
     r"--input \S+ does not exist"),
    ("infer-scribbles-folder", "infer", "--input {frames} --scribbles {tmp} --output {out}", 2,
     r"--scribbles \S+ is a folder, expected a \.json file"),
    ("infer-output-is-a-file", "infer", "--input {frames} --scribbles {scribbles} --output {file}", 2,
     r"--output \S+ is a file, expected a folder"),
    ("infer-objects-0", "infer", "--input {frames} --scribbles {scribbles} --output {out} --objects 0", 2,
     r"argument --objects: must be at least 1, got 0"),
    ("infer-video-with-sequence", "infer", "--input {fake_video} --sequence bear --scribbles {scribbles} "
     "--output {out}", 2, r"--sequence bear names a sequence of a DAVIS folder, but --input \S+ is a file"),
    ("infer-unknown-flag", "infer", "--input {frames} --frobnicate", 2, r"unrecognized arguments: --frobnicate"),
    ("infer-fake-video", "infer", "--input {fake_video} --scribbles {scribbles} --output {out}", 1,
     r"cannot open video \S+ \(not a video, or an unknown container or codec\)$"),
    ("infer-bad-scribble-json", "infer", "--input {frames} --scribbles {bad_json} --output {out}", 1,
     r"\S+bad\.json: not valid JSON"),
    ("infer-damaged-weights", "infer", "--checkpoint {damaged} --input {frames} --scribbles {scribbles} "
     "--output {out}", 1, r"--checkpoint \S+ is damaged: a file of its variables/ folder is missing, truncated"),
    ("infer-training-checkpoint", "infer", "--checkpoint {step} --input {frames} --scribbles {scribbles} "
     "--output {out}", 1, r"is not an atnet_jax weights checkpoint .*checkpoint 200 of a training run"),
    ("infer-locked-output", "infer", "--input {frames} --scribbles {scribbles} --output {locked}", 2,
     r"--output \S+ \(the results of frames\) is in use by another run \(pid \d+ on "),
    ("evaluate-time-0", "evaluate", "--input {davis} --output {out} --time-per-object 0", 2,
     r"argument --time-per-object: must be a number greater than 0, got 0"),
    ("evaluate-time-negative", "evaluate", "--input {davis} --output {out} --time-per-object -5", 2,
     r"argument --time-per-object: must be a number greater than 0, got -5"),
    ("evaluate-min-nodes-0", "evaluate", "--input {davis} --output {out} --min-nb-nodes 0", 2,
     r"argument --min-nb-nodes: must be at least 1, got 0"),
    ("evaluate-missing-input", "evaluate", "--input {missing} --output {out}", 2, r"--input \S+ does not exist"),
    ("evaluate-input-is-a-file", "evaluate", "--input {file} --output {out}", 2,
     r"--input \S+ is a file, expected a DAVIS folder"),
    ("evaluate-output-below-a-file", "evaluate", "--input {davis} --output {file}/sub", 2,
     r"--output \S+ cannot be created: \S+ is a file"),
    ("evaluate-unknown-sequence", "evaluate", "--input {davis} --output {out} --sequences nope", 2, r"nope"),
    ("evaluate-damaged-weights", "evaluate", "--checkpoint {damaged} --input {davis} --output {out}", 1,
     r"--checkpoint \S+ is damaged"),
    ("evaluate-locked-output", "evaluate", "--input {davis} --output {locked} --resume", 2,
     r"--output \S+ is in use by another run \(pid \d+ on "),
    ("evaluate-merge-with-input", "evaluate", "--merge {tmp} --input {davis} --output {out}", 2,
     r"--merge takes the shards' folders and --output"),
    ("train-missing-config", "train", "--config {missing} --workdir {out} --stage anet", 2, r"--config \S+"),
    ("train-max-steps-0", "train", "--config {tiny} --workdir {out} --stage anet --max-steps 0", 2,
     r"argument --max-steps: must be at least 1, got 0"),
    ("train-batch-size-0", "train", "--config {tiny} --workdir {out} --stage anet --set anet.batch_size=0", 2,
     r"anet\.batch_size must be at least 1, got 0"),
    ("train-unknown-key", "train", "--config {tiny} --workdir {out} --stage anet --set anet.nope=1", 2,
     r"unknown config key 'anet\.nope'"),
    ("train-process-id-alone", "train", "--config {tiny} --workdir {out} --stage anet --process-id 0", 2,
     r"--process-id need --distributed"),
    ("train-workdir-below-a-file", "train", "--config {tiny} --workdir {file}/run --stage anet", 2,
     r"--workdir \S+ cannot be created: \S+ is a file"),
    ("train-missing-synthetic", "train", "--config {tiny} --workdir {out} --stage anet --no-progress "
     "--set data.synthetic={missing}", 2,
     r"the synthetic videos of data\.synthetic=\S+ are missing: make them with python -m atnet_jax\.data\.synthetic"),
    ("train-locked-workdir", "train", "--config {tiny} --workdir {locked_run} --stage anet --no-progress", 2,
     r"--workdir \S+ is in use by another run \(pid \d+ on "),
    ("convert-missing-input", "convert", "--input {missing}.npz --output {out}", 2, r"--input \S+ does not exist"),
    ("convert-input-folder", "convert", "--input {tmp} --output {out}", 2, r"--input \S+ is a folder"),
    ("convert-input-suffix", "convert", "--input {file} --output {out}", 2, r"expected a PyTorch \.pth/\.pt file"),
    ("convert-not-an-npz", "convert", "--input {garbage_npz} --output {out}", 1, r"is not a \.npz archive"),
    ("convert-output-holds-files", "convert", "--input {npz} --output {full}", 2,
     r"--output \S+ already holds files \(pass --overwrite"),
    ("convert-config-and-model", "convert", "--input {npz} --output {out} --config {tiny} --model tiny", 2,
     r"pass --config FILE or --model, not both"),
    ("convert-done", "convert", "--input {npz} --output {out}", 0, None),
    ("synthetic-videos-0", "synthetic", "--output {out} --videos 0", 2, r"argument --videos: must be at least 1"),
    ("synthetic-huge-frames", "synthetic", "--output {out} --videos 1 --height 160000", 2,
     r"argument --height: must be from 16 to 4096 pixels, got 160000"),
    ("synthetic-width-not-16", "synthetic", "--output {out} --videos 1 --width 100", 2,
     r"argument --width: must be a multiple of 16, got 100"),
    ("synthetic-output-is-a-file", "synthetic", "--output {file} --videos 1", 2, r"--output \S+ is a file"),
    ("synthetic-output-holds-files", "synthetic", "--output {full} --videos 1", 2, r"already holds files"),
    ("synthetic-done", "synthetic", "--output {out} --videos 1 --frames 2 --height 32 --width 48", 0, None),
    ("studio-port", "studio", "--port 70000", 2, r"argument --port: must be from 0 to 65535, got 70000"),
    ("studio-video-with-sequence", "studio", "--input {fake_video} --sequence bear --port 0 --no-browser", 2,
     r"--sequence bear names a sequence of a DAVIS folder"),
    ("studio-truncated-frame", "studio", "--input {truncated} --workspace {out} --port 0 --no-browser", 1,
     r"frame \S+00000\.jpg is truncated or corrupt"),
    ("studio-locked-workspace", "studio", "--workspace {locked} --port 0 --no-browser", 2,
     r"--workspace \S+ is in use by another run \(pid \d+ on "),
]


def _frames(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for t in range(n):
        paths.append(folder / f"{t:05d}.jpg")
        cv2.imwrite(str(paths[-1]), np.random.default_rng(t).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return paths


def make_inputs(tmp: Path) -> tuple[dict[str, str], list[subprocess.Popen]]:
    """The files the cases name, and the processes holding the locked outputs (kill them when done)."""
    from atnet_jax.demo import DEFAULT_CHECKPOINT
    from atnet_jax.demo import write_demo_video as _write_demo
    from atnet_jax.io.torch_weights import flax_to_torch
    from atnet_jax.io.weights import load_weights

    p = {"tmp": tmp, "missing": tmp / "missing", "tiny": TINY, "frames": tmp / "frames", "file": tmp / "a_file.txt",
         "fake_video": tmp / "fake.mp4", "scribbles": tmp / "s.json", "bad_json": tmp / "bad.json",
         "truncated": tmp / "truncated", "davis": tmp / "davis", "npz": tmp / "w.npz",
         "garbage_npz": tmp / "garbage.npz", "full": tmp / "full", "damaged": tmp / "damaged",
         "step": tmp / "runs" / "anet" / "checkpoints" / "200", "locked": tmp / "locked",
         "locked_run": tmp / "locked_run"}
    _frames(p["frames"])
    first = _frames(p["truncated"])[0]
    first.write_bytes(first.read_bytes()[: first.stat().st_size * 6 // 10])
    p["file"].write_text("x")
    p["fake_video"].write_bytes(b"not a video at all")
    per_frame = [[{"path": [[0.2, 0.5], [0.6, 0.5]], "object_id": 1, "start_time": 0, "end_time": 1}], [], []]
    p["scribbles"].write_text(json.dumps({"scribbles": per_frame}))
    p["bad_json"].write_text("{not json")
    p["garbage_npz"].write_bytes(b"this is not a zip file")
    p["full"].mkdir()
    (p["full"] / "keep.txt").write_text("mine")
    _write_demo(p["davis"], num_frames=3, height=48, width=64)
    variables, _ = load_weights(DEFAULT_CHECKPOINT)
    np.savez(p["npz"], **flax_to_torch(variables))
    import shutil

    shutil.copytree(DEFAULT_CHECKPOINT, p["damaged"])
    biggest = max((f for f in (p["damaged"] / "variables").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    p["step"].mkdir(parents=True)
    (p["step"] / "_CHECKPOINT_METADATA").write_text("{}")
    holders = [_hold(p["locked"], "frames"), _hold(p["locked"]), _hold(p["locked_run"] / "anet")]
    return {k: str(v) for k, v in p.items()}, holders


def _hold(folder: Path, part: str | None = None) -> subprocess.Popen:
    """A process holding ``folder``'s lock (the lock module of this worktree, whatever code is tested)."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from atnet_jax.io.lock import hold
        hold({str(folder)!r}, {part!r})
        print("held", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def first_line(err: str) -> str:
    """The first line of stderr that is not a progress bar."""
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines()]
    return next((line for line in lines if line and "%|" not in line), "")


def run_case(command: str, argv: str, inputs: dict[str, str], out: Path) -> int:
    args = argv.format(out=str(out), **inputs).split()
    try:
        return importlib.import_module(MODULES[command]).main(args)
    except SystemExit as exit_:  # argparse on code that returns no usage code
        return int(exit_.code or 0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    values, holders = make_inputs(tmp_path_factory.mktemp("exit_codes"))
    yield values
    for proc in holders:
        proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("name, command, argv, code, pattern", CASES, ids=[c[0] for c in CASES])
def test_exit_code_and_first_line(name, command, argv, code, pattern, inputs, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written where the tests run from
    got = run_case(command, argv, inputs, tmp_path / "out")
    err = capfd.readouterr().err
    line = first_line(err)
    assert got == code, f"exit {got}, expected {code}: {err[-1500:]}"
    if pattern is None:
        assert "error" not in err, err
        return
    prog = PROG + PROGS.get(command, command)
    assert line.startswith(f"{prog}: error: "), f"first line of stderr: {line!r}"
    assert re.search(pattern, line), f"{line!r} does not match {pattern!r}"
    assert "Traceback" not in err


def run_process(command: str, argv: str, inputs: dict[str, str], out: Path) -> tuple[int, str]:
    """The case as ``python -m <command>`` in a process of its own -> (exit code, stderr)."""
    args = argv.format(out=str(out), **inputs).split()
    module = MODULES[command].removesuffix(".__main__")
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600,
                          cwd=inputs["tmp"])
    return proc.returncode, proc.stderr


def main(argv: list[str]) -> None:
    """Print the table as Markdown for the code on PYTHONPATH: ``--processes`` runs each case as a command of
    its own (else in this process); other arguments are case ids not to run (e.g. ones that would start a
    server that never stops, on code that lets them)."""
    processes = "--processes" in argv
    skip = [a for a in argv if a != "--processes"]
    import contextlib
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inputs, holders = make_inputs(Path(tmp))
        print("| case | exit | first line of stderr |\n|---|---|---|")
        try:
            for i, (name, command, case_argv, _, _) in enumerate(CASES):
                if name in skip:
                    print(f"| {name} | (not run) | |")
                    continue
                out = Path(tmp) / f"out{i}"
                if processes:
                    code, stderr = run_process(command, case_argv, inputs, out)
                    line = first_line(stderr).replace("|", "\\|")
                    print(f"| {name} | {code} | {line[:160]} |", flush=True)
                    continue
                err = io.StringIO()
                r, w = os.pipe()
                saved = os.dup(2)
                os.dup2(w, 2)
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        code = run_case(command, case_argv, inputs, out)
                finally:
                    os.dup2(saved, 2)
                    os.close(w)
                    native = os.read(r, 1 << 20).decode(errors="replace")
                    os.close(r)
                line = first_line(native + err.getvalue()).replace("|", "\\|")
                print(f"| {name} | {code} | {line[:160]} |", flush=True)
        finally:
            for proc in holders:
                proc.kill()
                proc.wait()
                proc.stdout.close()


if __name__ == "__main__":
    main(sys.argv[1:])
