"""Bad inputs that must give a clear, one-line error naming what is wrong (and the exit code of its kind)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from atnet_jax.errors import InputError, WeightsError
from atnet_jax.io.frames import read_frame

H, W = 48, 64


def _jpeg(path, seed: int = 0):
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(path), rgb)
    return path


def _truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def _frames_folder(root, n: int = 3):
    root.mkdir(parents=True, exist_ok=True)
    return [_jpeg(root / f"{t:05d}.jpg", t) for t in range(n)]


def _scribble_file(path, num_frames: int = 3):
    per_frame = [[] for _ in range(num_frames)]
    per_frame[0].append({"path": [[0.2, 0.5], [0.6, 0.5]], "object_id": 1, "start_time": 0.0, "end_time": 1.0})
    path.write_text(json.dumps({"scribbles": per_frame}))
    return path


# ------------------------------------------------------------------------------------------ truncated frames


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    path = _truncate(_jpeg(tmp_path / "00000.jpg"))
    assert cv2.imread(str(path)) is not None  # what OpenCV alone does: grey fill, no error
    with pytest.raises(InputError, match=r"00000\.jpg is truncated"):
        read_frame(path)


def test_truncated_png_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8))
    _truncate(path)
    with pytest.raises(InputError, match=r"f\.png is truncated"):
        read_frame(path)


@pytest.mark.parametrize("tail", [b"\x00" * 300, b"trailing data a camera appended"])
def test_complete_jpeg_with_padding_or_appended_data_decodes_as_cv2_imread(tmp_path, tail):
    path = _jpeg(tmp_path / "f.jpg")
    path.write_bytes(path.read_bytes() + tail)
    expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read_frame(path), expected)


def test_truncated_jpeg_in_infer_exits_1_naming_the_file(tmp_path, capsys):
    from atnet_jax import infer

    frames = _frames_folder(tmp_path / "video")
    _truncate(frames[2])
    code = infer.main(["--input", str(tmp_path / "video"), "--scribbles", str(_scribble_file(tmp_path / "s.json")),
                       "--output", str(tmp_path / "out"), "--overlay", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("python -m atnet_jax.infer: error: frame ")
    assert "00002.jpg is truncated" in err[-1]


def test_truncated_jpeg_in_the_studio_exits_1_naming_the_file(tmp_path, capsys):
    from atnet_jax.studio.__main__ import main

    frames = _frames_folder(tmp_path / "video")
    _truncate(frames[0])
    code = main(["--input", str(tmp_path / "video"), "--workspace", str(tmp_path / "ws"), "--no-browser",
                 "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "00000.jpg is truncated" in err[-1]


def test_truncated_jpeg_in_the_training_sources_names_the_file(tmp_path):
    from atnet_jax.data.sources import DavisVideos

    root = tmp_path / "davis"
    frames = _frames_folder(root / "JPEGImages" / "480p" / "toy")
    masks = root / "Annotations" / "480p" / "toy"
    masks.mkdir(parents=True)
    from atnet_jax.io.masks import write_mask

    for f in frames:
        label = np.zeros((H, W), np.uint8)
        label[10:30, 10:30] = 1
        write_mask(masks / f"{f.stem}.png", label)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("toy\n")
    _truncate(frames[1])
    source = DavisVideos(root)
    source.frame(0, 0)
    with pytest.raises(InputError, match=r"00001\.jpg is truncated"):
        source.frame(0, 1)


def test_truncated_jpeg_in_evaluate_fails_its_sequence_naming_the_file(tmp_path, tiny_config, tiny_variables,
                                                                        capsys):
    from test_evaluate import _make_folder

    from atnet_jax import evaluate
    from atnet_jax.io.weights import save_weights

    weights = save_weights(tmp_path / "w", tiny_variables, tiny_config)
    root = tmp_path / "davis"
    _make_folder(root, "toy", 1, palette=True, scribbles=True)
    _truncate(root / "JPEGImages" / "480p" / "toy" / "00001.jpg")
    code = evaluate.main(["--checkpoint", str(weights), "--input", str(root), "--output", str(tmp_path / "eval"),
                          "--max-rounds", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert code == 1 and "00001.jpg is truncated" in err[-1]


# ------------------------------------------------------------------------------------- out-of-range numbers


def _main(command: str):
    import importlib

    module = {"synthetic": "atnet_jax.data.synthetic.__main__", "studio": "atnet_jax.studio.__main__"}.get(
        command, f"atnet_jax.{command}")
    return importlib.import_module(module).main


TRAIN = ["--config", "experiments/configs/tiny.py", "--workdir", "WORK", "--stage", "anet"]


@pytest.mark.parametrize("command, argv, message", [
    ("evaluate", ["--input", "IN", "--output", "OUT", "--time-per-object", "0"],
     "--time-per-object: must be a number greater than 0, got 0"),
    ("evaluate", ["--input", "IN", "--output", "OUT", "--time-per-object", "-5"],
     "--time-per-object: must be a number greater than 0, got -5"),
    ("evaluate", ["--input", "IN", "--output", "OUT", "--time-per-object", "nan"], "greater than 0, got nan"),
    ("evaluate", ["--input", "IN", "--output", "OUT", "--min-nb-nodes", "0"], "--min-nb-nodes: must be at least 1"),
    ("evaluate", ["--input", "IN", "--output", "OUT", "--max-rounds", "0"], "--max-rounds: must be at least 1"),
    ("evaluate", ["--input", "IN", "--output", "OUT", "--size", "0"], "--size: must be at least 32 pixels"),
    ("infer", ["--input", "IN", "--objects", "0"], "--objects: must be at least 1, got 0"),
    ("infer", ["--input", "IN", "--objects", "two"], "--objects: expected a whole number, got 'two'"),
    ("train", [*TRAIN, "--max-steps", "0"], "--max-steps: must be at least 1"),
    ("train", [*TRAIN, "--heartbeat-timeout", "-1"], "--heartbeat-timeout: must be at least 1"),
    ("train", [*TRAIN, "--distributed", "--num-processes", "0"], "--num-processes: must be at least 1"),
    ("train", [*TRAIN, "--distributed", "--process-id", "-1"], "--process-id: must be at least 0"),
    ("train", [*TRAIN, "--set", "anet.batch_size=0"], "anet.batch_size must be at least 1, got 0"),
    ("train", [*TRAIN, "--set", "anet.learning_rate=nan"], "anet.learning_rate must be positive"),
    ("train", [*TRAIN, "--set", "tnet.lr_decay=0"], "tnet.lr_decay must be in (0, 1]"),
    ("train", [*TRAIN, "--set", "seed=-3"], "seed must be 0 or more"),
    ("synthetic", ["--output", "OUT", "--videos", "0"], "--videos: must be at least 1, got 0"),
    ("synthetic", ["--output", "OUT", "--videos", "1", "--seed", "-1"], "--seed: must be at least 0"),
    ("synthetic", ["--output", "OUT", "--videos", "1", "--frames", "0"], "--frames: must be from 1 to 10000"),
    ("synthetic", ["--output", "OUT", "--videos", "1", "--max-objects", "300"], "--max-objects: must be from 1 to 254"),
    ("studio", ["--port", "70000"], "--port: must be from 0 to 65535, got 70000"),
    ("studio", ["--port", "-1"], "--port: must be from 0 to 65535, got -1"),
    ("studio", ["--objects", "0"], "--objects: must be at least 1, got 0"),
])
def test_out_of_range_numbers_are_usage_errors_naming_the_flag(tmp_path, capsys, command, argv, message):
    argv = [a.replace("WORK", str(tmp_path / "w")).replace("OUT", str(tmp_path / "o")).replace("IN", str(tmp_path))
            for a in argv]
    assert _main(command)(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    prog = {"synthetic": "atnet_jax.data.synthetic", "studio": "atnet_jax.studio"}.get(command, f"atnet_jax.{command}")
    assert len(err) == 1 and err[0].startswith(f"python -m {prog}: error: "), err
    assert message in err[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()


def test_synthetic_frame_size_has_a_limit_instead_of_an_allocation_failure(tmp_path, capsys):
    from atnet_jax.data.synthetic.__main__ import main

    assert main(["--output", str(tmp_path / "o"), "--videos", "1", "--height", "160000", "--width", "160000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--height: must be from 16 to 4096 pixels, got 160000" in err[0]
    assert main(["--output", str(tmp_path / "o"), "--videos", "1", "--width", "100"]) == 2
    assert "--width: must be a multiple of 16, got 100" in capsys.readouterr().err


# --------------------------------------------------------------------------- consistent codes and words


def test_video_file_with_sequence_is_a_usage_error(tmp_path, capsys):
    from atnet_jax import infer
    from atnet_jax.studio.__main__ import main as studio_main

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    scribbles = _scribble_file(tmp_path / "s.json")
    assert infer.main(["--input", str(video), "--sequence", "bear", "--scribbles", str(scribbles),
                       "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--sequence bear names a sequence of a DAVIS folder, but --input {video} is a file" in err
    assert studio_main(["--input", str(video), "--sequence", "bear", "--no-browser", "--port", "0"]) == 2
    assert "leave --sequence out for a video file" in capsys.readouterr().err


def test_scribbles_given_a_folder_says_it_is_a_folder(tmp_path, capsys):
    from atnet_jax import infer

    _frames_folder(tmp_path / "video")
    assert infer.main(["--input", str(tmp_path / "video"), "--scribbles", str(tmp_path),
                       "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m atnet_jax.infer: error: --scribbles {tmp_path} is a folder, expected a .json file "
                   "(a DAVIS scribble file)"]


def test_missing_synthetic_data_names_the_command_that_makes_it(tmp_path, capsys):
    from atnet_jax import train

    missing = tmp_path / "synthetic"
    assert train.main(["--config", "experiments/configs/tiny.py", "--workdir", str(tmp_path / "w"), "--stage",
                       "anet", "--no-progress", "--set", f"data.synthetic={missing}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "synthetic videos" in err[-1] and "are missing" in err[-1]
    assert f"python -m atnet_jax.data.synthetic --output {missing}" in err[-1]
    assert "DAVIS folder not found" not in err[-1]


def test_train_help_says_what_sigterm_does_and_why(capsys):
    from atnet_jax import train

    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Ctrl-C saves a checkpoint in every process and exits 130" in text
    assert "then exits 1, so that the scheduler counts the job as not finished and can requeue it" in text


def test_fake_video_gives_one_line_and_no_libav_output(tmp_path):
    import subprocess
    import sys

    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    proc = subprocess.run([sys.executable, "-m", "atnet_jax.infer", "--input", str(fake), "--scribbles",
                           str(_scribble_file(tmp_path / "s.json", 1)), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"python -m atnet_jax.infer: error: cannot open video {fake} (not a "
                                        "video, or an unknown container or codec)"]


# ------------------------------------------------------------------------ outputs checked before any work


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder that cannot be written (root may write anywhere: play a user for whom it is read-only)."""
    import os

    folder = tmp_path / "read_only"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(folder)
                        else real_access(p, mode, **kw))
    return folder


