"""The paint page's figures for docs/gan.md: per concept, its share of the brushed pixels before and
after painting it in (or out) over many seeds, and a headless-Chromium screenshot docs/paint.png.

    unitscope dissect --model world_generator --segmenter world_segmenter --samples 1000 --quantile 0.01 \\
                      --layers relu2,relu3 --out runs/gan --null-draws 0 --no-report
    python docs/make_paint_figures.py runs/gan [--seeds 50] [--screenshot docs/paint.png]

Add: a concept's top 10 units (by the run's IoU) forced to their 99.5th percentile in a block of
cells of the layer's map (rows h/2 .. 3h/4, columns w/4 .. w/2: 3x3 cells of relu2's 8x8, 5x5 of
relu3's 16x16); remove: the same units set to 0 over the whole map. Shares are of the block's pixels
(add) or of the whole image (remove), as the segmenter labels them, averaged over seeds 0..N-1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

DOCS = Path(__file__).parent


def table(painter, layers: list[str], seeds: int) -> None:
    print(
        "| layer | concept | add: share in the block before | after | seeds with >= 50% after | "
        "remove: share of the image before | after |"
    )
    print("|---|---|---|---|---|---|---|")
    for layer in layers:
        li = painter.layers[layer]
        h, w = li.height, li.width
        block = torch.zeros(h, w, dtype=torch.bool)
        block[h // 2 : h // 2 + h // 4 + 1, w // 4 : w // 2 + 1] = True
        for c in painter.run.concepts(layer):
            rows = []
            for action, mask in (("add", block), ("remove", torch.ones(h, w, dtype=torch.bool))):
                edit = painter.edit(layer, {"action": action, "concept": c["concept"], "mask": mask.tolist()})
                rows.append([painter.paint(s, layer, [edit]).share for s in range(seeds)])
            add, rem = rows
            mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
            hits = sum(1 for b, a in add if a >= 0.5 > b)
            print(
                f"| {layer} | {c['concept']} | {mean(add, 0):.1%} | {mean(add, 1):.1%} | {hits} of {seeds} | "
                f"{mean(rem, 0):.1%} | {mean(rem, 1):.1%} |"
            )


def screenshot(app, out: Path, layer: str, concept: str, seed: int) -> None:
    sys.path[:0] = [str(DOCS.parent), str(DOCS.parent / "tests"), str(DOCS.parent / "tests" / "serve")]  # their imports
    from tests.report.test_browser import launch_chromium
    from tests.serve.test_serve_browser import Server

    server = Server(app)
    try:
        chromium = launch_chromium()  # a generator: kept, or playwright stops when it is collected
        browser = next(chromium)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(server.url + "/")
        page.wait_for_selector("html[data-ready]", state="attached")
        paints = "Number(document.querySelector('#grid').dataset.paints)"
        if page.input_value("#layer") != layer:
            page.select_option("#layer", layer)
            page.wait_for_function(f"{paints} === 2")
        n = page.evaluate(paints)
        page.fill("#seed", str(seed))
        page.press("#seed", "Tab")
        page.wait_for_function(f"{paints} > {n}")
        page.select_option("#concept", concept)
        page.select_option("#brush", "2")
        box = page.locator("#canvas").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.75, steps=8)
        page.mouse.up()
        page.wait_for_function(f"{paints} > {n + 1}")
        page.screenshot(path=str(out))
        print(f"{out}: {page.inner_text('#share')}")
        chromium.close()
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a dissection of world_generator (relu2, relu3) against world_segmenter")
    p.add_argument("--seeds", type=int, default=50, help="seeds of the table (0: no table)")
    p.add_argument("--layers", default="relu2,relu3")
    p.add_argument("--screenshot", default=str(DOCS / "paint.png"))
    p.add_argument("--shot", default="relu2:sea:2", help="layer:concept:seed of the screenshot")
    args = p.parse_args()
    torch.set_num_threads(1)

    from unitscope.models import create_model
    from unitscope.segment import create_segmenter
    from unitscope.serve import create_app
    from unitscope.serve.paint import Painter

    generator, segmenter = create_model("world_generator"), create_segmenter("world_segmenter")
    if args.seeds:
        table(Painter(generator, segmenter, args.run), args.layers.split(","), args.seeds)
    if args.screenshot:
        layer, concept, seed = args.shot.split(":")
        screenshot(
            create_app(generator, args.run, segmenter="world_segmenter"),
            Path(args.screenshot),
            layer,
            concept,
            int(seed),
        )


if __name__ == "__main__":
    main()
