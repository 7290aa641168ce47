"""Learned bases of a layer, fitted from streamed activations (issue 27).

    from unitscope.bases import fit_pca, fit_ica, fit_nmf, fit_sae, stability, Basis
    b = fit_sae(batches, out="runs/sae", expansion=4, k=8)   # batches: re-iterable, [N, C, H, W] or [rows, C]
    codes = b.encode(x); x_hat = b.decode(codes); b.metrics  # fvu, mean_l0, dead_fraction
    stability(b, fit_sae(batches, out="runs/sae2", seed=1))   # matched |cosine| of the directions
"""

from unitscope.bases.basis import Basis, evaluate, load_basis, rows, stability
from unitscope.bases.ica import fit_ica
from unitscope.bases.nmf import fit_nmf
from unitscope.bases.pca import Covariance, fit_pca, fit_whitening
from unitscope.bases.sae import fit_sae

__all__ = ["Basis", "Covariance", "evaluate", "fit_ica", "fit_nmf", "fit_pca", "fit_sae",
           "fit_whitening", "load_basis", "rows", "stability"]
