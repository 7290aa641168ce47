// The audit part of the unitscope report: the editing experiment (unitscope edit). Per layer, the
// units a text query found (MILAN's order, single-unit validation accuracy, removed or kept); in
// the first such layer, test accuracy with the edit against random and most important units.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h;
  const pct = function (x) { return x === null || x === undefined ? "\u2013" : (100 * x).toFixed(1) + "%"; };
  U.style(".part-audit table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }\n" +
          ".part-audit td, .part-audit th { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }\n" +
          ".part-audit td:first-child, .part-audit th:first-child { text-align: left; }\n" +
          ".part-audit tr.removed td { font-weight: 600; }\n" +
          ".audit-card { font-size: 12px; margin-top: 4px; }");

  function results(rows) {
    const t = h("table", {class: "edit-results"}, h("tr", {}, h("th", {text: "units removed"}), h("th", {text: "n"}),
      h("th", {text: "clean"}), h("th", {text: "sign agrees"}), h("th", {text: "sign conflicts"})));
    rows.forEach(function (r) {
      const name = r.kind === "random" ? "random, draw " + r.draw : (r.kind === "random mean" ? "random, mean of " + r.draw : r.kind);
      t.append(h("tr", {class: r.kind === "described" ? "removed" : ""}, h("td", {text: name}), h("td", {text: String(r.units)}),
        h("td", {text: pct(r.clean)}), h("td", {text: pct(r.agree)}), h("td", {text: pct(r.conflict)})));
    });
    return t;
  }

  window.UNITSCOPE_PARTS.audit = {
    layer: function (el, d) {
      d.queries.forEach(function (q) {
        const removed = q.units.filter(function (u) { return u.removed; }).length;
        el.append(h("h3", {}, "Editing by description: \u201c" + q.query + "\u201d",
          h("span", {class: "layer-count", text: q.units.length + " units match here, " + removed + " removed; the edit spans " + q.layers.join(", ")})));
        if (q.results) el.append(h("p", {text: "Test accuracy (held-out images):"}), results(q.results));
        const t = h("table", {class: "edit-units"}, h("tr", {}, h("th", {text: "unit"}), h("th", {text: "order"}),
          h("th", {text: "description"}), h("th", {text: "match"}), h("th", {text: "val. conflict acc., unit alone removed"}),
          h("th", {text: "removed"})));
        q.units.forEach(function (u) {
          t.append(h("tr", {class: u.removed ? "removed" : ""}, h("td", {text: String(u.unit)}), h("td", {text: String(u.rank + 1)}),
            h("td", {text: u.description || ""}), h("td", {text: u.match.toFixed(2)}), h("td", {text: pct(u.single_accuracy)}),
            h("td", {text: u.removed ? "yes" : "no"})));
        });
        el.append(t);
      });
    },
    card: function (el, v) {
      v.queries.forEach(function (q) {
        el.append(h("div", {class: "audit-card", text: "matches \u201c" + q.query + "\u201d (order " + (q.rank + 1) + ")" +
          (q.removed ? " \u00b7 removed by the edit" : "")}));
      });
    },
    words: function (v) { return v.queries.map(function (q) { return q.query + (q.removed ? " edited" : ""); }).join(" "); },
    flags: {edited: {label: "removed by the edit", test: function (v) { return v.queries.some(function (q) { return q.removed; }); }}}
  };
})();
