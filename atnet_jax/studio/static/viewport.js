// Zoom and pan of the frame canvas: a CSS transform (translate, then scale about the top-left corner), so the
// canvas' bounding rectangle, and with it every pointer -> image mapping, follows the view without extra code.
// The wheel zooms about the cursor; a drag with Space held (or the middle button) pans; reset() fits again.

const MIN_ZOOM = 1;
const MAX_ZOOM = 16;

export class Viewport {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.onChange = onChange;
    this.zoom = 1;
    this.x = 0;  // the translation, in CSS pixels
    this.y = 0;
    this.spaceHeld = false;
    this.panned = false;  // whether the current Space press has panned (then Space does not also play)
    this.pan = null;      // {id, x, y} of the pointer dragging the view
    canvas.style.transformOrigin = "0 0";
    canvas.addEventListener("wheel", (event) => this.wheel(event), { passive: false });
  }

  apply() {
    this.canvas.style.transform = this.zoom === 1 && !this.x && !this.y ? "" :
      `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
    this.canvas.classList.toggle("zoomed", this.zoom > 1);
    this.onChange?.();
  }

  /** Zoom by `factor` keeping the screen point (clientX, clientY) over the same image point. */
  zoomAt(factor, clientX, clientY) {
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    if (zoom === this.zoom) return;
    const rect = this.canvas.getBoundingClientRect();
    const k = 1 - zoom / this.zoom;
    this.x += (clientX - rect.left) * k;
    this.y += (clientY - rect.top) * k;
    this.zoom = zoom;
    if (zoom === 1) { this.x = 0; this.y = 0; }
    this.apply();
  }

  wheel(event) {
    event.preventDefault();
    const steps = event.deltaMode === 1 ? event.deltaY / 3 : event.deltaY / 100;  // lines or pixels
    this.zoomAt(Math.pow(1.25, -steps), event.clientX, event.clientY);
  }

  reset() {
    this.zoom = 1;
    this.x = 0;
    this.y = 0;
    this.apply();
  }

  /** Whether a pointerdown starts a pan (Space held, or the middle button) rather than a stroke. */
  startPan(event) {
    if (!(this.spaceHeld || event.button === 1)) return false;
    this.pan = { id: event.pointerId, x: event.clientX, y: event.clientY };
    this.canvas.setPointerCapture(event.pointerId);
    this.canvas.classList.add("panning");
    return true;
  }

  /** Follow the pointer while panning; true when the event was the pan's. */
  movePan(event) {
    if (!this.pan || event.pointerId !== this.pan.id) return false;
    this.x += event.clientX - this.pan.x;
    this.y += event.clientY - this.pan.y;
    this.pan.x = event.clientX;
    this.pan.y = event.clientY;
    this.panned = true;
    this.apply();
    return true;
  }

  endPan(event) {
    if (!this.pan || event.pointerId !== this.pan.id) return false;
    this.pan = null;
    this.canvas.classList.remove("panning");
    return true;
  }
}
