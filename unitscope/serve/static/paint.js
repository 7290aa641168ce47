// unitscope paint page (GANPaint). Talks only to this server's JSON API:
//   GET /api/paint/info, GET /api/paint/sample?seed=S&layer=L, POST /api/paint {seed, layer, edits}.
// State: the edits so far (each a stroke: action, concept/units, mask on the layer's grid), the stroke
// being brushed, the last answer. Every request sends all edits; the server applies them in order to
// the cached sample and answers the image, its segmentation and the last stroke's concept shares.
"use strict";

const S = { info: null, layer: null, category: "", grid: [1, 1], edits: [], stroke: null, last: null, busy: false };
const VIEW = 384;  // canvas pixels a side

function pngImage(b64) {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  return img.decode().then(() => img);
}

function layerInfo() { return S.info.layers.find((l) => l.name === S.layer); }

// -- requests ------------------------------------------------------------------------------
function body(edits) {
  const b = { seed: Number($("seed").value) || 0, layer: S.layer, edits };
  if (S.category) b.category = S.category;
  return b;
}

async function refresh(edits) {
  S.busy = true;
  const t0 = performance.now();
  try {
    let result;
    if (edits.length) {
      const b = body(edits);
      window.lastPaint = b;  // what the page sent last (tests replay it against the API)
      result = await api("/api/paint", { method: "POST", headers: { "content-type": "application/json" },
                                          body: JSON.stringify(b) });
    } else {
      const q = new URLSearchParams({ seed: String(Number($("seed").value) || 0), layer: S.layer });
      if (S.category) q.set("category", S.category);
      result = await api(`/api/paint/sample?${q}`);
    }
    S.edits = edits;
    await render(result);
    status(`${result.layer}: ${Math.round(performance.now() - t0)} ms (server ${result.took_ms} ms)`);
    return true;
  } catch (e) {
    status(e.message, true);
    return false;
  } finally {
    S.busy = false;
  }
}

function strokeEdit(mask) {
  const edit = { action: $("action").value, mask };
  const concept = $("concept").value, units = $("units").value.split(/[\s,]+/).filter(Boolean).map(Number);
  if (concept) edit.concept = concept;
  if (units.length) edit.units = units;
  return edit;
}

