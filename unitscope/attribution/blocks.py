"""Building blocks of one image (Olah et al. 2018): semantic dictionary, NMF neuron groups,
activation grid, feature inversion.

    acts = layer_activations(model, x, "blocks.4.1.bn2")[0]            # [C, h, w]
    table = semantic_dictionary(acts, k=3, labels={5: "dog"})         # per position, top units
    spatial, channels = nmf_groups(acts, n_groups=4)                  # [4, h, w], [4, C]
    icons = activation_grid(model, acts, "blocks.4.1.bn2", cells=7)   # RenderResult, one image per cell
    inverted = feature_inversion(model, x, "blocks.4.1.bn2")          # RenderResult, [1, 3, S, S]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unitscope.hooks import Trace


@torch.no_grad()
def layer_activations(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """``layer``'s output for ``x`` ``[N, 3, H, W]`` (normalised model input): ``[N, C, h, w]``."""
    with Trace(model, layer, stop=True) as t:
        model(x)
    return t.output


def semantic_dictionary(
    acts: torch.Tensor, k: int = 3, labels: dict[int, str] | None = None, images: dict[int, str] | None = None
) -> list[list[list[dict]]]:
    """Per position of ``acts`` ``[C, h, w]``, the ``k`` most active units (ties: lower unit first)
    with their activation, and their label / visualisation where given: ``[h][w][k]`` dicts."""
    c, h, w = acts.shape
    k = min(k, c)
    flat = acts.permute(1, 2, 0).reshape(h * w, c)
    order = torch.sort(-flat, dim=1, stable=True).indices[:, :k]
    table = []
    for y in range(h):
        row = []
        for x in range(w):
            cell = []
            for unit in order[y * w + x].tolist():
                entry = {"unit": unit, "activation": float(flat[y * w + x, unit])}
                if labels and unit in labels:
                    entry["label"] = labels[unit]
                if images and unit in images:
                    entry["image"] = images[unit]
                cell.append(entry)
            row.append(cell)
        table.append(row)
    return table


def nmf_groups(
    acts: torch.Tensor, n_groups: int = 4, seed: int = 0, max_iter: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor non-negative ``acts`` ``[C, h, w]`` as spatial ``[k, h, w]`` x channel ``[k, C]`` with
    scikit-learn's NMF; groups are ordered by their share of the activation, largest first, and
    each channel factor has unit norm (its scale moves into the spatial map)."""
    try:
        from sklearn.decomposition import NMF
    except ImportError as exc:
        raise ImportError(
            "NMF neuron groups need scikit-learn: pip install 'unitscope[explain]' (or pip install scikit-learn)"
        ) from exc
    c, h, w = acts.shape
    if acts.min() < 0:
        raise ValueError(
            f"NMF needs non-negative activations; pick a layer after a ReLU (minimum here is {float(acts.min()):.3g})"
        )
    n_groups = min(n_groups, c, h * w)
    data = acts.permute(1, 2, 0).reshape(h * w, c).double().cpu().numpy()
    nmf = NMF(n_components=n_groups, init="nndsvda", random_state=seed, max_iter=max_iter)
    spatial = torch.from_numpy(nmf.fit_transform(data)).float()  # [h*w, k]
    channels = torch.from_numpy(nmf.components_).float()  # [k, C]
    norms = channels.norm(dim=1).clamp(min=1e-12)
    channels, spatial = channels / norms[:, None], spatial * norms[None, :]
    order = torch.argsort(-(spatial.sum(0) * channels.sum(1)), stable=True)
    return spatial[:, order].T.reshape(n_groups, h, w), channels[order]


def grid_vectors(acts: torch.Tensor, cells: int | None = None) -> torch.Tensor:
    """Activation vectors ``[cells*cells, C]`` of ``acts`` ``[C, h, w]``, averaged down to at most
    ``cells`` per side (row-major)."""
    c, h, w = acts.shape
    if cells is not None and (h > cells or w > cells):
        acts = F.adaptive_avg_pool2d(acts[None], (min(h, cells), min(w, cells)))[0]
    return acts.flatten(1).T


def activation_grid(model: nn.Module, acts: torch.Tensor, layer: str, cells: int | None = 7, **render_kw):
    """One visualisation per position: image i maximises the dot product of ``layer``'s activations
    with position i's activation vector (mean over the image). Returns the ``RenderResult``."""
    from unitscope.featvis import direction, render

    vectors = grid_vectors(acts, cells)
    return render(model, direction(layer, vectors), batch=len(vectors), **render_kw)


def group_icons(model: nn.Module, channels: torch.Tensor, layer: str, **render_kw):
    """One visualisation per neuron group: image i maximises the direction ``channels[i]``."""
    from unitscope.featvis import direction, render

    return render(model, direction(layer, channels), batch=len(channels), **render_kw)


def feature_inversion(model: nn.Module, x: torch.Tensor, layer: str, tv: float = 1e-4, **render_kw):
    """Reconstruct an input from ``layer``'s activations of ``x`` ``[1, 3, H, W]`` (normalised): an
    image whose activations match, with a total-variation penalty; small jitter only."""
    from unitscope.featvis import jitter, match, render, total_variation

    target = layer_activations(model, x, layer)
    render_kw.setdefault("transforms", jitter(2))
    return render(model, match(layer, target) - tv * total_variation(), batch=1, **render_kw)
