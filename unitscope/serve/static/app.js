// unitscope probe page. Talks only to this server's JSON API:
//   GET /api/layers, GET /api/labels?layer=L, POST /api/probe?layer=L (multipart "image"),
//   GET /api/unit?layer=L&unit=K, GET /api/samples/NAME.
// A basis of the run (the Basis picker) is probed as its pseudo-layer "LAYER#NAME": its
// directions take the units' place in the grid, the detail and the semantic dictionary.
// State: the last image (a Blob), the last probe (maps decoded from its PNG atlas), the
// selected unit. The webcam loop waits for each answer before sending the next frame.
"use strict";

const S = { layers: {}, bases: [], labels: {}, blob: null, bitmap: null, probe: null, unit: null,
            cam: null, busy: false, pending: false };
const CAM_INTERVAL_MS = 300;  // a few frames per second at most

// -- colours (LUT, $, api and status are in common.js) ------------------------------------
function paint(ctx, values, w, h, lo, hi, alpha = 255) {
  const img = ctx.createImageData(w, h), span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < w * h; i++) {
    const t = Math.max(0, Math.min(255, Math.round((values[i] - lo) / span * 255)));
    img.data.set([LUT[t * 3], LUT[t * 3 + 1], LUT[t * 3 + 2], alpha], i * 4);
  }
  ctx.putImageData(img, 0, 0);
}

// Maps from the atlas: values[k] is unit k's map, a Float32Array of h*w.
async function decodeAtlas(atlas, n) {
  const img = new Image();
  img.src = "data:image/png;base64," + atlas.png;
  await img.decode();
  const cv = document.createElement("canvas");
  cv.width = img.naturalWidth; cv.height = img.naturalHeight;
  const ctx = cv.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, cv.width, cv.height).data;
  const [h, w] = atlas.tile, values = [];
  for (let k = 0; k < n; k++) {
    const r0 = Math.floor(k / atlas.cols) * h, c0 = (k % atlas.cols) * w, v = new Float32Array(h * w);
    const lo = atlas.lo[k], s = (atlas.hi[k] - lo) / 255;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) v[y * w + x] = lo + px[((r0 + y) * cv.width + c0 + x) * 4] * s;
    values.push(v);
  }
  return { values, h, w };
}

// -- probing -------------------------------------------------------------------------------
// Resolves true when the grid shows this image's answer, false on an error.
async function probe(blob) {
  S.blob = blob;
  if (S.busy) { S.pending = true; return true; }  // the newest image is sent when this answer is in
  S.busy = true;
  let ok = false;
  try {
    const layer = target(), form = new FormData();
    form.append("image", blob, "image");
    status("probing…");
    const t0 = performance.now();
    const result = await api(`/api/probe?layer=${encodeURIComponent(layer)}`, { method: "POST", body: form });
    result.maps = await decodeAtlas(result.atlas, result.units.length);
    const bitmap = await createImageBitmap(blob);
    if (S.bitmap) S.bitmap.close();  // webcam frames come a few a second: free the last one
    S.bitmap = bitmap;
    S.probe = result;
    drawPhoto(); renderTop(); renderGrid();
    if (S.unit !== null && S.unit < result.units.length) drawUnitMap(S.unit);
    $("grid").dataset.probes = String(Number($("grid").dataset.probes) + 1);
    status(`${result.layer}: ${result.units.length} ${noun(result.layer)}, ${Math.round(performance.now() - t0)} ms`);
    ok = true;
  } catch (e) {
    status(e.message, true);
  } finally {
    S.busy = false;
  }
  if (S.pending) { S.pending = false; return probe(S.blob); }
  return ok;
}

function drawPhoto() {
  const cv = $("photo"), b = S.bitmap, scale = Math.min(448 / b.width, 448 / b.height);
  cv.width = Math.round(b.width * scale); cv.height = Math.round(b.height * scale);
  cv.getContext("2d").drawImage(b, 0, 0, cv.width, cv.height);
  $("drop-hint").hidden = true;
}

