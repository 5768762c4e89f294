"""The DAVIS interactive scribble robot (`davisinteractive.robot.InteractiveScribblesRobot`).

Given a prediction and the ground truth of a sequence, the robot picks the frame where the prediction
is worst and draws, for each label (0 = background, 1..K objects), human-like strokes along the
skeleton of the pixels that should carry that label but do not:
error region -> morphological opening -> medial axis -> graph of the pixels within sqrt(2) of each other
-> cycles cut -> longest path of each tree -> Bezier curve -> coordinates normalised by (W, H).
The graph is built with the official calls, so every tie between paths breaks the same way
(`tests/test_robot.py` holds the official robot's outputs on real DAVIS masks).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import networkx as nx
import numpy as np
from scipy.special import comb
from skimage.filters import rank
from skimage.morphology import disk, medial_axis
from sklearn.neighbors import radius_neighbors_graph

from atnet_jax.interaction.metrics import VOID_LABEL, Metric, per_object_scores

__all__ = ["InteractiveRobot", "bezier_curve"]

class _LegacyTiebreak(np.random.Generator):
    """Generator whose `permutation` is `np.random.RandomState(0).permutation`.

    `skimage.morphology.medial_axis` breaks ties between equally distant pixels with a random
    permutation; scikit-image before 0.19 drew it from `RandomState(0)`, which is what the official
    robot ran with. Passing this as `rng` gives the same skeletons today, deterministically.
    """

    def permutation(self, x, axis=0):  # noqa: D102 (signature of Generator.permutation)
        return np.random.RandomState(0).permutation(x)


def bezier_curve(points: np.ndarray, nb_points: int = 1000) -> np.ndarray:
    """Bezier curve with control points `points` (`[N, 2]` xy), sampled at `nb_points` (<= 1000).

    As `davisinteractive.utils.operations.bezier_curve`: if N exceeds the number of samples the points
    are returned unchanged, and the curve runs from the last control point to the first.

    Returns:
      `[nb_points, 2]` float64 (or `[N, 2]`).
    """
    nb_points = min(nb_points, 1000)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {points.shape}")
    n_points = len(points)
    if n_points > nb_points:
        return points
    t = np.linspace(0.0, 1.0, nb_points)[None, :]
    i = np.arange(n_points)[:, None]
    n = n_points - 1
    bernstein = comb(n, i) * t ** (n - i) * (1 - t) ** i  # [N, nb_points]
    return bernstein.T @ points


class InteractiveRobot:
    """DAVIS scribble robot.

    Attributes:
      kernel_size: fraction of sqrt(error area); the opening disk has radius
        min(kernel_size * sqrt(area) / 2, max_kernel_radius).
      max_kernel_radius: cap of that radius in pixels.
      min_nb_nodes: skeleton trees with fewer nodes give no stroke (DAVIS: 4; ATNet's own eval: 2).
      nb_points: samples per Bezier stroke (at most 1000).
    """

    def __init__(self, kernel_size: float = 0.2, max_kernel_radius: float = 16,
                 min_nb_nodes: int = 4, nb_points: int = 1000):
        if not 0 <= kernel_size < 1:
            raise ValueError("kernel_size must be in [0, 1).")
        self.kernel_size = kernel_size
        self.max_kernel_radius = max_kernel_radius
        self.min_nb_nodes = min_nb_nodes
        self.nb_points = nb_points

    # --- frame choice (davisinteractive EvaluationService.post_predicted_masks) ---

    @staticmethod
    def frame_scores(pred_masks: np.ndarray, gt_masks: np.ndarray, metric: Metric = "J",
                     nb_objects: int | None = None) -> np.ndarray:
        """Per-frame metric averaged over objects 1..K, void pixels counted (as the official service).

        Args:
          pred_masks, gt_masks: `[T, H, W]` int label maps.
        Returns:
          `[T]` float64.
        """
        nb_objects = _num_objects(gt_masks) if nb_objects is None else nb_objects
        if nb_objects == 0:
            raise ValueError("the ground truth holds no object")
        return per_object_scores(pred_masks, gt_masks, nb_objects, metric).mean(axis=-1)

    def worst_frame(self, pred_masks: np.ndarray, gt_masks: np.ndarray,
                    annotated_frames: Sequence[int] = (), metric: Metric = "J",
                    nb_objects: int | None = None) -> int:
        """Frame with the lowest `frame_scores`, among the frames not yet annotated.

        When every frame is annotated, all frames are candidates again (as the official service).
        Frames are walked in the order of ``scores.argsort()``, NumPy's default sort as the official service
        calls it, so that ties go where they go there (the order among equal scores depends on the sort
        NumPy picks for the CPU, not always the lowest index).
        """
        scores = self.frame_scores(pred_masks, gt_masks, metric, nb_objects)
        candidates = set(range(len(scores))) - {int(f) for f in annotated_frames}
        if not candidates:
            candidates = set(range(len(scores)))
        return next(int(f) for f in scores.argsort() if f in candidates)

    # --- strokes (davisinteractive InteractiveScribblesRobot) ---

    def _skeleton(self, mask: np.ndarray) -> np.ndarray:
        """Opened medial axis of an error mask `[H, W]` bool -> `[H, W]` bool."""
        mask = mask.astype(np.uint8)
        opened = mask
        radius = min(self.kernel_size * np.sqrt(mask.sum()) * 0.5, self.max_kernel_radius)
        # Opening with a disk (rank filters ignore pixels outside the image, as the official code);
        # when it wipes the region out, retry with a 10% smaller disk while the radius exceeds 1 px.
        while radius > 1.0:
            kernel = disk(radius)
            opened = rank.maximum(rank.minimum(mask, kernel), kernel)
            if opened.any():
                break
            radius *= 0.9
        padded = np.pad(opened.astype(bool), 1)
        return medial_axis(padded, rng=_LegacyTiebreak(np.random.PCG64(0)))[1:-1, 1:-1]

    def _longest_paths(self, skeleton: np.ndarray) -> list[np.ndarray]:
        """Longest path of each tree of the skeleton graph, as `[L, 2]` int xy pixel coordinates.

        Built with the official calls (scikit-learn's `radius_neighbors_graph`, networkx): the order of
        nodes and adjacency lists decides which of several equally long paths is found and where each
        cycle is cut, so only the same graph construction gives the same strokes.
        """
        ys, xs = np.nonzero(skeleton)  # row-major node order, as the official meshgrid ravel
        points = np.stack([xs, ys], axis=1)
        graph = nx.from_scipy_sparse_array(radius_neighbors_graph(points, np.sqrt(2), mode="distance"))
        paths = []
        for component in nx.connected_components(graph):
            tree = graph.subgraph(component).copy()
            # Cut every cycle at its longest edge (diagonal before straight; first one on ties).
            while True:
                try:
                    cycle = nx.find_cycle(tree)
                except nx.NetworkXNoCycle:
                    break
                weights = [graph[u][v]["weight"] for u, v in cycle]
                tree.remove_edge(*cycle[int(np.argmax(weights))])
            if len(tree) < self.min_nb_nodes:
                continue
            # Tree diameter by two traversals: farthest node from the first, then farthest from it.
            dist = nx.single_source_shortest_path_length(tree, next(iter(tree)))
            far = max(dist.items(), key=lambda kv: kv[1])[0]
            path = max(nx.single_source_shortest_path(tree, far).values(), key=len)
            paths.append(points[path])
        return paths

    def strokes(self, error_mask: np.ndarray) -> list[np.ndarray]:
        """Strokes for one error region `[H, W]` bool, as `[P, 2]` float xy pixel coordinates."""
        if not error_mask.any():
            return []
        skeleton = self._skeleton(error_mask)
        if not skeleton.any():
            return []
        return [bezier_curve(p, self.nb_points) for p in self._longest_paths(skeleton)]

    def interact(self, sequence: str, pred_masks: np.ndarray, gt_masks: np.ndarray,
                 annotated_frames: Sequence[int] = (), metric: Metric = "J",
                 nb_objects: int | None = None, frame: int | None = None) -> dict:
        """Scribbles on the worst frame for the prediction `pred_masks`.

        Args:
          sequence: sequence name, copied into the result.
          pred_masks: `[T, H, W]` int label maps (0 background, 1..K objects).
          gt_masks: `[T, H, W]` int label maps, 255 = void (never part of an error region).
          annotated_frames: frames already annotated, excluded from the choice (see `worst_frame`).
          metric: "J", "F" or "J_AND_F", the metric whose per-frame mean over objects is minimised.
          nb_objects: K; default the largest GT label below 255.
          frame: draw on this frame instead of choosing one.
        Returns:
          DAVIS scribble dict `{"scribbles": [T lists of {"path": [[x/W, y/H], ...], "object_id",
          "start_time", "end_time"}], "sequence"}`, strokes only on the chosen frame: for id 0 along
          background pixels predicted as an object, for id k along pixels of object k predicted as
          something else. Empty lists everywhere when the prediction is right.
        """
        pred = np.asarray(pred_masks, dtype=np.int64)
        gt = np.asarray(gt_masks, dtype=np.int64)
        if pred.shape != gt.shape or gt.ndim != 3:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [T, H, W]")
        nb_objects = _num_objects(gt) if nb_objects is None else nb_objects
        if frame is None:
            frame = self.worst_frame(pred, gt, annotated_frames, metric, nb_objects)
        t, h, w = gt.shape
        scale = np.array([w, h], dtype=np.float64)
        scribbles: list[list[dict]] = [[] for _ in range(t)]
        for obj_id in range(nb_objects + 1):
            start = time.time()
            error = (gt[frame] == obj_id) & (pred[frame] != obj_id)
            paths = self.strokes(error)
            end = time.time()
            scribbles[frame] += [{"path": (p / scale).tolist(), "object_id": obj_id,
                                  "start_time": start, "end_time": end} for p in paths]
        return {"scribbles": scribbles, "sequence": sequence}


def _num_objects(gt_masks: np.ndarray) -> int:
    ids = np.unique(np.asarray(gt_masks))
    ids = ids[(ids > 0) & (ids < VOID_LABEL)]
    return int(ids.max()) if ids.size else 0
