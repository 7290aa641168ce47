"""A dissection run as a user meets it: resume with the cache turned on, refused reruns, --fresh
after a typo, unreadable images, and the CLI's error output."""

import json
import shutil
import sqlite3

import numpy as np
import pytest

from tests.dissect.test_dissect import PLANTED, dataset, planted, world  # noqa: F401  (world is a fixture)
from unitscope import faults
from unitscope.runs import load_arrays


def test_resume_that_turns_the_cache_on_gives_the_same_ious(world, tmp_path):
    """Pass 1 interrupted while running without the cache, rerun with it: the rows before the
    resume point were never written, so pass 2 must not read them (it used to read zeros)."""
    from unitscope.dissect import dissect

    model = planted(world)
    ds = dataset(world, model)
    kw = dict(quantile=0.05, topk=3, batch_size=4, checkpoint_every=1, progress=False, exemplar_images=False)
    ref = dissect(model, ds, ["feat"], tmp_path / "ref", **kw).layers["feat"]

    with faults.armed("pass1.batch=3:raise"), pytest.raises(faults.FaultInjected):  # batches 1-2 checkpointed
        dissect(model, ds, ["feat"], tmp_path / "run", cache_gb=0, **kw)
    saved = load_arrays(tmp_path / "run" / "pass1" / "tally.checkpoint.rank0.safetensors")
    assert int(saved["tally.batches"].reshape(-1)[0]) == 2
    got = dissect(model, ds, ["feat"], tmp_path / "run", keep_cache=True, **kw).layers["feat"]
    assert np.array_equal(got.iou, ref.iou)
    assert not (tmp_path / "run" / "cache" / "complete").exists()  # rows 0..7 were never cached


@pytest.fixture
def cli_run(world, tmp_path, monkeypatch):
    monkeypatch.setenv("PLANTED_WORLD", str(world))

    def make(**kw):
        from unitscope.commands.dissect import DissectConfig

        base = dict(
            model=f"{PLANTED}:colour_units",
            data=str(world),
            out=str(tmp_path / "run"),
            layers=["feat"],
            quantile=0.05,
            topk=2,
            report=False,
            progress=False,
            workers=0,
        )
        return DissectConfig(**{**base, **kw})

    return make


def test_refused_rerun_keeps_config_and_fresh_validates_before_deleting(cli_run, tmp_path):
    from unitscope.commands.dissect import run_dissection
    from unitscope.layers import LayerNotFoundError
    from unitscope.tally import TallyKeyError

    run = tmp_path / "run"
    run_dissection(cli_run())
    config = (run / "config.json").read_text()
    assert json.loads(config)["quantile"] == 0.05
    with pytest.raises(TallyKeyError, match="limit"):  # other data in the same folder: refused
        run_dissection(cli_run(limit=20))
    assert (run / "config.json").read_text() == config  # still the settings of the results
    catalog = (run / "catalog.sqlite").read_bytes()
    with pytest.raises(ValueError, match="colour_unitz"):
        run_dissection(cli_run(model=f"{PLANTED}:colour_unitz", fresh=True))
    with pytest.raises(LayerNotFoundError, match="feat"):
        run_dissection(cli_run(layers=["fea"], fresh=True))
    assert (run / "catalog.sqlite").read_bytes() == catalog and (run / "config.json").read_text() == config
    run_dissection(cli_run(limit=20, fresh=True))
    assert json.loads((run / "config.json").read_text())["limit"] == 20


def test_changing_topk_or_quantile_keeps_pass_1(cli_run, tmp_path):
    """Each pass is keyed on what it depends on: --topk and --quantile redo pass 2 only, and give
    what a fresh run with those settings gives."""
    from unitscope.commands.dissect import run_dissection
    from unitscope.dissect import load_layer_arrays

    run = tmp_path / "run"
    run_dissection(cli_run(keep_cache=True))
    done1 = (run / "pass1" / "tally.done.json").stat().st_mtime_ns
    for change in (dict(topk=3), dict(topk=3, quantile=0.1)):
        got = run_dissection(cli_run(keep_cache=True, **change)).layers["feat"]
        assert (run / "pass1" / "tally.done.json").stat().st_mtime_ns == done1
        assert load_layer_arrays(run, "feat")["top_images"].shape == (3, 3)
        ref = run_dissection(cli_run(out=str(tmp_path / f"ref{len(change)}"), **change)).layers["feat"]
        assert np.array_equal(got.iou, ref.iou) and np.array_equal(got.thresholds, ref.thresholds)
    assert json.loads((run / "config.json").read_text())["quantile"] == 0.1


def test_the_kept_activation_cache_opens_by_layer(cli_run, world, tmp_path):
    import torch

    from unitscope.commands.dissect import run_dissection
    from unitscope.dissect import open_activation_cache
    from unitscope.hooks import Trace

    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="--keep-cache"):
        open_activation_cache(run, "feat")
    run_dissection(cli_run(keep_cache=True, limit=10))
    model = planted(world)
    ds = dataset(world, model)
    with open_activation_cache(run, "feat") as cache:
        assert cache.shape == (3, 32, 32) and cache.images == 10 and cache.key["model"] == f"{PLANTED}:colour_units"
        images = torch.stack([ds[i]["image"] for i in (2, 3, 7)])
        with Trace(model, "feat") as t:
            model(images)
        assert torch.equal(cache.read([2, 3, 7]), t.output)
        with pytest.raises(IndexError):
            cache.read([10])
    with pytest.raises(ValueError, match="holds layers"):
        open_activation_cache(run, "head")
    run_dissection(cli_run(limit=10))  # not kept: removed at the end of the run
    assert not (run / "cache").exists()


