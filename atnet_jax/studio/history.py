"""The studio's history on disk: the workspace folder, its steps as typed records, and the session's state after each.

Workspace folder::

    studio.json            the video (named fields), the weights, the objects (names, colours), the list of steps,
                           the mask version clock
    steps/0001/            the session's state after step 1 (an undone step's folder stays, for redo, until a
                           new step takes its index): probabilities.bin (per frame the step changed, one
                           losslessly compressed chunk: the round's logits [K, h/4, w/4] float32 where the
                           probabilities are recomputed from them, else the probabilities [K, h, w] float32),
                           indicators.bin (A-Net's indicators [h, w, C] float32 per annotated frame and object that
                           no earlier step holds, compressed the same way), state.json (annotated frames, strokes,
                           which frames probabilities.bin holds and where, where each indicator is, and for an
                           object edit how this step's objects map to the previous step's)
    scribbles/001.json     round 1's strokes as a DAVIS scribble file (one per round, in round order)
    masks/00000.png        the current masks, palette PNGs (DAVIS palette, 0 = background, k = object k)
    video/                 the generated demo video (a DAVIS folder), when the studio runs on the demo
    export/                what Export writes

A round stores only the frames it changed; the others are read from earlier steps. An object edit stores no
probabilities: an added object is a zero plane, a removed one a selection of the previous step's objects, recorded
as ``"objects"`` (per object, its index in the previous step or -1 for zeros).

A round's frame is stored as the network's logits before their last upsampling (:attr:`Session.last_round`): 16x
fewer values, from which the probabilities come back to the bit as
``blend(expand_logits(logits), previous, alpha)`` (:mod:`atnet_jax.models.expand` uses IEEE basic operations only,
so any machine recomputes the same bits), ``previous`` being the frame after the step before. The session checks
that its ``previous`` is the history's (a CRC-32 of each stored frame is kept); where it is not, where the
predictor gives no logits, or after ``MAX_CHAIN`` steps in a row that need their previous frame, the probabilities
themselves are stored. Reading checks each recomputed frame against its CRC-32.

A chunk is its float32 bits through a second-order difference along the width and the height (integer, modulo
2**32: smooth maps leave small residuals), zigzagged, then Blosc (zstd, byte shuffle): exact to the bit, about 1.8x
smaller than the raw floats on real probability maps (see experiments/bench_studio.py).

Format 1 (before compression) stored ``probabilities.npy`` [F, K, h, w] with every frame after an object edit, and
every step's indicators as ``indicators.npy`` [R, K, h, w, C]; format 2 stored every changed frame's probabilities
(no logits, no CRC). Both are still read, and such a workspace continues in format 3.

A step's folder is written beside its final name and renamed into place, then ``studio.json`` is replaced
atomically; a crash loses at most the running step. Every step's state lives on disk, not in memory, so undo
reaches back to the start while the server's memory stays flat. Workspaces written before the video was recorded
by name (``"video": {"args": ["--input", PATH, "--sequence", NAME]}``) still open.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from atnet_jax.errors import InputError
from atnet_jax.inference.plan import blend
from atnet_jax.inference.rounds import RoundLogits, SessionState, frame_crc
from atnet_jax.io.masks import write_mask
from atnet_jax.io.safe import replace_dir, staging_dir, write_json
from atnet_jax.models.expand import expand_logits

FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
META_FILE = "studio.json"
PROBABILITIES = "probabilities.bin"
INDICATORS = "indicators.bin"
CODEC = "delta2-zigzag-blosc-zstd1-shuffle"
MAX_CHAIN = 4
"""Steps in a row whose frames are recomputed from the frame before (weights below 1) before one is stored whole:
it bounds the work of reading a frame back."""


def _difference(x: np.ndarray, axis: int) -> np.ndarray:
    return np.diff(x, axis=axis, prepend=np.zeros_like(np.take(x, [0], axis=axis)))


def encode_frame(probabilities: np.ndarray) -> bytes:
    """A frame's ``[K, h, w]`` float32 probabilities -> bytes that :func:`decode_frame` turns back bit for bit.

    The float bits as uint32 through second differences along the width and the height (wrapping modulo 2**32,
    so exact), the residuals zigzagged (small magnitudes -> small numbers), then Blosc zstd with byte shuffle."""
    from numcodecs import Blosc

    residual = np.ascontiguousarray(probabilities, np.float32).view(np.uint32)
    for axis in (-1, -1, -2, -2):
        residual = _difference(residual, axis)
    signed = residual.view(np.int32)
    zigzag = ((signed << 1) ^ (signed >> 31)).view(np.uint32)
    return bytes(Blosc("zstd", 1, Blosc.SHUFFLE).encode(np.ascontiguousarray(zigzag)))


def decode_frame(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`encode_frame`: ``[K, h, w]`` float32 of ``shape``."""
    from numcodecs import Blosc

    zigzag = np.frombuffer(Blosc("zstd", 1, Blosc.SHUFFLE).decode(data), np.uint32)
    if zigzag.size != int(np.prod(shape)):
        raise ValueError(f"a compressed frame holds {zigzag.size} values, expected {shape}")
    values = (zigzag >> np.uint32(1)) ^ (-(zigzag & np.uint32(1)).view(np.int32)).view(np.uint32)
    values = values.reshape(shape)
    for axis in (-2, -2, -1, -1):
        values = np.cumsum(values, axis=axis, dtype=np.uint32)
    return values.view(np.float32)


