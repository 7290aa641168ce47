"""Bases dissected like units (issue 27, items 2 and 4) on a layer built as a known sparse code: four
planted directions (orthonormal rows of a Hadamard matrix [4, 8], spread over every channel), each on where its own concept's mask is.
The SAE and ICA recover the directions, dissection labels their latents with the planted concepts
while the raw channels are mixtures, the basis source equals encoding the maps at once, and
ablating a direction changes the layer's output by exactly that direction's share."""

import json
import sqlite3

import numpy as np
import pytest
import torch

from unitscope.bases import fit_ica, fit_sae, stability
from unitscope.bases.source import SEP, BasisActivations, encode_maps, fit_layer_bases, parse_bases
from unitscope.dissect import ActivationSource, LabelSource, Options, dissect_sources
from unitscope.errors import UsageError

N, C, D, S = 48, 8, 4, 8  # images, channels, planted directions, map side


def planted():
    g = torch.Generator().manual_seed(0)
    h = torch.ones(1, 1)
    for _ in range(3):  # Sylvester's Hadamard matrix [8, 8]
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    dictionary = h[:D] / C**0.5  # [D, C], orthonormal rows; every channel mixes 2 or 4 directions
    masks = torch.rand(N, D, S, S, generator=g) < 0.1  # concept j on at a position
    codes = masks * (1 + torch.rand(N, D, S, S, generator=g))  # [N, D, S, S], sparse, in [1, 2) where on
    maps = torch.einsum("ndhw,dc->nchw", codes, dictionary)
    return dictionary, masks, maps


DICT, MASKS, MAPS = planted()


class Planted(ActivationSource):
    layers = ["planted"]
    model_name = "planted"

    def __len__(self):
        return N

    def shapes(self):
        return {"planted": (C, S, S)}

    def load(self, pos):
        return {"x": MAPS[pos]}

    def activations(self, batch):
        return {"planted": batch["x"]}

    def key(self):
        return {"model": "planted", "images": N}


class PlantedLabels(LabelSource):
    label_names = ["-", "c0", "c1", "c2", "c3"]
    label_category = torch.tensor([-1, 0, 0, 0, 0])
    categories = ["object"]

    def load(self, pos):
        planes = MASKS[pos].long() * torch.arange(1, D + 1)[:, None, None]  # [D, S, S]: label j + 1 where on
        return {
            "labels": planes,
            "image_labels": torch.zeros(0, dtype=torch.long),
            "category_present": torch.ones(1, dtype=torch.bool),
        }


def stream(batch=12):
    return [MAPS[i : i + batch] for i in range(0, N, batch)]


def matched(b):
    return stability(b.directions, DICT)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bases") / "run"
    specs = parse_bases(["units", "rotation", "ica:n=4", "sae:expansion=1:k=2:epochs=30:batch_size=128:lr=0.01"])
    src = fit_layer_bases(Planted(), specs, out, batch_size=12)
    opts = Options(quantile=0.1, topk=3, batch_size=12, exemplar_images=False, progress=False, null_draws=0)
    return out, src, dissect_sources(src, PlantedLabels(), out, opts)


def test_sae_and_ica_recover_the_planted_directions(tmp_path):
    assert matched(fit_ica(stream(), n_components=D, passes=40, seed=0)) > 0.99
    sae = fit_sae(stream(), tmp_path / "sae", expansion=4, k=2, epochs=30, batch_size=128, lr=0.01)
    # each planted direction has a latent within cos 0.9 of it (the other latents are spares)
    cos = torch.nn.functional.normalize(sae.directions, dim=1) @ DICT.t()
    assert cos.max(0).values.min() > 0.9


