// How a frame's masks are drawn over it: fill, outline or both, leaving out the objects whose eye is off.
// A mask image (a palette PNG: object k in its colour, 0 transparent) is read once into object ids by colour;
// the fill and outline layers for a set of hidden objects are then made once and cached on the mask item.

export const OVERLAY_MODES = ["both", "fill", "outline"];

function objectIds(item, objects) {
  // Each pixel's object id, from its colour (the palette holds the objects' colours); 0 where transparent.
  const image = item.image;
  const w = image.naturalWidth, h = image.naturalHeight;
  const off = document.createElement("canvas");
  off.width = w;
  off.height = h;
  const c = off.getContext("2d", { willReadFrequently: true });
  c.drawImage(image, 0, 0);
  const rgba = c.getImageData(0, 0, w, h).data;
  const byColour = new Map(objects.map((o) => [parseInt(o.colour.slice(1), 16), o.id]));
  const ids = new Uint8Array(w * h);
  for (let i = 0, p = 0; p < ids.length; p++, i += 4) {
    if (rgba[i + 3]) ids[p] = byColour.get((rgba[i] << 16) | (rgba[i + 1] << 8) | rgba[i + 2]) ?? 255;
  }
  return { ids, rgba, w, h };
}

function layers(item, objects, hidden) {
  const key = [...hidden].sort((a, b) => a - b).join(",");
  item.layers ??= new Map();
  let cached = item.layers.get(key);
  if (cached) return cached;
  item.pixels ??= objectIds(item, objects);
  const { ids, rgba, w, h } = item.pixels;
  const make = () => {
    const off = document.createElement("canvas");
    off.width = w;
    off.height = h;
    return off;
  };
  const fillCanvas = make(), edgeCanvas = make();
  const fc = fillCanvas.getContext("2d"), ec = edgeCanvas.getContext("2d");
  const fill = fc.createImageData(w, h), edge = ec.createImageData(w, h);
  const f = fill.data, e = edge.data;
  const shown = (p) => ids[p] !== 0 && !hidden.has(ids[p]);
  // An object's border: its pixels with a 4-neighbour of another label (a hidden object counts as none).
  const label = (p) => (shown(p) ? ids[p] : 0);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const k = label(p);
      if (!k) continue;
      const i = 4 * p;
      f[i] = rgba[i]; f[i + 1] = rgba[i + 1]; f[i + 2] = rgba[i + 2]; f[i + 3] = 255;
      if ((x > 0 && label(p - 1) !== k) || (x < w - 1 && label(p + 1) !== k) ||
          (y > 0 && label(p - w) !== k) || (y < h - 1 && label(p + w) !== k)) {
        e[i] = rgba[i]; e[i + 1] = rgba[i + 1]; e[i + 2] = rgba[i + 2]; e[i + 3] = 255;
      }
    }
  }
  fc.putImageData(fill, 0, 0);
  ec.putImageData(edge, 0, 0);
  cached = { fill: fillCanvas, edges: edgeCanvas };
  if (item.layers.size > 8) item.layers.clear();
  item.layers.set(key, cached);
  return cached;
}

/** Draw mask `item` ({image}) on `ctx` at w x h: `view` = {mode, opacity, objects, hidden: Set of ids}. */
export function drawOverlay(ctx, item, view, w, h) {
  const { fill, edges } = layers(item, view.objects, view.hidden);
  ctx.save();
  if (view.mode !== "outline") {
    ctx.globalAlpha = view.opacity;
    ctx.drawImage(fill, 0, 0, w, h);
  }
  if (view.mode !== "fill") {
    ctx.globalAlpha = view.mode === "outline" ? 1 : Math.min(1, 0.35 + view.opacity);
    ctx.drawImage(edges, 0, 0, w, h);
  }
  ctx.restore();
}
