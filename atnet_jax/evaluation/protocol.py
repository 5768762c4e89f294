"""The DAVIS interactive protocol: rounds of robot scribbles per sequence and scribble file, shards and merge.

For each sequence and each of its human scribble files (or, where a folder has none, a first scribble
drawn by the robot on an empty prediction) = one *sample*: up to ``max_rounds`` rounds; after each round
the robot scribbles on the worst frame. As ``davisinteractive`` does:

- the robot never picks a frame that it chose itself in an earlier round of the sample (its
  ``store_annotated_frame``); the frame of the human first scribble may be picked again;
- the budget of a sample is ``time_per_object * max_rounds * objects``; a round that ends after it
  (cumulative time including that round strictly greater than the budget, ``submit_masks``) is not
  scored, and the sample stops. Unlike the official wall clock, only the model's time counts here;
- a frame scribbled again gets the maps of every stroke placed on it so far (``Session`` keeps them).

Scores are per frame and object (void pixels count as the official service does); the summary follows
``davisinteractive``'s ``summarize_report``.

Results are never lost: each finished sample is written at once to ``OUTPUT/samples/<sequence>/<idx>.json``
(atomically); ``report.csv``, ``summary.json`` and ``curve.png`` are rebuilt from those files. A run can be
resumed (same settings only, ``settings.json``), split into shards (every N-th sample) and the shards merged.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.errors import AtnetError, ConflictError, one_line
from atnet_jax.evaluation.masks import MASKS_DIR
from atnet_jax.evaluation.reports import write_outputs
from atnet_jax.inference.session import Session
from atnet_jax.interaction.metrics import per_object_scores
from atnet_jax.interaction.robot import InteractiveRobot
from atnet_jax.io.safe import write_json

SETTINGS_FILE = "settings.json"
INFO_KEY = "paths"  # in settings.json: where the run read its data (informative; hosts may differ)
SAMPLES_DIR = "samples"
FAILED_FILE = "failed.json"
OUTPUT_FILES = ("report.csv", "summary.json", "curve.png")


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Settings of the interactive benchmark (defaults: the DAVIS challenge)."""

    max_rounds: int = 8
    time_per_object: float = 30.0  # seconds per round per object
    metric: str = "J_AND_F"  # what the robot minimises and the summary follows: "J" or "J_AND_F"
    kernel_size: float = 0.2
    max_kernel_radius: float = 16
    min_nb_nodes: int = 4  # ATNet's published numbers used 2
    time_threshold: float = 60.0

    def budget(self, num_objects: int) -> float:
        """Model seconds a sample of ``num_objects`` objects may take (``max_t`` of ``davisinteractive``)."""
        return self.time_per_object * self.max_rounds * num_objects


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """One scored round: the scribbled frame, ``jaccard``/``contour`` ``[T, K]``, labels ``[T, H, W]``, the
    round's model seconds and the sample's cumulative model seconds."""

    interaction: int
    frame: int
    jaccard: np.ndarray
    contour: np.ndarray
    labels: np.ndarray
    seconds: float
    cumulative: float


def run_sample(
    session: Session,
    gt: np.ndarray,
    first_scribbles: dict[str, Any] | None,
    robot: InteractiveRobot,
    config: ProtocolConfig,
    sequence: str,
) -> Generator[RoundResult, None, str]:
    """Play one sample: yields a :class:`RoundResult` per scored round; returns why the sample stopped."""
    num_objects = session.num_objects
    budget = config.budget(num_objects)
    robot_frames: list[int] = []  # frames the robot chose; the human first frame is not one of them
    scribbles, by_robot = first_scribbles, False
    if scribbles is None:
        labels = np.array(session.labels)
        scribbles, by_robot = robot.interact(sequence, labels, gt, [], config.metric, num_objects), True
    spent = 0.0
    for round_index in range(1, config.max_rounds + 1):
        marked = [t for t, strokes in enumerate(scribbles["scribbles"]) if strokes]
        if not marked:
            return f"round {round_index}: the robot found nothing to correct"
        frame = marked[0]
        if by_robot:
            robot_frames.append(frame)
        session.interact(frame, scribbles["scribbles"][frame])
        seconds = float(session.last_round_seconds)
        spent += seconds
        if spent > budget:
            return (f"round {round_index} not scored: it ended at {spent:.1f} s of model time, "
                    f"over the budget of {budget:g} s")
        labels = np.array(session.labels)  # this round's masks: a copy the next round leaves as it is
        j = per_object_scores(labels, gt, num_objects, "J")
        f = per_object_scores(labels, gt, num_objects, "F")
        yield RoundResult(round_index, frame, j, f, labels, seconds, spent)
        if round_index == config.max_rounds:
            break
        scribbles, by_robot = robot.interact(sequence, labels, gt, list(robot_frames), config.metric,
                                             num_objects), True
    return f"{config.max_rounds} rounds played"


