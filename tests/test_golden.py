"""Equivalence with the released PyTorch code: golden vectors of tests/data/reference at 256x448.

Weights come from the reference's NumPy recipe and go through our converter; inputs are the stored
arrays. Acceptance per array: ``max|x - golden| / max(1, max|golden|) <= 1e-4`` (reference README §5).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import data_path
from reference_weights import read_key_table, recipe_rule, recipe_state_dict

from atnet_jax.io.torch_weights import torch_to_flax
from atnet_jax.models import AnnotationNet, TransferNet, paper_model_config
from atnet_jax.models.preprocess import normalize_frames, pad_info_for, reflect_pad
from atnet_jax.models.transfer import local_correlation

TOLERANCE = 1e-4
pytestmark = pytest.mark.slow


def rel_err(x: np.ndarray, golden: np.ndarray) -> float:
    x, golden = np.asarray(x, np.float64), np.asarray(golden, np.float64)
    assert x.shape == golden.shape, (x.shape, golden.shape)
    return float(np.max(np.abs(x - golden)) / max(1.0, np.max(np.abs(golden))))


def nchw(x: jax.Array) -> np.ndarray:
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def nhwc(x: np.ndarray) -> jax.Array:
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def feature_arrays(prefix: str, x: jax.Array, step: int | None) -> dict[str, np.ndarray]:
    """The golden summaries of a feature map: per-channel mean/std (float64) and the ``::step`` subset."""
    x64 = np.asarray(x, np.float32).astype(np.float64)
    out = {f"{prefix}_mean": x64.mean(axis=(0, 1, 2)), f"{prefix}_std": x64.std(axis=(0, 1, 2))}
    if step is not None:
        out[f"{prefix}_sub"] = nchw(x)[:, ::step]
    return out


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(data_path("reference", "golden_atnet.npz"), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def state_dict() -> dict[str, np.ndarray]:
    return recipe_state_dict(read_key_table(data_path("reference", "atnet_state_dict_keys.tsv")))


@pytest.fixture(scope="module")
def variables(state_dict):
    return jax.tree.map(jnp.asarray, torch_to_flax(state_dict, paper_model_config()))


def check(results: dict[str, np.ndarray], golden: dict[str, np.ndarray]) -> None:
    errors = {name: rel_err(value, golden[name]) for name, value in results.items()}
    worst = max(errors, key=errors.get)
    print(f"{len(errors)} arrays, worst normalised error {errors[worst]:.2e} ({worst})")
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    assert not bad, f"arrays over tolerance {TOLERANCE}: {bad}"


def test_recipe_weights_match_checksums(state_dict, golden):
    assert list(state_dict) == list(golden["wcheck_keys"])
    for i, (key, value) in enumerate(state_dict.items()):
        assert recipe_rule(key, value.ndim) == golden["wcheck_rule"][i], key
        flat = value.reshape(-1).astype(np.float64)
        np.testing.assert_allclose(flat.sum(), golden["wcheck_sum"][i], rtol=1e-12, atol=1e-12, err_msg=key)
        first4 = np.zeros(4)
        first4[: min(4, flat.size)] = flat[:4]
        np.testing.assert_array_equal(first4, golden["wcheck_first4"][i], err_msg=key)


def test_preprocessing_is_bit_exact(golden):
    for f in range(3):
        img = golden[f"img_rgb_u8_f{f}"]
        pad = pad_info_for(*img.shape[:2])
        assert pad == tuple(map(tuple, golden["pad_info"]))
        x = reflect_pad(normalize_frames(img), pad)
        np.testing.assert_array_equal(x, np.transpose(golden[f"in_img_f{f}"][0], (1, 2, 0)))


@pytest.fixture(scope="module")
def anet_outputs(variables, golden):
    net = AnnotationNet(paper_model_config())
    run = jax.jit(functools.partial(net.apply, train=False))
    cases = {"anet_r1_f0": ("f0", "r1_f0"), "anet_r2_f0": ("f0", "r2_f0"), "anet_r1_f2": ("f2", "r1_f2")}
    return {
        case: run(variables["anet"], nhwc(golden[f"in_img_{img}"]), nhwc(golden[f"in_iact_{iact}"]))
        for case, (img, iact) in cases.items()
    }


@pytest.mark.parametrize("case", ["anet_r1_f0", "anet_r2_f0", "anet_r1_f2"])
def test_anet_matches_reference(case, anet_outputs, golden):
    logits, aux = anet_outputs[case]
    results = {f"{case}_logit": nchw(logits)}
    for level, step in (("r2", 16), ("r3", None), ("r4", None), ("r5", 64)):
        results.update(feature_arrays(f"{case}_enc_{level}", aux[level], step))
    results.update(feature_arrays(f"{case}_m2", aux["m2"], 64))
    results.update(feature_arrays(f"{case}_ind", aux["indicator"], 64))
    check(results, golden)


@pytest.fixture(scope="module")
def tnet_encodings(variables, golden):
    net = TransferNet(paper_model_config())
    encode = jax.jit(functools.partial(net.apply, method=TransferNet.encode))
    return {f: encode(variables["tnet"], nhwc(golden[f"in_img_f{f}"])) for f in range(3)}


def test_tnet_encoder_matches_reference(tnet_encodings, golden):
    results = {}
    for f, feats in tnet_encodings.items():
        for level, step in (("r2", 16), ("r3", None), ("r4", None), ("r5", 64)):
            results.update(feature_arrays(f"enc3_f{f}_{level}", feats[level], step))
    check(results, golden)


@pytest.mark.parametrize("n", [1, 2])
def test_tnet_matches_reference(n, variables, golden, anet_outputs, tnet_encodings):
    net = TransferNet(paper_model_config())
    frames = [0] if n == 1 else [0, 2]
    annotated_r5 = jnp.stack([tnet_encodings[f]["r5"] for f in frames])
    indicators = jnp.stack([anet_outputs[f"anet_r1_f{f}"][1]["indicator"] for f in frames])
    prev_prob = nhwc(golden["tnet_prev_prob"])
    np.testing.assert_allclose(
        np.asarray(prev_prob), np.asarray(jax.nn.sigmoid(anet_outputs["anet_r1_f0"][0])), atol=1e-5
    )
    decode = jax.jit(functools.partial(net.apply, method=TransferNet.decode))
    logits, aux = decode(variables["tnet"], tnet_encodings[1], annotated_r5, indicators,
                         tnet_encodings[0]["r2"], prev_prob)
    p = f"tnet_n{n}"
    results = {f"{p}_logit": nchw(logits), f"{p}_local": nchw(aux["local"]), "tnet_prev_ds": nchw(aux["prev_ds"])}
    results.update(feature_arrays(f"{p}_global", aux["global"], 64))
    results.update(feature_arrays(f"{p}_r5cat", aux["r5cat"], 64))
    results.update(feature_arrays(f"{p}_m2", aux["m2"], 64))
    check(results, golden)


@pytest.mark.parametrize("n", [1, 2])
def test_tnet_with_conv1x1_split_matches_reference(n, variables, golden, anet_outputs, tnet_encodings):
    """What sessions run: conv1x1's target half and the refine modules' skip maps cached with the frame's features,
    conv1x1's global half applied to the indicators before the global transfer (a linear layer commutes with the
    weighted sum)."""
    net = TransferNet(paper_model_config())
    frames = [0] if n == 1 else [0, 2]
    annotated_r5 = jnp.stack([tnet_encodings[f]["r5"] for f in frames])
    indicators = jnp.stack([anet_outputs[f"anet_r1_f{f}"][1]["indicator"] for f in frames])
    target = {k: tnet_encodings[1][k] for k in ("r2", "r5")}  # as encode_split gives it: no r3
    target["r5_fused"] = jax.jit(functools.partial(net.apply, method=TransferNet.fuse_target))(
        variables["tnet"], target["r5"])
    target.update(jax.jit(functools.partial(net.apply, method=TransferNet.skips))(variables["tnet"],
                                                                                   tnet_encodings[1]))
    fused = jax.jit(functools.partial(net.apply, method=TransferNet.fuse_global))(variables["tnet"], indicators)
    decode = jax.jit(functools.partial(net.apply, method=TransferNet.decode_split))
    logits, aux = decode(variables["tnet"], target, annotated_r5, fused, tnet_encodings[0]["r2"],
                         nhwc(golden["tnet_prev_prob"]))
    p = f"tnet_n{n}"
    results = {f"{p}_logit": nchw(logits), f"{p}_local": nchw(aux["local"])}
    results.update(feature_arrays(f"{p}_r5cat", aux["r5cat"], 64))
    results.update(feature_arrays(f"{p}_m2", aux["m2"], 64))
    check(results, golden)


def test_local_correlation_matches_reference(variables, golden, tnet_encodings):
    net = TransferNet(paper_model_config())
    features = jax.jit(functools.partial(net.apply, method=TransferNet.local_features))
    target = features(variables["tnet"], tnet_encodings[1]["r2"])
    prev = features(variables["tnet"], tnet_encodings[0]["r2"])
    corr = local_correlation(target, prev)
    channels = [0, 40, 80]
    results = feature_arrays("tnet_corr", corr, None)
    results["tnet_corr_sub"] = nchw(corr)[:, channels]
    results["tnet_corr_softmax_sub"] = nchw(jax.nn.softmax(corr, axis=1))[:, channels]
    check(results, golden)
