"""Object drawers of the probe world: each paints one labelled object with its parts.

    cv = Canvas(224, rng)
    house(cv, x=40, yb=150, w=60, h=45)     # wall, roof, door, windows; brick, wood or paint
    person(cv, x=120, yb=200, h=60)

Coordinates are canvas pixels; ``yb`` is where the object stands. Colours come from Broden's
colour names with jitter; materials and textures are chosen per object with fixed odds.
"""

from __future__ import annotations

import numpy as np

from unitscope.world.render import Canvas, jitter, material, pattern, plain, textured_material
from unitscope.world.vocab import COLOR_RGB, M, O, P, T

PATTERNS = ["striped", "dotted", "checkered", "zigzagged", "grid", "wavy", "speckled", "scaly", "banded"]


def col(cv: Canvas, *names: str, amount: float = 14.0) -> np.ndarray:
    return jitter(cv.rng, COLOR_RGB[names[int(cv.rng.integers(len(names)))]], amount)


def two_colors(cv: Canvas, names=tuple(COLOR_RGB)) -> tuple[np.ndarray, np.ndarray]:
    i, j = cv.rng.choice(len(names), 2, replace=False)
    return jitter(cv.rng, COLOR_RGB[names[i]]), jitter(cv.rng, COLOR_RGB[names[j]])


def patterned(
    cv: Canvas, region, obj=0, part=0, kinds=PATTERNS, names=tuple(COLOR_RGB), period=None, mat: str | None = None
) -> None:
    """Paint ``region`` with a random two-colour texture (optionally carrying a material look)."""
    rng = cv.rng
    kind = kinds[int(rng.integers(len(kinds)))]
    c1, c2 = two_colors(cv, names)
    period = period or rng.uniform(5, 10) * cv.S / 224
    angle = rng.choice([0.0, 0.0, np.pi / 2, np.pi / 4, -np.pi / 4])
    if mat:
        surf = textured_material(mat, kind, c1, c2, period, cv.S / 224, angle)
    else:
        surf = pattern(kind, c1, c2, period, angle)
    cv.paint(region, surf, obj=obj, part=part, material=M[mat] if mat else 0, texture=T[kind])


def house(cv: Canvas, x, yb, w, h):
    rng, s, o = cv.rng, cv.S / 224, O["house"]
    wall = cv.rect(x, yb - h, x + w, yb)
    r = rng.random()
    if r < 0.4:
        cv.paint(wall, material("brick", col(cv, "red", "brown", "orange"), s), o, P["wall"], M["brick"])
    elif r < 0.65:
        cv.paint(wall, material("wood", col(cv, "brown", "white", "blue", "red", "yellow"), s), o, P["wall"], M["wood"])
    else:
        cv.paint(wall, plain(col(cv, "white", "yellow", "pink", "blue", "grey", "orange", "green")), o, P["wall"])
    ov, rh = w * rng.uniform(0.05, 0.15), h * rng.uniform(0.4, 0.8)
    if rng.random() < 0.6:
        pts = [(x - ov, yb - h), (x + w + ov, yb - h), (x + w / 2, yb - h - rh)]
    else:
        pts = [(x - ov, yb - h), (x + w + ov, yb - h), (x + w * 0.8, yb - h - rh), (x + w * 0.2, yb - h - rh)]
    roof = cv.polygon(pts)
    if rng.random() < 0.5:
        c1 = col(cv, "red", "brown", "black", "grey", "orange")
        cv.paint(roof, pattern("scaly", c1, c1 * 0.55, 7 * s), o, P["roof"], texture=T["scaly"])
    else:
        cv.paint(roof, plain(col(cv, "red", "brown", "black", "grey", "blue")), o, P["roof"])
    dw, dh = w * rng.uniform(0.15, 0.25), h * rng.uniform(0.4, 0.6)
    dx = x + rng.uniform(0.1, 0.9 - dw / w) * w
    if rng.random() < 0.6:
        cv.paint(cv.rect(dx, yb - dh, dx + dw, yb), material("wood", col(cv, "brown"), s), o, P["door"], M["wood"])
    else:
        cv.paint(
            cv.rect(dx, yb - dh, dx + dw, yb), plain(col(cv, "red", "blue", "green", "black", "white")), o, P["door"]
        )
    glass = col(cv, "blue", "yellow", "black", "white")
    nx, ny = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    ww, wh = w / (2 * nx + 1), h / (2.6 * ny + 1)
    for i in range(nx):
        for j in range(ny):
            wx, wy = x + ww * (2 * i + 1), yb - h + wh * (2 * j + 0.7)
            if dx - ww < wx < dx + dw and wy + wh > yb - dh:
                continue
            cv.paint(cv.rect(wx, wy, wx + ww, wy + wh), plain(glass, 3), o, P["window"])


