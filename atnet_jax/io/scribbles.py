"""The DAVIS interactive scribble format: reading, validating and writing scribble JSON files.

Format (the DAVIS interactive benchmark's)::

    {"scribbles": [per frame: [{"path": [[x / W, y / H], ...], "object_id": int,
                                "start_time": float, "end_time": float}, ...]],
     "sequence": "bear"}

``object_id`` 0 is background. With the video's length known, the frame list must have exactly that length; a
``sequence`` naming another video than the one given is a :class:`ScribbleWarning` (files are often renamed or
reused for a copy of a video).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from atnet_jax.errors import AtnetWarning, InputError
from atnet_jax.io.safe import atomic_write

COORD_TOLERANCE = 1e-3
"""Normalised coordinates may overshoot [0, 1] by this much (then they are clipped); more is an error."""


class ScribbleError(InputError):
    """A scribble file or dict that does not follow the DAVIS format; the message names the source."""


class ScribbleWarning(AtnetWarning):
    """A scribble file that can be used but looks meant for another video."""


# ----------------------------------------------------------------------------------------------- I/O


def validate_scribbles(
    data: object,
    *,
    source: str = "scribbles",
    num_frames: int | None = None,
    num_objects: int | None = None,
    sequence: str | None = None,
) -> dict:
    """Check ``data`` against the DAVIS format and return a normalised copy.

    The copy has float ``[x, y]`` lists (overshoots within :data:`COORD_TOLERANCE` clipped into [0, 1]), int
    ``object_id``s, ``start_time``/``end_time`` kept when present and ``"sequence"`` (the input's, else
    ``sequence``, else None). ``num_frames`` (the video's length, where known) must be the frame list's length.
    Raises :class:`ScribbleError` naming ``source`` and the first problem found; warns
    (:class:`ScribbleWarning`) where the input's ``sequence`` is not ``sequence``.
    """

    def fail(problem: str) -> ScribbleError:
        return ScribbleError(f"{source}: {problem}")

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object with a 'scribbles' list, got {type(data).__name__}")
    frames = data.get("scribbles")
    if not isinstance(frames, list):
        raise fail("'scribbles' must be a list with one list of strokes per frame")
    name = data.get("sequence", sequence)
    if name is not None and not isinstance(name, str):
        raise fail(f"'sequence' must be a string, got {name!r}")
    if sequence is not None and name != sequence:
        warnings.warn(ScribbleWarning(f"{source}: the scribbles are for sequence {name!r}, used for {sequence!r}"),
                      stacklevel=2)
    if num_frames is not None and len(frames) != num_frames:
        raise fail(f"{len(frames)} frames of scribbles, but the video has {num_frames} frames "
                   "(a file holds one list of strokes per frame of its video)")

    out_frames: list[list[dict]] = []
    for f, strokes in enumerate(frames):
        if not isinstance(strokes, list):
            raise fail(f"frame {f}: expected a list of strokes, got {type(strokes).__name__}")
        out_strokes = []
        for s, stroke in enumerate(strokes):
            where = f"frame {f} stroke {s}"
            if not isinstance(stroke, dict):
                raise fail(f"{where}: expected an object, got {type(stroke).__name__}")
            for key in ("path", "object_id"):
                if key not in stroke:
                    raise fail(f"{where}: missing {key!r}")
            object_id = stroke["object_id"]
            if isinstance(object_id, float) and object_id.is_integer():
                object_id = int(object_id)
            if isinstance(object_id, bool) or not isinstance(object_id, int) or object_id < 0:
                raise fail(f"{where}: object_id must be an integer >= 0, got {object_id!r}")
            if num_objects is not None and object_id > num_objects:
                raise fail(f"{where}: object_id {object_id} > number of objects {num_objects}")
            path = stroke["path"]
            if not isinstance(path, list) or not path:
                raise fail(f"{where}: 'path' must be a non-empty list of [x, y] points")
            out_path = []
            for p, point in enumerate(path):
                if (
                    not isinstance(point, (list, tuple))
                    or len(point) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
                ):
                    raise fail(f"{where} point {p}: expected [x, y] numbers, got {point!r}")
                x, y = float(point[0]), float(point[1])
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise fail(f"{where} point {p}: non-finite coordinates {point!r}")
                if not (-COORD_TOLERANCE <= x <= 1 + COORD_TOLERANCE and -COORD_TOLERANCE <= y <= 1 + COORD_TOLERANCE):
                    raise fail(f"{where} point {p}: coordinates {point!r} outside [0, 1] (normalised by W, H)")
                out_path.append([min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)])
            out = {"path": out_path, "object_id": object_id}
            for key in ("start_time", "end_time"):
                if key in stroke:
                    t = stroke[key]
                    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
                        raise fail(f"{where}: {key} must be a number, got {t!r}")
                    out[key] = t
            out_strokes.append(out)
        out_frames.append(out_strokes)
    return {"scribbles": out_frames, "sequence": name}


def load_scribbles(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    num_objects: int | None = None,
    sequence: str | None = None,
) -> dict:
    """Read and validate a DAVIS scribble JSON file (see :func:`validate_scribbles` for the checks and the
    normalised result). FileNotFoundError if missing; :class:`ScribbleError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scribble file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ScribbleError(f"{path}: not valid JSON ({e})") from e
    except UnicodeDecodeError as e:
        raise ScribbleError(f"{path}: not UTF-8 text ({e})") from e
    return validate_scribbles(data, source=str(path), num_frames=num_frames, num_objects=num_objects, sequence=sequence)


def save_scribbles(path: str | os.PathLike, scribbles: dict, *, overwrite: bool = False) -> Path:
    """Validate ``scribbles`` and write them as JSON, atomically (FileExistsError unless ``overwrite``)."""
    path = Path(path)
    data = validate_scribbles(scribbles, source=f"scribbles for {path}")
    text = json.dumps(data, indent=2)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)


def annotated_frames(scribbles: dict) -> list[int]:
    """Indices of the frames that hold at least one stroke."""
    return [f for f, strokes in enumerate(scribbles["scribbles"]) if strokes]
