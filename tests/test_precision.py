"""The reduced-precision option (``precision="bf16"``): bfloat16 convolutions and matmuls, float32 batch norm,
softmax and probabilities.

Its accuracy cost against the golden vectors of tests/data/reference (the released code in float32, 256x448,
full-size networks), as probabilities (sigmoid of the logits) through the predictor a session runs: measured on an
x86-64 CPU, A-Net max 0.0019 (mean 0.0004), T-Net max 0.026 (mean 0.0012), T-Net fed by bf16 A-Net and encoder
outputs. The documented tolerances below leave about 2x of margin.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from test_golden import golden, nchw, nhwc, state_dict, variables  # noqa: F401 (fixtures)

from atnet_jax import cli
from atnet_jax.inference.session import Session
from atnet_jax.models import paper_model_config
from atnet_jax.models.predictor import ATNetPredictor

# Max and mean |p_bf16 - p_golden| of the probabilities, per network (README: "Reduced precision").
TOLERANCE = {"anet": (0.01, 0.002), "tnet": (0.05, 0.005)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def _check(name: str, probabilities: np.ndarray, golden_logits: np.ndarray) -> None:
    assert probabilities.dtype == np.float32
    diff = np.abs(probabilities.astype(np.float64) - _sigmoid(golden_logits))
    print(f"{name}: max |dp| {diff.max():.2e}, mean {diff.mean():.2e}")
    most, mean = TOLERANCE[name]
    assert diff.max() <= most and diff.mean() <= mean
    assert diff.max() > 1e-5, "bf16 gave float32's result: the precision was not applied"


@pytest.mark.slow
def test_bf16_stays_within_its_tolerance_on_the_golden_vectors(variables, golden):  # noqa: F811
    predictor = ATNetPredictor(variables, paper_model_config(), precision="bf16")
    outputs, indicator = predictor.annotate(nhwc(golden["in_img_f0"]), nhwc(golden["in_iact_r1_f0"]))
    _check("anet", nchw(predictor.probabilities(outputs)), golden["anet_r1_f0_logit"])

    prev, target = (predictor.encode(nhwc(golden[f"in_img_f{f}"])) for f in (0, 1))
    outputs = predictor.step(target, prev["r5"][None], predictor.fuse(indicator[None]), jnp.ones((1,), bool),
                             prev["r2"], nhwc(golden["tnet_prev_prob"]))
    _check("tnet", nchw(predictor.probabilities(outputs)), golden["tnet_n1_logit"])


def test_bf16_session_keeps_float32_probabilities(tiny_config, tiny_variables):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    positive = np.zeros((1, 48, 64), np.float32)
    positive[0, 20:28, 24:40] = 1
    sessions = {p: Session(frames, ATNetPredictor(tiny_variables, tiny_config, precision=p), num_objects=1)
                for p in ("float32", "bf16")}
    # bf16 features (encoder maps, skip maps) spilled to disk come back bit for bit
    sessions["spilled"] = Session(frames, ATNetPredictor(tiny_variables, tiny_config, precision="bf16"),
                                  num_objects=1, feature_cache_bytes=1)
    for session in sessions.values():
        session.interact_maps(1, positive, np.zeros_like(positive))
    half, full, spilled = (np.stack([np.asarray(sessions[p].probabilities[t]) for t in range(4)])
                           for p in ("bf16", "float32", "spilled"))
    assert half.dtype == full.dtype == np.float32
    assert 0 < np.max(np.abs(half - full)) < 0.05
    assert sessions["spilled"].features._disk
    np.testing.assert_array_equal(spilled, half)


def test_precision_option():
    assert ATNetPredictor({}, paper_model_config(), precision="bf16").config.dtype == "bfloat16"
    assert ATNetPredictor({}, paper_model_config()).config.dtype == "float32"
    with pytest.raises(ValueError, match="precision must be one of float32, bf16"):
        ATNetPredictor({}, paper_model_config(), precision="fp16")
    from atnet_jax import evaluate, infer
    from atnet_jax.studio import __main__ as studio

    for module, required in ((infer, []), (evaluate, ["--output", "x"]), (studio, [])):
        parser = module.build_parser()
        assert parser.parse_args(["--precision", "bf16", *required]).precision == "bf16"
        assert parser.parse_args(required).precision == "float32"
    assert cli.PRECISIONS == ("float32", "bf16")
