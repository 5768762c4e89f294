"""The studio's page as a person uses it, in headless Chromium (Playwright), on the demo video with one studio
server for the whole file (with an access token, and adding an object slowed down so it can be seen running):
the token leaves the address bar; strokes not yet run survive a reload; typing into a name field renames and
runs no shortcut; undo and redo by buttons and keys; the eraser; zoom and pan keep strokes on target;
brush, overlay modes, visibility and playback speed; the connection message clears after a server restart; a
long step disables Run and says what runs in every tab. Every test also checks that the page raised no error.

With ``CI=true`` a missing browser fails the tests instead of skipping them.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from studio_browser_util import StudioServer, require_browser, watch_errors
from test_studio_browser import _stroke_inside, launch_browser

TOKEN = "test-token-0123456789"
ADD_DELAY_S = 2.0


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    sync_playwright = require_browser()
    from atnet_jax.io.davis import DavisFolder

    root = tmp_path_factory.mktemp("studio_ui")
    server = StudioServer(root / "ws", token=TOKEN, add_delay=ADD_DELAY_S)
    try:
        gt = DavisFolder(root / "ws" / "video").read_masks("shapes")
        with sync_playwright() as p:
            context = launch_browser(p, root / "profile")
            page = context.pages[0] if context.pages else context.new_page()
            dialogs: list[str] = []

            def on_dialog(dialog) -> None:
                dialogs.append(dialog.type)
                dialog.accept()

            page.on("dialog", on_dialog)
            errors = watch_errors(page)
            client = server.client()
            yield {"server": server, "page": page, "context": context, "errors": errors, "dialogs": dialogs,
                   "gt": gt, "client": client, "root": root}
            client.close()
            context.close()
    finally:
        code = server.stop()
    assert code == 130


def _status(page, text: str, timeout: float = 30_000) -> None:
    page.get_by_test_id("status").filter(has_text=text).wait_for(timeout=timeout)


def _screen(page, x: float, y: float) -> tuple[float, float]:
    """The screen point of the image point (x, y) in [0, 1] fractions, from the canvas' box as shown now."""
    box = page.get_by_test_id("frame-canvas").bounding_box()
    return box["x"] + x * box["width"], box["y"] + y * box["height"]


def _drag(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=2)
    page.mouse.up()


def _scribble_on_object(page, gt, k: int) -> None:
    height, width = gt.shape[1:]
    page.get_by_test_id(f"object-{k}").locator(".key").click()
    _drag(page, [_screen(page, (x + 0.5) / width, (y + 0.5) / height) for x, y in _stroke_inside(gt[0] == k)])


def _pending(page) -> dict:
    return page.evaluate("Object.fromEntries([...window.studio.pending].map(([t, s]) => [t, s.map((x) => x.path)]))")


def _blur(page) -> None:
    page.evaluate("document.activeElement && document.activeElement.blur()")


def test_the_token_leaves_the_address_bar_and_the_cookie_keeps_working(studio):
    page, server = studio["page"], studio["server"]
    assert "?token=" in server.url
    assert studio["client"].get("/api/state", headers={"Authorization": ""}).status_code == 401
    page.goto(server.url)
    _status(page, "ready")
    assert "token" not in page.url and page.url.rstrip("/") == server.base
    assert page.evaluate("window.history.length") == 1 or "token" not in page.evaluate("location.href")
    page.reload()
    _status(page, "ready")
    assert studio["errors"] == []


def test_strokes_not_yet_run_survive_a_reload_and_then_run(studio):
    page, gt = studio["page"], studio["gt"]
    for k in (1, 2):
        _scribble_on_object(page, gt, k)
    page.get_by_test_id("pending-note").filter(has_text="2 new stroke(s)").wait_for()
    drawn = _pending(page)
    page.reload()  # the page asks first (beforeunload); the test accepts
    assert "beforeunload" in studio["dialogs"]
    page.get_by_test_id("pending-note").filter(has_text="2 new stroke(s)").wait_for()
    assert _pending(page) == drawn
    page.get_by_test_id("run").click()
    _status(page, "round 1 on frame 0", timeout=120_000)
    state = studio["client"].get("/api/state").json()
    assert [s["path"] for s in state["strokes"]["0"]] == drawn["0"]
    assert page.evaluate("localStorage.length") == 0  # nothing left to keep
    assert studio["errors"] == []


