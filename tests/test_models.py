"""A-Net and T-Net: full-size parameter counts, shapes, batching and transfer-option invariants (tiny widths)."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from atnet_jax.models import AnnotationNet, ModelConfig, TransferNet, paper_model_config
from atnet_jax.models.build import abstract_variables, count_params

H, W = 64, 96


def test_full_size_parameter_counts():
    variables = abstract_variables(paper_model_config())
    assert count_params(variables["anet"]) == 72_325_953
    assert count_params(variables["tnet"]) == 64_174_977


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="res5_dilations"):
        ModelConfig(res5_dilations=(2, 4))
    with pytest.raises(ValueError, match="local_softmax"):
        ModelConfig(local_softmax="rows")
    with pytest.raises(ValueError, match="global_softmax"):
        ModelConfig(global_softmax="columns")
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"widht": 3})
    cfg = paper_model_config()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def _inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = jnp.asarray(rng.standard_normal((batch, H, W, 3)), jnp.float32)
    interaction = jnp.asarray(rng.random((batch, H, W, 3)), jnp.float32)
    return image, interaction


@pytest.fixture(scope="module")
def anet_apply(tiny_config):
    return jax.jit(functools.partial(AnnotationNet(tiny_config).apply, train=False))


def test_anet_shapes_and_batch_independence(tiny_config, tiny_variables, anet_apply):
    image, interaction = _inputs(2)
    logits, aux = anet_apply(tiny_variables["anet"], image, interaction)
    c2, c3, c4, c5 = tiny_config.out_channels
    assert logits.shape == (2, H, W, 1) and logits.dtype == jnp.float32
    assert aux["r2"].shape == (2, H // 4, W // 4, c2)
    assert aux["r3"].shape == (2, H // 8, W // 8, c3)
    assert aux["r4"].shape == (2, H // 16, W // 16, c4)
    assert aux["r5"].shape == (2, H // 16, W // 16, c5)
    assert aux["m2"].shape == (2, H // 4, W // 4, 2 * tiny_config.decoder_width)
    assert aux["indicator"].shape == (2, H // 16, W // 16, c5)
    assert bool(jnp.all(jnp.isfinite(logits)))
    # Eval mode: each object's output depends on its own inputs only.
    single, _ = anet_apply(tiny_variables["anet"], image[1:], interaction[1:])
    np.testing.assert_allclose(logits[1:], single, atol=1e-5)
    # ...and on the interaction maps.
    other, _ = anet_apply(tiny_variables["anet"], image, 1.0 - interaction)
    assert float(jnp.max(jnp.abs(other - logits))) > 1e-4


def test_anet_train_mode_updates_batch_stats(tiny_config, tiny_variables):
    image, interaction = _inputs(2, seed=1)
    net = AnnotationNet(tiny_config)
    train_apply = jax.jit(functools.partial(net.apply, train=True, mutable=["batch_stats"]))
    (logits, _), updates = train_apply(tiny_variables["anet"], image, interaction, rngs={"dropout": jax.random.key(0)})
    assert logits.shape == (2, H, W, 1)
    old = jax.tree.leaves(tiny_variables["anet"]["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert len(old) == len(new) and any(float(jnp.max(jnp.abs(a - b))) > 0 for a, b in zip(old, new))


def _tnet_inputs(tiny_config, tiny_variables, n_frames: int, batch: int):
    net = TransferNet(tiny_config)
    encode = jax.jit(functools.partial(net.apply, method=TransferNet.encode))
    rng = np.random.default_rng(5)
    frames = jnp.asarray(rng.standard_normal((n_frames + 2, 1, H, W, 3)), jnp.float32)
    feats = [encode(tiny_variables["tnet"], f) for f in frames]
    annotated_r5 = jnp.stack([f["r5"] for f in feats[:n_frames]])
    c5 = tiny_config.out_channels[3]
    indicators = jnp.asarray(rng.standard_normal((n_frames, batch, H // 16, W // 16, c5)), jnp.float32)
    prev_prob = jnp.asarray(rng.random((batch, H, W, 1)), jnp.float32)
    return net, feats[-1], annotated_r5, indicators, feats[-2]["r2"], prev_prob, frames[-1]


def test_tnet_shapes_and_broadcast_of_frame_features(tiny_config, tiny_variables):
    net, target, annotated_r5, indicators, prev_r2, prev_prob, _ = _tnet_inputs(tiny_config, tiny_variables, 2, 3)
    decode = jax.jit(functools.partial(net.apply, method=TransferNet.decode))
    logits, aux = decode(tiny_variables["tnet"], target, annotated_r5, indicators, prev_r2, prev_prob)
    assert logits.shape == (3, H, W, 1) and logits.dtype == jnp.float32
    assert aux["local"].shape == (3, H // 4, W // 4, 1)
    assert aux["global"].shape == indicators.shape[1:]
    assert aux["r5cat"].shape == indicators.shape[1:]
    # Frame features given once (batch 1) equal the same features repeated per object.
    rep = lambda x, axis=0: jnp.repeat(x, 3, axis=axis)  # noqa: E731
    logits_rep, _ = decode(
        tiny_variables["tnet"], jax.tree.map(rep, target), rep(annotated_r5, 1), indicators, rep(prev_r2), prev_prob
    )
    np.testing.assert_allclose(logits, logits_rep, atol=1e-5)
    # Objects only interact through shared frame features: object 0 alone gives the same result.
    alone, _ = decode(tiny_variables["tnet"], target, annotated_r5, indicators[:, :1], prev_r2, prev_prob[:1])
    np.testing.assert_allclose(logits[:1], alone, atol=1e-5)


def test_tnet_frame_mask_equals_fewer_frames(tiny_config, tiny_variables):
    net, target, annotated_r5, indicators, prev_r2, prev_prob, _ = _tnet_inputs(tiny_config, tiny_variables, 3, 2)
    decode = jax.jit(functools.partial(net.apply, method=TransferNet.decode))
    mask = jnp.array([True, False, True])
    masked, _ = decode(tiny_variables["tnet"], target, annotated_r5, indicators, prev_r2, prev_prob, mask)
    keep = np.array([0, 2])
    fewer, _ = decode(tiny_variables["tnet"], target, annotated_r5[keep], indicators[keep], prev_r2, prev_prob)
    np.testing.assert_allclose(masked, fewer, atol=1e-5)
    every, _ = decode(tiny_variables["tnet"], target, annotated_r5, indicators, prev_r2, prev_prob)
    assert float(jnp.max(jnp.abs(every - masked))) > 1e-5


def test_tnet_call_is_encode_then_decode(tiny_config, tiny_variables):
    net, target, annotated_r5, indicators, prev_r2, prev_prob, image = _tnet_inputs(tiny_config, tiny_variables, 1, 2)
    whole, _ = jax.jit(net.apply)(tiny_variables["tnet"], image, annotated_r5, indicators, prev_r2, prev_prob)
    parts, _ = jax.jit(functools.partial(net.apply, method=TransferNet.decode))(
        tiny_variables["tnet"], target, annotated_r5, indicators, prev_r2, prev_prob
    )
    np.testing.assert_allclose(whole, parts, atol=1e-5)


@pytest.mark.parametrize("local_softmax,global_softmax", [("window", "annotated"), ("height", "annotated")])
def test_paper_text_options_run(tiny_config, tiny_variables, local_softmax, global_softmax):
    cfg = dataclasses.replace(tiny_config, local_max_displacement=4, local_softmax=local_softmax,
                              global_softmax=global_softmax)
    net, target, annotated_r5, indicators, prev_r2, prev_prob, _ = _tnet_inputs(cfg, tiny_variables, 1, 1)
    logits, aux = jax.jit(functools.partial(net.apply, method=TransferNet.decode))(
        tiny_variables["tnet"], target, annotated_r5, indicators, prev_r2, prev_prob
    )
    assert bool(jnp.all(jnp.isfinite(logits)))
    if local_softmax == "window":  # a convex combination of in-bounds probabilities
        assert float(aux["local"].min()) >= 0.0 and float(aux["local"].max()) <= float(prev_prob.max()) + 1e-6


def test_bfloat16_compute_keeps_float32_outputs(tiny_config, tiny_variables):
    cfg = dataclasses.replace(tiny_config, dtype="bfloat16")
    image, interaction = _inputs(1, seed=2)
    logits, _ = jax.jit(AnnotationNet(cfg).apply)(tiny_variables["anet"], image, interaction)
    ref, _ = jax.jit(AnnotationNet(tiny_config).apply)(tiny_variables["anet"], image, interaction)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, ref, atol=0.1)


@pytest.mark.parametrize("mask", [None, (True, False, True)])
def test_conv1x1_split_equals_the_unsplit_network(tiny_config, tiny_variables, mask):
    """conv1x1 is linear: its target half (with the bias) once per frame, its global half once per annotated frame
    and object before the global transfer's weighted sum, give the unsplit layer's output."""
    net, target, annotated_r5, indicators, prev_r2, prev_prob, _ = _tnet_inputs(tiny_config, tiny_variables, 3, 2)
    frame_mask = None if mask is None else jnp.array(mask)
    v = tiny_variables["tnet"]
    whole, aux = jax.jit(functools.partial(net.apply, method=TransferNet.decode))(
        v, target, annotated_r5, indicators, prev_r2, prev_prob, frame_mask)
    fused = {**target, "r5_fused": net.apply(v, target["r5"], method=TransferNet.fuse_target),
             **net.apply(v, target, method=TransferNet.skips)}
    fused_ind = net.apply(v, indicators, method=TransferNet.fuse_global)
    split, aux_split = jax.jit(functools.partial(net.apply, method=TransferNet.decode_split))(
        v, fused, annotated_r5, fused_ind, prev_r2, prev_prob, frame_mask)
    # Independent check of the split in NumPy: W_t t + b + W_g g on the unsplit layer's own inputs.
    kernel = np.asarray(v["params"]["conv1x1"]["kernel"])[0, 0]
    c5 = target["r5"].shape[-1]
    expected = (np.asarray(target["r5"]) @ kernel[:c5] + np.asarray(aux["global"]) @ kernel[c5:]
                + np.asarray(v["params"]["conv1x1"]["bias"]))
    np.testing.assert_allclose(aux["r5cat"], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(aux_split["r5cat"], aux["r5cat"], rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(split, whole, rtol=1e-4, atol=1e-4 * float(jnp.abs(whole).max()))


def _conv3x3(x: np.ndarray, params: dict) -> np.ndarray:
    """A 3x3 conv with bias, padding 1, straight from a Flax ``Conv``'s parameters (NumPy, float64)."""
    kernel, bias = np.asarray(params["kernel"], np.float64), np.asarray(params["bias"], np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    return sum(padded[:, i : i + h, j : j + w] @ kernel[i, j] for i in range(3) for j in range(3)) + bias


def test_skip_maps_are_the_refine_modules_skip_branches(tiny_config, tiny_variables):
    """``encode_split``'s s3 and s2 against the refine modules' skip branch written out in NumPy from the
    released parameter names: ``s = FS1(f); s + FS3(relu(FS2(relu(s))))`` on r3 and r2."""
    net, _, _, _, _, _, image = _tnet_inputs(tiny_config, tiny_variables, 1, 1)
    v = tiny_variables["tnet"]
    feats = jax.jit(functools.partial(net.apply, method=TransferNet.encode))(v, image)
    split = jax.jit(functools.partial(net.apply, method=TransferNet.encode_split))(v, image)
    assert set(split) == {"r2", "r5", "r5_fused", "s3", "s2"}
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    for name, level in (("s3", "r3"), ("s2", "r2")):
        p = v["params"]["decoder_prop"]["RF" + level[1]]
        s = _conv3x3(np.asarray(feats[level], np.float64), p["convFS1"])
        s = s + _conv3x3(relu(_conv3x3(relu(s), p["convFS2"])), p["convFS3"])
        assert split[name].shape == (1, *feats[level].shape[1:3], tiny_config.decoder_width)
        np.testing.assert_allclose(split[name], s, rtol=1e-5, atol=1e-5 * np.abs(s).max())
    np.testing.assert_array_equal(split["r2"], feats["r2"])


@pytest.mark.parametrize("mask", [None, (True, False, True)])
def test_step_with_cached_skip_maps_equals_the_unsplit_decode(tiny_config, tiny_variables, mask):
    """What a session runs (``encode`` once per frame with the skip maps, then ``step`` and ``step_chains`` read
    them) gives the unsplit ``decode``'s probabilities (skip branches recomputed in the decode) within 1e-5."""
    from atnet_jax.models.predictor import ATNetPredictor

    net, target, annotated_r5, indicators, prev_r2, prev_prob, image = _tnet_inputs(tiny_config, tiny_variables, 3, 2)
    frame_mask = jnp.ones((3,), bool) if mask is None else jnp.array(mask)
    decode = jax.jit(functools.partial(net.apply, method=TransferNet.decode))
    logits, _ = decode(tiny_variables["tnet"], target, annotated_r5, indicators, prev_r2, prev_prob, frame_mask)
    expected = np.asarray(jax.nn.sigmoid(logits))
    assert expected.std() > 1e-2  # the outputs vary: a difference in the skip maps would show

    predictor = ATNetPredictor(tiny_variables, tiny_config)
    cached = predictor.encode(image)
    assert "r3" not in cached  # read by the skip branch alone
    np.testing.assert_allclose(cached["r2"], target["r2"], rtol=1e-6, atol=1e-6)
    fused = predictor.fuse(indicators)
    step = predictor.step(cached, annotated_r5, fused, frame_mask, prev_r2, prev_prob)
    np.testing.assert_allclose(predictor.probabilities(step), expected, atol=1e-5, rtol=0)
    chains = [predictor.probabilities(out) for out in predictor.step_chains(
        [cached, cached], annotated_r5, fused, frame_mask, [prev_r2, target["r2"]], [prev_prob, prev_prob[::-1]])]
    np.testing.assert_allclose(chains[0], expected, atol=1e-5, rtol=0)
    other, _ = decode(tiny_variables["tnet"], target, annotated_r5, indicators, target["r2"], prev_prob[::-1],
                      frame_mask)
    np.testing.assert_allclose(chains[1], jax.nn.sigmoid(other), atol=1e-5, rtol=0)
