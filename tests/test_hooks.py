"""Tracing, stopping, editing and ablation on tiny models with set weights."""

import pytest
import torch
from torch import nn

from unitscope.hooks import Ablate, Trace, TraceDict, ablation, tokens_to_map
from unitscope.layers import LayerNotFoundError, list_layers, resolve_layer


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def tiny():
    """conv (1 -> 2 channels, weights 1 and -1, bias 0.5 and 0) -> relu -> counter -> pool -> fc."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        conv.bias[:] = torch.tensor([0.5, 0.0])
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight[:] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        fc.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), Counter(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


X = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])  # [1, 1, 2, 2]


def test_trace_captures_exact_output():
    model = tiny()
    with Trace(model, "1") as t:
        model(X)
    expected = torch.tensor([[[[1.5, 0.0], [3.5, 0.5]], [[0.0, 2.0], [0.0, 0.0]]]])
    assert torch.equal(t.output, expected)
    assert all_hooks(model) == 0


def test_stop_skips_the_rest_of_the_network():
    model = tiny()
    with Trace(model, "1", stop=True) as t:
        model(X)
        pytest.fail("the forward pass should have stopped")  # pragma: no cover
    assert model[2].calls == 0 and t.output.shape == (1, 2, 2, 2)
    with TraceDict(model, ["0", "2"], stop=True) as td:
        model(X)
    assert model[2].calls == 1 and set(td) == {"0", "2"}
    assert all_hooks(model) == 0


def test_tracedict_edit_and_ablation_modes():
    model = tiny()
    with TraceDict(model, ["1", "5"], edit_output=lambda out, layer: out * 2 if layer == "1" else out) as td:
        model(X)
    # mean of the doubled relu map: unit0 = 2*(1.5+3.5+0.5)/4 = 2.75, unit1 = 2*2/4 = 1.0
    assert torch.allclose(td["5"].output, torch.tensor([[2.75, 1.0]]))
    with Ablate(model, "1", [0], mode="zero"):
        assert torch.allclose(model(X), torch.tensor([[0.0, 0.5]]))
    with Ablate(model, "1", [1], mode="constant", value=4.0):
        assert torch.allclose(model(X), torch.tensor([[1.375, 4.0]]))
    with Ablate(model, "1", [0, 1], mode="mean", value=torch.tensor([10.0, 20.0])):
        assert torch.allclose(model(X), torch.tensor([[10.0, 20.0]]))
    assert all_hooks(model) == 0


def test_ablation_of_tokens_and_vectors_uses_the_unit_dimension():
    tokens = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)  # [N, T, D]
    out = ablation([1, 3])(tokens, "t")
    assert torch.all(out[..., [1, 3]] == 0) and torch.equal(out[..., [0, 2]], tokens[..., [0, 2]])
    vec = torch.ones(2, 5)
    assert ablation([4], "constant", 7.0)(vec, "v")[:, 4].tolist() == [7.0, 7.0]
    with pytest.raises(ValueError, match="has 5 units"):
        ablation([5])(vec, "v")
    with pytest.raises(ValueError, match="needs value"):
        ablation([0], "mean")


def test_hooks_removed_after_exception():
    model = tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with TraceDict(model, ["0", "1", "5"]):
            raise RuntimeError("boom")
    assert all_hooks(model) == 0

    def bad_edit(out, layer):
        raise ValueError("edit failed")

    with pytest.raises(ValueError, match="edit failed"):
        with Trace(model, "1", edit_output=bad_edit):
            model(X)
    assert all_hooks(model) == 0


def test_unknown_layer_lists_close_matches_and_command():
    model = nn.Sequential()
    model.add_module("blocks", nn.Sequential(nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)))
    with pytest.raises(LayerNotFoundError) as err:
        resolve_layer(model, "block.1")
    assert "blocks.1" in str(err.value) and "unitscope layers" in str(err.value)
    assert resolve_layer(model, model.blocks[1]) == ("blocks.1", model.blocks[1])
    with pytest.raises(ValueError, match="listed twice"):
        TraceDict(model, ["blocks.0", model.blocks[0]])


def test_list_layers_shapes_channels_stride():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, stride=2, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    layers = {l.name: l for l in list_layers(model, input_size=(3, 32, 32))}
    assert layers["0"].shape == (8, 16, 16) and layers["0"].stride == 2 and layers["0"].channels == 8
    assert layers["2"].shape == (4, 8, 8) and layers["2"].stride == 4
    assert layers["5"].shape == (3,) and layers["5"].channels == 3 and layers["5"].stride is None
    assert all_hooks(model) == 0


def test_transformer_tokens_as_maps():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with Trace(vit, "blocks.0", as_map=True) as t_map, Trace(vit, "blocks.0") as t_raw:
        vit(x)
    assert t_raw.output.shape == (2, 17, 192)  # class token + 4x4 patches
    assert t_map.output.shape == (2, 192, 4, 4)
    # patch (row 1, col 2) is token 1 + 1*4 + 2
    assert torch.equal(t_map.output[:, :, 1, 2], t_raw.output[:, 1 + 6, :])
    assert tokens_to_map(torch.zeros(1, 9, 5)).shape == (1, 5, 3, 3)
    with pytest.raises(ValueError, match="square"):
        tokens_to_map(torch.zeros(1, 7, 5), prefix_tokens=0)


class Twice(nn.Module):
    """conv -> relu -> conv -> the same relu: ``relu`` runs twice, as in torchvision's ResNet blocks."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.relu = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.ReLU()
        with torch.no_grad():
            self.a.weight.fill_(1.0), self.a.bias.fill_(0.0), self.b.weight.fill_(-2.0), self.b.bias.fill_(1.0)

    def forward(self, x):
        return self.relu(self.b(self.relu(self.a(x))))


