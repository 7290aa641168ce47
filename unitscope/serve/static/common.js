// Shared by the probe page (app.js) and the paint page (paint.js), loaded before either:
// the element lookup, the JSON API call with its error message, the status line, the tile colours.
"use strict";

const $ = (id) => document.getElementById(id);

const LUT = (() => {  // dark blue -> purple -> orange -> pale yellow, 256 RGB entries
  const stops = [[0, 0, 4], [60, 15, 110], [180, 55, 85], [250, 140, 10], [252, 255, 164]];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255 * (stops.length - 1), j = Math.min(Math.floor(t), stops.length - 2), f = t - j;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = stops[j][c] * (1 - f) + stops[j + 1][c] * f;
  }
  return lut;
})();

async function api(url, options) {
  const r = await fetch(url, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}
