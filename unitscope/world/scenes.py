"""Scene compositions of the probe world.

    rgb, layers, scene = render_scene(seed=0, index=7, size=224)
    # rgb uint8 [S, S, 3]; layers: object/part/material/texture uint16 [S, S]; scene: index into SCENES

The scene decides which objects are likely (with noise: an out-of-place object now and then), and
objects stand on the ground with perspective: farther ones are smaller and drawn first.
"""

from __future__ import annotations

import numpy as np

from unitscope.world import objects as ob
from unitscope.world.render import Canvas, gradient, material, plain
from unitscope.world.vocab import COLOR_RGB, SCENES, M, O, T

SKIES = {  # top, horizon
    "clear": ((60, 120, 210), (160, 200, 240)),
    "overcast": ((145, 150, 160), (205, 205, 210)),
    "sunset": ((90, 70, 150), (245, 150, 80)),
}


def sky(cv: Canvas, horizon, clouds=(0, 4), sun_p=0.5):
    rng, S = cv.rng, cv.S
    kind = rng.choice(["clear", "clear", "clear", "overcast", "sunset"])
    top, bot = SKIES[kind]
    cv.paint(
        cv.rect(0, 0, S, horizon + 2),
        gradient(ob.jitter(rng, top, 10), ob.jitter(rng, bot, 10), 0, horizon),
        O["sky"],
        shade=False,
    )
    if kind != "overcast" and rng.random() < sun_p:
        ob.sun(cv, rng.uniform(0.1, 0.9) * S, rng.uniform(0.08, 0.6) * horizon, S * rng.uniform(0.04, 0.08))
    for _ in range(int(rng.integers(*clouds))):
        ob.cloud(cv, rng.uniform(0, 1) * S, rng.uniform(0.1, 0.7) * horizon, S * rng.uniform(0.12, 0.25))


def mountains(cv: Canvas, horizon, n):
    rng, S = cv.rng, cv.S
    for _ in range(n):
        h = S * rng.uniform(0.15, 0.4)
        ob.mountain(cv, rng.uniform(0, 1) * S, horizon + 1, h * rng.uniform(1.6, 3.2), h)


def ground(cv: Canvas, y0, kind, y1=None):
    rng, S, s = cv.rng, cv.S, cv.S / 224
    y1 = S if y1 is None else y1
    base = {
        "grass": ob.col(cv, "green", "green", "yellow", amount=12) * 0.85,
        "sand": ob.jitter(rng, (225, 195, 135), 12),
        "snow": ob.jitter(rng, (235, 240, 248), 6),
    }[kind]
    cv.paint(cv.rect(0, y0, S, y1), material(kind, base, s), 0, 0, M[kind], shade=False)


def sea(cv: Canvas, y0, y1):
    base = ob.col(cv, "blue", amount=12)
    cv.paint(cv.rect(0, y0, cv.S, y1), material("water", base, cv.S / 224), O["sea"], 0, M["water"], shade=False)


def clutter(cv: Canvas, y0, y1, n, kinds=("bush", "rock", "flowers")):
    """Unnamed background things: bushes, rocks, flower patches, rugs (colour/material/texture only)."""
    rng, S, s = cv.rng, cv.S, cv.S / 224
    for _ in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        x, y = rng.uniform(0, S), rng.uniform(y0, y1)
        r = S * rng.uniform(0.02, 0.06) * (0.5 + (y - y0) / max(y1 - y0, 1))
        if kind == "bush":
            cv.paint(
                cv.ellipse(x, y, r * 1.4, r), material("grass", ob.col(cv, "green") * 0.75, s * 0.6), 0, 0, M["grass"]
            )
        elif kind == "rock":
            cv.paint(cv.ellipse(x, y, r * 1.2, r * 0.8), plain(ob.col(cv, "grey", "brown"), 10))
        elif kind == "flowers":
            c = ob.col(cv, "red", "yellow", "pink", "purple", "white", "orange")
            cv.paint(
                cv.ellipse(x, y, r, r * 0.5),
                ob.pattern("dotted", ob.col(cv, "green") * 0.8, c, 4 * s),
                0,
                0,
                0,
                T["dotted"],
            )
        elif kind == "poster":
            region = cv.rect(x - r * 1.5, y - r * 2, x + r * 1.5, y + r * 2)
            ob.patterned(cv, region)
        elif kind == "pot":
            cv.paint(
                cv.ellipse(x, y, r, r * 0.8), material("metal", ob.col(cv, "grey", "red", "black"), s), 0, 0, M["metal"]
            )


