"""T-Net encoder features per frame, computed once per video, kept in memory up to a budget and spilled to disk."""
from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class FeatureCache:
    """T-Net encoder features per frame, computed once per video.

    ``compute(indices)`` encodes several frames at once (a batch on accelerators). Up to ``memory_bytes``
    stay in host memory (least recently used first out); the rest is spilled to ``.npz`` files in
    ``folder`` (a temporary folder where None), so long videos keep a bounded footprint.

    A frame's entry is what the predictor's ``encode`` gives. For ATNet: r2, r5, conv1x1's target half
    (``r5_fused``) and T-Net decoder's skip maps ``s3`` and ``s2``, 52 values per padded pixel (before the skip
    maps were cached: r3 instead of them, 40), so 87.75 MiB per 480p frame (512x864 padded) in float32 (r2 and
    s2 27 MiB each, r5 and r5_fused 13.5 MiB each, s3 6.75 MiB), up by 20.25 MiB (30%) from 67.5 MiB. The
    default 2 GiB budget of a session holds 23 such frames (30 before). In bf16 precision r5_fused, s3 and s2
    come in bfloat16 (r2 and r5 stay float32): 64.1 MiB, up from 60.75.
    """

    def __init__(self, compute: Callable[[Sequence[int]], list[dict[str, np.ndarray]]], memory_bytes: int,
                 *, folder: Path | None = None) -> None:
        self._compute = compute
        self._memory_bytes = memory_bytes
        self._ram: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._ram_bytes = 0
        self._disk: dict[int, tuple[Path, dict[str, np.dtype]]] = {}
        self._folder = folder
        self._tmp: Path | None = None
        self.computed = 0

    def has(self, index: int) -> bool:
        return index in self._ram or index in self._disk

    def get(self, index: int, upcoming: Sequence[int] = ()) -> dict[str, np.ndarray]:
        """The features of frame ``index``; where they must be computed, those of the ``upcoming`` frames not
        cached yet are computed in the same batch."""
        if index in self._ram:
            self._ram.move_to_end(index)
            return self._ram[index]
        if index in self._disk:
            path, dtypes = self._disk[index]
            with np.load(path) as data:
                feats = {k: data[k].view(dtype) for k, dtype in dtypes.items()}
            self._keep(index, feats)
            return feats
        batch = [index, *(t for t in upcoming if not self.has(t) and t != index)]
        computed = self._compute(batch)
        self.computed += len(batch)
        for t, feats in reversed(list(zip(batch, computed))):  # the requested frame last: most recently used
            self._keep(t, feats)
        return computed[0]

    def _keep(self, index: int, feats: dict[str, np.ndarray]) -> None:
        self._ram[index] = feats
        self._ram_bytes += sum(v.nbytes for v in feats.values())
        while self._ram_bytes > self._memory_bytes and len(self._ram) > 1:
            old, old_feats = self._ram.popitem(last=False)
            self._ram_bytes -= sum(v.nbytes for v in old_feats.values())
            if old not in self._disk:
                if self._tmp is None:
                    if self._folder is not None:
                        self._folder.mkdir(parents=True, exist_ok=True)
                    self._tmp = Path(tempfile.mkdtemp(prefix="atnet_jax_features_", dir=self._folder))
                path = self._tmp / f"{old:06d}.npz"
                # As raw bits: .npz keeps no bfloat16 (it would read back as opaque bytes).
                np.savez(path, **{k: v.view(f"u{v.dtype.itemsize}") for k, v in old_feats.items()})
                self._disk[old] = (path, {k: v.dtype for k, v in old_feats.items()})

    def close(self) -> None:
        self._ram.clear()
        self._ram_bytes = 0
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._disk.clear()

    def __del__(self) -> None:
        self.close()