def select_objects(probabilities: np.ndarray, objects: Sequence[int]) -> np.ndarray:
    """``[K, h, w]`` -> ``[len(objects), h, w]``: plane ``objects[j]`` of ``probabilities``, zeros where -1."""
    out = np.zeros((len(objects), *probabilities.shape[1:]), np.float32)
    for j, k in enumerate(objects):
        if k >= 0:
            out[j] = probabilities[k]
    return out


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
    clock: int = 0  # the last mask version handed out (versions never go back, across restarts too)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "video": {**self.video.to_json(), **self.video_shape},
                "checkpoint": self.checkpoint, "objects": self.objects, "steps": [s.to_json() for s in self.steps],
                "next_uid": self.next_uid, "redo": [r.to_json() for r in self.redo], "clock": self.clock}


def read_meta(root: Path) -> Meta | None:
    """The workspace record in ``root``, None where there is none yet; an :class:`InputError` naming the file
    where it cannot be read."""
    path = Path(root) / META_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") not in READABLE_FORMATS:
            raise InputError(f"{path}: unknown workspace format {data.get('format')!r}")
        video = data["video"]
        return Meta(data["name"], VideoRecord.from_json(video),
                    {k: video.get(k) for k in ("num_frames", "height", "width")}, data["checkpoint"],
                    data["objects"], [Step.from_json(s) for s in data["steps"]], data["next_uid"],
                    [RedoEntry.from_json(r) for r in data.get("redo", [])], int(data.get("clock", 0)))
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

    def write_state(self, index: int, state: SessionState, num_objects: int, changed: Sequence[int] | None, *,
                    objects: Sequence[int] | None = None, logits: RoundLogits | None = None) -> None:
        """``state`` as step ``index``: written beside its folder, then renamed into place.

        ``changed``: the frames whose probabilities changed since the previous step (a round's range); only
        those are written, the others are read from earlier steps. None writes every frame. ``objects``: for an
        object edit, each object's index in the previous step's probabilities, -1 for a new (zero) object; the
        frames not in ``changed`` are then that selection of the previous step's, which is not written again.
        ``logits``: the round's (:attr:`Session.last_round`), stored instead of the probabilities of the frames
        they recompute exactly from step ``index - 1``."""
        frames = list(range(self.num_frames)) if changed is None else sorted(set(changed))
        final = self.step_dir(index)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging_dir(final)
        try:
            chunks, from_logits, records = [], {}, {}
            with open(tmp / PROBABILITIES, "wb") as out:
                for t in frames:
                    probabilities = np.asarray(state.probabilities[t], np.float32)
                    row = self._logits_row(index, t, logits, num_objects, records)
                    if row is not None:
                        from_logits[str(t)] = row
                        data = encode_frame(logits.logits[t])  # type: ignore[union-attr]
                    else:
                        data = encode_frame(probabilities)
                    chunks.append([out.tell(), len(data), frame_crc(probabilities)])
                    out.write(data)
            # A-Net's indicators, per annotated frame and object: a plane stored once, then referenced by later
            # steps for as long as it stays the same (a round changes its frame's only).
            known = self._indicator_planes(index - 1)
            planes, plane_shape = [], None
            with open(tmp / INDICATORS, "wb") as out:
                for indicator in state.indicators:
                    row = []
                    for plane in np.asarray(indicator, np.float32):
                        plane_shape = list(plane.shape)
                        key = hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest()[:32]
                        if key not in known:
                            data = encode_frame(np.moveaxis(plane, -1, 0))
                            known[key] = [index, out.tell(), len(data)]
                            out.write(data)
                        row.append([key, *known[key]])
                    planes.append(row)
            strokes = {str(t): s for t, s in state.strokes.items()}
            record = {"format": FORMAT, "annotated": state.annotated, "strokes": strokes, "num_objects": num_objects,
                      "frame_shape": list(self.prob_shape), "frames": frames, "chunks": chunks, "codec": CODEC,
                      "indicators": planes, "indicator_shape": plane_shape}
            if from_logits:
                assert logits is not None
                record["logits"] = {"stride": logits.stride, "window": list(logits.window),
                                    "shape": list(logits.logits.frame_shape), "rows": from_logits}
            if objects is not None:
                record["objects"] = [int(i) for i in objects]
            (tmp / "state.json").write_text(json.dumps(record))
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _logits_row(self, index: int, t: int, logits: RoundLogits | None, num_objects: int,
                    records: dict[int, dict]) -> list | None:
        """``[alpha, chain]`` where step ``index`` can store frame ``t`` as the round's ``logits`` (``chain``: the
        steps in a row, this one included, whose frame needs the one before), None where it stores the
        probabilities."""
        if logits is None or t not in logits.alphas or logits.logits.frame_shape[0] != num_objects:
            return None
        alpha = float(logits.alphas[t])
        if alpha >= 1.0:
            return [alpha, 0]
        chain, crc = self._chain_and_crc(index - 1, t, num_objects, records)
        if chain + 1 > MAX_CHAIN or crc != logits.before_crc.get(t):
            return None
        return [alpha, chain + 1]

    def _chain_and_crc(self, index: int, t: int, num_objects: int, records: dict[int, dict]) -> tuple[int, int]:
        """Frame ``t`` after step ``index`` (``num_objects`` objects): the chain of its last stored row and its
        :func:`frame_crc`. ``records``: the step records read so far."""
        i, selected = index, False
        while i >= 1:
            if i not in records:
                records[i] = self._load_record(i)
            record = records[i]
            row = record["rows"].get(t)
            if row is not None:
                chunk = record["chunks"][row] if "chunks" in record else []  # format 1: none
                logits_rows = record.get("logits", {}).get("rows", {})
                chain = logits_rows[str(t)][1] if str(t) in logits_rows else 0
                if len(chunk) > 2 and not selected:
                    return chain, int(chunk[2])
                break
            selected = selected or "objects" in record
            i -= 1
        else:  # never written: zeros
            return 0, frame_crc(np.zeros((num_objects, *self.prob_shape), np.float32))
        _, frame = next(self._read_frames(index, [t], records))
        if frame is None:
            frame = np.zeros((num_objects, *self.prob_shape), np.float32)
        return chain, frame_crc(frame)

    def _indicator_planes(self, index: int) -> dict[str, list[int]]:
        """Step ``index``'s indicator planes: content hash -> [step, offset, length] (none before format 2)."""
        if index < 1:
            return {}
        record = self._load_record(index)
        rows = record.get("indicators", [])
        return {key: [step, offset, length] for row in rows for key, step, offset, length in row}

    def _read_indicators(self, record: dict, folder: Path) -> list[np.ndarray]:
        if record.get("format", 1) == 1:
            return list(np.load(folder / "indicators.npy"))
        if not record["indicators"]:
            return []
        height, width, channels = record["indicator_shape"]
        out = []
        for row in record["indicators"]:
            planes = []
            for _, step, offset, length in row:
                with open(self.step_dir(step) / INDICATORS, "rb") as f:
                    f.seek(offset)
                    planes.append(np.moveaxis(decode_frame(f.read(length), (channels, height, width)), 0, -1))
            out.append(np.ascontiguousarray(np.stack(planes)))
        return out

    def _load_record(self, index: int) -> dict:
        folder = self.step_dir(index)
        try:
            record = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            if record.get("format", 1) == 1:  # probabilities.npy: the listed frames' rows, every frame when full
                record["num_objects"] = int(np.load(folder / "probabilities.npy", mmap_mode="r").shape[1])
            elif record["format"] not in (2, 3) or record.get("codec") != CODEC:
                raise ValueError(f"unknown step format {record.get('format')!r} / codec {record.get('codec')!r}")
            record["rows"] = {int(t): row for row, t in enumerate(record["frames"])}
            return record
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"{folder}: cannot read the saved step ({err})") from err

    def _read_frames(self, index: int, frames: Sequence[int], records: dict[int, dict] | None = None
                     ) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(t, probabilities)`` of ``frames`` after step ``index``, one by one (None: zeros, no step wrote the
        frame): each from the latest step up to ``index`` that wrote it, through the object selections of the
        object edits in between, and recomputed from the frame before where that step stored the round's logits.
        ``records``: the step records read so far (filled in here)."""
        records = {} if records is None else records  # the step records read so far, shared with the caller
        for i in range(index, 0, -1):
            if i not in records:
                records[i] = self._load_record(i)
        opened: dict[int, Any] = {}

        def chunk(i: int, t: int, shape: tuple[int, ...]) -> np.ndarray:
            record, row = records[i], records[i]["rows"][t]
            if record.get("format", 1) == 1:
                if i not in opened:
                    opened[i] = np.load(self.step_dir(i) / "probabilities.npy", mmap_mode="r")
                return np.asarray(opened[i][row], np.float32)
            if i not in opened:
                opened[i] = open(self.step_dir(i) / PROBABILITIES, "rb")  # noqa: SIM115 (closed below)
            offset, length = record["chunks"][row][:2]
            opened[i].seek(offset)
            return decode_frame(opened[i].read(length), shape)

        def frame_at(i: int, t: int) -> np.ndarray | None:
            # Back to the step that stored the frame whole (or to the start), then forward through the steps.
            chain: list[tuple[int, str]] = []
            while i >= 1:
                record = records[i]
                if t in record["rows"]:
                    logits = record.get("logits", {}).get("rows", {}).get(str(t))
                    if logits is None:
                        chain.append((i, "stored"))
                        break
                    chain.append((i, "logits"))
                    if logits[0] >= 1.0:
                        break
                elif "objects" in record:
                    chain.append((i, "objects"))
                i -= 1
            frame: np.ndarray | None = None
            for i, kind in reversed(chain):
                record = records[i]
                if kind == "objects":
                    frame = None if frame is None else select_objects(frame, record["objects"])
                elif kind == "stored":
                    frame = chunk(i, t, (record["num_objects"], *self.prob_shape))
                else:
                    meta = record["logits"]
                    alpha = float(meta["rows"][str(t)][0])
                    new = expand_logits(chunk(i, t, tuple(meta["shape"])), int(meta["stride"]), tuple(meta["window"]))
                    frame = np.asarray(blend(new, frame, alpha), np.float32)
                    if frame_crc(frame) != record["chunks"][record["rows"][t]][2]:
                        raise ValueError(f"frame {t} of step {i} does not recompute to the probabilities saved")
            return frame

        try:
            for t in frames:
                yield t, frame_at(index, t)
        finally:
            for handle in opened.values():
                if hasattr(handle, "close"):
                    handle.close()

    def read_state(self, index: int) -> SessionState:
        """Step ``index``'s state: every frame as :meth:`_read_frames` reads it (frames no step wrote are the
        start's zeros)."""
        state, folder = self._load_record(index), self.step_dir(index)
        try:
            indicators = self._read_indicators(state, folder)
            # A file-backed scratch array, so that undo keeps the server's memory flat on long videos.
            probabilities = np.memmap(tempfile.TemporaryFile(), np.float32, "w+",
                                      shape=(self.num_frames, state["num_objects"], *self.prob_shape))
            for t, frame in self._read_frames(index, range(self.num_frames)):
                if frame is not None:
                    probabilities[t] = frame
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise InputError(f"{folder}: cannot read the saved step ({err})") from err
        return SessionState(probabilities, [int(a) for a in state["annotated"]],
                            {int(t): s for t, s in state["strokes"].items()}, indicators)

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