def _place(cv: Canvas, items):
    """Draw ``(y_base, fn)`` items far to near."""
    for _, fn in sorted(items, key=lambda t: t[0]):
        fn()


def _depth(y, horizon, S):
    return 0.3 + 0.9 * (y - horizon) / max(S - horizon, 1)


def _stander(cv, kind, x, y, horizon):
    """Closure drawing an object of ``kind`` standing at (x, y), sized by depth."""
    S, rng = cv.S, cv.rng
    d = _depth(y, horizon, S)
    if kind == "person":
        return lambda: ob.person(cv, x, y, S * 0.32 * d * rng.uniform(0.8, 1.1))
    if kind == "tree":
        return lambda: ob.tree(cv, x, y, S * 0.55 * d * rng.uniform(0.7, 1.2))
    if kind == "car":
        return lambda: ob.car(cv, x - S * 0.2 * d, y, S * 0.4 * d * rng.uniform(0.8, 1.1))
    if kind == "lamp":
        return lambda: ob.lamp(cv, x, y, S * 0.5 * d * rng.uniform(0.8, 1.1))
    if kind == "fence":
        return lambda: ob.fence(cv, x - S * 0.3, x + S * 0.3, y, S * 0.12 * d)
    if kind == "house":
        return lambda: ob.house(cv, x - S * 0.15 * d, y, S * 0.3 * d * rng.uniform(0.8, 1.2), S * 0.22 * d)
    if kind == "boat":
        return lambda: ob.boat(cv, x - S * 0.15 * d, y, S * 0.3 * d)
    if kind == "bed":
        return lambda: ob.bed(cv, x - S * 0.35 * d, y, S * 0.7 * d)
    if kind == "table":
        return lambda: ob.table(cv, x - S * 0.15 * d, y, S * 0.3 * d, S * 0.15 * d)
    raise ValueError(kind)


def _extras(cv, horizon, y0, kinds, p=0.25):
    """Scene noise: now and then an object that does not belong to the scene."""
    rng, S = cv.rng, cv.S
    if rng.random() >= p:
        return []
    kind = kinds[int(rng.integers(len(kinds)))]
    y = rng.uniform(y0, S)
    return [(y, _stander(cv, kind, rng.uniform(0.1, 0.9) * S, y, horizon))]


def street(cv: Canvas):
    rng, S = cv.rng, cv.S
    hz = S * rng.uniform(0.35, 0.5)
    sky(cv, hz)
    road_top = S * rng.uniform(0.62, 0.75)
    walk = ob.col(cv, "grey", amount=8)
    if rng.random() < 0.5:
        cv.paint(cv.rect(0, hz, S, road_top), ob.pattern("grid", walk, walk * 0.7, 9 * S / 224), texture=T["grid"])
    else:
        cv.paint(cv.rect(0, hz, S, road_top), plain(walk, 6))
    x = rng.uniform(-0.1, 0.05) * S
    items = []
    while x < S:
        w = S * rng.uniform(0.2, 0.32)
        if rng.random() < 0.85:
            items.append((hz + 4, lambda x=x, w=w: ob.house(cv, x, hz + 4, w, w * rng.uniform(0.6, 1.0))))
        elif rng.random() < 0.7:
            items.append((hz + 4, _stander(cv, "tree", x + w / 2, hz + 4, hz)))
        x += w + S * rng.uniform(0.0, 0.06)
    ob.road(cv, road_top, S)
    for _ in range(int(rng.integers(1, 4))):
        y = rng.uniform(road_top + S * 0.08, S)
        items.append((y, _stander(cv, "car", rng.uniform(0.1, 0.9) * S, y, hz)))
    for kind, lo, hi in (("person", 0, 4), ("lamp", 0, 3), ("tree", 0, 2)):
        for _ in range(int(rng.integers(lo, hi))):
            y = rng.uniform(hz + S * 0.08, road_top + S * 0.02)
            items.append((y, _stander(cv, kind, rng.uniform(0, 1) * S, y, hz)))
    _place(cv, items + _extras(cv, hz, hz + S * 0.1, ["boat", "fence", "bed"]))


