"""Network Dissection (Bau et al., CVPR 2017): the engine, as a list of named steps.

    from unitscope.dissect import dissect
    from unitscope.data import BrodenDataset
    from unitscope.models import create_model, get_info
    model = create_model("efficientnet_lite0")
    data = BrodenDataset("probe-world", transform=get_info(model).transform())
    result = dissect(model, data, ["blocks.4", "blocks.6"], "runs/lite0")
    result.layers["blocks.6"].summary()      # "87 of 320 units are detectors, covering 31 concepts"

Two passes over the data, every layer at once, and a short third:
1. per unit the activation threshold T_k, the top ``quantile`` level over all positions of all
   images (raw maps; a layer that ends in a bounded activation such as ReLU6 is read before its
   cap, where values do not tie: ``values``, :func:`unitscope.layers.dissection_values`);
   activations go to the run's activation cache (:mod:`.cache`) when they fit ``cache_gb``, so
   that the second pass need not run the model again;
2. the top-k exemplar images, and the maps upsampled bilinearly to the label resolution and
   thresholded at T_k: IoU(k, c) = sum |M_k & L_c| / sum |M_k | L_c| over the data set,
   image-level labels as full-image masks;
3. the permutation null behind the p-values (:mod:`.significance`), only for the units whose
   p-value can matter (best IoU above the cut-off, and a fixed sample for ``images_needed``),
   from the activation cache: the cached maps of those units, and the labels read again.
The exemplar strips need the thresholds, the cached maps and each unit's top-k, which pass 1 finds
as pass 2 does: in a run of one layer, where a core is spare, they start at pass 1's end beside
passes 2 and 3, in a process forked for them before pass 1 (:mod:`.forked`; Linux), else in a
thread one group at a time until pass 3 ends; the concept strips follow pass 2's labels (else all
strips start after pass 2, beside pass 3). Where cores are spare the layers of a batch
are counted side by side, and pass 1's statistics are added behind the next forward pass
(:mod:`.schedule`; results bit-identical).
Each pass checkpoints into the run folder and resumes after a kill with identical results. Each
pass is keyed on what it depends on: a rerun with another ``quantile`` or ``topk`` redoes pass 2
only; another model, data set or layer list in the same folder is refused. :func:`dissect_sources`
runs the same engine on any :class:`~.sources.ActivationSource` and :class:`~.sources.LabelSource`.
Under ``torchrun`` every rank runs it on a shard and rank 0 writes the run folder (:mod:`.distributed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.dissect import schedule
from unitscope.dissect.cache import FOLDER as CACHE_FOLDER
from unitscope.dissect.cache import ActivationCache, LabelCache, MaskCache
from unitscope.dissect.distributed import ExactPass1, barrier, is_main, pass1_reduce, rank_world
from unitscope.dissect.exemplars import Thumbnails, strip_source, thumb_size, write_layer_strips, write_unit_strips
from unitscope.dissect.forked import ForkedCall
from unitscope.dissect.iou import (
    BatchLabels,
    MaskPixels,
    count_batch,
    count_masks,
    in_batch_orders,
    mask_pixel_lists,
    prepare_labels,
    select_units,
    shift_units,
)
from unitscope.dissect.options import Options, with_overrides
from unitscope.dissect.results import DissectResult, summarise, write_layer_rows
from unitscope.dissect.schedule import Behind, Gate, LayerThreads, OneTorchThread, Side
from unitscope.dissect.significance import null_seed, null_units
from unitscope.dissect.sources import (
    ActivationSource,
    BadImages,
    BrodenLabels,
    Items,
    LabelSource,
    collate_items,
    model_activations,
)
from unitscope.faults import fault
from unitscope.layers import LayerValues, check_bases
from unitscope.runs import (
    ARRAYS,
    BAD_IMAGES,
    CATALOG,
    CONFIG,
    IMAGES,
    LABELS,
    LAYERS,
    PAGE,
    REPORT,
    REPORT_JS,
    atomic_write_text,
    save_arrays,
)
from unitscope.stats import CombinedStat, IoUCounts, NullIoUCounts, Quantile, TopK
from unitscope.stats.quantile import sort_threads
from unitscope.tally import (
    TallyKeyError,
    changed_key_fields,
    check_resumable,
    keep_freed_memory,
    release_freed_memory,
    tally,
)

RUN_OUTPUTS = (
    "pass1",
    "pass2",
    "pass3",
    CACHE_FOLDER,
    ARRAYS,
    IMAGES,
    CATALOG,
    LAYERS,
    LABELS,
    BAD_IMAGES,
    REPORT,
    REPORT_JS,
    PAGE,
    CONFIG,
)
# The exemplar strips start at pass 1's end (beside passes 2 and 3) for runs of at most this many
# layers. Measured on 2 cores at 1,000 images: Lite0 blocks.6, everything after pass 1 took a median
# 3.69 s against 4.35 s (six runs each); the demo's three layers 16.6-20.4 s against 14.7-17.0 s, as
# their pass 2 (three layer threads, 5-6.5 s alone) shared the cores with the strips (10.5-14.1 s).
EARLY_STRIPS_LAYERS = 1
# Those early strips draw in a process forked before pass 1 (:mod:`.forked`; Linux), off the
# passes' interpreter lock, on every core they get (else in a thread, one group at a time until
# pass 3 ends). Measured on 2 cores, Lite0 blocks.6 at 1,000 images, fresh processes: after pass 1
# 1.96-2.11 s (four runs; the concept strips drawn beside the process) against 2.45-2.99 s in the
# thread, the strips byte-identical.
STRIPS_PROCESS = True
# Pass 2's mask records up to this many bytes stay in memory for pass 3 (one process): Lite0's
# blocks.6 at 1,000 images writes 70 MB of them, whose serialising, writing and reading back took
# 0.15-0.2 s of CPU and 0.1 s of system time beside the strips. Beyond it they go to files.
MASKS_HELD_BYTES = 256 * 2**20
# settings that only a pass's own result depends on: a change redoes that pass instead of refusing
_OWN = {
    1: {"rotations", "seed", "stat", "precision", "values", "memory_format"},
    2: {"quantile", "topk", "rotations", "seed", "stat", "denominator", "precision", "values", "memory_format"},
}


def random_rotation(c: int, seed: int) -> torch.Tensor:
    """A random orthogonal ``[C, C]`` matrix (Haar-distributed), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(c, c, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).float()


