"""``experiments/reproduce_davis17.sh`` end to end, with local stand-ins for its downloads: zips of two
``davis_mini`` sequences in the DAVIS layout and their scribbles, served over HTTP from 127.0.0.1, and the tiny
network's ``torch.save`` file (``tests/data/torch``) as the official checkpoint."""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from conftest import data_path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "reproduce_davis17.sh"
SEQUENCES = ("bear", "tennis")


def _zip(path: Path, files: dict[str, Path]) -> str:
    """A zip of ``files`` (name in the archive -> file) at ``path``; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in files.items():
            archive.write(source, name)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stand_ins(www: Path) -> dict[str, str]:
    mini = data_path("davis_mini")
    davis = {"DAVIS/ImageSets/2017/val.txt": www / "val.txt", "DAVIS/ImageSets/2017/train.txt": www / "train.txt"}
    www.mkdir(parents=True)
    (www / "val.txt").write_text("".join(f"{s}\n" for s in SEQUENCES))
    (www / "train.txt").write_text("car-shadow\n")
    scribbles = {}
    for seq in SEQUENCES:
        for kind in ("JPEGImages", "Annotations"):
            for f in sorted((mini / kind / "480p" / seq).iterdir()):
                davis[f"DAVIS/{kind}/480p/{seq}/{f.name}"] = f
        for f in sorted((mini / "Scribbles" / seq).iterdir()):
            scribbles[f"DAVIS/Scribbles/{seq}/{f.name}"] = f
    return {"ATNET_DAVIS_SHA256": _zip(www / "davis" / "DAVIS-2017-trainval-480p.zip", davis),
            "ATNET_SCRIBBLES_SHA256": _zip(www / "DAVIS-Interactive" / "DAVIS-2017-scribbles-trainval.zip",
                                           scribbles)}


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 over tmp_path/www -> (base URL, checksums, requests served)."""
    www = tmp_path / "www"
    sums = _stand_ins(www)
    served: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            served.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", sums, served
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    result = subprocess.run(["bash", str(SCRIPT)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    print(f"$ {SCRIPT.name}  ({time.perf_counter() - start:.0f} s, exit {result.returncode})\n{result.stdout}")
    return result


def test_the_script_reproduces_the_table_with_stand_in_downloads(tmp_path, server):
    base, sums, served = server
    user = tmp_path / "user"
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CI")}
    env.update(sums, ATNET_DAVIS_BASE_URL=base, PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               JAX_COMPILATION_CACHE_DIR=os.environ.get("ATNET_JAX_TEST_CACHE",
                                                        str(Path.home() / ".cache" / "atnet_jax_xla")),
               # Smaller frames and 2 rounds (the later --max-rounds wins): the same pipeline in seconds.
               ATNET_EVAL_ARGS="--size 240 --max-rounds 2")
    # Without the checkpoint: the data is fetched, then the script says where to get the weights and stops.
    first = _run(user, env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "drive.google.com/file/d/1t1VO2zy3pLBXCWqme9h63Def86Y4ECIH" in first.stdout
    assert sorted(served) == ["/DAVIS-Interactive/DAVIS-2017-scribbles-trainval.zip",
                              "/davis/DAVIS-2017-trainval-480p.zip"]
    davis = user / "data" / "DAVIS"
    assert sorted(p.name for p in (davis / "Scribbles").iterdir()) == list(SEQUENCES)
    assert not (user / "weights").exists()

    shutil.copy(data_path("torch", "tiny_legacy.pth"), user / "ATNet-checkpoint.pth")
    second = _run(user, env)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out
    assert len(served) == 2 and "already downloaded" in second.stdout  # verified, not fetched again
    assert "read 472 tensors" in second.stdout
    rows = dict(re.findall(r"^\| (AUC-J&F|J&F@60s|AUC-J|J@60s) \| (\d\.\d{3} \| \d\.\d{3}) \|$", second.stdout, re.M))
    paper = {"AUC-J": "0.771", "J@60s": "0.790", "AUC-J&F": "0.809", "J&F@60s": "0.827"}
    assert set(rows) == set(paper), second.stdout
    for name, value in paper.items():
        ours = rows[name].split(" | ")
        assert ours[0] == value and 0 <= float(ours[1]) <= 1, rows
    for metric in ("J", "J_AND_F"):
        samples = sorted(p.relative_to(user / "eval" / "davis17" / metric / "samples").as_posix()
                         for p in (user / "eval" / "davis17" / metric / "samples").rglob("*.json"))
        assert samples == ["bear/1.json", "bear/2.json", "tennis/1.json"], samples
    assert (user / "eval" / "davis17" / "table.md").read_text().count("\n| ") == 5