def test_a_module_called_twice_is_traced_at_the_same_call_with_or_without_stop():
    model = Twice()
    first = torch.relu(X)  # relu(a(x))
    second = torch.relu(-2 * first + 1)
    with pytest.warns(UserWarning, match=r"'relu' ran 2 times .* holds call 0"):
        with Trace(model, "relu") as t:
            model(X)
    assert t.calls == 2 and torch.equal(t.output, first)
    with Trace(model, "relu", stop=True) as t_stop:
        model(X)
    assert torch.equal(t_stop.output, first)
    with pytest.warns(UserWarning, match="holds call 1"):
        with Trace(model, "relu", call=1) as t1:
            model(X)
    assert torch.equal(t1.output, second)
    with Trace(model, "relu", call=1, stop=True) as t1s, TraceDict(model, ["a"], stop=False):
        model(X)
    assert torch.equal(t1s.output, second)
    layers = {l.name: l for l in list_layers(model, input_size=(1, 2, 2))}
    assert layers["relu"].calls == 2 and layers["a"].calls == 1
    # a pass of the model, then the traced layer run on its own (not through model): still traced
    with pytest.warns(UserWarning, match="ran 2 times"), Trace(model, "relu") as t:
        model(X)
        nn.Sequential(model.a, model.relu)(2 * X)
    assert torch.equal(t.output, torch.relu(2 * X))
    assert all_hooks(model) == 0


def test_tokens_to_map_drops_the_smallest_prefix_that_leaves_a_square():
    x = torch.arange(9 * 2, dtype=torch.float32).view(1, 9, 2)  # 9 = 3x3 (drop 0) = 2x2 (drop 5) = 1 (drop 8)
    assert tokens_to_map(x).shape == (1, 2, 3, 3)
    assert tokens_to_map(x, prefix_tokens=5).shape == (1, 2, 2, 2)


def test_spatial_layers_are_maps_and_token_grids_not_attention_internals(capsys):
    from unitscope.cli import main
    from unitscope.layers import list_layers, output_kind
    from unitscope.models import create_model

    assert output_kind((64, 55, 55), (3, 224, 224)) == "map"  # AlexNet conv1, stride ~4
    assert output_kind((3, 197, 64), (3, 224, 224)) is None  # ViT [heads, T, d/heads]
    assert output_kind((197, 192), (3, 224, 224)) == "tokens"  # 1 class token + 14x14
    assert output_kind((250, 192), (3, 224, 224)) is None  # 250 - p is no square for p <= 8
    assert output_kind((1000,), (3, 224, 224)) is None
    vit = create_model("timm:vit_tiny_patch16_224", pretrained=False)
    kinds = {layer.name: layer.kind for layer in list_layers(vit)}
    assert kinds["patch_embed.proj"] == "map" and kinds["blocks.11"] == "tokens"
    assert kinds["blocks.11.attn.q_norm"] is None and kinds["head"] is None
    lite = {layer.name: layer for layer in list_layers(create_model("efficientnet_lite0", pretrained=False))}
    assert lite["blocks.6.0.bn2"].kind == "map" and lite["blocks.6.0.bn2"].stride == 32
    assert lite["global_pool"].kind is None
    assert main(["layers", "timm:vit_tiny_patch16_224", "--no-pretrained", "--spatial"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert "blocks.11" in listed and "patch_embed.proj" in listed
    assert not any(".attn.q_norm" in name or ".attn.k_norm" in name for name in listed)