def rotate(acts: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Units of a rotated basis: ``[N, C, h, w]`` -> ``[N, C, h, w]`` with unit j = sum_i R[i, j] a_i."""
    return torch.einsum("nchw,cd->ndhw", acts, rotation.to(acts))


def add_layer_samples(
    stats,
    tag: str,
    acts: torch.Tensor,
    rotations: list[torch.Tensor],
    post: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Feed a layer's maps ``acts [N, C, h, w]`` to its pass-1 sketches in ``stats`` (a mapping of
    names to quantile sketches): ``{tag}_q`` for the units, ``{tag}_r{r}_q`` for each rotation (of
    the layer's output: ``post`` turns pre-activation maps into it)."""
    stats[f"{tag}_q"].add(acts)  # [N, C, h, w]: every position a sample, one copy to [C, N*h*w]
    out = post(acts) if post is not None and rotations else acts
    for r, rot in enumerate(rotations):
        stats[f"{tag}_r{r}_q"].add(rotate(out, rot))


def clear_run(run_dir: Path) -> None:
    """Delete what a dissection wrote into ``run_dir`` (``--fresh``); other files stay."""
    for name in RUN_OUTPUTS:
        path = run_dir / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for path in run_dir.glob("bad_images.rank*.json"):
        path.unlink()


def dissect(
    model: nn.Module,
    dataset: Any,
    layers: Sequence[str],
    run_dir: str | Path,
    options: Options | None = None,
    *,
    key: dict | None = None,
    config: dict | None = None,
    **overrides: Any,
) -> DissectResult:
    """Dissect ``layers`` of ``model`` over a Broden-format ``dataset``; results go to ``run_dir``.

    The settings are ``options`` (an :class:`~.options.Options`, default ``Options()``) with
    ``overrides`` by field name (``dissect(..., quantile=0.01, topk=5)``; an unknown name is an error
    naming the close matches). Each field's help text is its metadata; the CLI's options are those fields.
    ``key`` (e.g. model name and data path) identifies the run for resume: a rerun with the same
    key skips finished work; a different key in the same folder is an error. Everything is
    validated before the run folder is touched: only then does ``fresh`` delete earlier results
    and ``config`` (the resolved settings) go to ``config.json``. Beside the results, the catalog's
    ``layer_bases`` records whether each layer's units are a privileged basis (the report notes it
    by the rotation table; a warning line for each layer that is not).
    ``precision``: "bfloat16" or "float16" runs the forward pass under autocast (statistics stay
    float32); check a model's labels against a float32 run before trusting it (``benchmarks/bench_dissect.py
    --precision``, :func:`.results.label_agreement`).
    ``values``: which values are thresholded and ranked (:func:`unitscope.layers.dissection_values`):
    "auto" reads a layer that ends in a bounded activation (ReLU6, sigmoid, tanh, hardtanh) before
    it, since at the cap its output ties and the top-quantile mask "activation > T" would be empty;
    "pre" every layer before its activation module; "post" every layer's output.
    """
    opts = with_overrides(options, overrides)
    device = torch.device(opts.device)
    opts = dataclasses.replace(opts, device=device)
    if opts.basis:  # bases of the layers dissected beside (or instead of) their units: unitscope.bases.run
        from unitscope.bases.run import dissect_bases

        return dissect_bases(model, dataset, layers, run_dir, opts, key=key, config=config)
    model = model.to(device).eval()
    acts = model_activations(model, dataset, layers, opts, key)
    bases = check_bases(model, acts.layers) if is_main() else {}
    result = dissect_sources(acts, BrodenLabels(dataset), run_dir, opts, config=config)
    if is_main():
        record_bases(Path(run_dir), acts.model_name, bases)
    return result


def record_bases(run_dir: Path, model_name: str, bases: dict[str, bool]) -> None:
    """The bases into the catalog (table ``layer_bases``), where the report notes them by the rotation table."""
    from unitscope.catalog import Catalog

    with Catalog(run_dir / CATALOG) as cat, cat.transaction():
        for layer, ok in bases.items():
            cat.replace("layer_bases", [{"privileged": ok}], model=model_name, layer=layer)


def dissect_sources(
    acts: ActivationSource,
    labels: LabelSource,
    run_dir: str | Path,
    opts: Options | None = None,
    *,
    fresh: bool = False,
    config: dict | None = None,
) -> DissectResult:
    """The engine: dissect whatever ``acts`` yields against whatever ``labels`` gives (``fresh``: or ``opts.fresh``)."""
    opts = opts if opts is not None else Options()
    opts = dataclasses.replace(opts, device=torch.device(opts.device), fresh=fresh or opts.fresh)
    fresh = opts.fresh
    keep_freed_memory()  # before any thread of the run starts (torch's too): they all allocate from one heap
    # what an earlier run in this process left freed in the heap, back to the OS: each run starts
    # from a whole heap, not one the run before it fragmented (a first run: a few ms, nothing to give)
    release_freed_memory()
    run = _Run.prepare(acts, labels, Path(run_dir), opts, fresh)  # validates; writes nothing
    run.open(fresh, config)
    try:
        thresholds = run.pass1()
        # the rest reads the caches (no model runs): torch at one thread; pass 2's rotated maps keep
        # pass 1's threads (their matmul's rounding is the one pass 1's rotated thresholds saw)
        one = run._reads_cache()
        with OneTorchThread(one and not opts.rotations):
            early = run.start_exemplar_strips(thresholds)  # beside passes 2 and 3, where a core is spare
            try:
                run.pass2(thresholds)
            except BaseException:
                if early is not None:
                    early.stop()  # this error wins over the strips'
                raise
            with OneTorchThread(one):
                # the rest of the strips: beside pass 3 where a core is spare
                strips = run.start_strips(thresholds, early)
                try:
                    run.pass3(thresholds)
                    if early is not None:
                        early.gate.widen()  # the passes done: the strips take every core
                    result = run.summarise(thresholds)
                except BaseException:
                    if early is not None:  # the groups not yet begun are turned away: no wait for them
                        early.stop()  # this error wins over the strips'
                    else:
                        strips[0].close(raise_errors=False)  # this error wins over the strips'
                    raise
                run.write(result, thresholds, strips)
    finally:
        run.stop_strips_child()  # one pass 1 forked and no strips took (on an error): ended
    return result


@dataclass
class _Run:
    """One dissection's state between its steps."""

    acts: ActivationSource
    labels: LabelSource
    run_dir: Path
    opts: Options
    shapes: dict[str, tuple[int, int, int]]
    tag: dict[str, str]  # layer -> short name used for files ("l0", "l1", ...)
    rots: dict[str, list[torch.Tensor]]
    key: dict[str, Any]  # what the activations depend on
    values: dict[str, LayerValues]  # per layer: the output, or the input of its bounded activation
    pass1_stat: CombinedStat
    pass2_stat: CombinedStat
    redo: dict[int, bool] = field(default_factory=dict)
    cache: ActivationCache | None = None
    label_cache: LabelCache | None = None  # the planes pass 2 read (pass 1, for labels of the forward pass)
    _forward_labels: bool = False  # the labels need the source's forward pass (not cached in pass 1)
    null: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # layer -> (units [U], IoU [D, U, L])
    bad: BadImages | None = None
    pass1_top: dict[str, TopK] | None = None  # layer -> the top-k of the maps pass 1 saw (all of them, or not only)
    masks: MaskCache | None = None  # pass 2's mask records, some held in memory, for pass 3 in this process
    strips_child: ForkedCall | None = None  # forked before pass 1 for the early strips, until they start

    def __post_init__(self) -> None:
        self._forward_labels = self.labels.needs_forward  # until pass 1 has cached them

    @property
    def layers(self) -> list[str]:
        return self.acts.layers

    @property
    def n(self) -> int:
        return len(self.acts)

    def tally_key(self, number: int) -> dict[str, Any]:
        o = self.opts
        own = {"rotations": o.rotations, "seed": o.seed}
        if number == 2:
            own.update(quantile=o.quantile, topk=o.topk, denominator=o.denominator)
        return {**self.key, "pass": number, **own}

    @classmethod
    def prepare(
        cls, acts: ActivationSource, labels: LabelSource, run_dir: Path, opts: Options, fresh: bool = False
    ) -> _Run:
        """Check the layers, build both passes' statistics, and check a rerun against what the run
        folder holds: a change of model, data or layers is refused here, before anything is written."""
        if not 0 < opts.quantile < 0.5:
            raise ValueError(f"quantile must be in (0, 0.5), the fraction of top activations; got {opts.quantile}")
        if opts.denominator not in ("annotated", "overlap"):
            raise ValueError(f"denominator must be 'annotated' or 'overlap', got {opts.denominator!r}")
        if opts.null_draws == 1 or opts.null_draws < 0:
            raise ValueError(f"null_draws must be 0 (no p-values) or at least 2, got {opts.null_draws}")
        shapes = acts.shapes()
        layers = acts.layers
        category = labels.label_category.clamp(min=0)
        stats1, stats2 = {}, {}
        g, overlap = len(labels.categories), opts.denominator == "overlap"
        for i, layer in enumerate(layers):
            t, c = f"l{i}", shapes[layer][0]
            stats1[f"{t}_q"] = Quantile(device=opts.device)
            stats2[f"{t}_top"] = TopK(opts.topk, device=opts.device)
            stats2[f"{t}_iou"] = IoUCounts(c, category, g, device=opts.device, overlap=overlap)
            for r in range(opts.rotations):
                stats1[f"{t}_r{r}_q"] = Quantile(device=opts.device)
                stats2[f"{t}_r{r}_iou"] = IoUCounts(c, category, g, device=opts.device, overlap=overlap)
        rots = {
            layer: [random_rotation(shapes[layer][0], opts.seed + 1000 * i + r) for r in range(opts.rotations)]
            for i, layer in enumerate(layers)
        }
        run = cls(
            acts,
            labels,
            run_dir,
            opts,
            shapes,
            {layer: f"l{i}" for i, layer in enumerate(layers)},
            rots,
            acts.key(),
            acts.values(),
            CombinedStat(**stats1),
            CombinedStat(**stats2),
        )
        for number, stat in ((1, run.pass1_stat), (2, run.pass2_stat)):
            run.redo[number] = not fresh and run._must_redo(number, stat)
        if run.redo[1]:
            run.redo[2] = True
        return run

    def _must_redo(self, number: int, stat: CombinedStat) -> bool:
        folder, key = self.run_dir / f"pass{number}", self.tally_key(number)
        changed = changed_key_fields(stat, self.n, run_dir=folder, key=key, batch_size=self.opts.batch_size)
        if not changed:
            return False
        if changed <= _OWN[number]:
            return True
        check_resumable(stat, self.n, run_dir=folder, key=key, batch_size=self.opts.batch_size)  # raises
        raise TallyKeyError(f"{folder} holds a tally made with different settings: {sorted(changed)}")

    def open(self, fresh: bool, config: dict | None) -> None:
        """Validated: now delete (``fresh``), write ``config.json``, open the cache and the bad-image list
        (shared files by rank 0 alone, the others wait for it)."""
        rank = rank_world()[0]
        if rank == 0:
            if fresh:
                clear_run(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if config is not None:
                atomic_write_text(self.run_dir / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
            self._open_cache(rank)  # may discard a cache made for other activations
        barrier()
        if rank != 0:
            self._open_cache(rank)
        self.bad = BadImages(self.run_dir, self.opts.skip_bad_images, rank)

    def _open_cache(self, rank: int) -> None:
        values = {layer: {"values": v.values, "note": v.note, "spec": v.spec} for layer, v in self.values.items()}
        cache = ActivationCache(self.run_dir / CACHE_FOLDER, self.shapes, self.n, self.key, rank, values)
        self.cache = cache if cache.nbytes <= self.opts.cache_gb * 2**30 else None

    def _batches(self, number: int, stat: CombinedStat, items: Items, key: dict[str, Any] | None = None, **kw: Any):
        o = self.opts
        for batch in tally(
            stat,
            items,
            batch_size=o.batch_size,
            # a pass that reads the caches and a label store decodes nothing: no worker to fork, whose
            # copy-on-write faults cost more than the reads (blocks.6 at 1,000 images, all after pass 1:
            # 4.6-5.1 -> 3.5 s wall, 7.8-8.5 -> 5.3-5.7 s CPU)
            num_workers=0 if items.cheap else o.num_workers,
            collate_fn=collate_items,
            pin_memory=o.device.type == "cuda",
            run_dir=self.run_dir / f"pass{number}",
            key=key or self.tally_key(number),
            fresh=self.redo[number],
            checkpoint_every=o.checkpoint_every,
            progress=o.progress,
            desc=f"dissect pass {number}",
            name=f"pass{number}",
            **kw,
        ):
            self.bad.check(batch["bad"])
            yield batch

    def pass1(self) -> dict[str, list[torch.Tensor]]:
        """Thresholds T_k per layer: ``[axis-aligned, rotation 1, ...]``, each ``[C]``; fills the cache."""
        stat, cache, ran = self.pass1_stat, self.cache, False
        reduce = pass1_reduce(self)
        sketch = not isinstance(reduce, ExactPass1)  # else the reduce sketches all cached maps
        lc = self._open_label_cache(forward=True)  # a source that labels in its forward pass: labels cached here

        # each unit's top-k images as pass 2 will find them (TopK's order does not depend on the
        # batches), for exemplar strips that start before pass 2 (:meth:`start_exemplar_strips`):
        # one process, strips on, maps cached, no rotations (pass 2 runs them at torch's threads)
        early = (
            self.opts.exemplar_images
            and cache is not None
            and not self.opts.rotations
            and len(self.layers) <= EARLY_STRIPS_LAYERS
            and rank_world()[1] == 1
        )
        top = {layer: TopK(self.opts.topk, device=self.opts.device) for layer in self.layers} if early else None
        if early and STRIPS_PROCESS and ForkedCall.available() and schedule.spare_cores(torch_threads=1) >= 2:
            # forked now, while the heap is small and no thread of this pass runs; it waits for
            # pass 1's thresholds and top-k (or is ended: dissect_sources). A core is spare for the
            # strips when torch runs at one thread after pass 1 (dissect_sources)
            try:
                self.strips_child = ForkedCall(self._draw_exemplar_strips, "exemplar strips")
            except OSError as e:  # e.g. a strict memory overcommit refusing the fork: the thread draws them
                warnings.warn(f"the exemplar strips draw in a thread: no process for them ({e})", stacklevel=2)
        # the sketches and the cache writes of a batch run behind the next batch's forward pass
        # (one background thread, where a core is spare); every checkpoint waits for them first
        behind = Behind()

        def flush() -> None:
            behind.wait()
            for c in (cache, lc):
                if c is not None:
                    c.flush(self._durable())

        def record(maps: dict[str, torch.Tensor], pos: np.ndarray) -> None:
            for layer, a in maps.items():
                t = self.tag[layer]
                if sketch:
                    add_layer_samples(stat, t, a, self.rots[layer], self.values[layer].post)
                if cache is not None:
                    cache.write(layer, pos, a.cpu().numpy())
                if top is not None:
                    top[layer].add(a, torch.from_numpy(pos))

        # inline, the statistics run while torch's threads wait for the next forward pass: the
        # sketches' sorts take those threads' cores (results the same at any number of threads)
        sorting = sort_threads(1 if behind.background else torch.get_num_threads())
        with behind, sorting:  # on an error in the loop, the loop's error wins over the thread's
            for batch in self._batches(1, stat, Items(self.n, self.acts), on_checkpoint=flush, reduce=reduce):
                ran = True
                if cache is not None and batch["bad"]:
                    behind.wait()  # the cache's rows are written in batch order
                    cache.skip(np.array([p for p, _ in batch["bad"]]))
                    if lc is not None:
                        lc.skip(np.array([p for p, _ in batch["bad"]]))
                if not len(batch["pos"]):
                    continue
                maps = self.acts.activations(batch)
                if lc is not None:  # pass 2 (and 3) then read them, with the maps, and never run the source
                    lc.write(batch["pos"].numpy(), *self.labels.label_batch(batch))
                behind.submit(record, maps, batch["pos"].numpy())
        if cache is not None and ran and sketch and is_main():
            cache.mark_complete(self._durable())
            if lc is not None:
                lc.mark_complete(self._durable())
        if cache is not None and not cache.complete:  # e.g. pass 1 finished earlier and its cache was removed
            self.cache = None
        self._forward_labels = self.labels.needs_forward and not (
            self.cache is not None and lc is not None and lc.complete
        )
        if lc is not None and self._forward_labels:
            lc.close()
            self.label_cache = None
        self.pass1_top = top if ran else None
        level = 1 - self.opts.quantile
        return {
            layer: [
                stat[f"{self.tag[layer]}{part}_q"].quantiles(level).float().to(self.opts.device)
                for part in [""] + [f"_r{r}" for r in range(self.opts.rotations)]
            ]
            for layer in self.layers
        }

    def _pass2_maps(self, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The batch (without rows of images skipped in pass 1) and its maps, from the cache or the model."""
        if self.cache is None or self._forward_labels:
            return batch, self.acts.activations(batch)
        keep = torch.from_numpy(self.cache.rows[batch["pos"].numpy()] == ActivationCache.WRITTEN)
        if not keep.all():
            batch = {k: v[keep] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        pos = batch["pos"].numpy()
        dev = self.opts.device
        return batch, {layer: torch.from_numpy(self.cache.read(layer, pos)).to(dev) for layer in self.layers}

    def pass2(self, thresholds: dict[str, list[torch.Tensor]]) -> None:
        """Top-k exemplars and IoU counts of every unit (and of every rotated unit); the layers of a
        batch side by side where cores are spare (:class:`~.schedule.LayerThreads`)."""
        # at one torch thread (the layers take the cores) where the maps come from the cache, not
        # the model, and no rotated maps are counted: those go through a matmul, whose rounding must
        # stay the one pass 1's rotated thresholds saw
        one = self._reads_cache() and not self.opts.rotations
        with LayerThreads(self.layers, one_torch_thread=one) as each:
            self._pass2(thresholds, each)

    def _reads_cache(self) -> bool:
        """Whether passes 2 and 3 read the maps from the activation cache (else they run the model)."""
        return self.cache is not None and not self._forward_labels

    def _pass2(self, thresholds: dict[str, list[torch.Tensor]], each: LayerThreads) -> None:
        stat, dev = self.pass2_stat, self.opts.device
        cached = self.label_cache if self.labels.needs_forward and not self._forward_labels else None  # pass 1's
        items = Items(
            self.n,
            self.acts if self.cache is None or self._forward_labels else None,
            None if cached is not None else self.labels,
        )
        num_labels = len(self.labels.label_names)
        kw = {"denominator": self.opts.denominator, "label_category": self.labels.label_category.to(dev)}
        lc = self._open_label_cache(forward=False)
        mc = self._open_mask_cache()
        ran = False
        parts = each.parts({layer: self.shapes[layer][0] for layer in self.layers})
        # the batch's labels are prepared beside the layers' masks (which need none), and its mask
        # record written while the next batch is read: one side thread where a core is spare
        side = Side()
        with side:  # on an error in the loop, the loop's error wins over the thread's
            for batch in self._batches(2, stat, items, on_checkpoint=lc.flush if lc is not None else None):
                ran = True
                if lc is not None and batch["bad"]:
                    lc.skip(np.array([p for p, _ in batch["bad"]]))
                if not len(batch["pos"]):
                    continue
                every = batch["pos"].numpy()
                batch, maps = self._pass2_maps(batch)
                if lc is not None:
                    lc.skip(np.setdiff1d(every, batch["pos"].numpy()))
                if not len(batch["pos"]):
                    continue
                planes = cached.read(batch["pos"].numpy()) if cached is not None else self.labels.label_batch(batch)
                if lc is not None:
                    lc.write(batch["pos"].numpy(), *planes)
                size = (int(planes[0].shape[-2]), int(planes[0].shape[-1]))
                prep = side.submit(prepare_labels, *planes, num_labels, dev)  # once for every layer and rotation
                pos = batch["pos"].to(dev)

                def count(
                    part: tuple[str, int, int], maps=maps, prep=prep, pos=pos, size=size
                ) -> tuple[list[MaskPixels], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
                    layer, lo, hi = part
                    a, t = maps[layer], self.tag[layer]
                    # the whole layer's slice is the map itself (a contiguous view: no copy)
                    masks = mask_pixel_lists(a[:, lo:hi], thresholds[layer][0][lo:hi], size)
                    labels = prep.result()
                    counts = count_masks(masks, len(a), hi - lo, labels, [torch.arange(len(a), device=dev)], **kw)
                    if lo == 0:  # the layer's top-k and rotations: one part's, so one thread's statistics
                        stat[f"{t}_top"].add(a, pos)
                        out = self.values[layer].post(a) if self.rots[layer] else a  # rotations of the output
                        for r, rot in enumerate(self.rots[layer]):
                            stat[f"{t}_r{r}_iou"].add_counts(
                                *count_batch(rotate(out, rot), thresholds[layer][r + 1], labels, **kw)
                            )
                    return [shift_units(m, lo) for m in masks], counts

                done = each.map(count, parts)
                record = {}
                for layer in self.layers:  # the parts joined in unit order, here: bit-identical to one part
                    mine = [d for p, d in zip(parts, done) if p[0] == layer]
                    t = self.tag[layer]
                    inter, area = (torch.cat([counts[i][0] for _, counts in mine]) for i in (0, 1))
                    stat[f"{t}_iou"].add_counts(inter, area, mine[0][1][2])
                    record[t] = (thresholds[layer][0], [m for masks, _ in mine for m in masks])
                if mc is not None:  # for pass 3: the candidates' masks without finding them again
                    mc.budget = self._mask_budget()  # the label cache is laid out on its first batch
                    side.submit(mc.write, batch["pos"].numpy(), record, size[0] * size[1], prep.result())
        if lc is not None and ran and is_main():
            lc.mark_complete(self._durable())
        if lc is not None and not lc.complete:
            lc.close()
            self.label_cache = None

    def _durable(self) -> bool:
        """Whether the caches' rows must survive a crash of the machine (synced, not only this boot's:
        :func:`~.cache.record_rows`): a cache kept after the run, or ranks that may run on other machines."""
        return self.opts.keep_cache or rank_world()[1] > 1

    def _open_label_cache(self, forward: bool) -> LabelCache | None:
        """The label cache beside the activation cache, within what ``cache_gb`` leaves: filled in
        pass 1 (``forward``) for labels that come from the source's forward pass (a segmenter on a
        generator's samples), in pass 2 for labels from the data set; ``None`` otherwise (pass 3 then
        reads the data set, or runs the source)."""
        if self.cache is None or self.labels.needs_forward != forward:
            return None
        budget = self.opts.cache_gb * 2**30 - self.cache.nbytes
        self.label_cache = LabelCache(
            self.run_dir / CACHE_FOLDER / "labels",
            self.n,
            self.key,
            len(self.labels.label_names),
            rank_world()[0],
            budget,
        )
        return self.label_cache

    def _open_mask_cache(self) -> MaskCache | None:
        """Where pass 2 records its masks for pass 3 (:class:`~.cache.MaskCache`), within what
        ``cache_gb`` leaves after the activations and labels; None without p-values or cache."""
        if self.cache is None or not self.opts.null_draws or self._forward_labels:
            return None
        held = MASKS_HELD_BYTES if rank_world()[1] == 1 else 0  # ranks: pass 3 may read another's records
        mc = MaskCache(self.run_dir / CACHE_FOLDER / "masks", self._mask_budget(), memory=held)
        if self.redo.get(2, False):
            mc.remove()  # records of other thresholds: never read (pass 3 checks them too)
        self.masks = mc
        return mc

    def _recorded_masks(
        self,
        masks: MaskCache | None,
        batch: dict[str, Any],
        lc: LabelCache | None,
        thresholds: dict[str, list[torch.Tensor]],
    ) -> tuple[dict[str, Any], dict[str, Any], BatchLabels | None] | None:
        """Pass 3's batch (the rows pass 2 counted), pass 2's masks of every layer there,
        ``{layer: MaskPixels}``, and the labels pass 2 prepared for them (None where the record has
        none), where pass 2 recorded them for these thresholds; else None."""
        if masks is None or self.cache is None or self._forward_labels:
            return None
        pos = batch["pos"].numpy()
        keep = self.cache.rows[pos] == ActivationCache.WRITTEN
        if lc is not None:
            keep &= lc.rows[pos] == LabelCache.WRITTEN
        record = masks.load(pos[keep])
        found = {layer: MaskCache.pixels(record, self.tag[layer], thresholds[layer][0]) for layer in self.layers}
        if any(m is None for m in found.values()):
            return None
        if not keep.all():
            rows = torch.from_numpy(keep)
            batch = {k: v[rows] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return batch, found, MaskCache.labels(record, len(self.labels.label_names), self.opts.device)

    def _mask_budget(self) -> float:
        lc, used = self.label_cache, self.cache.nbytes if self.cache is not None else 0
        labels = sum(lc._row) * self.n if lc is not None and lc.layout is not None else 0
        return self.opts.cache_gb * 2**30 - used - labels

    def pass3(self, thresholds: dict[str, list[torch.Tensor]]) -> None:
        """The permutation null (:mod:`.significance`) of the units whose p-value can matter: their
        cached maps (the model runs again only without the cache) matched to other images' labels,
        with the derangements a null of every unit would draw, so their p-values are the full null's."""
        o, dev = self.opts, self.opts.device
        if not o.null_draws:
            return
        category, g = self.labels.label_category.clamp(min=0), len(self.labels.categories)
        units = {layer: null_units(self._best_iou(layer), o.iou_threshold) for layer in self.layers}
        stat = CombinedStat(
            **{
                f"{self.tag[layer]}_null": NullIoUCounts(
                    len(u), category, g, o.null_draws, dev, o.denominator == "overlap"
                )
                for layer, u in units.items()
            }
        )
        key = {
            **self.key,
            "pass": 3,
            "seed": o.seed,
            "quantile": o.quantile,
            "null_draws": o.null_draws,
            "denominator": o.denominator,
            "units": {self.tag[layer]: hashlib.sha1(u.tobytes()).hexdigest() for layer, u in units.items()},
        }
        self.redo[3] = self.redo.get(2, False) or bool(
            changed_key_fields(stat, self.n, run_dir=self.run_dir / "pass3", key=key, batch_size=o.batch_size)
        )
        lc = self.label_cache if self.label_cache is not None and self.label_cache.complete else None
        if lc is not None:
            lc.gather_rows()
        items = Items(
            self.n,
            self.acts if self.cache is None or self._forward_labels else None,
            None if lc is not None else self.labels,
        )  # the labels from the label cache: no decoding
        picks = {layer: torch.from_numpy(u).to(dev) for layer, u in units.items()}
        masks = None
        if self.cache is not None:  # pass 2's records, held ones too; else (a resume) those in files
            masks = self.masks if self.masks is not None else MaskCache(self.run_dir / CACHE_FOLDER / "masks")
        with LayerThreads(self.layers, one_torch_thread=self._reads_cache()) as each:
            self._pass3(stat, items, key, lc, masks, thresholds, picks, each)
        self.masks = None  # the records held in memory go: their heap serves the strips
        self.null = {layer: (u, stat[f"{self.tag[layer]}_null"].iou().cpu().numpy()) for layer, u in units.items()}

    def _pass3(
        self,
        stat: CombinedStat,
        items: Items,
        key: dict[str, Any],
        lc: LabelCache | None,
        masks: MaskCache | None,
        thresholds: dict[str, list[torch.Tensor]],
        picks: dict[str, torch.Tensor],
        each: LayerThreads,
    ) -> None:
        o, dev = self.opts, self.opts.device
        num_labels = len(self.labels.label_names)
        kw = {"denominator": o.denominator, "label_category": self.labels.label_category.to(dev)}
        side = Side()  # the labels prepared beside the layers' masks
        with side:  # on an error in the loop, the loop's error wins over the thread's
            for batch in self._batches(3, stat, items, key=key):
                if not len(batch["pos"]):
                    continue
                found = self._recorded_masks(masks, batch, lc, thresholds)
                recorded: BatchLabels | None = None
                if found is not None:  # pass 2's masks of every unit: no maps read, no masks found again
                    batch, maps, recorded = found
                else:
                    batch, maps = self._pass2_maps(batch)
                    if lc is not None:  # the rows pass 2 counted: those the data set would give again
                        keep = torch.from_numpy(lc.rows[batch["pos"].numpy()] == LabelCache.WRITTEN)
                        if not keep.all():
                            batch = {k: v[keep] for k, v in batch.items() if isinstance(v, torch.Tensor)}
                            maps = {layer: a[keep.to(a.device)] for layer, a in maps.items()}
                if len(batch["pos"]) < 2:  # no derangement of one image
                    continue
                if recorded is not None:  # pass 2's prepared labels: no planes read or prepared again
                    size, prep = recorded.size, side.submit(lambda labels=recorded: labels)
                else:
                    planes = lc.read(batch["pos"].numpy()) if lc is not None else self.labels.label_batch(batch)
                    size = (int(planes[0].shape[-2]), int(planes[0].shape[-1]))
                    prep = side.submit(prepare_labels, *planes, num_labels, dev)  # beside the candidates' masks
                # the derangements depend only on the batch's first position: resume-exact
                orders = in_batch_orders(len(batch["pos"]), o.null_draws, null_seed(o.seed, int(batch["pos"][0])), dev)
                n = len(batch["pos"])

                def count(layer: str, maps=maps, prep=prep, orders=orders, n=n, size=size) -> None:
                    a, pick, t = maps[layer], picks[layer], self.tag[layer]
                    if isinstance(a, MaskPixels):
                        pixels = [select_units(a, pick, self.shapes[layer][0])]
                    else:
                        pixels = mask_pixel_lists(a[:, pick], thresholds[layer][0][pick], size)
                    counts = count_masks(pixels, n, len(pick), prep.result(), orders, **kw)
                    stat[f"{t}_null"].add_counts(*counts)

                each(count)

    def _best_iou(self, layer: str) -> np.ndarray:
        """``[C]``: each unit's best IoU after pass 2 (label 0, "unlabelled", left out), as ``summarise`` has it."""
        iou = self.pass2_stat[f"{self.tag[layer]}_iou"].iou().cpu().numpy()
        return np.maximum(iou[:, 1:].max(axis=1), 0.0) if iou.shape[1] > 1 else np.zeros(len(iou))

    def _label_categories(self) -> list[str]:
        """Each label's category name (``""``: none), in label order."""
        cats = list(self.labels.categories)
        return [cats[int(g)] if int(g) >= 0 else "" for g in self.labels.label_category.tolist()]

    def _labelled(self, layer: str, threshold: torch.Tensor, counts: str, label_cats: list[str]):
        """One part of ``layer`` (the units, or a rotation of them) labelled from pass 2's IoU counts
        ``counts`` at ``threshold [C]`` (:func:`~.results.summarise`)."""
        return summarise(
            layer,
            self.shapes[layer],
            threshold.cpu().numpy(),
            self.pass2_stat[counts].iou().cpu().numpy(),
            self.opts.iou_threshold,
            list(self.labels.label_names),
            label_cats,
        )

    def summarise(self, thresholds: dict[str, list[torch.Tensor]]) -> DissectResult:
        """Best concept per unit, detectors, and the rotation rows; arrays saved per layer."""
        label_cats, o = self._label_categories(), self.opts
        self.bad.gather()  # every rank's, once pass 2 has ended everywhere
        result = DissectResult(self.run_dir, bad_images=self.bad.messages())
        # per-unit quantiles at fixed levels: the report's activation histogram on each unit page
        levels = np.unique(np.round(np.r_[np.linspace(0, 1, 101), 1 - o.quantile, 0.999, 0.9995, 0.9999], 9))
        for layer in self.layers:
            t = self.tag[layer]
            parts = [
                self._labelled(layer, th, name, label_cats)
                for th, name in zip(thresholds[layer], [f"{t}_iou"] + [f"{t}_r{r}_iou" for r in range(o.rotations)])
            ]
            units, null = self.null.get(layer, (None, None))
            parts[0].add_significance(null, self.n, o.quantile, units)
            result.layers[layer], result.rotated[layer] = parts[0], parts[1:]
            result.rotations[layer] = [(int(d.detectors.sum()), d.unique_concepts) for d in parts]
            values, images, ys, xs = (x.cpu().numpy() for x in self.pass2_stat[f"{t}_top"].result())
            parts[0].add_saturation(self.values[layer].note, values, images)
            if not is_main():
                continue
            save_arrays(
                self.run_dir / ARRAYS / f"{t}.safetensors",
                {
                    "thresholds": parts[0].thresholds,
                    "iou": parts[0].iou.astype(np.float32),
                    "top_values": values.astype(np.float32),
                    "top_images": images.astype(np.int64),
                    "top_y": ys.astype(np.int64),
                    "top_x": xs.astype(np.int64),
                    "quantile_levels": levels,
                    "quantiles": self.pass1_stat[f"{t}_q"].quantiles(levels.tolist()).cpu().numpy(),
                    **count_arrays(self.pass2_stat[f"{t}_iou"], parts[0]),
                },
            )
        return result

    def start_exemplar_strips(self, thresholds: dict[str, list[torch.Tensor]]) -> _EarlyStrips | None:
        """Start the exemplar strips at pass 1's end, beside passes 2 and 3: they need only the
        thresholds, the maps (the activation cache) and the top-k images, which pass 1 found as
        pass 2 finds them. They draw in the process pass 1 forked for them (:attr:`strips_child`)
        on the cores they get, else in a background thread one group of units at a time (a
        :class:`~.schedule.Gate` of one) until pass 3 ends. The concept strips follow once pass 2
        has labelled the units (:meth:`start_strips`), in the background thread. None where they
        cannot start early: a single process with a spare core, maps and labels read from the
        caches, no rotations (pass 2 runs them at torch's threads), and pass 1 run whole here (one
        resumed from a checkpoint saw only some images); the strips then start after pass 2."""
        top, self.pass1_top = self.pass1_top, None  # None unless pass 1 could keep it (see there)
        behind = self._early_strips_thread(top)
        if behind is None:
            self.stop_strips_child()
            return None
        assert top is not None
        child = self.strips_child  # dissect_sources ends it should anything here fail
        source = strip_source(self.acts)  # maps from the cache, pictures from the source
        early = _EarlyStrips(
            behind,
            Gate(1),
            Thumbnails(source.picture, thumb_size(source)),
            {layer: t.result()[1].cpu() for layer, t in top.items()},
            self.run_dir / IMAGES,
            child,
        )
        if child is not None:
            child.send({layer: (thresholds[layer][0].cpu(), early.images[layer]) for layer in self.layers})
        self.strips_child = None  # the early strips' now: their thread waits for it, or stop() ends it
        behind.submit(self._write_early_strips, thresholds, early)
        return early

    def _early_strips_thread(self, top: dict[str, TopK] | None) -> Behind | None:
        """The early strips' background thread, or None where they cannot start early (see there)."""
        if top is None or not self._reads_cache():
            return None
        assert self.cache is not None
        written = int((self.cache.rows == ActivationCache.WRITTEN).sum())
        if any(t.count != written for t in top.values()):
            return None
        behind = Behind()
        if not behind.background:
            behind.close()
            return None
        return behind

    def stop_strips_child(self) -> None:
        """End the process pass 1 forked for the early strips if they never took it (they cannot start
        early, or an error came first)."""
        child, self.strips_child = self.strips_child, None
        if child is not None:
            child.stop()

    def _draw_exemplar_strips(
        self,
        job: dict[str, tuple[torch.Tensor, torch.Tensor]],
        thumbs: Thumbnails | None = None,
        gate: Gate | None = None,
    ) -> dict[str, list[str]]:
        """Every unit's exemplar strip from ``job = {layer: (thresholds [C], top-k images [C, k])}``,
        the maps read from the activation cache (in the strips' process, or their thread with
        ``thumbs`` and ``gate``: :func:`~.exemplars.write_layer_strips`): ``{layer: paths}``."""
        fault("strips.write")
        source = strip_source(self.acts, cache=self.cache)
        return {
            layer: write_layer_strips(
                self.run_dir, source, layer, self.tag[layer], images, th, thumbs=thumbs, gate=gate
            )
            for layer, (th, images) in job.items()
        }

    def _write_early_strips(self, thresholds: dict[str, list[torch.Tensor]], early: _EarlyStrips) -> None:
        """The early strips' thread: the exemplar strips drawn here (no process for them), the
        concept strips of pass 2's labels (meanwhile the process draws the exemplar strips, waited
        for after them), and any exemplar strip drawn from other images than pass 2's drawn again."""
        if early.child is None:
            job = {layer: (thresholds[layer][0], early.images[layer]) for layer in self.layers}
            early.out["strips"] = self._draw_exemplar_strips(job, early.thumbs, early.gate)
        try:
            tops, dissected = early.after_pass2.result()  # pass 2's top-k and labels (start_strips)
            source = strip_source(self.acts, self.labels, cache=self.cache, label_cache=self.label_cache)
            _, early.out["masks"] = write_unit_strips(
                self.run_dir,
                source,
                self.layers,
                self.tag,
                tops,
                dissected=dissected,
                detectors_only=True,
                thumbs=early.thumbs,
                gate=early.gate,
            )
        except BaseException:
            early.end_child()  # not waited for: this error is the run's
            raise
        if early.child is not None:
            early.out["strips"] = early.child.result()  # the child's error, if any, is raised here
        paths = early.out["strips"]
        source = strip_source(self.acts, cache=self.cache)
        for layer in self.layers:  # the same images as pass 2's; a unit that somehow has others is drawn again
            images = tops[layer][1].cpu()
            if images.shape != early.images[layer].shape:
                units = list(range(len(images)))
            else:
                units = torch.nonzero((images != early.images[layer]).any(1)).flatten().tolist()
            if units:
                th = thresholds[layer][0]
                redrawn = write_layer_strips(
                    self.run_dir,
                    source,
                    layer,
                    self.tag[layer],
                    images,
                    th,
                    units,
                    thumbs=early.thumbs,
                    gate=early.gate,
                )
                for u, path in zip(units, redrawn):
                    paths[layer][u] = path

    def start_strips(
        self, thresholds: dict[str, list[torch.Tensor]], early: _EarlyStrips | None = None
    ) -> tuple[Behind, dict[str, Any]]:
        """Start the exemplar and concept strips (rank 0, ``exemplar_images``): they need pass 2's
        top-k, thresholds, best labels and detectors only, which pass 3's p-values leave as they are.
        In a background thread (:class:`~.schedule.Behind`) where a core is spare and nothing in them
        runs the model (the caches hold the maps and labels: two forward passes at once would share
        the model's hooks), so pass 3 and ``summarise`` run meanwhile; else here, at once. With
        ``early`` (:meth:`start_exemplar_strips`) the exemplar strips have begun: the concept strips
        follow them in their thread, from pass 2's labels handed over here.
        Returns the thread and the dict it fills (``strips``, ``masks``); :meth:`write` waits for it."""
        out: dict[str, Any] = {}
        if early is not None:
            try:
                tops = {layer: self.pass2_stat[f"{self.tag[layer]}_top"].result() for layer in self.layers}
                early.after_pass2.set_result((tops, self._pass2_labels(thresholds)))
            except BaseException:
                early.stop()  # this error wins over the strips'
                raise
            return early.behind, early.out
        if not is_main() or not self.opts.exemplar_images:
            return Behind(enabled=False), out
        labels_cached = not self.labels.needs_forward or (self.label_cache is not None and self.label_cache.complete)
        behind = Behind(
            enabled=None if self.cache is not None and not self._forward_labels and labels_cached else False
        )
        behind.submit(self._write_strips, thresholds, self._pass2_labels(thresholds), out)
        return behind, out

    def _pass2_labels(self, thresholds: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
        """Each layer's units labelled from pass 2's counts and top-k (:meth:`summarise` without p-values)."""
        label_cats = self._label_categories()
        out = {}
        for layer in self.layers:
            t = self.tag[layer]
            out[layer] = d = self._labelled(layer, thresholds[layer][0], f"{t}_iou", label_cats)
            values, images = (x.cpu().numpy() for x in self.pass2_stat[f"{t}_top"].result()[:2])
            d.add_saturation(self.values[layer].note, values, images)
        return out

    def _write_strips(
        self, thresholds: dict[str, list[torch.Tensor]], dissected: dict[str, Any], out: dict[str, Any]
    ) -> None:
        fault("strips.write")
        tops = {layer: self.pass2_stat[f"{self.tag[layer]}_top"].result() for layer in self.layers}
        source = strip_source(self.acts, self.labels, cache=self.cache, label_cache=self.label_cache)
        out["strips"], out["masks"] = write_unit_strips(
            self.run_dir,
            source,
            self.layers,
            self.tag,
            tops,
            thresholds={layer: th[0] for layer, th in thresholds.items()},
            dissected=dissected,
            detectors_only=True,
        )

    def write(
        self,
        result: DissectResult,
        thresholds: dict[str, list[torch.Tensor]],
        strips: tuple[Behind, dict[str, Any]] | None = None,
    ) -> None:
        """Exemplar strips (``strips``: those :meth:`start_strips` began, waited for here), catalog rows,
        ``layers.json``; the cache removed unless kept. Rank 0 only."""
        from unitscope.catalog import Catalog

        if not is_main():
            if self.cache is not None:
                self.cache.close()
            return
        self.bad.consolidate()
        behind, written = strips if strips is not None else self.start_strips(thresholds)
        behind.close()  # the strips' error, if any, is raised here
        tops = {layer: self.pass2_stat[f"{self.tag[layer]}_top"].result() for layer in self.layers}
        strips_of: dict[str, list[str]] = written.get("strips", {})
        masks: dict[str, list[dict]] = written.get("masks", {})
        row_index = np.array([self.acts.index(p) for p in range(self.n)], dtype=np.int64)
        names, cats = self.labels.label_names, result.layers[self.layers[0]].label_categories
        model_name = self.acts.model_name
        with Catalog(self.run_dir / CATALOG) as cat, cat.transaction():
            cat.replace("concepts", [{"name": name, "category": c} for name, c in zip(names[1:], cats[1:]) if c])
            for layer in self.layers:
                write_layer_rows(
                    cat,
                    model_name,
                    result.layers[layer],
                    self.n,
                    self.opts.quantile,
                    row_index,
                    tops[layer],
                    strips_of.get(layer),
                    result.rotations[layer],
                )
                cat.replace("concept_images", masks.get(layer, []), model=model_name, layer=layer)
        atomic_write_text(self.run_dir / LAYERS, json.dumps({self.tag[l]: l for l in self.layers}, indent=2) + "\n")
        atomic_write_text(self.run_dir / LABELS, json.dumps({"names": list(names), "categories": list(cats)}) + "\n")
        if self.cache is not None and self.opts.keep_cache:  # kept: made to outlive this boot (a resumed run
            self.cache.mark_complete(durable=True)  # may have completed it without keep_cache)
            if self.label_cache is not None and self.label_cache.complete:
                self.label_cache.mark_complete(durable=True)
        if self.cache is not None:
            self.cache.close()
        if self.cache is None or not self.opts.keep_cache:  # an incomplete cache is never kept
            shutil.rmtree(self.run_dir / CACHE_FOLDER, ignore_errors=True)
        else:
            MaskCache(self.run_dir / CACHE_FOLDER / "masks").remove()  # pass 3's alone


@dataclass
class _EarlyStrips:
    """The exemplar strips begun at pass 1's end (:meth:`_Run.start_exemplar_strips`): their
    thread, the gate that holds the thread's strips to one group at a time until passes 2 and 3
    end, the decoded tiles (shared with the concept strips), the top-k images they are drawn from,
    the folder they are drawn in, the process drawing them (None: the thread draws them), pass 2's
    top-k and labels once known (``after_pass2``, for the concept strips), and what they wrote
    (``strips``, ``masks``)."""

    behind: Behind
    gate: Gate
    thumbs: Thumbnails
    images: dict[str, torch.Tensor]  # layer -> [C, k] run positions (-1: none)
    folder: Path
    child: ForkedCall | None = None
    after_pass2: Future = field(default_factory=Future)
    out: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        """On an error of the passes (pass 2, pass 3 or ``summarise``): the strips end after the
        groups being drawn (the gate turns the rest away, concept strips too; their process is
        killed, and the files it was writing are removed); their own error is dropped (the
        caller raises its own)."""
        self.after_pass2.cancel()
        self.gate.close()
        if self.child is not None:
            self.child.stop()
        self.behind.close(raise_errors=False)
        self.end_child()

    def end_child(self) -> None:
        """Kill the strips' process (a no-op once it has been reaped) and remove the files it was
        writing (what ``atomic_writer`` left half-written there)."""
        if self.child is not None:
            self.child.stop()
            for tmp in self.folder.glob("*/.*.tmp"):
                tmp.unlink(missing_ok=True)


def count_arrays(counts: IoUCounts, d: Any) -> dict[str, np.ndarray]:
    """The IoU counts behind a layer's result (``tally.csv`` export), and its p-values."""
    out = {
        "intersection": counts.intersection.cpu().numpy(),
        "unit_area": counts.unit_area.cpu().numpy(),
        "label_area": counts.label_area.cpu().numpy(),
        "label_category": counts.label_category.cpu().numpy(),
    }
    if d.p_value is not None:
        out["p_value"] = d.p_value.astype(np.float64)
    return out
