"""Formulas as short English phrases.

    render([("window", "part"), ("house", "object"), ("car", "object")], [FIRST, AND, AND_NOT])
    # 'windows of houses, not of cars'
    render([("crown", "part"), ("top", "position"), ("edge", "position")], [FIRST, AND, AND])
    # 'the top edge of crowns'
    render([("red", "color"), ("car", "object"), ("tree", "object")], [FIRST, AND, OR])
    # 'red cars or trees'

A conjunction is one noun phrase: parts (the head, "of" their objects) or objects, else a
material or colour; colours and textures go before the head as adjectives, a material after
it ("houses of brick"), a scene at the end ("in beach scenes"), positions before it ("the top
edge of ..."). OR joins phrases with "or"; AND NOT adds ", not X" (", not of X" when X is an
object and the phrase names parts of something; ", not their X" for a part of the phrase's object). The same renderer captions the probe world's
generated exemplar sets, so a captioner trained on them speaks this language too.
"""

from __future__ import annotations

from collections.abc import Sequence

from unitscope.describe.formulas import AND, AND_NOT, OR

# nouns that take no plural, and irregular plurals
_MASS = {
    "sky",
    "sea",
    "road",
    "floor",
    "grass",
    "water",
    "sand",
    "snow",
    "food",
    "kitchenware",
    "space",
    "sea_life",
    "fish",
    "sheep",
    "deer",
    "cattle",
    "shellfish",
    "baked_food",
    "wood",
    "metal",
    "brick",
    "fabric",
    "concrete",
    "dirt",
    "gravel",
    "rock",
    "stone",
    "tile",
    "bark",
    "leaves",
    "optics",
    "herb",
    "citrus",
}
_IRREGULAR = {"person": "people", "leaf": "leaves", "shelf": "shelves", "mouse": "mice", "child": "children"}
_HEADS = ("part", "object")
_ADJECTIVES = ("color", "texture")


def words(name: str) -> str:
    return name.replace("_", " ").replace("-", " ")


def plural(name: str) -> str:
    """``big_cat`` -> ``big cats``; mass nouns stay."""
    if name in _MASS:
        return words(name)
    if name in _IRREGULAR:
        return _IRREGULAR[name]
    head, _, last = name.rpartition("_")
    if last in _IRREGULAR:
        out = _IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh", "z")):
        out = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        out = last[:-1] + "ies"
    else:
        out = last + "s"
    return words(f"{head}_{out}" if head else out)


def _and_list(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _positions(names: Sequence[str]) -> str:
    """``["top", "edge"]`` -> ``"the top edge of"``."""
    vert = next((n for n in names if n in ("top", "bottom")), "")
    side = next((n for n in names if n in ("left", "right")), "")
    edge = " edge" if "edge" in names else ""
    if vert and side:
        head = f"{vert} {side}{edge}"
    elif vert or side:
        head = (vert or side) + (edge or ("" if vert else " side"))
    else:
        head = "centre" if "centre" in names else "edge"
    return f"the {head} of"


def noun_phrase(concepts: Sequence[tuple[str, str]]) -> str:
    """One conjunction of concepts ``(name, category)`` as a noun phrase."""
    by: dict[str, list[str]] = {}
    for name, cat in concepts:
        by.setdefault(cat, []).append(name)
    adjectives = [words(n) for c in _ADJECTIVES for n in by.get(c, [])]
    materials = [words(n) for n in by.get("material", [])]
    parts, objects = by.get("part", []), by.get("object", [])
    if parts:
        head = _and_list([plural(p) for p in parts])
        if objects:
            head += " of " + _and_list([plural(o) for o in objects])
    elif objects:
        head = _and_list([plural(o) for o in objects])
    elif materials:
        head, materials = _and_list(materials), []
    elif adjectives:
        head, adjectives = _and_list(adjectives), []
        if "position" in by:
            head += " regions"
    else:
        head = "regions"
    phrase = " ".join(adjectives + [head]) if adjectives else head
    if materials:
        phrase += " of " + _and_list(materials)
    if "position" in by:
        phrase = f"{_positions(by['position'])} {phrase}"
    for cat, names in by.items():
        if cat not in _HEADS + _ADJECTIVES + ("material", "position", "scene"):
            phrase += " with " + _and_list([words(n) for n in names])  # categories we do not know
    if "scene" in by:
        phrase += " in " + _and_list([words(n) for n in by["scene"]]) + " scenes"
    return phrase


def render(concepts: Sequence[tuple[str, str]], ops: Sequence[int]) -> str:
    """A left-to-right formula (``ops[0]`` ignored; see :mod:`.formulas`) as a phrase."""
    group = [concepts[0]]
    done = ""  # the phrase of everything before an OR / AND NOT
    for (name, cat), op in zip(concepts[1:], ops[1:]):
        if op == AND and not done:
            group.append((name, cat))
        elif op == AND and cat == "position":  # (a OR b) AND top: "the top of a or b"
            done = f"{_positions([name])} {done}"
        elif op == AND:
            done = f"{done}, only {noun_phrase([(name, cat)])}"
        elif op == OR:
            done = (done or noun_phrase(group)) + " or " + noun_phrase([(name, cat)])
            group = []
        elif op == AND_NOT:
            base = done or noun_phrase(group)
            of = cat == "object" and any(c == "part" for _, c in group)
            their = cat == "part" and any(c == "object" for _, c in group) and not any(c == "part" for _, c in group)
            done = (
                f"{base}, not {'of ' if of else ''}{'their ' if their else ''}"
                f"{plural(name) if cat in _HEADS else noun_phrase([(name, cat)])}"
            )
            group = []
    return done or noun_phrase(group)
