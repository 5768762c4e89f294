"""``python -m atnet_jax.infer`` on a generated DAVIS-format folder: outputs, refusals, clear errors."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from atnet_jax import demo, infer
from atnet_jax.io import export
from atnet_jax.io.weights import save_weights

T, H, W = 5, 60, 90


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    frames = root / "JPEGImages" / "480p" / "toy"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(T):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    return root


def _scribbles(path, frame: int, object_ids=(1, 2), sequence: str = "toy", num_frames: int = T):
    per_frame = [[] for _ in range(num_frames)]
    for k in object_ids:
        y = 0.25 + 0.2 * k
        per_frame[frame].append({"path": [[0.2, y], [0.5, y], [0.7, y + 0.05]], "object_id": k,
                                 "start_time": 0.0, "end_time": 1.0})
    path.write_text(json.dumps({"scribbles": per_frame, "sequence": sequence}))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_config, tiny_variables):
    root = tmp_path_factory.mktemp("weights")
    return (save_weights(root / "tiny", tiny_variables, tiny_config),
            save_weights(root / "anet_only", {"anet": tiny_variables["anet"]}, tiny_config))


def _args(weights_dir, root, scribbles, out, *extra):
    return ["--checkpoint", str(weights_dir), "--input", str(root), "--sequence", "toy",
            "--scribbles", *map(str, scribbles), "--output", str(out), *extra]


def test_two_rounds_write_palette_masks_and_overlays(tmp_path, davis_root, weights, capsys):
    rounds = [_scribbles(tmp_path / "r1.json", 2), _scribbles(tmp_path / "r2.json", 4)]
    out = tmp_path / "out"
    assert infer.main(_args(weights[0], davis_root, rounds, out, "--overlay", "images")) == 0
    log = capsys.readouterr().out
    assert "round 2" in log and str(out / "toy") in log
    pngs = sorted((out / "toy").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(T)]
    with Image.open(pngs[0]) as im:
        assert im.mode == "P" and im.size == (W, H)
        assert set(np.unique(np.asarray(im))) <= {0, 1, 2}
    assert len(list((out / "toy_overlay").glob("*.jpg"))) == T
    # Existing results are kept unless --overwrite.
    before = pngs[0].read_bytes()
    assert infer.main(_args(weights[0], davis_root, rounds, out)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert pngs[0].read_bytes() == before
    assert infer.main(_args(weights[0], davis_root, rounds[:1], out, "--overwrite", "--overlay", "none")) == 0


def test_overlay_video(tmp_path, davis_root, weights):
    out = tmp_path / "out"
    assert infer.main(_args(weights[0], davis_root, [_scribbles(tmp_path / "r1.json", 0)], out)) == 0
    assert b"avc1" in (out / "toy_overlay.mp4").read_bytes()[:4096]  # H.264, its index first (faststart)
    video = cv2.VideoCapture(str(out / "toy_overlay.mp4"))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == T


def test_bad_inputs_get_one_line_errors(tmp_path, davis_root, weights, capsys):
    good = _scribbles(tmp_path / "good.json", 1)
    out = tmp_path / "out"
    cases = [
        (2, _args(tmp_path / "missing", davis_root, [good], out), "does not exist"),
        (1, _args(weights[1], davis_root, [good], out), "tnet"),
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "o.json", 1, (1, 3))], out, "--objects", "2"),
         "object"),
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "f.json", 1, num_frames=T + 3)], out), "frame"),
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "g.json", 1, num_frames=T - 1)], out),
         f"{T - 1} frames of scribbles, but the video has {T} frames"),
    ]
    (tmp_path / "bad.json").write_text("{not json")
    cases.append((1, _args(weights[0], davis_root, [tmp_path / "bad.json"], out), "bad.json"))
    for code, argv, needle in cases:
        assert infer.main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    # A file that names another sequence is used, with a one-line warning.
    other = _scribbles(tmp_path / "s.json", 1, sequence="bear")
    assert infer.main(_args(weights[0], davis_root, [other], tmp_path / "o2", "--overlay", "none")) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [f"python -m atnet_jax.infer: warning: {other}: the scribbles are for sequence 'bear', "
                      "used for 'toy'"], warned


def test_real_davis_mini_sequences(tmp_path, weights):
    from conftest import data_path

    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.masks import read_mask

    root = data_path("davis_mini")
    # tennis: the real human scribbles, two objects.
    out = tmp_path / "out"
    scribbles = root / "Scribbles" / "tennis" / "001.json"
    args = ["--checkpoint", str(weights[0]), "--input", str(root), "--scribbles", str(scribbles),
            "--output", str(out), "--overlay", "none"]
    assert infer.main([*args[:4], "--sequence", "tennis", *args[4:]]) == 0
    assert read_mask(out / "tennis" / "00001.png").shape == (480, 854)
    # car-shadow: the whole 40-frame sequence, a stroke through the object of frame 20.
    gt = read_mask(root / "Annotations" / "480p" / "car-shadow" / "00020.png")
    ys, xs = np.nonzero(gt)
    cy, cx = ys.mean() / gt.shape[0], xs.mean() / gt.shape[1]
    frames = len(DavisFolder(root).frame_paths("car-shadow"))
    per_frame = [[] for _ in range(frames)]
    per_frame[20] = [{"path": [[cx - 0.05, cy], [cx + 0.05, cy]], "object_id": 1}]
    stroke = tmp_path / "car.json"
    stroke.write_text(json.dumps({"scribbles": per_frame, "sequence": "car-shadow"}))
    args[5] = str(stroke)
    assert infer.main([*args[:4], "--sequence", "car-shadow", *args[4:]]) == 0
    assert len(list((out / "car-shadow").glob("*.png"))) == frames == 40


def test_corrupt_and_mismatched_frames_are_named(tmp_path, weights, capsys):
    root = tmp_path / "davis"
    frames = root / "JPEGImages" / "480p" / "toy"
    frames.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), np.zeros((H, W, 3), np.uint8))
    scribbles = _scribbles(tmp_path / "s.json", 0, num_frames=3)
    (frames / "00001.jpg").write_bytes(b"not a jpeg")
    assert infer.main(_args(weights[0], root, [scribbles], tmp_path / "o")) == 1
    assert "00001.jpg" in capsys.readouterr().err
    cv2.imwrite(str(frames / "00001.jpg"), np.zeros((H + 2, W, 3), np.uint8))
    assert infer.main(_args(weights[0], root, [scribbles], tmp_path / "o")) == 1
    assert "00001.jpg" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    """The error line on stderr, checking that it is the only line besides progress bars."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("python -m atnet_jax.infer: error: "), err
    return lines[0]