def tree(cv: Canvas, x, yb, h):
    rng, o = cv.rng, O["tree"]
    tw = max(2.0, h * rng.uniform(0.07, 0.12))
    cv.paint(
        cv.rect(x - tw / 2, yb - h * 0.55, x + tw / 2, yb),
        material("wood", col(cv, "brown", amount=8), cv.S / 224 * 0.5),
        o,
        P["trunk"],
        M["wood"],
    )
    leaf = col(cv, "green", "green", "green", "orange", "yellow", "red")
    if rng.random() < 0.35:  # pine
        parts = [
            cv.polygon(
                [
                    (x - h * 0.3 * (1 - k * 0.25), yb - h * (0.25 + 0.22 * k)),
                    (x + h * 0.3 * (1 - k * 0.25), yb - h * (0.25 + 0.22 * k)),
                    (x, yb - h * (0.6 + 0.2 * k)),
                ]
            )
            for k in range(3)
        ]
        leaf = col(cv, "green", amount=10) * 0.7
    else:
        parts = [
            cv.ellipse(
                x + rng.uniform(-0.15, 0.15) * h,
                yb - h * rng.uniform(0.6, 0.75),
                h * rng.uniform(0.18, 0.3),
                h * rng.uniform(0.15, 0.25),
            )
            for _ in range(3)
        ]
    crown = cv.union(*parts)
    cv.paint(crown, plain(leaf, 18), o, P["crown"])


def car(cv: Canvas, x, yb, w):
    rng, s, o = cv.rng, cv.S / 224, O["car"]
    paint = col(cv, "red", "blue", "white", "black", "grey", "yellow", "green", "orange", "purple", "pink")
    bh, r = w * 0.22, w * 0.11
    body = cv.rect(x, yb - r - bh, x + w, yb - r * 0.6)
    cab = cv.polygon(
        [
            (x + w * 0.2, yb - r - bh + 1),
            (x + w * 0.3, yb - r - bh - w * 0.18),
            (x + w * 0.72, yb - r - bh - w * 0.18),
            (x + w * 0.85, yb - r - bh + 1),
        ]
    )
    cv.paint(cv.union(body, cab), material("metal", paint, s), o, P["body"], M["metal"])
    if rng.random() < 0.2:
        c2 = col(cv, "white", "black", "yellow")
        cv.paint(cv.rect(x, yb - r - bh * 0.6, x + w, yb - r - bh * 0.35), plain(c2), o, P["body"], M["metal"])
    glass = col(cv, "blue", "grey", "black", amount=8)
    top, bot = yb - r - bh - w * 0.15, yb - r - bh - 1
    cv.paint(
        cv.polygon([(x + w * 0.29, bot), (x + w * 0.34, top), (x + w * 0.49, top), (x + w * 0.49, bot)]),
        plain(glass, 3),
        o,
        P["window"],
    )
    cv.paint(
        cv.polygon([(x + w * 0.53, bot), (x + w * 0.53, top), (x + w * 0.69, top), (x + w * 0.78, bot)]),
        plain(glass, 3),
        o,
        P["window"],
    )
    for cx in (x + w * 0.22, x + w * 0.78):
        cv.paint(cv.ellipse(cx, yb - r, r, r), plain(col(cv, "black", amount=6), 3), o, P["wheel"])
        cv.paint(cv.ellipse(cx, yb - r, r * 0.45, r * 0.45), plain(col(cv, "grey", amount=6), 3), o, P["wheel"])


