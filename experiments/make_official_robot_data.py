"""Expected outputs of the official DAVIS robot for `tests/test_robot.py` (run once; the output is committed).

Runs `davisinteractive` 1.0.4's `InteractiveScribblesRobot` and its service's frame choice
(`EvaluationService.post_predicted_masks`: per-frame metric averaged over objects, `argsort`, first frame
not annotated before) on the real masks of `tests/data/davis_mini`, with predictions rebuilt from the
ground truth by the recipes of `CASES` (`tests/official_robot_cases.py`), and writes
`tests/data/official_robot/cases.json`: for each case its recipe and settings, the per-frame scores,
the chosen frame and, per stroke, the object id, the pixel path before Bezier smoothing (chain code) and
samples of the final normalised path.

davisinteractive 1.0.4 predates NumPy 2 and current networkx / scikit-image, so it runs in a throwaway
virtual environment, never the project's, with these shims applied before it is imported:
`np.int = int; np.float = float; np.bool = bool`, `nx.from_scipy_sparse_matrix = nx.from_scipy_sparse_array`,
and `medial_axis` breaking ties with `np.random.RandomState(0)` as scikit-image did before 0.19 (when the
official robot was released; 0.19+ draws them from an unseeded generator by default). Set-up:

    python3 -m venv /tmp/davis_venv
    /tmp/davis_venv/bin/pip install numpy scipy scikit-image networkx scikit-learn Cython wheel absl-py \
        opencv-python-headless pandas
    /tmp/davis_venv/bin/pip install --no-build-isolation --no-deps davisinteractive==1.0.4
    /tmp/davis_venv/bin/python experiments/make_official_robot_data.py [--davis tests/data/davis_mini]

Exit codes: 0 written, 1 failed, 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from official_robot_cases import build_prediction, encode_chain, load_gt  # noqa: E402

SAMPLES = 3  # evenly spaced points of each final path stored with full float precision (ends, middle)

# name, sequence, frame range, recipe, metric, min_nb_nodes, annotated frames
_CASES = [
    ("bear-empty-J", "bear", (0, 2), {"base": "empty"}, "J", 4, []),
    ("bear-empty-JF-n2", "bear", (0, 2), {"base": "empty"}, "J_AND_F", 2, []),
    ("bear-erode3-f1-J", "bear", (0, 2), {"base": "gt", "ops": [{"op": "erode", "r": 3, "frames": [1]}]},
     "J", 4, []),
    ("bear-dilate5-f0-JF", "bear", (0, 2), {"base": "gt", "ops": [{"op": "dilate", "r": 5, "frames": [0]}]},
     "J_AND_F", 4, []),
    ("bear-shift-J-n2", "bear", (0, 2), {"base": "gt", "ops": [{"op": "shift", "dy": 6, "dx": -4}]}, "J", 2, []),
    ("bear-blobs-f0-JF", "bear", (0, 2), {"base": "gt", "ops": [{"op": "blobs", "seed": 1, "n": 6, "frames": [0]}]},
     "J_AND_F", 4, []),
    ("bear-shift-blobs-ann1-J", "bear", (0, 2),
     {"base": "gt", "ops": [{"op": "shift", "dy": 3, "dx": 5, "frames": [1]},
                            {"op": "blobs", "seed": 8, "n": 4}]}, "J", 4, [1]),
    ("bear-erode8-JF-n2", "bear", (0, 2), {"base": "gt", "ops": [{"op": "erode", "r": 8}]}, "J_AND_F", 2, []),
    ("blackswan-empty-J", "blackswan", (0, 6), {"base": "empty"}, "J", 4, []),
    ("blackswan-erode4-f2-J", "blackswan", (0, 6),
     {"base": "gt", "ops": [{"op": "erode", "r": 4, "frames": [2]}]}, "J", 4, []),
    ("blackswan-dilate6-f4-JF-n2", "blackswan", (0, 6),
     {"base": "gt", "ops": [{"op": "dilate", "r": 6, "frames": [4]}]}, "J_AND_F", 2, []),
    ("blackswan-shift-ann03-J", "blackswan", (0, 6), {"base": "gt", "ops": [{"op": "shift", "dy": 0, "dx": 8}]},
     "J", 4, [0, 3]),
    ("blackswan-blobs-JF", "blackswan", (0, 6), {"base": "gt", "ops": [{"op": "blobs", "seed": 2, "n": 8}]},
     "J_AND_F", 4, []),
    ("blackswan-erode-blobs-J-n2", "blackswan", (0, 6),
     {"base": "gt", "ops": [{"op": "erode", "r": 2}, {"op": "blobs", "seed": 3, "n": 5, "frames": [5]}]},
     "J", 2, []),
    ("blackswan-shift-ann1-JF", "blackswan", (0, 6),
     {"base": "gt", "ops": [{"op": "shift", "dy": -5, "dx": 0, "frames": [1, 2, 3]}]}, "J_AND_F", 4, [1]),
    ("blackswan-blobs-all-annotated-J", "blackswan", (0, 6),
     {"base": "gt", "ops": [{"op": "blobs", "seed": 7, "n": 6}]}, "J", 4, [0, 1, 2, 3, 4, 5]),
    ("car-shadow-empty-JF", "car-shadow", (0, 12), {"base": "empty"}, "J_AND_F", 4, []),
    ("car-shadow-dilate4-f7-J", "car-shadow", (0, 12),
     {"base": "gt", "ops": [{"op": "dilate", "r": 4, "frames": [7]}]}, "J", 4, []),
    ("car-shadow-erode6-ann3-JF", "car-shadow", (0, 12),
     {"base": "gt", "ops": [{"op": "erode", "r": 6, "frames": [3, 9]}]}, "J_AND_F", 4, [3]),
    ("car-shadow-shift-J-n2", "car-shadow", (0, 12), {"base": "gt", "ops": [{"op": "shift", "dy": 4, "dx": 4}]},
     "J", 2, []),
    ("car-shadow-blobs-J", "car-shadow", (0, 12),
     {"base": "gt", "ops": [{"op": "blobs", "seed": 4, "n": 7, "frames": [0, 1, 2, 3, 4, 5]}]}, "J", 4, []),
    ("car-shadow-remove-ann0-JF", "car-shadow", (0, 12),
     {"base": "gt", "ops": [{"op": "remove", "id": 1, "frames": [10]}]}, "J_AND_F", 4, [0]),
    ("car-shadow-shift-erode-JF-n2", "car-shadow", (0, 12),
     {"base": "gt", "ops": [{"op": "shift", "dy": 2, "dx": -7, "frames": [5]}, {"op": "erode", "r": 1}]},
     "J_AND_F", 2, []),
    ("car-shadow-dilate-shift-ann2-J", "car-shadow", (20, 40),
     {"base": "gt", "ops": [{"op": "dilate", "r": 2}, {"op": "shift", "dy": -3, "dx": 3, "frames": [2, 6]}]},
     "J", 4, [2]),
    ("tennis-empty-J", "tennis", (0, 2), {"base": "empty"}, "J", 4, []),
    ("tennis-empty-JF-n2", "tennis", (0, 2), {"base": "empty"}, "J_AND_F", 2, []),
    ("tennis-remove1-f1-J", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "remove", "id": 1, "frames": [1]}]},
     "J", 4, []),
    ("tennis-remove2-f0-JF", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "remove", "id": 2, "frames": [0]}]},
     "J_AND_F", 4, []),
    ("tennis-swap-f0-J", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "swap", "a": 1, "b": 2, "frames": [0]}]},
     "J", 4, []),
    ("tennis-dilate4-JF-n2", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "dilate", "r": 4}]}, "J_AND_F", 2, []),
    ("tennis-erode3-J-n2", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "erode", "r": 3}]}, "J", 2, []),
    ("tennis-shift-JF", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "shift", "dy": 5, "dx": 5}]},
     "J_AND_F", 4, []),
    ("tennis-blobs-J", "tennis", (0, 2), {"base": "gt", "ops": [{"op": "blobs", "seed": 5, "n": 8}]}, "J", 4, []),
    ("tennis-blobs-remove-ann1-JF", "tennis", (0, 2),
     {"base": "gt", "ops": [{"op": "blobs", "seed": 6, "n": 6, "frames": [1]},
                            {"op": "remove", "id": 2, "frames": [1]}]}, "J_AND_F", 4, [1]),
    ("tennis-erode-dilate-ann0-J", "tennis", (0, 2),
     {"base": "gt", "ops": [{"op": "erode", "r": 2, "frames": [0]}, {"op": "dilate", "r": 2, "frames": [1]}]},
     "J", 4, [0]),
    ("tennis-shift-remove-JF", "tennis", (0, 2),
     {"base": "gt", "ops": [{"op": "shift", "dy": -4, "dx": 6, "frames": [1]},
                            {"op": "remove", "id": 1, "frames": [0]}]}, "J_AND_F", 4, []),
]


def _official():
    """davisinteractive's robot class, metrics and bezier module, with the shims described above."""
    np.int = int
    np.float = float
    np.bool = bool
    import networkx as nx
    import skimage.morphology

    nx.from_scipy_sparse_matrix = nx.from_scipy_sparse_array

    class LegacyTiebreak(np.random.Generator):
        def permutation(self, x, axis=0):
            return np.random.RandomState(0).permutation(x)

    medial_axis = skimage.morphology.medial_axis

    def legacy_medial_axis(image, mask=None, return_distance=False):
        return medial_axis(image, mask, return_distance, rng=LegacyTiebreak(np.random.PCG64(0)))

    import davisinteractive.robot.interactive_robot as robot_module
    from davisinteractive.metrics import batched_f_measure, batched_jaccard

    robot_module.medial_axis = legacy_medial_axis
    return robot_module, batched_jaccard, batched_f_measure


