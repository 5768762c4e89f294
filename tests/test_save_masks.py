"""``evaluate --save-masks``: every scored round's masks as DAVIS palette PNGs, in the documented layout,
matching report.csv's J (computed here from the PNGs and the ground truth), rewritten for a sample run again."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image
from test_evaluate import H, T, W, _make_folder

from atnet_jax import evaluate
from atnet_jax.io.weights import save_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_config, tiny_variables):
    return save_weights(tmp_path_factory.mktemp("w") / "tiny", tiny_variables, tiny_config)


def _j(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def test_save_all_segs_option(tmp_path, weights):
    root = tmp_path / "davis"
    _make_folder(root, "toy", 2, palette=True, scribbles=True)
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(weights), "--input", str(root), "--output", str(out), "--max-rounds", "2",
            "--save-masks"]
    assert evaluate.main(argv) == 0
    rows = list(csv.DictReader((out / "report.csv").open()))
    rounds = sorted({int(r["interaction"]) for r in rows})
    sample = out / "masks" / "toy" / "1"
    assert sorted(p.name for p in sample.iterdir()) == [f"round_{r}" for r in rounds]
    gt = np.stack([np.asarray(Image.open(root / "Annotations" / "480p" / "toy" / f"{t:05d}.png"))
                   for t in range(T)])
    for r in rounds:
        pngs = sorted((sample / f"round_{r}").iterdir())
        assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(T)]
        masks = []
        for p in pngs:
            with Image.open(p) as im:
                assert im.mode == "P" and im.size == (W, H)
                masks.append(np.asarray(im))
        masks = np.stack(masks)
        for row in (x for x in rows if int(x["interaction"]) == r):
            t, k = int(row["frame"]), int(row["object_id"])
            assert _j(masks[t] == k, gt[t] == k) == pytest.approx(float(row["jaccard"]), abs=1e-6)
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))]

    # A sample run again (its record gone, as after an interruption inside it) starts its folder afresh.
    (out / "samples" / "toy" / "1.json").unlink()
    stale = sample / "round_7"
    stale.mkdir()
    assert evaluate.main([*argv, "--resume"]) == 0
    assert not stale.exists() and (sample / f"round_{rounds[-1]}").is_dir()
    # Without --save-masks nothing is written there; --overwrite replaces the earlier run's masks too.
    assert evaluate.main([*argv[:-1], "--overwrite"]) == 0
    assert not (out / "masks").exists()
