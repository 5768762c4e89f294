"""Tests for atnet_jax.data.pipeline: example contents, determinism, checkpointable iterators, sharding."""
from __future__ import annotations

import numpy as np
import pytest

from atnet_jax.data.pipeline import AnetExamples, Augment, TnetExamples, make_loader
from atnet_jax.data.sources import DavisVideos
from atnet_jax.data.synthetic import write_dataset
from atnet_jax.models.preprocess import normalize_frames

SIZE = (48, 64)


class ArrayImages:
    """A minimal in-memory ``ImageSource``: one square object per image."""

    def __init__(self, n: int = 2):
        rng = np.random.default_rng(0)
        self.imgs = rng.integers(0, 256, (n, 40, 50, 3), dtype=np.uint8)
        self.labs = np.zeros((n, 40, 50), np.uint8)
        self.labs[:, 10:30, 15:35] = 1
        self.labs[:, 0:2] = 255

    def __len__(self) -> int:
        return len(self.imgs)

    def image(self, i: int) -> np.ndarray:
        return self.imgs[i]

    def labels(self, i: int) -> np.ndarray:
        return self.labs[i]

    def object_ids(self, i: int) -> list[int]:
        return [1]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    # 4 videos: 3 listed as train (read here), 1 as val
    root = write_dataset(tmp_path_factory.mktemp("synth") / "davis", videos=4, num_frames=8, height=64, width=96)
    return DavisVideos(root)


@pytest.fixture(scope="module")
def anet(videos):
    return AnetExamples(videos, ArrayImages(), size=SIZE, seed=0)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _binary(x):
    return set(np.unique(x).tolist()) <= {0.0, 1.0}


def test_anet_example_contents(anet):
    assert len(anet) == 3 * 8 + 2
    for key in (0, 13, 24, 25, 26 + 5):  # video frames, the two images, a second-epoch key
        ex = anet[key]
        assert set(ex) == {"image", "interaction", "target", "valid"}
        for name, channels in (("image", 3), ("interaction", 3), ("target", 1), ("valid", 1)):
            assert ex[name].shape == (*SIZE, channels) and ex[name].dtype == np.float32, name
        assert ex["image"].min() >= normalize_frames(np.zeros(3, np.uint8)).min() - 1e-6
        assert ex["image"].max() <= normalize_frames(np.full(3, 255, np.uint8)).max() + 1e-6
        assert 0 <= ex["interaction"].min() and ex["interaction"].max() <= 1
        assert _binary(ex["target"]) and _binary(ex["valid"])
        assert ex["target"].sum() > 0, key  # an object present in the frame is the target
        assert not (ex["target"] * (1 - ex["valid"])).any()  # the target is never void
        prev, pos = ex["interaction"][..., 0], ex["interaction"][..., 1]
        assert np.all(prev == 0.5) or _binary(prev)  # round 1 or a deformed mask
        assert pos.max() > 0  # clicks or a positive scribble


def test_anet_image_padding_is_void(anet):
    # The 40x50 images have void rows at the top; zoomed out, padding appears too: both are valid == 0.
    keys = [24 + 26 * e for e in range(6)] + [25 + 26 * e for e in range(6)]
    assert any((anet[k]["valid"] == 0).any() for k in keys)


def test_tnet_example_contents(videos):
    tnet = TnetExamples(videos, size=SIZE, seed=3)
    assert len(tnet) == 3
    ex = tnet[4]
    assert set(ex) == {"frames", "targets", "valid", "interaction"}
    assert ex["frames"].shape == (5, *SIZE, 3) and ex["frames"].dtype == np.float32
    assert ex["targets"].shape == ex["valid"].shape == (5, *SIZE, 1)
    assert ex["interaction"].shape == (*SIZE, 3) and ex["interaction"].dtype == np.float32
    assert _binary(ex["targets"]) and _binary(ex["valid"])
    assert ex["targets"][0].sum() > 0
    assert not np.array_equal(ex["frames"][0], ex["frames"][1])  # different frames of the video
    with pytest.raises(ValueError):
        TnetExamples(_Short(videos), size=SIZE, seed=0)


class _Short(DavisVideos):
    def __init__(self, base):
        self.__dict__.update(base.__dict__)

    def num_frames(self, i: int) -> int:
        return 4


