"""Tests of atnet_jax.data.synthetic: the video generator, the DAVIS folder writer and its CLI."""
from __future__ import annotations

import numpy as np
import pytest

from atnet_jax.data.synthetic import generate_video, write_dataset
from atnet_jax.data.synthetic.__main__ import main
from atnet_jax.io.davis import DavisFolder
from atnet_jax.io.scribbles import load_scribbles

SMALL = dict(num_frames=8, height=96, width=160)


def test_same_seed_same_video_and_other_seed_differs():
    a = generate_video(3, **SMALL)
    b = generate_video(np.random.default_rng(3), **SMALL)
    c = generate_video(4, **SMALL)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("seed", range(4))
def test_shapes_ids_motion(seed):
    frames, labels, amodal = generate_video(seed, num_frames=10, height=112, width=192, max_objects=4,
                                            return_amodal=True)
    num_objects = amodal.shape[1]
    assert frames.shape == (10, 112, 192, 3) and frames.dtype == np.uint8
    assert labels.shape == (10, 112, 192) and labels.dtype == np.uint8
    assert amodal.shape == (10, num_objects, 112, 192) and 1 <= num_objects <= 4
    assert set(np.unique(labels)) <= set(range(num_objects + 1))
    assert set(np.unique(labels[0])) == set(range(num_objects + 1))  # all objects in frame 0 (DAVIS rule)
    for k in range(1, num_objects + 1):
        present = (labels == k).sum(axis=(1, 2)) >= 20
        assert present.sum() >= 0.75 * len(labels), f"object {k} present in only {present.sum()} frames"
        cy = [np.nonzero(amodal[t, k - 1])[0].mean() for t in range(10) if amodal[t, k - 1].any()]
        cx = [np.nonzero(amodal[t, k - 1])[1].mean() for t in range(10) if amodal[t, k - 1].any()]
        assert np.hypot(cy[-1] - cy[0], cx[-1] - cx[0]) > 1.0, f"object {k} does not move"
        # the visible label is never outside the object's own unoccluded mask
        assert not ((labels == k) & ~amodal[:, k - 1]).any()
    # objects look different from the background: mean colour inside vs outside
    inside = frames[labels > 0].mean(axis=0)
    outside = frames[labels == 0].mean(axis=0)
    assert np.abs(inside - outside).max() > 1.0