def person(cv: Canvas, x, yb, h):
    rng, o = cv.rng, O["person"]
    legs = col(cv, "blue", "black", "brown", "grey")
    lw = h * 0.085
    for dx in (-lw * 1.1, lw * 0.1):
        cv.paint(cv.rect(x + dx, yb - h * 0.47, x + dx + lw, yb), plain(legs), o, P["leg"], M["fabric"])
    aw = h * 0.06
    skin = col(cv, "pink", "brown", "orange", amount=10) * rng.uniform(0.7, 1.0)
    for ax in (x - h * 0.17 - aw * 0.2, x + h * 0.17 - aw * 0.8):
        cv.paint(cv.rect(ax, yb - h * 0.78, ax + aw, yb - h * 0.45), plain(skin), o, P["arm"])
    torso = cv.rect(x - h * 0.14, yb - h * 0.8, x + h * 0.14, yb - h * 0.44)
    if rng.random() < 0.45:
        patterned(cv, torso, o, P["torso"], kinds=PATTERNS, period=h * rng.uniform(0.06, 0.1), mat="fabric")
    else:
        cv.paint(torso, material("fabric", col(cv, *COLOR_RGB), cv.S / 224 * 0.6), o, P["torso"], M["fabric"])
    cv.paint(cv.ellipse(x, yb - h * 0.9, h * 0.085, h * 0.1), plain(skin, 3), o, P["head"])
    cv.paint(
        cv.ellipse(x, yb - h * 0.96, h * 0.085, h * 0.045), plain(col(cv, "black", "brown", "yellow")), o, P["head"]
    )


def boat(cv: Canvas, x, yw, w):
    rng, s, o = cv.rng, cv.S / 224, O["boat"]
    hh = w * 0.16
    hull = cv.polygon([(x, yw - hh), (x + w, yw - hh), (x + w * 0.85, yw + hh * 0.3), (x + w * 0.12, yw + hh * 0.3)])
    if rng.random() < 0.5:
        cv.paint(hull, material("wood", col(cv, "brown", "white", "red", "blue"), s * 0.6), o, P["hull"], M["wood"])
    else:
        cv.paint(hull, material("metal", col(cv, "white", "red", "blue", "grey", "black"), s), o, P["hull"], M["metal"])
    if rng.random() < 0.75:
        mx = x + w * rng.uniform(0.4, 0.55)
        mh = w * rng.uniform(0.7, 1.1)
        cv.paint(
            cv.rect(mx - max(1.0, w * 0.02), yw - hh - mh, mx + max(1.0, w * 0.02), yw - hh),
            plain(col(cv, "brown", "grey", "white")),
            o,
            P["mast"],
        )
        sail = cv.polygon(
            [
                (mx + w * 0.03, yw - hh - mh * 0.95),
                (mx + w * 0.03, yw - hh - 2),
                (mx + w * rng.uniform(0.35, 0.5), yw - hh - 2),
            ]
        )
        if rng.random() < 0.3:
            patterned(
                cv,
                sail,
                o,
                P["sail"],
                kinds=["striped", "banded"],
                mat="fabric",
                names=("red", "white", "blue", "yellow"),
            )
        else:
            cv.paint(
                sail,
                material("fabric", col(cv, "white", "white", "red", "yellow", "orange"), s * 0.6),
                o,
                P["sail"],
                M["fabric"],
            )


