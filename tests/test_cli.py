"""The command line: help everywhere, classify, and clear errors naming the bad input."""

import pytest
from PIL import Image

from unitscope.cli import build_parser, main


def test_help_for_every_command(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"models", "layers", "classify"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        assert "usage: unitscope" in capsys.readouterr().out


def test_classify_prints_top5(tmp_path, capsys):
    from skimage import data

    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    assert main(["classify", "efficientnet_lite0", str(tmp_path / "coffee.jpg")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("coffee.jpg") and len(lines) == 6
    assert lines[1].split(maxsplit=1)[1] == "espresso"


def test_classify_names_missing_and_corrupt_files(tmp_path, capsys):
    assert main(["classify", "efficientnet_lite0", str(tmp_path / "nope.jpg")]) == 2
    assert "nope.jpg does not exist" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert main(["classify", "efficientnet_lite0", str(tmp_path / "broken.jpg")]) == 2
    assert "broken.jpg could not be read" in capsys.readouterr().err


def test_layers_and_models(capsys):
    assert main(["models", "efficientnet*"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out
    assert main(["layers", "efficientnet_lite0", "--spatial"]) == 0
    out = capsys.readouterr().out
    assert "blocks.6" in out and "320x7x7" in out
    assert main(["layers", "efficientnet_lite00"]) == 2
    assert "close matches: efficientnet_lite0" in capsys.readouterr().err


def test_no_pretrained_and_bare_names_on_the_command_line(capsys):
    assert main(["layers", "efficientnet_lite0", "--no-pretrained", "--spatial"]) == 0
    assert "conv_stem" in capsys.readouterr().out
    assert main(["layers", "resnet18", "--no-pretrained"]) == 2
    assert "ambiguous: say torchvision:resnet18 or timm:resnet18" in capsys.readouterr().err


def test_python_dash_m_unitscope():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "unitscope", "models"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "efficientnet_lite0" in out.stdout


@pytest.mark.parametrize("error", ["UsageError", "RunError", "LayerNotFoundError", "TallyKeyError", "MissingSources"])
def test_deliberate_errors_are_one_line_by_type(monkeypatch, capsys, error):
    """Any UnitscopeError is printed as one line with exit code 2, also when raised outside the
    package (here, by the test); a builtin error raised outside the package keeps its traceback."""
    import unitscope.commands.models as models
    from unitscope import errors
    from unitscope.layers import LayerNotFoundError
    from unitscope.tally import TallyKeyError
    from unitscope.world.sources import MissingSources

    cls = {
        "UsageError": errors.UsageError,
        "RunError": errors.RunError,
        "LayerNotFoundError": LayerNotFoundError,
        "TallyKeyError": TallyKeyError,
        "MissingSources": MissingSources,
    }[error]
    assert issubclass(cls, errors.UnitscopeError)

    def fails(args):
        raise cls("the run folder x cannot be used")

    monkeypatch.setattr(models, "run_models", fails)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == "unitscope models: error: the run folder x cannot be used (--debug: full traceback)\n"
    assert main(["models", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_builtin_errors_from_outside_the_package_keep_their_traceback(monkeypatch, capsys):
    import unitscope.commands.models as models

    def fails(args):
        raise ValueError("a bug in a plug-in, not a message")

    monkeypatch.setattr(models, "run_models", fails)
    assert main(["models"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_the_cli_re_exports_the_errors():
    from unitscope import cli, errors

    assert cli.UsageError is errors.UsageError and cli.RunError is errors.RunError
    assert issubclass(errors.UsageError, ValueError) and not issubclass(errors.RunError, RuntimeError)
