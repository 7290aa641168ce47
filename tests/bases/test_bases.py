"""Learned bases on planted data: sparse non-negative codes times a random orthonormal dictionary."""

from __future__ import annotations

import pytest
import torch

from unitscope.bases import Covariance, fit_ica, fit_nmf, fit_pca, fit_sae, load_basis, stability
from unitscope.errors import UsageError
from unitscope.faults import FaultInjected, armed


def planted(n=4096, c=16, d=8, p=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.linalg.qr(torch.randn(c, c, generator=g))[0][:, :d].t().contiguous()  # [d, c] orthonormal rows
    codes = (torch.rand(n, d, generator=g) < p) * (0.5 + torch.rand(n, d, generator=g))
    x = codes @ dirs + 0.01 * torch.randn(n, c, generator=g)
    return x, dirs


def stream(x, size=512):
    return list(x.split(size))


def test_covariance_streamed_and_merged_equal_one_shot():
    x, _ = planted(n=1000)
    one = torch.cov(x.double().t())
    a, b = Covariance(), Covariance()
    for part in x[:300].split(70):
        a.add(part)
    b.add(x[300:].reshape(7, 100, 16).permute(0, 2, 1).reshape(7, 16, 100, 1))  # [N, C, H, W]
    assert torch.allclose(a.merge(b).covariance(), one, atol=1e-10)


def test_pca_streamed_equals_one_shot_svd():
    x, _ = planted(n=2000)
    b = fit_pca(stream(x, 300), n_components=5)
    xc = x.double() - x.double().mean(0)
    _, s, vt = torch.linalg.svd(xc, full_matrices=False)
    assert torch.allclose(
        torch.tensor(b.config["variances"], dtype=torch.float64), s[:5] ** 2 / (len(x) - 1), rtol=1e-6
    )
    assert torch.allclose((b.directions.double() * vt[:5]).sum(1).abs(), torch.ones(5, dtype=torch.float64), atol=1e-4)
    full = fit_pca(stream(x, 300))
    assert full.metrics["fvu"] < 1e-6 and b.metrics["fvu"] > 0


def test_ica_recovers_planted_directions():
    x, dirs = planted()
    b = fit_ica(stream(x), n_components=8, passes=60, seed=0)
    assert stability(b, dirs) > 0.9


def test_nmf_reconstructs_nonnegative_low_rank():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, 4, generator=g) @ torch.rand(4, 12, generator=g)
    b = fit_nmf(stream(x, 100), n_components=4, passes=150, seed=0)
    assert b.metrics["fvu"] < 0.01
    assert (b.directions >= 0).all() and (b.encode(x[:10]) >= 0).all()
    with pytest.raises(UsageError, match="non-negative"):
        fit_nmf([x - 0.5], n_components=2, passes=1)


def _sae(x, out, **kw):
    return fit_sae(
        stream(x),
        out,
        expansion=2,
        k=2,
        epochs=kw.pop("epochs", 15),
        lr=1e-2,
        batch_size=128,
        checkpoint_every=kw.pop("checkpoint_every", 50),
        dead_after=50,
        **kw,
    )


def test_sae_recovers_planted_directions_and_saves(tmp_path):
    x, dirs = planted()
    b = _sae(x, tmp_path / "a")
    assert stability(dirs, b) > 0.9
    assert torch.allclose(b.directions.norm(dim=1), torch.ones(len(b.directions)), atol=1e-5)
    assert b.metrics["mean_l0"] <= 2 and b.metrics["fvu"] < 0.2
    back = load_basis(tmp_path / "a")
    assert torch.equal(back.encode(x[:50]), b.encode(x[:50])) and back.metrics == b.metrics


def test_sae_resume_after_fault_equals_uninterrupted_and_seeds_reproduce(tmp_path):
    x, _ = planted(n=2048)
    ref = _sae(x, tmp_path / "ref", epochs=8, checkpoint_every=20)
    for spec in ("sae.checkpoint.after=2:raise", "sae.step=75:raise"):
        out = tmp_path / spec.split("=")[0]
        with armed(spec), pytest.raises(FaultInjected):
            _sae(x, out, epochs=8, checkpoint_every=20)
        again = _sae(x, out, epochs=8, checkpoint_every=20)
        assert torch.equal(again.directions, ref.directions) and torch.equal(again.encoder, ref.encoder)
    same = _sae(x, tmp_path / "same", epochs=8, checkpoint_every=20)
    other = _sae(x, tmp_path / "other", epochs=8, checkpoint_every=20, seed=1)
    assert torch.equal(same.directions, ref.directions) and not torch.equal(other.directions, ref.directions)