def test_dissect_labels_latents_with_the_planted_concepts_and_units_are_mixtures(run):
    out, src, result = run
    assert src.layers == ["planted", f"planted{SEP}rotation", f"planted{SEP}ica", f"planted{SEP}sae"]
    units = result.layers["planted"]
    for name in ("ica", "sae"):
        d = result.layers[f"planted{SEP}{name}"]
        best: dict[str, float] = {}
        for u in np.flatnonzero(d.detectors):
            best[d.concept(u)] = max(best.get(d.concept(u), 0.0), float(d.best_iou[u]))
        assert {"c0", "c1", "c2", "c3"} <= set(best), name
        assert min(best[c] for c in ("c0", "c1", "c2", "c3")) > 0.8, (name, best)
    assert units.best_iou.max() < 0.6  # a channel's top 10 % is a mixture of concepts
    with sqlite3.connect(out / "catalog.sqlite") as db:
        layers = {r[0] for r in db.execute("SELECT layer FROM dissection")}
    assert layers == set(src.layers)


def test_basis_source_equals_encoding_the_maps_at_once(run):
    out, src, _ = run
    _, _, sae = src.bases[f"planted{SEP}sae"]
    batch = {"x": MAPS[5:17], "pos": torch.arange(5, 17)}
    got = src.activations(batch)[f"planted{SEP}sae"]
    rows = MAPS.permute(0, 2, 3, 1).reshape(-1, C)  # every position of every image, (n, y, x)
    whole = sae.encode(rows).reshape(N, S, S, -1).permute(0, 3, 1, 2)
    assert torch.allclose(got, whole[5:17], atol=1e-6)
    assert torch.equal(encode_maps(sae, MAPS[:3]), whole[:3].contiguous())
    # saved with metrics, and loaded (not refitted) by a rerun
    meta = json.loads((out / "bases" / "l0" / "sae" / "basis.json").read_text())
    assert 0 <= meta["metrics"]["fvu"] < 0.2 and meta["metrics"]["mean_l0"] <= 2 and "stability" in meta["metrics"]
    again = fit_layer_bases(Planted(), parse_bases(["sae:expansion=1:k=2:epochs=30:batch_size=128:lr=0.01"]), out)
    assert torch.equal(again.bases[f"planted{SEP}sae"][2].directions, sae.directions)
    assert isinstance(again, BasisActivations) and again.layers == [f"planted{SEP}sae"]


def test_direction_ablation_removes_exactly_that_direction(run):
    _, src, _ = run
    _, _, ica = src.bases[f"planted{SEP}ica"]
    z = MAPS[:6]
    edited = ica.ablation([0, 2]).apply(z).reshape(2, 6, C, S, S)
    codes = encode_maps(ica, z)  # [6, D, S, S]
    for k, latent in enumerate([0, 2]):
        share = codes[:, latent, None] * ica.directions[latent][None, :, None, None]
        assert torch.allclose(z - edited[k], share, atol=1e-5)
        rest = encode_maps(ica, edited[k])  # the other directions' codes are unchanged, this one is ~0
        others = [j for j in range(D) if j != latent]
        assert torch.allclose(rest[:, others], codes[:, others], atol=1e-4)
        assert rest[:, latent].abs().max() < 1e-4
    # slicing the edits keeps the latent they ablate
    assert torch.equal(ica.ablation([0, 2])[1:2].apply(z), edited[1])


def test_latent_objective_is_the_pre_activation_code(run):
    _, src, _ = run
    _, _, sae = src.bases[f"planted{SEP}sae"]
    obj = sae.objective("planted", [1, 3])
    z = MAPS[:2]
    pre = (z.permute(0, 2, 3, 1).reshape(-1, C) - sae.dec_bias) @ sae.encoder.t() + sae.enc_bias
    pre = pre.reshape(2, S * S, -1).mean(1)
    assert torch.allclose(obj({"planted": z}), torch.stack([pre[0, 1], pre[1, 3]]), atol=1e-5)


def test_bad_basis_specs_are_usage_errors():
    with pytest.raises(UsageError, match="did you mean sae"):
        parse_bases(["sea"])
    with pytest.raises(UsageError, match="takes"):
        parse_bases(["sae:width=3"])
    assert [s.name for s in parse_bases(["sae:k=4", "sae:k=8"])] == ["sae,k=4", "sae,k=8"]
    assert np.isclose(parse_bases(["sae:k=4"])[0].options["k"], 4)


