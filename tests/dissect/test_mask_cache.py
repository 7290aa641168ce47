"""Pass 3 from pass 2's masks (the mask records) and the counting by label combination: both
give exactly the counts of finding the masks again and counting label by label."""

import numpy as np
import pytest
import torch

from tests.dissect.test_significance import TableActivations, TableLabels, table_world
from unitscope.dissect import Options, dissect_sources, iou
from unitscope.dissect import engine as engine_mod
from unitscope.dissect.cache import MaskCache

OPTS = dict(
    quantile=0.1, iou_threshold=0.1, topk=2, batch_size=8, seed=3, null_draws=6, exemplar_images=False, progress=False
)


def planes_world(n=12, k=3, size=16, num_labels=9, seed=0):
    """Random maps ``[n, 5, 4, 4]`` and ``k`` label planes with labels repeated across planes and
    carried as image-level labels too (what :func:`iou.label_planes` must drop)."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, 5, 4, 4, generator=g)
    labels = torch.randint(0, num_labels, (n, k, size, size), generator=g)
    labels[:, 1] = torch.where(torch.rand(n, size, size, generator=g) < 0.3, labels[:, 0], labels[:, 1])
    image_labels = torch.randint(0, num_labels, (n, 2), generator=g)
    present = torch.rand(n, 2, generator=g) < 0.8
    return maps, labels, image_labels, present, num_labels


def test_label_combos_rebuild_every_row():
    rows = torch.tensor([[3, 0, 2], [0, 0, 0], [3, 0, 2], [1, 4, 0], [0, 0, 0]], dtype=torch.int32)
    combo, table = iou.label_combos(rows, 5)
    assert table.tolist() == [[0, 0, 0], [1, 4, 0], [3, 0, 2]]  # the distinct rows, in order
    assert combo.tolist() == [2, 0, 2, 1, 0]
    assert torch.equal(table[combo.long()], rows.long())
    assert iou.label_combos(torch.tensor([[7]], dtype=torch.int32), 5) == (None, None)  # a label out of range


@pytest.mark.parametrize("denominator", ["annotated", "overlap"])
def test_counts_by_combination_equal_counts_by_label(monkeypatch, denominator):
    maps, labels, image_labels, present, L = planes_world()
    th = torch.quantile(maps.transpose(0, 1).flatten(1), 0.8, dim=1)
    orders = [torch.arange(12)] + iou.in_batch_orders(12, 4, 7)
    cats = torch.tensor([-1, 0, 0, 0, 0, 1, 1, 1, 1])
    kw = dict(denominator=denominator, label_category=cats)
    prep = iou.prepare_labels(labels, image_labels, present, L)
    assert prep.combo is not None and len(prep.table) < 12 * 16 * 16  # combinations used
    fast = iou.count_orders(maps, th, prep, None, None, None, orders, **kw)
    monkeypatch.setattr(iou, "_COMBO_BINS", 0)  # label by label, as before the combinations
    slow = iou.count_orders(maps, th, labels, image_labels, present, L, orders, **kw)
    assert slow[0][:, :, 1:].sum() > 100  # something was counted
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)


def run(tmp_path, name, **kw):
    maps, labels, image_labels, present = table_world()
    d = dissect_sources(
        TableActivations(maps), TableLabels(labels, image_labels, present), tmp_path / name, Options(**OPTS, **kw)
    )
    return d.layers["feat"]


def test_pass3_counts_pass2s_masks_and_gives_the_same_p_values(tmp_path, monkeypatch):
    found = []
    real_pixels = MaskCache.pixels

    def spy(record, tag, thresholds):
        out = real_pixels(record, tag, thresholds)
        found.append(out is not None)
        return out

    monkeypatch.setattr(MaskCache, "pixels", staticmethod(spy))
    phase, maps_read = [], []  # batches whose maps pass 3 read (from the activation cache)
    real_pass3, real_maps = engine_mod._Run.pass3, engine_mod._Run._pass2_maps

    def pass3(self, thresholds):
        phase.append(3)
        return real_pass3(self, thresholds)

    def maps(self, batch):
        if phase:
            maps_read.append(len(batch["pos"]))
        return real_maps(self, batch)

    monkeypatch.setattr(engine_mod._Run, "pass3", pass3)
    monkeypatch.setattr(engine_mod._Run, "_pass2_maps", maps)
    with_records = run(tmp_path, "with", keep_cache=True)
    assert found and all(found)  # every batch of pass 3 read pass 2's masks (5 batches of 8)
    assert len(found) == 5 and maps_read == []  # and no maps
    assert not (tmp_path / "with" / "cache" / "masks").exists()  # pass 3's alone: not kept
    # no records (every load fails): pass 3 finds the masks from the cached maps
    monkeypatch.setattr(MaskCache, "load", lambda self, positions: None)
    found.clear()
    phase.clear()
    without = run(tmp_path, "without")
    assert found and not any(found)
    assert maps_read == [8] * 5  # the masks found again from the cached maps
    assert np.isfinite(with_records.p_value).sum() == 3
    assert np.array_equal(with_records.p_value, without.p_value, equal_nan=True)
    assert with_records.images_needed == without.images_needed


def test_a_record_of_other_thresholds_or_positions_is_not_read(tmp_path):
    maps, labels, image_labels, present, L = planes_world()
    th = torch.quantile(maps.transpose(0, 1).flatten(1), 0.8, dim=1)
    masks = iou.mask_pixel_lists(maps, th, (16, 16))
    cache = MaskCache(tmp_path / "masks")
    positions = np.arange(8, 20)
    cache.write(positions, {"l0": (th, masks)}, 256)
    record = cache.load(positions)
    got = MaskCache.pixels(record, "l0", th)
    assert got is not None and len(got.pix) == sum(len(m.pix) for m in masks)
    assert MaskCache.pixels(record, "l0", th + 1e-6) is None  # other thresholds
    assert MaskCache.pixels(record, "l1", th) is None  # another layer
    assert cache.load(np.arange(8, 19)) is None  # other positions of the same first one
    # a budget already spent writes nothing
    small = MaskCache(tmp_path / "small", budget=10)
    small.write(positions, {"l0": (th, masks)}, 256)
    assert small.load(positions) is None


def test_records_held_in_memory_up_to_its_bytes_then_in_files(tmp_path):
    """The first ``memory`` bytes of records stay in the object (no file), later ones go to files;
    either reads back the same arrays; ``remove`` drops both and frees the budget."""
    maps, labels, image_labels, present, L = planes_world()
    th = torch.quantile(maps.transpose(0, 1).flatten(1), 0.8, dim=1)
    masks = iou.mask_pixel_lists(maps, th, (16, 16))
    prep = iou.prepare_labels(labels, image_labels, present, L)
    on_disk = MaskCache(tmp_path / "disk")
    on_disk.write(np.arange(0, 12), {"l0": (th, masks)}, 256, prep)
    size = on_disk.used  # one record's bytes in a file (a little more than its arrays)
    cache = MaskCache(tmp_path / "masks", memory=size)  # room for one record in memory
    for first in (0, 12):
        cache.write(np.arange(first, first + 12), {"l0": (th, masks)}, 256, prep)
    assert [f.name for f in (tmp_path / "masks").glob("b*")] == ["b000000012.safetensors"]  # the second
    want = on_disk.load(np.arange(0, 12))
    for first in (0, 12):
        got = cache.load(np.arange(first, first + 12))
        assert got is not None and sorted(got) == sorted(want)
        for name, a in want.items():
            b = got[name] if name != "positions" else got[name] - first
            assert b.dtype == a.dtype and np.array_equal(b, a), name
    assert cache.load(np.arange(0, 11)) is None  # other positions of a held record's first one
    held = cache.load(np.arange(0, 12))
    prep.present[:] = False  # the held record shares no memory with the batch's tensors
    th[:] = -1.0
    assert held["labels.present"].any() and (held["l0.thresholds"] > -1).all()
    cache.remove()
    assert cache.used == 0 and cache.load(np.arange(0, 12)) is None and not (tmp_path / "masks").exists()
    # a budget too small for the record: not held either
    small = MaskCache(tmp_path / "small", budget=10, memory=size)
    small.write(np.arange(0, 12), {"l0": (th, masks)}, 256)
    assert small.load(np.arange(0, 12)) is None and small.disabled


def test_one_process_holds_its_records_and_pass3_gives_what_records_in_files_give(tmp_path, monkeypatch):
    """A dissection in one process hands pass 3 the records it held (no record file written, every
    batch of pass 3 reads one); with none held they go through files: the same p-values either way."""
    import unitscope.runs as runs_mod

    files, found = [], []
    real_write, real_pixels = runs_mod.atomic_write_bytes, MaskCache.pixels

    def write(path, data, **kw):
        if "masks" in str(path):
            files.append(path)
        return real_write(path, data, **kw)

    def pixels(record, tag, thresholds):
        out = real_pixels(record, tag, thresholds)
        found.append(out is not None)
        return out

    monkeypatch.setattr(runs_mod, "atomic_write_bytes", write)  # MaskCache.write imports it when it writes
    monkeypatch.setattr(MaskCache, "pixels", staticmethod(pixels))
    held = run(tmp_path, "held", keep_cache=True)
    assert files == [] and found == [True] * 5  # pass 3's 5 batches of 8, each from a held record
    monkeypatch.setattr(engine_mod, "MASKS_HELD_BYTES", 0)
    found.clear()
    in_files = run(tmp_path, "files", keep_cache=True)
    assert len(files) == 5 and found == [True] * 5
    assert np.isfinite(held.p_value).sum() == 3
    assert np.array_equal(held.p_value, in_files.p_value, equal_nan=True)
    assert np.array_equal(held.iou, in_files.iou)


def test_counting_from_the_mask_lists():
    """Pass 2 counts the pixels it records: count_masks over mask_pixel_lists is count_batch."""
    maps, labels, image_labels, present, L = planes_world()
    th = torch.quantile(maps.transpose(0, 1).flatten(1), 0.8, dim=1)
    prep = iou.prepare_labels(labels, image_labels, present, L)
    inter, area, label_area = iou.count_masks(
        iou.mask_pixel_lists(maps, th, prep.size), 12, 5, prep, [torch.arange(12)]
    )
    ref = iou.count_batch(maps, th, labels, image_labels, present, L)
    assert torch.equal(inter[0], ref[0]) and torch.equal(area[0], ref[1]) and torch.equal(label_area, ref[2])
    picked = iou.select_units(iou.mask_pixel_lists(maps, th, prep.size)[0], torch.tensor([1, 3]), 5)
    sub = iou.count_masks([picked], 12, 2, prep, [torch.arange(12)])
    assert torch.equal(sub[0][0], ref[0][[1, 3]])


@pytest.mark.parametrize("denominator", ["annotated", "overlap"])
def test_counting_in_many_chunks_and_groups_equals_one_shot(monkeypatch, denominator):
    """The masks found a few pairs at a time and counted a few pixels at a time (several groups of
    chunks, a group of one chunk larger than the limit, empty chunks) give the counts of one chunk
    counted at once, for the identity and for derangements, by combination and label by label."""
    maps, labels, image_labels, present, L = planes_world()
    th = torch.quantile(maps.transpose(0, 1).flatten(1), 0.8, dim=1)
    th[2] = maps[:, 2].max()  # a unit with no mask anywhere: pairs with no pixels
    prep = iou.prepare_labels(labels, image_labels, present, L)
    orders = [torch.arange(12)] + iou.in_batch_orders(12, 3, 7)
    kw = {"denominator": denominator, "label_category": torch.tensor([-1, 0, 0, 1, 1, 0, 1, 0, 1])}
    whole = iou.mask_pixel_lists(maps, th, prep.size)
    assert len(whole) == 1
    want = iou.count_masks(whole, 12, 5, prep, orders, **kw)
    monkeypatch.setattr(iou, "_CHUNK_ELEMENTS", 256 * 5)  # 5 pairs a chunk
    chunks = iou.mask_pixel_lists(maps, th, prep.size)
    assert len(chunks) > 5 and max(len(c.pix) for c in chunks) > 40
    for limit in (1, 40, 300, 10**9):
        monkeypatch.setattr(iou, "_COUNT_ELEMENTS", limit)
        got = iou.count_masks(chunks, 12, 5, prep, orders, **kw)
        assert all(torch.equal(x, y) for x, y in zip(got, want)), limit
        monkeypatch.setattr(iou, "_COMBO_BINS", 1)  # label by label
        got = iou.count_masks(chunks, 12, 5, prep, orders, **kw)
        monkeypatch.undo()
        monkeypatch.setattr(iou, "_CHUNK_ELEMENTS", 256 * 5)
        assert all(torch.equal(x, y) for x, y in zip(got, want)), (limit, "by label")
    assert int(want[0].sum()) > 0


def test_exemplar_masks_found_together_equal_each_units_upsampled_masks():
    from unitscope.dissect.exemplars import _exemplar_masks, _unpack_masks

    g = torch.Generator().manual_seed(2)
    acts = torch.rand(5, 260, 7, 7, generator=g)  # 260 units: two groups of units at once
    images = torch.stack([torch.randperm(5, generator=g)[:3] for _ in range(260)])
    images[5, 1:] = -1  # a unit with one exemplar
    th = torch.quantile(acts.transpose(0, 1).flatten(1), 0.97, dim=1)
    th[7] = 2.0  # a unit whose masks are all empty
    maps = {(i, u): acts[i, u] for u in range(260) for i in images[u].tolist() if i >= 0}
    found = _exemplar_masks(images, maps, th, 64)
    assert 7 not in found and len(found) > 200
    for u in range(260):
        idx = [i for i in images[u].tolist() if i >= 0]
        ref = iou.upsample_masks(acts[idx, u], th[u].expand(len(idx)), (64, 64)).numpy()
        assert np.array_equal(_unpack_masks(found.get(u), len(idx), 64), ref), u


@pytest.mark.parametrize("denominator", ["annotated", "overlap"])
def test_recorded_labels_are_the_prepared_labels_and_count_the_same(tmp_path, denominator):
    """The labels a mask record holds (by label combination) rebuild every field prepare_labels
    gives, and count_masks counts the same from them, for the identity and for derangements."""
    maps, labels, image_labels, present, L = planes_world()
    th = torch.quantile(maps.transpose(0, 1).flatten(1), 0.8, dim=1)
    prep = iou.prepare_labels(labels, image_labels, present, L)
    masks = iou.mask_pixel_lists(maps, th, prep.size)
    cache = MaskCache(tmp_path / "masks")
    positions = np.arange(8, 20)
    cache.write(positions, {"l0": (th, masks)}, 256, prep)
    record = cache.load(positions)
    assert record is not None and record["labels.combo"].dtype == np.int16
    got = MaskCache.labels(record, L)
    assert got is not None and got.size == prep.size and got.num_labels == L
    for name in ("image_labels", "flat", "rows", "combo", "table", "present", "label_area"):
        a, b = getattr(got, name), getattr(prep, name)
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b), name
    orders = [torch.arange(12)] + iou.in_batch_orders(12, 4, 5)
    kw = {"denominator": denominator, "label_category": torch.tensor([-1, 0, 0, 1, 1, 0, 1, 0, 1])}
    want = iou.count_masks(masks, 12, 5, prep, orders, **kw)
    counted = iou.count_masks([MaskCache.pixels(record, "l0", th)], 12, 5, got, orders, **kw)
    assert int(want[0][:, :, 1:].sum()) > 100
    assert all(torch.equal(x, y) for x, y in zip(counted, want))
    assert MaskCache.labels(record, L + 1) is None  # labels of another label count
    cache.write(np.arange(30, 42), {"l0": (th, masks)}, 256)  # no labels given: none recorded
    assert MaskCache.labels(cache.load(np.arange(30, 42)), L) is None
    assert MaskCache.labels(None, L) is None


def test_pass3_reads_pass2s_labels_from_the_records_and_gives_the_same_p_values(tmp_path, monkeypatch):
    """With the records, pass 3 prepares no labels (nor reads label planes) and its p-values equal
    those of pass 3 preparing them from the planes (records without labels)."""
    phase, prepared = [], []
    real_pass3, real_prepare = engine_mod._Run.pass3, engine_mod.prepare_labels

    def pass3(self, thresholds):
        phase.append(3)
        return real_pass3(self, thresholds)

    def prepare(*args, **kw):
        prepared.append(bool(phase))
        return real_prepare(*args, **kw)

    monkeypatch.setattr(engine_mod._Run, "pass3", pass3)
    monkeypatch.setattr(engine_mod, "prepare_labels", prepare)
    with_labels = run(tmp_path, "with")
    assert prepared.count(False) == 5 and prepared.count(True) == 0  # pass 2's 5 batches; none in pass 3
    real_write = MaskCache.write
    monkeypatch.setattr(
        MaskCache, "write", lambda self, pos, layers, pixels, labels=None: real_write(self, pos, layers, pixels)
    )
    phase.clear()
    prepared.clear()
    without = run(tmp_path, "without")
    assert prepared.count(False) == 5 and prepared.count(True) == 5  # prepared again from the planes
    assert np.isfinite(with_labels.p_value).sum() == 3
    assert np.array_equal(with_labels.p_value, without.p_value, equal_nan=True)
    assert np.array_equal(with_labels.iou, without.iou)


def test_label_combos_by_count_and_by_scatter_and_from_planes_agree(monkeypatch):
    """The combinations seen found by a count (small lookups) or a scatter (large ones), from the
    rows or from the planes the caller laid out: the same combinations and table, which rebuild
    every row; prepare_labels gives them from its planes."""
    maps, labels, image_labels, present, L = planes_world(n=20, k=4, size=24)
    flat = iou.label_planes(labels, iou.distinct_image_labels(image_labels))
    rows = iou.label_rows(flat)
    combo, table = iou.label_combos(rows, L)
    assert combo is not None and table is not None and 50 < len(table) < len(rows)
    assert torch.equal(table[combo.long()], rows.long())
    planes = flat.transpose(0, 1).reshape(4, -1)
    for limit in (0, 1 << 20):
        monkeypatch.setattr(iou, "_SEEN_BY_COUNT", limit)
        for got in (iou.label_combos(rows, L), iou.label_combos(rows, L, planes=planes)):
            assert torch.equal(got[0], combo) and torch.equal(got[1], table), limit
    prep = iou.prepare_labels(labels, image_labels, present, L)
    assert torch.equal(prep.combo, combo) and torch.equal(prep.table, table)
    # a data set with image-level labels only (a captioned folder): no planes, no combinations to find
    none = iou.prepare_labels(labels[:, :0], image_labels, present, L)
    assert none.rows.shape == (20 * 24 * 24, 0)
    assert torch.equal(none.label_area, prep.label_area - iou.label_areas(flat, L))  # the image labels alone


def test_label_planes_in_int16_and_in_torch_agree_with_the_plain_rules():
    """label_planes (NumPy on int16 below 2**15 label numbers, torch on int32 above): each (pixel,
    label) once, labels the image carries as image-level ones dropped, as the plain rules give."""
    from unitscope.stats.iou import distinct_planes

    _, labels, image_labels, _, _ = planes_world(n=20, k=4, size=24)
    distinct = iou.distinct_image_labels(image_labels)
    want = iou.drop_image_level(distinct_planes(labels.flatten(2)), distinct).to(torch.int32)
    got = iou.label_planes(labels, distinct)
    assert got.dtype == torch.int32 and torch.equal(got, want)
    assert int((want == 0).sum()) > int((labels.flatten(2) == 0).sum())  # some repeats were dropped
    big = 40000  # label numbers past int16: the torch path, the same rules
    shifted = torch.where(labels > 0, labels + big, labels)
    shifted_image = torch.where(distinct > 0, distinct + big, distinct)
    want_big = iou.drop_image_level(distinct_planes(shifted.flatten(2)), shifted_image).to(torch.int32)
    assert torch.equal(iou.label_planes(shifted, shifted_image), want_big)
    assert torch.equal(torch.where(want_big > 0, want_big - big, want_big), want)
