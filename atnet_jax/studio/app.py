"""The studio's HTTP API and page: the routes table, request checks (size, JSON, token, host), the mapping of the
project's errors to statuses, and the one model thread. No model code here: every change of state goes through
:class:`~atnet_jax.studio.controller.Controller`.

API (all JSON unless noted; errors are ``{"error": "<one line>"}`` with a 4xx status):

=======  =========================  =====================================================================
GET      /api/state                 the video, objects, steps, annotated frames, strokes, mask versions
GET      /api/frames/{t}            frame t as JPEG
GET      /api/masks/{t}             frame t's labels as a palette PNG (index k = object k, 0 transparent)
POST     /api/rounds                ``{"frame": t, "strokes": [...]}`` (DAVIS strokes) or ``{"frame": t,
                                    "clicks": [{"x", "y", "object_id"}]}`` -> 202, runs the round
                                    (optional ``"direction"``: both, forward, backward; ``"until"``: a frame)
POST     /api/preview               the same body -> A-Net's result on that frame, not propagated (200); a
                                    later preview supersedes it, Run with the same interaction takes it
GET      /api/preview/mask          the preview's labels as a palette PNG (404 without one)
DELETE   /api/preview               drop the preview (the session as before it)
POST     /api/cancel                cancel the running round (the previous result comes back exactly), or
                                    drop the preview where no round runs
POST     /api/undo                  undo the last step (a round or an object edit)
POST     /api/redo                  make the last undone step again (until a new step is made)
POST     /api/objects               add an object (empty on every frame)
PATCH    /api/objects/{k}           ``{"name": ..., "colour": "#rrggbb"}``
DELETE   /api/objects/{k}           remove object k (objects above it move down one id)
GET      /api/scores                per-frame J&F against the video's ground truth and the mean after each step
                                    (``{"available": false}`` where the video has none)
GET      /api/suggest               the frame the model is least sure of (mean binary entropy); 409 while a round
                                    runs
POST     /api/export                write the workspace's export/ folder; 409 before the first round
POST     /api/export.zip            write it, and answer it as one zip (an attachment; entries ``export/...``)
GET      /api/export/video          the last export's overlay video (H.264 MP4)
GET      /api/events                server-sent events: round_start, frame, round_end, state, exported,
                                    preview, busy (what holds the workspace now, or null)
=======  =========================  =====================================================================

Over a dataset (a DAVIS root without ``--sequence``) ``/`` is the start page until a sequence is open, ``/start``
always; the routes above answer for the open sequence (409 while none is), and:

=======  =========================  =====================================================================
GET      /api/dataset               the sequences with their state (rounds, exported) and the open one
                                    (``{"dataset": false}`` when the studio serves one video)
POST     /api/dataset/open          ``{"sequence": NAME}``: open it (its workspace ``<root>/NAME/``)
=======  =========================  =====================================================================

POST, PATCH and DELETE need ``Content-Type: application/json`` (a web page elsewhere cannot send it without
the browser asking first), and a step sent while a round runs gets 409. Every integer field (``frame``, a
stroke's or click's ``object_id``) must be a JSON integer: ``2``, not ``2.0``, ``"2"`` or ``true``. Bodies nest
at most :data:`MAX_DEPTH` levels. Mask versions only grow, across restarts too.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from atnet_jax.errors import AtnetError, ConflictError, NotFoundError, UsageError, one_line
from atnet_jax.studio.controller import Controller
from atnet_jax.studio.dataset import Dataset

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 1 << 20
MAX_DEPTH = 32  # nesting of lists and objects in a request (a round's strokes nest 5 deep)
TOKEN_COOKIE = "atnet_studio_token_{port}"  # per port: cookies are shared by every port of a host
KEEPALIVE_S = 15.0
POLL_S = 0.5  # how often an idle event stream checks whether the server is stopping
NO_STORE = {"Cache-Control": "no-store"}


class HttpError(Exception):
    """A refusal that only HTTP knows (a body too large, the server shutting down): ``status`` and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The request's JSON body, at most :data:`MAX_BODY` bytes; an :class:`HttpError` (413) or a
    :class:`UsageError` (400) otherwise."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise HttpError(413, f"request body too large (at most {MAX_BODY} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HttpError(413, f"request body too large (at most {MAX_BODY} bytes)")
    if not body:
        if required:
            raise UsageError("malformed JSON: the request body is empty")
        return None
    try:
        data = json.loads(body.decode("utf-8"))
    except RecursionError:
        raise UsageError(f"malformed JSON: nested more than {MAX_DEPTH} levels deep") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"malformed JSON: {str(err).splitlines()[0]}") from None
    if _too_deep(data):
        raise UsageError(f"malformed JSON: nested more than {MAX_DEPTH} levels deep")
    return data


