"""DAVIS folders, palette masks, frame sources: synthetic folders in tmp_path, plus the real davis_mini."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import data_path
from PIL import Image

from atnet_jax.io.davis import DavisFolder, open_frames
from atnet_jax.io.frames import ImageFolderSource, VideoFileSource, read_frame, write_frame
from atnet_jax.io.masks import DAVIS_PALETTE, read_mask, write_mask
from atnet_jax.io.safe import atomic_write

H, W = 24, 32


def _frame(i: int, height: int = H, width: int = W) -> np.ndarray:
    """A frame with a distinct, JPEG-robust colour per index."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:] = ((40 * i) % 256, 255 - (40 * i) % 256, 100)
    return frame


def _labels(ids: tuple[int, ...], height: int = H, width: int = W) -> np.ndarray:
    labels = np.zeros((height, width), np.uint8)
    for j, object_id in enumerate(ids):
        labels[2 + 4 * j : 5 + 4 * j, 3:10] = object_id
    return labels


def make_davis(root: Path, sequences: dict[str, list[tuple[int, ...]]], *, frames: bool = True) -> Path:
    """A DAVIS-2017-style folder: per sequence one (ids present) tuple per frame."""
    for seq, per_frame in sequences.items():
        for t, ids in enumerate(per_frame):
            if frames:
                write_frame(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", _frame(t))
            write_mask(root / "Annotations" / "480p" / seq / f"{t:05d}.png", _labels(ids))
    return root


# ----------------------------------------------------------------------------------------------- masks


def test_palette_is_voc_colour_map():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    assert DAVIS_PALETTE[0].tolist() == [0, 0, 0]
    assert DAVIS_PALETTE[1].tolist() == [128, 0, 0]
    assert DAVIS_PALETTE[2].tolist() == [0, 128, 0]
    assert DAVIS_PALETTE[3].tolist() == [128, 128, 0]
    assert DAVIS_PALETTE[8].tolist() == [64, 0, 0]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in DAVIS_PALETTE}) == 256


def test_palette_matches_real_davis_file():
    path = data_path("davis_mini", "Annotations", "480p", "bear", "00000.png")
    with Image.open(path) as im:
        palette = np.array(im.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, DAVIS_PALETTE)


def test_write_mask_round_trip_keeps_indices_and_palette(tmp_path):
    labels = np.array([[0, 1, 2, 255], [3, 4, 0, 255]], np.uint8)
    path = write_mask(tmp_path / "sub" / "m.png", labels)
    with Image.open(path) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.array(im.getpalette(), np.uint8).reshape(-1, 3), DAVIS_PALETTE)
    out = read_mask(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


def test_write_mask_accepts_int_and_bool_but_rejects_out_of_range(tmp_path):
    np.testing.assert_array_equal(read_mask(write_mask(tmp_path / "a.png", np.array([[0, 2]], np.int64))), [[0, 2]])
    np.testing.assert_array_equal(read_mask(write_mask(tmp_path / "b.png", np.array([[True, False]]))), [[1, 0]])
    with pytest.raises(ValueError, match="0..255"):
        write_mask(tmp_path / "c.png", np.array([[0, 300]]))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        write_mask(tmp_path / "d.png", np.zeros((2, 2, 1), np.uint8))


def test_read_mask_grayscale_2016_is_binarised(tmp_path):
    gray = np.array([[0, 255, 200], [100, 128, 127]], np.uint8)  # anti-aliased values threshold at > 127
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), [[0, 1, 1], [0, 1, 0]])
    Image.fromarray(np.zeros((3, 3), np.uint8), "L").save(tmp_path / "empty.png")
    assert read_mask(tmp_path / "empty.png").max() == 0


def test_read_mask_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_mask(tmp_path / "nope.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8), "RGB").save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png.*'RGB'"):
        read_mask(tmp_path / "rgb.png")
    Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), "L").save(tmp_path / "ids.png")
    with pytest.raises(ValueError, match=r"ids\.png.*up to 2"):
        read_mask(tmp_path / "ids.png")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="bad.png"):
        read_mask(tmp_path / "bad.png")


# ----------------------------------------------------------------------------------------------- atomic writes


