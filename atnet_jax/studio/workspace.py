"""The studio's state: one :class:`~atnet_jax.inference.session.Session`, its history of steps (rounds and
object edits) kept on disk for undo and resume, live progress of the running round, and exports.

Workspace folder::

    studio.json            the video, the weights, the objects (names, colours) and the list of steps
    steps/0001/            the session's state after step 1: probabilities.npy [F, K, H, W] float32 of the F
                           frames the step changed (all T after an object edit; the others are read from
                           earlier steps), indicators.npy [R, K, h, w, C] float32, state.json (annotated
                           frames, strokes, which frames probabilities.npy holds)
    scribbles/001.json     round 1's strokes as a DAVIS scribble file (one per round, in round order)
    masks/00000.png        the current masks, palette PNGs (DAVIS palette, 0 = background, k = object k)
    video/                 the generated demo video (a DAVIS folder), when the studio runs on the demo
    export/                what Export writes (see :meth:`Workspace.export`)

A step's folder is written beside its final name and renamed into place, then ``studio.json`` is replaced
atomically; a crash loses at most the running step. Every step's state lives on disk, not in memory, so undo
reaches back to the start while the server's memory stays flat.
"""
from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.inference.session import FrameUpdate, Session, SessionState
from atnet_jax.interaction.kinds import Scribble
from atnet_jax.io.masks import DAVIS_PALETTE, write_mask
from atnet_jax.io.safe import atomic_write, replace_dir, staging_dir
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE

FORMAT = 1
MAX_OBJECTS = 32
MAX_STROKES = 500
MAX_POINTS = 20_000
MAX_NAME = 40
DEFAULT_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                   "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


class _Cancelled(Exception):
    """The running round was cancelled (the session is back as before it)."""