def test_unwritable_evaluate_output_is_a_usage_error_before_any_work(tmp_path, read_only, capsys, monkeypatch):
    from atnet_jax import cli, evaluate

    monkeypatch.setattr(cli, "load_checkpoint", lambda *a, **k: pytest.fail("weights read before the check"))
    root = tmp_path / "davis"
    (root / "JPEGImages" / "480p").mkdir(parents=True)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, needle in ((read_only, "is not writable"), (read_only / "new", "cannot be created"),
                        (a_file, "is a file")):
        assert evaluate.main(["--input", str(root), "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--output {out}" in err[0] and needle in err[0], err
    assert evaluate.main(["--merge", str(tmp_path), "--output", str(read_only)]) == 2
    assert f"--output {read_only} is not writable" in capsys.readouterr().err


def test_unwritable_train_workdir_is_a_usage_error_before_any_work(read_only, capsys):
    from atnet_jax import train

    assert train.main(["--config", "experiments/configs/tiny.py", "--workdir", str(read_only / "run"),
                       "--stage", "anet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m atnet_jax.train: error: --workdir {read_only / 'run'} cannot be created: "
                   f"{read_only} is not writable"]


# ---------------------------------------------------------------------------------- weights in user terms


@pytest.fixture
def saved_weights(tmp_path, tiny_config, tiny_variables):
    from atnet_jax.io.weights import save_weights

    return save_weights(tmp_path / "weights", tiny_variables, tiny_config)


def test_truncated_weights_file_says_the_folder_is_damaged(saved_weights, capsys):
    from atnet_jax import cli

    biggest = max((p for p in (saved_weights / "variables").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    _truncate(biggest, 0.5)
    with pytest.raises(WeightsError) as info:
        cli.load_checkpoint(saved_weights)
    message = str(info.value)
    assert message.startswith(f"--checkpoint {saved_weights} is damaged: a file of its variables/ folder is "
                              "missing, truncated or corrupt")
    for jargon in ("DATA_LOSS", "OUT_OF_RANGE", "zarr", "ocdbt", "tensorstore"):
        assert jargon not in message


def test_weights_of_another_network_size_give_both_sizes(saved_weights, tiny_config):
    import dataclasses

    from atnet_jax import cli

    meta = saved_weights / "atnet_jax.json"
    record = json.loads(meta.read_text())
    wider = dataclasses.replace(tiny_config, stem_width=tiny_config.stem_width * 2, decoder_width=40)
    record["model_config"] = wider.to_dict()
    meta.write_text(json.dumps(record))
    with pytest.raises(WeightsError) as info:
        cli.load_checkpoint(saved_weights)
    message = str(info.value)
    assert "holds weights of another network size than its atnet_jax.json says" in message
    assert f"the weights are stem {tiny_config.stem_width}, stage widths {tiny_config.stage_widths}" in message
    assert f"atnet_jax.json: stem {wider.stem_width}," in message and "decoder 40" in message
    assert "ScopeParamShapeError" not in message and "Structure mismatch" not in message


@pytest.mark.parametrize("with_weights", [True, False])
def test_training_checkpoint_folder_names_the_weights_folder(tmp_path, saved_weights, with_weights):
    import shutil

    from atnet_jax import cli

    stage = tmp_path / "runs" / "tiny" / "anet"
    step = stage / "checkpoints" / "200"
    step.mkdir(parents=True)
    (step / "_CHECKPOINT_METADATA").write_text("{}")
    if with_weights:
        shutil.copytree(saved_weights, stage / "weights")
    with pytest.raises(WeightsError) as info:
        cli.load_checkpoint(step)
    message = str(info.value)
    assert f"{step} is not an atnet_jax weights checkpoint" in message
    assert "checkpoint 200 of a training run" in message and f"{stage / 'weights'}/" in message
    assert ("pass its weights folder" in message) == with_weights


def test_tnet_stage_from_an_anet_of_another_size_gives_both_sizes(tmp_path, saved_weights, tiny_config):
    import dataclasses

    import jax

    from atnet_jax.training.config import load_config
    from atnet_jax.training.loop import _initial_state

    config = load_config("experiments/configs/tiny.py")
    config = dataclasses.replace(config, tnet=dataclasses.replace(config.tnet, init_from=str(saved_weights)))
    assert config.model != tiny_config
    with pytest.raises(WeightsError, match=r"holds an A-Net of another size than config.model: stem "
                       rf"{tiny_config.stem_width}, .* there; stem {config.model.stem_width}, .* in the config"):
        _initial_state(config, "tnet", tmp_path, jax.random.PRNGKey(0), print)


def test_truncated_jpeg_in_the_studio_api_is_a_422_naming_the_file(tmp_path):
    import warnings

    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

    from atnet_jax import cli
    from atnet_jax.demo import DEFAULT_CHECKPOINT
    from atnet_jax.inference.session import Session
    from atnet_jax.io.davis import open_frames
    from atnet_jax.studio.app import create_app
    from atnet_jax.studio.controller import Controller
    from atnet_jax.studio.history import VideoRecord

    paths = _frames_folder(tmp_path / "video")
    session = Session(open_frames(tmp_path / "video"), cli.load_predictor(DEFAULT_CHECKPOINT), 1)
    ws = Controller(tmp_path / "ws", session, name="video", video=VideoRecord(str(tmp_path / "video")),
                    checkpoint=str(DEFAULT_CHECKPOINT), demo_weights=True)
    _truncate(paths[2])
    with TestClient(create_app(ws)) as client:
        assert client.get("/api/frames/1").status_code == 200
        reply = client.get("/api/frames/2")
    assert reply.status_code == 422
    assert "00002.jpg is truncated or corrupt" in reply.json()["error"]
