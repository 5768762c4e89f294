"""Results as files: a sequence's masks (DAVIS palette PNGs) with an overlay video or images, written as a whole;
and the studio's export (those, COCO-style RLE, the rounds' scribble files and the ``infer`` command that replays
them). ``infer`` and the studio both write through here."""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.errors import ConflictError
from atnet_jax.io.frames import write_frame
from atnet_jax.io.masks import DAVIS_PALETTE, write_mask
from atnet_jax.io.safe import check_writable_folder, replace_entries, staging_dir
from atnet_jax.io.visualize import overlay as draw_overlay
from atnet_jax.io.visualize import write_overlay_video

OVERLAYS = ("video", "images", "none")


def result_names(name: str) -> list[str]:
    """The entries of a results folder that hold sequence ``name``'s results (whichever overlay was asked
    for): the masks folder, the overlay video and the overlay images folder."""
    return [name, f"{name}_overlay.mp4", f"{name}_overlay"]


def check_results_output(output: Path, name: str, *, overwrite: bool, flag: str = "--output") -> None:
    """Before any work: ``output`` must be a folder that can be written (or created), and without
    ``overwrite`` it must hold no results of ``name`` yet. UsageError / ConflictError naming the flag."""
    check_writable_folder(output, flag)
    existing = [output / n for n in result_names(name) if (output / n).exists() or (output / n).is_symlink()]
    if existing and not overwrite:
        raise ConflictError(f"{flag} {output} already holds results of {name} ({existing[0]}); pass "
                            "--overwrite to replace them")


def check_overlay_writer(overlay: str) -> None:
    """An :class:`~atnet_jax.io.mp4.EncoderError` now, not after the run, where the H.264 encoder cannot write
    the overlay video."""
    if overlay != "video":
        return
    from atnet_jax.io.mp4 import EncoderError, check_encoder

    try:
        check_encoder()
    except EncoderError as err:
        raise EncoderError(f"{err}; use --overlay images") from None


def write_sequence_files(folder: Path, name: str, frames, labels, overlay: str = "video", *,
                         palette: np.ndarray = DAVIS_PALETTE, hint: str = "; use --overlay images") -> list[Path]:
    """Write a sequence's results into ``folder`` (a fresh staging folder: nothing is replaced):
    ``name/%05d.png`` palette masks and, by ``overlay``, ``name_overlay.mp4`` or ``name_overlay/%05d.jpg``.

    Args:
      frames: ``len`` and ``frames[t] -> [H, W, 3] uint8`` RGB (a FrameSource or an array).
      labels: ``[T, H, W]`` uint8 object ids (0 = background).
      overlay: one of :data:`OVERLAYS`.
      palette: the overlay's colours (the masks always carry the DAVIS palette).
      hint: how the error ends where the H.264 encoder fails.
    Returns what was written, masks folder first.
    """
    from tqdm import tqdm

    if overlay not in OVERLAYS:
        raise ValueError(f"overlay must be one of {OVERLAYS}, got {overlay!r}")
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} frames but {len(labels)} label maps for {name}")
    masks_dir = folder / name
    masks_dir.mkdir(parents=True)
    for t in tqdm(range(len(labels)), desc="writing masks", unit="frame", leave=False):
        write_mask(masks_dir / f"{t:05d}.png", labels[t])
    written = [masks_dir]
    if overlay == "video":
        written.append(folder / f"{name}_overlay.mp4")
        write_overlay_video(written[-1], frames, labels, palette, hint=hint)
    elif overlay == "images":
        written.append(folder / f"{name}_overlay")
        written[-1].mkdir()
        for t in range(len(labels)):
            write_frame(written[-1] / f"{t:05d}.jpg", draw_overlay(frames[t], labels[t], palette))
    return written


def write_sequence_results(output: Path, name: str, frames, labels, *, overlay: str = "video",
                           overwrite: bool = False) -> list[Path]:
    """Write sequence ``name``'s results to ``output`` as a whole and return their paths (masks folder first).

    Everything is written into a staging folder beside the results, then swapped in: the earlier results of
    ``name`` (masks, either overlay) all go, so a run never leaves files of another run beside its own, and
    an interrupted or failed write leaves the earlier results as they were. Without ``overwrite`` existing
    results of ``name`` raise FileExistsError. ``frames``, ``labels``, ``overlay``: as
    :func:`write_sequence_files`.
    """
    output = Path(output)
    check_results_output(output, name, overwrite=overwrite)
    created = not output.exists()
    staged = staging_dir(output / name)
    try:
        write_sequence_files(staged, name, frames, labels, overlay)
    except BaseException:
        discard(staged, output if created else None)
        raise
    return replace_entries(staged, output, result_names(name))


def discard(staged: Path, created: Path | None) -> None:
    """Remove a staging folder, and the output folder made for it (``created``) if it is still empty."""
    shutil.rmtree(staged, ignore_errors=True)
    if created is not None:
        try:
            created.rmdir()
        except OSError:  # not empty: something else was written there meanwhile
            pass





def rle_encode(mask: np.ndarray) -> dict:
    """COCO-style uncompressed RLE of a binary ``mask: [H, W]``: ``{"size": [H, W], "counts": [...]}`` with
    run lengths in column-major order, starting with a run of zeros (possibly empty)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode` -> ``[H, W]`` bool."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape((height, width), order="F")


def write_export(folder: Path, *, name: str, frames: Any, labels: Any, object_names: Sequence[str],
                 palette: np.ndarray, scribble_files: Sequence[Path],
                 replay: dict) -> list[str]:
    """Write into ``folder``: ``<name>/%05d.png`` (``labels[t] -> [H, W]`` uint8 as DAVIS palette PNGs, at the
    video's size), ``<name>_rle.json`` (per frame and object, :func:`rle_encode`), ``<name>_overlay.mp4`` (the
    masks over ``frames`` in ``palette``'s colours), ``scribbles/`` (copies of ``scribble_files``) and
    ``replay.json`` (``replay``). Returns what was written, relative to ``folder``."""
    write_sequence_files(folder, name, frames, labels, "video", palette=palette, hint="")
    first = labels[0]
    rle: dict[str, Any] = {"name": name, "height": int(first.shape[0]), "width": int(first.shape[1]),
                           "objects": [{"id": i + 1, "name": n} for i, n in enumerate(object_names)], "frames": []}
    for t in range(len(labels)):
        frame_labels = labels[t]
        rle["frames"].append({"frame": t, "objects": {str(k + 1): rle_encode(frame_labels == k + 1)
                                                      for k in range(len(object_names))}})
    (folder / f"{name}_rle.json").write_text(json.dumps(rle))
    scribbles = folder / "scribbles"
    scribbles.mkdir()
    for path in scribble_files:
        shutil.copyfile(path, scribbles / path.name)
    (folder / "replay.json").write_text(json.dumps(replay, indent=1))
    return [f"{name}/", f"{name}_rle.json", f"{name}_overlay.mp4", *[f"scribbles/{p.name}" for p in scribble_files],
            "replay.json"]


STORED_SUFFIXES = (".png", ".mp4", ".jpg")  # already compressed: stored as they are in a zip


def zip_folder(folder: Path, out: Any, *, prefix: str) -> list[str]:
    """Write every file under ``folder`` into the zip file ``out`` (a path or a binary file object) as
    ``prefix/<relative path>``, sorted; returns the names written."""
    import zipfile

    names = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            kind = zipfile.ZIP_STORED if path.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            archive.write(path, name, compress_type=kind)
            names.append(name)
    return names