def test_direction_edits_run_in_the_ablation_tail_passes():
    from torch import nn

    from unitscope.ablate import cut_model
    from unitscope.ablate.evaluate import cache_layer, predictions
    from unitscope.bases import Basis

    class Net(nn.Module):  # logit 0: the layer's share along planted direction 0, summed over positions
        def __init__(self):
            super().__init__()
            self.feat = nn.Identity()

        def forward(self, x):
            s = torch.einsum("nchw,c->n", self.feat(x), DICT[0])
            return torch.stack([s, torch.full_like(s, 0.5)], 1)

    exact = Basis("pca", DICT.clone(), DICT.clone(), torch.zeros(D), torch.zeros(C))
    cut = cut_model(Net().eval(), "feat")
    cache = cache_layer(cut, [(MAPS[i], 0) for i in range(N)], batch_size=16)
    pred = predictions(cut, cache, exact.ablation([0, 1]), torch.arange(2))
    on = MASKS[:, 0].flatten(1).any(1)  # images where direction 0 is on somewhere
    assert torch.equal(pred[0], torch.ones(N, dtype=torch.long))  # without direction 0: logit 0 is 0 everywhere
    assert torch.equal(pred[1], torch.where(on, 0, 1))  # without direction 1: as before


def test_fit_cache_over_its_disk_budget_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--cache-gb"):
        fit_layer_bases(Planted(), parse_bases(["pca"]), tmp_path, cache_gb=1e-6)
    assert not (tmp_path / "bases").exists()


class PlantedLabels72(PlantedLabels):
    """The planted concepts' masks at 72 px (9x the map): the masks are upsampled, as on real data."""

    def load(self, pos):
        item = super().load(pos)
        item["labels"] = item["labels"].repeat_interleave(9, -1).repeat_interleave(9, -2)
        return item


def test_sparse_latents_dissect_as_whole_maps_do_and_encode_once_per_batch(tmp_path, monkeypatch):
    """TopK codes of the planted directions thresholded at 0 (quantile 0.2: each is on at ~10% of
    positions), so every cell of a pair that touches no code is 0: the windowed mask kernel skips
    those cells, and the catalog and counts equal those of upsampling whole maps. The activation
    cache holds the codes: the layer is encoded once per pass-1 batch, never in passes 2 and 3."""
    import unitscope.dissect.iou as iou
    from unitscope.bases import Basis
    from unitscope.runs import load_arrays

    calls = []

    class Counted(Basis):
        def encode(self, x):
            calls.append(len(x))
            return super().encode(x)

    sae = Counted("topk", DICT.clone(), DICT.clone(), torch.zeros(D), torch.zeros(C), k=D)
    spec = parse_bases(["sae"])[0]
    opts = Options(quantile=0.2, topk=3, batch_size=12, exemplar_images=False, progress=False, null_draws=2)

    def dissect(out):
        src = BasisActivations(Planted(), {f"planted{SEP}sae": ("planted", spec, sae)}, units=False)
        dissect_sources(src, PlantedLabels72(), out, opts)
        with sqlite3.connect(out / "catalog.sqlite") as db:
            rows = db.execute("SELECT * FROM dissection ORDER BY unit").fetchall()
        return rows, load_arrays(out / "arrays" / "l0.safetensors")

    rows, arrays = dissect(tmp_path / "windowed")
    assert calls == [12] * 4  # one encode per pass-1 batch (N = 48): passes 2 and 3 read the cache
    assert np.all(arrays["thresholds"] == 0) and len(rows) == D
    monkeypatch.setattr(iou, "exact_here", lambda *a, **k: False)  # the whole-map path
    whole_rows, whole = dissect(tmp_path / "whole")
    assert rows == whole_rows
    for name in ("iou", "intersection", "unit_area", "label_area", "p_value"):
        assert np.array_equal(arrays[name], whole[name]), name
    # each latent's best label is its planted concept (a mask "code > 0" spreads a cell over its neighbours)
    assert arrays["iou"][:, 1:].argmax(1).tolist() == list(range(D)) and arrays["iou"][:, 1:].max(1).min() > 0.3