@dataclasses.dataclass
class SequenceData:
    """What the protocol needs of one sequence."""

    name: str
    frames: Any  # len / __getitem__ -> [H, W, 3] uint8
    gt: np.ndarray  # [T, H, W] uint8, 255 void
    num_objects: int
    scribbles: list[dict[str, Any] | None]  # human first scribbles, or [None] for a robot start


@dataclasses.dataclass(frozen=True)
class SequenceSource:
    """A sequence read only when its first sample runs: ``num_samples`` = its scribble files (1 for a robot
    start); ``load()`` may raise, which fails that sequence's samples and lets the others run."""

    name: str
    num_samples: int
    load: Callable[[], SequenceData]


class OutputConflict(ConflictError):
    """The output folder holds results that the requested run would overwrite or mix with its own."""


class SamplesFailed(AtnetError):
    """Some samples could not be evaluated; the others' results are written."""


# ----------------------------------------------------------------------------------------------- files


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def sample_key(sequence: str, scribble_idx: int) -> str:
    return f"{sequence}/{scribble_idx}"


def _sample_path(output: Path, key: str) -> Path:
    sequence, idx = key.rsplit("/", 1)
    return output / SAMPLES_DIR / sequence / f"{idx}.json"


def _load_sample(output: Path, key: str) -> dict[str, Any] | None:
    """The finished sample ``key`` in ``output``, or None (absent, or not a complete sample file)."""
    path = _sample_path(output, key)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if sample_key(record.get("sequence", ""), record.get("scribble_idx", -1)) != key:
        return None
    return record


def shard_samples(samples: Sequence[str], shard: tuple[int, int]) -> list[str]:
    """Every N-th sample, starting at sample I, for ``shard = (I, N)``."""
    index, count = shard
    return list(samples[index::count])


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must be I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= I < N")
    return index, count


def _comparable(settings: dict[str, Any], *ignore: str) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in (INFO_KEY, *ignore)}


def _describe_differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(old), flat(new)
    parts = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if key == "samples":
                parts.append(f"samples ({len(a.get(key) or [])} then, {len(b.get(key) or [])} now)")
            else:
                parts.append(f"{key} {a.get(key)!r} then, {b.get(key)!r} now")
    return "; ".join(parts)


def _holds_results(output: Path) -> bool:
    samples = output / SAMPLES_DIR
    return any((output / name).exists() for name in OUTPUT_FILES) or (
        samples.is_dir() and any(samples.rglob("*.json")))


def check_output(output: Path, settings: dict[str, Any] | None, *, resume: bool, overwrite: bool) -> None:
    """Refuse (:class:`OutputConflict`) to mix runs in ``output``: results there need ``overwrite`` or, with
    the same ``settings`` as ``settings.json``, ``resume``. Writes nothing."""
    if resume and overwrite:
        raise OutputConflict("--resume continues the results in the output folder, --overwrite replaces "
                             "them: pass one of them")
    if output.exists() and not output.is_dir():
        raise OutputConflict(f"--output {output} is a file, expected a folder")
    if overwrite or not output.is_dir():
        return
    saved_path = output / SETTINGS_FILE
    if resume:
        if not _holds_results(output):
            return  # nothing to continue: a fresh start
        if not saved_path.is_file():
            raise OutputConflict(f"cannot resume {output}: it holds results but no {SETTINGS_FILE}")
        saved = _read_json(saved_path)
        if settings is not None and _comparable(saved) != _comparable(settings):
            raise OutputConflict(f"cannot resume {output}: it was run with other settings "
                                 f"({_describe_differences(_comparable(saved), _comparable(settings))}); "
                                 f"pass --overwrite to "
                                 f"start again there or choose another --output")
        return
    if _holds_results(output):
        raise OutputConflict(f"{output} already holds results (pass --resume to continue that run or "
                             f"--overwrite to replace them)")


def _clear_results(output: Path) -> None:
    """Remove an earlier run's files (only those: ``output`` may hold other things)."""
    for name in (*OUTPUT_FILES, SETTINGS_FILE, FAILED_FILE):
        (output / name).unlink(missing_ok=True)
    shutil.rmtree(output / MASKS_DIR, ignore_errors=True)  # evaluate --save-masks (atnet_jax.evaluation.masks)
    samples = output / SAMPLES_DIR
    if samples.is_dir():
        for path in samples.glob("*/*.json"):
            path.unlink()
        for folder in [*samples.iterdir(), samples]:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


# ------------------------------------------------------------------------------------------ evaluation


