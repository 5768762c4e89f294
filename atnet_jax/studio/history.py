"""The studio's history on disk: the workspace folder, its steps as typed records, and the session's state after each.

Workspace folder::

    studio.json            the video (named fields), the weights, the objects (names, colours), the list of steps
    steps/0001/            the session's state after step 1 (an undone step's folder stays, for redo, until a
                           new step takes its index): probabilities.npy [F, K, H, W] float32 of the F
                           frames the step changed (all T after an object edit; the others are read from
                           earlier steps), indicators.npy [R, K, h, w, C] float32, state.json (annotated
                           frames, strokes, which frames probabilities.npy holds)
    scribbles/001.json     round 1's strokes as a DAVIS scribble file (one per round, in round order)
    masks/00000.png        the current masks, palette PNGs (DAVIS palette, 0 = background, k = object k)
    video/                 the generated demo video (a DAVIS folder), when the studio runs on the demo
    export/                what Export writes

A step's folder is written beside its final name and renamed into place, then ``studio.json`` is replaced
atomically; a crash loses at most the running step. Every step's state lives on disk, not in memory, so undo
reaches back to the start while the server's memory stays flat. Workspaces written before the video was recorded
by name (``"video": {"args": ["--input", PATH, "--sequence", NAME]}``) still open.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atnet_jax.errors import InputError
from atnet_jax.inference.session import SessionState
from atnet_jax.io.masks import write_mask
from atnet_jax.io.safe import replace_dir, staging_dir, write_json

FORMAT = 1
META_FILE = "studio.json"


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """The video a workspace belongs to: ``input`` (an absolute path: a DAVIS root with ``sequence``, a folder of
    frames or a video file), whether it is the generated ``demo`` video, the processing ``size`` (None: full)."""

    input: str
    sequence: str | None = None
    demo: bool = False
    size: int | None = 480

    def infer_args(self) -> list[str]:
        """The same video for ``python -m atnet_jax.infer``."""
        return ["--input", self.input, *(["--sequence", self.sequence] if self.sequence else [])]

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "sequence": self.sequence, "args": self.infer_args(), "demo": self.demo,
                "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoRecord:
        size = data.get("size", 480)
        if "input" in data:
            return cls(str(data["input"]), data.get("sequence"), bool(data.get("demo", False)), size)
        args = list(data.get("args", []))  # earlier workspaces: the video as infer's flags
        flags = dict(zip(args[::2], args[1::2]))
        if "--input" not in flags:
            raise InputError(f"the workspace's video record names no input ({args})")
        return cls(flags["--input"], flags.get("--sequence"), bool(data.get("demo", False)), size)


StepKind = Literal["round", "add_object", "remove_object"]


@dataclasses.dataclass
class Step:
    """One step of the history: a round (``frame``, ``strokes``, ``seconds``, the frames it ``updated``, its
    propagation range ``direction`` and ``until`` where not the whole video both ways) or an
    object edit (``object``, the uids of the ``objects`` after it, the ``removed`` object's record).
    ``before``: the object uids before the step (undo restores them)."""

    kind: StepKind
    before: list[int]
    frame: int | None = None
    strokes: list[dict] | None = None
    seconds: float | None = None
    updated: list[int] | None = None
    object: int | None = None
    objects: list[int] | None = None
    removed: list[dict] | None = None
    direction: str | None = None  # a round propagated one way only ("forward", "backward"; None: both)
    until: int | None = None  # the frame a round's propagation stopped at on its side (None: no stop frame)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                                      if f.name != "kind" and getattr(self, f.name) is not None}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def public(self) -> dict[str, Any]:
        """What the page is shown of it (the strokes are sent separately, per frame)."""
        return {k: v for k, v in self.to_json().items() if k != "strokes"}


@dataclasses.dataclass
class RedoEntry:
    """An undone step that redo brings back: the step and the object records after it. Its state stays in its
    step folder (the index it had) until a new step takes that index."""

    step: Step
    objects: list[dict]

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step.to_json(), "objects": self.objects}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RedoEntry:
        return cls(Step.from_json(data["step"]), list(data["objects"]))


@dataclasses.dataclass
class Meta:
    """``studio.json``: the workspace's name, video, weights, objects and steps."""

    name: str
    video: VideoRecord
    video_shape: dict[str, int]  # num_frames, height, width
    checkpoint: str
    objects: list[dict]
    steps: list[Step]
    next_uid: int
    redo: list[RedoEntry] = dataclasses.field(default_factory=list)  # undone steps, the next to redo first

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "video": {**self.video.to_json(), **self.video_shape},
                "checkpoint": self.checkpoint, "objects": self.objects, "steps": [s.to_json() for s in self.steps],
                "next_uid": self.next_uid, "redo": [r.to_json() for r in self.redo]}


def read_meta(root: Path) -> Meta | None:
    """The workspace record in ``root``, None where there is none yet; an :class:`InputError` naming the file
    where it cannot be read."""
    path = Path(root) / META_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise InputError(f"{path}: unknown workspace format {data.get('format')!r}")
        video = data["video"]
        return Meta(data["name"], VideoRecord.from_json(video),
                    {k: video.get(k) for k in ("num_frames", "height", "width")}, data["checkpoint"],
                    data["objects"], [Step.from_json(s) for s in data["steps"]], data["next_uid"],
                    [RedoEntry.from_json(r) for r in data.get("redo", [])])
    except InputError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: cannot read the workspace ({type(err).__name__}: {err})") from err


