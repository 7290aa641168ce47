// The descriptions part of the unitscope report: each unit's description in English with its
// held-out F1 (and p-value) on the card; all four scores, base rate and the single labels' scores
// (the fair one, chosen on the search images, and the dissection's, chosen on every image) on the
// unit page; per layer, chosen descriptions against single labels.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h;
  U.style(".part-describe .desc { font-weight: 600; margin: 6px 0 2px; }\n" +
          ".part-describe .desc-scores { font-size: 11px; color: var(--muted); }\n" +
          ".part-describe table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }\n" +
          ".part-describe td, .part-describe th { padding: 2px 8px; text-align: right; }\n" +
          ".part-describe td:first-child, .part-describe th:first-child { text-align: left; }");
  const fmt = function (v) { return v === null || v === undefined ? "\u2013" : v.toFixed(2); };
  const pfmt = function (v) { return v === null || v === undefined ? "" : (v < 0.001 ? "p<0.001" : "p=" + v.toFixed(3)); };

  function scoreTable(rows) {
    const t = h("table", {}, h("tr", {}, h("th", {text: ""}), h("th", {text: "F1"}), h("th", {text: "IoU"}),
                                  h("th", {text: "AUPRC"}), h("th", {text: "Pearson"}), h("th", {text: "base rate"})));
    rows.forEach(function (r) {
      if (!r[1]) return;
      const d = r[1];
      t.append(h("tr", {}, h("td", {text: r[0]}), h("td", {text: fmt(d.f1) + " " + pfmt(d.p_f1)}),
                 h("td", {text: fmt(d.iou)}), h("td", {text: fmt(d.auprc) + " " + pfmt(d.p_auprc)}),
                 h("td", {text: fmt(d.pearson) + " " + pfmt(d.p_pearson)}), h("td", {text: fmt(d.base_rate)})));
    });
    return t;
  }

  window.UNITSCOPE_PARTS.describe = {
    layer: function (el, d) {
      el.append(h("h3", {}, "Descriptions", h("span", {class: "layer-count",
        text: d.pmi.described + " of " + d.units + " units described, " + d.pmi.distinct + " distinct"})));
      const t = h("table", {}, h("tr", {}, h("th", {text: "held-out mean"}), h("th", {text: "F1"}), h("th", {text: "IoU"}),
                                    h("th", {text: "AUPRC"}), h("th", {text: "Pearson"}), h("th", {text: "distinct"}),
                                    h("th", {text: "F1 p<0.01"})));
      [["chosen (PMI)", d.pmi], ["max. likelihood", d.ml], ["single label (fair: search images)", d.fair_label],
       ["dissection label (all images: leaky)", d.label]].forEach(function (r) {
        const k = r[1];
        if (!k || !k.described) return;
        t.append(h("tr", {}, h("td", {text: r[0]}), h("td", {text: fmt(k.f1)}), h("td", {text: fmt(k.iou)}),
                   h("td", {text: fmt(k.auprc)}), h("td", {text: fmt(k.pearson)}), h("td", {text: String(k.distinct)}),
                   h("td", {text: String(k.significant)})));
      });
      el.append(t);
    },
    card: function (el, v) {
      const c = v.chosen;
      el.append(h("div", {class: "desc", text: c.description, title: c.formula}),
                h("div", {class: "desc-scores", text: "held-out F1 " + fmt(c.f1) + " " + pfmt(c.p_f1) +
                          " \u00b7 base rate " + fmt(c.base_rate)}));
    },
    unit: function (el, v) {
      el.append(h("div", {class: "desc", text: v.chosen.description}),
                h("div", {class: "desc-scores", text: "formula: " + v.chosen.formula}),
                scoreTable([["description", v.chosen],
                            ["fair single label" + (v.fair_label ? " (" + v.fair_label.description + ")" : ""), v.fair_label],
                            ["dissection label, leaky" + (v.label ? " (" + v.label.description + ")" : ""), v.label]]));
    },
    words: function (v) { return v.chosen.description + " " + (v.chosen.formula || "").replace(/_/g, " "); },
    sorts: {
      desc_f1: {label: "description F1 (held out)", value: function (v) { return v.chosen.f1; }, desc: true},
      desc_pearson: {label: "description Pearson (held out)", value: function (v) { return v.chosen.pearson; }, desc: true}
    }
  };
})();
