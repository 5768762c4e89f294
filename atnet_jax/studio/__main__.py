"""``python -m atnet_jax.studio``: the annotation studio, a local web page over an interactive session.

It loads the weights and the video, opens (or resumes) the workspace, compiles the networks, then serves the
page and its JSON API (:mod:`atnet_jax.studio.app`) with uvicorn and prints the URL.
"""
from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli, interrupts
from atnet_jax.io import lock

DEFAULT_WORKSPACE = Path("atnet_studio")
DEFAULT_PORT = 8765
VIDEO_FOLDER = "video"  # the generated demo video, inside the workspace

EXAMPLES = f"""examples:
  # the demo: a generated video and the demo weights, workspace in {DEFAULT_WORKSPACE}/shapes
  python -m atnet_jax.studio
  # a DAVIS sequence with the converted official weights
  python -m atnet_jax.studio --checkpoint weights/atnet --input DAVIS --sequence bear --objects 1
  # a whole DAVIS folder: a start page lists its sequences, workspaces in {DEFAULT_WORKSPACE}/<sequence>
  python -m atnet_jax.studio --checkpoint weights/atnet --input DAVIS
  # a video file; resume later with the same --workspace
  python -m atnet_jax.studio --checkpoint weights/atnet --input my_video.mp4 --workspace work/my_video
  # on a GPU server: start it there, then on the laptop: ssh -L 8765:127.0.0.1:8765 server
  python -m atnet_jax.studio --checkpoint weights/atnet --input my_video.mp4 --no-browser
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.studio",
        "The annotation studio: scribble on frames in the browser, run rounds of A-Net + T-Net, watch the masks "
        "stream in, undo, and export masks, overlays and scribble files. Every round is saved in the workspace "
        "folder; starting again with the same --workspace resumes it.\n\n"
        "Without --input it opens a generated demo video with the demo weights (trained on synthetic videos only).",
        EXAMPLES,
    )
    parser.add_argument("--input", type=Path, metavar="PATH",
                        help="a DAVIS root (with --sequence; without it, a start page lists its sequences), a "
                             "folder of frames, or a video file (default: the workspace's video, else a generated "
                             "demo video)")
    parser.add_argument("--sequence", metavar="NAME", help="sequence name inside a DAVIS root")
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="weights folder (from python -m atnet_jax.convert; default: the workspace's, else the "
                             "demo weights)")
    parser.add_argument("--objects", type=cli.positive_int, metavar="K",
                        help="number of objects to start with (default: 2 for the demo, else 1; more can be "
                             "added in the page)")
    parser.add_argument("--size", metavar="N",
                        help="run the networks on frames whose shorter side is at most N pixels; masks come at the "
                             "video's own size (default: the workspace's, else 480; 'full': the video's size)")
    cli.add_precision_argument(parser)
    parser.add_argument("--workspace", type=Path, metavar="DIR",
                        help=f"folder for rounds, masks and exports (default: {DEFAULT_WORKSPACE}/<sequence>); "
                             "an existing workspace is resumed. Over a DAVIS root without --sequence: the folder "
                             f"that holds one workspace per sequence, <DIR>/<sequence> (default: {DEFAULT_WORKSPACE})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; any other needs the "
                             "access token printed at start)")
    parser.add_argument("--port", type=cli.port, default=DEFAULT_PORT,
                        help=f"port (default: {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser, only print the URL")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def processing_size(value: str) -> int | None:
    """``--size`` -> pixels, or None for the video's own size; a usage error naming the flag otherwise."""
    from atnet_jax.models.preprocess import parse_processing_size

    try:
        return parse_processing_size(value)
    except argparse.ArgumentTypeError as err:
        raise cli.UsageError(f"--size {value}: {err}") from None


def check_args(args: argparse.Namespace) -> None:
    """Usage errors that need no model and no video."""
    if args.sequence is not None and args.input is None:
        raise cli.UsageError("--sequence needs --input (a DAVIS root)")
    if args.size is not None:
        processing_size(args.size)
    if args.input is not None:
        cli.require_path(args.input, "--input")
        cli.require_sequence_input(args.input, args.sequence)
    if args.checkpoint is not None:
        cli.require_path(args.checkpoint, "--checkpoint")


def is_dataset(args: argparse.Namespace) -> bool:
    """A DAVIS root without ``--sequence``: the start page over its sequences."""
    return args.input is not None and args.sequence is None and (args.input / "JPEGImages").is_dir()


@functools.lru_cache(maxsize=2)
def _predictor(checkpoint: Path, precision: str):
    """The networks of ``checkpoint``, loaded once however many sequences are opened with them."""
    return cli.load_predictor(checkpoint, precision=precision)


def open_dataset(args: argparse.Namespace):
    """The sequences of the DAVIS root ``--input``, each opened on demand in ``<--workspace>/<sequence>``."""
    from atnet_jax.studio.dataset import Dataset

    workspaces = args.workspace or DEFAULT_WORKSPACE
    if workspaces.exists() and not workspaces.is_dir():
        raise NotADirectoryError(f"--workspace {workspaces} is a file, expected a folder")

    def opener(name: str, folder: Path):
        return open_workspace(argparse.Namespace(**{**vars(args), "sequence": name, "workspace": folder}))

    def closer(ws) -> None:
        lock.hold(ws.root, flag="--workspace").release()

    dataset = Dataset(args.input.resolve(), workspaces, opener, closer)
    print(f"{args.input}: {len(dataset.names)} sequence(s); their workspaces go in {workspaces}/<sequence>")
    return dataset


