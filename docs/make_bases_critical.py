"""Class-critical directions of world_scenes ``features.relu5`` (docs/bases.md, the third finding).

    python docs/make_bases_critical.py RUN DATA out.json [--bases units,ica,sae]

RUN: a ``dissect --model world_scenes --layers features.relu5 --basis ...`` run (its catalog's
dissection rows and its ``bases/l0/<name>`` folders); DATA: the probe world it dissected (the first
600 images), whose images 600-1,599 rank the directions of each basis per class by ablation and
1,600-1,999 test each class's top 5 / 10 / 20 removed together, beside as many random directions
(3 seeds). Prints the two Markdown tables of docs/bases.md; writes everything to out.json.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time

import torch

from unitscope.ablate import cache_layer, cut_model
from unitscope.ablate.split import LabelledData
from unitscope.bases import load_basis
from unitscope.bases.importance import direction_importance, top_n_directions
from unitscope.bases.source import identity_basis
from unitscope.models import create_model, get_info

LAYER, NS = "features.relu5", (5, 10, 20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run"), ap.add_argument("data"), ap.add_argument("out")
    ap.add_argument("--bases", default="units,ica,sae")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = create_model("world_scenes").eval()
    data = LabelledData(a.data, transform=get_info(model).transform())
    y = len(data.class_names)
    classes = torch.arange(y)  # world_scenes' outputs are the world's scenes, in order
    cut = cut_model(model, LAYER)
    train = cache_layer(cut, data, range(600, 1600), batch_size=100)
    val = cache_layer(cut, data, range(1600, 2000), batch_size=100)
    db = sqlite3.connect(f"{a.run}/catalog.sqlite")
    db.row_factory = sqlite3.Row
    res: dict = {"classes": data.class_names, "bases": {}}
    for name in a.bases.split(","):
        b = (
            identity_basis(cut.head(data[0][0][None]).layer.shape[1])
            if name == "units"
            else load_basis(f"{a.run}/bases/l0/{name}")
        )
        layer = LAYER if name == "units" else f"{LAYER}#{name}"
        labels = {
            r["unit"]: dict(r)
            for r in db.execute("SELECT unit, concept, iou, is_detector FROM dissection WHERE layer = ?", (layer,))
        }
        cpu = time.process_time()
        imp = direction_importance(cut, train, b, classes, y, max_batch=4096)
        rank = imp.ranking()
        cpu = time.process_time() - cpu
        top = top_n_directions(cut, val, b, rank, classes, y, ns=NS, max_batch=4096)
        d = b.directions.shape[0]
        rand: dict[int, list[float]] = {}
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            shuffled = torch.stack([torch.randperm(d, generator=g) for _ in range(y)])
            for r in top_n_directions(cut, val, b, shuffled, classes, y, ns=NS, max_batch=4096)[1:]:
                rand.setdefault(r["n"], []).append(r["accuracy"])
        per = [
            {
                "class": data.class_names[c],
                "max_drop": float(imp.drop[:, c].max()),
                "top": [
                    {"d": j, **{k: labels.get(j, {}).get(k) for k in ("concept", "iou", "is_detector")}}
                    for j in rank[c, :5].tolist()
                ],
                "topn": {r["n"]: [r["accuracy"], r["others"]] for r in top if r["class"] == c},
            }
            for c in range(y)
        ]
        res["bases"][name] = {
            "directions": d,
            "val_base": top[0]["accuracy"],
            "per_class": per,
            "random": {n: sum(v) / len(v) for n, v in rand.items()},
            "importance_cpu_s": cpu,
        }
    json.dump(res, open(a.out, "w"), indent=1)
    tables(res)


def tables(res: dict) -> None:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    print(
        "| basis | directions | largest single drop | top 5 / 10 / 20 | others (top 20) | random 5 / 10 / 20 "
        "| top 5: detectors | mean IoU | distinct labels |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name, b in res["bases"].items():
        per, y = b["per_class"], len(b["per_class"])
        tops = [t for c in per for t in c["top"]]
        print(
            f"| {name} | {b['directions']} | {pct(sum(c['max_drop'] for c in per) / y)} | {pct(b['val_base'])} → "
            + " / ".join(pct(sum(c["topn"][n][0] for c in per) / y) for n in NS)
            + f" | {pct(sum(c['topn'][20][1] for c in per) / y)} | "
            + " / ".join(pct(b["random"][n]) for n in NS)
            + f" | {sum(bool(t['is_detector']) for t in tops) / len(tops):.0%} | "
            f"{sum(t['iou'] or 0 for t in tops) / len(tops):.3f} | {len({t['concept'] for t in tops})} |"
        )


if __name__ == "__main__":
    main()
