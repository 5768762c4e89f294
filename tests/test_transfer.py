"""Local and global transfer kernels: loop references, golden vectors, invariants, gradients, memory."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import data_path

from atnet_jax.models.transfer import global_transfer, local_correlation, local_transfer, shift_windows

TOL = 1e-5


# ----------------------------------------------------------------------------- NumPy references (float64)

def _displacements(md: int, stride: int) -> list[tuple[int, int]]:
    steps = range(-md, md + 1, stride)
    return [(dy, dx) for dy in steps for dx in steps]  # dy slow, dx fast


def ref_correlation(t: np.ndarray, p: np.ndarray, md: int, stride: int) -> np.ndarray:
    t, p = t.astype(np.float64), p.astype(np.float64)
    b, h, w, c = t.shape
    disp = _displacements(md, stride)
    out = np.zeros((b, h, w, len(disp)))
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                for k, (dy, dx) in enumerate(disp):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        out[bi, y, x, k] = np.dot(t[bi, y, x], p[bi, y + dy, x + dx]) / c
    return out


def ref_shift(prob: np.ndarray, md: int, stride: int) -> np.ndarray:
    b, h, w = prob.shape
    disp = _displacements(md, stride)
    out = np.zeros((b, h, w, len(disp)))
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                for k, (dy, dx) in enumerate(disp):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        out[bi, y, x, k] = prob[bi, y + dy, x + dx]
    return out


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ref_local_transfer(t, p, prob, md, stride, softmax_axis):
    corr = ref_correlation(t, p, md, stride)
    weights = _softmax(corr, axis=1 if softmax_axis == "height" else 3)
    return (weights * ref_shift(prob.astype(np.float64), md, stride)).sum(-1, keepdims=True)


def ref_global_transfer(anno, targ, ind, softmax_axis, frame_mask=None):
    """anno [N, B, h, w, C], targ [B, h, w, C], ind [N, B, h, w, Ci] -> [B, h, w, Ci], loop over frames."""
    n, b, h, w, c = anno.shape
    valid = [True] * n if frame_mask is None else list(frame_mask)
    out = np.zeros((b, h * w, ind.shape[-1]))
    for bi in range(b):
        t = targ[bi].reshape(h * w, c).astype(np.float64)
        for i in range(n):
            if not valid[i]:
                continue
            a = anno[i, bi].reshape(h * w, c).astype(np.float64)
            sim = a @ t.T  # [annotated position, target position]
            attn = _softmax(sim, axis=1 if softmax_axis == "target" else 0)
            out[bi] += attn.T @ ind[i, bi].reshape(h * w, -1).astype(np.float64) / sum(valid)
    return out.reshape(b, h, w, -1)


def _rand(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _uniform(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _close(actual, expected, tol=TOL):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected).max() / max(1.0, np.abs(expected).max())
    assert err <= tol, f"normalised max error {err:.3g} > {tol}"


# ----------------------------------------------------------------------------- local transfer vs loops

# (max_displacement, stride, B, H, W, C): released 8/2, paper 4/2 on odd sizes, stride 1 and 3, window
# larger than the map.
LOCAL_CASES = [(8, 2, 1, 12, 16, 8), (4, 2, 2, 11, 13, 5), (3, 1, 1, 5, 7, 3), (6, 3, 1, 8, 10, 3),
               (4, 2, 1, 3, 5, 4)]


@pytest.mark.parametrize("md, stride, b, h, w, c", LOCAL_CASES)
def test_local_kernels_match_loop_reference(md, stride, b, h, w, c):
    t, p, prob = _rand(1, b, h, w, c), _rand(2, b, h, w, c), _uniform(3, b, h, w)
    k = (2 * md // stride + 1) ** 2
    corr = local_correlation(t, p, max_displacement=md, stride=stride)
    assert corr.shape == (b, h, w, k)
    _close(corr, ref_correlation(t, p, md, stride))
    _close(shift_windows(prob, max_displacement=md, stride=stride), ref_shift(prob, md, stride))
    for axis in ("height", "window"):
        out = local_transfer(t, p, prob, max_displacement=md, stride=stride, softmax_axis=axis)
        assert out.shape == (b, h, w, 1) and out.dtype == jnp.float32
        _close(out, ref_local_transfer(t, p, prob, md, stride, axis))


def test_local_correlation_is_bilinear_mean():
    t, p = _rand(4, 1, 6, 8, 4), _rand(5, 1, 6, 8, 4)
    base = np.asarray(local_correlation(t, p, max_displacement=2, stride=1))
    _close(local_correlation(3.0 * t, p, max_displacement=2, stride=1), 3.0 * base)
    # Mean, not sum, over channels: duplicating the channels leaves it unchanged.
    t2, p2 = np.concatenate([t, t], -1), np.concatenate([p, p], -1)
    _close(local_correlation(t2, p2, max_displacement=2, stride=1), base)
    # Zero displacement (centre channel) of a map with itself is the mean square.
    centre = np.asarray(local_correlation(t, t, max_displacement=2, stride=1))[..., 12]
    _close(centre, (t.astype(np.float64) ** 2).mean(-1))


# ----------------------------------------------------------------------------- golden vectors

def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.moveaxis(a, -3, -1)


def _golden_err(actual, golden) -> float:
    actual, golden = np.asarray(actual, np.float64), np.asarray(golden, np.float64)
    assert actual.shape == golden.shape
    return np.abs(actual - golden).max() / max(1.0, np.abs(golden).max())


@pytest.fixture(scope="module")
def golden():
    with np.load(data_path("reference", "golden_kernels.npz"), allow_pickle=False) as f:
        return dict(f)


@pytest.mark.parametrize("b", [1, 2])
def test_local_golden(golden, b):
    g = {k[len(f"loc_b{b}_"):]: v for k, v in golden.items() if k.startswith(f"loc_b{b}_")}
    t, p, prob = _nhwc(g["r2_targ"]), _nhwc(g["r2_prev"]), g["prev_ds"][:, 0]
    corr = local_correlation(t, p)
    errs = {
        "corr": _golden_err(corr, _nhwc(g["corr"])),
        "corr_softmax": _golden_err(jax.nn.softmax(corr, axis=1), _nhwc(g["corr_softmax"])),
        "warped": _golden_err(shift_windows(prob), _nhwc(g["warped"])),
        "out": _golden_err(local_transfer(t, p, prob), _nhwc(g["out"])),
    }
    assert max(errs.values()) <= 2e-5, errs
    # The loop reference agrees with the released code too (so the tests above pin its semantics).
    assert _golden_err(ref_local_transfer(t, p, prob, 8, 2, "height"), _nhwc(g["out"])) <= 2e-5


@pytest.mark.parametrize("b, n", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_global_golden(golden, b, n):
    g = {k[len(f"glob_b{b}_n{n}_"):]: v for k, v in golden.items() if k.startswith(f"glob_b{b}_n{n}_")}
    anno, targ, ind = _nhwc(g["anno"]), _nhwc(g["targ"]), _nhwc(g["ind"])
    assert _golden_err(global_transfer(anno, targ, ind), _nhwc(g["out"])) <= 2e-5
    # sim / attn layout of the reference: rows frame-major then (y, x), columns target (y, x).
    hw, c = targ.shape[1] * targ.shape[2], targ.shape[-1]
    a = anno.reshape(n, b, hw, c).astype(np.float64)
    sim = np.einsum("nbpc,bqc->bnpq", a, targ.reshape(b, hw, c)).reshape(b, n * hw, hw)
    assert _golden_err(sim, g["sim"]) <= 2e-5
    assert _golden_err(_softmax(sim, axis=-1) / n, g["attn"]) <= 2e-5
    assert _golden_err(ref_global_transfer(anno, targ, ind, "target"), _nhwc(g["out"])) <= 2e-5


# ----------------------------------------------------------------------------- local invariants

def test_local_constant_mask():
    md, stride, c = 4, 2, 0.7
    t, p = _rand(6, 2, 11, 13, 5), _rand(7, 2, 11, 13, 5)  # shapes of a LOCAL_CASES entry: no new compile
    const = np.full((2, 11, 13), c, np.float32)
    ones = np.ones_like(const)
    corr = local_correlation(t, p, max_displacement=md, stride=stride)
    inside = shift_windows(ones, max_displacement=md, stride=stride)
    for axis, softmax_dim in (("height", 1), ("window", 3)):
        out = local_transfer(t, p, const, max_displacement=md, stride=stride, softmax_axis=axis)
        expected = c * jnp.sum(jax.nn.softmax(corr, axis=softmax_dim) * inside, -1, keepdims=True)
        _close(out, expected)
    # Paper variant: the weights sum to one over the window, so away from the border it returns c.
    out = local_transfer(t, p, const, max_displacement=md, stride=stride, softmax_axis="window")
    np.testing.assert_allclose(np.asarray(out)[:, md:-md, md:-md], c, rtol=1e-6)
    assert np.all(np.asarray(out)[:, 0, 0] < c)  # corners see zero-filled displacements


def test_local_window_output_is_convex_combination():
    t, p = 3 * _rand(8, 2, 11, 13, 5), 3 * _rand(9, 2, 11, 13, 5)
    prob = _uniform(10, 2, 11, 13)
    out = np.asarray(local_transfer(t, p, prob, max_displacement=4, stride=2, softmax_axis="window"))
    assert out.min() >= 0.0 and out.max() <= prob.max() + 1e-6


def test_local_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        t, p = _rand(11, 1, 5, 6, 3).astype(np.float64), _rand(12, 1, 5, 6, 3).astype(np.float64)
        prob = _uniform(13, 1, 5, 6).astype(np.float64)
        weights = _rand(14, 1, 5, 6, 1).astype(np.float64)
        for md, stride, axis in ((2, 1, "height"), (4, 2, "window")):
            def loss(t, p, md=md, stride=stride, axis=axis):
                out = local_transfer(t, p, prob, max_displacement=md, stride=stride, softmax_axis=axis)
                return jnp.sum(out * weights)

            gt, gp = jax.grad(loss, argnums=(0, 1))(t, p)
            assert np.isfinite(gt).all() and np.isfinite(gp).all()
            assert np.abs(gt).max() > 0 and np.abs(gp).max() > 0
            dt, dp = _rand(15, *t.shape).astype(np.float64), _rand(16, *p.shape).astype(np.float64)
            eps = 1e-6
            numeric = (loss(t + eps * dt, p + eps * dp) - loss(t - eps * dt, p - eps * dp)) / (2 * eps)
            analytic = np.sum(gt * dt) + np.sum(gp * dp)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def _largest_hlo_array(fn, *args) -> int:
    text = jax.jit(fn).lower(*args).compile().as_text()
    dims = re.findall(r"\b(?:f16|bf16|f32|f64|s32|s64|u32|pred)\[([\d,]+)\]", text)
    return max(int(np.prod([int(d) for d in s.split(",")])) for s in dims)


def test_local_transfer_never_builds_hw_by_hw():
    b, h, w, c, k = 1, 48, 48, 16, 81
    t, p, prob = _rand(17, b, h, w, c), _rand(18, b, h, w, c), _uniform(19, b, h, w)
    bound = k * b * h * w * c
    assert bound < (h * w) ** 2  # so the check below would catch an HW x HW affinity

    def loss(t, p):
        return jnp.sum(local_transfer(t, p, prob))

    assert _largest_hlo_array(lambda t, p: local_transfer(t, p, prob), t, p) <= bound
    assert _largest_hlo_array(jax.grad(loss, argnums=(0, 1)), t, p) <= bound


def test_local_argument_errors():
    t = np.zeros((1, 6, 6, 2), np.float32)
    prob = np.zeros((1, 6, 6), np.float32)
    with pytest.raises(ValueError, match="softmax_axis"):
        local_transfer(t, t, prob, softmax_axis="width")
    with pytest.raises(ValueError, match="prev"):
        local_correlation(t, t[:, :5])
    with pytest.raises(ValueError, match="prev_prob"):
        local_transfer(t, t, prob[:, :5])
    with pytest.raises(ValueError, match="max_displacement"):
        local_correlation(t, t, max_displacement=3, stride=2)
    with pytest.raises(ValueError, match="prob"):
        shift_windows(prob[0])


# ----------------------------------------------------------------------------- global transfer

@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("softmax_axis", ["target", "annotated"])
def test_global_matches_loop_reference(n, softmax_axis):
    anno, targ, ind = _rand(20 + n, n, 2, 3, 5, 7), _rand(30 + n, 2, 3, 5, 7), _rand(40 + n, n, 2, 3, 5, 4)
    out = global_transfer(anno, targ, ind, softmax_axis=softmax_axis)
    assert out.shape == (2, 3, 5, 4)
    _close(out, ref_global_transfer(anno, targ, ind, softmax_axis))
    mask = np.arange(n) != n - 1 if n > 1 else np.array([True])
    _close(global_transfer(anno, targ, ind, frame_mask=mask, softmax_axis=softmax_axis),
           ref_global_transfer(anno, targ, ind, softmax_axis, mask))


def test_global_frame_mask_equals_valid_subset():
    anno, targ, ind = _rand(50, 4, 1, 4, 6, 8), _rand(51, 1, 4, 6, 8), _rand(52, 4, 1, 4, 6, 5)
    mask = np.array([True, False, True, False])
    # Padded frames may hold anything, even non-finite values: they must not leak into the result.
    anno[~mask], ind[~mask] = np.nan, np.inf
    for axis in ("target", "annotated"):
        masked = global_transfer(anno, targ, ind, frame_mask=mask, softmax_axis=axis)
        subset = global_transfer(anno[mask], targ, ind[mask], softmax_axis=axis)
        _close(masked, subset, tol=1e-6)
        grad = jax.grad(lambda t, a=axis: jnp.sum(global_transfer(anno, t, ind, frame_mask=mask, softmax_axis=a)))
        _close(grad(targ), jax.grad(lambda t, a=axis: jnp.sum(global_transfer(anno[mask], t, ind[mask],
                                                                               softmax_axis=a)))(targ), tol=1e-5)
    assert not np.any(np.asarray(global_transfer(anno, targ, ind, frame_mask=np.zeros(4, bool))))


def test_global_annotated_softmax_keeps_constant_indicator():
    anno, targ = 2 * _rand(53, 3, 2, 4, 5, 6), 2 * _rand(54, 2, 4, 5, 6)
    ind = np.full((3, 2, 4, 5, 3), -1.25, np.float32)
    np.testing.assert_allclose(global_transfer(anno, targ, ind, softmax_axis="annotated"), -1.25, rtol=1e-6)


def test_global_uses_raw_dot_products():
    # Scaling the features sharpens the softmax (no 1/sqrt(C) or normalisation inside).
    anno, targ, ind = _rand(55, 1, 1, 3, 3, 4), _rand(56, 1, 3, 3, 4), _rand(57, 1, 1, 3, 3, 2)
    _close(global_transfer(2 * anno, targ, ind), ref_global_transfer(2 * anno, targ, ind, "target"))
    assert np.abs(np.asarray(global_transfer(2 * anno, targ, ind) - global_transfer(anno, targ, ind))).max() > 1e-3


def test_global_argument_errors():
    anno, targ, ind = np.zeros((2, 1, 3, 3, 4)), np.zeros((1, 3, 3, 4)), np.zeros((2, 1, 3, 3, 5))
    with pytest.raises(ValueError, match="softmax_axis"):
        global_transfer(anno, targ, ind, softmax_axis="column")
    with pytest.raises(ValueError, match="target"):
        global_transfer(anno, targ[:, :2], ind)
    with pytest.raises(ValueError, match="indicator"):
        global_transfer(anno, targ, ind[:1])
    with pytest.raises(ValueError, match="frame_mask"):
        global_transfer(anno, targ, ind, frame_mask=np.ones(3, bool))


# ----------------------------------------------------------------------------- objects as the batch

def test_frame_features_of_batch_one_serve_every_object():
    # Objects share the frames: features given once must equal the same features repeated per object.
    t, p = _rand(60, 1, 9, 11, 6), _rand(61, 1, 9, 11, 6)
    prob = np.random.default_rng(62).random((3, 9, 11)).astype(np.float32)
    for axis in ("height", "window"):
        shared = local_transfer(t, p, prob, max_displacement=4, softmax_axis=axis)
        repeated = local_transfer(np.repeat(t, 3, 0), np.repeat(p, 3, 0), prob, max_displacement=4,
                                  softmax_axis=axis)
        assert shared.shape == (3, 9, 11, 1)
        _close(shared, repeated)
    anno, targ, ind = _rand(63, 2, 1, 3, 4, 5), _rand(64, 1, 3, 4, 5), _rand(65, 2, 3, 3, 4, 2)
    mask = np.array([True, False])
    for axis in ("target", "annotated"):
        _close(global_transfer(anno, targ, ind, frame_mask=mask, softmax_axis=axis),
               global_transfer(np.repeat(anno, 3, 1), np.repeat(targ, 3, 0), ind, frame_mask=mask,
                               softmax_axis=axis))
    with pytest.raises(ValueError, match="prev_prob"):
        local_transfer(np.repeat(t, 2, 0), np.repeat(p, 2, 0), prob)
