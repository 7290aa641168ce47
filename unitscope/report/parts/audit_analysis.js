// The auditing and analysis parts of the unitscope report (unitscope audit count / audit ablate):
// per layer, the units that detect or describe an audited concept against the reference model; the
// cumulative ablation curves in orders given by the units' descriptions.
"use strict";
(function () {
  if (window.UNITSCOPE_PARTS.audit_counts) return;  // both parts share this script
  const U = window.UNITSCOPE, h = U.h;
  const pct = function (x) { return x === null || x === undefined ? "\u2013" : (100 * x).toFixed(1) + "%"; };
  const num = function (x) { return x === null || x === undefined ? "\u2013" : String(x); };
  U.style(".part-audit_counts table, .part-desc_ablation table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }\n" +
          ".part-audit_counts td, .part-audit_counts th, .part-desc_ablation td, .part-desc_ablation th " +
          "{ padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }\n" +
          ".part-audit_counts td:first-child, .part-desc_ablation td:first-child { text-align: left; }\n" +
          ".part-desc_ablation img { max-width: 100%; }");

  function countCells(r) {
    return r ? [h("td", {text: num(r.detectors)}), h("td", {text: num(r.significant)}), h("td", {text: num(r.described)})]
             : [h("td", {text: "\u2013"}), h("td", {text: "\u2013"}), h("td", {text: "\u2013"})];
  }

  window.UNITSCOPE_PARTS.audit_counts = {
    layer: function (el, d) {
      d.concepts.forEach(function (c) {
        const a = c.here.audited, r = c.here.reference;
        el.append(h("h3", {}, "Auditing: units for \u201c" + c.concept + "\u201d",
          h("span", {class: "layer-count", text: (a ? a.detectors + " detect, " + a.described + " describe it here" : "") +
            (r ? " (" + c.reference + ": " + r.detectors + " detect, " + r.described + " describe)" : "")})));
        if (!c.table) return;
        const t = h("table", {class: "audit-counts"}, h("tr", {}, h("th", {text: "layer"}), h("th", {text: "units"}),
          h("th", {text: "detect"}), h("th", {text: "significant"}), h("th", {text: "describe"}),
          h("th", {text: (c.reference || "reference") + ": detect"}), h("th", {text: "significant"}), h("th", {text: "describe"})));
        c.table.forEach(function (row) {
          t.append(h("tr", {}, h("td", {text: row.audited.layer}), h("td", {text: String(row.audited.units)}),
            ...countCells(row.audited), ...countCells(row.reference)));
        });
        el.append(h("p", {text: "Detect: the unit's dissection label is the concept, IoU at or above the cut-off; significant: " +
          "also passes the permutation test; describe: its description asserts the concept."}), t);
      });
    }
  };

  window.UNITSCOPE_PARTS.desc_ablation = {
    layer: function (el, d) {
      el.append(h("h3", {}, "Ablation by description"));
      if (d.plot) el.append(h("img", {src: d.plot, alt: "accuracy against the fraction of units removed"}));
      const orders = Object.keys(d.curves);
      const t = h("table", {class: "desc-ablation"}, h("tr", {}, h("th", {text: "fraction removed"}), h("th", {text: "units"}),
        ...orders.map(function (o) { return h("th", {text: o + " (mean, range over " + d.curves[o].seeds + ")"}); })));
      d.curves[orders[0]].fractions.forEach(function (f, i) {
        t.append(h("tr", {}, h("td", {text: f.toFixed(2)}), h("td", {text: String(d.curves[orders[0]].units[i])}),
          ...orders.map(function (o) { const c = d.curves[o]; return h("td", {text: pct(c.mean[i]) + " (" + pct(c.min[i]) + "\u2013" + pct(c.max[i]) + ")"}); })));
      });
      el.append(t);
      if (d.summary && d.summary.length) {
        const f3 = function (v) { return v === null || v === undefined ? "" : v.toFixed(3); };
        const sg = function (v) { return v === null || v === undefined ? "" : (v >= 0 ? "+" : "") + v.toFixed(3); };
        const s = h("table", {class: "desc-ablation-summary"}, h("tr", {},
          ...["ordering", "metric", "area", "seeds", "95% (images)", "gap to random", "95% (images)", "largest gap at", "there", "random there"]
            .map(function (x) { return h("th", {text: x}); })));
        d.summary.forEach(function (r) {
          s.append(h("tr", {}, h("td", {text: r.ordering}), h("td", {text: r.metric}), h("td", {text: f3(r.auc)}),
            h("td", {text: f3(r.auc_min) + "\u2013" + f3(r.auc_max)}), h("td", {text: f3(r.auc_lo) + "\u2013" + f3(r.auc_hi)}),
            h("td", {text: sg(r.gap)}), h("td", {text: sg(r.gap_lo) + " to " + sg(r.gap_hi)}),
            h("td", {text: r.at_fraction === null ? "" : r.at_fraction.toFixed(2)}),
            h("td", {text: f3(r.at_mean) + " (" + f3(r.at_min) + "\u2013" + f3(r.at_max) + ")"}),
            h("td", {text: f3(r.ref_mean) + " (" + f3(r.ref_min) + "\u2013" + f3(r.ref_max) + ")"})));
        });
        el.append(s);
      }
      Object.keys(d.first).forEach(function (o) {
        el.append(h("p", {text: o + " first: " + d.first[o].length + " units" + (d.first[o].length ? " (" +
          d.first[o].slice(0, 8).map(function (u) { return u.unit + ": " + (u.description || u.formula); }).join("; ") +
          (d.first[o].length > 8 ? "; ..." : "") + ")" : "")}));
      });
    }
  };
})();
