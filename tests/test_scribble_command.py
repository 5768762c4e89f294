"""``python -m atnet_jax.scribble`` and ``atnet_jax.interaction.first_scribble``: a first scribble from masks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import data_path
from PIL import Image

from atnet_jax import scribble
from atnet_jax.data import synthetic
from atnet_jax.interaction.first_scribble import first_scribble
from atnet_jax.interaction.robot import InteractiveRobot
from atnet_jax.io.davis import DavisFolder
from atnet_jax.io.masks import write_mask
from atnet_jax.io.scribbles import load_scribbles


def _paths(scribbles: dict, frame: int) -> list[tuple[int, list]]:
    return [(s["object_id"], s["path"]) for s in scribbles["scribbles"][frame]]


def test_davis_2016_sequence(tmp_path, capsys):
    davis = DavisFolder(data_path("davis_mini"))
    out = tmp_path / "car-shadow_001.json"
    assert scribble.main(["--input", str(davis.root), "--sequence", "car-shadow", "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = load_scribbles(out, num_frames=40, num_objects=1, sequence="car-shadow")
    assert [t for t, s in enumerate(data["scribbles"]) if s] == [0]
    gt = davis.read_masks("car-shadow")
    # The robot itself, on an empty prediction: the same strokes; timestamps 1 s per stroke from 0.
    robot = InteractiveRobot().interact("car-shadow", np.zeros_like(gt), gt)
    assert _paths(data, 0) == _paths(robot, 0) and {s["object_id"] for s in data["scribbles"][0]} == {1}
    assert [(s["start_time"], s["end_time"]) for s in data["scribbles"][0]] == [
        (float(i), float(i + 1)) for i in range(len(data["scribbles"][0]))]


def test_one_mask_and_a_folder_of_masks_give_the_davis_strokes(tmp_path, capsys):
    davis = DavisFolder(data_path("davis_mini"))
    from_davis = tmp_path / "davis.json"
    assert scribble.main(["--input", str(davis.root), "--sequence", "tennis", "--output", str(from_davis),
                          "--frame", "0"]) == 0
    expected = _paths(json.loads(from_davis.read_text()), 0)
    assert {obj for obj, _ in expected} == {1, 2}
    one = tmp_path / "one.json"
    mask = davis.annotations_dir / "tennis" / "00000.png"
    assert scribble.main(["--input", str(mask), "--frames", "7", "--frame", "3", "--output", str(one),
                          "--sequence", "my_video"]) == 0
    data = load_scribbles(one, num_frames=7, num_objects=2, sequence="my_video")
    assert [t for t, s in enumerate(data["scribbles"]) if s] == [3] and _paths(data, 3) == expected
    folder = tmp_path / "masks"
    shutil.copytree(davis.annotations_dir / "tennis", folder)
    many = tmp_path / "many.json"
    assert scribble.main(["--input", str(folder), "--output", str(many)]) == 0
    data = load_scribbles(many, num_frames=2, sequence="masks")
    assert [t for t, s in enumerate(data["scribbles"]) if s] == [0] and _paths(data, 0) == expected
    assert "--input VIDEO" in capsys.readouterr().out


def test_synthetic_videos_use_the_same_first_scribble(tmp_path):
    root = synthetic.write_dataset(tmp_path / "synth", videos=1, num_frames=4, height=64, width=96)
    davis = DavisFolder(root)
    name = davis.sequences()[0]
    written = load_scribbles(davis.scribble_paths(name)[0], num_frames=4, sequence=name)
    assert written == first_scribble(name, davis.read_masks(name))
    out = tmp_path / "again.json"
    assert scribble.main(["--input", str(root), "--sequence", name, "--output", str(out)]) == 0
    assert load_scribbles(out, num_frames=4) == written


def test_errors_are_one_line(tmp_path, capsys):
    root = data_path("davis_mini")
    mask = root / "Annotations" / "480p" / "tennis" / "00000.png"
    empty = tmp_path / "empty.png"
    write_mask(empty, np.zeros((40, 60), np.uint8))
    existing = tmp_path / "existing.json"
    existing.write_text("{}")
    cases = [
        (2, ["--input", str(root), "--output", str(tmp_path / "a.json")], "pass --sequence NAME"),
        (2, ["--input", str(mask), "--output", str(tmp_path / "a.json")], "pass --frames N"),
        (2, ["--input", str(mask), "--frames", "3", "--frame", "3", "--output", str(tmp_path / "a.json")],
         "--frame 3 is outside"),
        (2, ["--input", str(root), "--sequence", "tennis", "--output", str(existing)], "--overwrite"),
        (2, ["--input", str(tmp_path / "absent.png"), "--output", str(tmp_path / "a.json")], "does not exist"),
        (1, ["--input", str(empty), "--frames", "2", "--output", str(tmp_path / "a.json")], "no object"),
    ]
    for code, argv, needle in cases:
        assert scribble.main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (argv, err)
    assert existing.read_text() == "{}" and not (tmp_path / "a.json").exists()


def test_a_file_written_for_a_video_fits_only_that_length(tmp_path):
    mask = np.zeros((48, 64), np.uint8)
    mask[10:40, 12:50] = 1
    path = tmp_path / "m.png"
    Image.fromarray(mask * 255).save(path)  # DAVIS-2016 style 0/255
    out = tmp_path / "s.json"
    assert scribble.main(["--input", str(path), "--frames", "5", "--output", str(out)]) == 0
    assert len(load_scribbles(out, num_frames=5)["scribbles"]) == 5
    for other in (4, 6):
        with pytest.raises(ValueError, match=f"5 frames of scribbles, but the video has {other} frames"):
            load_scribbles(out, num_frames=other)
