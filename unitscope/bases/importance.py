"""Class-critical directions: per-class importance of a basis' directions by ablation, like units'.

    from unitscope.ablate import cut_model, cache_layer
    cut = cut_model(model, "features.relu5"); train = cache_layer(cut, data, train_positions)
    imp = direction_importance(cut, train, basis, class_of_output, num_classes)   # imp.drop [D, Y]
    ranking = imp.ranking()                                                      # [Y, D]
    rows = top_n_directions(cut, val, basis, ranking, class_of_output, num_classes, ns=[5, 20])

Removing a direction keeps the basis' reconstruction error and every other direction's share
(:meth:`unitscope.bases.Basis.ablation`); removing a set ``S`` subtracts ``sum_{j in S} code_j * d_j``
(:class:`DirectionSetEdits`). Rankings, ties and the top-N rows follow
:mod:`unitscope.ablate.importance` for units, so units and directions compare one to one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import LayerCache, confusion, metrics
from unitscope.ablate.importance import Importance, importance_from
from unitscope.bases.basis import Basis
from unitscope.edits import DirectionEdits


class DirectionSetEdits(DirectionEdits):
    """``K`` edits, each removing a set of a basis' directions: ``sets`` bool ``[K, D]`` over the
    directions ``[D, C]``; edit ``k`` maps each position's ``x`` to ``x - (codes(x) * sets[k]) @ directions``.
    An empty row is the unedited layer (the baseline)."""

    def __init__(self, directions: torch.Tensor, codes, sets: torch.Tensor, memo: list | None = None) -> None:
        self.all_directions = torch.as_tensor(directions, dtype=torch.float32)  # [D, C]
        self.sets = torch.as_tensor(sets, dtype=torch.bool)  # [K, D]
        self.all_codes = codes
        self.memo = memo if memo is not None else [None, None]  # the last layer output and its codes
        super().__init__(torch.zeros(len(self.sets), self.all_directions.shape[1]), codes)

    def __getitem__(self, rows: slice) -> DirectionSetEdits:
        return DirectionSetEdits(self.all_directions, self.all_codes, self.sets[rows], self.memo)

    def _codes(self, rows: torch.Tensor) -> torch.Tensor:
        """Codes of ``rows`` ``[M, C]``, encoded once per layer output (the tail passes of one cached
        batch share them: slices of these edits share the memo)."""
        last, codes = self.memo
        if last is None or last.shape != rows.shape or not torch.equal(last, rows):
            codes = self.all_codes(rows)
            self.memo[:] = [rows, codes]
        return codes

    def apply(self, z: torch.Tensor, generator: torch.Generator | None = None, dim: int = 1) -> torch.Tensor:
        """``z`` ``[N, C, h, w]`` (or ``[N, C]``) -> ``[K * N, C, ...]``: block ``k`` without the directions of set ``k``."""
        if dim != 1:
            return self.apply(z.movedim(dim, 1), generator).movedim(1, dim)
        k, n, c = len(self), z.shape[0], z.shape[1]
        rows = z.movedim(1, -1).reshape(-1, c)  # [M, C]
        codes = self._codes(rows).to(z.dtype)  # [M, D]
        dirs = self.all_directions.to(z)
        part = (
            torch.stack([codes[:, s] @ dirs[s] for s in (row.nonzero().flatten() for row in self.sets)])
            if k
            else rows.new_zeros(0, len(rows), c)
        )  # [K, M, C]
        part = part.reshape(k, n, *z.shape[2:], c).movedim(-1, 2)  # [K, N, C, ...]
        return (z.unsqueeze(0) - part).reshape(k * n, *z.shape[1:])


def set_edits(basis: Basis, sets: torch.Tensor) -> DirectionSetEdits:
    """Edits removing each row of ``sets`` ``[K, D]`` of ``basis``' directions."""
    return DirectionSetEdits(basis.directions, basis.encode, sets)


def direction_importance(
    cut: FxCut | HookCut,
    cache: LayerCache,
    basis: Basis,
    class_of_output: torch.Tensor,
    num_classes: int,
    *,
    max_batch: int = 512,
    progress: bool = False,
) -> Importance:
    """Every direction of ``basis`` removed alone (and none, the baseline) on ``cache``: drops ``[D, Y]``
    as :func:`unitscope.ablate.unit_importance` gives them for units."""
    d = basis.directions.shape[0]
    sets = torch.cat([torch.zeros(1, d, dtype=torch.bool), torch.eye(d, dtype=torch.bool)])
    mass = torch.zeros(d + 1, num_classes, dtype=torch.float64)
    conf = confusion(
        cut,
        cache,
        set_edits(basis, sets),
        class_of_output,
        num_classes,
        max_batch=max_batch,
        progress=progress,
        probability=mass,
    )
    return importance_from(conf, mass, cache.count)


def top_n_directions(
    cut: FxCut | HookCut,
    cache: LayerCache,
    basis: Basis,
    ranking: torch.Tensor,
    class_of_output: torch.Tensor,
    num_classes: int,
    ns: Sequence[int],
    *,
    max_batch: int = 512,
) -> list[dict]:
    """Each class's top ``n`` directions (``ranking`` ``[Y, D]``) removed together: rows
    ``{"class", "n", "accuracy" (that class), "others" (mean of the other classes), "before" (that
    class with nothing removed)}``, the baseline first (``n`` 0, ``class`` -1, means over classes)."""
    y, d = ranking.shape
    sets, keys = [torch.zeros(d, dtype=torch.bool)], [(-1, 0)]
    for cls in range(y):
        for n in ns:
            s = torch.zeros(d, dtype=torch.bool)
            s[ranking[cls, :n]] = True
            sets.append(s)
            keys.append((cls, n))
    m = metrics(
        confusion(cut, cache, set_edits(basis, torch.stack(sets)), class_of_output, num_classes, max_batch=max_batch)
    )
    acc = m["class_accuracy"]  # [K, Y]
    base = float(acc[0].mean())
    out = [{"class": -1, "n": 0, "accuracy": base, "others": base, "before": base}]
    for i, (cls, n) in enumerate(keys[1:], 1):
        others = [j for j in range(y) if j != cls]
        out.append(
            {
                "class": cls,
                "n": n,
                "accuracy": float(acc[i, cls]),
                "others": float(acc[i, others].mean()),
                "before": float(acc[0, cls]),
            }
        )
    return out
