"""Makes the ``torch.save`` fixtures of ``tests/data/torch/`` with real PyTorch (run once; the tests read the files
without PyTorch). Two steps, because the project's environment has no torch and torch's has no atnet_jax:

    # 1. in the project's environment: the tiny network's state dict (PyTorch names and layout) as a .npz
    python tests/data/torch/make_fixtures.py --export-tiny /tmp/tiny_state_dict.npz
    # 2. in an environment with torch and numpy (made with torch 2.13.0+cpu)
    python tests/data/torch/make_fixtures.py --tiny /tmp/tiny_state_dict.npz --output tests/data/torch

Files of step 2:
- ``tiny_zip.pth``, ``tiny_legacy.pth``: the tiny network's whole state dict (``tiny_model_config``, the recipe
  weights of ``tests/reference_weights.py`` rounded to multiples of 1/256 so that ``expected.npz`` compresses),
  ``num_batches_tracked`` included, in the zip format and the legacy format (``_use_new_zipfile_serialization=False``).
- ``dtypes_zip.pth``, ``dtypes_legacy.pth``: a module's state dict (an ``OrderedDict`` with ``_metadata``) plus
  tensors of every storage type a state dict can hold, views at an offset, a transposed (non-contiguous) tensor,
  a 0-d and an empty tensor, a parameter; full-precision random values.
- ``cuda_zip.pth``, ``cuda_legacy.pth``: a few tensors whose storages are tagged ``cuda:0`` (saved with
  ``torch.serialization.location_tag`` patched, as no GPU is needed to write the tag).
- ``dataparallel.pth``: ``{"state_dict": {"module.<key>": ...}, "epoch": 3}``, as a DataParallel training saves.
- ``expected.npz``: ``<file stem>/<key>`` -> what ``torch.load`` read from each file (bfloat16 as its uint16 bits,
  under ``<file stem>/<key>:bfloat16``); ``tiny_legacy.pth`` holds what ``tiny_zip.pth`` holds (checked when made),
  so it is stored once, under ``tiny_zip/``.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np


def export_tiny(out: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from reference_weights import recipe_state_dict

    from atnet_jax.io.torch_weights import torch_shapes
    from atnet_jax.models import tiny_model_config

    shapes = torch_shapes(tiny_model_config())
    shapes.update({k.rsplit(".", 1)[0] + ".num_batches_tracked": () for k in shapes if k.endswith("running_var")})
    state = recipe_state_dict(shapes)
    state = {k: (np.round(v * 256) / 256).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in state.items()}
    np.savez(out, **state)
    print(f"wrote {out}: {len(state)} arrays")


def make(tiny: Path, out: Path) -> None:
    import torch

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(tiny) as data:
        tiny_state = collections.OrderedDict((k, torch.from_numpy(data[k].copy())) for k in data.files)

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    dtypes = module.state_dict()  # an OrderedDict with _metadata
    base = torch.randn(6, 5)
    dtypes.update({
        "float64": torch.randn(3, 2, dtype=torch.float64), "float16": torch.randn(4).half(),
        "bfloat16": torch.randn(5).bfloat16(), "int32": torch.arange(-3, 3, dtype=torch.int32),
        "int64": torch.tensor([2**40, -1]), "int16": torch.tensor([-7, 300], dtype=torch.int16),
        "int8": torch.tensor([-5, 7], dtype=torch.int8), "uint8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]), "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3), "row_view": base[2], "slice_view": base[1:4, 1:3],
        "transposed": base.t(), "whole": base, "parameter": torch.nn.Parameter(torch.randn(2, 2)),
    })
    small = collections.OrderedDict((k, tiny_state[k]) for k in list(tiny_state)[:12])
    files = {"tiny_zip": (tiny_state, True), "tiny_legacy": (tiny_state, False),
             "dtypes_zip": (dtypes, True), "dtypes_legacy": (dtypes, False),
             "dataparallel": ({"state_dict": collections.OrderedDict(("module." + k, v) for k, v in small.items()),
                               "epoch": 3}, True)}
    for stem, (obj, new_format) in files.items():
        torch.save(obj, out / f"{stem}.pth", _use_new_zipfile_serialization=new_format)
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        for stem, new_format in (("cuda_zip", True), ("cuda_legacy", False)):
            torch.save(small, out / f"{stem}.pth", _use_new_zipfile_serialization=new_format)
    finally:
        torch.serialization.location_tag = original
    stems = [*files, "cuda_zip", "cuda_legacy"]

    expected = {}
    for stem in stems:
        path = out / f"{stem}.pth"
        # The CUDA-tagged files load on a CPU-only machine with map_location.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if "state_dict" in loaded:
            loaded = loaded["state_dict"]
        if stem == "tiny_legacy":  # the same tensors as tiny_zip.pth: checked here, stored once
            reference = torch.load(out / "tiny_zip.pth", weights_only=True)
            assert list(loaded) == list(reference) and all(torch.equal(loaded[k], reference[k]) for k in loaded)
            continue
        for key, value in loaded.items():
            if value.dtype == torch.bfloat16:
                expected[f"{stem}/{key}:bfloat16"] = value.view(torch.int16).numpy().view(np.uint16)
            else:
                expected[f"{stem}/{key}"] = value.detach().numpy()
        print(f"{path}: {path.stat().st_size:,} bytes, {len(loaded)} tensors")
    np.savez_compressed(out / "expected.npz", **expected)
    print(f"{out / 'expected.npz'}: {(out / 'expected.npz').stat().st_size:,} bytes, torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-tiny", type=Path, metavar="NPZ", help="step 1 (project environment)")
    parser.add_argument("--tiny", type=Path, metavar="NPZ", help="step 2 (torch environment): step 1's file")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    if args.export_tiny:
        export_tiny(args.export_tiny)
    elif args.tiny:
        make(args.tiny, args.output)
    else:
        parser.error("pass --export-tiny NPZ (step 1) or --tiny NPZ (step 2)")


if __name__ == "__main__":
    main()
