"""Feature visualisation: exact transforms, objectives on hand-made activations, the loss of every
objective falls within 5 steps, no hook survives (also after an exception), and planted colour
units are drawn in their colour, one unit per image of a batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.featvis_models import Colours, Tiny
from tests.helpers.featvis_models import with_info as _info
from unitscope.featvis import (
    channel,
    class_logit,
    compose,
    direction,
    diversity,
    evaluate,
    fft_image,
    jitter,
    l2,
    match,
    neuron,
    pad,
    pixel_image,
    random_rotate,
    random_scale,
    render,
    render_units,
    stack,
    standard_transforms,
    total_variation,
)
from unitscope.featvis.param import COLOR_CORRELATION_NORMALIZED
from unitscope.featvis.render import _RedirectedReLU


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


# -- transforms ----------------------------------------------------------------------------------


def test_pad_constant_border():
    x = torch.arange(4.0).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    y = pad(1, value=0.5)(x)
    assert y.shape == (1, 3, 4, 4)
    assert torch.equal(y[:, :, 1:3, 1:3], x)
    border = y.clone()
    border[:, :, 1:3, 1:3] = 0.5
    assert torch.all(border == 0.5)


def test_jitter_is_a_crop_with_its_own_offset_per_image():
    x = torch.arange(3 * 6 * 6, dtype=torch.float32).view(1, 3, 6, 6).repeat(16, 1, 1, 1)
    y = jitter(2, torch.Generator().manual_seed(1))(x)
    assert y.shape == (16, 3, 4, 4)
    offsets = set()
    for i in range(16):
        found = [(oy, ox) for oy in range(3) for ox in range(3) if torch.equal(y[i], x[i, :, oy : oy + 4, ox : ox + 4])]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 3  # fresh draws per image


def test_random_scale_exact_cases():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(2, 3, 4, 4)
    half = random_scale([0.5])(x)
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]])  # the mean of each 2x2 block
    assert half.shape == (2, 3, 2, 2) and torch.allclose(half, expected.expand_as(half), atol=1e-5)
    assert torch.equal(random_scale([1.0])(x), x)
    const = torch.full((1, 3, 5, 5), 0.25)
    doubled = random_scale([2.0])(const)
    assert doubled.shape == (1, 3, 10, 10) and torch.allclose(doubled, torch.full_like(doubled, 0.25))


@pytest.mark.parametrize("angle,k", [(90, 1), (-90, -1), (180, 2), (0, 0)])
def test_random_rotate_matches_rot90(angle, k):
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    y = random_rotate([angle])(x)
    assert torch.allclose(y, torch.rot90(x, k, dims=(2, 3)), atol=1e-5)


def test_standard_transforms_shape_draws_and_gradient():
    gen = torch.Generator().manual_seed(0)
    t = standard_transforms(gen)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y1, y2 = t(x), t(x)
    assert y1.shape[:2] == (2, 3) and 70 <= y1.shape[-1] <= 84  # (64 + 24 - 8) * (0.9..1.1) - 4
    assert y1.shape != y2.shape or not torch.equal(y1, y2)
    y1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert "pad(12" in t.__qualname__ and compose(pad(1))(torch.zeros(1, 3, 2, 2)).shape == (1, 3, 4, 4)


# -- parameterisations -----------------------------------------------------------------------------


def test_parameterisations_give_valid_images():
    for make in (fft_image, pixel_image):
        params, image_fn = make((2, 3, 16, 12), generator=torch.Generator().manual_seed(0))
        img = image_fn()
        assert img.shape == (2, 3, 16, 12) and img.min() > 0 and img.max() < 1
        img.mean().backward()
        assert params[0].grad is not None and params[0].grad.abs().sum() > 0
    with torch.no_grad():
        params[0].zero_()
    assert torch.allclose(image_fn(), torch.full((2, 3, 16, 12), 0.5))  # sigmoid(0)
    assert torch.isclose(COLOR_CORRELATION_NORMALIZED.norm(dim=0).max(), torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        fft_image((1, 4, 8, 8))


def test_fft_image_has_equal_energy_per_frequency_at_start():
    # 1/f scaling: a spectrum of equal random coefficients gives an image whose low frequencies
    # carry more amplitude than its high ones, in proportion to 1/f.
    params, _ = fft_image((1, 3, 32, 32), decorrelate=False, sigmoid=False)
    from unitscope.featvis.param import rfft2d_freqs

    f = rfft2d_freqs(32, 32)
    assert f[0, 0] == 0 and torch.isclose(f[0, 1], torch.tensor(1 / 32))


# -- objectives -------------------------------------------------------------------------------------


def _acts():
    a = torch.arange(2 * 3 * 3 * 3, dtype=torch.float32).view(2, 3, 3, 3)
    return {
        "L": a,
        "output": torch.tensor([[1.0, 5.0], [7.0, 3.0]]),
        "image": torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]] * 3, [[[0.5, 0.5], [0.5, 0.5]]] * 3]),
    }


def test_objective_values_and_descriptions():
    acts = _acts()
    a = acts["L"]
    assert torch.equal(channel("L", [0, 2])(acts), torch.stack([a[0, 0].mean(), a[1, 2].mean()]))
    assert torch.equal(neuron("L", 1)(acts), a[:, 1, 1, 1])
    assert torch.equal(neuron("L", 1, y=0, x=2)(acts), a[:, 1, 0, 2])
    v = torch.tensor([1.0, 0.0, -1.0])
    assert torch.allclose(direction("L", v)(acts), (a[:, 0] - a[:, 2]).flatten(1).mean(1))
    assert torch.allclose(direction("L", v, position="center")(acts), a[:, 0, 1, 1] - a[:, 2, 1, 1])
    assert torch.equal(class_logit([1, 0])(acts), torch.tensor([5.0, 7.0]))
    assert torch.equal(total_variation()(acts), torch.tensor([3 * 2.0, 0.0]))  # |0-1| in y and in x, 3 channels
    assert torch.allclose(l2()(acts), torch.sqrt(torch.tensor([3 * (0.25 * 4) + 1e-6, 1e-6])))
    combined = 2 * channel("L", 0) - class_logit(1) / 2 + 1
    assert torch.allclose(combined(acts), 2 * a[:, 0].flatten(1).mean(1) - torch.tensor([5.0, 3.0]) / 2 + 1)
    assert (
        str(channel("L", [0, 1, 2]) - 1e-3 * total_variation()) == "Channel [L, 0..2] - 0.001 * TotalVariation [image]"
    )
    assert str(class_logit(1, names=["a", "goldfish"])) == "ClassLogit [1 goldfish]"
    assert combined.layers == {"L", "output"}
    assert torch.equal(stack([channel("L", 0), class_logit(0)])(acts), torch.stack([a[0, 0].mean(), torch.tensor(7.0)]))
    with pytest.raises(ValueError, match="3 units given for a batch of 2"):
        channel("L", [0, 1, 2])(acts)
    with pytest.raises(TypeError):
        channel("L", 0) * channel("L", 1)


def test_diversity_and_match():
    same = {"L": torch.ones(3, 2, 2, 2)}
    assert torch.allclose(diversity("L")(same), torch.full((3,), -1.0))
    apart = torch.zeros(2, 2, 1, 1)
    apart[0, 0] = apart[1, 1] = 1.0
    assert torch.allclose(diversity("L")({"L": apart}), torch.zeros(2))
    t = torch.ones(1, 2, 2, 2)
    assert torch.allclose(match("L", t)({"L": torch.stack([t[0], 0 * t[0]])}), torch.tensor([0.0, -1.0]))


OBJECTIVES = {
    "channel": lambda: channel("conv2", [0, 1]),
    "neuron": lambda: neuron("relu1", [2, 3]),
    "direction": lambda: direction("relu2", torch.tensor([1.0, -1.0, 0.5, 0.0])),
    "class_logit": lambda: class_logit([0, 2]),
    "diversity": lambda: diversity("relu1"),
    "total_variation": lambda: total_variation(),
    "l2": lambda: l2(),
    "match": lambda: match("conv1", torch.ones(1, 4, 16, 16)),
    "combined": lambda: channel("conv2", 1) - 1e-3 * total_variation() + 0.1 * diversity("conv2"),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_every_objective_rises_within_5_steps(name, param):
    torch.manual_seed(0)
    model = _info(Tiny(), 16)
    obj = OBJECTIVES[name]()
    kw = dict(batch=2, size=16, param=param, transforms=None, progress=False, seed=3)
    before = render(model, obj, steps=0, **kw).images
    result = render(model, obj, steps=5, **kw)
    gain = evaluate(model, obj, result.images) - evaluate(model, obj, before)
    assert gain.sum() > 0, f"{obj}: objective did not rise ({gain.tolist()})"
    assert len(result.history) == 5


# -- hooks and model state ----------------------------------------------------------------------


def test_no_hook_or_flag_left_behind_after_rendering_and_after_an_exception():
    model = _info(Tiny(), 16)
    render(model, channel("relu2", [0, 1]) + 0.1 * class_logit(0), batch=2, size=16, steps=3, progress=False)
    assert _hooks(model) == 0
    calls = []

    def boom(acts):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("objective failed")
        return acts["relu2"].mean((1, 2, 3))

    from unitscope.featvis import Objective

    with pytest.raises(RuntimeError, match="objective failed"):
        render(model, Objective(boom, "boom", ["relu2"]), batch=1, size=16, steps=5, progress=False)
    assert _hooks(model) == 0
    assert all(p.requires_grad for p in model.parameters())
    assert model.relu1.inplace and model.relu2.inplace
    with pytest.raises(ValueError, match="unknown layer 'relu3'.*relu2"):
        render(model, channel("relu3", 0), steps=1, size=16, progress=False)
    assert _hooks(model) == 0


def test_redirected_relu_gradient():
    x = torch.tensor([[-1.0, 2.0, 7.0], [-1.0, -2.0, 8.0]], requires_grad=True)
    y = _RedirectedReLU.apply(x, 6.0)
    assert torch.equal(y, torch.tensor([[0.0, 2.0, 6.0], [0.0, 0.0, 6.0]]))
    g = torch.tensor([[-1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])
    (gx,) = torch.autograd.grad(y, x, g)
    # row 0 has a live gradient (x=2), so the normal ReLU6 gradient; row 1 is dead everywhere, so
    # gradients that move x back into (0, 6) pass: -1 at x=-1 (raises it), +1 at x=8 (lowers it).
    assert torch.equal(gx, torch.tensor([[0.0, -1.0, 0.0], [-1.0, 0.0, 1.0]]))


def test_redirect_revives_a_dead_unit():
    model = _info(Colours(), 8)
    with torch.no_grad():
        model.mix.bias.fill_(-10.0)  # every unit dead on every image
    obj = channel("feat", 0)
    kw = dict(size=8, param="pixel", transforms=None, progress=False, lr=0.5)
    plain = render(model, obj, steps=5, redirect_steps=0, **kw)
    revived = render(model, obj, steps=5, redirect_steps=5, **kw)
    assert plain.history == [0.0] * 5
    start = render(model, obj, steps=0, **kw).images
    assert torch.equal(plain.images, start)  # no gradient at all without the redirect
    assert (revived.images[0, 0] - start[0, 0]).mean() > 0.05  # red pushed up


# -- the planted colour units --------------------------------------------------------------------------


def test_planted_colour_units_are_drawn_in_their_colour_one_per_image():
    torch.manual_seed(0)
    model = _info(Colours(), 32)
    ((units, result),) = list(render_units(model, "feat", [0, 1, 2], steps=100, size=32, lr=0.2, progress=False))
    assert units == [0, 1, 2] and result.images.shape == (3, 3, 32, 32)
    mean_rgb = result.images.mean((2, 3))  # [unit, rgb]
    for unit in range(3):
        others = [c for c in range(3) if c != unit]
        assert mean_rgb[unit, unit] > 0.6, mean_rgb
        assert (mean_rgb[unit, unit] - mean_rgb[unit, others]).min() > 0.3, mean_rgb
    assert _hooks(model) == 0


# -- `unitscope visualize` --------------------------------------------------------------------------

MODELS = str(Path(__file__).parents[1] / "helpers" / "featvis_models.py") + ":colours"


def _visualize(out: Path, units: str = "0-2", *extra: str) -> int:
    from unitscope.cli import main

    return main(
        [
            "visualize",
            "--model",
            MODELS,
            "--layer",
            "feat",
            "--units",
            units,
            "--steps",
            "100",
            "--lr",
            "0.2",
            "--size",
            "32",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_visualize_writes_pngs_and_rows_and_resumes(tmp_path):
    from PIL import Image

    from unitscope.catalog import Catalog

    out = tmp_path / "run"
    assert _visualize(out) == 0
    with Catalog(out / "catalog.sqlite") as cat:
        rows = cat.rows("unit_visualizations")
    assert [(r["model"], r["layer"], r["unit"], r["path"], r["objective"]) for r in rows] == [
        ("colours", "feat", u, f"featvis/feat/{u}.png", f"Channel [feat, {u}]") for u in range(3)
    ]
    red = np.asarray(Image.open(out / "featvis/feat/0.png"), dtype=float).mean((0, 1))
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60  # the red unit's picture is red
    stamps = {u: (out / f"featvis/feat/{u}.png").stat().st_mtime_ns for u in range(3)}
    (out / "featvis/feat/1.png").unlink()
    assert _visualize(out) == 0  # resumes: only unit 1 is drawn again
    assert (out / "featvis/feat/0.png").stat().st_mtime_ns == stamps[0]
    assert (out / "featvis/feat/2.png").stat().st_mtime_ns == stamps[2]
    assert (out / "featvis/feat/1.png").is_file()


def test_visualize_batch_size_auto_is_16_on_a_cpu_and_64_on_a_gpu(tmp_path, capsys):
    from unitscope.commands.visualize import resolve_batch_size

    assert resolve_batch_size("auto", "cpu") == 16
    assert resolve_batch_size("auto", "cuda:0") == 64
    assert resolve_batch_size("3", "cpu") == 3
    for bad in ("0", "-2", "many"):
        with pytest.raises(ValueError, match="positive number of units, or auto"):
            resolve_batch_size(bad, "cpu")
    assert _visualize(tmp_path / "run", "0", "--batch-size", "many") == 2
    assert "--batch-size 'many'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "catalog.sqlite").exists()  # refused before any work


def test_visualize_adds_rows_to_a_dissection_run(tmp_path, make_run, capsys):
    from unitscope.catalog import Catalog

    run = make_run(
        tmp_path / "run", model="colours", layers={"feat": [("red", 0.2), ("blue", 0.1), ("red", 0.05)]}, rotations={}
    )
    config = (run / "config.json").read_text()
    with Catalog(run / "catalog.sqlite") as cat:
        before = cat.dump()
    assert _visualize(run, "0,2") == 0
    with Catalog(run / "catalog.sqlite") as cat:
        after = cat.dump()
    assert [r["unit"] for r in after.pop("unit_visualizations")] == [0, 2]
    before.pop("unit_visualizations", None)
    assert after == before and (run / "config.json").read_text() == config
    assert _visualize(run, "0-5") == 2
    assert "beyond the layer's 3 units" in capsys.readouterr().err
    assert _visualize(run, "0", "--layer", "fet") == 2
    assert "Close matches: feat" in capsys.readouterr().err


# -- before the nonlinearity ("<layer>:pre") ----------------------------------------------------------


class _Blocks(nn.Module):
    """``block`` ends in a ReLU6 module, ``shared`` calls its one ReLU twice, ``functional`` ends in F.relu."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = nn.Conv2d(3, 3, 1), nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(self.relu(x)))

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return torch.nn.functional.relu(self.conv(x))

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU6())
        self.shared, self.functional = self.Shared(), self.Functional()

    def forward(self, x):
        return self.functional(self.shared(self.block(x)))