def forest(cv: Canvas):
    rng, S = cv.rng, cv.S
    hz = S * rng.uniform(0.3, 0.5)
    sky(cv, hz, clouds=(0, 3))
    mountains(cv, hz, int(rng.integers(0, 3)))
    ground(cv, hz, "grass")
    clutter(cv, hz, S, int(rng.integers(3, 9)))
    items = []
    for _ in range(int(rng.integers(5, 11))):
        y = rng.uniform(hz + 3, S * 1.05)
        items.append((y, _stander(cv, "tree", rng.uniform(-0.05, 1.05) * S, y, hz)))
    for kind, p in (("person", 0.4), ("fence", 0.15), ("house", 0.15)):
        if rng.random() < p:
            y = rng.uniform(hz + S * 0.1, S)
            items.append((y, _stander(cv, kind, rng.uniform(0.1, 0.9) * S, y, hz)))
    _place(cv, items + _extras(cv, hz, hz + S * 0.1, ["car", "lamp", "table"]))


def beach(cv: Canvas):
    rng, S = cv.rng, cv.S
    hz = S * rng.uniform(0.32, 0.5)
    shore = hz + S * rng.uniform(0.1, 0.25)
    sky(cv, hz, sun_p=0.7)
    sea(cv, hz, shore + 2)
    ground(cv, shore, "sand")
    clutter(cv, shore, S, int(rng.integers(0, 4)), kinds=("rock", "poster"))  # towels
    items = []
    for _ in range(int(rng.integers(0, 3))):
        y = rng.uniform(hz + 4, shore)
        items.append((y, _stander(cv, "boat", rng.uniform(0.1, 0.9) * S, y, hz)))
    for _ in range(int(rng.integers(1, 4))):
        y = rng.uniform(shore + S * 0.1, S)
        items.append((y, _stander(cv, "person", rng.uniform(0.05, 0.95) * S, y, hz)))
    if rng.random() < 0.3:
        y = rng.uniform(shore + S * 0.1, S)
        items.append((y, _stander(cv, "tree", rng.uniform(0, 1) * S, y, hz)))
    _place(cv, items + _extras(cv, hz, shore + S * 0.1, ["car", "lamp", "house", "bed"]))


def ski_slope(cv: Canvas):
    rng, S = cv.rng, cv.S
    hz = S * rng.uniform(0.28, 0.45)
    sky(cv, hz, clouds=(0, 3))
    mountains(cv, hz, int(rng.integers(1, 4)))
    ground(cv, hz, "snow")
    y_l, y_r = hz + rng.uniform(0.0, 0.2) * S, hz + rng.uniform(0.0, 0.2) * S
    snow = ob.jitter(rng, (225, 232, 245), 6)
    cv.paint(cv.polygon([(0, y_l), (S, y_r), (S, S), (0, S)]), material("snow", snow, S / 224), 0, 0, M["snow"])
    items = []
    for _ in range(int(rng.integers(1, 5))):
        y = rng.uniform(max(y_l, y_r) + 4, S)
        items.append((y, _stander(cv, "tree", rng.uniform(0, 1) * S, y, hz)))
    for _ in range(int(rng.integers(1, 4))):
        y = rng.uniform(max(y_l, y_r) + S * 0.1, S)
        items.append((y, _stander(cv, "person", rng.uniform(0.05, 0.95) * S, y, hz)))
    if rng.random() < 0.35:
        y = rng.uniform(max(y_l, y_r) + S * 0.1, S)
        items.append((y, _stander(cv, "fence", rng.uniform(0.2, 0.8) * S, y, hz)))
    _place(cv, items + _extras(cv, hz, hz + S * 0.2, ["car", "lamp", "house"]))