def test_typing_a_name_renames_and_runs_no_shortcut(studio):
    page, client = studio["page"], studio["client"]
    name = page.get_by_test_id("object-name-1")
    name.click()
    assert page.evaluate("document.activeElement.dataset.testid") == "object-name-1"  # focus stays
    page.keyboard.press("Control+A")
    page.keyboard.type("bus")  # u would undo the round if it reached the shortcuts
    page.keyboard.press("Enter")
    page.wait_for_function("window.studio.server.objects[0].name === 'bus'")
    state = client.get("/api/state").json()
    assert state["objects"][0]["name"] == "bus" and len(state["steps"]) == 1

    tool, brush = page.evaluate("document.body.dataset.tool"), page.evaluate("window.studio.brush")
    name.click()
    for key in ("e", "2", "[", "?", "u", "0", "Home"):
        page.keyboard.press(key)
    assert name.input_value() != "bus"  # the keys went into the field
    page.keyboard.press("Escape")  # and Esc keeps the old name
    assert name.input_value() == "bus"
    assert page.evaluate("document.body.dataset.tool") == tool and page.evaluate("window.studio.brush") == brush
    assert page.evaluate("window.studio.object") == 1 and page.get_by_test_id("help-overlay").is_hidden()
    assert len(client.get("/api/state").json()["steps"]) == 1
    assert studio["errors"] == []


def test_undo_and_redo_by_buttons_and_keys(studio):
    page, client = studio["page"], studio["client"]

    def steps() -> int:
        return len(client.get("/api/state").json()["steps"])

    assert page.get_by_test_id("redo").is_disabled()
    page.get_by_test_id("undo").click()
    _status(page, "undone: round on frame 0")
    assert steps() == 0 and page.get_by_test_id("redo").is_enabled()
    page.get_by_test_id("redo").click()
    _status(page, "redone: round on frame 0")
    assert steps() == 1 and "annotated" in page.get_by_test_id("timeline-cell-0").get_attribute("class")
    _blur(page)
    for key, text, count in (("u", "undone", 0), ("Shift+U", "redone", 1), ("Control+z", "undone", 0),
                             ("Control+Shift+Z", "redone", 1), ("Control+z", "undone", 0), ("Control+y", "redone", 1)):
        page.keyboard.press(key)
        _status(page, f"{text}: round on frame 0")
        assert steps() == count, key
    assert page.get_by_test_id("redo").is_disabled()
    assert studio["errors"] == []


def test_the_eraser_removes_strokes_without_errors(studio):
    page = studio["page"]
    _blur(page)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("s")
    _drag(page, [_screen(page, 0.2 + 0.02 * i, 0.5) for i in range(8)])
    _drag(page, [_screen(page, 0.2 + 0.02 * i, 0.8) for i in range(8)])
    page.get_by_test_id("pending-note").filter(has_text="2 new stroke(s)").wait_for()
    page.keyboard.press("e")
    _drag(page, [_screen(page, 0.27, 0.3 + 0.02 * i) for i in range(12)])  # across the first stroke only
    page.get_by_test_id("pending-note").filter(has_text="1 new stroke(s)").wait_for()
    assert [p[0][1] for p in _pending(page)["1"]] == [pytest.approx(0.8, abs=0.01)]
    page.keyboard.press("Backspace")
    assert _pending(page)["1"] == []
    page.keyboard.press("Home")
    assert studio["errors"] == []


