"""The fair single-label baseline (kind ``fair_label``): the dissection's rule (the best IoU at its
threshold T_k) counted on the search images only. A planted unit whose dissection label wins only
through the held-out images gets another fair label, and both are scored on the held-out images
exactly as a hand computation says."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers.planted import dissect_planted
from unitscope.models import ModelInfo
from unitscope.world.vocab import color_labels

HERE = str(Path(__file__))


def _names(x: torch.Tensor) -> torch.Tensor:
    """``[N, 32, 32]`` the world's colour label numbers of images ``x [N, 3, 64, 64]`` in [0, 1]."""
    rgb = (x * 255).round().clamp(0, 255)
    half = (F.avg_pool2d(rgb, 2) + 0.5).floor().clamp(0, 255).to(torch.uint8)  # as the world names colours
    return torch.from_numpy(color_labels(half.permute(0, 2, 3, 1).numpy()).astype(np.int64))


class LeakyUnits(nn.Module):
    """Unit 0 fires (1 + a ramp) on blue in the held-out images (``pos % 5 == 4``, known by a
    fingerprint of their pixels) and on red in one search image; unit 1 on blue everywhere."""

    def __init__(self, red: int, blue: int, held: torch.Tensor, one: torch.Tensor, weight: torch.Tensor):
        super().__init__()
        self.numbers = (red, blue)
        self.register_buffer("held", held)  # [6] fingerprints of the held-out images
        self.register_buffer("one", one)  # [1] fingerprint of the search image where green fires
        self.register_buffer("weight", weight)  # [3, 64, 64]
        self.feat = nn.Identity()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fp = (x.double() * self.weight).sum((1, 2, 3))
        held = ((fp[:, None] - self.held[None]).abs() < 1e-3).any(1)[:, None, None]
        one = ((fp[:, None] - self.one[None]).abs() < 1e-3).any(1)[:, None, None]
        names = _names(x)
        red, blue = self.numbers
        fires = torch.stack([((names == blue) & held) | ((names == red) & one), names == blue], 1).float()
        ramp = torch.linspace(0, 1e-3, fires.shape[-1]).view(1, 1, 1, -1)
        return self.head(self.feat(fires * (1 + ramp)).mean(dim=(2, 3)))


def leaky_units(world: str) -> nn.Module:
    from unitscope.data import BrodenDataset

    ds = BrodenDataset(world, validate="none")
    names = ds.label_names
    images = torch.stack([torch.from_numpy(np.asarray(ds.load_image(p).convert("RGB")).copy()) for p in range(len(ds))])
    x = images.permute(0, 3, 1, 2).float() / 255  # [N, 3, 64, 64]: what the model sees (mean 0, std 1)
    weight = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fp = (x.double() * weight).sum((1, 2, 3))
    pos = torch.arange(len(ds))
    search = pos % 5 != 4
    red = (_names(x) == names.index("red")).flatten(1).sum(1)
    one = int(pos[search][red[search].argmax()])  # the search image with the most red
    model = LeakyUnits(names.index("red"), names.index("blue"), fp[~search], fp[one : one + 1], weight)
    info = ModelInfo("planted-leaky", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (3, 64, 64), ["a", "b"], ["feat"])
    object.__setattr__(model, "unitscope_info", info)
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from unitscope.models import create_model
    from unitscope.world import make_world

    world = make_world(tmp_path_factory.mktemp("world") / "w64", n=30, size=64, seed=3, workers=1, progress=False)
    model = create_model(f"{HERE}:leaky_units", world=str(world))
    return dissect_planted(model, world, tmp_path_factory.mktemp("run") / "run")


def _concepts(ds, positions: list[int]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every label's pixels ``[n, 32, 32]`` at ``positions``, read by hand from the planes (image-level
    labels: the whole image), and the label names."""
    items = [ds.get(p, image=False) for p in positions]
    out = {}
    for n, name in enumerate(ds.label_names):
        if n == 0:
            continue
        planes = torch.stack([(torch.as_tensor(it["labels"]) == n).any(0) for it in items])
        whole = torch.tensor([n in torch.as_tensor(it["image_labels"]).tolist() for it in items])
        out[name] = planes | whole[:, None, None]
    return out, ds.label_names


def test_fair_label_is_chosen_without_the_held_out_images(run):
    import json

    from unitscope.data import BrodenDataset
    from unitscope.describe.exemplars import unit_maps
    from unitscope.describe.run import Options, describe_run, held_out
    from unitscope.dissect import load_layer_arrays

    rows = describe_run(run, opts=Options(quantile=0.5, draws=0, progress=False))["feat"]
    ds = BrodenDataset(json.loads((run / "config.json").read_text())["data"], validate="none")
    t = torch.as_tensor(load_layer_arrays(run, "feat")["thresholds"]).float()
    search = torch.nonzero(~held_out(30)).flatten().tolist()
    held = torch.nonzero(held_out(30)).flatten().tolist()
    assert held == [4, 9, 14, 19, 24, 29] and t.tolist() == [0.0, 0.0]
    # the fair label by hand: the best IoU of the mask (> T_k) over the 24 search images
    maps = unit_maps(run, "feat", search)  # [24, 2, 32, 32]: the label resolution, no resampling
    concepts, names = _concepts(ds, search)
    ious = {}
    for u in range(2):
        mask = maps[:, u] > t[u]
        ious[u] = {c: ((mask & m).sum() / (mask | m).sum()).item() for c, m in concepts.items() if (mask | m).any()}
    fair = {u: max(ious[u], key=ious[u].get) for u in range(2)}
    # unit 0 is "sky" to the dissection only through the six held-out images (blue there): on the
    # search images its mask is one image's red, which no sky touches
    leaky = rows["label"][0]["formula"]
    assert leaky == "sky" and ious[0].get("sky", 0.0) == 0.0
    assert fair[0] != "sky" and rows["fair_label"][0]["formula"] == fair[0]
    assert rows["fair_label"][0]["search_iou"] == pytest.approx(ious[0][fair[0]])
    # unit 1 fires on blue everywhere: both labels say blue
    assert rows["label"][1]["formula"] == rows["fair_label"][1]["formula"] == fair[1] == "blue"
    # held-out scores of both labels of unit 0, by hand
    hmaps = unit_maps(run, "feat", held)[:, 0]
    mask = hmaps > 0  # the 0.5 quantile of unit 0 is 0: the mask is where it fires
    hconcepts, _ = _concepts(ds, held)
    for kind, concept in (("label", hconcepts["sky"]), ("fair_label", hconcepts[fair[0]])):
        r = rows[kind][0]
        tp, fp, fn = (mask & concept).sum().item(), (mask & ~concept).sum().item(), (~mask & concept).sum().item()
        assert r["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert r["iou"] == pytest.approx(tp / (tp + fp + fn))
        assert r["base_rate"] == pytest.approx(concept.float().mean().item())
        assert r["images"] == 6
    # the leak, measured: the label the held-out images chose fits them; the fair one (red, of the
    # search image) does not, as it should not: this unit does nothing on the search images that
    # predicts its held-out behaviour
    assert fair[0] == "red" and rows["fair_label"][0]["f1"] == 0.0 < 0.85 < rows["label"][0]["f1"]