def harbour(cv: Canvas):
    rng, S = cv.rng, cv.S
    hz = S * rng.uniform(0.3, 0.45)
    quay = hz + S * rng.uniform(0.04, 0.08)
    sky(cv, hz)
    cv.paint(cv.rect(0, hz, S, quay), plain(ob.col(cv, "grey", "brown"), 6))
    x = rng.uniform(-0.1, 0.1) * S
    while x < S:
        w = S * rng.uniform(0.1, 0.18)
        if rng.random() < 0.8:
            ob.house(cv, x, quay, w, w * rng.uniform(0.6, 1.1))
        x += w + S * rng.uniform(0.0, 0.08)
    sea(cv, quay, S)
    items = []
    for _ in range(int(rng.integers(2, 5))):
        y = rng.uniform(quay + S * 0.08, S)
        items.append((y, _stander(cv, "boat", rng.uniform(0.05, 0.95) * S, y, hz)))
    if rng.random() < 0.5:  # pier with railing and maybe people
        top = S * rng.uniform(0.8, 0.9)
        cv.paint(cv.rect(0, top, S, S), material("wood", ob.col(cv, "brown"), S / 224), 0, 0, M["wood"])
        items.append((top + 1, _stander(cv, "fence", S / 2, top + 1, hz)))
        if rng.random() < 0.6:
            items.append((S, _stander(cv, "person", rng.uniform(0.1, 0.9) * S, S, hz)))
    _place(cv, items + _extras(cv, hz, quay + S * 0.1, ["car", "tree", "lamp"]))


def field(cv: Canvas):
    rng, S = cv.rng, cv.S
    hz = S * rng.uniform(0.35, 0.55)
    sky(cv, hz, sun_p=0.6)
    if rng.random() < 0.5:
        mountains(cv, hz, int(rng.integers(1, 3)))
    ground(cv, hz, "grass")
    clutter(cv, hz, S, int(rng.integers(2, 8)), kinds=("bush", "flowers", "flowers", "rock"))
    items = []
    for kind, p, lo in (
        ("fence", 0.7, 0.1),
        ("tree", 0.8, 0.0),
        ("house", 0.4, 0.0),
        ("person", 0.3, 0.2),
        ("car", 0.1, 0.2),
    ):
        if rng.random() < p:
            y = rng.uniform(hz + S * (0.03 + lo), S)
            items.append((y, _stander(cv, kind, rng.uniform(0.1, 0.9) * S, y, hz)))
    _place(cv, items + _extras(cv, hz, hz + S * 0.1, ["lamp", "boat", "bed", "table"]))


def _room(cv: Canvas, tiles: bool):
    rng, S, s = cv.rng, cv.S, cv.S / 224
    fl = S * rng.uniform(0.55, 0.72)
    wall = cv.rect(0, 0, S, fl)
    pastel = ("white", "yellow", "pink", "blue", "green", "grey", "orange", "purple")
    if tiles and rng.random() < 0.7:
        ob.patterned(
            cv,
            wall,
            kinds=["checkered", "grid"],
            names=("white", "blue", "grey", "yellow", "green"),
            period=rng.uniform(7, 12) * s,
        )
    elif rng.random() < 0.65:
        ob.patterned(
            cv,
            wall,
            kinds=["striped", "dotted", "wavy", "zigzagged", "grid", "banded", "scaly", "speckled"],
            names=pastel,
        )
    else:
        cv.paint(wall, plain(ob.col(cv, *pastel), 6))
    floor = cv.rect(0, fl, S, S)
    r = rng.random()
    if r < 0.45:
        cv.paint(floor, material("wood", ob.col(cv, "brown", "orange", "yellow"), s), O["floor"], 0, M["wood"])
    elif r < 0.75 or tiles:  # no carpet in kitchens
        c1, c2 = ob.two_colors(cv, ("white", "black", "grey", "red", "blue"))
        cv.paint(floor, ob.pattern("checkered", c1, c2, 12 * s, np.pi / 4), O["floor"], 0, 0, T["checkered"])
    else:
        cv.paint(floor, material("fabric", ob.col(cv, *COLOR_RGB), s), O["floor"], 0, M["fabric"])
    return fl