def lamp(cv: Canvas, x, yb, h, hanging: bool = False):
    rng, s, o = cv.rng, cv.S / 224, O["lamp"]
    pw = max(1.5, h * 0.035)
    metal = col(cv, "black", "grey", "white", "brown")
    sw, sh = h * rng.uniform(0.14, 0.22), h * rng.uniform(0.12, 0.18)
    if hanging:  # from the ceiling (yb is the shade's bottom)
        cv.paint(cv.rect(x - pw / 2, 0, x + pw / 2, yb - sh), material("metal", metal, s), o, P["pole"], M["metal"])
        top = yb - sh
    else:
        cv.paint(cv.rect(x - pw / 2, yb - h, x + pw / 2, yb), material("metal", metal, s), o, P["pole"], M["metal"])
        cv.paint(cv.ellipse(x, yb - 1, h * 0.08, h * 0.025), material("metal", metal, s), o, P["pole"], M["metal"])
        top = yb - h - sh * 0.7
    shade = cv.polygon([(x - sw * 0.5, top), (x + sw * 0.5, top), (x + sw, top + sh), (x - sw, top + sh)])
    if rng.random() < 0.5:
        cv.paint(
            shade,
            material("fabric", col(cv, "white", "yellow", "orange", "pink", "green", "red"), s * 0.5),
            o,
            P["shade"],
            M["fabric"],
        )
    else:
        cv.paint(shade, material("metal", metal, s), o, P["shade"], M["metal"])
    cv.paint(cv.ellipse(x, top + sh + 1, sw * 0.35, sh * 0.25), plain(col(cv, "yellow", "white")), o, P["shade"])


def bed(cv: Canvas, x, yb, w):
    rng, s, o = cv.rng, cv.S / 224, O["bed"]
    wood = material("wood", col(cv, "brown", "white", "black", "grey"), s * 0.6)
    hb_h = w * rng.uniform(0.45, 0.6)
    left = rng.random() < 0.5
    hx = x if left else x + w * 0.92
    cv.paint(cv.rect(hx, yb - hb_h, hx + w * 0.08, yb), wood, o, P["headboard"], M["wood"])
    mx0, mx1 = (x + w * 0.08, x + w) if left else (x, x + w * 0.92)
    cv.paint(cv.rect(mx0, yb - w * 0.12, mx1, yb), wood, o, 0, M["wood"])
    blanket = cv.rect(mx0, yb - w * 0.3, mx1, yb - w * 0.1)
    if rng.random() < 0.6:
        patterned(
            cv,
            blanket,
            o,
            P["blanket"],
            kinds=["checkered", "striped", "dotted", "zigzagged", "wavy", "grid", "speckled"],
            mat="fabric",
            period=w * rng.uniform(0.06, 0.12),
        )
    else:
        cv.paint(blanket, material("fabric", col(cv, *COLOR_RGB), s), o, P["blanket"], M["fabric"])
    px = mx0 + w * 0.12 if left else mx1 - w * 0.12
    cv.paint(
        cv.ellipse(px, yb - w * 0.33, w * 0.1, w * 0.055),
        material("fabric", col(cv, "white", "pink", "yellow", "blue"), s * 0.5),
        o,
        P["pillow"],
        M["fabric"],
    )


def table(cv: Canvas, x, yb, w, h):
    rng, s, o = cv.rng, cv.S / 224, O["table"]
    kind = "wood" if rng.random() < 0.65 else "metal"
    surf = material(kind, col(cv, "brown", "brown", "white", "grey", "black"), s * 0.6)
    lw = max(1.5, w * 0.06)
    for lx in (x + w * 0.06, x + w * 0.94 - lw):
        cv.paint(cv.rect(lx, yb - h, lx + lw, yb), surf, o, P["leg"], M[kind])
    cv.paint(cv.rect(x, yb - h - max(2.0, h * 0.12), x + w, yb - h + 1), surf, o, P["tabletop"], M[kind])


def cabinet(cv: Canvas, x, y0, w, h):
    rng, s, o = cv.rng, cv.S / 224, O["cabinet"]
    kind = ["wood", "metal", ""][int(rng.integers(3))]
    base = col(cv, "brown", "white", "grey", "blue", "green", "yellow", "red")
    surf = material(kind, base, s * 0.6) if kind else plain(base)
    cv.paint(cv.rect(x, y0, x + w, y0 + h), surf, o, 0, M.get(kind, 0))
    nd = int(rng.integers(1, 3))
    g = max(1.0, w * 0.03)
    dw = (w - g * (nd + 1)) / nd
    knob = col(cv, "black", "grey", "white")
    for i in range(nd):
        dx = x + g + i * (dw + g)
        cv.paint(cv.rect(dx, y0 + g, dx + dw, y0 + h - g), surf, o, P["door"], M.get(kind, 0))
        kx = dx + (dw * 0.8 if i % 2 == 0 else dw * 0.15)
        cv.paint(cv.rect(kx, y0 + h * 0.4, kx + max(1.0, w * 0.04), y0 + h * 0.55), plain(knob), o, P["door"])


