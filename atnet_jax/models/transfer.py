"""Parameter-free transfer kernels of the T-Net (NHWC).

* Local transfer: windowed correlation between target and previous-frame features, a softmax, and a
  weighted sum of the previous-frame probability shifted by each displacement. It never builds an
  HW x HW matrix.
* Global transfer: dense non-local attention from N annotated frames to the target at 1/16 resolution.

Semantics follow the released PyTorch code (see ``tests/data/reference/README.md`` section 4.6); the
paper-text variants are options (``softmax_axis``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_LOCAL_SOFTMAX_AXES = ("height", "window")
_GLOBAL_SOFTMAX_AXES = ("target", "annotated")
# Target block (rows, columns) per GEMM in the local correlation, per parity sub-grid (see below).
_BLOCK = (8, 16)


def _window_radius(max_displacement: int, stride: int) -> int:
    """Displacements are stride * (-r..r); returns r."""
    if stride < 1 or max_displacement < 0 or max_displacement % stride:
        raise ValueError(
            f"max_displacement must be a non-negative multiple of stride >= 1, got "
            f"max_displacement={max_displacement}, stride={stride}")
    return max_displacement // stride


def _check_same_shape(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must both be [B, H, W, C] of one shape, got "
                         f"{name_a}.shape={a.shape}, {name_b}.shape={b.shape}")


def _block_size(length: int, radius: int, preferred: int) -> int:
    # At least 2r so that a block's halo comes from the next block alone; no larger than needed.
    return max(min(preferred, length), 2 * radius, 1)


def _parity_blocks(a: jax.Array, s: int, rows: int, cols: int, by: int, bx: int, top: int,
                   left: int) -> jax.Array:
    """[B, H, W, C] -> [s*s*B, rows, cols, by, bx, C], zero padded.

    Block (i, j) of parity sub-grid (py, px) holds a[b, s*(i*by + u - top) + py, s*(j*bx + v - left) + px]
    at [(py*s + px)*B + b, i, j, u, v]; `top`, `left` are given in sub-grid pixels.
    """
    b, h, w, c = a.shape
    a = jnp.pad(a, ((0, 0), (s * top, s * (rows * by - top) - h), (s * left, s * (cols * bx - left) - w),
                    (0, 0)))
    a = a.reshape(b, rows, by, s, cols, bx, s, c).transpose(3, 6, 0, 1, 4, 2, 5, 7)
    return a.reshape(s * s * b, rows, cols, by, bx, c)


def _band(products: jax.Array, n: int) -> jax.Array:
    """[..., m, m + n - 1] -> [..., m, n]: element [u, i] = products[u, u + i] (the skew trick)."""
    *lead, m, length = products.shape
    flat = products.reshape(*lead, m * length)
    flat = jnp.pad(flat, [(0, 0)] * len(lead) + [(0, m)])
    # Row u of the (m, length + 1) view starts at flat index u * (length + 1), i.e. at products[u, u].
    return flat.reshape(*lead, m, length + 1)[..., :n]


@functools.partial(jax.jit, static_argnames=("max_displacement", "stride"))
def local_correlation(target: jax.Array, prev: jax.Array, *, max_displacement: int = 8,
                      stride: int = 2) -> jax.Array:
    """Windowed correlation (FlowNet-style, kernel size 1).

    target, prev: [B, H, W, C] -> corr [B, H, W, K], K = (2 * max_displacement // stride + 1) ** 2.
    corr[b, y, x, k] = mean_c target[b, y, x, c] * prev[b, y + dy, x + dx, c] (zero outside the map),
    k = dy_idx * n + dx_idx (dy slow, dx fast), dy, dx in {-max_displacement, ..., +max_displacement}
    step stride. max_displacement must be a multiple of stride.
    """
    _check_same_shape("target", target, "prev", prev)
    r = _window_radius(max_displacement, stride)
    s, n = stride, 2 * r + 1
    b, h, w, c = target.shape
    hs, ws = -(-h // s), -(-w // s)  # parity sub-grid size
    by, bx = _block_size(hs, r, _BLOCK[0]), _block_size(ws, r, _BLOCK[1])
    nby, nbx = -(-hs // by), -(-ws // bx)

    # (y, x) and (y + dy, x + dx) have the same parity mod s, so each of the s*s parity sub-grids sees a
    # dense (2r+1)^2 window of its own. Each block of by x bx target pixels of a sub-grid meets a
    # (by + 2r) x (bx + 2r) window of previous-frame pixels in one GEMM, and the (2r+1)^2 products per
    # pixel are read off two diagonal bands. by, bx >= 2r, so a window is one block of the previous
    # frame (shifted by r) plus the leading 2r rows/columns of its right, lower and lower-right neighbours.
    t = _parity_blocks(target, s, nby, nbx, by, bx, 0, 0).reshape(-1, by * bx, c)
    p = _parity_blocks(prev, s, nby + 1, nbx + 1, by, bx, r, r)
    upper = jnp.concatenate([p[:, :-1, :-1], p[:, :-1, 1:, :, : 2 * r]], axis=4)
    lower = jnp.concatenate([p[:, 1:, :-1, : 2 * r], p[:, 1:, 1:, : 2 * r, : 2 * r]], axis=4)
    p = jnp.concatenate([upper, lower], axis=3).reshape(t.shape[0], -1, c)
    products = jnp.einsum("gpc,gqc->gpq", t, p, preferred_element_type=jnp.promote_types(t.dtype, jnp.float32))
    products = products.reshape(-1, by, bx, by + 2 * r, bx + 2 * r).transpose(0, 1, 3, 2, 4)
    products = _band(products, n)  # [g, by, by + 2r, bx, n (dx)]
    products = _band(products.transpose(0, 3, 4, 1, 2), n)  # [g, bx, n (dx), by, n (dy)]
    corr = products.reshape(s, s, b, nby, nbx, bx, n, by, n).transpose(2, 3, 7, 0, 4, 5, 1, 8, 6)
    corr = corr.reshape(b, nby * by, s, nbx * bx, s, n * n)[:, :hs, :, :ws]
    corr = corr.reshape(b, hs * s, ws * s, n * n)[:, :h, :w]
    return corr / c


@functools.partial(jax.jit, static_argnames=("max_displacement", "stride"))
def shift_windows(prob: jax.Array, *, max_displacement: int = 8, stride: int = 2) -> jax.Array:
    """prob [B, H, W] -> [B, H, W, K]: out[b, y, x, k] = prob[b, y + dy, x + dx], zero outside the map.

    Displacements and k ordering as in `local_correlation` (the reference's warped map W).
    """
    if prob.ndim != 3:
        raise ValueError(f"prob must be [B, H, W], got prob.shape={prob.shape}")
    r = _window_radius(max_displacement, stride)
    _, h, w = prob.shape
    md = max_displacement
    padded = jnp.pad(prob, ((0, 0), (md, md), (md, md)))
    offsets = [stride * i for i in range(2 * r + 1)]
    return jnp.stack([padded[:, oy: oy + h, ox: ox + w] for oy in offsets for ox in offsets], axis=-1)


@functools.partial(jax.jit, static_argnames=("max_displacement", "stride", "softmax_axis"))
def local_transfer(target: jax.Array, prev: jax.Array, prev_prob: jax.Array, *,
                   max_displacement: int = 8, stride: int = 2,
                   softmax_axis: str = "height") -> jax.Array:
    """Local transfer map L = sum_k softmax(corr)_k * prev_prob(p + d_k).

    target, prev: [B, H, W, C] features (already through prev_conv1x1); prev_prob: [B, H, W]
    previous-frame probability already downsampled to this grid. Returns L [B, H, W, 1] (target dtype).
    Frame features may have batch 1 for B objects: the correlation and softmax are then computed once.
    softmax_axis="height": the released code's softmax over the image-height axis y, separately for
    every (b, x, k). softmax_axis="window": the paper's text, softmax over the K displacements at each
    pixel (out-of-map displacements take part with correlation 0 and probability 0).
    The paper's own setting is max_displacement=4, stride=2 (5x5 window) with softmax_axis="window";
    the default (8, 2, "height") is the released code (9x9 = 81 displacements).
    """
    if softmax_axis not in _LOCAL_SOFTMAX_AXES:
        raise ValueError(f"softmax_axis must be one of {_LOCAL_SOFTMAX_AXES}, got {softmax_axis!r}")
    _check_same_shape("target", target, "prev", prev)
    if prev_prob.ndim != 3 or prev_prob.shape[1:] != target.shape[1:3] or target.shape[0] not in (
            1, prev_prob.shape[0]):
        raise ValueError(f"prev_prob must be [B, H, W] with H, W = {target.shape[1:3]} of target and B = "
                         f"{target.shape[0]} (or any B for target batch 1), got prev_prob.shape={prev_prob.shape}")
    corr = local_correlation(target, prev, max_displacement=max_displacement, stride=stride)
    dtype = jnp.promote_types(corr.dtype, jnp.float32)  # softmax in float32 at least
    corr = corr.astype(dtype)
    warped = shift_windows(prev_prob.astype(dtype), max_displacement=max_displacement,
                           stride=stride)
    if softmax_axis == "window":
        out = jnp.sum(jax.nn.softmax(corr, axis=-1) * warped, axis=-1)
    else:
        # Softmax over a minor axis: XLA:CPU's gradient of a softmax over axis 1 of [B, H, W, K] takes
        # seconds at 1/4 of 480p; with H moved last it takes milliseconds.
        weights = jax.nn.softmax(corr.transpose(0, 2, 3, 1), axis=-1)  # [B, W, K, H]
        out = jnp.sum(weights * warped.transpose(0, 2, 3, 1), axis=2).transpose(0, 2, 1)
    return out[..., None].astype(target.dtype)


@functools.partial(jax.jit, static_argnames=("softmax_axis",))
def global_transfer(annotated: jax.Array, target: jax.Array, indicator: jax.Array, *,
                    frame_mask: jax.Array | None = None,
                    softmax_axis: str = "target") -> jax.Array:
    """Global (non-local) transfer of the annotated frames' indicators to the target.

    annotated: [N, B, h, w, C] T-Net-encoder features of N annotated frames; target: [B, h, w, C];
    indicator: [N, B, h, w, Ci] A-Net indicator (F_o) of each annotated frame. Returns [B, h, w, Ci].
    The frame features may have batch 1 for B objects (the affinity is computed once).
    sim_i = a_i^T t (raw dot products, no scaling), shape (hw annotated, hw target).
    softmax_axis="target" (released code): softmax over the target positions for each annotated
    position; "annotated": softmax over the annotated positions of frame i for each target position
    (a row-stochastic attention). out[q] = (1/N) sum_i sum_p attn_i[p, q] * ind_i[p].
    frame_mask: optional [N] bool; frames with False contribute nothing and N counts only the valid
    frames (pad N to a fixed maximum so one compile serves every round; all False gives zeros).
    None = all valid.
    """
    if softmax_axis not in _GLOBAL_SOFTMAX_AXES:
        raise ValueError(f"softmax_axis must be one of {_GLOBAL_SOFTMAX_AXES}, got {softmax_axis!r}")
    if annotated.ndim != 5 or target.shape != annotated.shape[1:]:
        raise ValueError(f"annotated must be [N, B, h, w, C] and target [B, h, w, C] with matching "
                         f"B, h, w, C, got annotated.shape={annotated.shape}, target.shape={target.shape}")
    if (indicator.ndim != 5 or indicator.shape[0] != annotated.shape[0]
            or indicator.shape[2:4] != annotated.shape[2:4] or annotated.shape[1] not in (1, indicator.shape[1])):
        raise ValueError(f"indicator must be [N, B, h, w, Ci] with N, B, h, w of annotated (or any B for "
                         f"annotated batch 1), got indicator.shape={indicator.shape}, "
                         f"annotated.shape={annotated.shape}")
    n, bf, h, w, c = annotated.shape
    b, ci = indicator.shape[1], indicator.shape[-1]
    if frame_mask is not None and frame_mask.shape != (n,):
        raise ValueError(f"frame_mask must be [N] = ({n},), got frame_mask.shape={frame_mask.shape}")
    # The products run in the inputs' dtype (bfloat16 in reduced precision) and accumulate in float32 at least;
    # the softmax and the sum over frames are float32 at least.
    dtype = jnp.promote_types(jnp.result_type(annotated, target, indicator), jnp.float32)
    features = jnp.result_type(annotated, target)
    a = annotated.reshape(n, bf, h * w, c)
    t = target.reshape(bf, h * w, c).astype(features)
    ind = indicator.reshape(n, b, h * w, ci)
    # The affinity is laid out [target, annotated]: XLA:CPU's fused product and softmax run faster so.
    axis = -2 if softmax_axis == "target" else -1

    def frame_transfer(a_i: jax.Array, ind_i: jax.Array) -> jax.Array:
        """sum_p attn_i[p, q] * ind_i[p] for one annotated frame -> [B, hw, Ci]."""
        sim = jnp.einsum("bqc,bpc->bqp", t, a_i.astype(features), preferred_element_type=dtype)
        attn = jax.nn.softmax(sim, axis=axis).astype(ind_i.dtype)
        # Frame features of batch 1 serve every object: one affinity, B weighted sums.
        if bf == 1:
            return jnp.einsum("qp,bpk->bqk", attn[0], ind_i, preferred_element_type=dtype)
        return jnp.einsum("bqp,bpk->bqk", attn, ind_i, preferred_element_type=dtype)

    if frame_mask is None:
        out = sum(frame_transfer(a[i], ind[i]) for i in range(n)) / n
    else:
        # Padded frames are skipped, not masked: they cost nothing (inference pads N to a fixed maximum)
        # and whatever they hold (even inf/NaN) reaches neither the result nor the gradients.
        valid = frame_mask.astype(bool)
        zeros = jnp.zeros((b, h * w, ci), dtype)

        def body(i: jax.Array, acc: jax.Array) -> jax.Array:
            return jax.lax.cond(valid[i], lambda acc: acc + frame_transfer(a[i], ind[i]), lambda acc: acc, acc)

        out = jax.lax.fori_loop(0, n, body, zeros) / jnp.maximum(jnp.sum(valid), 1).astype(dtype)
    return out.reshape(b, h, w, ci).astype(indicator.dtype)
