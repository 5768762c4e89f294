"""Click files: clicks on frames of a video, as a person places them in a click-based annotation tool.

Format (JSON)::

    {"clicks": [{"frame": 0, "x": 0.52, "y": 0.41, "object_id": 1},
                {"frame": 0, "x": 0.10, "y": 0.90, "object_id": 0}],
     "sequence": "bear"}

``x`` and ``y`` are fractions of the frame's width and height (0 = left/top edge, 1 = right/bottom edge), as in
DAVIS scribble files; ``object_id`` 0 is a background (negative) click; ``sequence`` is optional. The clicks of one
frame form one interaction (:class:`~atnet_jax.interaction.kinds.Clicks`), and each clicked frame is a round, in
the order the frames first appear in the list.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from atnet_jax.errors import InputError
from atnet_jax.io.safe import write_json

FIELDS = ("frame", "x", "y", "object_id")


class ClickError(InputError):
    """A click file or dict that does not follow the format; the message names the source."""


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_clicks(data: object, *, source: str = "clicks", num_frames: int | None = None,
                    num_objects: int | None = None) -> dict:
    """Check a click dict -> ``{"clicks": [...], "sequence": str | None}`` with plain ints and floats.

    Errors name ``source``, the click's index and the field; frames must lie in the video (``num_frames``),
    object ids in 0..``num_objects``, coordinates in [0, 1].
    """
    if not isinstance(data, dict) or not isinstance(data.get("clicks"), list):
        raise ClickError(f"{source}: expected a JSON object with a 'clicks' list")
    unknown = sorted(set(data) - {"clicks", "sequence"})
    if unknown:
        raise ClickError(f"{source}: unknown field(s) {', '.join(map(repr, unknown))}")
    sequence = data.get("sequence")
    if sequence is not None and not isinstance(sequence, str):
        raise ClickError(f"{source}: 'sequence' must be a string")
    clicks = []
    for i, click in enumerate(data["clicks"]):
        where = f"{source}: click {i}"
        if not isinstance(click, dict):
            raise ClickError(f"{where}: expected an object with {', '.join(FIELDS)}")
        missing = [f for f in FIELDS if f not in click]
        extra = sorted(set(click) - set(FIELDS))
        if missing or extra:
            raise ClickError(f"{where}: " + (f"missing {', '.join(missing)}" if missing else
                                             f"unknown field(s) {', '.join(extra)}"))
        frame, x, y, object_id = (click[f] for f in FIELDS)
        if not _integer(frame) or frame < 0 or (num_frames is not None and frame >= num_frames):
            limit = f" (the video has frames 0..{num_frames - 1})" if num_frames is not None else ""
            raise ClickError(f"{where}: frame must be an integer >= 0{limit}, got {frame!r}")
        for name, value in (("x", x), ("y", y)):
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or not 0.0 <= value <= 1.0):
                raise ClickError(f"{where}: {name} must be a fraction of the frame in [0, 1], got {value!r}")
        if not _integer(object_id) or object_id < 0 or (num_objects is not None and object_id > num_objects):
            limit = f" (objects 1..{num_objects}, 0 = background)" if num_objects is not None else ""
            raise ClickError(f"{where}: object_id must be an integer >= 0{limit}, got {object_id!r}")
        clicks.append({"frame": frame, "x": float(x), "y": float(y), "object_id": object_id})
    return {"clicks": clicks, "sequence": sequence}


def load_clicks(path: str | os.PathLike, *, num_frames: int | None = None, num_objects: int | None = None) -> dict:
    """Read and validate a click file (:func:`validate_clicks`); errors name the file."""
    path = Path(path)
    if path.is_dir():
        raise ClickError(f"{path} is a folder, expected a click .json file")
    if not path.is_file():
        raise FileNotFoundError(f"click file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ClickError(f"{path}: not valid JSON ({err})") from err
    return validate_clicks(data, source=str(path), num_frames=num_frames, num_objects=num_objects)


def save_clicks(path: str | os.PathLike, clicks: dict, *, overwrite: bool = False) -> Path:
    """Validate ``clicks`` and write them as JSON, atomically."""
    return write_json(path, validate_clicks(clicks, source=f"clicks for {path}"), overwrite=overwrite)


def clicked_frames(clicks: dict) -> list[int]:
    """The clicked frames in the order they first appear (one round each)."""
    return list(dict.fromkeys(c["frame"] for c in clicks["clicks"]))
