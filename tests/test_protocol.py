"""The DAVIS protocol loop on hand-built cases: which frames the robot may pick, strokes on a frame scribbled
twice, the time budget, results kept per sample, resume, file modes, shards and their merge, the plot's axis."""
from __future__ import annotations

import csv
import json
import os
import stat

import numpy as np
import pytest

from atnet_jax.evaluation import protocol, reports
from atnet_jax.evaluation.protocol import ProtocolConfig, SequenceData, SequenceSource
from atnet_jax.interaction.robot import InteractiveRobot

T, H, W = 4, 32, 40


def _gt(objects: int = 1) -> np.ndarray:
    gt = np.zeros((T, H, W), np.uint8)
    for k in range(1, objects + 1):
        gt[:, 4 + 8 * k : 10 + 8 * k, 6:30] = k
    return gt


def _human(frame: int, objects: int = 1) -> dict:
    strokes = [[] for _ in range(T)]
    strokes[frame] = [{"path": [[0.2, (6 + 8 * k) / H], [0.7, (6 + 8 * k) / H]], "object_id": k,
                       "start_time": 0, "end_time": 1} for k in range(1, objects + 1)]
    return {"scribbles": strokes, "sequence": "seq"}


class _ScriptedSession:
    """Stands in for a Session: after round r the labels are the ground truth except on the frames
    ``wrong[r - 1]`` (left empty); round r takes ``seconds[r - 1]`` of model time."""

    def __init__(self, gt: np.ndarray, num_objects: int, wrong: list[set[int]], seconds: list[float] | None = None):
        self.gt, self.num_objects, self.wrong = gt, num_objects, wrong
        self.seconds = seconds or [1.0] * 16
        self.labels = np.zeros_like(gt)
        self.calls: list[tuple[int, list]] = []
        self.last_round_seconds = 0.0

    def interact(self, frame: int, strokes: list) -> np.ndarray:
        r = len(self.calls)
        self.calls.append((frame, strokes))
        self.labels = np.where(self.gt == 255, 0, self.gt).astype(np.uint8)
        for t in self.wrong[min(r, len(self.wrong) - 1)]:
            self.labels[t] = 0
        self.last_round_seconds = self.seconds[r]
        return self.labels

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


class _RecordingRobot(InteractiveRobot):
    """The real robot, remembering the frames it was told to leave out and the frame it chose."""

    def __init__(self) -> None:
        super().__init__(min_nb_nodes=2)
        self.excluded: list[list[int]] = []

    def interact(self, sequence, pred_masks, gt_masks, annotated_frames=(), metric="J", nb_objects=None, frame=None):
        self.excluded.append([int(f) for f in annotated_frames])
        return super().interact(sequence, pred_masks, gt_masks, annotated_frames, metric, nb_objects, frame)


def _play(session, first, robot, config, gt=None):
    gt = _gt() if gt is None else gt
    rounds, play = [], protocol.run_sample(session, gt, first, robot, config, "seq")
    while True:
        try:
            rounds.append(next(play))
        except StopIteration as stop:
            return rounds, stop.value


def test_robot_may_pick_the_human_frame_again():
    # Human scribble on frame 1. Round 1 leaves frame 1 wrong: the robot picks it (it is not a frame the robot
    # chose). Round 2 leaves frames 1 and 3 wrong: frame 1 is now the robot's own, so it picks 3. Round 3: the
    # wrong frames are both the robot's; the others are right, so the robot has nothing to draw.
    session = _ScriptedSession(_gt(), 1, wrong=[{1}, {1, 3}, {1, 3}])
    robot = _RecordingRobot()
    rounds, stopped = _play(session, _human(1), robot, ProtocolConfig(max_rounds=8))
    assert [r.frame for r in rounds] == [1, 1, 3]
    assert [c[0] for c in session.calls] == [1, 1, 3]
    assert robot.excluded == [[], [1], [1, 3]]
    assert "nothing to correct" in stopped
    # Scores: round 1 and 2 miss one / two of 4 frames entirely (J = F = 0 there, 1 elsewhere).
    assert [float(r.jaccard.mean()) for r in rounds] == [0.75, 0.5, 0.5]
    assert [float(r.contour.mean()) for r in rounds] == [0.75, 0.5, 0.5]


