"""Text search over descriptions: WordNet expansion read from a tiny WordNet database written here
(the same file format as Debian's wordnet-base), and the plain-word fallback."""

import pytest

from unitscope.describe.search import HYPERNYM, HYPONYM, SYNONYM, WordNet, lexical_scores, positive_concepts

# synset: (lemmas, hypernyms, hyponyms)
SYNSETS = {
    "vehicle": (["vehicle"], [], ["car", "boat"]),
    "car": (["car", "auto", "automobile"], ["vehicle"], []),
    "boat": (["boat"], ["vehicle"], []),
    "canine": (["canine", "canid"], [], ["dog"]),
    "dog": (["dog", "domestic_dog"], ["canine"], []),
    "red": (["red", "redness", "scarlet"], [], []),
}


def write_wordnet(folder):
    """data.noun lines start with their own byte offset; index.noun maps lemmas to offsets."""
    folder.mkdir()
    names = list(SYNSETS)
    offsets, size = {}, 0
    for _ in range(2):  # offsets have fixed width, so one pass fixes them
        lines, size = [], len("  1 header line\n")
        for name in names:
            lemmas, up, down = SYNSETS[name]
            ptrs = [("@", p) for p in up] + [("~", p) for p in down]
            ptr_text = " ".join(f"{s} {offsets.get(p, 0):08d} n 0000" for s, p in ptrs)
            words = " ".join(f"{w} 0" for w in lemmas)
            line = f"{size:08d} 05 n {len(lemmas):02x} {words} {len(ptrs):03d} {ptr_text} | gloss\n"
            offsets[name] = size
            lines.append(line)
            size += len(line)
    (folder / "data.noun").write_text("  1 header line\n" + "".join(lines), encoding="latin-1")
    index = {}
    for name, (lemmas, _, _) in SYNSETS.items():
        for w in lemmas:
            index.setdefault(w, []).append(offsets[name])
    (folder / "index.noun").write_text(
        "  1 header line\n"
        + "".join(
            f"{w} n {len(o)} 0 {len(o)} 0 {' '.join(f'{x:08d}' for x in o)}  \n" for w, o in sorted(index.items())
        ),
        encoding="latin-1",
    )
    (folder / "noun.exc").write_text("mice mouse\n", encoding="latin-1")
    return WordNet(folder)


@pytest.fixture
def wn(tmp_path):
    return write_wordnet(tmp_path / "wordnet")


def test_reader(wn):
    lemmas, up, down = wn.synset(wn.synsets("car")[0])
    assert lemmas == ("car", "auto", "automobile")
    assert [wn.synset(o)[0][0] for o in up] == ["vehicle"]
    assert wn.base("dogs") == "dog" and wn.base("mice") == "mouse" and wn.base("autos") == "auto"


def test_paraphrases_find_their_concepts(wn):
    formulas = ["car", "(red AND car) OR tree", "boat", "dog", "window AND NOT dog", "tree"]
    assert lexical_scores("automobile", formulas, wn) == [SYNONYM, SYNONYM, 0, 0, 0, 0]
    assert lexical_scores("vehicle", formulas, wn) == [HYPONYM, HYPONYM, HYPONYM, 0, 0, 0]
    assert lexical_scores("canine", formulas, wn) == [0, 0, 0, HYPONYM, 0, 0]  # not the negated dog
    assert lexical_scores("dogs", formulas, wn) == [0, 0, 0, 1.0, 0, 0]
    assert lexical_scores("car", ["vehicle"], wn) == [HYPERNYM]
    assert lexical_scores("scarlet automobile", formulas, wn) == [SYNONYM / 2, SYNONYM, 0, 0, 0, 0]


def test_without_wordnet_words_and_singulars_match(tmp_path):
    missing = WordNet(tmp_path / "none")
    assert not missing.available
    assert lexical_scores("cars", ["car", "big_car", "tree"], missing) == [1.0, 1.0, 0.0]
    assert lexical_scores("automobile", ["car"], missing) == [0.0]


def test_positive_concepts():
    assert positive_concepts("(window AND house) AND NOT car") == ["window", "house"]
    assert positive_concepts("(red AND car) OR tree") == ["red", "car", "tree"]
    assert positive_concepts(None) == []