def test_pre_activation_names_the_activation_module_that_makes_a_layer():
    from unitscope.layers import pre_activation

    model = _info(_Blocks(), 8)
    assert pre_activation(model, "block")[:2] == ("block.1", 0)
    assert pre_activation(model, "block.1")[:2] == ("block.1", 0)
    assert pre_activation(model, "shared")[:2] == ("shared.relu", 1)  # the second call makes the output
    with pytest.raises(ValueError, match="'block.0' ends in no elementwise nonlinearity"):
        pre_activation(model, "block.0")
    with pytest.raises(ValueError, match="'functional' ends in a functional activation"):
        pre_activation(model, "functional")
    tiny = _info(Tiny(), 16)
    name, call, act = pre_activation(tiny, "relu2")
    assert (name, call, type(act)) == ("relu2", 0, nn.ReLU6)


def test_pre_activation_objective_reads_the_input_of_relu6_and_passes_its_cap():
    model = _info(Tiny(), 16)
    with torch.no_grad():
        model.conv2.bias[0] = 20.0  # unit 0 of relu2 sits at ReLU6's cap of 6 from the start
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    # ":pre" reads conv2's output (the input of relu2), by hand
    expected = model.conv2(model.relu1(model.conv1(x.clone())))[:, 1].mean((1, 2))
    assert torch.allclose(evaluate(model, channel("relu2:pre", 1), x), expected.detach(), atol=1e-6)
    kw = dict(batch=1, size=16, param="pixel", transforms=None, progress=False, lr=0.2, steps=10, redirect_steps=0)
    post = render(model, channel("relu2", 0), **kw)
    pre = render(model, channel("relu2:pre", 0), **kw)
    assert post.history == [6.0] * 10  # stuck at the cap: no gradient
    assert pre.history[-1] > pre.history[0] > 6.0
    assert _hooks(model) == 0 and model.relu1.inplace and model.relu2.inplace
    assert str(channel("relu2:pre", 0)) == "Channel [relu2:pre, 0]"