@pytest.fixture
def damaged_world(world, tmp_path):
    """A copy of the world with image 5 truncated and image 9 not an image at all."""
    from unitscope.data import BrodenDataset

    copy = tmp_path / "damaged"
    shutil.copytree(world, copy)
    ds = BrodenDataset(copy, validate="none")
    p5, p9 = ds.image_path(5), ds.image_path(9)
    p5.write_bytes(p5.read_bytes()[:300])
    p9.write_bytes(b"not a jpeg")
    return copy, p5, p9


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_image_is_named_with_its_index_row(damaged_world, tmp_path, workers):
    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect

    copy, p5, _ = damaged_world
    model = planted(copy)
    ds = BrodenDataset(copy, transform=None, validate="none")
    with pytest.raises(ValueError) as err:
        dissect(model, ds, ["feat"], tmp_path / "run", batch_size=4, num_workers=workers, progress=False)
    message = str(err.value)
    assert str(p5) in message and "index.csv line" in message and "--skip-bad-images" in message
    assert "Traceback" not in message and "DataLoader worker" not in message


@pytest.mark.parametrize("cache_gb", [4.0, 0.0])
def test_skip_bad_images_leaves_them_out_and_lists_them(damaged_world, world, tmp_path, cache_gb):
    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect

    copy, p5, p9 = damaged_world
    model = planted(copy)
    ds = BrodenDataset(copy, validate="none")
    kw = dict(quantile=0.05, topk=24, batch_size=4, progress=False, exemplar_images=False)
    result = dissect(model, ds, ["feat"], tmp_path / "run", skip_bad_images=True, cache_gb=cache_gb, **kw)
    assert len(result.bad_images) == 2 and str(p5) in result.bad_images[0] and str(p9) in result.bad_images[1]
    assert json.loads((tmp_path / "run" / "bad_images.json").read_text()).keys() == {"5", "9"}
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        shown = {r[0] for r in db.execute("SELECT image FROM exemplars")}
    assert shown and not shown & {5, 9}

    # the same numbers as dissecting the 22 good images alone
    class Without(torch_dataset := __import__("torch").utils.data.Dataset):
        keep = [i for i in range(len(ds)) if i not in (5, 9)]
        label_category, label_names, categories = ds.label_category, ds.label_names, ds.categories

        def __len__(self):
            return len(self.keep)

        def get(self, i, image=True, labels=True):
            return ds.get(self.keep[i], image=image, labels=labels)

        def load_image(self, i):
            return ds.load_image(self.keep[i])

    ref = dissect(model, Without(), ["feat"], tmp_path / "ref", cache_gb=cache_gb, **kw).layers["feat"]
    assert np.array_equal(result.layers["feat"].iou, ref.iou)


def test_cli_errors_are_one_line_unless_unexpected_or_debug(damaged_world, tmp_path, capsys, monkeypatch):
    from unitscope.cli import main

    copy, p5, _ = damaged_world
    monkeypatch.setenv("PLANTED_WORLD", str(copy))
    cmd = [
        "dissect",
        "--model",
        f"{PLANTED}:colour_units",
        "--data",
        str(copy),
        "--layers",
        "feat",
        "--no-progress",
        "--no-report",
        "--workers",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert str(p5) in err and "Traceback" not in err and "--debug" in err
    assert main(cmd + ["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(cmd + ["--skip-bad-images"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable images" in out and str(p5) in out

    import unitscope.commands.models as models

    def broken(args):
        return {}["no such key"]  # a bug, not a message for the user

    monkeypatch.setattr(models, "run_models", broken)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "no such key" in err


def test_a_dissection_starts_by_giving_back_what_the_heap_holds_free(world, tmp_path, monkeypatch):
    """dissect_sources releases the heap's free memory (unitscope.tally.release_freed_memory) once,
    when a run starts, before anything of it runs: a run starts from a whole heap, not the one a run
    before it in the same process fragmented; a run that fails was trimmed at its start too."""
    from unitscope.dissect import dissect, engine

    calls = []

    def pass1(run):  # the model's first batch comes after the trim
        calls.append("pass1")
        return original(run)

    original = engine._Run.pass1
    monkeypatch.setattr(engine._Run, "pass1", pass1)
    monkeypatch.setattr(engine, "release_freed_memory", lambda: calls.append("trim") or True)
    model = planted(world)
    ds = dataset(world, model)
    kw = dict(quantile=0.05, topk=3, batch_size=4, progress=False, exemplar_images=False)
    dissect(model, ds, ["feat"], tmp_path / "run", **kw)
    assert calls == ["trim", "pass1"]
    with faults.armed("pass2.batch=1:raise"), pytest.raises(faults.FaultInjected):
        dissect(model, ds, ["feat"], tmp_path / "cut", **kw)
    assert calls == ["trim", "pass1", "trim", "pass1"]