function renderTop() {
  $("top").replaceChildren(...S.probe.top.map(([name, p]) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="name"></span><span class="p">${(100 * p).toFixed(1)}%</span>`;
    li.firstChild.textContent = name;
    return li;
  }));
}

function labelText(k) {
  const lab = (S.labels[S.probe.layer] || {})[k];
  if (!lab) return "";
  return lab.concept === null ? "(none)" : lab.concept;
}

function isDetector(k) {
  const lab = (S.labels[S.probe.layer] || {})[k];
  return Boolean(lab && lab.is_detector);
}

// -- the grid of units -----------------------------------------------------------------------
function renderGrid() {
  const { units, maps, layer } = S.probe, grid = $("grid"), perUnit = $("unit-scale").checked;
  const layerMax = Math.max(...units.map((u) => u.max));
  if (grid.dataset.layer !== layer || grid.children.length !== units.length) {
    grid.replaceChildren(...units.map((u) => makeTile(u.unit, maps)));
    grid.dataset.layer = layer;
  }
  const tiles = Array.from(grid.children);
  for (const tile of tiles) {
    const k = Number(tile.dataset.unit), u = units[k], cv = tile.firstChild;
    const lo = perUnit ? S.probe.atlas.lo[k] : 0, hi = perUnit ? S.probe.atlas.hi[k] : layerMax;
    paint(cv.getContext("2d"), maps.values[k], maps.w, maps.h, lo, hi);
    tile.dataset.max = u.max; tile.dataset.mean = u.mean;
    tile.querySelector(".v").textContent = u.max.toFixed(2);
    tile.querySelector(".lab").textContent = labelText(k);
    tile.querySelector(".lab").classList.toggle("nodet", !isDetector(k));
    tile.classList.toggle("sel", k === S.unit);
  }
  const key = $("sort").value;
  tiles.sort((a, b) => key === "unit" ? a.dataset.unit - b.dataset.unit : b.dataset[key] - a.dataset[key]);
  grid.append(...tiles);  // moves the existing tiles into the new order
  const labels = Object.values(S.labels[layer] || {}), detectors = labels.filter((l) => l.is_detector).length;
  $("count").textContent = `${units.length} ${noun(layer)} of ${layer}` +
    (labels.length ? `; ${detectors} detectors (labels of the others in grey)` : "") +
    (S.probe.values && S.probe.values.startsWith("pre") ? `; maps are the ${S.probe.values}` : "");
}

function makeTile(k, maps) {
  const tile = document.createElement("div");
  tile.className = "tile"; tile.dataset.unit = k; tile.title = `${noun(S.probe.layer, 1)} ${k}`;
  const cv = document.createElement("canvas");
  cv.width = maps.w; cv.height = maps.h;
  tile.append(cv);
  tile.insertAdjacentHTML("beforeend", `<div class="cap"><span>#${k}</span><span class="v"></span></div><div class="lab"></div>`);
  tile.addEventListener("click", () => selectUnit(k));
  return tile;
}

// -- one unit's detail ---------------------------------------------------------------------
async function selectUnit(k) {
  S.unit = k;
  document.querySelectorAll(".tile.sel").forEach((t) => t.classList.remove("sel"));
  const tile = document.querySelector(`.tile[data-unit="${k}"]`);
  if (tile) tile.classList.add("sel");
  const layer = S.probe ? S.probe.layer : target();
  let info;
  try {
    info = await api(`/api/unit?layer=${encodeURIComponent(layer)}&unit=${k}`);
  } catch (e) { status(e.message, true); return; }
  if (S.unit !== k) return;  // another click came first
  $("detail").hidden = false;
  $("d-title").textContent = `${layer} · ${noun(layer, 1)} ${k}`;
  const d = info.dissection, lab = $("d-label");
  if (!d) lab.innerHTML = '<span class="muted">No dissection label (the run folder has none for this unit).</span>';
  else if (d.concept === null) lab.innerHTML = '<span class="muted">Dissected: no activation above threshold.</span>';
  else {
    lab.innerHTML = `<b class="concept"></b> <span class="cat muted"></span> <span class="iou">IoU ${d.iou.toFixed(3)}${d.is_detector ? " · detector" : ""}</span>`;
    lab.querySelector(".concept").textContent = d.concept;
    lab.querySelector(".cat").textContent = d.category ? `(${d.category})` : "";
  }
  $("d-strip").replaceChildren(...(info.strip ? [caption("Top images"), img(info.strip, "exemplar strip")] : []));
  $("d-vis").replaceChildren(...info.visualizations.flatMap((v) => [caption(`Visualisation${v.objective ? ": " + v.objective : ""}`), img(v.url, "visualisation")]));
  const sel = info.selectivity ? [["selectivity", `${info.selectivity.selectivity.toFixed(3)} (top class ${info.selectivity.top_class})`]] : [];
  table($("d-imp"), ["class", "accuracy drop"], [...info.importance.slice(0, 8).map((r) => [r.class, r.accuracy_drop.toFixed(4)]), ...sel]);
  table($("d-cats"), ["category", "concept", "IoU"], info.categories.map((r) => [r.category, r.concept ?? "–", r.iou.toFixed(3)]));
  if (S.probe && S.probe.layer === layer) drawUnitMap(k);
  else $("d-map").width = 0;  // no image probed at this layer yet: no map to draw
}

// -- text search over the run's unit descriptions -------------------------------------------
async function search(query) {
  const box = $("hits"), list = $("hit-list");
  if (!query.trim()) { box.hidden = true; return; }
  let r;
  try { r = await api(`/api/search?q=${encodeURIComponent(query)}`); } catch (e) { status(e.message, true); return; }
  box.hidden = false;
  const counts = Object.entries(r.per_layer).map(([l, n]) => `${l}: ${n}`).join(", ");
  $("hit-count").textContent = r.hits.length ? `${r.hits.length} units (${counts})` : "no unit matches";
  list.replaceChildren(...r.hits.map((h) => {
    const li = document.createElement("li"), a = document.createElement("a");
    a.href = "#"; a.dataset.layer = h.layer; a.dataset.unit = h.unit;
    a.textContent = `${h.layer} #${h.unit}: ${h.description}` + (h.f1 === null ? "" : ` (F1 ${h.f1.toFixed(2)})`);
    a.addEventListener("click", (e) => { e.preventDefault(); openHit(h.layer, h.unit); });
    li.append(a);
    return li;
  }));
}

async function openHit(layer, unit) {
  if (target() !== layer) {
    const [base, basis] = layer.split("#");
    $("layer").value = base;
    fillBases(basis || "");
    await loadLabels(target());
    if (S.blob) await probe(S.blob);
  }
  await selectUnit(unit);
}

function caption(text) { const p = document.createElement("div"); p.className = "muted"; p.textContent = text; return p; }
function img(src, alt) { const i = document.createElement("img"); i.src = src; i.alt = alt; return i; }
function table(el, head, rows) {
  el.replaceChildren();
  if (!rows.length) return;
  const tr = (cells, tag) => { const r = document.createElement("tr"); for (const c of cells) { const td = document.createElement(tag); td.textContent = c; r.append(td); } return r; };
  el.append(tr(head, "th"), ...rows.map((r) => tr(r, "td")));
}

// The unit's map, upsampled over the whole image at the displayed size.
function drawUnitMap(k) {
  const cv = $("d-map"), photo = $("photo"), { values, w, h } = S.probe.maps;
  cv.width = photo.width; cv.height = photo.height;
  const ctx = cv.getContext("2d");
  ctx.drawImage(S.bitmap, 0, 0, cv.width, cv.height);
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  paint(small.getContext("2d"), values[k], w, h, Math.max(0, S.probe.atlas.lo[k]), S.probe.atlas.hi[k], 255);
  ctx.globalAlpha = 0.6; ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, cv.width, cv.height);
  ctx.globalAlpha = 1;
  cv.dataset.unit = k;
}

// -- the semantic dictionary under the pointer ----------------------------------------------
function showDictionary(ev) {
  if (!S.probe) return;
  const cv = $("photo"), r = cv.getBoundingClientRect(), { values, w, h } = S.probe.maps;
  const x = Math.min(w - 1, Math.floor((ev.clientX - r.left) / r.width * w));
  const y = Math.min(h - 1, Math.floor((ev.clientY - r.top) / r.height * h));
  const top = values.map((v, k) => [v[y * w + x], k]).sort((a, b) => b[0] - a[0]).slice(0, 6);
  const box = $("dict");
  const head = document.createElement("b");
  head.textContent = `${S.probe.layer}, row ${y}, column ${x}`;
  box.replaceChildren(head);
  for (const [v, k] of top) {
    const row = document.createElement("div");
    row.className = "row"; row.dataset.unit = k;
    row.innerHTML = "<span></span><span></span><span></span>";
    row.children[0].textContent = `#${k}`;
    row.children[1].textContent = labelText(k) || "–";
    row.children[1].classList.toggle("nodet", !isDetector(k));
    row.children[2].textContent = v.toFixed(2);
    box.append(row);
  }
  box.style.left = `${ev.clientX - r.left + 14}px`;
  box.style.top = `${ev.clientY - r.top + 14}px`;
  box.hidden = false;
}

// -- the webcam ----------------------------------------------------------------------------
async function toggleWebcam() {
  if (S.cam) { stopWebcam(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 } });
  } catch (e) { status(`webcam: ${e.message}`, true); return; }
  const video = $("video");
  video.srcObject = stream;
  await video.play();
  S.cam = stream;
  $("webcam").textContent = "Stop webcam"; $("webcam").classList.add("on");
  const grab = document.createElement("canvas");
  let failures = 0;
  $("webcam").dataset.loop = "running";
  while (S.cam === stream) {  // ends when the webcam is stopped, or after 5 failed probes in a row
    const t0 = performance.now();
    grab.width = video.videoWidth || 320; grab.height = video.videoHeight || 240;
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    const blob = await new Promise((ok) => grab.toBlob(ok, "image/jpeg", 0.85));
    if (S.cam !== stream) break;
    failures = (await probe(blob)) ? 0 : failures + 1;
    if (failures >= 5) { stopWebcam(); status("webcam stopped: the server did not answer 5 frames in a row", true); }
    await new Promise((ok) => setTimeout(ok, Math.max(0, CAM_INTERVAL_MS - (performance.now() - t0))));
  }
  if (!S.cam) $("webcam").dataset.loop = "ended";  // no frame is sent after this (tests wait for it)
}

