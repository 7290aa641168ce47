"""Learned bases of a layer, fitted from streamed activations (issue 27).

    from unitscope.bases import fit_pca, fit_ica, fit_nmf, fit_sae, stability, Basis
    b = fit_sae(batches, out="runs/sae", expansion=4, k=8)   # batches: re-iterable, [N, C, H, W] or [rows, C]
    codes = b.encode(x); x_hat = b.decode(codes); b.metrics  # fvu, mean_l0, dead_fraction
    stability(b, fit_sae(batches, out="runs/sae2", seed=1))   # matched |cosine| of the directions

Dissecting them like units: ``dissect(..., basis=["units", "sae:k=8"])`` (:mod:`.run`, :mod:`.source`);
their catalog table: :mod:`.tables` (torch-free: this package loads its modules on first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_FROM = {
    "Basis": "basis",
    "evaluate": "basis",
    "load_basis": "basis",
    "rows": "basis",
    "stability": "basis",
    "fit_ica": "ica",
    "fit_nmf": "nmf",
    "Covariance": "pca",
    "fit_pca": "pca",
    "fit_whitening": "pca",
    "fit_sae": "sae",
}

if TYPE_CHECKING:
    from unitscope.bases.basis import Basis, evaluate, load_basis, rows, stability
    from unitscope.bases.ica import fit_ica
    from unitscope.bases.nmf import fit_nmf
    from unitscope.bases.pca import Covariance, fit_pca, fit_whitening
    from unitscope.bases.sae import fit_sae


def __getattr__(name: str) -> Any:  # PEP 562: the fitting code (torch) loads on first use
    if name not in _FROM:
        raise AttributeError(f"module 'unitscope.bases' has no attribute {name!r}")
    return getattr(importlib.import_module(f"unitscope.bases.{_FROM[name]}"), name)


__all__ = [
    "Basis",
    "Covariance",
    "evaluate",
    "fit_ica",
    "fit_nmf",
    "fit_pca",
    "fit_sae",
    "fit_whitening",
    "load_basis",
    "rows",
    "stability",
]