def test_visualize_units_warns_at_the_cap_and_renders_before_the_nonlinearity(tmp_path):
    from unitscope.catalog import Catalog
    from unitscope.featvis import visualize_units

    model = _info(Tiny(), 16)
    with torch.no_grad():
        model.conv2.bias[:2] = 20.0  # units 0 and 1 at the cap
    kw = dict(steps=3, size=16, progress=False, batch_size=4)
    with pytest.warns(UserWarning, match=r"2 of 4 units of relu2 ended at their activation's cap of 6 \(units 0, 1\)"):
        visualize_units(model, "relu2", range(4), tmp_path, **kw)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        visualize_units(model, "relu2", range(4), tmp_path, pre_activation=True, **kw)  # another objective: redrawn
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        rows = cat.rows("unit_visualizations", layer="relu2")
    assert [r["objective"] for r in rows] == [f"Channel [relu2:pre, {u}]" for u in range(4)]
    assert [r["path"] for r in rows] == [f"featvis/relu2/{u}.png" for u in range(4)]


def test_visualize_pre_activation_flag(tmp_path):
    from PIL import Image

    from unitscope.catalog import Catalog

    assert _visualize(tmp_path / "run", "0", "--pre-activation") == 0
    with Catalog(tmp_path / "run" / "catalog.sqlite") as cat:
        (row,) = cat.rows("unit_visualizations")
    assert (row["layer"], row["objective"]) == ("feat", "Channel [feat:pre, 0]")
    red = np.asarray(Image.open(tmp_path / "run" / row["path"]), dtype=float).mean((0, 1))
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60  # before its ReLU the red unit still wants red


def test_a_render_result_sums_itself_up_in_a_line_and_in_a_notebook():
    from unitscope.featvis import RenderResult

    images = torch.zeros(2, 3, 8, 6)
    images[1] = 1.0
    r = RenderResult(images, torch.tensor([1.5, 4.5]), history=[0.0] * 7, objective="Channel [x, 0..1]")
    assert r.summary() == "2 images of 6x8 px after 7 steps; objective Channel [x, 0..1]: 3 mean (1.5 .. 4.5)"
    page = r._repr_html_()
    assert page.count("<img src='data:image/png;base64,") == 2
    assert "<figcaption>1.5</figcaption>" in page and "<figcaption>4.5</figcaption>" in page
    assert r.summary() in page
