"""The demo's assets and defaults, shared by the commands and the studio (no command owns them): the weights shipped
with the package, and the synthetic video the demo segments."""
from __future__ import annotations

from pathlib import Path

import atnet_jax

DEFAULT_CHECKPOINT = Path(atnet_jax.__file__).resolve().parent / "assets" / "demo_weights"
"""The weights shipped with the package: a small network trained on synthetic videos (the demo's)."""
OFFICIAL_CHECKPOINT = "https://drive.google.com/file/d/1t1VO2zy3pLBXCWqme9h63Def86Y4ECIH/view?usp=sharing"
"""Where the authors share the released ATNet checkpoint (``ATNet-checkpoint.pth``)."""
CONVERT_COMMAND = "python -m atnet_jax.convert --input ATNet-checkpoint.pth --output weights/atnet"

DEMO_SEQUENCE, DEMO_SEED, DEMO_OBJECTS = "shapes", 7, 2
DEMO_FRAMES, DEMO_HEIGHT, DEMO_WIDTH = 12, 240, 432


def write_demo_video(root: Path, *, name: str = DEMO_SEQUENCE, seed: int = DEMO_SEED,
                     num_objects: int = DEMO_OBJECTS, num_frames: int | None = None, height: int = DEMO_HEIGHT,
                     width: int = DEMO_WIDTH) -> Path:
    """Write one synthetic video as a DAVIS folder at ``root`` (frames, palette masks, ``Scribbles/<name>/001.json``
    with a first scribble, ``ImageSets/2017/val.txt``) and return the scribble file's path. ``num_frames``:
    :data:`DEMO_FRAMES` where None (read when called)."""
    from atnet_jax.data.synthetic import first_scribble, generate_video
    from atnet_jax.io.frames import write_frame
    from atnet_jax.io.masks import write_mask
    from atnet_jax.io.safe import atomic_write
    from atnet_jax.io.scribbles import save_scribbles

    num_frames = DEMO_FRAMES if num_frames is None else num_frames
    frames, labels = generate_video(seed, num_frames=num_frames, height=height, width=width,
                                    num_objects=num_objects)
    for t in range(num_frames):
        write_frame(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frames[t])
        write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels[t])
    for subset in ("train", "val"):
        atomic_write(root / "ImageSets" / "2017" / f"{subset}.txt", lambda tmp: tmp.write_text(f"{name}\n"))
    return save_scribbles(root / "Scribbles" / name / "001.json", first_scribble(name, labels))