function stopWebcam() {
  if (!S.cam) return;
  S.cam.getTracks().forEach((t) => t.stop());
  S.cam = null;
  $("video").srcObject = null;
  $("webcam").textContent = "Start webcam"; $("webcam").classList.remove("on");
}

// -- the basis picker: the layer's units or one of the run's bases of it -----------------------
function target() { return $("basis").value ? `${$("layer").value}#${$("basis").value}` : $("layer").value; }
function noun(layer, one = 0) { return (layer || "").includes("#") ? (one ? "direction" : "directions") : (one ? "unit" : "units"); }

function fillBases(pick = "") {
  const layer = $("layer").value, mine = S.bases.filter((b) => b.layer === layer);
  const opt = (b) => new Option(`${b.basis} (${b.kind}, ${b.directions} directions)`, b.basis);
  $("basis").replaceChildren(new Option("units", ""), ...mine.map(opt));
  $("basis").value = mine.some((b) => b.basis === pick) ? pick : "";
  $("basis-box").hidden = mine.length === 0;
}

// -- wiring --------------------------------------------------------------------------------
async function loadLabels(layer) {
  if (!(layer in S.labels)) S.labels[layer] = (await api(`/api/labels?layer=${encodeURIComponent(layer)}`)).labels;
}

async function init() {
  const info = await api("/api/layers");
  $("model-line").textContent = `${info.model}` + (info.run ? ` · run ${info.run}` : " · no run folder");
  const sel = $("layer"), dissected = info.layers.filter((l) => l.dissected).map((l) => l.name);
  const first = [...new Set([info.default, ...dissected])];
  const option = (l) => new Option(`${l.name} (${l.units}×${l.height}×${l.width})`, l.name);
  for (const l of info.layers) S.layers[l.name] = l;
  S.bases = info.bases || [];
  const group = document.createElement("optgroup"); group.label = "suggested";
  group.append(...first.map((n) => option(S.layers[n])));
  const all = document.createElement("optgroup"); all.label = "all layers";
  all.append(...info.layers.filter((l) => !first.includes(l.name)).map(option));
  sel.append(group, all);
  sel.value = info.default;
  fillBases();
  for (const name of info.samples) $("sample").append(new Option(name, name));
  await loadLabels(info.default);

  $("file").addEventListener("change", (e) => { if (e.target.files[0]) { stopWebcam(); probe(e.target.files[0]); } });
  window.addEventListener("pagehide", stopWebcam);
  $("sample").addEventListener("change", async (e) => {
    if (!e.target.value) return;
    stopWebcam();
    const r = await fetch(`/api/samples/${encodeURIComponent(e.target.value)}`);
    if (r.ok) probe(await r.blob()); else status((await r.json()).error, true);
  });
  const retarget = async () => {
    S.unit = null; $("detail").hidden = true;
    await loadLabels(target());
    if (S.blob) probe(S.blob);
  };
  $("layer").addEventListener("change", () => { fillBases(); return retarget(); });
  $("basis").addEventListener("change", retarget);
  $("sort").addEventListener("change", () => S.probe && renderGrid());
  $("unit-scale").addEventListener("change", () => S.probe && renderGrid());
  $("webcam").addEventListener("click", toggleWebcam);
  $("search").addEventListener("keydown", (e) => { if (e.key === "Enter") search(e.target.value); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) { stopWebcam(); probe(f); }
  });
  $("photo").addEventListener("mousemove", showDictionary);
  $("photo").addEventListener("mouseleave", () => { $("dict").hidden = true; });
  document.documentElement.dataset.ready = "";
}

init().catch((e) => status(`could not start: ${e.message}`, true));
