// The dissection part of the unitscope report: layer headline, detectors per concept, IoU
// histogram, rotation check; on each card the concept, IoU, exemplar strip (click: lightbox; the
// "ground-truth masks" toggle shows the concept's mask) and the best concept of other categories;
// on the unit page the top-10 concept IoUs, an activation histogram, full-size exemplars with the
// mask toggle, and the unit's place in its layer (rotations, rank).
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h, s = U.s, fmt = U.fmt, setFilter = function (t) { U.setFilter(t); };
  const R = window.UNITSCOPE_REPORT || {};
  const PALETTE = {object: "#4e79a7", scene: "#59a14f", part: "#f28e2b", material: "#b07aa1",
                   texture: "#e15759", color: "#d4a017"};
  const EXTRA = ["#76b7b2", "#ff9da7", "#9c755f", "#8cd17d", "#bab0ac", "#499894"];
  const colours = {};
  (((R.parts || {}).dissection || {}).categories || []).forEach(function (c, i) { colours[c] = PALETTE[c] || EXTRA[i % EXTRA.length]; });
  const colour = function (c) { return colours[c] || "#98a2b3"; };
  const NONE = "no activation above threshold";

  // ---- charts -------------------------------------------------------------------------------
  function barChart(layer) {
    const bw = 15, gap = 3, ggap = 14, top = 16, plotH = 120, left = 26;
    const longest = Math.max(4, ...layer.concepts.map(function (c) { return String(c.concept).length; }));
    const labH = Math.min(150, 16 + longest * 5.0);
    const most = Math.max(1, ...layer.concepts.map(function (c) { return c.detectors; }));
    const tick = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].find(function (t) { return most / t <= 5; }) || Math.ceil(most / 5);
    const max = Math.ceil(most / tick) * tick;
    let x = left, prev = null;
    const groups = [];
    layer.concepts.forEach(function (c) {
      if (c.category !== prev) { if (prev !== null) x += ggap; groups.push({cat: c.category, x0: x, x1: x}); prev = c.category; }
      c._x = x; x += bw + gap; groups[groups.length - 1].x1 = x - gap;
    });
    const W = Math.max(x + 8, 240), H = top + plotH + labH + 20;
    const svg = s("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": "detectors per concept"});
    const y = function (v) { return top + plotH - plotH * v / max; };
    for (let v = 0; v <= max; v += tick) {
      svg.append(s("line", {x1: left - 3, x2: W - 4, y1: y(v), y2: y(v), stroke: v ? "#eef0f3" : "#9ca3af"}));
      svg.append(s("text", {x: left - 6, y: y(v) + 4, "text-anchor": "end"}, String(v)));
    }
    layer.concepts.forEach(function (c) {
      const g = s("g", {class: "bar"});
      g.append(s("title", {}, c.concept + " (" + c.category + "): " + c.detectors + " detector" + (c.detectors === 1 ? "" : "s")));
      g.append(s("rect", {x: c._x, y: y(c.detectors), width: bw, height: plotH * c.detectors / max, fill: colour(c.category), rx: 2}));
      g.append(s("text", {x: c._x + bw / 2, y: y(c.detectors) - 3, "text-anchor": "middle", "font-size": 10}, String(c.detectors)));
      g.append(s("text", {transform: "translate(" + (c._x + bw / 2 + 3) + "," + (top + plotH + 6) + ") rotate(-60)",
                          "text-anchor": "end"}, c.concept));
      g.style.cursor = "pointer";
      g.addEventListener("click", function () { setFilter(c.concept + " " + layer.layer); });
      svg.append(g);
    });
    groups.forEach(function (gr) {
      const yy = top + plotH + labH + 2;
      svg.append(s("line", {x1: gr.x0, x2: gr.x1, y1: yy, y2: yy, stroke: colour(gr.cat), "stroke-width": 3}));
      svg.append(s("text", {x: (gr.x0 + gr.x1) / 2, y: yy + 14, "text-anchor": "middle", "font-weight": 600, fill: colour(gr.cat)}, gr.cat));
    });
    const fig = h("figure", {class: "bars"}, h("figcaption", {}, "Detectors per concept ",
                  h("span", {text: "grouped by category; click a bar to filter"})));
    if (!layer.concepts.length) fig.append(h("p", {class: "note", text: "No unit passes the IoU threshold."}));
    else fig.append(h("div", {class: "scroll"}, svg));
    return fig;
  }

  function histogram(layer) {
    const e = layer.histogram.edges, n = layer.histogram.counts, th = layer.iou_threshold;
    const W = 350, H = 190, left = 34, right = 20, top = 14, plotH = 130;
    const lo = e[0], hi = e[e.length - 1], max = Math.max(1, ...n);
    const X = function (v) { return left + (W - left - right) * (v - lo) / (hi - lo); };
    const Y = function (v) { return top + plotH - plotH * v / max; };
    const svg = s("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "IoU histogram"});
    [0, max].forEach(function (v) {
      svg.append(s("line", {x1: left, x2: W - right, y1: Y(v), y2: Y(v), stroke: v ? "#eef0f3" : "#9ca3af"}));
      svg.append(s("text", {x: left - 5, y: Y(v) + 4, "text-anchor": "end"}, String(v)));
    });
    n.forEach(function (c, i) {
      const above = th !== null && th !== undefined && e[i] >= th - 1e-12;
      const g = s("g", {class: "bar"});
      g.append(s("title", {}, "IoU " + fmt(e[i]) + "–" + fmt(e[i + 1]) + ": " + c + " unit" + (c === 1 ? "" : "s")));
      g.append(s("rect", {x: X(e[i]) + 0.5, y: Y(c), width: Math.max(1, X(e[i + 1]) - X(e[i]) - 1), height: plotH * c / max,
                          fill: above ? "#0f766e" : "#98a2b3"}));
      svg.append(g);
    });
    const step = Math.max(1, Math.ceil((e.length - 1) / 5));
    for (let i = 0; i < e.length; i += step) {
      svg.append(s("text", {x: X(e[i]), y: top + plotH + 15, "text-anchor": "middle"}, String(+e[i].toFixed(4))));
    }
    if (th !== null && th !== undefined && th <= hi) {
      svg.append(s("line", {x1: X(th), x2: X(th), y1: top - 4, y2: top + plotH, stroke: "#f59e0b", "stroke-width": 2, "stroke-dasharray": "4 3"}));
      svg.append(s("text", {x: X(th) + 4, y: top + 6, fill: "#b45309"}, "detector: IoU > " + th));
    }
    svg.append(s("text", {x: (left + W - right) / 2, y: H - 6, "text-anchor": "middle", fill: "#667085"}, "IoU of the best concept"));
    return h("figure", {}, h("figcaption", {}, "IoU distribution ", h("span", {text: n.reduce(function (a, b) { return a + b; }, 0) + " units"})), svg);
  }

  function rotationTable(layer) {
    if (!layer.rotations.length) return null;
    const t = h("table", {class: "rot"}, h("tr", {}, h("th", {text: "basis"}), h("th", {text: "detectors"}), h("th", {text: "concepts"})));
    let sumD = 0, sumC = 0, k = 0;
    layer.rotations.forEach(function (r) {
      if (r.rotation !== 0) { sumD += r.detectors; sumC += r.unique_concepts; k++; }
      t.append(h("tr", {class: r.rotation === 0 ? "axis" : null},
        h("td", {text: r.rotation === 0 ? "axis-aligned units" : "random rotation " + r.rotation}),
        h("td", {text: String(r.detectors)}), h("td", {text: String(r.unique_concepts)})));
    });
    if (k > 1) t.append(h("tr", {}, h("td", {text: "mean of rotations"}), h("td", {text: (sumD / k).toFixed(1)}), h("td", {text: (sumC / k).toFixed(1)})));
    return h("figure", {}, h("figcaption", {}, "Axis-aligned vs rotated ", h("span", {text: "(grandmother-neuron check)"})), t,
             h("p", {class: "note", text: "If the units' own basis has more detectors than random rotations of it, the network aligns concepts with single units."}),
             layer.privileged === false ? h("p", {class: "note basis-warning", text: "This layer's output does not follow an elementwise nonlinearity (e.g. a linear bottleneck): its units are not a privileged basis, so no drop under rotation is expected."}) : null);
  }

  function section(el, d, layer) {
    const meta = [d.units + " units"];
    if (d.height) meta.push(d.height + "×" + d.width + " activation maps");
    if (d.images) meta.push(d.images + " images");
    if (d.quantile !== null) meta.push("quantile " + d.quantile);
    if (d.iou_threshold !== null) meta.push("detector: IoU > " + d.iou_threshold);
    el.append(h("div", {class: "meta", text: meta.join(" · ")}));
    if (d.activation_values) {
      el.append(h("div", {class: "meta values", text: "values thresholded and ranked: " + d.activation_values}));
    }
    el.append(h("p", {class: "headline"}, h("b", {text: String(d.detectors)}), " of ", h("b", {text: String(d.units)}),
      " units are detectors, covering ", h("b", {text: String(d.unique_concepts)}), " concept" + (d.unique_concepts === 1 ? "" : "s"),
      d.detectors_significant !== null && d.detectors_significant !== undefined
        ? h("span", {class: "significant", text: " · " + d.detectors_significant + " significant (p < 0.01, Benjamini–Hochberg)"}) : null));
    if (d.images_needed !== null && d.images_needed !== undefined && d.images &&
        (d.images_needed < 0 || d.images_needed > d.images)) {
      el.append(h("p", {class: "note small-data-warning", text: d.images_needed < 0
        ? "Warning: units with no concept reach IoU > " + d.iou_threshold + " by chance at quantile " + d.quantile +
          " with any number of images: lower the quantile or raise the IoU cut-off."
        : "Warning: " + d.images + " images are too few for IoU > " + d.iou_threshold + " at quantile " + d.quantile +
          ": units with no concept reach it by chance; about " + d.images_needed + " images are needed. " +
          "Trust the significant count more than the raw one."}));
    }
    const sat = d.saturated_units || 0, tied = d.tied_units || 0;
    if (sat || tied) {
      const found = [];
      if (sat) found.push(sat + " of " + d.units + " units have their threshold at their largest value (empty masks: no concept)");
      if (tied) found.push(tied + " of " + d.units + " units' exemplars all tie (the images shown are arbitrary)");
      el.append(h("p", {class: "note saturation-warning", text: "Warning: " + found.join(" and ") + ", reading " +
        (d.activation_values || "the layer output") + ". A saturated activation (e.g. ReLU6's cap) ties its output; " +
        "dissect the values before it (unitscope dissect --values pre, or the layer that feeds a functional clamp)."}));
    }
    const chips = h("div", {class: "chips"});
    d.categories.forEach(function (c) {
      const chip = h("span", {class: "chip", title: "filter " + c.category + " units of " + layer.layer},
        h("span", {class: "dot", style: "--c:" + colour(c.category)}), c.category + " ",
        h("b", {text: String(c.detectors)}), " · " + c.unique_concepts + " concept" + (c.unique_concepts === 1 ? "" : "s"));
      chip.addEventListener("click", function () { setFilter(c.category + " " + layer.layer); });
      chips.append(chip);
    });
    el.append(chips);
    el.append(h("div", {class: "charts"}, barChart(Object.assign({layer: layer.layer}, d)), histogram(d), rotationTable(d)));
  }

  function card(el, u, c) {
    const th = ((c.layer.parts || {}).dissection || {}).iou_threshold;
    c.el.classList.add(u.is_detector ? "det" : "nodet");
    c.el.style.setProperty("--c", colour(u.category));
    c.head.append(
      u.concept === null ? h("span", {class: "label none", text: NONE}) : h("span", {class: "label", text: u.concept}),
      h("span", {class: "cat", text: u.category || ""}),
      h("span", {class: "iou", text: "IoU " + fmt(u.iou)}),
      h("span", {class: "badge" + (u.is_detector ? "" : " no"), text: u.is_detector ? "detector" : "below threshold",
                 title: th === null || th === undefined ? null : "detector: IoU > " + th}));
    if (u.image) {
      const k = Math.max(1, u.exemplars.length);
      const caps = u.exemplars.map(function (x) { return "image " + x.image + " · activation " + fmt(x.activation, 2); });
      el.append(h("button", {class: "strip", type: "button", style: "--ar:" + k + " / 1", title: "click to enlarge"},
        h("img", {src: u.image, loading: "lazy", decoding: "async", "data-tiles": String(k),
                  "data-alt": u.mask_image || null, "data-captions": JSON.stringify(caps),
                  "data-caption": c.layer.layer + " unit " + c.unit + ": " + (u.concept || NONE) + " · top " + k + " images",
                  alt: "top " + u.exemplars.length + " images of unit " + c.unit})));
    }
    const others = u.labels.filter(function (x) { return x.category !== u.category; });
    if (others.length) {
      const ul = h("ul", {class: "labels", title: "best concept of each other category, with its IoU"},
                   h("li", {class: "also", text: "also:"}));
      others.forEach(function (x) {
        ul.append(h("li", {title: "best " + x.category + " concept"}, h("span", {class: "dot", style: "--c:" + colour(x.category)}),
                    x.concept || "–", " ", h("span", {class: "v", text: fmt(x.iou, 3)})));
      });
      el.append(ul);
    }
    el.append(h("div", {class: "foot", text: c.layer.model + " · " + c.layer.layer + " · activation threshold " + fmt(u.threshold, 3)}));
  }

  // ---- the unit page -------------------------------------------------------------------------
  U.style(
    ".part-dissection .small-data-warning { color: #92400e; background: #fef3c7; border: 1px solid #fcd34d; max-width: none; padding: 6px 10px; border-radius: 6px; font-size: 13px; margin: 0 0 10px; }\n" +
    ".part-dissection .headline .significant { font-size: 14px; color: var(--muted); }\n" +
    "#unitpage .part-dissection .summary { font-size: 16px; margin: 0 0 12px; display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: baseline; }\n" +
    "#unitpage .part-dissection .summary .label { font-weight: 700; font-size: 20px; }\n" +
    "#unitpage .part-dissection .tiles { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 8px; }\n" +
    "#unitpage .part-dissection .tiles figure { padding: 0; overflow: hidden; background: #000; border: 0; }\n" +
    "#unitpage .part-dissection .tiles canvas { display: block; width: 100%; height: auto; }\n" +
    "#unitpage .part-dissection .tiles figcaption { font-weight: 400; font-size: 12px; color: #e5e7eb; padding: 3px 6px; margin: 0; }\n" +
    "#unitpage .part-dissection .exemplars { margin-top: 18px; }\n" +
    "#unitpage .part-dissection button.mask[aria-pressed=true] { background: #67e8f9; }\n" +
    "#unitpage .part-dissection button.mask { font: inherit; font-size: 12.5px; border: 1px solid #cbd2dc; border-radius: 7px; padding: 2px 10px; background: #fff; cursor: pointer; }");

  function topChart(u, pg, th) {
    const fig = h("figure", {class: "top-concepts"}, h("figcaption", {}, "IoU of the unit's top concepts ",
                  h("span", {text: "all categories"})));
    if (!pg || !u.top) {
      fig.append(h("p", {class: "note", text: "This run saved no IoU matrix; rerun unitscope dissect to see the top concepts."}));
      return fig;
    }
    const rows = u.top.map(function (li, i) { return {name: pg.labels[li], cat: pg.categories[li], iou: u.iou[i]}; });
    const W = 470, left = 118, right = 54, top = 20, rowH = 21, H = top + rows.length * rowH + 26;
    const max = Math.max(1e-6, th ? th * 1.3 : 0, ...rows.map(function (r) { return r.iou; }));
    const X = function (v) { return left + (W - left - right) * v / max; };
    const svg = s("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "top concepts by IoU"});
    svg.append(s("line", {class: "axis", x1: left, x2: left, y1: top - 4, y2: top + rows.length * rowH}));
    rows.forEach(function (r, i) {
      const y = top + i * rowH, above = th === null || th === undefined || r.iou > th;
      const g = s("g", {class: "bar", "data-concept": r.name, "data-iou": r.iou});
      g.append(s("title", {}, r.name + " (" + r.cat + "): IoU " + fmt(r.iou, 4)));
      g.append(s("rect", {x: left, y: y + 3, width: Math.max(1, X(r.iou) - left), height: rowH - 6, rx: 2,
                          fill: colour(r.cat), "fill-opacity": above ? 1 : 0.45}));
      g.append(s("text", {x: left - 6, y: y + rowH / 2 + 4, "text-anchor": "end"}, r.name));
      g.append(s("text", {x: X(r.iou) + 4, y: y + rowH / 2 + 4}, fmt(r.iou, 3)));
      svg.append(g);
    });
    if (th !== null && th !== undefined) {
      const yb = top + rows.length * rowH;
      svg.append(s("line", {class: "cutoff", x1: X(th), x2: X(th), y1: top - 8, y2: yb + 4, stroke: "#f59e0b", "stroke-width": 2, "stroke-dasharray": "4 3"}));
      svg.append(s("text", {x: X(th), y: yb + 18, "text-anchor": "middle", fill: "#b45309"}, "detector: IoU > " + th));
    }
    fig.append(svg);
    return fig;
  }

  function activationChart(hist, th, positions) {
    const fig = h("figure", {class: "activations"}, h("figcaption", {}, "Activation histogram ",
                  h("span", {text: positions ? "\u2248 " + positions.toLocaleString("en") + " positions, log scale" : ""})));
    if (!hist) {
      fig.append(h("p", {class: "note", text: "This run saved no activation quantiles; rerun unitscope dissect to see the histogram."}));
      return fig;
    }
    const n = hist.counts, lo = hist.lo, hi = hist.hi === hist.lo ? hist.lo + 1 : hist.hi;
    const W = 400, H = 200, left = 40, right = 14, top = 22, plotH = 130;
    const most = Math.max(1, ...n), L = function (v) { return Math.log10(1 + v) / Math.log10(1 + most); };
    const X = function (v) { return left + (W - left - right) * (v - lo) / (hi - lo); };
    const Y = function (v) { return top + plotH - plotH * L(v); };
    const svg = s("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "activation histogram"});
    [0, 10, 1000, 100000, most].filter(function (v, i) { return i === 4 || v === 0 || v * 3 <= most; }).forEach(function (v) {
      svg.append(s("line", {x1: left, x2: W - right, y1: Y(v), y2: Y(v), stroke: v ? "#eef0f3" : "#9ca3af"}));
      svg.append(s("text", {x: left - 5, y: Y(v) + 4, "text-anchor": "end"}, String(v)));
    });
    const w = (hi - lo) / n.length;
    n.forEach(function (c, i) {
      const a = lo + i * w, above = th !== null && th !== undefined && a + w / 2 > th;
      const g = s("g", {class: "bar"});
      g.append(s("title", {}, fmt(a, 3) + "\u2013" + fmt(a + w, 3) + ": \u2248 " + c + " positions"));
      g.append(s("rect", {x: X(a) + 0.3, y: Y(c), width: Math.max(0.8, X(a + w) - X(a) - 0.6), height: top + plotH - Y(c),
                          fill: above ? "#0f766e" : "#98a2b3"}));
      svg.append(g);
    });
    [lo, hi].forEach(function (v) { svg.append(s("text", {x: X(v), y: top + plotH + 15, "text-anchor": "middle"}, String(+v.toPrecision(3)))); });
    if (th !== null && th !== undefined && th >= lo && th <= hi) {
      svg.append(s("line", {class: "cutoff", x1: X(th), x2: X(th), y1: top - 6, y2: top + plotH, stroke: "#f59e0b", "stroke-width": 2, "stroke-dasharray": "4 3"}));
      svg.append(s("text", {x: Math.min(X(th), W - 120), y: top - 9, fill: "#b45309"}, "threshold T = " + fmt(th, 3)));
    }
    svg.append(s("text", {x: (left + W - right) / 2, y: H - 8, "text-anchor": "middle", fill: "#667085"}, "activation (all positions of all images)"));
    fig.append(svg);
    return fig;
  }

  function exemplarTiles(u, c) {
    const box = h("div", {class: "exemplars"});
    const k = Math.max(1, u.exemplars.length);
    const head = h("h3", {}, "Top " + u.exemplars.length + " images ", h("span", {class: "layer-count",
                   text: "the unit's region (above T) bright and outlined"}));
    const tiles = h("div", {class: "tiles"});
    box.append(head, tiles);
    if (!u.image) { tiles.append(h("p", {class: "note", text: "This run has no exemplar images."})); return box; }
    let mask = false;
    const img = new Image();
    function draw() {
      const stride = img.naturalWidth / k, size = img.naturalHeight;
      tiles.textContent = "";
      for (let j = 0; j < k; j++) {
        const cv = h("canvas", {width: size, height: size});
        cv.getContext("2d").drawImage(img, Math.round(j * stride), 0, size, size, 0, 0, size, size);
        const x = u.exemplars[j] || {};
        tiles.append(h("figure", {style: "width:" + Math.max(size, 160) + "px"}, cv,
          h("figcaption", {text: "image " + x.image + " \u00b7 activation " + fmt(x.activation, 2)})));
      }
      tiles.dataset.src = img.getAttribute("src");
    }
    img.onload = draw;
    img.setAttribute("src", u.image);
    if (u.mask_image) {
      const btn = h("button", {class: "mask", type: "button", "aria-pressed": "false", title: "ground-truth mask of " + u.concept},
                    "ground-truth mask: " + u.concept);
      btn.addEventListener("click", function () {
        mask = !mask;
        btn.setAttribute("aria-pressed", String(mask));
        img.setAttribute("src", mask ? u.mask_image : u.image);
      });
      head.append(btn);
    }
    return box;
  }

  function unitPage(el, u, c) {
    const d = (c.layer.parts || {}).dissection || {}, th = d.iou_threshold, pg = c.page || {};
    const me = (pg.units || {})[String(c.unit)] || {};
    const line = h("p", {class: "summary"},
      u.concept === null ? h("span", {class: "label none", text: NONE}) : h("span", {class: "label", style: "color:" + colour(u.category), text: u.concept}),
      h("span", {class: "cat", text: u.category || ""}), h("span", {text: "IoU " + fmt(u.iou)}),
      h("span", {class: "badge" + (u.is_detector ? "" : " no"), text: u.is_detector ? "detector" : "below threshold"}),
      me.rank ? h("span", {class: "rank", text: "rank " + me.rank + " of " + c.layer.cards.length + " in " + c.layer.layer + " by IoU"}) : null,
      h("span", {class: "meta", text: "activation threshold T = " + fmt(u.threshold, 3) + (d.quantile ? " (top " + (100 * d.quantile) + " % of positions)" : "")}));
    el.append(line);
    const context = h("figure", {class: "context"}, h("figcaption", {}, "In its layer"),
      h("p", {class: "note", text: (d.detectors === undefined ? "" : d.detectors + " of " + d.units + " units of " + c.layer.layer +
        " are detectors, covering " + d.unique_concepts + " concepts. ") + (me.rank ? "This unit ranks " + me.rank + " of " + c.layer.cards.length + " by IoU." : "")}));
    const rot = d.rotations ? rotationTable(d) : null;
    if (rot) context.append(rot.querySelector("table"), h("p", {class: "note", text: "Detectors and concepts of the axis-aligned basis vs random rotations of it."}));
    el.append(h("div", {class: "charts"}, topChart(me, pg, th), activationChart(me.hist, u.threshold, pg.positions), context));
    el.append(exemplarTiles(u, c));
    const ul = h("ul", {class: "labels"}, h("li", {class: "also", text: "best concept per category:"}));
    u.labels.forEach(function (x) {
      ul.append(h("li", {}, h("span", {class: "dot", style: "--c:" + colour(x.category)}), x.category + " " + (x.concept || "\u2013") + " ",
                  h("span", {class: "v", text: fmt(x.iou, 3)})));
    });
    if (u.labels.length) el.append(h("div", {class: "card", style: "border:0;padding:0;margin-top:12px"}, ul));
  }

  window.UNITSCOPE_PARTS.dissection = {
    layer: section,
    card: card,
    unit: unitPage,
    words: function (u) { return [u.concept, u.category].filter(Boolean).join(" "); },
    sorts: {
      iou: {label: "IoU", desc: true, value: function (u) { return u.iou; }},
      concept: {label: "concept", value: function (u) { return u.concept; }}
    },
    flags: {"detectors-only": {label: "detectors only", test: function (u) { return u.is_detector; }}},
    nav: function (d) { return d.detectors + "/" + d.units; }
  };
})();