def test_bad_input_tour(tmp_path, davis_root, weights, capsys):
    """Each bad input gets one line naming the problem and exit code 2 (usage) or 1 (contents)."""
    good = _scribbles(tmp_path / "good.json", 1)
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    not_weights = tmp_path / "not_weights"
    not_weights.mkdir()
    (not_weights / "notes.txt").write_text("hello")
    pth = tmp_path / "ATNet-checkpoint.pth"
    pth.write_bytes(b"\x80\x02")
    cases = [
        # a path that does not exist
        (2, _args(weights[0], tmp_path / "nowhere", [good], out), "--input"),
        (2, _args(weights[0], davis_root, [tmp_path / "missing.json"], out), "--scribbles"),
        # a folder without frames; a DAVIS sequence that is not there; a DAVIS root without --sequence
        (2, [*_args(weights[0], empty, [good], out)[:4], "--scribbles", str(good), "--output", str(out)],
         "no frames"),
        (2, _args(weights[0], davis_root, [good], out)[:5] + ["nosuch", "--scribbles", str(good), "--output",
                                                               str(out)], "nosuch"),
        (2, ["--checkpoint", str(weights[0]), "--input", str(davis_root), "--scribbles", str(good), "--output",
             str(out)], "--sequence"),
        # checkpoints of the wrong kind: A-Net only, not a checkpoint, a PyTorch file
        (1, _args(weights[1], davis_root, [good], out), "tnet"),
        (1, _args(not_weights, davis_root, [good], out), "not an atnet_jax weights checkpoint"),
        (2, _args(pth, davis_root, [good], out), "python -m atnet_jax.convert"),
        # --input without --scribbles or --output; demo-only mistakes
        (2, ["--checkpoint", str(weights[0]), "--input", str(davis_root), "--sequence", "toy", "--output", str(out)],
         "--scribbles"),
        (2, ["--checkpoint", str(weights[0]), "--input", str(davis_root), "--sequence", "toy", "--scribbles",
             str(good)], "--output"),
        (2, ["--scribbles", str(good)], "needs --input"),
    ]
    for code, argv, needle in cases:
        assert infer.main(argv) == code, argv
        err = _one_line_error(capsys)
        assert needle in err, err
    assert not out.exists()


