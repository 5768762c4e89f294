"""Helpers for the studio's browser tests: a studio server started as a user would, optionally with an access
token (as with a non-local ``--host``, but listening on 127.0.0.1) and a slower object edit, and a Chromium page
that records page and console errors."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_studio_browser import _require_browser

require_browser = _require_browser

# The studio's own command, with two test-only changes made in its process: a fixed token (the studio then checks
# it on every request, as it does when it listens beyond this machine) and a delay in adding an object.
_LAUNCH = """
import os, sys, time, types
from atnet_jax.studio import __main__ as command, controller
token = os.environ.get("ATNET_STUDIO_TEST_TOKEN")
if token:
    command.is_loopback = lambda host: False
    command.secrets = types.SimpleNamespace(token_urlsafe=lambda n: token)
delay = float(os.environ.get("ATNET_STUDIO_TEST_ADD_DELAY", "0"))
if delay:
    add = controller.Controller.add_object
    controller.Controller.add_object = lambda self: (time.sleep(delay), add(self))[1]
sys.exit(command.main(sys.argv[1:]))
"""


class StudioServer:
    """``python -m atnet_jax.studio`` on ``workspace`` (the demo video), at ``url`` (with ``?token=`` when it has
    one); :meth:`restart` stops it and starts it again on the same port and workspace."""

    def __init__(self, workspace: Path, *, token: str | None = None, add_delay: float = 0.0) -> None:
        self.workspace, self.token, self.add_delay = workspace, token, add_delay
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.start()

    def start(self) -> None:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
               "ATNET_STUDIO_TEST_ADD_DELAY": str(self.add_delay)}
        if self.token:
            env["ATNET_STUDIO_TEST_TOKEN"] = self.token
        env.setdefault("JAX_COMPILATION_CACHE_DIR",
                       os.environ.get("ATNET_JAX_TEST_CACHE", str(Path.home() / ".cache" / "atnet_jax_xla")))
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "--workspace", str(self.workspace), "--port", str(self.port),
             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"the studio is at (http://\S+)", line)
            if match:
                self.url = match.group(1)
                self.port = int(re.search(r":(\d+)/", self.url).group(1))
                return
        self.proc.kill()
        raise AssertionError("the studio did not start:\n" + "".join(lines))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.base, timeout=30, headers=headers)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def restart(self) -> None:
        self.stop()
        self.start()


def watch_errors(page) -> list[str]:
    """Uncaught page errors and console errors of ``page``, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    return errors
