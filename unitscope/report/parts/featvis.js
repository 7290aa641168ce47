// The feature-visualisation part of the unitscope report: a gallery per layer, and on each card
// the unit's optimised image beside its exemplars.
"use strict";
(function () {
  const U = window.UNITSCOPE, h = U.h;
  U.style(".part-featvis .fv { display: block; width: 96px; margin: 7px 0 2px; border-radius: 5px; background: #eef0f3; }\n" +
          ".part-featvis .fv-cap { font-size: 11px; color: var(--muted); max-width: 96px; }\n" +
          ".part-featvis .gallery { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0 4px; }\n" +
          ".part-featvis .gallery a { display: block; font-size: 11px; color: var(--muted); text-align: center; }\n" +
          ".part-featvis .gallery img { display: block; width: 64px; height: 64px; border-radius: 4px; }");

  window.UNITSCOPE_PARTS.featvis = {
    layer: function (el, d, layer) {
      el.append(h("h3", {}, "Feature visualisation", h("span", {class: "layer-count",
        text: d.units + " unit" + (d.units === 1 ? "" : "s") + (d.objectives.length ? " · objective " + d.objectives.join(", ") : "")})));
      const gallery = h("div", {class: "gallery"});
      layer.cards.forEach(function (c) {
        const v = c.parts.featvis;
        if (!v) return;
        gallery.append(h("a", {href: "#" + c.id, title: "unit " + c.unit + (v.objective ? " · " + v.objective : "")},
          h("img", {src: v.image, loading: "lazy", alt: "visualisation of unit " + c.unit}), "#" + c.unit));
      });
      el.append(gallery);
    },
    card: function (el, v, c) {
      el.append(h("img", {class: "fv", src: v.image, loading: "lazy", alt: "feature visualisation of unit " + c.unit,
                          title: "feature visualisation" + (v.objective ? " (" + v.objective + ")" : "")}),
                h("div", {class: "fv-cap", text: "visualisation"}));
    },
    words: function (v) { return v.objective || ""; }
  };
})();