class StudioError(Exception):
    """A request the studio refuses: ``status`` (400 bad input, 404 unknown, 409 conflict) and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def write_json(path: Path, data: Any) -> None:
    """``data`` as JSON at ``path``, atomically, readable as files made by ``open`` are."""
    text = json.dumps(data, indent=1)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)


def parse_colour(value: object) -> str:
    """``"#rrggbb"`` (case-insensitive) -> lower-case; anything else is a :class:`StudioError`."""
    if (not isinstance(value, str) or len(value) != 7 or value[0] != "#"
            or any(c not in "0123456789abcdefABCDEF" for c in value[1:])):
        raise StudioError(400, f"colour must be '#rrggbb', got {str(value)[:20]!r}")
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


class Workspace:
    """A session, its history on disk under ``root``, and the running round.

    Methods that change the session run on the caller's thread; the app runs them on its one model thread.
    ``begin_round`` checks a round and reserves the session; ``run_round`` then computes it.
    """

    def __init__(self, root: Path, session: Session, *, name: str, video: dict, checkpoint: str,
                 demo_weights: bool) -> None:
        self.root = Path(root)
        self.session = session
        self.name = name
        self.video = video
        self.checkpoint = checkpoint
        self.demo_weights = demo_weights
        self.num_frames, self.height, self.width = session.num_frames, session.height, session.width
        self.prob_shape = tuple(session.processing_shape)  # where the session keeps its probabilities
        self.events = Events()
        self.live: LiveRound | None = None
        self.busy = threading.Lock()  # held while a step (round, undo, object edit, export) runs
        self.versions = [0] * self.num_frames  # bumped whenever a frame's mask image changes
        self._live_labels: dict[int, np.ndarray] = {}
        self.objects: list[dict] = []
        self.steps: list[dict] = []
        self._next_uid = 1
        self._load_or_create()

    # ---------------------------------------------------------------------------------------------- disk

    @property
    def meta_path(self) -> Path:
        return self.root / "studio.json"

    def _video_key(self) -> dict:
        return {"num_frames": self.num_frames, "height": self.height, "width": self.width}

    def _load_or_create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.meta_path.exists():
            self.objects = [self._new_object() for _ in range(self.session.num_objects)]
            self._save_meta()
            return
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.meta_path}: cannot read the workspace ({err})") from err
        if meta.get("format") != FORMAT:
            raise ValueError(f"{self.meta_path}: unknown workspace format {meta.get('format')!r}")
        key = {k: meta["video"].get(k) for k in self._video_key()}
        if key != self._video_key():
            raise ValueError(f"{self.meta_path}: the workspace is for a video of {key['num_frames']} frames of "
                             f"{key['height']}x{key['width']}, not this one ({self.num_frames} frames of "
                             f"{self.height}x{self.width})")
        self.objects, self.steps, self._next_uid = meta["objects"], meta["steps"], meta["next_uid"]
        listed = {self._step_dir(i + 1).name for i in range(len(self.steps))}
        steps_dir = self.root / "steps"
        for stray in steps_dir.iterdir() if steps_dir.is_dir() else ():
            if stray.name not in listed:  # a step that crashed before studio.json listed it
                shutil.rmtree(stray, ignore_errors=True)
        if self.steps:
            self.session.restore(self._read_state(len(self.steps)))
        elif self.session.num_objects != len(self.objects):
            self.session.restore(self._empty_state(len(self.objects)))

    def _save_meta(self) -> None:
        write_json(self.meta_path, {"format": FORMAT, "name": self.name, "video": {**self.video, **self._video_key()},
                                    "checkpoint": self.checkpoint, "objects": self.objects, "steps": self.steps,
                                    "next_uid": self._next_uid})

    def _new_object(self) -> dict:
        uid = self._next_uid
        self._next_uid += 1
        return {"uid": uid, "name": f"object {uid}", "colour": DEFAULT_COLOURS[(uid - 1) % len(DEFAULT_COLOURS)]}

    def _step_dir(self, index: int) -> Path:
        return self.root / "steps" / f"{index:04d}"

    def _write_state(self, index: int, changed: Sequence[int] | None) -> None:
        """The session's state as step ``index``: written beside its folder, then renamed into place.

        ``changed``: the frames whose probabilities changed since the previous step (a round's range); only
        those are written, the others are read from earlier steps. None writes every frame (a full step, as
        after an object edit, which changes every frame's object count)."""
        state = self.session.snapshot(copy=False)  # read at once, on the model thread: nothing changes it meanwhile
        frames = list(range(self.num_frames)) if changed is None else sorted(set(changed))
        final = self._step_dir(index)
        final.parent.mkdir(exist_ok=True)
        tmp = staging_dir(final)
        try:
            probs = np.lib.format.open_memmap(tmp / "probabilities.npy", "w+", np.float32,
                                              (len(frames), len(self.objects), *self.prob_shape))
            for i, t in enumerate(frames):
                probs[i] = state.probabilities[t]
            probs.flush()
            del probs
            indicators = (np.stack(state.indicators) if state.indicators
                          else np.zeros((0, len(self.objects)), np.float32))
            np.save(tmp / "indicators.npy", indicators.astype(np.float32))
            strokes = {str(t): s for t, s in state.strokes.items()}
            (tmp / "state.json").write_text(json.dumps({"annotated": state.annotated, "strokes": strokes,
                                                        "frames": frames, "full": changed is None}))
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _read_state(self, index: int) -> SessionState:
        """Step ``index``'s state: each frame's probabilities from the latest step up to ``index`` that wrote
        it (back to the last full step; frames no step wrote are the start's zeros)."""
        def load(i: int) -> tuple[dict, Path]:
            folder = self._step_dir(i)
            try:
                return json.loads((folder / "state.json").read_text(encoding="utf-8")), folder
            except (OSError, ValueError) as err:
                raise ValueError(f"{folder}: cannot read the saved step ({err})") from err

        state, folder = load(index)
        try:
            indicators = np.load(folder / "indicators.npy")
            missing = set(range(self.num_frames))
            probabilities = None
            i, step = index, state
            while missing and i >= 1:
                stored = np.load(self._step_dir(i) / "probabilities.npy", mmap_mode="r")
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
            raise ValueError(f"{folder}: cannot read the saved step ({err})") from err
        return SessionState(probabilities, [int(a) for a in state["annotated"]],
                            {int(t): s for t, s in state["strokes"].items()}, list(indicators))

    def _empty_state(self, num_objects: int) -> SessionState:
        return SessionState(np.zeros((self.num_frames, num_objects, *self.prob_shape), np.float32), [], {}, [])

    def _write_masks(self, frames: Sequence[int]) -> None:
        for t in frames:
            write_mask(self.root / "masks" / f"{t:05d}.png", self.session.labels[t], overwrite=True)

    def _round_files(self) -> list[Path]:
        rounds = [s for s in self.steps if s["kind"] == "round"]
        return [self.root / "scribbles" / f"{i + 1:03d}.json" for i in range(len(rounds))]

    def scribble_file(self, frame: int, strokes: list[dict]) -> dict:
        frames: list[list[dict]] = [[] for _ in range(self.num_frames)]
        frames[frame] = strokes
        return {"scribbles": frames, "sequence": self.name}

    def _commit(self, step: dict, changed: Sequence[int], *, full: bool = False) -> None:
        """Save the session's state as a new step (only the ``changed`` frames' probabilities unless ``full``),
        the masks of ``changed`` frames, and the step list."""
        index = len(self.steps) + 1
        self._write_state(index, None if full else changed)
        if step["kind"] == "round":
            path = self.root / "scribbles" / f"{len(self._round_files()) + 1:03d}.json"
            write_json(path, self.scribble_file(step["frame"], step["strokes"]))
        self._write_masks(changed)
        self.steps.append(step)
        self._save_meta()

    # --------------------------------------------------------------------------------------------- state

    def summary(self) -> dict:
        """What the page shows: the video, objects, steps, annotated frames, strokes, the running round."""
        live = self.live
        rounds = [s for s in self.steps if s["kind"] == "round"]
        return {
            "name": self.name, "num_frames": self.num_frames, "height": self.height, "width": self.width,
            "demo_weights": self.demo_weights, "checkpoint": self.checkpoint,
            "objects": [{"id": i + 1, "name": o["name"], "colour": o["colour"]} for i, o in enumerate(self.objects)],
            "steps": [{k: v for k, v in s.items() if k != "strokes"} for s in self.steps],
            "rounds": len(rounds),
            "annotated": list(self.session.annotated),
            "strokes": {str(t): s for t, s in self.session.strokes.items()},
            "versions": list(self.versions),
            "running": None if live is None else {"frame": live.frame, "total": live.total, "done": live.done,
                                                  "updated": list(live.updated)},
            "last_updated": self.steps[-1].get("updated", []) if self.steps else [],
        }

    def labels(self, t: int) -> np.ndarray:
        """Frame ``t``'s labels ``[H, W]`` uint8 as the page should see them now."""
        live = self._live_labels.get(t)
        return live if live is not None else np.asarray(self.session.labels[t])

    def mask_png(self, t: int) -> bytes:
        """Frame ``t``'s labels as a palette PNG: index k = object k in its colour, index 0 transparent."""
        from PIL import Image

        self.check_frame(t)
        palette = DAVIS_PALETTE.copy()
        for i, o in enumerate(self.objects):
            palette[i + 1] = rgb(o["colour"])
        image = Image.fromarray(np.ascontiguousarray(self.labels(t)))
        image.putpalette(palette.tobytes())
        out = io.BytesIO()
        image.save(out, format="PNG", transparency=0, compress_level=1)
        return out.getvalue()

    def frame_jpeg(self, t: int) -> bytes:
        import cv2

        self.check_frame(t)
        frame = np.asarray(self.session.frames[t])
        ok, data = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise RuntimeError(f"cannot encode frame {t} as JPEG")
        return data.tobytes()

    def check_frame(self, t: object) -> int:
        if isinstance(t, bool) or not isinstance(t, int):
            raise StudioError(400, f"frame must be an integer, got {str(t)[:20]!r}")
        if not 0 <= t < self.num_frames:
            raise StudioError(404, f"frame {t} is outside the video (0..{self.num_frames - 1})")
        return t

    def check_object(self, object_id: int) -> int:
        if not 1 <= object_id <= len(self.objects):
            raise StudioError(404, f"object {object_id} does not exist (objects 1..{len(self.objects)})")
        return object_id

    def suggest(self) -> dict:
        """The frame the model is least sure of: the largest mean binary entropy of the object probabilities
        (annotated frames left out). No ground truth is needed."""
        if not self.session.annotated:
            raise StudioError(409, "nothing to suggest before the first round")
        scores = [binary_entropy(self.session.probabilities[t]) for t in range(self.num_frames)]
        candidates = [t for t in range(self.num_frames) if t not in self.session.annotated] or list(
            range(self.num_frames))
        best = max(candidates, key=lambda t: scores[t])
        return {"frame": best, "entropy": scores[best], "entropies": [round(s, 5) for s in scores]}

    # -------------------------------------------------------------------------------------------- rounds

    def validate_round(self, body: object) -> tuple[int, list[dict]]:
        """``{"frame": t, "strokes": [...]}`` -> (t, normalised strokes) or a :class:`StudioError` (400/404)."""
        from atnet_jax.io.scribbles import ScribbleError, validate_scribbles

        if not isinstance(body, dict):
            raise StudioError(400, "expected a JSON object {\"frame\": t, \"strokes\": [...]}")
        unknown = sorted(set(body) - {"frame", "strokes"})
        if unknown:
            raise StudioError(400, f"unknown field(s) {', '.join(map(repr, unknown))[:80]}")
        if "frame" not in body or "strokes" not in body:
            raise StudioError(400, "a round needs 'frame' and 'strokes'")
        frame = self.check_frame(body["frame"])
        strokes = body["strokes"]
        if not isinstance(strokes, list) or not strokes:
            raise StudioError(400, "'strokes' must be a non-empty list of strokes")
        if len(strokes) > MAX_STROKES:
            raise StudioError(400, f"too many strokes: {len(strokes)} (at most {MAX_STROKES} per round)")
        points = sum(len(s["path"]) for s in strokes if isinstance(s, dict) and isinstance(s.get("path"), list))
        if points > MAX_POINTS:
            raise StudioError(400, f"too many points: {points} (at most {MAX_POINTS} per round)")
        frames: list[list] = [[] for _ in range(self.num_frames)]
        frames[frame] = strokes
        try:
            data = validate_scribbles({"scribbles": frames}, source="strokes", num_frames=self.num_frames,
                                      num_objects=len(self.objects))
        except ScribbleError as err:
            raise StudioError(400, str(err).replace(f"frame {frame} stroke", "stroke")) from None
        return frame, data["scribbles"][frame]

    def begin_round(self, frame: int) -> LiveRound:
        """Reserve the session for a round on ``frame`` (409 if a step is running)."""
        if not self.busy.acquire(blocking=False):
            raise StudioError(409, "a round is running: wait for it or cancel it")
        self.live = LiveRound(frame, self.session.plan(frame).total, time.perf_counter())
        self.events.publish("round_start", frame=frame, total=self.live.total, round=self._num_rounds() + 1)
        return self.live

    def _num_rounds(self) -> int:
        return sum(s["kind"] == "round" for s in self.steps)

    def run_round(self, live: LiveRound, strokes: list[dict]) -> None:
        """Compute the reserved round (on the model thread), publishing one event per frame, then save it.

        The workspace is released before ``round_end`` is published, so a client may submit the next round as
        soon as it sees that event."""
        session = self.session

        def on_frame(update: FrameUpdate) -> None:
            t = update.frame
            self._live_labels[t] = update.labels
            self.versions[t] += 1
            live.done += 1
            live.updated.append(t)
            elapsed = time.perf_counter() - live.started
            rate = live.done / elapsed if elapsed > 0 else 0.0
            eta = (live.total - live.done) / rate if rate > 0 else None
            self.events.publish("frame", t=t, kind=update.kind, done=live.done, total=live.total,
                                version=self.versions[t],
                                elapsed=round(elapsed, 3), fps=round(rate, 3),
                                eta=None if eta is None else round(eta, 2))

        status, message = "failed", "round failed"
        try:
            if live.cancel.is_set():
                raise _Cancelled
            on_frame(session.add(Scribble(live.frame, strokes)))
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
                self._commit({"kind": "round", "frame": live.frame, "strokes": strokes,
                              "seconds": round(seconds, 3), "updated": sorted(live.updated),
                              "before": [o["uid"] for o in self.objects]}, live.updated)
            except BaseException:  # not saved: back to the last saved step, so memory and disk agree
                n = len(self.steps)
                self.session.restore(self._read_state(n) if n else self._empty_state(len(self.objects)))
                raise
            status = "done"
            message = f"round {self._num_rounds()} on frame {live.frame}: {live.done} frames in {seconds:.1f} s"
        except _Cancelled:
            status, message = "cancelled", "round cancelled: the previous result is back"
        except Exception as err:  # noqa: BLE001 (reported to the page; the session restored itself)
            message = f"round failed: {type(err).__name__}: {err}".splitlines()[0]
        finally:
            if status != "done":
                for t in live.updated:
                    self.versions[t] += 1
            self._live_labels.clear()
            self.live = None
            self.busy.release()
            self.events.publish("round_end", status=status, message=message, frame=live.frame,
                                seconds=round(time.perf_counter() - live.started, 3), versions=list(self.versions))

    def cancel(self) -> None:
        live = self.live
        if live is None:
            raise StudioError(409, "no round is running")
        live.cancel.set()

    # -------------------------------------------------------------------------------------- other steps

    def exclusive(self) -> None:
        """Reserve the session for a short step (409 while a round runs); release with ``busy.release()``."""
        if not self.busy.acquire(blocking=False):
            raise StudioError(409, "a round is running: wait for it or cancel it")

    def _bump_all(self) -> None:
        for t in range(self.num_frames):
            self.versions[t] += 1

    def undo(self) -> dict:
        """Go back one step (a round or an object edit), to the state saved before it."""
        if not self.steps:
            raise StudioError(409, "nothing to undo")
        step = self.steps[-1]
        index = len(self.steps)
        uids_before = list(step["before"])
        state = self._read_state(index - 1) if index > 1 else self._empty_state(len(uids_before))
        self.session.restore(state)
        current = {o["uid"]: o for o in self.objects}
        removed = {o["uid"]: o for o in step.get("removed", [])}
        self.objects = [current.get(uid) or removed[uid] for uid in uids_before]
        if step["kind"] == "round":
            self._round_files()[-1].unlink(missing_ok=True)
        self.steps.pop()
        self._save_meta()
        shutil.rmtree(self._step_dir(index), ignore_errors=True)
        # Undoing a round changes only the frames it updated: the others read back bit for bit.
        frames = step["updated"] if step["kind"] == "round" else range(self.num_frames)
        self._write_masks(frames)
        for t in frames:
            self.versions[t] += 1
        self.events.publish("state", reason="undo")
        return step

    def add_object(self) -> int:
        if len(self.objects) >= MAX_OBJECTS:
            raise StudioError(400, f"at most {MAX_OBJECTS} objects")
        before = [o["uid"] for o in self.objects]
        new_id = self.session.add_object()
        self.objects.append(self._new_object())
        self._commit({"kind": "add_object", "object": new_id, "before": before,
                      "objects": [o["uid"] for o in self.objects]}, [], full=True)
        self.events.publish("state", reason="add_object")
        return new_id

    def remove_object(self, object_id: int) -> None:
        self.check_object(object_id)
        if len(self.objects) == 1:
            raise StudioError(409, "the only object cannot be removed")
        before = [o["uid"] for o in self.objects]
        self.session.remove_object(object_id)
        removed = self.objects.pop(object_id - 1)
        self._commit({"kind": "remove_object", "object": object_id, "before": before, "removed": [removed],
                      "objects": [o["uid"] for o in self.objects]}, range(self.num_frames), full=True)
        self._bump_all()
        self.events.publish("state", reason="remove_object")

    def update_object(self, object_id: int, body: object) -> dict:
        """Rename and/or recolour object ``object_id`` from ``{"name": str, "colour": "#rrggbb"}``."""
        self.check_object(object_id)
        if not isinstance(body, dict) or not body or set(body) - {"name", "colour"}:
            raise StudioError(400, "expected a JSON object with 'name' and/or 'colour'")
        update = {}
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
                raise StudioError(400, f"name must be 1..{MAX_NAME} printable characters")
            update["name"] = name.strip()
        if "colour" in body:
            update["colour"] = parse_colour(body["colour"])
        self.objects[object_id - 1] = {**self.objects[object_id - 1], **update}
        self._save_meta()
        if "colour" in update:
            self._bump_all()
        self.events.publish("state", reason="update_object")
        return self.objects[object_id - 1]

    # -------------------------------------------------------------------------------------------- export

    def replay_exact(self) -> tuple[bool, str]:
        """Whether ``infer --scribbles`` on the exported rounds reproduces the masks byte for byte, and why not."""
        if any(s["kind"] != "round" for s in self.steps):
            return False, ("objects were added or removed between rounds; infer starts with every object from "
                           "round 1, so its masks can differ")
        return True, "replaying the scribble files in order with --objects gives these masks byte for byte"

    def export(self) -> list[str]:
        """Write ``export/`` in the workspace, replaced as a whole (see :func:`atnet_jax.io.export.write_export`);
        returns the files written, relative to it."""
        from atnet_jax.io.export import write_export

        palette = DAVIS_PALETTE.copy()
        for i, o in enumerate(self.objects):
            palette[i + 1] = rgb(o["colour"])
        files = self._round_files()
        exact, why = self.replay_exact()
        command = ["python", "-m", "atnet_jax.infer", *self.video.get("args", []), "--objects", str(len(self.objects)),
                   "--scribbles", *[f"export/scribbles/{p.name}" for p in files], "--output", "replay"]
        if not self.demo_weights:
            command[3:3] = ["--checkpoint", self.checkpoint]
        if "size" in self.video and self.video["size"] != DEFAULT_PROCESSING_SIZE:
            command[-2:-2] = ["--size", str(self.video["size"] or "full")]
        replay = {"exact": exact, "why": why, "command": command, "run_in": str(self.root)}
        target = self.root / "export"
        tmp = staging_dir(target)
        try:
            written = write_export(tmp, name=self.name, frames=self.session.frames, labels=self.session.labels,
                                   object_names=[o["name"] for o in self.objects], palette=palette,
                                   scribble_files=files, replay=replay)
            replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.events.publish("exported", files=written)
        return written

    def close(self) -> None:
        self.session.close()
