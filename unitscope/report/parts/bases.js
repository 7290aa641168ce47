// The bases part of the unitscope report: a layer's bases side by side (units, random rotations,
// PCA, ICA, NMF, SAE): reconstruction, sparsity, dead directions, stability across seeds, and the
// detectors and unique concepts dissection found among each basis' directions.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h;
  U.style(".part-bases table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }\n" +
          ".part-bases th, .part-bases td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #e3e6ea; }\n" +
          ".part-bases th:first-child, .part-bases td:first-child { text-align: left; }\n" +
          ".part-bases .note { font-size: 12px; color: var(--muted); max-width: 60em; }\n" +
          ".part-bases .crit-top { text-align: left; font-size: 12px; }\n" +
          ".part-bases .crit-mean td { font-weight: 600; }");

  function f(v, digits) {
    if (v === null || v === undefined) return "\u2013";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : v.toPrecision(digits || 3);
  }

  function pct(v) { return v === null || v === undefined ? "\u2013" : (100 * v).toFixed(1) + "%"; }

  // one direction of a class's top: "#243 trunk 0.047*" and its description with held-out scores
  function direction(t) {
    const label = "#" + t.unit + " " + (t.concept ? t.concept + " " + f(t.label_iou, 2) + (t.is_detector ? "*" : "") : "(no label)");
    const desc = t.description === null || t.description === undefined ? "" :
      " \u2014 \u201c" + t.description + "\u201d F1 " + f(t.f1, 2) + " IoU " + f(t.iou, 2) + " AUPRC " + f(t.auprc, 2) +
      (t.p_f1 !== null && t.p_f1 < 0.01 ? " (p<0.01)" : " (p=" + f(t.p_f1, 2) + ")");
    return h("div", {class: "crit-dir", text: label + desc});
  }

  function critical(el, bases) {
    el.append(h("h3", {}, "Class-critical directions", h("span", {class: "layer-count", text: bases.length + " bases"})));
    bases.forEach(function (b) {
      const ns = b.ns.map(String);
      const head = ["class", "before"].concat(ns.map(function (n) { return "top " + n + " removed"; }),
        ns.map(function (n) { return n + " random"; }), ["others (top " + ns[ns.length - 1] + ")", "its top directions"]);
      const table = h("table", {class: "critical", "data-basis": b.basis},
        h("tr", {}, ...head.map(function (t) { return h("th", {text: t}); })));
      b.classes.forEach(function (c) {
        table.append(h("tr", {}, h("td", {text: c.class}), h("td", {text: pct(c.before)}),
          ...ns.map(function (n) { return h("td", {text: pct(c.after[n])}); }),
          ...ns.map(function (n) { return h("td", {text: pct(c.random[n])}); }),
          h("td", {text: pct(c.others[ns[ns.length - 1]])}),
          h("td", {class: "crit-top"}, ...c.top.map(direction))));
      });
      const m = b.mean;
      table.append(h("tr", {class: "crit-mean"}, h("td", {text: "mean"}), h("td", {text: pct(m.before)}),
        ...ns.map(function (n) { return h("td", {text: pct(m.after[n])}); }),
        ...ns.map(function (n) { return h("td", {text: pct(m.random[n])}); }),
        h("td", {text: pct(m.others[ns[ns.length - 1]])}),
        h("td", {class: "crit-top", text: "detectors " + pct(m.detectors) + ", label IoU " + f(m.label_iou, 3) + ", " +
          m.distinct_labels + " distinct labels; described " + m.described + " of " + m.directions +
          (m.described ? ": F1 " + f(m.f1, 3) + ", IoU " + f(m.iou, 3) + ", AUPRC " + f(m.auprc, 3) +
            ", p(F1) < 0.01 for " + pct(m.significant) : "")})));
      el.append(h("h4", {text: b.basis + " (" + b.basis_layer + ")"}), table);
    });
    el.append(h("p", {class: "note", text: "Each direction removed alone on the train split ranks the " +
      "directions per class (unitscope ablate critical); each class's top n are then removed together on the val " +
      "split, beside n random directions. Labels: the dissection's concept and IoU (* detector); descriptions: " +
      "held-out F1, IoU and AUPRC with their permutation p-values."}));
  }

  window.UNITSCOPE_PARTS.bases = {
    layer: function (el, d) {
      if (d.critical && d.critical.length) critical(el, d.critical);
      if (!d.rows.some(function (r) { return r.basis !== "rotations"; })) return;
      el.append(h("h3", {}, "Bases of this layer", h("span", {class: "layer-count", text: d.rows.length + " rows"})));
      const head = ["basis", "directions", "FVU", "mean L0", "dead", "stability", "detectors", "significant", "unique concepts"];
      const table = h("table", {}, h("tr", {}, ...head.map(function (t) { return h("th", {text: t}); })));
      d.rows.forEach(function (r) {
        table.append(h("tr", {}, h("td", {text: r.spec, title: r.basis_layer}),
          ...[r.directions, r.fvu, r.mean_l0, r.dead_fraction, r.stability, r.detectors, r.significant, r.unique_concepts]
            .map(function (v) { return h("td", {text: f(v)}); })));
      });
      el.append(table, h("p", {class: "note", text: "FVU: fraction of the layer's variance a basis leaves " +
        "unexplained; mean L0: non-zero codes per position; dead: directions never used; stability: mean |cosine| " +
        "of directions matched one to one with a fit from another seed; significant: detectors with p < 0.01 " +
        "(Benjamini-Hochberg). Each basis' directions are dissected as " +
        "the layer named in the tooltip (LAYER#BASIS), with their own cards."}));
    }
  };
})();