def test_write_refuses_to_clobber_unless_overwrite(tmp_path):
    path = write_mask(tmp_path / "m.png", np.ones((2, 2), np.uint8))
    with pytest.raises(FileExistsError, match="m.png"):
        write_mask(path, np.full((2, 2), 2, np.uint8))
    assert read_mask(path).max() == 1
    write_mask(path, np.full((2, 2), 2, np.uint8), overwrite=True)
    assert read_mask(path).max() == 2
    frame = write_frame(tmp_path / "f.png", _frame(1))
    with pytest.raises(FileExistsError, match="f.png"):
        write_frame(frame, _frame(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "m.png"]  # no temp files left


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.png", broken)
    assert list(tmp_path.iterdir()) == []
    old = write_mask(tmp_path / "old.png", np.ones((2, 2), np.uint8))
    with pytest.raises(RuntimeError):
        atomic_write(old, broken, overwrite=True)
    assert read_mask(old).max() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]


# ----------------------------------------------------------------------------------------------- frames


def test_write_and_read_frame(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_frame(write_frame(tmp_path / "f.png", rgb)), rgb)
    smooth = _frame(3)
    jpeg = read_frame(write_frame(tmp_path / "f.jpg", smooth))
    assert jpeg.shape == (H, W, 3) and jpeg.dtype == np.uint8
    assert np.abs(jpeg.astype(int) - smooth).mean() < 3  # RGB order kept (not BGR)
    with pytest.raises(ValueError, match="f.bmp"):
        write_frame(tmp_path / "f.bmp", rgb)
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        write_frame(tmp_path / "g.png", rgb.astype(np.float32))


def test_read_frame_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_frame(tmp_path / "missing.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt.jpg"):
        read_frame(tmp_path / "corrupt.jpg")


# ----------------------------------------------------------------------------------------------- DavisFolder


def test_folder_validation_names_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DavisFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/480p.*Annotations/480p"):
        DavisFolder(tmp_path / "empty")
    davis = DavisFolder(make_davis(tmp_path / "d", {"cat": [(1,)]}))
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/480p/dog"):
        davis.frame_paths("dog")
    with pytest.raises(FileNotFoundError, match=r"Annotations/480p/dog"):
        davis.mask_paths("dog")
    (davis.images_dir / "hollow").mkdir()
    with pytest.raises(FileNotFoundError, match="hollow"):
        davis.frame_paths("hollow")
    with pytest.raises(FileNotFoundError, match=r"ImageSets/2017/val\.txt"):
        davis.sequences("val")


def test_sequences_from_folders_and_subset_files(tmp_path):
    root = make_davis(tmp_path, {"b": [(1,)], "a": [(1,)]})
    make_davis(tmp_path, {"masks-only": [(1,)]}, frames=False)
    davis = DavisFolder(root)
    assert davis.sequences() == ["a", "b"]  # masks-only has no frames
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("b\n\na\n")
    assert davis.sequences("val") == ["b", "a"]
    (root / "ImageSets" / "480p").mkdir(parents=True)
    (root / "ImageSets" / "480p" / "train.txt").write_text(
        "/JPEGImages/480p/a/00000.jpg /Annotations/480p/a/00000.png\n"
        "/JPEGImages/480p/a/00001.jpg /Annotations/480p/a/00001.png\n"
        "/JPEGImages/480p/b/00000.jpg /Annotations/480p/b/00000.png\n"
    )
    assert davis.sequences("train") == ["a", "b"]


def test_read_frames_masks_and_objects(tmp_path):
    davis = DavisFolder(make_davis(tmp_path, {"cat": [(1, 2), (1, 255), (1, 2, 3)]}))
    frames = davis.read_frames("cat")
    assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8
    assert np.abs(frames[2].astype(int) - _frame(2)).mean() < 3
    assert davis.read_frames("cat", [2, 0]).shape == (2, H, W, 3)
    masks = davis.read_masks("cat")
    assert masks.shape == (3, H, W)
    np.testing.assert_array_equal(masks[1], _labels((1, 255)))
    assert davis.num_objects("cat") == 2  # DAVIS-2017 rule: first frame only, void ignored
    assert davis.num_objects("cat", all_frames=True) == 3
    assert [p.name for p in davis.mask_paths("cat")] == ["00000.png", "00001.png", "00002.png"]