def _as_source(seq: SequenceData | SequenceSource) -> SequenceSource:
    if isinstance(seq, SequenceSource):
        return seq
    return SequenceSource(seq.name, len(seq.scribbles), lambda: seq)


def full_settings(sequences: Sequence[SequenceData | SequenceSource], config: ProtocolConfig,
                  shard: tuple[int, int] = (0, 1), settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """``settings.json`` of a run: the caller's ``settings``, the protocol, every sample (before sharding)
    and the shard. Resuming needs it unchanged; merging needs it unchanged but for the shard."""
    sources = [_as_source(s) for s in sequences]
    samples = [sample_key(s.name, i) for s in sources for i in range(1, s.num_samples + 1)]
    return {**(settings or {}), "protocol": dataclasses.asdict(config), "samples": samples,
            "shard": f"{shard[0]}/{shard[1]}"}


def _failure(err: BaseException) -> str:
    """A failed sample's entry in ``failed.json``: the error's type and its one line."""
    return f"{type(err).__name__}: {one_line(err, hint=False)}" if str(err).strip() else type(err).__name__


def _sample_record(seq: SequenceData, idx: int, rounds: list[RoundResult], stopped: str) -> dict[str, Any]:
    return {
        "sequence": seq.name, "scribble_idx": idx, "num_objects": seq.num_objects, "num_frames": len(seq.gt),
        "frames": [r.frame for r in rounds], "stopped": stopped,
        "rounds": [{"interaction": r.interaction, "frame": r.frame, "timing": r.seconds,
                    "jaccard": np.asarray(r.jaccard, np.float64).tolist(),
                    "contour": np.asarray(r.contour, np.float64).tolist()} for r in rounds],
    }


def evaluate(
    sequences: Sequence[SequenceData | SequenceSource],
    make_session: Callable[[SequenceData], Session],
    config: ProtocolConfig,
    output: Path,
    *,
    settings: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    raise_errors: bool = False,
    on_round: Callable[[str, int, RoundResult], None] | None = None,
) -> dict[str, Any] | None:
    """Run the protocol over this shard's samples of ``sequences``; write each finished sample to
    ``output/samples/`` at once, then ``report.csv``, ``summary.json`` and ``curve.png`` from all finished
    samples. ``settings`` (what the caller ran with) is saved with the protocol and the sample list in
    ``settings.json``; ``resume`` skips the samples already finished there (same settings only).

    Returns the summary dict (None when no sample finished). Raises :class:`SamplesFailed` at the end,
    after writing the others' results, when samples failed (an unreadable sequence fails its samples only);
    with ``raise_errors`` the first failure is raised at once instead (for its traceback). ``on_round(sequence,
    scribble_idx, result)`` is called with every scored round (e.g. :class:`atnet_jax.evaluation.masks.MaskWriter`).
    """
    from tqdm import tqdm

    sources = [_as_source(s) for s in sequences]
    by_name = {s.name: s for s in sources}
    saved = full_settings(sources, config, shard, settings)
    all_samples = saved["samples"]
    check_output(output, saved, resume=resume, overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    if overwrite or not resume:
        _clear_results(output)  # nothing of value there (check_output), or replacing it was asked for
    write_json(output / SETTINGS_FILE, saved)

    mine = shard_samples(all_samples, shard)
    todo = [key for key in mine if _load_sample(output, key) is None]
    if len(todo) < len(mine):
        print(f"resuming: {len(mine) - len(todo)} of {len(mine)} sample(s) already finished in {output}")
    robot = InteractiveRobot(config.kernel_size, config.max_kernel_radius, config.min_nb_nodes)
    failed: dict[str, str] = {}
    loaded: tuple[str, SequenceData | BaseException] | None = None
    bar = tqdm(todo, unit="sample", disable=not progress, desc="evaluating")
    try:
        for key in bar:
            name, idx = key.rsplit("/", 1)
            if loaded is None or loaded[0] != name:
                try:
                    loaded = (name, by_name[name].load())
                except Exception as err:  # noqa: BLE001 (recorded; the other sequences go on)
                    loaded = (name, err)
            seq = loaded[1]
            try:
                if isinstance(seq, BaseException):
                    raise seq
                record = _play(seq, int(idx), make_session, robot, config, bar, on_round)
            except Exception as err:  # recorded; the other samples go on
                if raise_errors:
                    raise
                failed[key] = _failure(err)
                tqdm.write(f"sample {key} failed: {failed[key]}")
                continue
            write_json(_sample_path(output, key), record)
    except KeyboardInterrupt:
        done = sum(_load_sample(output, k) is not None for k in mine)
        print(f"interrupted: {done} of {len(mine)} sample(s) finished and kept in {output / SAMPLES_DIR} "
              f"(continue with --resume)", file=sys.stderr)
        raise
    finally:
        bar.close()

    if failed:
        write_json(output / FAILED_FILE, failed)
    else:
        (output / FAILED_FILE).unlink(missing_ok=True)
    records = [r for r in (_load_sample(output, k) for k in mine) if r is not None]
    result = write_outputs(records, config, output) if records else None
    if failed:
        raise SamplesFailed(f"{len(failed)} of {len(mine)} sample(s) failed: "
                            + "; ".join(f"{k} ({msg})" for k, msg in failed.items())
                            + (f". The reports in {output} cover the other {len(records)}; fix the input and "
                               f"rerun with --resume" if records else ""))
    return result


def _play(seq: SequenceData, idx: int, make_session: Callable[[SequenceData], Session], robot: InteractiveRobot,
          config: ProtocolConfig, bar: Any, on_round: Callable[..., None] | None = None) -> dict[str, Any]:
    if not 1 <= idx <= len(seq.scribbles):
        raise ValueError(f"{seq.name} has {len(seq.scribbles)} scribble file(s), no sample {idx}")
    session = make_session(seq)
    try:
        session.warmup()  # compiles are not the model's interaction time
        rounds: list[RoundResult] = []
        play = run_sample(session, seq.gt, seq.scribbles[idx - 1], robot, config, seq.name)
        while True:
            try:
                r = next(play)
            except StopIteration as stop:
                return _sample_record(seq, idx, rounds, stop.value)
            if on_round is not None:
                on_round(seq.name, idx, r)
            rounds.append(dataclasses.replace(r, labels=np.empty(0)))  # the labels are not kept
            jf = 0.5 * (r.jaccard + r.contour)
            bar.set_postfix({"seq": seq.name, "round": r.interaction, "J&F": f"{jf.mean():.3f}"})
    finally:
        session.close()


# ---------------------------------------------------------------------------------------------- merge


def merge(shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Merge the outputs of ``--shard I/N`` runs (one folder per shard, all N of them, same settings) into
    ``output``: the sample files, ``settings.json`` (as one run) and the reports a single run writes."""
    if not shard_dirs:
        raise ValueError("nothing to merge: name the shards' output folders")
    settings: list[dict[str, Any]] = []
    for folder in shard_dirs:
        path = folder / SETTINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not an evaluation output ({path} not found)")
        settings.append(_read_json(path))
    base = _comparable(settings[0], "shard")
    for folder, s in zip(shard_dirs[1:], settings[1:]):
        other = _comparable(s, "shard")
        if other != base:
            raise ValueError(f"cannot merge {shard_dirs[0]} and {folder}: they ran with different settings "
                             f"({_describe_differences(base, other)})")
    shards = [parse_shard(str(s.get("shard", "0/1"))) for s in settings]
    counts = {n for _, n in shards}
    if len(counts) != 1:
        raise ValueError("cannot merge shards of different splits: "
                         + ", ".join(f"{d} is {i}/{n}" for d, (i, n) in zip(shard_dirs, shards)))
    count = counts.pop()
    seen: dict[int, Path] = {}
    for folder, (index, _) in zip(shard_dirs, shards):
        if index in seen:
            raise ValueError(f"shard {index}/{count} given twice: {seen[index]} and {folder}")
        seen[index] = folder
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if missing:
        raise ValueError(f"missing shard(s) {', '.join(missing)} of {count}")
    if any(output.resolve() == d.resolve() for d in shard_dirs):
        raise OutputConflict(f"--output {output} is one of the shards: merge into a new folder")

    all_samples = base["samples"]
    records: dict[str, dict[str, Any]] = {}
    for index, folder in sorted(seen.items()):
        expected = shard_samples(all_samples, (index, count))
        found = {k: _load_sample(folder, k) for k in expected}
        absent = [k for k, r in found.items() if r is None]
        if absent:
            raise ValueError(f"{folder} (shard {index}/{count}) is incomplete: {len(absent)} of {len(expected)} "
                             f"sample(s) not finished ({', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''}); "
                             f"rerun that shard with --resume")
        records.update(found)  # type: ignore[arg-type]

    merged = {**base, "shard": "0/1"}
    infos = [s[INFO_KEY] for _, s in sorted(zip((i for i, _ in shards), settings), key=lambda p: p[0])
             if INFO_KEY in s]  # in shard order
    if infos:
        merged[INFO_KEY] = infos[0] if all(i == infos[0] for i in infos) else infos
    check_output(output, merged, resume=False, overwrite=overwrite)
    output.mkdir(parents=True, exist_ok=True)
    _clear_results(output)
    write_json(output / SETTINGS_FILE, merged)
    for key in all_samples:
        write_json(_sample_path(output, key), records[key])
    return write_outputs([records[k] for k in all_samples], ProtocolConfig(**base["protocol"]), output)
