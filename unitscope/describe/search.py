"""Text search over unit descriptions: words, their synonyms and the kinds of things they name.

    hits = search_units("runs/lite0", "canine")      # [{"layer", "unit", "description", "match", "f1", ...}]
    per_layer(hits)                                  # {"bn2": 12, ...}

A query matches a unit through the concepts its description asserts (a concept after AND NOT
does not count: "windows, not of cars" is no car unit). Each query word is expanded with WordNet
(Debian's ``wordnet-base``, read straight from its files, when installed): its synonyms
(weight 0.9: "automobile" -> car), the kinds of it (hyponyms, 0.8 for the first level down to
0.5: "canine" -> dog, "vehicle" -> car), and what it is a kind of (0.4, one level). Without
WordNet only the words themselves and their singulars match. A unit's score is the mean over
query words of the best weight any of its concepts reaches; ties go to the better held-out F1.

An embedding model is a plug-in: ``search_units(..., embed=f)`` with ``f(texts) -> [n, d]``
ranks by cosine similarity of the query and the descriptions instead (see docs/describe.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

WORDNET = Path(os.environ.get("UNITSCOPE_WORDNET", "/usr/share/wordnet"))
SYNONYM, HYPONYM, HYPERNYM = 0.9, 0.8, 0.4
_SUFFIXES = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
             ("ies", "y"), ("s", ""))


class WordNet:
    """The noun part of a WordNet database folder (``index.noun``, ``data.noun``), read lazily."""

    def __init__(self, folder: Path = WORDNET):
        self.folder = Path(folder)
        self.index: dict[str, list[int]] | None = None
        self.exceptions: dict[str, str] | None = None

    @property
    def available(self) -> bool:
        return (self.folder / "index.noun").is_file() and (self.folder / "data.noun").is_file()

    def _load(self) -> dict[str, list[int]]:
        if self.index is None:
            self.index = {}
            with open(self.folder / "index.noun", encoding="latin-1") as f:
                for line in f:
                    if line.startswith(" "):
                        continue
                    parts = line.split()
                    n_ptr = int(parts[3])
                    n_syn = int(parts[2])
                    self.index[parts[0]] = [int(x) for x in parts[4 + n_ptr + 2:4 + n_ptr + 2 + n_syn]]
        return self.index

    def synsets(self, lemma: str) -> list[int]:
        return self._load().get(lemma.lower(), [])

    @lru_cache(maxsize=65536)  # noqa: B019  (one WordNet per process)
    def synset(self, offset: int) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
        """(lemmas, hypernym offsets, hyponym offsets) of the noun synset at ``offset``."""
        with open(self.folder / "data.noun", "rb") as f:
            f.seek(offset)
            parts = f.readline().decode("latin-1").split(" | ")[0].split()
        w = int(parts[3], 16)
        lemmas = tuple(parts[4 + 2 * i].lower() for i in range(w))
        k = 4 + 2 * w
        n_ptr = int(parts[k])
        up, down = [], []
        for j in range(n_ptr):
            sym, off, pos = parts[k + 1 + 4 * j: k + 4 + 4 * j]
            if pos != "n":
                continue
            if sym in ("@", "@i"):
                up.append(int(off))
            elif sym in ("~", "~i"):
                down.append(int(off))
        return lemmas, tuple(up), tuple(down)

    def base(self, word: str) -> str:
        """The noun a word is a form of ("wolves" -> "wolf"), or the word."""
        word = word.lower()
        if self.synsets(word):
            return word
        if self.exceptions is None:
            exc = self.folder / "noun.exc"
            self.exceptions = dict(line.split()[:2] for line in exc.read_text(encoding="latin-1").splitlines()
                                   if len(line.split()) >= 2) if exc.is_file() else {}
        if word in self.exceptions:
            return self.exceptions[word]
        for suffix, repl in _SUFFIXES:
            if word.endswith(suffix) and self.synsets(word[: len(word) - len(suffix)] + repl):
                return word[: len(word) - len(suffix)] + repl
        return word

    def expand(self, word: str, senses: int = 3, depth: int = 4) -> dict[str, float]:
        """``{lemma: weight}`` for a query word: itself, synonyms, hyponyms, one level of hypernyms."""
        word = self.base(word)
        out = {word: 1.0}

        def add(lemmas: Iterable[str], weight: float) -> None:
            for lemma in lemmas:
                if out.get(lemma, 0) < weight:
                    out[lemma] = weight

        for offset in self.synsets(word)[:senses]:
            lemmas, up, down = self.synset(offset)
            add(lemmas, SYNONYM)
            for h in up:
                add(self.synset(h)[0], HYPERNYM)
            frontier, weight = list(down), HYPONYM
            for _ in range(depth):
                nxt = []
                for h in frontier:
                    lemmas_h, _, down_h = self.synset(h)
                    add(lemmas_h, weight)
                    nxt += down_h
                frontier, weight = nxt[:5000], max(0.5, weight - 0.1)
        return out


def singular(word: str) -> str:
    """A plain plural -> singular guess (for use without WordNet)."""
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            return word[: len(word) - len(suffix)] + repl
    return word


def positive_concepts(formula: str | None) -> list[str]:
    """Concept names a formula asserts (those after AND NOT are left out)."""
    if not formula:
        return []
    tokens = re.findall(r"AND NOT|AND|OR|[^\s()]+", formula)
    out, negate = [], False
    for t in tokens:
        if t in ("AND", "OR", "AND NOT"):
            negate = t == "AND NOT"
        else:
            if not negate:
                out.append(t.lower())
            negate = False
    return out


def _query_words(query: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9_]+", query.lower()) if w not in {"a", "an", "the", "of", "and", "or", "units", "unit"}]


def lexical_scores(query: str, formulas: list[str | None], wordnet: WordNet | None = None) -> list[float]:
    """Score of each description (by its formula) for ``query``, in [0, 1]."""
    wn = wordnet if wordnet is not None and wordnet.available else None
    words = _query_words(query)
    if not words:
        return [0.0] * len(formulas)
    phrase = "_".join(words)  # "big cat" is WordNet's big_cat
    groups = [phrase] if len(words) > 1 and wn is not None and wn.synsets(phrase) else words
    expansions = [wn.expand(w) if wn is not None else {w: 1.0, singular(w): 1.0} for w in groups]
    out = []
    for formula in formulas:
        names = positive_concepts(formula)
        have = set(names) | {p for n in names for p in n.split("_")}
        have |= {wn.base(h) if wn is not None else singular(h) for h in list(have)}
        out.append(sum(max((wt for lemma, wt in e.items() if lemma in have), default=0.0) for e in expansions)
                   / len(expansions))
    return out


def search_units(run: str | Path, query: str, *, layers: list[str] | None = None, kind: str = "pmi",
                 limit: int = 50, embed: Callable[[list[str]], Any] | None = None,
                 wordnet: WordNet | None = None) -> list[dict]:
    """Units of ``run`` whose ``kind`` descriptions match ``query``, best first."""
    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401

    with Catalog(Path(run) / "catalog.sqlite", create=False) as cat:
        if "descriptions" not in cat.tables():
            raise ValueError(f"{run} has no descriptions: run `unitscope describe {run}` first")
        rows = [r for r in cat.rows("descriptions", kind=kind) if r["description"]
                and (not layers or r["layer"] in layers)]
    if embed is not None:
        import torch

        vecs = torch.as_tensor(embed([query] + [r["description"] for r in rows]), dtype=torch.float32)
        vecs = torch.nn.functional.normalize(vecs, dim=1)
        scores = (vecs[1:] @ vecs[0]).tolist()
    else:
        scores = lexical_scores(query, [r["formula"] for r in rows], wordnet or WordNet())
    hits = [dict(r, match=s) for r, s in zip(rows, scores) if s > 0]
    hits.sort(key=lambda r: (-r["match"], -(r["f1"] or 0)))
    return hits[:limit] if limit else hits


def per_layer(hits: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in hits:
        out[h["layer"]] = out.get(h["layer"], 0) + 1
    return out