// -- drawing -------------------------------------------------------------------------------
async function render(result) {
  S.last = result;
  S.grid = result.grid;
  S.image = await pngImage(result.image.png);
  S.segImage = await pngImage(result.segmentation.png);
  drawCanvas();
  const seg = $("seg").getContext("2d");
  seg.imageSmoothingEnabled = false;
  seg.drawImage(S.segImage, 0, 0, $("seg").width, $("seg").height);
  if (!$("category").options.length) {
    for (const c of result.segmentation.categories) $("category").append(new Option(c, c));
  }
  $("category").value = result.segmentation.category;
  $("legend").replaceChildren(...result.segmentation.legend.map((l) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="sw"></span><span class="n"></span><span class="v">${(100 * l.share).toFixed(1)}%</span>`;
    li.firstChild.style.background = l.color;
    li.children[1].textContent = l.label;
    return li;
  }));
  renderShare(result);
  await renderUnits(result);
  $("edit-count").textContent = S.edits.length ? `${S.edits.length} stroke${S.edits.length > 1 ? "s" : ""}` : "";
  $("grid").dataset.paints = String(Number($("grid").dataset.paints) + 1);
}

function renderShare(result) {
  const el = $("share"), s = result.share, e = result.edit;
  el.dataset.before = s ? String(s.before) : "";
  el.dataset.after = s ? String(s.after) : "";
  if (!e) { el.textContent = "Pick a concept (or units), then brush over the image."; return; }
  const what = `${e.action} ${e.concept || "units"} (units ${e.units.join(", ")}) in ${e.cells} cells`;
  if (!s) { el.textContent = `${what}.`; return; }
  el.innerHTML = `${what}: <b></b> of the brushed pixels before, <b></b> after.`;
  const bs = el.querySelectorAll("b");
  bs[0].textContent = `${(100 * s.before).toFixed(1)}% ${s.concept}`;
  bs[1].textContent = `${(100 * s.after).toFixed(1)}%`;
}

function drawCanvas() {
  const cv = $("canvas"), ctx = cv.getContext("2d"), [h, w] = S.grid;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(S.image, 0, 0, cv.width, cv.height);
  ctx.strokeStyle = "rgba(255,255,255,.18)";
  ctx.lineWidth = 1;
  for (let y = 1; y < h; y++) { ctx.beginPath(); ctx.moveTo(0, y * cv.height / h); ctx.lineTo(cv.width, y * cv.height / h); ctx.stroke(); }
  for (let x = 1; x < w; x++) { ctx.beginPath(); ctx.moveTo(x * cv.width / w, 0); ctx.lineTo(x * cv.width / w, cv.height); ctx.stroke(); }
  S.edits.forEach((e, i) => {  // the strokes so far, outlined (the newest brighter)
    ctx.strokeStyle = e.action === "add" ? `rgba(34,197,94,${i === S.edits.length - 1 ? .95 : .5})`
                                         : `rgba(239,68,68,${i === S.edits.length - 1 ? .95 : .5})`;
    ctx.lineWidth = 2;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        if (e.mask[y][x]) ctx.strokeRect(x * cv.width / w + 1, y * cv.height / h + 1, cv.width / w - 2, cv.height / h - 2);
  });
  if (S.stroke) {
    ctx.fillStyle = $("action").value === "add" ? "rgba(34,197,94,.45)" : "rgba(239,68,68,.45)";
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        if (S.stroke[y][x]) ctx.fillRect(x * cv.width / w, y * cv.height / h, cv.width / w, cv.height / h);
  }
}

async function renderUnits(result) {
  const atlas = result.atlas, [h, w] = atlas.tile, n = atlas.lo.length, img = await pngImage(atlas.png);
  const src = document.createElement("canvas");
  src.width = img.naturalWidth; src.height = img.naturalHeight;
  const sctx = src.getContext("2d", { willReadFrequently: true });
  sctx.drawImage(img, 0, 0);
  const px = sctx.getImageData(0, 0, src.width, src.height).data;
  const labels = layerInfo().labels || {}, grid = $("grid"), tiles = [];
  const top = Math.max(...atlas.hi, 1e-9);
  for (let k = 0; k < n; k++) {
    const tile = document.createElement("div");
    tile.className = "tile"; tile.dataset.unit = k; tile.title = `unit ${k}: click to add it to Units`;
    const cv = document.createElement("canvas");
    cv.width = w; cv.height = h;
    const ctx = cv.getContext("2d"), out = ctx.createImageData(w, h);
    const r0 = Math.floor(k / atlas.cols) * h, c0 = (k % atlas.cols) * w, lo = atlas.lo[k], s = (atlas.hi[k] - lo) / 255;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const v = lo + px[((r0 + y) * src.width + c0 + x) * 4] * s;
        const t = Math.max(0, Math.min(255, Math.round(v / top * 255)));  // one scale for the layer
        out.data.set([LUT[t * 3], LUT[t * 3 + 1], LUT[t * 3 + 2], 255], (y * w + x) * 4);
      }
    ctx.putImageData(out, 0, 0);
    cv.style.imageRendering = "pixelated";
    const lab = labels[k];
    tile.append(cv);
    tile.insertAdjacentHTML("beforeend", `<div class="cap"><span>#${k}</span><span class="v">${atlas.hi[k].toFixed(2)}</span></div><div class="lab"></div>`);
    tile.querySelector(".lab").textContent = lab ? (lab.concept || "(none)") : "";
    if (S.edits.some((e) => (e.units || []).includes(k)) || (result.edit && result.edit.units.includes(k))) tile.classList.add("sel");
    tile.addEventListener("click", () => {
      const units = $("units").value.split(/[\s,]+/).filter(Boolean);
      if (!units.includes(String(k))) units.push(String(k));
      $("units").value = units.join(", ");
    });
    tiles.push(tile);
  }
  grid.replaceChildren(...tiles);
  $("count").textContent = `(${n})`;
}

// -- the brush -----------------------------------------------------------------------------
function cellAt(ev) {
  const r = $("canvas").getBoundingClientRect(), [h, w] = S.grid;
  const x = Math.floor((ev.clientX - r.left) / r.width * w), y = Math.floor((ev.clientY - r.top) / r.height * h);
  return [Math.max(0, Math.min(h - 1, y)), Math.max(0, Math.min(w - 1, x))];
}

function brush(ev) {
  const [y, x] = cellAt(ev), b = Number($("brush").value), [h, w] = S.grid, lo = -Math.floor((b - 1) / 2);
  for (let dy = lo; dy < lo + b; dy++)
    for (let dx = lo; dx < lo + b; dx++) {
      const yy = y + dy, xx = x + dx;
      if (yy >= 0 && yy < h && xx >= 0 && xx < w) S.stroke[yy][xx] = 1;
    }
  drawCanvas();
}

function startStroke(ev) {
  if (!S.image || S.busy) return;
  ev.preventDefault();
  S.stroke = Array.from({ length: S.grid[0] }, () => new Array(S.grid[1]).fill(0));
  brush(ev);
}

async function endStroke() {
  if (!S.stroke) return;
  const mask = S.stroke;
  S.stroke = null;
  const edit = strokeEdit(mask);
  if (!edit.concept && !edit.units) {
    drawCanvas();
    status("pick a concept or type unit numbers first", true);
    return;
  }
  status("painting…");
  if (!(await refresh([...S.edits, edit]))) drawCanvas();
}

// -- set-up --------------------------------------------------------------------------------
function fillConcepts() {
  const li = layerInfo(), sel = $("concept"), keep = sel.value;
  sel.replaceChildren(new Option(S.info.run ? "(units by number)" : "(no run: units by number)", ""));
  for (const c of li.concepts) sel.append(new Option(`${c.concept} (${c.detectors} labelled)`, c.concept));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  $("layer-name").textContent = li.name;
}

function restart() {
  S.edits = [];
  S.stroke = null;
  return refresh([]);
}

async function init() {
  S.info = await api("/api/paint/info");
  const i = S.info;
  $("model-line").textContent = `${i.model} · ${i.image.width}x${i.image.height} images · segmenter ${i.segmenter}` +
    (i.run ? ` · run ${i.run}` : " · no run folder: pick units by number");
  for (const l of i.layers)
    $("layer").append(new Option(`${l.name} (${l.units} units, ${l.height}x${l.width})${l.dissected ? "" : " ·"}`, l.name));
  $("layer").value = S.layer = i.default;
  fillConcepts();
  $("layer").addEventListener("change", () => { S.layer = $("layer").value; fillConcepts(); restart(); });
  $("seed").addEventListener("change", restart);
  $("random").addEventListener("click", () => { $("seed").value = String(Math.floor(Math.random() * 100000)); restart(); });
  $("category").addEventListener("change", () => { S.category = $("category").value; refresh(S.edits); });
  $("undo").addEventListener("click", () => refresh(S.edits.slice(0, -1)));
  $("reset").addEventListener("click", restart);
  const cv = $("canvas");
  cv.addEventListener("mousedown", startStroke);
  cv.addEventListener("mousemove", (ev) => { if (S.stroke) brush(ev); });
  window.addEventListener("mouseup", endStroke);
  await restart();
  document.documentElement.dataset.ready = "";
}

init().catch((e) => status(e.message, true));