def test_corrupt_frame_is_one_line(tmp_path, weights, capsys):
    root = tmp_path / "davis"
    frames = root / "JPEGImages" / "480p" / "toy"
    frames.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), np.zeros((H, W, 3), np.uint8))
    (frames / "00000.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    scribbles = _scribbles(tmp_path / "s.json", 0, num_frames=3)
    assert infer.main(_args(weights[0], root, [scribbles], tmp_path / "o")) == 1
    assert "00000.jpg" in _one_line_error(capsys)


def test_errors_from_the_command_line_have_no_traceback(tmp_path, weights):
    """As a user sees it: a subprocess, stderr one line, no traceback unless --debug."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "atnet_jax.infer", "--checkpoint", str(tmp_path), "--input", str(tmp_path),
            "--scribbles", str(tmp_path / "x.json"), "--output", str(tmp_path / "o")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m atnet_jax.infer: error: --scribbles {tmp_path / 'x.json'} does not exist"]
    result = subprocess.run([*argv, "--debug"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_demo_refuses_existing_results_and_missing_weights(tmp_path, weights, capsys, monkeypatch):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "shapes").mkdir()
    assert infer.main(["--checkpoint", str(weights[0]), "--output", str(out)]) == 2
    assert "--overwrite" in _one_line_error(capsys)
    monkeypatch.setattr(demo, "DEFAULT_CHECKPOINT", tmp_path / "absent")
    assert infer.main(["--output", str(tmp_path / "demo2")]) == 2
    assert "demo weights" in _one_line_error(capsys)
    assert not (tmp_path / "demo2").exists()
    # a failure during the run leaves no output folder and no staging folder behind
    assert infer.main(["--checkpoint", str(out / "shapes"), "--output", str(tmp_path / "demo3")]) == 1
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_demo_two_rounds_and_its_replay_command(tmp_path, weights, capsys, monkeypatch):
    """The demo with the tiny test weights: two rounds with J, masks, overlays, overview; the command it
    prints reproduces its masks from the files it wrote."""
    import shlex

    from atnet_jax.io.masks import read_mask

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "DEMO_FRAMES", 6)  # a shorter video, same code
    assert infer.main(["--checkpoint", str(weights[0])]) == 0
    log = capsys.readouterr().out
    out = tmp_path / "atnet_demo"
    assert len(re.findall(r"round [12]: .* J = [0-9.]+ ", log)) == 2, log
    assert len(list((out / "shapes").glob("*.png"))) == 6 and len(list((out / "shapes_overlay").glob("*.jpg"))) == 6
    assert (out / "overview.jpg").is_file() and (out / "round2.json").is_file()
    assert (out / "data" / "Annotations" / "480p" / "shapes" / "00005.png").is_file()
    replay = shlex.split(log.strip().splitlines()[-1].split("from the files: ")[1])
    assert replay[:3] == ["python", "-m", "atnet_jax.infer"]
    assert infer.main(replay[3:]) == 0
    for t in range(6):
        np.testing.assert_array_equal(read_mask(tmp_path / "results" / "shapes" / f"{t:05d}.png"),
                                      read_mask(out / "shapes" / f"{t:05d}.png"))
    assert infer.main(["--checkpoint", str(weights[0])]) == 2  # results exist
    capsys.readouterr()
    # A shorter video without overlays replaces the whole earlier run (no stale masks, frames or overlays).
    (out / "mine.txt").write_text("not the demo's")
    monkeypatch.setattr(demo, "DEMO_FRAMES", 4)
    assert infer.main(["--checkpoint", str(weights[0]), "--overwrite", "--overlay", "none"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["data", "mine.txt", "overview.jpg", "round2.json", "shapes"]
    assert len(list((out / "shapes").iterdir())) == 4
    assert len(list((out / "data" / "JPEGImages" / "480p" / "shapes").iterdir())) == 4


# ----------------------------------------------------------------------------------------------- hardening


def _stroke(k: int, y: float, x0: float = 0.2, x1: float = 0.7) -> dict:
    return {"path": [[x0, y], [(x0 + x1) / 2, y + 0.03], [x1, y]], "object_id": k, "start_time": 0.0,
            "end_time": 1.0}


def _write_strokes(path, strokes_per_frame: dict[int, list[dict]], num_frames: int = T, sequence: str = "toy"):
    frames = [strokes_per_frame.get(t, []) for t in range(num_frames)]
    path.write_text(json.dumps({"scribbles": frames, "sequence": sequence}))
    return path


def _davis(root, num_frames: int, seed: int = 0, name: str = "toy"):
    folder = root / "JPEGImages" / "480p" / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for t in range(num_frames):
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    return root


def _hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_two_scribble_files_on_the_same_frame_give_the_maps_of_both(tmp_path, davis_root, weights, monkeypatch):
    """Round 2 on an already scribbled frame sees every stroke placed there so far (the released code
    rasterises ``scribbles[frame]`` after davisinteractive's ``fuse_scribbles``), not round 2's alone."""
    from atnet_jax.inference import session as session_module
    from atnet_jax.interaction.scribbles import interaction_maps
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.weights import load_weights
    from atnet_jax.models.predictor import ATNetPredictor

    first = [_stroke(1, 0.3), _stroke(2, 0.7)]
    second = [_stroke(1, 0.5, 0.1, 0.4), _stroke(0, 0.9, 0.5, 0.9)]
    rounds = [_write_strokes(tmp_path / "r1.json", {2: first}), _write_strokes(tmp_path / "r2.json", {2: second})]
    recorded = []

    class Recorded(session_module.Session):
        def close(self):  # the session's stores are removed at close: keep what the test compares
            recorded.append(np.stack([np.asarray(self.probabilities[t]) for t in range(self.num_frames)]))
            super().close()

    monkeypatch.setattr(session_module, "Session", Recorded)
    assert infer.main(_args(weights[0], davis_root, rounds, tmp_path / "out", "--overlay", "none")) == 0
    (ran,) = recorded
    monkeypatch.undo()

    variables, config = load_weights(weights[0])
    frames = DavisFolder(davis_root).frames("toy")

    def by_hand(round2_strokes):
        session = session_module.Session(frames, ATNetPredictor(variables, config), 2)
        session.interact_maps(2, *interaction_maps(first, H, W, 2))
        prev = session.labels[2].copy()
        session.interact_maps(2, *interaction_maps(round2_strokes, H, W, 2, prev))
        result = (np.stack([np.asarray(session.probabilities[t]) for t in range(T)]),
                  np.stack([np.asarray(session.labels[t]) for t in range(T)]))
        session.close()
        return result

    (union, union_labels), (alone, _) = by_hand(first + second), by_hand(second)
    assert np.abs(union - alone).max() > 1e-3
    np.testing.assert_allclose(ran, union, atol=1e-6)
    for t in range(T):
        np.testing.assert_array_equal(read_mask_png(tmp_path / "out" / "toy" / f"{t:05d}.png"), union_labels[t])


def read_mask_png(path):
    from atnet_jax.io.masks import read_mask

    return read_mask(path)


def test_overwrite_with_a_shorter_video_replaces_the_results_as_a_whole(tmp_path, weights, capsys):
    long_root, short_root = _davis(tmp_path / "long", 6, seed=1), _davis(tmp_path / "short", 3, seed=2)
    out = tmp_path / "out"
    scribbles = _write_strokes(tmp_path / "s6.json", {0: [_stroke(1, 0.4)]}, num_frames=6)
    assert infer.main(_args(weights[0], long_root, [scribbles], out)) == 0
    assert len(list((out / "toy").iterdir())) == 6 and (out / "toy_overlay.mp4").is_file()
    (out / "notes.txt").write_text("mine")  # not a result of toy: stays
    scribbles = _write_strokes(tmp_path / "s3.json", {1: [_stroke(1, 0.4)]}, num_frames=3)
    assert infer.main(_args(weights[0], short_root, [scribbles], out, "--overwrite", "--overlay", "images")) == 0
    assert sorted(p.name for p in (out / "toy").iterdir()) == [f"{t:05d}.png" for t in range(3)]
    assert sorted(p.name for p in (out / "toy_overlay").iterdir()) == [f"{t:05d}.jpg" for t in range(3)]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "toy", "toy_overlay"]  # no old video
    assert infer.main(_args(weights[0], short_root, [scribbles], out, "--overwrite", "--overlay", "none")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "toy"]
    capsys.readouterr()


def test_a_failed_write_keeps_the_earlier_results_and_leaves_no_staging_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    frames = np.zeros((4, 8, 12, 3), np.uint8)
    old = np.ones((4, 8, 12), np.uint8)
    written = export.write_sequence_results(out, "seq", frames, old, overlay="images")
    assert written == [out / "seq", out / "seq_overlay"]
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    calls = []

    def failing(path, labels, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, labels, **kwargs)

    real = export.write_mask
    monkeypatch.setattr(export, "write_mask", failing)
    with pytest.raises(OSError, match="disk full"):
        export.write_sequence_results(out, "seq", frames[:2], old[:2] * 0, overlay="video", overwrite=True)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert _hidden(out) == []
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.write_sequence_results(out, "seq", frames, old)


def test_outputs_are_checked_before_any_work(tmp_path, davis_root, weights, capsys, monkeypatch):
    """A file, a path below a file or a read-only folder as --output: exit 2 and a line naming --output,
    before frames are read or networks run."""
    import os

    from atnet_jax.io import davis

    scribbles = _scribbles(tmp_path / "s.json", 1)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    real_access = os.access
    # root may write anywhere: play a user for whom read_only is read-only
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(read_only)
                        else real_access(p, mode, **kw))
    monkeypatch.setattr(davis, "open_frames", lambda *a, **k: pytest.fail("frames read before the check"))
    for out, needle in ((a_file, "is a file"), (a_file / "sub", "is a file"), (read_only, "not writable"),
                        (read_only / "new", "not writable")):
        assert infer.main(_args(weights[0], davis_root, [scribbles], out)) == 2
        err = _one_line_error(capsys)
        assert f"--output {out}" in err and needle in err, err
    assert infer.main(["--checkpoint", str(weights[0]), "--output", str(a_file)]) == 2  # the demo too
    assert "--output" in _one_line_error(capsys)
    read_only.chmod(0o755)


def test_objects_without_a_positive_stroke_are_an_error_unless_objects_says_so(tmp_path, davis_root, weights,
                                                                                capsys):
    only_5 = _write_strokes(tmp_path / "five.json", {1: [_stroke(5, 0.4)]})
    out = tmp_path / "out"
    assert infer.main(_args(weights[0], davis_root, [only_5], out)) == 1
    err = _one_line_error(capsys)
    assert "object(s) 1, 2, 3, 4 get no stroke" in err and "--objects 5" in err, err
    assert not out.exists()
    # a background stroke is no positive stroke
    bg = _write_strokes(tmp_path / "bg.json", {1: [_stroke(2, 0.4), _stroke(0, 0.6)]})
    assert infer.main(_args(weights[0], davis_root, [bg], out)) == 1
    assert "object(s) 1 get no stroke" in _one_line_error(capsys)
    # a stroke for object 1 in a later round counts
    later = _write_strokes(tmp_path / "later.json", {3: [_stroke(1, 0.4)]})
    assert infer.main(_args(weights[0], davis_root, [bg, later], out, "--overlay", "none")) == 0
    assert "warning" not in capsys.readouterr().err
    # --objects says so explicitly: a warning names them, and object 5 gets its id
    assert infer.main(_args(weights[0], davis_root, [only_5], out, "--objects", "5", "--overlay", "none",
                            "--overwrite")) == 0
    err = capsys.readouterr().err
    assert "warning: object(s) 1, 2, 3, 4 of --objects 5 get no stroke" in err, err


def test_count_objects_rule():
    def count(ids, objects):
        return infer._report_objects(set(ids) - {0}, objects, "scribble", "x")

    assert count({1, 2}, None) == 2
    assert count({2, 1, 0}, None) == 2
    assert count({1}, 3) == 3  # warns
    with pytest.raises(ValueError, match=r"object\(s\) 2 get no stroke"):
        count({1, 3}, None)
    with pytest.raises(ValueError, match="no object"):
        count({0}, None)


def test_results_get_the_usual_modes_under_the_umask(tmp_path):
    import os
    import stat

    frames = np.zeros((2, 8, 16, 3), np.uint8)
    labels = np.ones((2, 8, 16), np.uint8)
    old = os.umask(0o022)
    try:
        export.write_sequence_results(tmp_path / "a", "seq", frames, labels, overlay="video")
        os.umask(0o027)
        export.write_sequence_results(tmp_path / "b", "seq", frames, labels, overlay="images")
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    assert modes == {"a": 0o755, "a/seq": 0o755, "a/seq/00000.png": 0o644, "a/seq/00001.png": 0o644,
                     "a/seq_overlay.mp4": 0o644,
                     "b": 0o750, "b/seq": 0o750, "b/seq/00000.png": 0o640, "b/seq/00001.png": 0o640,
                     "b/seq_overlay": 0o750, "b/seq_overlay/00000.jpg": 0o640, "b/seq_overlay/00001.jpg": 0o640}


def test_click_files_run_rounds_and_equal_the_same_clicks_as_one_point_scribbles(tmp_path, davis_root, weights,
                                                                                  capsys):
    """--clicks: each clicked frame is a round; a click is a one-point stroke, so the masks equal those of the
    same points given as a scribble file."""
    clicks = {"clicks": [{"frame": 1, "x": 0.3, "y": 0.45, "object_id": 1},
                         {"frame": 1, "x": 0.6, "y": 0.65, "object_id": 2},
                         {"frame": 3, "x": 0.1, "y": 0.1, "object_id": 0},
                         {"frame": 1, "x": 0.35, "y": 0.5, "object_id": 1}]}
    (tmp_path / "clicks.json").write_text(json.dumps(clicks))
    strokes = [[] for _ in range(T)]
    for c in clicks["clicks"]:
        strokes[c["frame"]].append({"path": [[c["x"], c["y"]]], "object_id": c["object_id"],
                                    "start_time": 0.0, "end_time": 0.0})
    (tmp_path / "dots.json").write_text(json.dumps({"scribbles": strokes}))
    base = ["--checkpoint", str(weights[0]), "--input", str(davis_root), "--sequence", "toy", "--overlay", "none"]
    assert infer.main([*base, "--clicks", str(tmp_path / "clicks.json"), "--output", str(tmp_path / "a")]) == 0
    log = capsys.readouterr().out
    assert "1 click file(s)" in log and "round 1: clicks.json, frame 1" in log
    assert "round 2: clicks.json, frame 3" in log
    assert infer.main([*base, "--scribbles", str(tmp_path / "dots.json"), "--output", str(tmp_path / "b")]) == 0
    for t in range(T):
        a = np.asarray(Image.open(tmp_path / "a" / "toy" / f"{t:05d}.png"))
        np.testing.assert_array_equal(a, np.asarray(Image.open(tmp_path / "b" / "toy" / f"{t:05d}.png")))
    capsys.readouterr()
    # A bad click names the file, the click and the field; clicks and scribbles together are a usage error.
    clicks["clicks"][2]["x"] = 1.5
    (tmp_path / "bad.json").write_text(json.dumps(clicks))
    assert infer.main([*base, "--clicks", str(tmp_path / "bad.json"), "--output", str(tmp_path / "c")]) == 1
    err = _one_line_error(capsys)
    assert "bad.json: click 2: x must be a fraction of the frame in [0, 1], got 1.5" in err, err
    assert infer.main([*base, "--clicks", str(tmp_path / "clicks.json"), "--scribbles", str(tmp_path / "dots.json"),
                       "--output", str(tmp_path / "d")]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
