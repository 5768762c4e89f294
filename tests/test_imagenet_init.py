"""Encoder initialisation from ImageNet ResNet50 / SE-ResNet50 files, on fake full-size state dicts."""
from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from atnet_jax.models import paper_model_config
from atnet_jax.models.build import random_variables
from atnet_jax.training.imagenet_init import (
    detect_scheme,
    format_report,
    init_encoders_from_imagenet,
    init_encoders_from_state_dict,
    load_imagenet_state_dict,
)

ENCODERS = {"anet": "encoder_6ch", "tnet": "encoder_3ch"}
SE_BLOCKS = 3 + 4 + 6 + 3


def resnet50_shapes(se: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision ``resnet50`` (``se=False``) or Cadene ``se_resnet50`` (``se=True``)."""
    stem = "layer0." if se else ""
    shapes: dict[str, tuple[int, ...]] = {f"{stem}conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        shapes.update({f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn(f"{stem}bn1", 64)
    cin = 64
    for layer, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        out = 4 * width
        for i in range(blocks):
            p = f"layer{layer}.{i}."
            shapes[p + "conv1.weight"] = (width, cin if i == 0 else out, 1, 1)
            shapes[p + "conv2.weight"] = (width, width, 3, 3)
            shapes[p + "conv3.weight"] = (out, width, 1, 1)
            for j, c in ((1, width), (2, width), (3, out)):
                bn(f"{p}bn{j}", c)
            if se:
                shapes[p + "se_module.fc1.weight"] = (out // 16, out, 1, 1)
                shapes[p + "se_module.fc1.bias"] = (out // 16,)
                shapes[p + "se_module.fc2.weight"] = (out, out // 16, 1, 1)
                shapes[p + "se_module.fc2.bias"] = (out,)
            if i == 0:
                shapes[p + "downsample.0.weight"] = (out, cin, 1, 1)
                bn(p + "downsample.1", out)
        cin = out
    head = "last_linear" if se else "fc"
    shapes[f"{head}.weight"] = (1000, 2048)
    shapes[f"{head}.bias"] = (1000,)
    return shapes


def fake_state_dict(se: bool, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: np.array(7, np.int64) if k.endswith("num_batches_tracked") else rng.standard_normal(s, np.float32)
        for k, s in resnet50_shapes(se).items()
    }


def flax_leaf(key: str) -> tuple[str, ...] | None:
    """ImageNet key -> ``(collection, *path below the encoder)``; ``None`` for keys without a counterpart."""
    key = key.removeprefix("layer0.")
    if re.match(r"(fc|last_linear)\.|.*num_batches_tracked$|.*se_module\.fc[12]\.bias$", key):
        return None
    if key == "conv1.weight":
        return ("params", "STEM", "kernel")
    block = re.match(r"layer(\d)\.(\d+)\.(.*)$", key)
    modules = [f"res{int(block[1]) + 1}_{block[2]}"] if block else []
    rest = block[3] if block else key
    for old, new in (("se_module.fc1", "conv_down"), ("se_module.fc2", "conv_up"), ("downsample.", "downsample_")):
        rest = rest.replace(old, new)
    *names, leaf = rest.split(".")
    is_conv = re.fullmatch(r"conv\d|conv_(down|up)|downsample_0", names[-1]) is not None
    collection, name = {
        "weight": ("params", "kernel" if is_conv else "scale"),
        "bias": ("params", "bias"),
        "running_mean": ("batch_stats", "mean"),
        "running_var": ("batch_stats", "var"),
    }[leaf]
    return (collection, *modules, *names, name)


def get(tree: dict, path: tuple[str, ...]):
    for name in path:
        tree = tree[name]
    return tree


def flat(tree: dict) -> dict[tuple[str, ...], object]:
    return {tuple(p.key for p in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.fixture(scope="module")
def variables():
    return random_variables(paper_model_config())


@pytest.fixture(scope="module", params=["torchvision", "senet"])
def imagenet_file(request, tmp_path_factory):
    se = request.param == "senet"
    state = fake_state_dict(se, seed=1 + se)
    path = tmp_path_factory.mktemp("imagenet") / f"{request.param}.npz"
    np.savez(path, **state)
    return request.param, path, state


def test_loading_and_scheme_detection(imagenet_file):
    scheme, path, state = imagenet_file
    loaded = load_imagenet_state_dict(path)
    assert loaded.keys() == state.keys()
    assert detect_scheme(loaded, str(path)) == scheme


def test_encoders_get_the_imagenet_weights(variables, imagenet_file):
    scheme, file, state = imagenet_file
    before = flat(variables)
    new, report = init_encoders_from_imagenet(variables, file)

    assert flat(variables).keys() == before.keys()
    assert all(flat(variables)[k] is v for k, v in before.items()), "the input variables were modified"

    mapped = {k: flax_leaf(k) for k in state}
    mapped = {k: v for k, v in mapped.items() if v is not None}
    for net, encoder in ENCODERS.items():
        stem = f"conv0_{encoder.removeprefix('encoder_')}"
        changed = set()
        for key, (collection, *path) in mapped.items():
            path = [stem if name == "STEM" else name for name in path]
            full = (net, collection, encoder, *path)
            got = np.asarray(get(new, full))
            source = state[key].transpose(2, 3, 1, 0) if state[key].ndim == 4 else state[key]
            if path[0] == stem:
                np.testing.assert_array_equal(got[:, :, :3], source, err_msg=f"{net} {key}")
                np.testing.assert_array_equal(got[:, :, 3:], 0.0, err_msg=f"{net} stem: interaction channels")
            else:
                np.testing.assert_array_equal(got, source, err_msg=f"{net} {key}")
            changed.add(full)
        bias = (net, "params", encoder, stem, "bias")
        np.testing.assert_array_equal(np.asarray(get(new, bias)), 0.0)
        changed.add(bias)

        after = flat(new[net])
        se = {k for k in after if k[1] == encoder and k[-2] in ("conv_down", "conv_up")}
        assert len(se) == 2 * SE_BLOCKS
        if scheme == "senet":
            assert {(net, *k) for k in se} <= changed
        for path, leaf in after.items():
            if (net, *path) not in changed:
                assert leaf is before[(net, *path)], f"{net} {'/'.join(path)} changed"
        assert all(k[1] == encoder for k in after if (net, *k) in changed)
        assert sum(k[1] == encoder for k in after) == len(changed) + (len(se) if scheme == "torchvision" else 0)

        counts = report[net]
        assert counts["copied"] == len(changed) - 1
        assert counts["zeroed"] == 1
        assert len(counts["not_initialised"]) == (len(se) if scheme == "torchvision" else 0)
        assert counts["outside_encoder"] == sum(k[1] != encoder for k in after)
    assert report["scheme"] == scheme
    assert len(report["dropped"]) == (2 * SE_BLOCKS if scheme == "senet" else 0)
    assert str(file) in format_report(report)


def test_only_the_requested_network_changes(variables, imagenet_file):
    _, path, _ = imagenet_file
    new, report = init_encoders_from_imagenet(variables, path, networks=("tnet",))
    assert new["anet"] is variables["anet"]
    assert "anet" not in report and report["tnet"]["copied"] > 0


def test_unknown_naming_names_the_file_and_keys(variables, tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, **{"backbone.stem.weight": np.zeros((64, 3, 7, 7), np.float32), "head.weight": np.zeros(3)})
    with pytest.raises(ValueError, match=r"other\.npz: not an ImageNet .*'backbone\.stem\.weight'"):
        init_encoders_from_imagenet(variables, path)


def test_misshaped_missing_and_unused_keys_are_named(variables, tmp_path):
    state = fake_state_dict(se=False, seed=3)
    bad = dict(state, **{"layer3.2.conv2.weight": np.zeros((256, 256, 1, 1), np.float32)})
    path = tmp_path / "bad.npz"
    np.savez(path, **bad)
    with pytest.raises(ValueError, match=r"bad\.npz: key 'layer3\.2\.conv2\.weight' has shape \(256, 256, 1, 1\), "
                                         r"but .* needs \(256, 256, 3, 3\)"):
        init_encoders_from_imagenet(variables, path)

    missing = dict(state)
    del missing["layer4.1.bn2.running_var"]
    with pytest.raises(ValueError, match=r"missing key 'layer4\.1\.bn2\.running_var'"):
        init_encoders_from_state_dict(variables, missing)

    deeper = dict(state, **{"layer3.6.conv1.weight": np.zeros((256, 1024, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"do not use .*'layer3\.6\.conv1\.weight'"):
        init_encoders_from_state_dict(variables, deeper)


def test_tiny_config_is_a_shape_error(tiny_config):
    tiny = random_variables(tiny_config, networks=("tnet",))
    with pytest.raises(ValueError, match=r"key '[\w.]+' has shape \([\d, ]+\), but tnet .* needs \([\d, ]+\)"):
        init_encoders_from_state_dict(tiny, fake_state_dict(se=True, seed=4), networks=("tnet",))
