// The bases part of the unitscope report: a layer's bases side by side (units, random rotations,
// PCA, ICA, NMF, SAE): reconstruction, sparsity, dead directions, stability across seeds, and the
// detectors and unique concepts dissection found among each basis' directions.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h;
  U.style(".part-bases table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }\n" +
          ".part-bases th, .part-bases td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #e3e6ea; }\n" +
          ".part-bases th:first-child, .part-bases td:first-child { text-align: left; }\n" +
          ".part-bases .note { font-size: 12px; color: var(--muted); max-width: 60em; }");

  function f(v, digits) {
    if (v === null || v === undefined) return "\u2013";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : v.toPrecision(digits || 3);
  }

  window.UNITSCOPE_PARTS.bases = {
    layer: function (el, d) {
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
