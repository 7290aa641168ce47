// The generator part of the unitscope report: removal curves (top units by IoU, by ACE, random; 99%
// intervals), ACE against IoU at each k, insertion by context, artifact units, before/after grids;
// on cards the unit's IoU rank, ACE mask values and artifact gain; on unit pages also the
// before/after grids the unit is edited in.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h, s = U.s, fmt = U.fmt;
  const COLOUR = {iou: "#e15759", ace: "#4e79a7", random: "#999"};
  const NAME = {iou: "top k by IoU", ace: "top k by ACE", random: "k random units"};
  const pct = function (x) { return x === null || x === undefined ? "–" : (x > 0 ? "+" : "") + (100 * x).toFixed(0) + "%"; };
  U.style(".part-gan svg { display: block; margin: 6px 0; }\n" +
          ".part-gan .charts { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }\n" +
          ".part-gan table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }\n" +
          ".part-gan td, .part-gan th { padding: 2px 6px; border-bottom: 1px solid #eee; text-align: right; }\n" +
          ".part-gan td:first-child, .part-gan th:first-child { text-align: left; }\n" +
          ".part-gan figure { display: inline-block; vertical-align: top; margin: 4px 10px 4px 0; font-size: 11px; width: 440px; }\n" +
          ".part-gan figure img { display: block; width: 100%; height: auto; image-rendering: pixelated; }\n" +
          ".part-gan .summary { font-size: 12px; color: var(--muted); margin: 2px 0; }\n" +
          ".gan-card { font-size: 12px; margin-top: 4px; }");

  function curveChart(r) {
    const W = 340, H = 200, L = 44, B = 30, T = 18, Rm = 10;
    const names = Object.keys(r.curves).sort();
    const ks = names.reduce(function (a, n) { return a.concat(r.curves[n].k); }, []);
    const k0 = Math.min.apply(null, ks), k1 = Math.max.apply(null, ks);
    let lo = -1, hi = 0.25;
    names.forEach(function (n) {
      const c = r.curves[n];
      c.change.forEach(function (v, i) { const e = c.ci[i] || 0; lo = Math.min(lo, v - e); hi = Math.max(hi, v + e); });
    });
    const X = function (v) { return L + (v - k0) / ((k1 - k0) || 1) * (W - L - Rm); };
    const Y = function (v) { return T + (hi - v) / ((hi - lo) || 1) * (H - T - B); };
    const svg = s("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                          "aria-label": "relative change of " + r.concept + " pixels against k"});
    svg.append(s("text", {x: L, y: 12, "font-size": 12, "font-weight": 600}, "'" + r.concept + "' pixels as units are removed"));
    for (let v = Math.ceil(lo * 4) / 4; v <= hi + 1e-9; v += 0.25) {
      svg.append(s("line", {x1: L, x2: W - Rm, y1: Y(v), y2: Y(v), stroke: Math.abs(v) < 1e-9 ? "#999" : "#e4e7ec"}));
      svg.append(s("text", {x: L - 4, y: Y(v) + 4, "font-size": 10, "text-anchor": "end"}, Math.round(v * 100) + "%"));
    }
    svg.append(s("text", {x: (L + W) / 2, y: H - 4, "font-size": 10, "text-anchor": "middle"}, "k units removed"));
    Array.from(new Set(ks)).forEach(function (k) {
      svg.append(s("text", {x: X(k), y: H - B + 12, "font-size": 10, "text-anchor": "middle"}, String(k)));
    });
    names.forEach(function (n, j) {
      const c = r.curves[n], col = COLOUR[n] || "#666";
      if (c.ci.some(function (e) { return e !== null; })) {
        const up = c.k.map(function (k, i) { return X(k) + "," + Y(c.change[i] + (c.ci[i] || 0)); });
        const down = c.k.map(function (k, i) { return X(k) + "," + Y(c.change[i] - (c.ci[i] || 0)); }).reverse();
        svg.append(s("polygon", {points: up.concat(down).join(" "), fill: col, opacity: 0.15}));
      }
      svg.append(s("polyline", {points: c.k.map(function (k, i) { return X(k) + "," + Y(c.change[i]); }).join(" "),
        fill: "none", stroke: col, "stroke-width": 2, "stroke-dasharray": n === "random" ? "4 3" : "none", "data-series": n}));
      svg.append(s("text", {x: W - Rm, y: T + 12 * (j + 1), "font-size": 10, "text-anchor": "end", fill: col}, NAME[n] || n));
    });
    return svg;
  }

  function compareTable(r) {
    if (!r.curves.ace || !r.curves.iou) return null;
    const t = h("table", {class: "ace-vs-iou"}, h("tr", {}, ...["k", "by IoU", "99% CI", "by ACE", "99% CI", "removes more"].map(function (x) { return h("th", {text: x}); })));
    r.curves.iou.k.forEach(function (k, i) {
      const j = r.curves.ace.k.indexOf(k);
      if (j < 0) return;
      const a = r.curves.iou.change[i], b = r.curves.ace.change[j];
      t.append(h("tr", {}, h("td", {text: k}), h("td", {text: pct(a)}), h("td", {text: "±" + pct(r.curves.iou.ci[i]).replace("+", "")}),
        h("td", {text: pct(b)}), h("td", {text: "±" + pct(r.curves.ace.ci[j]).replace("+", "")}),
        h("td", {text: a < b ? "IoU" : b < a ? "ACE" : "tie"})));
    });
    return h("div", {}, h("h4", {text: "ACE against IoU ranking: '" + r.concept + "' pixels with the top k units off"}), t);
  }

  function others(r) {
    if (!r.others.length) return null;
    return h("div", {class: "summary", text: "other labels with the top " + r.k_others + " by IoU off: " +
      r.others.map(function (o) { return o.label + " " + pct(o.change); }).join(", ")});
  }

  function insertion(d) {
    const concepts = Object.keys(d.insertion);
    if (!concepts.length) return null;
    const box = h("div", {class: "charts"});
    concepts.forEach(function (c) {
      const t = h("table", {class: "insertion"}, h("tr", {}, ...["context", "trials", "appeared", "rate"].map(function (x) { return h("th", {text: x}); })));
      d.insertion[c].slice(0, 12).forEach(function (r) {
        t.append(h("tr", {}, h("td", {text: r.context}), h("td", {text: r.trials}), h("td", {text: r.appeared}),
          h("td", {text: (100 * r.rate).toFixed(0) + "%", style: "background: rgba(89,161,79," + Math.min(1, r.rate) + ")"})));
      });
      box.append(h("div", {}, h("h4", {text: "Insert '" + c + "': where it appears, by what was there before"}), t));
    });
    return box;
  }

  function aceUnits(d, layer) {
    const concepts = Object.keys(d.ace);
    if (!concepts.length) return null;
    const box = h("div", {class: "charts"});
    concepts.forEach(function (c) {
      const t = h("table", {}, h("tr", {}, ...["unit", "ACE remove", "ACE insert", "IoU", "IoU rank"].map(function (x) { return h("th", {text: x}); })));
      d.ace[c].forEach(function (r) {
        t.append(h("tr", {}, h("td", {}, h("a", {href: "#" + layer.id + "/" + r.unit, text: "#" + r.unit})),
          h("td", {text: fmt(r.ace_remove, 2)}), h("td", {text: fmt(r.ace_insert, 2)}), h("td", {text: fmt(r.iou, 3)}), h("td", {text: r.iou_rank})));
      });
      box.append(h("div", {}, h("h4", {text: "Units by ACE mask (remove '" + c + "')"}), t));
    });
    return box;
  }

  function artifacts(d, layer) {
    if (!d.artifacts.length) return null;
    const t = h("table", {}, h("tr", {}, ...["unit", "gain (worst samples)", "gain (all)"].map(function (x) { return h("th", {text: x}); })));
    d.artifacts.forEach(function (r) {
      t.append(h("tr", {}, h("td", {}, h("a", {href: "#" + layer.id + "/" + r.unit, text: "#" + r.unit})),
        h("td", {text: fmt(r.gain, 4)}), h("td", {text: fmt(r.gain_all, 4)})));
    });
    return h("div", {}, h("h4", {text: "Artifact units: removing them raises the segmenter's confidence on the least realistic samples"}), t);
  }

  function examples(d) {
    if (!d.examples.length) return null;
    return h("div", {}, h("h4", {text: "Before (top row) and after (bottom row)"}), ...d.examples.map(function (e) {
      return h("figure", {}, h("img", {src: e.path, loading: "lazy", alt: e.caption}), h("figcaption", {text: e.caption}));
    }));
  }

  window.UNITSCOPE_PARTS.gan = {
    layer: function (el, d, layer) {
      el.append(h("h3", {}, "Generator effects", h("span", {class: "layer-count",
        text: d.effects.map(function (e) { return e.analysis + (e.concept ? " " + e.concept : "") + " (" + e.samples + " samples)"; }).join(" · ")})));
      d.removal.forEach(function (r) {
        el.append(h("div", {class: "charts"}, curveChart(r), compareTable(r)));
        const o = others(r);
        if (o) el.append(o);
      });
      [insertion(d), aceUnits(d, layer), artifacts(d, layer), examples(d)].forEach(function (x) { if (x) el.append(x); });
      d.effects.forEach(function (e) { el.append(h("div", {class: "summary", text: e.summary})); });
    },
    card: function (el, v) {
      const parts = (v.effects || []).map(function (e) {
        return "'" + e.concept + "' ACE " + fmt(e.ace_remove, 2) + " (rank " + e.ace_rank + ", IoU rank " + e.iou_rank + ")";
      });
      if (v.artifact_rank !== undefined) parts.push("artifact rank " + v.artifact_rank + " (gain " + fmt(v.artifact_gain, 4) + ")");
      el.append(h("div", {class: "gan-card", text: parts.join(" · ")}));
    },
    unit: function (el, v) {  // the unit page: the card's line, then the grids the unit is edited in
      window.UNITSCOPE_PARTS.gan.card(el, v);
      (v.grids || []).forEach(function (g) {
        el.append(h("figure", {class: "gan-grid", "data-kind": g.kind}, h("img", {src: g.path, loading: "lazy", alt: g.caption}),
                    h("figcaption", {text: g.caption})));
      });
    },
    words: function (v) { return (v.effects || []).map(function (e) { return e.concept; }).join(" "); },
    sorts: {best_ace: {label: "ACE mask (removal)", value: function (v) { return v.best_ace; }, desc: true},
            artifact_gain: {label: "artifact gain", value: function (v) { return v.artifact_gain; }, desc: true}}
  };
})();
