"""The studio's controller: one session, its rounds (run on the caller's thread, one at a time), the locks that keep
steps apart, the events the page follows, and the history (:mod:`atnet_jax.studio.history`) that makes every step
undoable and resumable. No HTTP here: refusals are the project's errors (:mod:`atnet_jax.errors`), which the app
maps to statuses."""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.errors import ConflictError, InputError, NotFoundError, UsageError
from atnet_jax.inference.plan import DIRECTIONS, RoundPlan
from atnet_jax.inference.session import FrameUpdate, Session
from atnet_jax.interaction.kinds import Click, Clicks, Interaction, Scribble
from atnet_jax.io.masks import DAVIS_PALETTE
from atnet_jax.io.safe import replace_dir, staging_dir
from atnet_jax.io.scribbles import ScribbleError, validate_scribbles
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE
from atnet_jax.studio.history import History, Meta, RedoEntry, Step, VideoRecord, read_meta
from atnet_jax.studio.scores import GroundTruth, ScoreBoard

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
    direction: str = "both"  # the propagation range (Session.propagate)
    until: int | None = None
    reused: bool = False  # whether the round took A-Net's result from the preview instead of running it again


@dataclasses.dataclass(frozen=True)
class Preview:
    """A-Net's result for an interaction not yet run: the session's round added on ``frame`` and not propagated.
    ``labels``: the frame's labels with it; ``version``: grows with every preview (and every drop)."""

    frame: int
    interaction: Interaction
    labels: np.ndarray
    version: int
    seconds: float


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
        self.activity: str | None = None  # what holds ``busy``, in words ("adding object 3"), for every page
        # A frame's mask version: the clock's value when its image last changed. The clock never goes back, across
        # restarts too (saved in the workspace, and at least the time in ms), so a page left open across a restart
        # sees every later image as newer.
        self._clock_lock = threading.Lock()
        self.clock = 0
        self.versions = [0] * self.num_frames
        self._live_labels: dict[int, np.ndarray] = {}
        # The preview: the session holds it as a round added and not propagated; the page's masks stay the saved
        # ones (the frame's labels from before it, in _preview_base) until a round takes it.
        self.preview: Preview | None = None
        self.preview_version = 0
        self._preview_base: dict[int, np.ndarray] = {}
        self._preview_requests = 0
        self.objects: list[dict] = []
        self.steps: list[Step] = []
        self.redo_stack: list[RedoEntry] = []  # undone steps, the next to redo first; a new step drops them
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
        self.redo_stack = meta.redo
        if not self.history.steps_exist(len(self.steps) + 1, len(self.redo_stack)):
            self.redo_stack = []  # a redo step's folder is gone: drop them all rather than redo half
        self.clock = max(self.clock, meta.clock)
        self.versions = [self._tick()] * self.num_frames
        self.history.remove_strays(len(self.steps) + len(self.redo_stack))
        if self.steps:
            self.session.restore(self.history.read_state(len(self.steps)))
        elif self.session.num_objects != len(self.objects):
            self.session.restore(self.history.empty_state(len(self.objects)))

    def _save_meta(self) -> None:
        self.history.save_meta(Meta(self.name, self.video, self._video_shape(), self.checkpoint, self.objects,
                                    self.steps, self._next_uid, self.redo_stack, self.clock))

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
        self._drop_redo()
        state = self.session.snapshot(copy=False)  # read at once, on the model thread: nothing changes it meanwhile
        if objects is None:
            self.history.write_state(index, state, len(self.objects), changed, logits=self.session.last_round)
        else:
            self.history.write_state(index, state, len(self.objects), [], objects=objects)
        if step.kind == "round":
            assert step.frame is not None and step.strokes is not None
            self.history.write_round_file(self._num_rounds() + 1, step.frame, step.strokes, self.name)
        self._write_masks(changed)
        self.steps.append(step)
        self._save_meta()

    def _drop_redo(self) -> None:
        """Forget the undone steps (a new step replaces them): first in ``studio.json``, then their folders."""
        if self.redo_stack:
            self.redo_stack = []
            self._save_meta()
            self.history.remove_strays(len(self.steps))

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
            "redo": [r.step.public() for r in self.redo_stack],
            "busy": self.activity,
            "running": None if live is None else {"frame": live.frame, "total": live.total, "done": live.done,
                                                  "updated": list(live.updated)},
            "last_updated": (self.steps[-1].updated or []) if self.steps else [],
            "preview": self.preview_summary(),
        }

    def labels(self, t: int) -> np.ndarray:
        """Frame ``t``'s labels ``[H, W]`` uint8 as the page should see them now."""
        live = self._live_labels.get(t)
        if live is None:
            live = self._preview_base.get(t)
        return live if live is not None else self.session.labels[t]

    def mask_png(self, t: int) -> bytes:
        """Frame ``t``'s labels as a palette PNG: index k = object k in its colour, index 0 transparent."""
        self.check_frame(t)
        return self._png(self.labels(t))

    def _png(self, labels: np.ndarray) -> bytes:
        from PIL import Image

        palette = self.palette()
        image = Image.fromarray(np.ascontiguousarray(labels))
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
        unknown = sorted(set(body) - {"frame", "strokes", "clicks", "direction", "until"})
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

    def round_range(self, body: dict) -> tuple[str, int | None]:
        """A round body's propagation range: ``"direction"`` ("both" by default, "forward", "backward") and
        ``"until"`` (a frame, or null) -> ``(direction, until)``, or a :class:`UsageError`."""
        direction = body.get("direction", "both")
        if direction not in DIRECTIONS:
            raise UsageError(f"direction must be one of {', '.join(DIRECTIONS)}, got {str(direction)[:20]!r}")
        until = body.get("until")
        if until is not None:
            until = json_integer(until, "until")
            if not 0 <= until < self.num_frames:
                raise UsageError(f"until: frame {until} is outside the video (0..{self.num_frames - 1})")
        return direction, until

    def round_plan(self, frame: int, direction: str = "both", until: int | None = None) -> RoundPlan:
        """The frames a round on ``frame`` with this range would update (a :class:`UsageError` if it does not fit)."""
        return self.session.plan(frame).limited(direction, until)  # type: ignore[arg-type]

    def begin_round(self, frame: int, direction: str = "both", until: int | None = None) -> LiveRound:
        """Reserve the session for a round on ``frame`` (a :class:`ConflictError` if a step is running)."""
        self._acquire(f"running a round on frame {frame}")  # round_start and round_end tell the pages
        try:
            plan = self.round_plan(frame, direction, until)
        except BaseException:
            self.activity = None
            self.busy.release()
            raise
        self.live = LiveRound(frame, plan.total, time.perf_counter(), direction=direction, until=until)
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
            on_frame(self._annotated_update(live, interaction))
            if live.cancel.is_set():
                session.cancel()
                raise _Cancelled
            updates = session.propagate(live.direction, live.until)  # type: ignore[arg-type]
            for update in updates:
                on_frame(update)
                if live.cancel.is_set():
                    updates.close()  # the session goes back to its state before the round
                    raise _Cancelled
            seconds = time.perf_counter() - live.started
            try:
                self._commit(Step("round", [o["uid"] for o in self.objects], frame=live.frame,
                                  strokes=interaction.to_strokes(), seconds=round(seconds, 3),
                                  updated=sorted(live.updated),
                                  direction=None if live.direction == "both" else live.direction,
                                  until=live.until), live.updated)
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
            self.activity = None
            self.busy.release()
            self.events.publish("round_end", status=status, message=message, frame=live.frame,
                                seconds=round(time.perf_counter() - live.started, 3), versions=list(self.versions))

    def cancel(self) -> None:
        live = self.live
        if live is None:
            raise ConflictError("no round is running")
        live.cancel.set()

    # ------------------------------------------------------------------------------------------- preview

    def _annotated_update(self, live: LiveRound, interaction: Interaction) -> FrameUpdate:
        """The round's first frame: the preview's A-Net result where it is this very interaction (no second
        A-Net run), else A-Net anew (any other preview dropped first)."""
        preview = self.preview
        pending = self.session.pending
        if (preview is not None and preview.interaction == interaction and pending is not None
                and pending.frame == interaction.frame):
            live.reused = True
            self.preview = None
            update = FrameUpdate(preview.frame, "annotated", 1, live.total, preview.labels)
        else:
            self._drop_preview(publish=False)
            update = self.session.add(interaction)
        self._live_labels[update.frame] = update.labels  # before the saved labels stop hiding the session's
        self._preview_base.clear()
        return update

    def request_preview(self) -> int:
        """Number a preview request (a :class:`ConflictError` while a step runs): a later one supersedes it."""
        if self.busy.locked():
            raise ConflictError("a round is running: wait for it or cancel it")
        self._preview_requests += 1
        return self._preview_requests

    def run_preview(self, interaction: Interaction, request: int) -> dict:
        """On the model thread: A-Net on the interaction's frame as the session's round, not propagated (a
        :meth:`run_round` with the same interaction takes it). Any earlier preview is dropped first; a request
        that a later one superseded before it ran does nothing."""
        if request != self._preview_requests:
            return {"superseded": True, **(self.preview_summary() or {})}
        if self.live is not None:  # a round was submitted after this request: it runs next, without a preview
            raise ConflictError("a round is running: wait for it or cancel it")
        if self.preview is not None and self.preview.interaction == interaction:
            return self.preview_summary() or {}  # the same interaction again: A-Net's result stands
        self._drop_preview(publish=False)
        frame = interaction.frame
        self._preview_base[frame] = self.session.labels[frame]
        start = time.perf_counter()
        try:
            update = self.session.add(interaction)
        except BaseException:
            self._preview_base.clear()
            raise
        self.preview_version += 1
        self.preview = Preview(frame, interaction, update.labels, self.preview_version,
                               round(time.perf_counter() - start, 4))
        summary = self.preview_summary()
        self.events.publish("preview", **summary)
        return summary

    def preview_summary(self) -> dict | None:
        preview = self.preview
        if preview is None:
            return None
        return {"frame": preview.frame, "version": preview.version, "seconds": preview.seconds}

    def preview_png(self) -> tuple[bytes, int]:
        """The preview's labels as a palette PNG, and its version (a :class:`NotFoundError` without one)."""
        preview = self.preview
        if preview is None:
            raise NotFoundError("no preview: draw on a frame first")
        return self._png(preview.labels), preview.version

    def drop_preview(self) -> bool:
        """On the model thread: drop the preview (the session goes back exactly to its state before it); whether
        there was one."""
        return self._drop_preview(publish=True)

    def _drop_preview(self, *, publish: bool) -> bool:
        had = self.preview is not None
        self.session.cancel()  # the session's only round added and not propagated between steps is the preview's
        self.preview = None
        self._preview_base.clear()
        if had:
            self.preview_version += 1
            if publish:
                self.events.publish("preview", frame=None, version=self.preview_version, seconds=None)
        return had

    # -------------------------------------------------------------------------------------- other steps

    def exclusive(self, activity: str) -> None:
        """Reserve the session for a step described by ``activity`` ("adding object 3"): a
        :class:`ConflictError` naming what runs while another step holds it. Pages see it as the ``busy``
        event and summary field. A short step ends with :meth:`release`; a round's end releases it itself."""
        self._acquire(activity)
        self.events.publish("busy", busy=activity)

    def _acquire(self, activity: str) -> None:
        if not self.busy.acquire(blocking=False):
            if self.live is not None:
                raise ConflictError("a round is running: wait for it or cancel it")
            raise ConflictError(f"the studio is busy {self.activity or 'with another step'}: try again when it "
                                "is done")
        self.activity = activity

    def release(self) -> None:
        """End a short step begun with :meth:`exclusive`."""
        self.activity = None
        self.busy.release()
        self.events.publish("busy", busy=None)

    def next_object_id(self) -> int:
        return len(self.objects) + 1

    def _bump(self, frames: Sequence[int] | range) -> None:
        version = self._tick()
        for t in frames:
            self.versions[t] = version

    def undo(self) -> Step:
        """Go back one step (a round or an object edit), to the state saved before it. The step's folder stays
        on disk and the step goes on the redo stack, until a new step is made."""
        if not self.steps:
            raise ConflictError("nothing to undo")
        self.drop_preview()
        step = self.steps[-1]
        index = len(self.steps)
        state = self.history.read_state(index - 1) if index > 1 else self.history.empty_state(len(step.before))
        self.session.restore(state)
        redo = RedoEntry(step, [dict(o) for o in self.objects])
        current = {o["uid"]: o for o in self.objects}
        removed = {o["uid"]: o for o in step.removed or []}
        self.objects = [current.get(uid) or removed[uid] for uid in step.before]
        if step.kind == "round":
            self._round_files()[-1].unlink(missing_ok=True)
        self.steps.pop()
        self.redo_stack.insert(0, redo)
        self._save_meta()
        self._show_step_frames(step)
        self.events.publish("state", reason="undo")
        return step

    def redo(self) -> Step:
        """Make the last undone step again, from its saved state (no model call): exactly as it was."""
        if not self.redo_stack:
            raise ConflictError("nothing to redo")
        self.drop_preview()
        entry = self.redo_stack[0]
        step = entry.step
        self.session.restore(self.history.read_state(len(self.steps) + 1))
        current = {o["uid"]: o for o in self.objects}  # names and colours changed since the undo stay
        self.objects = [current.get(o["uid"], o) for o in entry.objects]
        self.redo_stack.pop(0)
        self.steps.append(step)
        if step.kind == "round":
            assert step.frame is not None and step.strokes is not None
            self.history.write_round_file(self._num_rounds(), step.frame, step.strokes, self.name)
        self._save_meta()
        self._show_step_frames(step)
        self.events.publish("state", reason="redo")
        return step

    def _show_step_frames(self, step: Step) -> None:
        """Rewrite and re-version the masks of the frames ``step`` changed (undone or redone)."""
        # A round changes only the frames it updated: the others read back bit for bit.
        frames = (step.updated or []) if step.kind == "round" else range(self.num_frames)
        self._write_masks(frames)
        self._bump(frames)

    def add_object(self) -> int:
        if len(self.objects) >= MAX_OBJECTS:
            raise UsageError(f"at most {MAX_OBJECTS} objects")
        before = [o["uid"] for o in self.objects]
        self.drop_preview()
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
        self.drop_preview()
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
        ranged = [i + 1 for i, s in enumerate(s for s in self.steps if s.kind == "round")
                  if s.direction is not None or s.until is not None]
        if ranged:
            return False, (f"round(s) {', '.join(map(str, ranged))} propagated over a limited range (one direction "
                           "or up to a frame); infer propagates every round both ways, so its masks can differ")
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

        self.drop_preview()
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

    def export_zip(self) -> Path:
        """Write ``export/`` as :meth:`export` does, then the same files as one zip (entries ``export/...``) in a
        new temporary file, which the caller sends and deletes."""
        import os
        import tempfile

        from atnet_jax.io.export import zip_folder

        self.export()
        fd, name = tempfile.mkstemp(prefix=f"atnet_studio_{self.name}_", suffix=".zip")
        os.close(fd)
        try:
            zip_folder(self.root / "export", name, prefix="export")
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def export_video(self) -> Path:
        """The overlay video of the last export (a :class:`NotFoundError` before the first)."""
        path = self.root / "export" / f"{self.name}_overlay.mp4"
        if not path.is_file():
            raise NotFoundError("no overlay video yet: export first")
        return path

    # -------------------------------------------------------------------------------------------- scores

    @functools.cached_property
    def scoreboard(self) -> ScoreBoard:
        """Scores against the video's ground truth (none where it has none), found on first use."""
        truth = GroundTruth.find(self.video.input, self.video.sequence, self.num_frames, self.height, self.width)
        return ScoreBoard(self.root, truth)

    def scores(self) -> dict:
        """Per-frame J&F of the masks now and the mean after each step (:meth:`ScoreBoard.report`)."""
        versions = list(self.versions)
        keys = [json.dumps(s.public(), sort_keys=True) for s in self.steps]
        return self.scoreboard.report(self.labels, versions, keys, settled=self.live is None and not self.busy.locked())

    def close(self) -> None:
        self.session.close()