def bedroom(cv: Canvas):
    rng, S = cv.rng, cv.S
    fl = _room(cv, tiles=False)
    clutter(cv, S * 0.1, fl * 0.6, int(rng.integers(0, 3)), kinds=("poster",))
    items = []
    if rng.random() < 0.5:
        items.append(
            (fl + 2, lambda: ob.cabinet(cv, rng.uniform(0, 0.7) * S, fl * rng.uniform(0.2, 0.4), S * 0.25, fl * 0.8))
        )
    if rng.random() < 0.95:
        y = rng.uniform(fl + S * 0.12, S)
        items.append((y, _stander(cv, "bed", rng.uniform(0.3, 0.7) * S, y, fl * 0.5)))
    if rng.random() < 0.75:
        y = rng.uniform(fl + S * 0.05, S)
        items.append((y, _stander(cv, "lamp", rng.uniform(0.05, 0.95) * S, y, fl * 0.5)))
    for kind, p in (("table", 0.4), ("person", 0.25)):
        if rng.random() < p:
            y = rng.uniform(fl + S * 0.05, S)
            items.append((y, _stander(cv, kind, rng.uniform(0.1, 0.9) * S, y, fl * 0.5)))
    _place(cv, items + _extras(cv, fl * 0.5, fl + S * 0.05, ["tree", "car", "fence"], p=0.15))


def kitchen(cv: Canvas):
    rng, S = cv.rng, cv.S
    fl = _room(cv, tiles=True)
    x = rng.uniform(-0.1, 0.05) * S
    while x < S:  # counter row and upper cupboards
        w = S * rng.uniform(0.18, 0.3)
        ob.cabinet(cv, x, fl - S * 0.2, w, S * 0.2 + 2)
        if rng.random() < 0.6:
            ob.cabinet(cv, x, S * 0.05, w, S * 0.18)
        x += w + S * rng.uniform(0.0, 0.02)
    clutter(cv, fl - S * 0.25, fl - S * 0.22, int(rng.integers(0, 4)), kinds=("pot",))
    items = []
    if rng.random() < 0.7:
        y = rng.uniform(fl + S * 0.1, S)
        items.append((y, _stander(cv, "table", rng.uniform(0.2, 0.8) * S, y, fl * 0.5)))
    if rng.random() < 0.6:
        items.append(
            (0, lambda: ob.lamp(cv, rng.uniform(0.2, 0.8) * S, fl * rng.uniform(0.25, 0.45), S * 0.6, hanging=True))
        )
    if rng.random() < 0.4:
        y = rng.uniform(fl + S * 0.05, S)
        items.append((y, _stander(cv, "person", rng.uniform(0.1, 0.9) * S, y, fl * 0.5)))
    _place(cv, items + _extras(cv, fl * 0.5, fl + S * 0.05, ["tree", "bed", "car"], p=0.15))


COMPOSERS = {
    "street": street,
    "forest": forest,
    "beach": beach,
    "ski_slope": ski_slope,
    "bedroom": bedroom,
    "harbour": harbour,
    "field": field,
    "kitchen": kitchen,
}
assert list(COMPOSERS) == SCENES


def scene_of(seed: int, index: int) -> int:
    """Scene class of image ``index``: balanced classes; the rest of the randomness is per image."""
    return (index + seed) % len(SCENES)


def render_scene(seed: int, index: int, size: int = 224):
    """Render image ``index`` of the world ``seed``: (rgb uint8 [S, S, 3], layers, scene index)."""
    rng = np.random.default_rng([seed, index])
    scene = scene_of(seed, index)
    cv = Canvas(size, rng)
    COMPOSERS[SCENES[scene]](cv)
    rgb, layers = cv.finish()
    return rgb, layers, scene