def test_robot_never_picks_its_own_first_frame_again():
    # No human scribble: the robot draws the first one, on the worst frame of the empty prediction (all equal:
    # frame 0). That frame is the robot's own choice, so it is left out afterwards even when it is the worst.
    session = _ScriptedSession(_gt(), 1, wrong=[{0, 2}, {0}])
    robot = _RecordingRobot()
    rounds, _ = _play(session, None, robot, ProtocolConfig(max_rounds=2))
    assert [r.frame for r in rounds] == [0, 2]
    assert robot.excluded == [[], [0]]


def test_a_round_over_the_budget_is_not_scored():
    # Budget 3 rounds * 10 s * 1 object = 30 s. Rounds take 12, 12, 7 (31 > 30): round 3 is not scored.
    config = ProtocolConfig(max_rounds=3, time_per_object=10.0)
    session = _ScriptedSession(_gt(), 1, wrong=[{0, 2}, {2, 3}, {3}], seconds=[12.0, 12.0, 7.0])
    rounds, stopped = _play(session, _human(1), InteractiveRobot(min_nb_nodes=2), config)
    assert [r.interaction for r in rounds] == [1, 2] and len(session.calls) == 3
    assert [r.cumulative for r in rounds] == [12.0, 24.0]
    assert "round 3 not scored" in stopped and "31.0 s" in stopped and "30 s" in stopped


def test_a_round_ending_exactly_at_the_budget_is_scored():
    # davisinteractive drops a round only when the cumulative time is strictly greater than the budget.
    config = ProtocolConfig(max_rounds=3, time_per_object=10.0)
    session = _ScriptedSession(_gt(), 1, wrong=[{0, 2}, {2, 3}, {3}], seconds=[12.0, 12.0, 6.0])
    rounds, stopped = _play(session, _human(1), InteractiveRobot(min_nb_nodes=2), config)
    assert [r.interaction for r in rounds] == [1, 2, 3] and rounds[-1].cumulative == 30.0
    assert stopped == "3 rounds played"


def test_the_budget_counts_every_object():
    # Two objects: budget 2 * 3 * 10 s = 60 s, so 3 rounds of 19 s are all scored.
    config = ProtocolConfig(max_rounds=3, time_per_object=10.0)
    gt = _gt(2)
    session = _ScriptedSession(gt, 2, wrong=[{0, 2}, {2, 3}, {3}], seconds=[19.0] * 3)
    rounds, _ = _play(session, _human(1, 2), InteractiveRobot(min_nb_nodes=2), config, gt)
    assert len(rounds) == 3


def test_a_frame_scribbled_twice_gets_the_strokes_of_both_rounds(tiny_config, tiny_variables):
    """Round 2 scribbles the human frame again: its maps must hold round 1's and round 2's strokes (the released
    code rasterises every stroke placed on the frame so far). Checked end to end: the protocol's session ends
    with the same probabilities as a session given the maps of both rounds' strokes in round 2."""
    from atnet_jax.inference.session import Session
    from atnet_jax.interaction.scribbles import interaction_maps
    from atnet_jax.models.predictor import ATNetPredictor

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (T, 48, 64, 3), dtype=np.uint8)
    gt = np.zeros((T, 48, 64), np.uint8)
    gt[:, 10:30, 12:44] = 1
    first = {"scribbles": [[], [{"path": [[0.25, 0.4], [0.6, 0.45]], "object_id": 1, "start_time": 0,
                                 "end_time": 1}], [], []], "sequence": "seq"}
    second = [{"path": [[0.3, 0.55], [0.5, 0.58], [0.65, 0.5]], "object_id": 1, "start_time": 0, "end_time": 1},
              {"path": [[0.05, 0.9], [0.9, 0.9]], "object_id": 0, "start_time": 0, "end_time": 1}]

    class SameFrameRobot:
        def interact(self, sequence, pred, gt_masks, annotated_frames, metric, num_objects):
            strokes = [[] for _ in range(T)]
            strokes[1] = [dict(s) for s in second]
            return {"scribbles": strokes, "sequence": sequence}

    session = Session(frames, ATNetPredictor(tiny_variables, tiny_config), 1)
    rounds, _ = _play(session, first, SameFrameRobot(), ProtocolConfig(max_rounds=2), gt)
    assert [r.frame for r in rounds] == [1, 1]

    def replay(round2_strokes):
        ref = Session(frames, ATNetPredictor(tiny_variables, tiny_config), 1)
        ref.interact(1, first["scribbles"][1])
        maps = interaction_maps(round2_strokes, 48, 64, 1, ref.labels[1])
        ref.interact_maps(1, *maps)
        return np.asarray(ref.probabilities, np.float32)

    both = replay(first["scribbles"][1] + second)
    only_last = replay(second)
    assert not np.array_equal(both, only_last)  # the case tells the two apart
    np.testing.assert_array_equal(np.asarray(session.probabilities, np.float32), both)