class History:
    """The steps of a workspace on disk under ``root``: each step's session state, the rounds' scribble files and
    the current masks. ``prob_shape``: the session's processing size ``(h, w)``."""

    def __init__(self, root: Path, num_frames: int, prob_shape: tuple[int, int]) -> None:
        self.root = Path(root)
        self.num_frames = num_frames
        self.prob_shape = prob_shape

    def save_meta(self, meta: Meta) -> None:
        write_json(self.root / META_FILE, meta.to_json(), indent=1)

    def step_dir(self, index: int) -> Path:
        return self.root / "steps" / f"{index:04d}"

    def remove_strays(self, count: int) -> None:
        """Remove step folders beyond the ``count`` listed ones (a step that crashed before it was listed)."""
        listed = {self.step_dir(i + 1).name for i in range(count)}
        steps_dir = self.root / "steps"
        for stray in steps_dir.iterdir() if steps_dir.is_dir() else ():
            if stray.name not in listed:
                shutil.rmtree(stray, ignore_errors=True)

    def remove_step(self, index: int) -> None:
        shutil.rmtree(self.step_dir(index), ignore_errors=True)

    def steps_exist(self, first: int, count: int) -> bool:
        """Whether the folders of steps ``first .. first + count - 1`` are all there."""
        return all((self.step_dir(i) / "state.json").is_file() for i in range(first, first + count))

    def write_state(self, index: int, state: SessionState, num_objects: int, changed: Sequence[int] | None) -> None:
        """``state`` as step ``index``: written beside its folder, then renamed into place.

        ``changed``: the frames whose probabilities changed since the previous step (a round's range); only
        those are written, the others are read from earlier steps. None writes every frame (a full step, as
        after an object edit, which changes every frame's object count)."""
        frames = list(range(self.num_frames)) if changed is None else sorted(set(changed))
        final = self.step_dir(index)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging_dir(final)
        try:
            probs = np.lib.format.open_memmap(tmp / "probabilities.npy", "w+", np.float32,
                                              (len(frames), num_objects, *self.prob_shape))
            for i, t in enumerate(frames):
                probs[i] = state.probabilities[t]
            probs.flush()
            del probs
            indicators = (np.stack(state.indicators) if state.indicators
                          else np.zeros((0, num_objects), np.float32))
            np.save(tmp / "indicators.npy", indicators.astype(np.float32))
            strokes = {str(t): s for t, s in state.strokes.items()}
            (tmp / "state.json").write_text(json.dumps({"annotated": state.annotated, "strokes": strokes,
                                                        "frames": frames, "full": changed is None}))
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def read_state(self, index: int) -> SessionState:
        """Step ``index``'s state: each frame's probabilities from the latest step up to ``index`` that wrote
        it (back to the last full step; frames no step wrote are the start's zeros)."""
        def load(i: int) -> tuple[dict, Path]:
            folder = self.step_dir(i)
            try:
                return json.loads((folder / "state.json").read_text(encoding="utf-8")), folder
            except (OSError, ValueError) as err:
                raise InputError(f"{folder}: cannot read the saved step ({err})") from err

        state, folder = load(index)
        try:
            indicators = np.load(folder / "indicators.npy")
            missing = set(range(self.num_frames))
            probabilities = None
            i, step = index, state
            while missing and i >= 1:
                stored = np.load(self.step_dir(i) / "probabilities.npy", mmap_mode="r")
                if probabilities is None:
                    # A file-backed scratch array, so that undo keeps the server's memory flat on long videos.
                    probabilities = np.memmap(tempfile.TemporaryFile(), np.float32, "w+",
                                              shape=(self.num_frames, stored.shape[1], *self.prob_shape))
                for row, t in enumerate(step["frames"]):
                    if t in missing:
                        probabilities[t] = stored[row]
                        missing.discard(t)
                del stored
                if step["full"]:
                    break
                i -= 1
                if i >= 1:
                    step, _ = load(i)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{folder}: cannot read the saved step ({err})") from err
        return SessionState(probabilities, [int(a) for a in state["annotated"]],
                            {int(t): s for t, s in state["strokes"].items()}, list(indicators))

    def empty_state(self, num_objects: int) -> SessionState:
        return SessionState(np.zeros((self.num_frames, num_objects, *self.prob_shape), np.float32), [], {}, [])

    def round_files(self, rounds: int) -> list[Path]:
        """The scribble files of the first ``rounds`` rounds, in order."""
        return [self.root / "scribbles" / f"{i + 1:03d}.json" for i in range(rounds)]

    def write_round_file(self, number: int, frame: int, strokes: list[dict], sequence: str) -> Path:
        """Round ``number``'s strokes on ``frame`` as a DAVIS scribble file."""
        frames: list[list[dict]] = [[] for _ in range(self.num_frames)]
        frames[frame] = strokes
        path = self.root / "scribbles" / f"{number:03d}.json"
        write_json(path, {"scribbles": frames, "sequence": sequence}, indent=1)
        return path

    def write_masks(self, frames: Sequence[int], labels: Callable[[int], np.ndarray]) -> None:
        for t in frames:
            write_mask(self.root / "masks" / f"{t:05d}.png", labels(t), overwrite=True)