def test_zoom_and_pan_keep_strokes_where_they_are_drawn(studio):
    page = studio["page"]
    _blur(page)
    page.keyboard.press("c")
    box = page.get_by_test_id("frame-canvas").bounding_box()
    cursor = (box["x"] + 0.6 * box["width"], box["y"] + 0.4 * box["height"])
    page.mouse.move(*cursor)
    page.mouse.wheel(0, -300)  # three notches in, about the cursor
    page.wait_for_function("window.studio.view.zoom > 1.9")
    zoom = page.evaluate("window.studio.view.zoom")
    assert zoom == pytest.approx(1.25 ** 3)

    def shown(u: float, v: float, offset=(0.0, 0.0)) -> tuple[float, float]:
        # Where the image point (u, v) is after zooming by `zoom` about `cursor`, then panning by `offset`.
        x0, y0 = box["x"] + u * box["width"], box["y"] + v * box["height"]
        return (cursor[0] + (x0 - cursor[0]) * zoom + offset[0], cursor[1] + (y0 - cursor[1]) * zoom + offset[1])

    page.mouse.click(*shown(0.55, 0.45))
    page.keyboard.down(" ")  # Space held: a drag pans
    page.mouse.move(500, 400)
    page.mouse.down()
    page.mouse.move(440, 360, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    assert page.get_by_test_id("play").inner_text() == "play"  # the Space that panned did not start playback
    page.mouse.click(*shown(0.5, 0.5, offset=(-60, -40)))
    page.screenshot(path=str(studio["root"] / "zoomed.png"))
    points = [p[0] for p in _pending(page)["0"]]
    pixel = np.array([1 / (box["width"] * zoom), 1 / (box["height"] * zoom)])  # one screen pixel, per axis
    error = np.abs(np.array(points) - [[0.55, 0.45], [0.5, 0.5]]) / pixel
    assert (error <= 1.5).all(), f"strokes off by {error.max():.2f} screen pixels"
    page.keyboard.press("0")
    assert page.evaluate("window.studio.view.zoom") == 1
    assert page.get_by_test_id("frame-canvas").evaluate("c => c.style.transform") == ""
    assert page.get_by_test_id("frame-canvas").bounding_box() == box
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    assert _pending(page)["0"] == []
    page.keyboard.press("s")
    assert studio["errors"] == []


def test_brush_overlay_visibility_and_speed(studio):
    page, gt = studio["page"], studio["gt"]
    _blur(page)
    page.keyboard.press("Home")
    for key in ("]", "]", "["):
        page.keyboard.press(key)
    assert page.evaluate("window.studio.brush") == 4 and page.get_by_test_id("brush").input_value() == "4"
    page.keyboard.press("o")
    assert page.get_by_test_id("overlay").input_value() == "fill"
    page.get_by_test_id("overlay").select_option("outline")
    assert page.evaluate("window.studio.overlay") == "outline"
    page.get_by_test_id("overlay").select_option("fill")
    assert page.evaluate("document.activeElement === document.body")

    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(gt[0] == 1)
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    pixel = f"window.studio.view.canvas.getContext('2d').getImageData({x}, {y}, 1, 1).data.join(',')"
    page.wait_for_function("window.studio.versions[0] > 0")
    page.wait_for_timeout(300)  # the mask image to load
    shown = page.evaluate(pixel)
    page.get_by_test_id("object-eye-1").click()
    hidden = page.evaluate(pixel)
    page.get_by_test_id("opacity").fill("0")
    assert page.evaluate(pixel) == hidden != shown  # a hidden object's mask is not drawn at all
    page.get_by_test_id("object-eye-1").click()
    page.get_by_test_id("opacity").fill("0.55")
    assert page.evaluate(pixel) == shown

    page.screenshot(path=str(studio["root"] / "controls.png"))
    page.get_by_test_id("speed").select_option("4")
    assert page.evaluate("window.studio.speed") == 4
    page.keyboard.press("]")  # the select, once chosen, gives the keys back
    assert page.evaluate("window.studio.brush") == 5
    page.get_by_test_id("play").click()
    page.wait_for_function("window.studio.t >= 3")
    page.get_by_test_id("play").click()
    assert studio["errors"] == []


def test_the_connection_message_clears_after_a_server_restart(studio):
    page = studio["page"]
    lost = "lost the connection to the studio"
    page.get_by_test_id("status").evaluate("""el => {
        window.statusSeen = [];
        new MutationObserver(() => window.statusSeen.push(el.textContent))
          .observe(el, {childList: true, characterData: true, subtree: true});
    }""")
    studio["server"].restart()  # same port, same workspace, same token
    _status(page, "connected to the studio again", timeout=60_000)
    assert any(lost in text for text in page.evaluate("window.statusSeen"))
    assert lost not in page.get_by_test_id("status").inner_text()
    assert page.get_by_test_id("status").evaluate("el => !el.classList.contains('error')")
    # While the server was away the page said so; the browser also logged the refused connections.
    assert [e for e in studio["errors"] if "ERR_CONNECTION_REFUSED" not in e and "Failed to load" not in e] == []
    studio["errors"].clear()


def test_a_long_step_disables_run_and_says_what_runs_in_every_tab(studio):
    page, gt = studio["page"], studio["gt"]
    other = studio["context"].new_page()
    other_errors = watch_errors(other)
    other.goto(studio["server"].base)  # the cookie: no token needed
    other.wait_for_function("window.studio && window.studio.server !== null")  # loaded (its status may be a preview)
    page.bring_to_front()  # a tab in the background gets no animation frames: clicks would wait for them
    _scribble_on_object(page, gt, 1)
    assert page.get_by_test_id("run").is_enabled()
    page.get_by_test_id("add-object").click()
    for tab in (page, other):
        _status(tab, "busy: adding object 3")
        assert tab.get_by_test_id("add-object").is_disabled() and tab.get_by_test_id("undo").is_disabled()
    assert page.get_by_test_id("run").is_disabled()
    # The step list, not the status line: the strokes still pending on object 1 are previewed as soon as the step
    # ends, and the preview's status may replace "object 3 added" between two polls.
    for tab in (page, other):
        tab.locator("[data-testid^=step-]", has_text="object 3 added").wait_for(timeout=60_000)
    assert re.search(r"object 3 added|preview of frame", page.get_by_test_id("status").inner_text())
    other.get_by_test_id("object-3").wait_for()
    assert page.get_by_test_id("run").is_enabled() and other.get_by_test_id("add-object").is_enabled()
    page.keyboard.press("Backspace")
    other.close()
    assert studio["errors"] == [] and other_errors == []