# ------------------------------------------------------------------------------------ runs on disk


def _sequences(names=("a", "b", "c"), files=(2, 1, 1), broken=()):
    def load(name, n):
        if name in broken:
            raise ValueError(f"cannot decode frame {name}/00002.jpg (corrupt or not an image)")
        return SequenceData(name, np.zeros((T, H, W, 3), np.uint8), _gt(), 1, [_human(i % T) for i in range(n)])

    return [SequenceSource(name, n, lambda name=name, n=n: load(name, n)) for name, n in zip(names, files)]


def _timed_session(seq):
    """Rounds take a time fixed by the sample (so shards and whole runs time alike)."""
    seconds = [1.0 + len(seq.name) + 0.25 * r for r in range(16)]
    return _ScriptedSession(seq.gt, seq.num_objects, wrong=[{0, 2}, {2}, {3}, set()], seconds=seconds)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_finished_samples_are_kept_when_a_sequence_cannot_be_read(tmp_path):
    seqs = _sequences(broken={"b"})
    with pytest.raises(protocol.SamplesFailed, match=r"1 of 4 sample\(s\) failed: b/1 \(ValueError: cannot "
                                                     r"decode frame b/00002.jpg"):
        protocol.evaluate(seqs, _timed_session, ProtocolConfig(max_rounds=3), tmp_path, progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "samples").rglob("*.json")) == [
        "samples/a/1.json", "samples/a/2.json", "samples/c/1.json"]
    assert {r["sequence"] for r in _rows(tmp_path / "report.csv")} == {"a", "c"}
    assert json.loads((tmp_path / "failed.json").read_text()) == {
        "b/1": "ValueError: cannot decode frame b/00002.jpg (corrupt or not an image)"}


def test_an_interrupted_run_keeps_its_samples_and_resumes(tmp_path, capsys):
    config = ProtocolConfig(max_rounds=3)
    whole = tmp_path / "whole"
    protocol.evaluate(_sequences(), _timed_session, config, whole, progress=False)

    started = []

    def interrupted(seq):
        started.append(seq.name)
        if len(started) == 3:
            raise KeyboardInterrupt
        return _timed_session(seq)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        protocol.evaluate(_sequences(), interrupted, config, out, progress=False)
    assert "2 of 4 sample(s) finished and kept" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "samples" / "a").iterdir()) == ["1.json", "2.json"]
    assert not (out / "report.csv").exists()
    with pytest.raises(protocol.OutputConflict, match="--resume"):
        protocol.evaluate(_sequences(), _timed_session, config, out, progress=False)

    resumed = []
    protocol.evaluate(_sequences(), lambda s: resumed.append(s.name) or _timed_session(s), config, out,
                      resume=True, progress=False)
    assert resumed == ["b", "c"]  # only the unfinished samples ran
    assert (out / "report.csv").read_text() == (whole / "report.csv").read_text()
    assert (out / "summary.json").read_text() == (whole / "summary.json").read_text()


def test_resume_refuses_other_settings(tmp_path):
    protocol.evaluate(_sequences(), _timed_session, ProtocolConfig(max_rounds=2), tmp_path, settings={"ckpt": "x"},
                      progress=False)
    with pytest.raises(protocol.OutputConflict, match=r"protocol.max_rounds 2 then, 3 now"):
        protocol.evaluate(_sequences(), _timed_session, ProtocolConfig(max_rounds=3), tmp_path,
                          settings={"ckpt": "x"}, resume=True, progress=False)
    with pytest.raises(protocol.OutputConflict, match=r"ckpt 'x' then, 'y' now"):
        protocol.evaluate(_sequences(), _timed_session, ProtocolConfig(max_rounds=2), tmp_path,
                          settings={"ckpt": "y"}, resume=True, progress=False)
    with pytest.raises(protocol.OutputConflict, match=r"samples \(4 then, 3 now\)"):
        protocol.evaluate(_sequences(files=(1, 1, 1)), _timed_session, ProtocolConfig(max_rounds=2), tmp_path,
                          settings={"ckpt": "x"}, resume=True, progress=False)
    # --overwrite starts again
    protocol.evaluate(_sequences(), _timed_session, ProtocolConfig(max_rounds=3), tmp_path, overwrite=True,
                      progress=False)
    assert {r["interaction"] for r in _rows(tmp_path / "report.csv")} == {"1", "2", "3"}