def test_objects_occlude_each_other():
    occluded = 0
    for seed in range(6):
        _, labels, amodal = generate_video(seed, num_objects=3, **SMALL, return_amodal=True)
        for k in range(3):
            visible = (labels == k + 1).sum(axis=(1, 2))
            occluded += int((visible < amodal[:, k].sum(axis=(1, 2))).any())
    assert occluded > 0
    # the front object (highest id) is never hidden
    np.testing.assert_array_equal(labels == 3, amodal[:, 2])


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_video(0, num_objects=0)
    with pytest.raises(ValueError):
        generate_video(0, num_frames=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    write_dataset(out, videos=5, seed=7, num_frames=6, height=96, width=160, max_objects=3)
    return out


def test_written_folder_reads_back(dataset):
    folder = DavisFolder(dataset)
    names = [f"synth-{i:04d}" for i in range(5)]
    assert folder.sequences() == names
    assert folder.sequences("train") == names[:4] and folder.sequences("val") == names[4:]
    for i, name in enumerate(names):
        frames, labels = generate_video(np.random.default_rng([7, i]), num_frames=6, height=96, width=160,
                                        max_objects=3)
        masks = folder.read_masks(name)
        np.testing.assert_array_equal(masks, labels)  # PNG masks are exact
        read = folder.read_frames(name)
        assert read.shape == (6, 96, 160, 3)
        assert np.abs(read.astype(int) - frames.astype(int)).mean() < 6  # JPEG, quality 95
        num_objects = folder.num_objects(name)
        assert num_objects == labels.max() >= 1

        (path,) = folder.scribble_paths(name)
        scribbles = load_scribbles(path, num_frames=6, num_objects=num_objects, sequence=name)
        strokes = [(f, s) for f, frame in enumerate(scribbles["scribbles"]) for s in frame]
        assert {s["object_id"] for _, s in strokes} == set(range(1, num_objects + 1))
        for f, stroke in strokes:
            xy = np.array(stroke["path"]) * [160, 96]
            x = np.clip(np.round(xy[:, 0]).astype(int), 0, 159)
            y = np.clip(np.round(xy[:, 1]).astype(int), 0, 95)
            on = masks[f][y, x] == stroke["object_id"]
            assert on.mean() > 0.9, f"{name} stroke for {stroke['object_id']} off the object"


def test_write_is_deterministic_and_refuses_to_clobber(dataset, tmp_path):
    other = write_dataset(tmp_path / "again", videos=5, seed=7, num_frames=6, height=96, width=160, max_objects=3)
    for path in sorted(dataset.rglob("*")):
        if path.is_file():
            assert (other / path.relative_to(dataset)).read_bytes() == path.read_bytes(), path
    with pytest.raises(FileExistsError, match="again"):
        write_dataset(other, videos=1, num_frames=2, height=32, width=32)
    write_dataset(other, videos=1, num_frames=2, height=32, width=32, overwrite=True)
    folder = DavisFolder(other)
    assert folder.read_masks("synth-0000").shape == (2, 32, 32)
    assert folder.sequences("train") == ["synth-0000"]


def test_cli(tmp_path, capsys):
    """--out, the earlier name of --output, still works."""
    out = tmp_path / "cli"
    args = ["--out", str(out), "--videos", "2", "--frames", "3", "--height", "48", "--width", "64"]
    assert main(args) == 0
    assert str(out) in capsys.readouterr().out.strip().splitlines()[-1]
    assert DavisFolder(out).sequences() == ["synth-0000", "synth-0001"]
    assert main(args) == 2
    assert "already holds files" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["--out", str(tmp_path / "x"), "--videos", "1", "--height", "50"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_cli_output_flag_and_help(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--output", str(out), "--videos", "1", "--frames", "2", "--height", "48", "--width", "64"]) == 0
    assert str(out) in capsys.readouterr().out
    assert DavisFolder(out).sequences() == ["synth-0000"]
    (tmp_path / "file").write_text("x")
    assert main(["--output", str(tmp_path / "file"), "--videos", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err, err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--output DIR" in text and "--out DIR" not in text and "examples:" in text


def test_train_and_val_are_disjoint():
    from atnet_jax.data.synthetic import split_train_val

    for n in range(1, 12):
        names = [f"v{i}" for i in range(n)]
        train, val = split_train_val(names)
        assert train + val == names and not set(train) & set(val), n
        assert len(train) >= 1 and len(val) == (0 if n == 1 else max(1, round(0.2 * n))), n


def test_cli_three_videos_lists_each_once(tmp_path, capsys):
    out = tmp_path / "three"
    assert main(["--output", str(out), "--videos", "3", "--frames", "2", "--height", "32", "--width", "48"]) == 0
    assert "2 listed as train, 1 as val" in capsys.readouterr().out
    folder = DavisFolder(out)
    assert folder.sequences("train") == ["synth-0000", "synth-0001"] and folder.sequences("val") == ["synth-0002"]


def test_overwrite_with_fewer_videos_replaces_the_folder_as_a_whole(tmp_path, monkeypatch):
    from atnet_jax.data import synthetic

    out = tmp_path / "ds"
    small = dict(num_frames=2, height=32, width=48)
    write_dataset(out, videos=3, **small)
    (out / "notes.txt").write_text("from the earlier run")
    write_dataset(out, videos=2, overwrite=True, **small)
    assert sorted(p.name for p in out.iterdir()) == ["Annotations", "ImageSets", "JPEGImages", "Scribbles"]
    for kind in ("JPEGImages/480p", "Annotations/480p", "Scribbles"):
        assert sorted(p.name for p in (out / kind).iterdir()) == ["synth-0000", "synth-0001"], kind
    assert DavisFolder(out).sequences("train") == ["synth-0000"]
    # an interrupted run leaves the earlier folder as it was, and no staging folder beside it
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "first_scribble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, videos=4, overwrite=True, **small)
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_written_files_get_the_usual_modes(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = write_dataset(tmp_path / "ds", videos=1, num_frames=1, height=32, width=48)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")] if p.is_dir()}
    assert modes == {0o755}
    modes = {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert modes == {0o644}
