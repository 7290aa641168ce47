// The ablation part of the unitscope report: cumulative ablation curves, the top-N test, key
// units per class (with dissection labels), steering and attacks; on cards, importance and selectivity.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h, s = U.s, fmt = U.fmt;
  const MODE = {zero: "#4e79a7", noise: "#e15759", mean: "#59a14f"};
  const pct = function (x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; };
  U.style(".part-ablation svg { display: block; margin: 6px 0; }\n" +
          ".part-ablation .charts { display: flex; flex-wrap: wrap; gap: 18px; }\n" +
          ".part-ablation .classes { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px 18px; }\n" +
          ".part-ablation .cls { min-width: 0; overflow: hidden; }\n" +
          ".part-ablation .cls h4 { margin: 4px 0; }\n" +
          ".part-ablation .bar { display: flex; align-items: center; gap: 6px; font-size: 12px; margin: 2px 0; }\n" +
          ".part-ablation .bar i { display: inline-block; height: 10px; background: #4e79a7; border-radius: 2px; }\n" +
          ".part-ablation .bar img { height: 22px; min-width: 0; max-width: 55%; object-fit: cover; object-position: left; border-radius: 3px; }\n" +
          ".part-ablation table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }\n" +
          ".part-ablation td, .part-ablation th { padding: 2px 6px; border-bottom: 1px solid #eee; text-align: right; }\n" +
          ".part-ablation figure { display: inline-block; margin: 4px 10px 4px 0; font-size: 11px; max-width: 320px; }\n" +
          ".part-ablation figure img { display: block; height: 96px; }\n" +
          ".ablation-card { font-size: 12px; margin-top: 4px; }");

  function lineChart(title, series, xlabel, opts) {
    opts = opts || {};
    const W = 320, H = 190, L = 40, B = 30, T = 18, Rm = 10;
    const xs = series.reduce(function (a, c) { return a.concat(c.x); }, []);
    const x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    const X = function (v) { const t = opts.log ? (Math.log(v) - Math.log(x0)) / ((Math.log(x1) - Math.log(x0)) || 1) : (v - x0) / ((x1 - x0) || 1); return L + t * (W - L - Rm); };
    const Y = function (v) { return T + (1 - v) * (H - T - B); };
    const svg = s("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title});
    svg.append(s("text", {x: L, y: 12, "font-size": 12, "font-weight": 600}, title));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) {
      svg.append(s("line", {x1: L, x2: W - Rm, y1: Y(v), y2: Y(v), stroke: "#e4e7ec"}));
      svg.append(s("text", {x: L - 4, y: Y(v) + 4, "font-size": 10, "text-anchor": "end"}, (v * 100) + "%"));
    });
    svg.append(s("text", {x: (L + W) / 2, y: H - 4, "font-size": 10, "text-anchor": "middle"}, xlabel));
    series.forEach(function (c, k) {
      if (c.lo) {
        const pts = c.x.map(function (x, i) { return X(x) + "," + Y(c.hi[i]); })
          .concat(c.x.slice().reverse().map(function (x, i) { return X(x) + "," + Y(c.lo[c.x.length - 1 - i]); }));
        svg.append(s("polygon", {points: pts.join(" "), fill: c.colour, opacity: 0.15}));
      }
      svg.append(s("polyline", {points: c.x.map(function (x, i) { return X(x) + "," + Y(c.y[i]); }).join(" "),
        fill: "none", stroke: c.colour, "stroke-width": 2, "stroke-dasharray": c.dash || "none", "data-series": c.label}));
      svg.append(s("text", {x: W - Rm, y: T + 12 * (k + 1), "font-size": 10, "text-anchor": "end", fill: c.colour}, c.label));
    });
    return svg;
  }

  function curves(d) {
    const series = [];
    Object.keys(d.curves).forEach(function (m) {
      const c = d.curves[m];
      series.push({x: c.fraction, y: c.mean, lo: c.lo, hi: c.hi, colour: MODE[m] || "#666", label: m + " (" + c.seeds + " seeds)"});
    });
    Object.keys(d.twins || {}).forEach(function (tw) {
      Object.keys(d.twins[tw]).forEach(function (m) {
        const c = d.twins[tw][m];
        series.push({x: c.fraction, y: c.mean, colour: MODE[m] || "#666", dash: "4 3", label: tw + " " + m});
      });
    });
    return series.length ? lineChart("Cumulative ablation (val)", series, "fraction of units removed") : null;
  }

  function topn(d) {
    if (!d.topn.length) return null;
    const by = {};
    d.topn.forEach(function (r) { (by[r.kind + ":" + r.n] = by[r.kind + ":" + r.n] || []).push(r); });
    const ns = Array.from(new Set(d.topn.filter(function (r) { return r.kind === "remove"; }).map(function (r) { return r.n; }))).sort(function (a, b) { return a - b; });
    const mean = function (rs, k) { return rs.reduce(function (a, r) { return a + r[k]; }, 0) / rs.length; };
    const line = function (kind, key, colour, label, dash) {
      return {x: ns, y: ns.map(function (n) { return mean(by[kind + ":" + n], key); }), colour: colour, label: label, dash: dash};
    };
    return lineChart("Remove each class's top N (val)", [
      line("remove", "class_accuracy", "#e15759", "that class"), line("remove", "other_accuracy", "#4e79a7", "other classes"),
      line("random", "class_accuracy", "#999", "N random units", "4 3"), line("keep", "class_accuracy", "#59a14f", "keep only top N", "2 2")],
      "N (log scale)", {log: true});
  }

  function importance(d, layer) {
    const box = h("div", {class: "classes"});
    const most = Math.max(0.01, ...d.importance.map(function (c) { return Math.max(0, ...c.units.map(function (u) { return u.drop || 0; })); }));
    d.importance.forEach(function (c) {
      const el = h("div", {class: "cls"}, h("h4", {text: c.class}));
      c.units.forEach(function (u) {
        el.append(h("div", {class: "bar"}, h("a", {href: "#" + layer.id + "/" + u.unit, text: "#" + u.unit}),
          h("i", {style: "width:" + Math.max(1, 90 * Math.max(0, u.drop || 0) / most) + "px"}), pct(u.drop),
          u.concept ? h("span", {text: u.concept}) : null, u.image ? h("img", {src: u.image, loading: "lazy", alt: "exemplars of unit " + u.unit}) : null));
      });
      box.append(el);
    });
    return box;
  }

  function steering(d) {
    if (!d.steering.length) return null;
    const classes = Array.from(new Set(d.steering.map(function (r) { return r.source; })));
    const rate = {};
    d.steering.forEach(function (r) { rate[r.source + "→" + r.target] = r; });
    const t = h("table", {class: "steer"}, h("tr", {}, h("th", {text: "A \\ B"}), ...classes.map(function (c) { return h("th", {text: c}); })));
    classes.forEach(function (a) {
      t.append(h("tr", {}, h("th", {text: a}), ...classes.map(function (b) {
        const r = rate[a + "→" + b];
        return h("td", {text: r ? pct(r.flip_rate) : "", title: r ? "without the edit " + pct(r.base_rate) : "",
                        style: r ? "background: rgba(225,87,89," + Math.min(1, r.flip_rate) + ")" : ""});
      })));
    });
    const mean = d.steering.reduce(function (a, r) { return a + r.flip_rate; }, 0) / d.steering.length;
    return h("div", {}, h("h4", {text: "Steering: A's key units off, B's to a high quantile — how often A is predicted B (mean " + pct(mean) + ")"}), t);
  }

  function attacks(d) {
    if (!d.attacks.length) return null;
    const t = h("table", {}, h("tr", {}, ...["attack", "ε", "images", "success", "max L∞", "source units", "target units", "units moved most"].map(function (x) { return h("th", {text: x}); })));
    d.attacks.forEach(function (r) {
      t.append(h("tr", {}, h("td", {text: r.method}), h("td", {text: Math.round(r.epsilon * 255) + "/255"}), h("td", {text: r.images}),
        h("td", {text: pct(r.success_rate)}), h("td", {text: fmt(r.max_linf * 255, 2) + "/255"}),
        h("td", {text: fmt(r.source_shift)}), h("td", {text: fmt(r.target_shift)}), h("td", {text: r.moved_units})));
    });
    return h("div", {}, h("h4", {text: "Adversarial inputs: PGD through the key units vs targeted PGD on the logits"}), t);
  }

  function examples(d, kind, title) {
    const ex = d.examples.filter(function (e) { return e.kind === kind; });
    if (!ex.length) return null;
    return h("div", {}, h("h4", {text: title}), ...ex.map(function (e) {
      return h("figure", {}, h("img", {src: e.path, loading: "lazy", alt: e.caption}), h("figcaption", {text: e.caption}));
    }));
  }

  window.UNITSCOPE_PARTS.ablation = {
    layer: function (el, d, layer) {
      const m = d.meta || {};
      el.append(h("h3", {}, "Ablation", h("span", {class: "layer-count", text: (m.units || "?") + " units · train " + (m.train_images || "?") +
        " / val " + (m.val_images || "?") + " images · accuracy train " + pct(m.base_accuracy) + ", val " + pct(m.val_accuracy) +
        " · " + (m.mode || "zero") + " ablation · " + (m.cut === "hook" ? "full forward per ablation (fx could not cut the model)" : "tail from the cached layer")})));
      el.append(h("div", {class: "charts"}, curves(d), topn(d)));
      if (d.importance.length) el.append(h("h4", {text: "Key units per class (train-split accuracy drop when the unit alone is removed)"}), importance(d, layer));
      [steering(d), examples(d, "steering", "Steering examples (prediction before → after)"), attacks(d),
       examples(d, "attack", "Attack examples (original · adversarial · amplified difference)")].forEach(function (x) { if (x) el.append(x); });
    },
    card: function (el, v) {
      const parts = [];
      if (v.drops && v.drops.length) parts.push("removing it costs " + v.drops.map(function (x) { return x.class + " " + pct(x.drop); }).join(", "));
      if (v.selectivity !== undefined) parts.push("class selectivity " + fmt(v.selectivity, 2) + " (" + v.top_class + ")");
      el.append(h("div", {class: "ablation-card", text: parts.join(" · ")}));
    },
    words: function (v) { return (v.top_class || "") + " " + (v.drops || []).map(function (x) { return x.class; }).join(" "); },
    sorts: {max_drop: {label: "importance (largest class accuracy drop)", value: function (v) { return v.max_drop; }, desc: true},
            selectivity: {label: "class selectivity", value: function (v) { return v.selectivity; }, desc: true}},
    flags: {important: {label: "important (≥ 5% drop)", test: function (v) { return (v.max_drop || 0) >= 0.05; }}},
    nav: function (d) { return d.meta && d.meta.val_accuracy !== undefined ? "val acc " + pct(d.meta.val_accuracy) : null; }
  };
})();