def test_output_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        protocol.evaluate(_sequences(), _timed_session, ProtocolConfig(max_rounds=2), tmp_path, progress=False)
    finally:
        os.umask(old)
    for name in ("report.csv", "summary.json", "curve.png", "settings.json", "samples/a/1.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert not list(tmp_path.rglob("*.partial"))


def test_merged_shards_equal_the_unsharded_run(tmp_path):
    # Timings are fixed per sample, so report.csv and summary.json must be equal byte for byte.
    config = ProtocolConfig(max_rounds=3)
    whole = tmp_path / "whole"
    protocol.evaluate(_sequences(), _timed_session, config, whole, progress=False,
                      settings={"weights": "w1", "paths": {"input": "/host/DAVIS"}})
    shards = []
    for i in range(3):  # each shard on its own host: other paths, same weights and data
        shards.append(tmp_path / f"shard{i}")
        protocol.evaluate(_sequences(), _timed_session, config, shards[-1], shard=(i, 3), progress=False,
                          settings={"weights": "w1", "paths": {"input": f"/host{i}/DAVIS"}})
    protocol.evaluate(_sequences(), _timed_session, config, whole, progress=False, resume=True,
                      settings={"weights": "w1", "paths": {"input": "/elsewhere/DAVIS"}})  # paths do not count
    assert [r["sequence"] + r["scribble_idx"] for r in _rows(shards[0] / "report.csv")][::3 * T] == ["a1", "c1"]
    merged = tmp_path / "merged"
    protocol.merge(shards[::-1], merged)
    for name in ("report.csv", "summary.json"):
        assert (merged / name).read_text() == (whole / name).read_text(), name
    merged_settings = json.loads((merged / "settings.json").read_text())
    assert merged_settings["paths"] == [{"input": f"/host{i}/DAVIS"} for i in range(3)]
    whole_settings = json.loads((whole / "settings.json").read_text())
    assert {**merged_settings, "paths": None} == {**whole_settings, "paths": None}


def test_merge_refuses_missing_duplicated_incomplete_or_different_shards(tmp_path):
    config = ProtocolConfig(max_rounds=2)
    s0, s1, other = tmp_path / "s0", tmp_path / "s1", tmp_path / "other"
    protocol.evaluate(_sequences(), _timed_session, config, s0, shard=(0, 2), progress=False)
    protocol.evaluate(_sequences(), _timed_session, config, s1, shard=(1, 2), progress=False)
    protocol.evaluate(_sequences(), _timed_session, ProtocolConfig(max_rounds=3), other, shard=(1, 2), progress=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"missing shard\(s\) 1/2 of 2"):
        protocol.merge([s0], out)
    with pytest.raises(ValueError, match=r"shard 0/2 given twice"):
        protocol.merge([s0, s0, s1], out)
    with pytest.raises(ValueError, match=r"different settings \(protocol.max_rounds 2 then, 3 now\)"):
        protocol.merge([s0, other], out)
    with pytest.raises(FileNotFoundError, match="not an evaluation output"):
        protocol.merge([s0, tmp_path / "nowhere"], out)
    (s1 / "samples" / "a" / "2.json").unlink()  # shard 1/2 = samples a/2 and c/1
    with pytest.raises(ValueError, match=r"shard 1/2\) is incomplete: 1 of 2 sample\(s\) not finished \(a/2\)"):
        protocol.merge([s0, s1], out)
    assert not out.exists()


def test_curve_time_axis_covers_the_measured_range():
    config = ProtocolConfig(max_rounds=8)
    # Rounds measured up to 7 s, curve held to 240 s: the axis stops near 7 s, the 60 s mark is off the axis.
    result = {"curve": {"time": [0.0, 1.0, 3.0, 7.0, 240.0]}}
    assert reports.curve_xlim(result, config) == (0.0, pytest.approx(7.35))
    # Measured up to 40 s: the axis is widened to show the 60 s mark.
    result = {"curve": {"time": [0.0, 20.0, 40.0, 240.0]}}
    assert reports.curve_xlim(result, config) == (0.0, pytest.approx(63.0))