def test_frame_size_mismatch_names_the_frame(tmp_path):
    davis = DavisFolder(make_davis(tmp_path, {"cat": [(1,), (1,), (1,)]}))
    write_frame(davis.images_dir / "cat" / "00001.jpg", _frame(1, H + 2, W), overwrite=True)
    with pytest.raises(ValueError, match=r"00001\.jpg is 26x32"):
        davis.read_frames("cat")
    source = davis.frames("cat")
    assert source[0].shape == (H, W, 3)
    with pytest.raises(ValueError, match=r"00001\.jpg"):
        source[1]


def test_missing_masks_error_or_void(tmp_path):
    davis = DavisFolder(make_davis(tmp_path, {"cat": [(1,), (1,), (1,)]}))
    (davis.annotations_dir / "cat" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"00002\.jpg has no mask .*00002\.png"):
        davis.read_masks("cat")
    masks = davis.read_masks("cat", allow_missing=True)
    assert masks.shape == (3, H, W) and (masks[2] == 255).all() and masks[0].max() == 1
    write_mask(davis.annotations_dir / "cat" / "00002.png", np.zeros((H, W + 1), np.uint8))
    with pytest.raises(ValueError, match=r"00002\.png is 24x33"):
        davis.read_masks("cat")


def test_scribble_paths(tmp_path):
    davis = DavisFolder(make_davis(tmp_path, {"cat": [(1,)]}))
    assert davis.scribble_paths("cat") == []
    folder = tmp_path / "Scribbles" / "cat"
    folder.mkdir(parents=True)
    for name in ("002.json", "001.json", "notes.txt"):
        (folder / name).write_text("{}")
    assert [p.name for p in davis.scribble_paths("cat")] == ["001.json", "002.json"]


# ----------------------------------------------------------------------------------------------- frame sources


def test_plain_folder_source_is_lazy_and_naturally_sorted(tmp_path):
    for i in (10, 2, 1):
        write_frame(tmp_path / f"frame{i}.png", _frame(i))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_frames(tmp_path)
    assert isinstance(source, ImageFolderSource)
    assert len(source) == 3 and source.shape == (H, W)
    assert source.names == ["frame1", "frame2", "frame10"]
    np.testing.assert_array_equal(source[2], _frame(10))
    np.testing.assert_array_equal(source[-1], _frame(10))
    (tmp_path / "frame2.png").unlink()  # read on access, not at open
    with pytest.raises(FileNotFoundError, match="frame2.png"):
        source[1]
    with pytest.raises(IndexError):
        source[3]


def test_open_frames_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        open_frames(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no frames in .*empty"):
        open_frames(tmp_path / "empty")
    root = make_davis(tmp_path / "davis", {"cat": [(1,), (1,)]})
    with pytest.raises(ValueError, match="sequence=.*cat"):
        open_frames(root)
    assert len(open_frames(root, "cat")) == 2
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="broken.mp4"):
        open_frames(tmp_path / "broken.mp4")


