"""The studio's controller: one session, its rounds (run on the caller's thread, one at a time), the locks that keep
steps apart, the events the page follows, and the history (:mod:`atnet_jax.studio.history`) that makes every step
undoable and resumable. No HTTP here: refusals are the project's errors (:mod:`atnet_jax.errors`), which the app
maps to statuses."""
from __future__ import annotations

import dataclasses
import io
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.errors import ConflictError, InputError, NotFoundError, UsageError
from atnet_jax.inference.session import FrameUpdate, Session
from atnet_jax.interaction.kinds import Click, Clicks, Interaction, Scribble
from atnet_jax.io.masks import DAVIS_PALETTE
from atnet_jax.io.safe import replace_dir, staging_dir
from atnet_jax.io.scribbles import ScribbleError, validate_scribbles
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE
from atnet_jax.studio.history import History, Meta, Step, VideoRecord, read_meta

MAX_OBJECTS = 32
MAX_STROKES = 500
MAX_POINTS = 20_000
MAX_NAME = 40
DEFAULT_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                   "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


def parse_colour(value: object) -> str:
    """``"#rrggbb"`` (case-insensitive) -> lower-case; anything else is a :class:`UsageError`."""
    if (not isinstance(value, str) or len(value) != 7 or value[0] != "#"
            or any(c not in "0123456789abcdefABCDEF" for c in value[1:])):
        raise UsageError(f"colour must be '#rrggbb', got {str(value)[:20]!r}")
    return value.lower()


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def binary_entropy(p: np.ndarray) -> float:
    """Mean binary entropy (bits) of probabilities ``p`` (any shape): 0 where the model is sure, 1 at 0.5."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


@dataclasses.dataclass
class LiveRound:
    """The running round: its frame, the frames it will update, and how far it got."""

    frame: int
    total: int
    started: float
    done: int = 0
    updated: list[int] = dataclasses.field(default_factory=list)
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)


class _Cancelled(Exception):
    """The running round was cancelled (the session is back as before it)."""


class Events:
    """Progress events for the page: a bounded log with increasing ids, and listeners (callables) to notify."""

    def __init__(self, keep: int = 2000) -> None:
        self._lock = threading.Lock()
        self._log: list[dict] = []
        self._keep = keep
        self._next = 1
        self._listeners: list[Callable[[dict], None]] = []

    def publish(self, event_type: str, /, **data: Any) -> dict:
        with self._lock:
            event = {"id": self._next, "type": event_type, **data}
            self._next += 1
            self._log.append(event)
            del self._log[: -self._keep]
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)
        return event

    @property
    def last_id(self) -> int:
        """The id of the last event published (0 before the first)."""
        with self._lock:
            return self._next - 1

    def between(self, after: int, upto: int) -> list[dict]:
        """The logged events with ``after < id <= upto``."""
        with self._lock:
            return [e for e in self._log if after < e["id"] <= upto]

    def subscribe(self, listener: Callable[[dict], None]) -> int:
        """Add ``listener``; returns the id of the last event published before it (later ones reach it)."""
        with self._lock:
            self._listeners.append(listener)
            return self._next - 1

    def unsubscribe(self, listener: Callable[[dict], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


def json_integer(value: object, name: str) -> int:
    """The one rule for every integer field of a request: a JSON integer (``2``; not ``2.0``, ``"2"`` or ``true``),
    else a :class:`UsageError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, got {json_repr(value)}")
    return value


def json_repr(value: object, limit: int = 20) -> str:
    """A short, one-line rendering of a request's value for a message."""
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    return repr(value)[:limit]


class Controller:
    """A session, its history on disk under ``root``, and the running round.

    Methods that change the session run on the caller's thread; the app runs them on its one model thread.
    ``begin_round`` checks a round and reserves the session; ``run_round`` then computes it.
    """

    def __init__(self, root: Path, session: Session, *, name: str, video: VideoRecord, checkpoint: str,
                 demo_weights: bool) -> None:
        self.root = Path(root)
        self.session = session
        self.name = name
        self.video = video
        self.checkpoint = checkpoint
        self.demo_weights = demo_weights
        self.num_frames, self.height, self.width = session.num_frames, session.height, session.width
        self.history = History(self.root, self.num_frames, tuple(session.processing_shape))
        self.events = Events()
        self.live: LiveRound | None = None
        self.busy = threading.Lock()  # held while a step (round, undo, object edit, export) runs
        # A frame's mask version: the clock's value when its image last changed. The clock never goes back, across
        # restarts too (saved in the workspace, and at least the time in ms), so a page left open across a restart
        # sees every later image as newer.
        self._clock_lock = threading.Lock()
        self.clock = 0
        self.versions = [0] * self.num_frames
        self._live_labels: dict[int, np.ndarray] = {}
        self.objects: list[dict] = []
        self.steps: list[Step] = []
        self._next_uid = 1
        self._load_or_create()

    # ---------------------------------------------------------------------------------------------- disk

    def _video_shape(self) -> dict[str, int]:
        return {"num_frames": self.num_frames, "height": self.height, "width": self.width}

    def _load_or_create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        meta = read_meta(self.root)
        self.versions = [self._tick()] * self.num_frames
        if meta is None:
            self.objects = [self._new_object() for _ in range(self.session.num_objects)]
            self._save_meta()
            return
        if meta.video_shape != self._video_shape():
            key = meta.video_shape
            raise InputError(f"{self.root / 'studio.json'}: the workspace is for a video of {key['num_frames']} "
                             f"frames of {key['height']}x{key['width']}, not this one ({self.num_frames} frames of "
                             f"{self.height}x{self.width})")
        self.objects, self.steps, self._next_uid = meta.objects, meta.steps, meta.next_uid
        self.clock = max(self.clock, meta.clock)
        self.versions = [self._tick()] * self.num_frames
        self.history.remove_strays(len(self.steps))
        if self.steps:
            self.session.restore(self.history.read_state(len(self.steps)))
        elif self.session.num_objects != len(self.objects):
            self.session.restore(self.history.empty_state(len(self.objects)))

    def _save_meta(self) -> None:
        self.history.save_meta(Meta(self.name, self.video, self._video_shape(), self.checkpoint, self.objects,
                                    self.steps, self._next_uid, self.clock))

    def _tick(self) -> int:
        """The next mask version: above every earlier one, and at least the time in milliseconds."""
        with self._clock_lock:
            self.clock = max(self.clock + 1, time.time_ns() // 1_000_000)
            return self.clock

    def _new_object(self) -> dict:
        uid = self._next_uid
        self._next_uid += 1
        return {"uid": uid, "name": f"object {uid}", "colour": DEFAULT_COLOURS[(uid - 1) % len(DEFAULT_COLOURS)]}

    def _num_rounds(self) -> int:
        return sum(s.kind == "round" for s in self.steps)

    def _round_files(self) -> list[Path]:
        return self.history.round_files(self._num_rounds())

    def _write_masks(self, frames: Sequence[int]) -> None:
        self.history.write_masks(frames, lambda t: self.session.labels[t])

    def _commit(self, step: Step, changed: Sequence[int], *, objects: Sequence[int] | None = None) -> None:
        """Save the session's state as a new step, the masks of ``changed`` frames, and the step list: a round's
        ``changed`` frames' probabilities, or for an object edit, ``objects``: each object's index before it (-1:
        new), which the history records instead of the probabilities."""
        index = len(self.steps) + 1
        state = self.session.snapshot(copy=False)  # read at once, on the model thread: nothing changes it meanwhile
        if objects is None:
            self.history.write_state(index, state, len(self.objects), changed)
        else:
            self.history.write_state(index, state, len(self.objects), [], objects=objects)
        if step.kind == "round":
            assert step.frame is not None and step.strokes is not None
            self.history.write_round_file(self._num_rounds() + 1, step.frame, step.strokes, self.name)
        self._write_masks(changed)
        self.steps.append(step)
        self._save_meta()

    def _restore_saved(self) -> None:
        n = len(self.steps)
        self.session.restore(self.history.read_state(n) if n else self.history.empty_state(len(self.objects)))

    # --------------------------------------------------------------------------------------------- state

    def summary(self) -> dict:
        """What the page shows: the video, objects, steps, annotated frames, strokes, the running round."""
        live = self.live
        return {
            "name": self.name, "num_frames": self.num_frames, "height": self.height, "width": self.width,
            "demo_weights": self.demo_weights, "checkpoint": self.checkpoint,
            "objects": [{"id": i + 1, "name": o["name"], "colour": o["colour"]} for i, o in enumerate(self.objects)],
            "steps": [s.public() for s in self.steps],
            "rounds": self._num_rounds(),
            "annotated": self.session.annotated,
            "strokes": {str(t): s for t, s in self.session.strokes.items()},
            "versions": list(self.versions),
            "running": None if live is None else {"frame": live.frame, "total": live.total, "done": live.done,
                                                  "updated": list(live.updated)},
            "last_updated": (self.steps[-1].updated or []) if self.steps else [],
        }

    def labels(self, t: int) -> np.ndarray:
        """Frame ``t``'s labels ``[H, W]`` uint8 as the page should see them now."""
        live = self._live_labels.get(t)
        return live if live is not None else self.session.labels[t]

    def mask_png(self, t: int) -> bytes:
        """Frame ``t``'s labels as a palette PNG: index k = object k in its colour, index 0 transparent."""
        from PIL import Image

        self.check_frame(t)
        palette = self.palette()
        image = Image.fromarray(np.ascontiguousarray(self.labels(t)))
        image.putpalette(palette.tobytes())
        out = io.BytesIO()
        image.save(out, format="PNG", transparency=0, compress_level=1)
        return out.getvalue()

    def palette(self) -> np.ndarray:
        """The DAVIS palette with the objects' colours."""
        palette = DAVIS_PALETTE.copy()
        for i, o in enumerate(self.objects):
            palette[i + 1] = rgb(o["colour"])
        return palette

    def frame_jpeg(self, t: int) -> bytes:
        import cv2

        self.check_frame(t)
        frame = np.asarray(self.session.frames[t])
        ok, data = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise InputError(f"cannot encode frame {t} as JPEG")
        return data.tobytes()

    def check_frame(self, t: object) -> int:
        t = json_integer(t, "frame")
        if not 0 <= t < self.num_frames:
            raise NotFoundError(f"frame {t} is outside the video (0..{self.num_frames - 1})")
        return t

    def check_object(self, object_id: object) -> int:
        object_id = json_integer(object_id, "object")
        if not 1 <= object_id <= len(self.objects):
            raise NotFoundError(f"object {object_id} does not exist (objects 1..{len(self.objects)})")
        return object_id

    def suggest(self) -> dict:
        """The frame the model is least sure of: the largest mean binary entropy of the object probabilities
        (annotated frames left out). No ground truth is needed."""
        if self.live is not None:
            raise ConflictError("a round is running: suggest once it ends")
        annotated = self.session.annotated
        if not annotated:
            raise ConflictError("nothing to suggest before the first round")
        scores = [binary_entropy(self.session.probabilities[t]) for t in range(self.num_frames)]
        candidates = [t for t in range(self.num_frames) if t not in annotated] or list(range(self.num_frames))
        best = max(candidates, key=lambda t: scores[t])
        return {"frame": best, "entropy": scores[best], "entropies": [round(s, 5) for s in scores]}

    # -------------------------------------------------------------------------------------------- rounds

    def validate_round(self, body: object) -> Interaction:
        """``{"frame": t, "strokes": [...]}`` (DAVIS strokes) or ``{"frame": t, "clicks": [{"x", "y",
        "object_id"}, ...]}`` (fractions of the frame) -> the interaction, or a :class:`UsageError` /
        :class:`NotFoundError`."""
        if not isinstance(body, dict):
            raise UsageError("expected a JSON object {\"frame\": t, \"strokes\": [...]} or {\"frame\": t, "
                             "\"clicks\": [...]}")
        unknown = sorted(set(body) - {"frame", "strokes", "clicks"})
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(map(repr, unknown))[:80]}")
        if "frame" not in body or ("strokes" in body) == ("clicks" in body):
            raise UsageError("a round needs 'frame' and either 'strokes' or 'clicks'")
        frame = self.check_frame(body["frame"])
        if "clicks" in body:
            return self._clicks(frame, body["clicks"])
        strokes = body["strokes"]
        if not isinstance(strokes, list) or not strokes:
            raise UsageError("'strokes' must be a non-empty list of strokes")
        if len(strokes) > MAX_STROKES:
            raise UsageError(f"too many strokes: {len(strokes)} (at most {MAX_STROKES} per round)")
        for i, stroke in enumerate(strokes):
            if isinstance(stroke, dict) and "object_id" in stroke:
                json_integer(stroke["object_id"], f"stroke {i}: object_id")
        points = sum(len(s["path"]) for s in strokes if isinstance(s, dict) and isinstance(s.get("path"), list))
        if points > MAX_POINTS:
            raise UsageError(f"too many points: {points} (at most {MAX_POINTS} per round)")
        frames: list[list] = [[] for _ in range(self.num_frames)]
        frames[frame] = strokes
        try:
            data = validate_scribbles({"scribbles": frames}, source="strokes", num_frames=self.num_frames,
                                      num_objects=len(self.objects))
        except ScribbleError as err:
            raise UsageError(str(err).replace(f"frame {frame} stroke", "stroke")) from None
        return Scribble(frame, data["scribbles"][frame])

    def _clicks(self, frame: int, clicks: object) -> Clicks:
        if not isinstance(clicks, list) or not clicks:
            raise UsageError("'clicks' must be a non-empty list of {\"x\", \"y\", \"object_id\"}")
        if len(clicks) > MAX_STROKES:
            raise UsageError(f"too many clicks: {len(clicks)} (at most {MAX_STROKES} per round)")
        parsed = []
        for i, click in enumerate(clicks):
            if not isinstance(click, dict) or set(click) != {"x", "y", "object_id"}:
                raise UsageError(f"click {i}: expected an object with exactly 'x', 'y' and 'object_id'")
            object_id = json_integer(click["object_id"], f"click {i}: object_id")
            if not 0 <= object_id <= len(self.objects):
                raise UsageError(f"click {i}: object_id {object_id} does not exist (objects 1..{len(self.objects)}, "
                                 "0 = background)")
            try:
                parsed.append(Click(click["x"], click["y"], object_id))
            except UsageError as err:
                raise UsageError(f"click {i}: {err}") from None
        return Clicks(frame, parsed, time=0.0)

    def begin_round(self, frame: int) -> LiveRound:
        """Reserve the session for a round on ``frame`` (a :class:`ConflictError` if a step is running)."""
        if not self.busy.acquire(blocking=False):
            raise ConflictError("a round is running: wait for it or cancel it")
        self.live = LiveRound(frame, self.session.plan(frame).total, time.perf_counter())
        self.events.publish("round_start", frame=frame, total=self.live.total, round=self._num_rounds() + 1)
        return self.live

    def run_round(self, live: LiveRound, interaction: Interaction | list[dict]) -> None:
        """Compute the reserved round (on the model thread), publishing one event per frame, then save it.

        The workspace is released before ``round_end`` is published, so a client may submit the next round as
        soon as it sees that event."""
        session = self.session
        if not isinstance(interaction, Interaction):
            interaction = Scribble(live.frame, interaction)

        def on_frame(update: FrameUpdate) -> None:
            t = update.frame
            self._live_labels[t] = update.labels
            self.versions[t] = self._tick()
            live.done += 1
            live.updated.append(t)
            elapsed = time.perf_counter() - live.started
            rate = live.done / elapsed if elapsed > 0 else 0.0
            eta = (live.total - live.done) / rate if rate > 0 else None
            self.events.publish("frame", t=t, kind=update.kind, done=live.done, total=live.total,
                                version=self.versions[t], elapsed=round(elapsed, 3), fps=round(rate, 3),
                                eta=None if eta is None else round(eta, 2))

        status, message = "failed", "round failed"
        try:
            if live.cancel.is_set():
                raise _Cancelled
            on_frame(session.add(interaction))
            if live.cancel.is_set():
                session.cancel()
                raise _Cancelled
            updates = session.propagate()
            for update in updates:
                on_frame(update)
                if live.cancel.is_set():
                    updates.close()  # the session goes back to its state before the round
                    raise _Cancelled
            seconds = time.perf_counter() - live.started
            try:
                self._commit(Step("round", [o["uid"] for o in self.objects], frame=live.frame,
                                  strokes=interaction.to_strokes(), seconds=round(seconds, 3),
                                  updated=sorted(live.updated)), live.updated)
            except BaseException:  # not saved: back to the last saved step, so memory and disk agree
                self._restore_saved()
                raise
            status = "done"
            message = f"round {self._num_rounds()} on frame {live.frame}: {live.done} frames in {seconds:.1f} s"
        except _Cancelled:
            status, message = "cancelled", "round cancelled: the previous result is back"
        except Exception as err:  # noqa: BLE001 (reported to the page; the session restored itself)
            message = f"round failed: {type(err).__name__}: {err}".splitlines()[0]
        finally:
            if status != "done":
                self._bump(live.updated)
            self._live_labels.clear()
            self.live = None
            self.busy.release()
            self.events.publish("round_end", status=status, message=message, frame=live.frame,
                                seconds=round(time.perf_counter() - live.started, 3), versions=list(self.versions))

    def cancel(self) -> None:
        live = self.live
        if live is None:
            raise ConflictError("no round is running")
        live.cancel.set()

    # -------------------------------------------------------------------------------------- other steps

    def exclusive(self) -> None:
        """Reserve the session for a short step (a :class:`ConflictError` while a round runs); release with
        ``busy.release()``."""
        if not self.busy.acquire(blocking=False):
            raise ConflictError("a round is running: wait for it or cancel it")

    def _bump(self, frames: Sequence[int] | range) -> None:
        version = self._tick()
        for t in frames:
            self.versions[t] = version

    def undo(self) -> Step:
        """Go back one step (a round or an object edit), to the state saved before it."""
        if not self.steps:
            raise ConflictError("nothing to undo")
        step = self.steps[-1]
        index = len(self.steps)
        state = self.history.read_state(index - 1) if index > 1 else self.history.empty_state(len(step.before))
        self.session.restore(state)
        current = {o["uid"]: o for o in self.objects}
        removed = {o["uid"]: o for o in step.removed or []}
        self.objects = [current.get(uid) or removed[uid] for uid in step.before]
        if step.kind == "round":
            self._round_files()[-1].unlink(missing_ok=True)
        self.steps.pop()
        self._save_meta()
        self.history.remove_step(index)
        # Undoing a round changes only the frames it updated: the others read back bit for bit.
        frames = (step.updated or []) if step.kind == "round" else range(self.num_frames)
        self._write_masks(frames)
        self._bump(frames)
        self.events.publish("state", reason="undo")
        return step

    def add_object(self) -> int:
        if len(self.objects) >= MAX_OBJECTS:
            raise UsageError(f"at most {MAX_OBJECTS} objects")
        before = [o["uid"] for o in self.objects]
        new_id = self.session.add_object()
        self.objects.append(self._new_object())
        self._commit(Step("add_object", before, object=new_id, objects=[o["uid"] for o in self.objects]), [],
                     objects=[*range(len(before)), -1])
        self.events.publish("state", reason="add_object")
        return new_id

    def remove_object(self, object_id: int) -> None:
        self.check_object(object_id)
        if len(self.objects) == 1:
            raise ConflictError("the only object cannot be removed")
        before = [o["uid"] for o in self.objects]
        self.session.remove_object(object_id)
        removed = self.objects.pop(object_id - 1)
        self._commit(Step("remove_object", before, object=object_id, removed=[removed],
                          objects=[o["uid"] for o in self.objects]), range(self.num_frames),
                     objects=[k for k in range(len(before)) if k != object_id - 1])
        self._bump(range(self.num_frames))
        self.events.publish("state", reason="remove_object")

    def update_object(self, object_id: int, body: object) -> dict:
        """Rename and/or recolour object ``object_id`` from ``{"name": str, "colour": "#rrggbb"}``."""
        self.check_object(object_id)
        if not isinstance(body, dict) or not body or set(body) - {"name", "colour"}:
            raise UsageError("expected a JSON object with 'name' and/or 'colour'")
        update = {}
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
                raise UsageError(f"name must be 1..{MAX_NAME} printable characters")
            update["name"] = name.strip()
        if "colour" in body:
            update["colour"] = parse_colour(body["colour"])
        self.objects[object_id - 1] = {**self.objects[object_id - 1], **update}
        if "colour" in update:
            self._bump(range(self.num_frames))
        self._save_meta()
        self.events.publish("state", reason="update_object")
        return self.objects[object_id - 1]

    # -------------------------------------------------------------------------------------------- export

    def replay_exact(self) -> tuple[bool, str]:
        """Whether ``infer --scribbles`` on the exported rounds reproduces the masks byte for byte, and why not."""
        if any(s.kind != "round" for s in self.steps):
            return False, ("objects were added or removed between rounds; infer starts with every object from "
                           "round 1, so its masks can differ")
        return True, "replaying the scribble files in order with --objects gives these masks byte for byte"

    def replay_command(self, files: Sequence[Path]) -> list[str]:
        """The ``infer`` command that replays the exported rounds, run in the workspace folder."""
        command = ["python", "-m", "atnet_jax.infer", *self.video.infer_args(), "--objects", str(len(self.objects)),
                   "--scribbles", *[f"export/scribbles/{p.name}" for p in files], "--output", "replay"]
        if not self.demo_weights:
            command[3:3] = ["--checkpoint", self.checkpoint]
        if self.video.size != DEFAULT_PROCESSING_SIZE:
            command[-2:-2] = ["--size", str(self.video.size or "full")]
        return command

    def export(self) -> list[str]:
        """Write ``export/`` in the workspace, replaced as a whole (see :func:`atnet_jax.io.export.write_export`);
        returns the files written, relative to it."""
        from atnet_jax.io.export import write_export

        if not self._num_rounds():
            raise ConflictError("nothing to export yet: run a round first")
        files = self._round_files()
        exact, why = self.replay_exact()
        replay = {"exact": exact, "why": why, "command": self.replay_command(files), "run_in": str(self.root)}
        target = self.root / "export"
        tmp = staging_dir(target)
        try:
            written = write_export(tmp, name=self.name, frames=self.session.frames, labels=self.session.labels,
                                   object_names=[o["name"] for o in self.objects], palette=self.palette(),
                                   scribble_files=files, replay=replay)
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.events.publish("exported", files=written)
        return written

    def close(self) -> None:
        self.session.close()
