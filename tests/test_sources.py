"""Tests for atnet_jax.data.sources on small generated DAVIS / YouTube-VOS / SBD folders and mocked tfds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from atnet_jax.data.sources import (
    ConcatVideoSource,
    DavisVideos,
    ImagesAsVideos,
    SBDImages,
    TfdsDavisVideos,
    YouTubeVOSVideos,
)
from atnet_jax.io.frames import write_frame
from atnet_jax.io.masks import write_mask

H, W = 24, 32


def _frame(seed: int) -> np.ndarray:
    """A smooth RGB frame (JPEG keeps it close)."""
    yy, xx = np.mgrid[0:H, 0:W]
    base = yy * 3 + xx * 2 + seed * 5  # no wrap-around edges
    return np.stack([base, base + 60, 255 - base], -1).astype(np.uint8)


def _labels(t: int, with_second: bool = True) -> np.ndarray:
    """Object 1 a square moving right, object 2 a bar (optional), a void border column."""
    m = np.zeros((H, W), np.uint8)
    m[4:12, 2 + t : 10 + t] = 1
    if with_second:
        m[16:20, 10:30] = 2
    m[:, -1] = 255
    return m


# ----------------------------------------------------------------------------------------------- DAVIS


def _write_davis(root: Path, seqs: dict[str, int], listed: list[str], *, unannotated: int = 0) -> Path:
    for seq, n in seqs.items():
        for t in range(n + unannotated):
            write_frame(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", _frame(t))
            if t < n:
                write_mask(root / "Annotations" / "480p" / seq / f"{t:05d}.png", _labels(t, with_second=t != 2))
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("\n".join(listed) + "\n")
    return root


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory) -> Path:
    return _write_davis(tmp_path_factory.mktemp("davis"), {"bear": 4, "car": 3}, ["car", "bear"], unannotated=1)


def test_davis_videos(davis_root):
    src = DavisVideos(davis_root, "train")
    assert len(src) == 2
    assert [src.name(0), src.name(1)] == ["car", "bear"]  # split-file order
    assert [src.num_frames(0), src.num_frames(1)] == [3, 4]  # the unannotated frame is not indexed
    frame = src.frame(1, 3)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert np.abs(frame.astype(int) - _frame(3)).mean() < 3
    for t in range(4):
        labels = src.labels(1, t)
        assert labels.dtype == np.uint8 and labels.shape == (H, W)
        np.testing.assert_array_equal(labels, _labels(t, with_second=t != 2))
    assert src.object_ids(1) == [1, 2]  # 255 is void, not an object; id 2 kept although absent from frame 2
    frames, labels = src.clip(1, [0, 2])
    assert frames.shape == (2, H, W, 3) and labels.shape == (2, H, W)
    assert set(np.unique(labels[1])) == {0, 1, 255}
    with pytest.raises(IndexError):
        src.frame(0, 3)
    with pytest.raises(IndexError):
        src.labels(2, 0)


def test_davis_ids_consistent_across_frames(davis_root):
    src = DavisVideos(davis_root, "train")
    centroids = []
    for t in range(src.num_frames(1)):
        ys, xs = np.nonzero(src.labels(1, t) == 1)
        centroids.append(xs.mean())
    assert np.allclose(np.diff(centroids), 1.0)  # object 1 is the same square moving right


def test_davis_deterministic(davis_root):
    a, b = DavisVideos(davis_root), DavisVideos(davis_root)
    assert [a.name(i) for i in range(len(a))] == [b.name(i) for i in range(len(b))]
    np.testing.assert_array_equal(a.frame(0, 1), b.frame(0, 1))
    np.testing.assert_array_equal(a.frame(0, 1), a.frame(0, 1))
    np.testing.assert_array_equal(a.labels(1, 2), b.labels(1, 2))


def test_davis_errors_name_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DavisVideos(tmp_path / "nowhere")
    root = _write_davis(tmp_path / "d", {"bear": 2}, ["bear", "ghost"])
    with pytest.raises(FileNotFoundError, match=r"JPEGImages.480p.ghost"):
        DavisVideos(root)
    with pytest.raises(FileNotFoundError, match=r"val\.txt"):
        DavisVideos(root, "val")


# ----------------------------------------------------------------------------------------------- YouTube-VOS


def _write_ytvos(root: Path, *, n: int = 20, step: int = 5) -> Path:
    split = root / "train"
    meta: dict = {"videos": {}}
    for vid in ("zebra01", "apple02"):
        for t in range(n):
            write_frame(split / "JPEGImages" / vid / f"{t:05d}.jpg", _frame(t))
            if t % step == 0:  # sparse annotations
                write_mask(split / "Annotations" / vid / f"{t:05d}.png", _labels(t // step, with_second=t >= 10))
        meta["videos"][vid] = {
            "objects": {
                "1": {"category": "person", "frames": [f"{t:05d}" for t in range(0, n, step)]},
                "2": {"category": "dog", "frames": [f"{t:05d}" for t in range(10, n, step)]},
            }
        }
    (split / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def ytvos_root(tmp_path_factory) -> Path:
    return _write_ytvos(tmp_path_factory.mktemp("ytvos"))


def test_youtube_vos_sparse_annotations(ytvos_root):
    src = YouTubeVOSVideos(ytvos_root, "train")
    assert len(src) == 2 and [src.name(0), src.name(1)] == ["apple02", "zebra01"]
    assert src.num_frames(0) == 4  # frames 0, 5, 10, 15 only
    assert src.object_ids(0) == [1, 2]
    np.testing.assert_array_equal(src.labels(0, 1), _labels(1, with_second=False))
    np.testing.assert_array_equal(src.labels(0, 2), _labels(2, with_second=True))
    assert np.abs(src.frame(0, 2).astype(int) - _frame(10)).mean() < 3  # t=2 is file 00010
    present = set()
    for t in range(src.num_frames(0)):
        present |= set(np.unique(src.labels(0, t)).tolist())
    assert present - {0, 255} <= set(src.object_ids(0))


def test_youtube_vos_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        YouTubeVOSVideos(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"meta\.json"):
        YouTubeVOSVideos(tmp_path)
    (tmp_path / "train" / "meta.json").write_text(json.dumps({"videos": {"v1": {"objects": {"1": {}}}}}))
    with pytest.raises(FileNotFoundError, match=r"JPEGImages.v1"):
        YouTubeVOSVideos(tmp_path)


# ----------------------------------------------------------------------------------------------- SBD


def _write_sbd(root: Path, ids: list[str], *, split: list[str] | None = None) -> Path:
    (root / "img").mkdir(parents=True)
    (root / "inst").mkdir()
    for k, sid in enumerate(ids):
        write_frame(root / "img" / f"{sid}.jpg", _frame(k))
        seg = _labels(k)
        seg[seg == 2] = 3 + k  # instance ids need not be contiguous
        boundaries = np.empty((2,), object)  # a MATLAB cell of sparse maps in real SBD
        boundaries[0], boundaries[1] = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
        gt = {"Segmentation": seg, "Boundaries": boundaries, "Categories": np.array([15, 7], np.uint8)}
        scipy.io.savemat(root / "inst" / f"{sid}.mat", {"GTinst": gt})
    if split is not None:
        (root / "train.txt").write_text("\n".join(split) + "\n")
    return root


def test_sbd_mat_loads_like_real_sbd(tmp_path):
    root = _write_sbd(tmp_path, ["2008_000002"])
    gt = scipy.io.loadmat(root / "inst" / "2008_000002.mat", struct_as_record=False, squeeze_me=True)["GTinst"]
    assert gt.Segmentation.shape == (H, W) and gt.Segmentation.dtype == np.uint8


def test_sbd_images(tmp_path):
    ids = ["2008_000010", "2008_000002", "2008_000005"]
    root = _write_sbd(tmp_path / "a", ids, split=["2008_000005", "2008_000010"])
    src = SBDImages(root, "train")
    assert len(src) == 2 and [src.name(0), src.name(1)] == ["2008_000005", "2008_000010"]
    assert src.image(0).shape == (H, W, 3) and src.image(0).dtype == np.uint8
    labels = src.labels(1)
    assert labels.dtype == np.uint8 and labels.shape == (H, W)
    expected = _labels(0)
    expected[expected == 2] = 3
    np.testing.assert_array_equal(labels, expected)
    assert src.object_ids(1) == [1, 3]  # 255 (boundary) excluded
    everything = SBDImages(root, "val")  # no val.txt: every .mat, sorted
    assert [everything.name(i) for i in range(3)] == ["2008_000002", "2008_000005", "2008_000010"]
    videos = ImagesAsVideos(src)
    assert videos.num_frames(0) == 1 and videos.object_ids(0) == src.object_ids(0)
    np.testing.assert_array_equal(videos.labels(1, 0), labels)


def test_sbd_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"img"):
        SBDImages(tmp_path)
    root = _write_sbd(tmp_path / "b", ["x1"], split=["x1", "x2"])
    with pytest.raises(FileNotFoundError, match=r"inst.x2\.mat"):
        SBDImages(root)
    (root / "img" / "x1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"img.x1\.jpg"):
        SBDImages(root, "val")
    root = _write_sbd(tmp_path / "c", ["y1"])
    scipy.io.savemat(root / "inst" / "y1.mat", {"other": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"y1\.mat"):
        SBDImages(root).labels(0)


# ----------------------------------------------------------------------------------------------- tfds


def _mock_examples() -> list[dict]:
    examples = []
    for k, (t, h, w) in enumerate([(3, 12, 16), (2, 10, 14)]):
        segs = np.zeros((t, h, w, 1), np.uint8)
        for i in range(t):
            segs[i, 1:5, i : i + 4, 0] = 1
            segs[i, 6:9, 2:6, 0] = 2 + k
        frames = np.stack([np.full((h, w, 3), 10 * i + k, np.uint8) for i in range(t)])
        examples.append({
            "video": {"frames": frames, "segmentations": segs},
            "metadata": {"num_frames": np.int64(t), "video_name": f"vid{k}"},
        })
    return examples


def test_tfds_davis_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    examples = _mock_examples()
    seen_splits = []

    def as_data_source(self, split, **kwargs):
        seen_splits.append(split)
        return examples

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        src = TfdsDavisVideos("validation")
    assert seen_splits == ["validation"]
    assert len(src) == 2 and [src.name(0), src.name(1)] == ["vid0", "vid1"]
    assert [src.num_frames(0), src.num_frames(1)] == [3, 2]
    assert src.object_ids(0) == [1, 2] and src.object_ids(1) == [1, 3]
    f = src.frame(1, 1)
    assert f.shape == (10, 14, 3) and f.dtype == np.uint8 and (f == 11).all()
    np.testing.assert_array_equal(src.labels(0, 2), examples[0]["video"]["segmentations"][2, ..., 0])
    assert src.labels(0, 2).shape == (12, 16)
    frames, labels = src.clip(0, [0, 1, 2])
    assert frames.shape == (3, 12, 16, 3) and labels.shape == (3, 12, 16)
    with pytest.raises(IndexError):
        src.frame(1, 2)


def test_tfds_davis_rejects_mismatched_shapes():
    tfds = pytest.importorskip("tensorflow_datasets")
    bad = _mock_examples()[:1]
    bad[0]["video"]["segmentations"] = bad[0]["video"]["segmentations"][:, :5]
    with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **kw: bad):
        src = TfdsDavisVideos("train")
    with pytest.raises(ValueError, match="vid0"):
        src.frame(0, 0)


# ----------------------------------------------------------------------------------------------- concat


def test_concat_sources(davis_root, ytvos_root, tmp_path):
    davis, ytvos = DavisVideos(davis_root), YouTubeVOSVideos(ytvos_root)
    sbd = ImagesAsVideos(SBDImages(_write_sbd(tmp_path / "s", ["p", "q"])))
    mixed = ConcatVideoSource([davis, ytvos, sbd])
    assert len(mixed) == 6
    assert [mixed.name(i) for i in range(6)] == ["car", "bear", "apple02", "zebra01", "p", "q"]
    assert [mixed.num_frames(i) for i in range(6)] == [3, 4, 4, 4, 1, 1]
    np.testing.assert_array_equal(mixed.labels(3, 2), ytvos.labels(1, 2))
    np.testing.assert_array_equal(mixed.frame(5, 0), sbd.frame(1, 0))
    assert mixed.object_ids(4) == [1, 3]
    assert mixed.locate(2) == (ytvos, 0)
    with pytest.raises(IndexError):
        mixed.name(6)
    with pytest.raises(ValueError):
        ConcatVideoSource([])