def _too_deep(data: Any) -> bool:
    """Whether ``data`` nests lists and objects more than :data:`MAX_DEPTH` levels (checked without recursion)."""
    level = [data]
    for _ in range(MAX_DEPTH + 1):
        level = [v for x in level if isinstance(x, (list, dict))
                 for v in (x.values() if isinstance(x, dict) else x)]
        if not level:
            return False
    return True


class Studio:
    """The app's handlers over one workspace, with the single model thread."""

    def __init__(self, workspace: Controller | None, dataset: Dataset | None = None) -> None:
        self._ws = workspace
        self.dataset = dataset
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atnet-model")
        self.stopping = False  # set when the server shuts down: event streams end

    @property
    def ws(self) -> Controller:
        """The workspace the API works on: the one given, or the dataset's open sequence."""
        if self.dataset is None:
            assert self._ws is not None
            return self._ws
        current = self.dataset.current
        if current is None:
            raise ConflictError("no sequence is open: choose one on the start page (/start)")
        return current

    async def _step(self, fn: Callable[[], Any], activity: str) -> Any:
        """Run a short step on the model thread, holding the workspace (409 while another step runs);
        ``activity`` says what runs, to every page (the ``busy`` event)."""
        ws = self.ws
        ws.exclusive(activity)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn)
        finally:
            ws.release()

    async def index(self, request: Request) -> Response:
        if self.dataset is not None and self.dataset.current is None:
            return await self.start(request)
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    async def start(self, request: Request) -> Response:
        if self.dataset is None:
            raise NotFoundError("the studio serves one video, not a dataset: there is no start page")
        return FileResponse(STATIC / "start.html", headers=NO_STORE)

    def _dataset(self) -> Dataset:
        if self.dataset is None:
            raise NotFoundError("the studio serves one video, not a dataset (start it with --input DAVIS_ROOT "
                                "and no --sequence)")
        return self.dataset

    def dataset_listing(self, request: Request) -> Response:  # sync: it reads every workspace's record
        if self.dataset is None:  # a page asks whether to link back to a list: not an error
            return JSONResponse({"dataset": False}, headers=NO_STORE)
        return JSONResponse({"dataset": True, **self.dataset.listing()}, headers=NO_STORE)

    async def dataset_open(self, request: Request) -> Response:
        dataset = self._dataset()
        name = dataset.check_name(await read_json(request))
        await asyncio.get_running_loop().run_in_executor(self.model_thread, dataset.open, name)
        return JSONResponse({"open": name})

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.ws.summary(), headers=NO_STORE)

    def frame(self, request: Request) -> Response:  # sync: Starlette runs it off the event loop
        return Response(self.ws.frame_jpeg(request.path_params["t"]), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    def mask(self, request: Request) -> Response:
        return Response(self.ws.mask_png(request.path_params["t"]), media_type="image/png", headers=NO_STORE)

    async def submit_round(self, request: Request) -> Response:
        body = await read_json(request)
        ws = self.ws
        interaction = ws.validate_round(body)
        direction, until = ws.round_range(body)
        last_event = ws.events.last_id
        live = ws.begin_round(interaction.frame, direction, until)
        try:
            self.model_thread.submit(ws.run_round, live, interaction)
        except RuntimeError:  # shutting down
            ws.live = None
            ws.release()
            raise HttpError(503, "the studio is shutting down") from None
        return JSONResponse({"frame": interaction.frame, "total": live.total, "since": last_event}, status_code=202)

    async def cancel(self, request: Request) -> Response:
        await read_json(request, required=False)
        if self.ws.live is None and self.ws.preview is not None:
            return JSONResponse({"dropped": await self._step(self.ws.drop_preview, "dropping the preview")})
        self.ws.cancel()
        return JSONResponse({"cancelling": True}, status_code=202)

    async def preview(self, request: Request) -> Response:
        body = await read_json(request)
        interaction = self.ws.validate_round(body)
        self.ws.round_range(body)  # checked as for a round; a preview does not propagate
        number = self.ws.request_preview()
        result = await asyncio.get_running_loop().run_in_executor(
            self.model_thread, lambda: self.ws.run_preview(interaction, number))
        return JSONResponse(result, headers=NO_STORE)

    def preview_mask(self, request: Request) -> Response:
        data, version = self.ws.preview_png()
        return Response(data, media_type="image/png", headers={**NO_STORE, "X-Preview-Version": str(version)})

    async def drop_preview(self, request: Request) -> Response:
        await read_json(request, required=False)
        return JSONResponse({"dropped": await self._step(self.ws.drop_preview, "dropping the preview")})

    async def undo(self, request: Request) -> Response:
        await read_json(request, required=False)
        step = await self._step(self.ws.undo, "undoing the last step")
        return JSONResponse({"undone": step.public(), "state": self.ws.summary()})

    async def redo(self, request: Request) -> Response:
        await read_json(request, required=False)
        step = await self._step(self.ws.redo, "redoing a step")
        return JSONResponse({"redone": step.public(), "state": self.ws.summary()})

    async def add_object(self, request: Request) -> Response:
        await read_json(request, required=False)
        object_id = await self._step(self.ws.add_object, f"adding object {self.ws.next_object_id()}")
        return JSONResponse({"id": object_id, "state": self.ws.summary()}, status_code=201)

    async def update_object(self, request: Request) -> Response:
        body = await read_json(request)
        obj = self.ws.update_object(request.path_params["k"], body)
        return JSONResponse({"name": obj["name"], "colour": obj["colour"]})

    async def remove_object(self, request: Request) -> Response:
        await read_json(request, required=False)
        k = self.ws.check_object(request.path_params["k"])
        await self._step(lambda: self.ws.remove_object(k), f"removing object {k}")
        return JSONResponse({"removed": k, "state": self.ws.summary()})

    async def suggest(self, request: Request) -> Response:
        # The exclusive hold makes it a 409 while a round runs (half-updated probabilities).
        return JSONResponse(await self._step(self.ws.suggest, "finding the least certain frame"))

    def scores(self, request: Request) -> Response:  # sync: Starlette runs it off the event loop
        return JSONResponse(self.ws.scores(), headers=NO_STORE)

    async def export(self, request: Request) -> Response:
        await read_json(request, required=False)
        files = await self._step(self.ws.export, "exporting")
        return JSONResponse({"folder": "export", "files": files})

    async def export_zip(self, request: Request) -> Response:
        await read_json(request, required=False)
        ws = self.ws
        path = await self._step(ws.export_zip, "exporting")
        return FileResponse(path, media_type="application/zip", filename=f"{ws.name}_export.zip",
                            headers=NO_STORE, background=BackgroundTask(path.unlink, missing_ok=True))

    def export_video(self, request: Request) -> Response:
        return FileResponse(self.ws.export_video(), media_type="video/mp4", headers=NO_STORE)

    async def events(self, request: Request) -> Response:
        """Server-sent events. ``?since=N`` replays the logged events after id N first; ``?until=round_end``
        ends the stream after the next round_end event (for clients that read one round)."""
        since = request.query_params.get("since", "")
        until = request.query_params.get("until")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict] = asyncio.Queue()

        def listener(event: dict) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
                loop.call_soon_threadsafe(queue.put_nowait, event)

        events = self.ws.events
        last = events.subscribe(listener)
        backlog = events.between(int(since), last) if since.isdigit() else []

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                pending = list(backlog)
                quiet = 0.0
                while not self.stopping:
                    if pending:
                        event = pending.pop(0)
                    else:
                        try:
                            event = await asyncio.wait_for(queue.get(), POLL_S)
                        except asyncio.TimeoutError:
                            quiet += POLL_S
                            if quiet >= KEEPALIVE_S:
                                quiet = 0.0
                                yield ": keep-alive\n\n"
                            continue
                    quiet = 0.0
                    yield f"id: {event['id']}\ndata: {json.dumps(event)}\n\n"
                    if until is not None and event["type"] == until:
                        return
            finally:
                events.unsubscribe(listener)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**NO_STORE, "X-Accel-Buffering": "no"})

    def close(self) -> None:
        live = self._ws.live if self.dataset is None else getattr(self.dataset.current, "live", None)
        if live is not None:
            live.cancel.set()
        self.model_thread.shutdown(wait=True, cancel_futures=True)
        if self.dataset is not None:
            self.dataset.close()
        elif self._ws is not None:
            self._ws.close()