def open_workspace(args: argparse.Namespace):
    """Resolve the video, weights and workspace from the flags (and a workspace's record) -> a Controller."""
    from atnet_jax.demo import (
        CONVERT_COMMAND,
        DEFAULT_CHECKPOINT,
        DEMO_OBJECTS,
        DEMO_SEQUENCE,
        OFFICIAL_CHECKPOINT,
        write_demo_video,
    )
    from atnet_jax.inference.session import Session
    from atnet_jax.io.davis import DavisFolder, open_frames
    from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE
    from atnet_jax.studio.controller import Controller
    from atnet_jax.studio.history import VideoRecord, read_meta

    record = read_meta(args.workspace) if args.workspace is not None and args.workspace.is_dir() else None
    if args.input is None and record is not None:
        source, sequence = Path(record.video.input), record.video.sequence
        name, demo_video = record.name, record.video.demo
    elif args.input is None:
        name, demo_video, sequence = DEMO_SEQUENCE, True, DEMO_SEQUENCE
        source = None
    else:
        source, sequence = args.input.resolve(), args.sequence
        name, demo_video = args.sequence or args.input.stem, False
    workspace = args.workspace or DEFAULT_WORKSPACE / name
    if workspace.exists() and not workspace.is_dir():
        raise NotADirectoryError(f"--workspace {workspace} is a file, expected a folder")
    lock.hold(workspace, flag="--workspace")  # a second studio on this workspace stops here (ConflictError)
    record = read_meta(workspace) if workspace.is_dir() else None
    if source is None:
        source = (workspace / VIDEO_FOLDER).resolve()
        if not (source / "JPEGImages").is_dir():
            write_demo_video(source, name=name)
            print(f"wrote a generated demo video to {source} (DAVIS layout, with ground truth)")
    if record is not None and record.video.input != str(source):
        raise cli.UsageError(f"--workspace {workspace} holds the rounds of {record.video.input}, not "
                             f"{source}: pass another --workspace")
    checkpoint = args.checkpoint or (Path(record.checkpoint) if record else DEFAULT_CHECKPOINT)
    if record is not None and args.checkpoint is not None and str(args.checkpoint.resolve()) != record.checkpoint:
        raise cli.UsageError(f"--workspace {workspace} was made with the weights {record.checkpoint}; resuming "
                             f"it with {args.checkpoint} would mix two models: pass another --workspace")
    checkpoint = checkpoint.resolve()
    demo_weights = checkpoint == DEFAULT_CHECKPOINT.resolve()

    frames = open_frames(source, sequence)
    first = frames[0]
    if record is not None:
        num_objects = len(record.objects)
        if args.objects is not None and args.objects != num_objects:
            print(f"note: --objects {args.objects} ignored: the workspace has {num_objects} objects")
    elif args.objects is not None:
        num_objects = args.objects
    elif demo_video:
        num_objects = DavisFolder(source).num_objects(name) if (source / "Annotations").is_dir() else DEMO_OBJECTS
    else:
        num_objects = 1
    predictor = _predictor(checkpoint, args.precision)
    print(f"{name}: {len(frames)} frames of {first.shape[1]}x{first.shape[0]}, {num_objects} object(s); "
          f"weights {checkpoint}")
    if demo_weights:
        print("note: these are the DEMO weights, trained on synthetic videos only; for real videos get the official "
              f"checkpoint ({OFFICIAL_CHECKPOINT}) and convert it: {CONVERT_COMMAND}")
    size = DEFAULT_PROCESSING_SIZE if record is None else record.video.size
    if args.size is not None:
        if record is not None and processing_size(args.size) != size:
            raise cli.UsageError(f"--workspace {workspace} was made at --size {size or 'full'}; its rounds cannot "
                                 f"go on at --size {args.size}: pass another --workspace")
        size = processing_size(args.size)
    session = Session(frames, predictor, num_objects, size=size)
    print("compiling A-Net and T-Net for this frame size ...", flush=True)
    session.warmup()
    video = VideoRecord(str(source), sequence, demo_video, size)
    ws = Controller(workspace, session, name=name, video=video, checkpoint=str(checkpoint),
                    demo_weights=demo_weights)
    rounds = ws.summary()["rounds"]
    print(f"workspace {workspace}: " + (f"resumed, {rounds} round(s), {len(ws.steps)} step(s)" if ws.steps
                                        else "new"))
    return ws


def can_open_browser() -> bool:
    """A graphical browser can be opened here (on a server over SSH, Python's fallback would start a text
    browser in this terminal instead)."""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (a UsageError naming the flag if it cannot be had)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise cli.UsageError(f"--host {host}: unknown address ({err})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise cli.UsageError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); try --port 0") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def studio(args: argparse.Namespace) -> None:
    import uvicorn

    from atnet_jax.studio.app import create_app

    check_args(args)
    local = is_loopback(args.host)
    sock = bind(args.host, args.port)
    dataset = open_dataset(args) if is_dataset(args) else None
    ws = open_workspace(args) if dataset is None else None
    token = None if local else secrets.token_urlsafe(24)
    allowed = ["127.0.0.1", "localhost", "::1"] if local else None
    app = create_app(ws, token=token, allowed_hosts=allowed, dataset=dataset)
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if local else (socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host)
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"the studio is at {url}  (Ctrl-C stops it; the workspace keeps every finished round)")
    if token:
        print("it listens beyond this machine: every request needs the token above")
    if not args.no_browser and can_open_browser():
        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    studio_app = app.app.state.studio
    signals: list[int] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:  # Ctrl-C: end the event streams too, then stop
            signals.append(sig)
            studio_app.stopping = True
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        interrupts.handled()
        signals.append(2)
    where = f"the workspace is in {ws.root}" if ws is not None else f"the workspaces are in {dataset.workspaces}"
    print(f"stopped; {where}", file=sys.stderr)
    if signals:
        raise cli.Interrupted()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), studio, argv)


if __name__ == "__main__":
    sys.exit(main())
