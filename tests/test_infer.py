"""``python -m atnet_jax.infer`` on a generated DAVIS-format folder: outputs, refusals, clear errors."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from atnet_jax import infer
from atnet_jax.checkpointing import save_weights

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
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "s.json", 1, sequence="bear")], out), "bear"),
    ]
    (tmp_path / "bad.json").write_text("{not json")
    cases.append((1, _args(weights[0], davis_root, [tmp_path / "bad.json"], out), "bad.json"))
    for code, argv, needle in cases:
        assert infer.main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_real_davis_mini_sequences(tmp_path, weights):
    from conftest import shared_path

    from atnet_jax.data.davis import DavisFolder, read_mask

    root = shared_path("data", "davis_mini")
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
    monkeypatch.setattr(infer, "DEFAULT_CHECKPOINT", tmp_path / "absent")
    assert infer.main(["--output", str(tmp_path / "demo2")]) == 2
    assert "demo weights" in _one_line_error(capsys)
    assert not (tmp_path / "demo2").exists()


def test_demo_two_rounds_and_its_replay_command(tmp_path, weights, capsys, monkeypatch):
    """The demo with the tiny test weights: two rounds with J, masks, overlays, overview; the command it
    prints reproduces its masks from the files it wrote."""
    import shlex

    from atnet_jax.data.davis import read_mask

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(infer, "DEMO_FRAMES", 6)  # a shorter video, same code
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
    assert infer.main(["--checkpoint", str(weights[0]), "--overwrite", "--overlay", "none"]) == 0
    assert not (out / "shapes_overlay").exists()