async def _project_error(request: Request, exc: Exception) -> Response:
    """The one place where the project's errors become statuses: each kind's ``http_status``."""
    assert isinstance(exc, AtnetError)
    return error(exc.http_status, one_line(exc, hint=False))


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error(exc.status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, f"no such endpoint: {request.method} {request.url.path}")
    if exc.status_code == 405:
        return error(405, f"{request.method} is not allowed on {request.url.path}")
    return error(exc.status_code, str(exc.detail))


class Guard:
    """ASGI middleware: the Host header (against DNS rebinding), the access token, JSON on state changes.

    The token may come as ``?token=``, ``Authorization: Bearer`` or the cookie that a ``?token=`` visit sets.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str | None,
                 allowed_hosts: list[str] | None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return await error(403, f"host {host!r} is not allowed (open the studio at the URL it printed)")(
                scope, receive, send)
        set_cookie = False
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
            bearer = headers.get("authorization", "")
            bearer = bearer[7:] if bearer.lower().startswith("bearer ") else ""
            cookie = SimpleCookie()
            with contextlib.suppress(CookieError):  # a malformed Cookie header counts as no cookie
                cookie.load(headers.get("cookie", ""))
            cookie_name = TOKEN_COOKIE.format(port=(scope.get("server") or ("", 0))[1])
            from_cookie = cookie[cookie_name].value if cookie_name in cookie else ""
            if not any(secrets.compare_digest(c.encode(), self.token.encode())
                       for c in (query, bearer, from_cookie) if c):
                return await error(401, "missing or wrong access token (open the URL with ?token= that the "
                                        "studio printed)")(scope, receive, send)
            set_cookie = bool(query) and not from_cookie
        if scope["method"] in ("POST", "PATCH", "DELETE", "PUT"):
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return await error(415, "requests that change state must be sent as application/json")(
                    scope, receive, send)

        async def send_with_cookie(message: dict) -> None:
            if set_cookie and message["type"] == "http.response.start":
                value = f"{cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", value.encode("latin-1"))]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def create_app(workspace: Controller | None, *, token: str | None = None,
               allowed_hosts: list[str] | None = None, dataset: Dataset | None = None) -> Starlette:
    """The studio's ASGI app over ``workspace``, or over the sequences of ``dataset`` (``workspace`` None).
    ``token``: required on every request when given; ``allowed_hosts``: the Host header values accepted (None:
    any)."""
    studio = Studio(workspace, dataset)
    routes = [
        Route("/", studio.index),
        Route("/start", studio.start),
        Route("/api/dataset", studio.dataset_listing),
        Route("/api/dataset/open", studio.dataset_open, methods=["POST"]),
        Route("/api/state", studio.state),
        Route("/api/frames/{t:int}", studio.frame),
        Route("/api/masks/{t:int}", studio.mask),
        Route("/api/rounds", studio.submit_round, methods=["POST"]),
        Route("/api/cancel", studio.cancel, methods=["POST"]),
        Route("/api/preview", studio.preview, methods=["POST"]),
        Route("/api/preview", studio.drop_preview, methods=["DELETE"]),
        Route("/api/preview/mask", studio.preview_mask),
        Route("/api/undo", studio.undo, methods=["POST"]),
        Route("/api/redo", studio.redo, methods=["POST"]),
        Route("/api/objects", studio.add_object, methods=["POST"]),
        Route("/api/objects/{k:int}", studio.update_object, methods=["PATCH"]),
        Route("/api/objects/{k:int}", studio.remove_object, methods=["DELETE"]),
        Route("/api/suggest", studio.suggest),
        Route("/api/scores", studio.scores),
        Route("/api/export", studio.export, methods=["POST"]),
        Route("/api/export.zip", studio.export_zip, methods=["POST"]),
        Route("/api/export/video", studio.export_video),
        Route("/api/events", studio.events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.get_running_loop().run_in_executor(None, studio.close)

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={AtnetError: _project_error, HttpError: _refusal,
                                        HTTPException: _http_error})
    app.state.studio = studio
    return Guard(app, token=token, allowed_hosts=allowed_hosts)  # type: ignore[return-value]