def test_augment_keeps_the_object_and_shares_the_view():
    aug = Augment((32, 32))
    mask = np.zeros((60, 80), bool)
    mask[5:12, 60:75] = True  # small object near a corner
    labels = np.where(mask, 2, 0).astype(np.uint8)
    image = np.zeros((60, 80, 3), np.uint8)
    image[mask] = 200
    for s in range(20):
        m = aug.matrix(mask, np.random.default_rng(s))
        img, lab = aug.apply(m, image, labels)
        assert (lab == 2).any(), s
        # Image and labels warped together: object pixels of the labels are bright in the image.
        assert img[lab == 2].mean() > 150


def test_examples_are_deterministic_and_seeded(videos, anet):
    again = AnetExamples(videos, ArrayImages(), size=SIZE, seed=0)
    other = AnetExamples(videos, ArrayImages(), size=SIZE, seed=1)
    _assert_same([anet[5], anet[30]], [again[5], again[30]])
    assert not np.array_equal(anet[5]["image"], other[5]["image"])
    assert not np.array_equal(anet[5]["image"], anet[5 + len(anet)]["image"])  # a new view each epoch


def test_loader_determinism_and_seed(anet):
    a = _take(iter(make_loader(anet, batch_size=4, seed=7)), 3)
    b = _take(iter(make_loader(anet, batch_size=4, seed=7)), 3)
    c = _take(iter(make_loader(anet, batch_size=4, seed=8)), 3)
    _assert_same(a, b)
    assert a[0]["image"].shape == (4, *SIZE, 3) and a[0]["target"].shape == (4, *SIZE, 1)
    assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c))


def _keys_seen(loader_kwargs, n_batches, batch_size=1):
    """Example keys a loader visits, recovered by reading keys through a key-returning source."""
    ds = make_loader(_KeySource(26), batch_size=batch_size, **loader_kwargs)
    return [int(k) for b in _take(iter(ds), n_batches) for k in b["key"]]


class _KeySource:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int) -> dict[str, np.ndarray]:
        return {"key": np.int64(key)}


def test_epochs_cover_every_element_once_and_reshuffle():
    keys = _keys_seen({"seed": 0}, 52)
    first, second = keys[:26], keys[26:]
    assert sorted(first) == list(range(26))
    assert sorted(k - 26 for k in second) == list(range(26))  # epoch 1 keys, every element once
    assert first != [k - 26 for k in second] and first != list(range(26))
    assert _keys_seen({"seed": 0, "shuffle": False}, 3) == [0, 1, 2]
    assert len(_keys_seen({"seed": 0, "num_epochs": 1}, 26)) == 26
    with pytest.raises(StopIteration):
        _keys_seen({"seed": 0, "num_epochs": 1}, 27)


def test_shards_are_disjoint_and_cover_the_epoch():
    shards = [_keys_seen({"seed": 5, "shard_index": s, "shard_count": 3}, 8) for s in range(3)]
    sets = [set(s) for s in shards]
    assert all(len(s) == 8 for s in sets)
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) <= set(range(26))
    with pytest.raises(ValueError):
        make_loader(_KeySource(26), batch_size=1, seed=0, shard_index=3, shard_count=3)


def test_iterator_state_resumes_at_the_same_batch(anet):
    it = iter(make_loader(anet, batch_size=3, seed=2))
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 2)
    fresh = iter(make_loader(anet, batch_size=3, seed=2))
    fresh.set_state(state)
    _assert_same(_take(fresh, 2), expected)


@pytest.mark.slow
def test_workers_give_the_same_batches_and_state(anet):
    ref = iter(make_loader(anet, batch_size=2, seed=4))
    expected = _take(ref, 5)
    it = iter(make_loader(anet, batch_size=2, seed=4, worker_count=2))
    try:
        _assert_same(_take(it, 3), expected[:3])
        state = it.get_state()
    finally:
        it.close()
    resumed = iter(make_loader(anet, batch_size=2, seed=4, worker_count=2))  # the state needs the same count
    try:
        resumed.set_state(state)
        _assert_same(_take(resumed, 2), expected[3:])
    finally:
        resumed.close()