def mountain(cv: Canvas, xc, yb, w, h):
    rng, s, o = cv.rng, cv.S / 224, O["mountain"]
    px = xc + rng.uniform(-0.15, 0.15) * w
    left = [(xc - w / 2, yb)] + [
        (xc - w / 2 + (px - xc + w / 2) * t, yb - h * t + rng.uniform(-0.06, 0.06) * h) for t in (0.35, 0.7)
    ]
    right = [(px + (xc + w / 2 - px) * t, yb - h * (1 - t) + rng.uniform(-0.06, 0.06) * h) for t in (0.3, 0.65)]
    pts = left + [(px, yb - h)] + right + [(xc + w / 2, yb)]
    rock = col(cv, "grey", "brown", "purple", "blue", "green", amount=10) * rng.uniform(0.55, 0.85)
    cv.paint(cv.polygon(pts), plain(rock, 12), o)
    if rng.random() < 0.7:
        f = rng.uniform(0.25, 0.45)
        cap = [(px, yb - h), (px + (xc + w / 2 - px) * f, yb - h * (1 - f))]
        for k in range(4, 0, -1):
            cap.append(
                (
                    px + (xc + w / 2 - px) * f * k / 5 - (px - xc + w / 2) * f * (5 - k) / 5,
                    yb - h * (1 - f * (0.6 + 0.4 * (k % 2))),
                )
            )
        cap.append((px - (px - xc + w / 2) * f, yb - h * (1 - f)))
        cv.paint(cv.polygon(cap), material("snow", col(cv, "white", amount=6), s), o, 0, M["snow"])


def sun(cv: Canvas, x, y, r):
    cv.paint(cv.ellipse(x, y, r, r), plain(col(cv, "yellow", "orange", "white", amount=8), 3), O["sun"], shade=False)


def cloud(cv: Canvas, x, y, w):
    rng = cv.rng
    parts = [
        cv.ellipse(
            x + rng.uniform(-0.4, 0.4) * w,
            y + rng.uniform(-0.12, 0.12) * w,
            w * rng.uniform(0.2, 0.35),
            w * rng.uniform(0.12, 0.2),
        )
        for _ in range(int(rng.integers(3, 6)))
    ]
    cv.paint(cv.union(*parts), plain(col(cv, "white", "white", "grey", amount=8), 6), O["cloud"])


def fence(cv: Canvas, x0, x1, yb, h):
    rng, s = cv.rng, cv.S / 224
    kind = "wood" if rng.random() < 0.65 else "metal"
    base = col(cv, "brown", "white", "brown") if kind == "wood" else col(cv, "grey", "black", "orange")
    sp = h * rng.uniform(0.35, 0.6)
    pw = sp * rng.uniform(0.3, 0.55)
    pieces = [
        cv.polygon([(px, yb), (px, yb - h * 0.85), (px + pw / 2, yb - h), (px + pw, yb - h * 0.85), (px + pw, yb)])
        for px in np.arange(x0, x1, sp)
    ]
    rh = max(1.5, h * 0.1)
    pieces += [cv.rect(x0, yb - h * f, x1, yb - h * f + rh) for f in (0.7, 0.35)]
    cv.paint(cv.union(*pieces), material(kind, base, s * 0.5), O["fence"], 0, M[kind])


def road(cv: Canvas, y0, y1):
    rng, s = cv.rng, cv.S / 224
    cv.paint(cv.rect(0, y0, cv.S, y1), plain(col(cv, "grey", amount=6) * rng.uniform(0.45, 0.7), 8), O["road"])
    ym, dash = (y0 + y1) / 2, 18 * s
    mark = col(cv, "white", "yellow", amount=6)
    for x in np.arange(rng.uniform(-dash, 0), cv.S, 2 * dash):
        cv.paint(cv.rect(x, ym - 1.5 * s, x + dash, ym + 1.5 * s), plain(mark, 3), O["road"])