@pytest.mark.parametrize("name, fourcc", [("clip.avi", "MJPG"), ("clip.mp4", "mp4v")])
def test_video_file_source(tmp_path, name, fourcc):
    path = tmp_path / name
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (W, H))
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc}")
    for i in range(5):
        writer.write(cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
    writer.release()
    source = open_frames(path, cache_dir=tmp_path)
    assert isinstance(source, VideoFileSource)
    assert len(source) == 5 and source.shape == (H, W)
    for i in (3, 0, 4):  # any order
        frame = source[i]
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        assert np.abs(frame.reshape(-1, 3).mean(0) - _frame(i)[0, 0]).max() < 12  # RGB, right frame
    cache = source.cache_dir
    assert cache.is_dir()
    source.close()
    assert not cache.exists()
    with pytest.raises(ValueError, match="closed"):
        source[0]


# ----------------------------------------------------------------------------------------------- real DAVIS


def test_real_car_shadow_davis2016():
    davis = DavisFolder(data_path("davis_mini"))
    source = open_frames(davis.root, "car-shadow")
    assert len(source) == 40 and source.shape == (480, 854)
    assert source[39].shape == (480, 854, 3)
    masks = davis.read_masks("car-shadow")
    assert masks.shape == (40, 480, 854)
    assert set(np.unique(masks).tolist()) == {0, 1}  # 0/255 grayscale -> 0/1
    assert davis.num_objects("car-shadow") == 1


def test_real_davis2017_palette_masks():
    davis = DavisFolder(data_path("davis_mini"))
    assert {"bear", "car-shadow", "tennis"} <= set(davis.sequences())
    assert "blackswan" not in davis.sequences()  # masks only
    tennis = davis.read_masks("tennis")
    assert tennis.shape == (2, 480, 854)
    assert set(np.unique(tennis).tolist()) == {0, 1, 2, 255}
    assert davis.num_objects("tennis") == 2
    assert davis.read_frames("tennis").shape == (2, 480, 854, 3)
    assert davis.read_masks("blackswan").shape == (6, 480, 854)
    assert [p.name for p in davis.scribble_paths("bear")] == ["001.json", "002.json"]


# ----------------------------------------------------------------------------------------------- output modes


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_outputs_get_the_usual_mode_under_the_umask(tmp_path, umask):
    """mkstemp/mkdtemp make 0600/0700 whatever the umask; written outputs must get 0666/0777 & ~umask."""
    import os
    import stat

    from atnet_jax.io.safe import output_mode, staging_dir
    from atnet_jax.io.scribbles import save_scribbles
    from atnet_jax.io.weights import save_weights
    from atnet_jax.models import tiny_model_config

    old = os.umask(umask)
    try:
        assert output_mode() == 0o666 & ~umask and output_mode(folder=True) == 0o777 & ~umask
        files = [
            atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x")),
            write_mask(tmp_path / "m.png", _labels((1, 2))),
            write_frame(tmp_path / "f.jpg", _frame(1)),
            save_scribbles(tmp_path / "s.json", {"scribbles": [[{"path": [[0.5, 0.5]], "object_id": 1}]]}),
            atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("y"), overwrite=True),
        ]
        folders = [staging_dir(tmp_path / "results")]
        weights = save_weights(tmp_path / "w", {"anet": {"params": {"x": np.zeros(2, np.float32)}}},
                               tiny_model_config())
    finally:
        os.umask(old)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    for path in [*folders, weights]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask, path
    assert stat.S_IMODE((weights / "atnet_jax.json").stat().st_mode) == 0o666 & ~umask


def test_replace_entries_swaps_all_names_and_restores_on_failure(tmp_path, monkeypatch):
    import os

    from atnet_jax.io.safe import replace_entries, staging_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "seq").mkdir()
    (out / "seq" / "00000.png").write_text("old")
    (out / "seq_overlay.mp4").write_text("old video")
    (out / "other").write_text("not ours")
    staged = staging_dir(out / "seq")
    (staged / "seq").mkdir()
    (staged / "seq" / "00000.png").write_text("new")
    assert replace_entries(staged, out, ["seq", "seq_overlay.mp4", "seq_overlay"]) == [out / "seq"]
    assert sorted(p.name for p in out.iterdir()) == ["other", "seq"]  # the old video went too
    assert (out / "seq" / "00000.png").read_text() == "new" and not staged.exists()
    # a rename that fails half-way puts everything back
    staged = staging_dir(out / "seq")
    (staged / "seq").mkdir()
    (staged / "seq_overlay.mp4").write_text("newer video")
    real = os.rename

    def failing(src, dst):
        if str(src).endswith("seq_overlay.mp4") and str(dst).startswith(str(out / "seq_overlay")):
            raise OSError("no space")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="no space"):
        replace_entries(staged, out, ["seq", "seq_overlay.mp4"])
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["other", "seq"]
    assert (out / "seq" / "00000.png").read_text() == "new"


def test_replace_dir(tmp_path):
    from atnet_jax.io.safe import replace_dir, staging_dir

    target = tmp_path / "ds"
    staged = staging_dir(target)
    (staged / "a").write_text("1")
    assert replace_dir(staged, target) == target and (target / "a").read_text() == "1"
    staged = staging_dir(target)
    (staged / "b").write_text("2")
    replace_dir(staged, target)
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
