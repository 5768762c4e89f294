"""``python -m atnet_jax.evaluate`` end to end: synthetic DAVIS-2017/2016 folders and the real davis_mini."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import data_path
from PIL import Image

from atnet_jax import evaluate
from atnet_jax.io.masks import write_mask
from atnet_jax.io.weights import save_weights

T, H, W = 4, 48, 64


def _make_folder(root, name: str, objects: int, palette: bool, scribbles: bool):
    rng = np.random.default_rng(len(name))
    (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
    (root / "Annotations" / "480p" / name).mkdir(parents=True)
    for t in range(T):
        frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        labels = np.zeros((H, W), np.uint8)
        for k in range(1, objects + 1):
            y, x = 8 + 10 * k + t, 10 + 12 * k
            labels[y : y + 10, x : x + 14] = k
            frame[labels == k] = (60 * k, 200, 40)
        cv2.imwrite(str(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"), frame[:, :, ::-1])
        mask_path = root / "Annotations" / "480p" / name / f"{t:05d}.png"
        if palette:
            write_mask(mask_path, labels)
        else:
            Image.fromarray((labels > 0).astype(np.uint8) * 255, mode="L").save(mask_path)
    if scribbles:
        (root / "Scribbles" / name).mkdir(parents=True)
        per_frame = [[] for _ in range(T)]
        per_frame[1] = [{"path": [[0.3, 0.5], [0.45, 0.52]], "object_id": k, "start_time": 0, "end_time": 1}
                        for k in range(1, objects + 1)]
        (root / "Scribbles" / name / "001.json").write_text(json.dumps({"scribbles": per_frame, "sequence": name}))


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_config, tiny_variables):
    return save_weights(tmp_path_factory.mktemp("w") / "tiny", tiny_variables, tiny_config)


def _check_outputs(out, rounds: int, rows_per_round: int, metric: str):
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and len(rows) <= rounds * rows_per_round
    assert {int(r["interaction"]) for r in rows} <= set(range(1, rounds + 1))
    for r in rows:
        j, c, jf = float(r["jaccard"]), float(r["contour"]), float(r["j_and_f"])
        assert 0 <= j <= 1 and 0 <= c <= 1 and abs(jf - (j + c) / 2) < 1e-5
    result = json.loads((out / "summary.json").read_text())
    assert set(result) >= {"auc", "metric_at_threshold", "curve"}
    assert result["metric_at_threshold"]["threshold"] == 60
    assert 0 <= result["auc"] <= 1 and len(result["curve"]["time"]) == len(result["curve"]["metric"])
    with Image.open(out / "curve.png") as im:
        assert im.size[0] > 100
    assert not list(out.glob("*.partial"))
    return rows, result


def test_synthetic_2017_folder_with_and_without_scribbles(tmp_path, weights):
    root = tmp_path / "davis"
    _make_folder(root, "withscr", 2, palette=True, scribbles=True)
    _make_folder(root, "robotstart", 2, palette=True, scribbles=False)
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(weights), "--input", str(root), "--output", str(out), "--max-rounds", "2"]
    assert evaluate.main(argv) == 0
    rows, _ = _check_outputs(out, 2, 2 * T * 2, "J_AND_F")
    assert {r["sequence"] for r in rows} == {"withscr", "robotstart"}
    assert evaluate.main(argv) == 2  # results exist: refused without --overwrite
    assert evaluate.main([*argv, "--overwrite", "--metric", "J"]) == 0


def test_synthetic_2016_folder(tmp_path, weights):
    root = tmp_path / "davis2016"
    _make_folder(root, "single", 1, palette=False, scribbles=False)
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(weights), "--input", str(root), "--output", str(out),
                          "--max-rounds", "2", "--metric", "J"]) == 0
    rows, _ = _check_outputs(out, 2, T, "J")
    assert {r["object_id"] for r in rows} == {"1"}


def test_real_davis_mini(tmp_path, weights):
    root = data_path("davis_mini")
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", str(weights), "--input", str(root), "--sequences", "bear,tennis",
                          "--output", str(out), "--max-rounds", "2"]) == 0
    rows, _ = _check_outputs(out, 2, 10**6, "J_AND_F")
    assert {r["sequence"] for r in rows} == {"bear", "tennis"}
    assert {r["object_id"] for r in rows if r["sequence"] == "tennis"} == {"1", "2"}


class _OracleSession:
    """Stands in for a Session: round r reveals the ground truth of the first r * T / 2 frames, 10 s a round."""

    def __init__(self, gt: np.ndarray, num_objects: int) -> None:
        self.gt, self.num_objects = gt, num_objects
        self.labels = np.zeros_like(gt)
        self.annotated: list[int] = []
        self.last_round_seconds = 10.0

    def interact(self, frame: int, strokes: list) -> np.ndarray:
        self.annotated.append(frame)
        shown = min(len(self.gt), len(self.annotated) * len(self.gt) // 2)
        self.labels[:shown] = np.where(self.gt[:shown] == 255, 0, self.gt[:shown])
        return self.labels

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_protocol_scores_and_summary_on_an_oracle(tmp_path):
    from atnet_jax.evaluation.protocol import ProtocolConfig, SequenceData, evaluate

    gt = np.zeros((T, H, W), np.uint8)
    gt[:, 10:30, 10:40] = 1
    seq = SequenceData("oracle", np.zeros((T, H, W, 3), np.uint8), gt, 1, [None])
    config = ProtocolConfig(max_rounds=3, metric="J")
    result = evaluate([seq], lambda s: _OracleSession(s.gt, s.num_objects), config, tmp_path, progress=False)
    with open(tmp_path / "report.csv") as f:
        rows = list(csv.DictReader(f))
    # Round 1 reveals half the frames (J = 1 there, 0 elsewhere); round 2 all of them; the robot then finds
    # nothing to correct and the sample ends after 2 rounds.
    per_round = {i: np.mean([float(r["jaccard"]) for r in rows if r["interaction"] == str(i)]) for i in (1, 2)}
    assert per_round == {1: 0.5, 2: 1.0} and {r["interaction"] for r in rows} == {"1", "2"}
    # Curve: (0, 0), (10, 0.5), (20, 1.0), round 3 held with no time (20, 1.0), then held to 3 * 30 s = 90 s.
    assert result["curve"]["time"] == [0.0, 10.0, 20.0, 20.0, 90.0]
    assert result["curve"]["metric"] == [0.0, 0.5, 1.0, 1.0, 1.0]
    area = 10 * 0.5 / 2 + 10 * (0.5 + 1.0) / 2 + 70 * 1.0
    assert result["auc"] == pytest.approx(area / 90)
    assert result["metric_at_threshold"]["value"] == pytest.approx(1.0)


def test_bad_input_tour(tmp_path, weights, tiny_config, tiny_variables, capsys):
    """One line naming the problem, exit 2 (usage) or 1 (file contents), nothing written."""
    root = tmp_path / "davis"
    _make_folder(root, "good", 1, palette=True, scribbles=False)
    corrupt = tmp_path / "corrupt"
    _make_folder(corrupt, "bad", 1, palette=True, scribbles=False)
    (corrupt / "JPEGImages" / "480p" / "bad" / "00002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    other = tmp_path / "other"
    _make_folder(other, "mine", 1, palette=True, scribbles=True)
    scribble = other / "Scribbles" / "mine" / "001.json"
    data = json.loads(scribble.read_text())
    frames = len(data["scribbles"])
    scribble.write_text(json.dumps(dict(data, scribbles=data["scribbles"][:-1])))
    empty = tmp_path / "empty"
    empty.mkdir()
    anet_only = save_weights(tmp_path / "anet_only", {"anet": tiny_variables["anet"]}, tiny_config)
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "summary.json").write_text("{}")
    out = tmp_path / "out"

    def argv(*extra, checkpoint=weights, data=root, output=out):
        return ["--checkpoint", str(checkpoint), "--input", str(data), "--output", str(output),
                "--max-rounds", "1", *extra]

    cases = [
        (2, argv(data=tmp_path / "nowhere"), "--input"),
        (2, argv(checkpoint=tmp_path / "nowhere"), "--checkpoint"),
        (2, argv(data=empty), "not a DAVIS folder"),
        (2, argv("--sequences", "nosuch"), "nosuch"),
        (1, argv(data=corrupt), "00002.jpg"),
        (1, argv(data=other), f"{frames - 1} frames of scribbles, but the video has {frames} frames"),
        (1, argv(checkpoint=anet_only), "tnet"),
        (1, argv(checkpoint=empty), "not an atnet_jax weights checkpoint"),
        (2, argv(output=finished), "--overwrite"),
    ]
    for code, args, needle in cases:
        assert evaluate.main(args) == code, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # not progress bars
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("python -m atnet_jax.evaluate: error: ") and needle in lines[0], err
    assert not out.exists() or not list(out.glob("*.csv"))
    # A scribble file naming another sequence is used, with a one-line warning.
    scribble.write_text(json.dumps(dict(data, sequence="bear")))
    assert evaluate.main(argv(data=other, output=tmp_path / "out2")) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warned == [f"python -m atnet_jax.evaluate: warning: {scribble}: the scribbles are for sequence 'bear', "
                      "used for 'mine'"], warned


def _report_without_timing(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "timing"} for row in csv.DictReader(f)]


def test_sharded_run_merges_into_the_unsharded_report(tmp_path, weights):
    """Two shards, merged, give the single run's report.csv (up to the timing column: model time is measured) and
    the timing-independent part of summary.json (the metric curve; AUC and @60s follow the measured times).
    tests/test_protocol.py compares the whole files with fixed timings."""
    root = tmp_path / "davis"
    _make_folder(root, "withscr", 2, palette=True, scribbles=True)
    _make_folder(root, "robotstart", 2, palette=True, scribbles=False)
    _make_folder(root, "third", 1, palette=True, scribbles=True)
    common = ["--checkpoint", str(weights), "--input", str(root), "--max-rounds", "2"]
    assert evaluate.main([*common, "--output", str(tmp_path / "whole")]) == 0
    for i in (0, 1):
        assert evaluate.main([*common, "--shard", f"{i}/2", "--output", str(tmp_path / f"s{i}")]) == 0
    # samples in order robotstart/1, third/1, withscr/1: shard 0/2 holds the first and the last
    assert {r["sequence"] for r in _report_without_timing(tmp_path / "s0" / "report.csv")} == {"robotstart", "withscr"}
    assert evaluate.main(["--merge", str(tmp_path / "s1"), str(tmp_path / "s0"), "--output", str(tmp_path / "m")]) == 0
    assert _report_without_timing(tmp_path / "m" / "report.csv") == _report_without_timing(
        tmp_path / "whole" / "report.csv")
    merged, whole = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("m", "whole"))
    assert merged["curve"]["metric"] == whole["curve"]["metric"]
    assert merged["curve"]["J_AND_F"] == whole["curve"]["J_AND_F"]
    assert len(merged["curve"]["time"]) == len(whole["curve"]["time"]) == 4
    # a missing shard, and resuming with other settings, are refused
    assert evaluate.main(["--merge", str(tmp_path / "s0"), "--output", str(tmp_path / "m2")]) == 1
    assert evaluate.main([*common, "--shard", "0/2", "--output", str(tmp_path / "s1"), "--resume"]) == 2
    assert evaluate.main([*common, "--shard", "2/2", "--output", str(tmp_path / "s2")]) == 2


def test_a_corrupt_sequence_fails_alone_and_resume_finishes_the_run(tmp_path, weights, capsys):
    root = tmp_path / "davis"
    _make_folder(root, "good", 1, palette=True, scribbles=True)
    _make_folder(root, "zbad", 1, palette=True, scribbles=False)
    frame = root / "JPEGImages" / "480p" / "zbad" / "00002.jpg"
    intact = frame.read_bytes()
    frame.write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(weights), "--input", str(root), "--output", str(out), "--max-rounds", "2"]
    assert evaluate.main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "1 of 2 sample(s) failed: zbad/1" in lines[0] and "00002.jpg" in lines[0], err
    assert {r["sequence"] for r in _report_without_timing(out / "report.csv")} == {"good"}
    kept = out / "samples" / "good" / "1.json"
    before = kept.stat().st_mtime_ns
    assert evaluate.main([*argv, "--max-rounds", "3", "--resume"]) == 2  # other settings
    assert "max_rounds 2 then, 3 now" in capsys.readouterr().err
    frame.write_bytes(intact)
    assert evaluate.main([*argv, "--resume"]) == 0
    assert {r["sequence"] for r in _report_without_timing(out / "report.csv")} == {"good", "zbad"}
    assert kept.stat().st_mtime_ns == before  # the finished sample was not run again
    assert not (out / "failed.json").exists()


def test_sequences_without_frames_are_skipped_with_a_reason(capsys):
    from atnet_jax.io.davis import DavisFolder

    sources = evaluate.discover_sequences(DavisFolder(data_path("davis_mini")), None, None)
    assert [(s.name, s.num_samples) for s in sources] == [("bear", 2), ("car-shadow", 1), ("tennis", 1)]
    out = capsys.readouterr().out
    assert "skipped 1 sequence(s): blackswan (no frames: " in out and "JPEGImages/480p/blackswan not found" in out


def test_weights_count_by_their_contents(tmp_path, weights):
    import shutil

    from atnet_jax.io.weights import folder_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(weights, copy)
    assert folder_fingerprint(copy) == folder_fingerprint(weights)
    config = copy / "atnet_jax.json"
    config.write_text(config.read_text() + " ")
    assert folder_fingerprint(copy) != folder_fingerprint(weights)