def _service_frame(gt, pred, nb_objects, metric, annotated, batched_jaccard, batched_f_measure):
    """The frame `EvaluationService.post_predicted_masks` hands to the robot, and the per-frame scores."""
    jaccard = batched_jaccard(gt, pred, average_over_objects=False, nb_objects=nb_objects)
    contour = batched_f_measure(gt, pred, average_over_objects=False, nb_objects=nb_objects)
    scores = jaccard.mean(axis=1) if metric == "J" else (.5 * jaccard + .5 * contour).mean(axis=1)
    nb_frames = len(scores)
    candidates = set(range(nb_frames)) - set(annotated) or set(range(nb_frames))
    order = scores.argsort()
    i = 0
    while i < nb_frames and order[i] not in candidates:
        i += 1
    return int(order[i]), scores


def run_case(case, davis_root: Path, robot_module, batched_jaccard, batched_f_measure) -> dict:
    name, sequence, frames, recipe, metric, min_nb_nodes, annotated = case
    gt = load_gt(davis_root, sequence, frames)
    nb_objects = int(gt[gt < 255].max())
    pred = build_prediction(gt, recipe, nb_objects)
    frame, scores = _service_frame(gt, pred, nb_objects, metric, annotated, batched_jaccard, batched_f_measure)
    candidate_scores = [scores[f] for f in (set(range(len(scores))) - set(annotated) or range(len(scores)))]
    tied = sum(s == scores[frame] for s in candidate_scores) > 1

    pixel_paths = []  # the longest paths the robot hands to its Bezier smoothing, in order
    bezier = robot_module.bezier_curve

    def recording_bezier(points, nb_points=1000):
        pixel_paths.append(np.asarray(points).copy())
        return bezier(points, nb_points)

    robot_module.bezier_curve = recording_bezier
    try:
        robot = robot_module.InteractiveScribblesRobot(kernel_size=0.2, max_kernel_radius=16,
                                                       min_nb_nodes=min_nb_nodes)
        out = robot.interact(sequence, pred, gt, nb_objects=nb_objects, frame=frame)
    finally:
        robot_module.bezier_curve = bezier
    strokes = out["scribbles"][frame]
    assert len(strokes) == len(pixel_paths) and all(not s for i, s in enumerate(out["scribbles"]) if i != frame)
    stored = []
    for stroke, pixels in zip(strokes, pixel_paths):
        path = np.asarray(stroke["path"])
        idx = np.linspace(0, len(path) - 1, SAMPLES).round().astype(int)
        stored.append({"object_id": stroke["object_id"], "pixels": encode_chain(pixels),
                       "nb_points": len(path), "sample_index": idx.tolist(), "samples": path[idx].tolist(),
                       "sum": path.sum(axis=0).tolist()})
    return {"name": name, "sequence": sequence, "frames": list(frames), "recipe": recipe, "metric": metric,
            "min_nb_nodes": min_nb_nodes, "annotated_frames": annotated, "nb_objects": nb_objects,
            "scores": scores.tolist(), "frame": frame, "tied": bool(tied), "strokes": stored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--davis", type=Path, default=ROOT / "tests" / "data" / "davis_mini",
                        help="DAVIS folder with Annotations/480p/<sequence>/")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "official_robot" / "cases.json")
    args = parser.parse_args(argv)
    if not (args.davis / "Annotations" / "480p").is_dir():
        print(f"error: --davis {args.davis} has no Annotations/480p folder", file=sys.stderr)
        return 2
    try:
        import davisinteractive  # noqa: F401
    except ImportError:
        print("error: davisinteractive is not installed here (see this script's docstring)", file=sys.stderr)
        return 1
    official = _official()
    cases = []
    for case in _CASES:
        cases.append(run_case(case, args.davis, *official))
        c = cases[-1]
        print(f"{c['name']}: frame {c['frame']}{' (tied)' if c['tied'] else ''}, {len(c['strokes'])} strokes",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"generator": "experiments/make_official_robot_data.py", "davisinteractive": "1.0.4",
                   "kernel_size": 0.2, "max_kernel_radius": 16, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, args.out)
    print(f"wrote {len(cases)} cases to {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
