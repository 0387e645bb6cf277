"""Interpretation of the per-cluster catalogue encoder (Ntampaka et al., sect. 5 and Appendix B).

Pure functions on a trained ``catalogue_encoder`` compressor and a NaN-padded catalogue array
(N, L, F) (:mod:`clustersbi.stages.catalogue`):

- :func:`leave_one_out`: the change of every predicted parameter when one cluster is removed
  from its catalogue (paper Fig. 9), per cluster; :func:`threshold_cdfs` its distribution for
  the clusters above mass thresholds;
- :func:`encoder_saliency`: |d terse / d feature| of every cluster (Eq. 4, on the standardised
  inputs the network sees), and :func:`binned_saliency` its mean per feature and mass bin
  (Figs. 10-12);
- :func:`correlation`, :func:`partial_correlation`: the terse-layer correlations (Fig. 15) and
  the "overspecialised" check of Appendix B: a terse value that correlates with a cosmological
  parameter once the cluster's mass is fixed has learnt something about the catalogue from a
  single cluster;
- :func:`fit_mass_proxy`: the terse value fitted as a mass proxy, log M = a + b terse, with its
  scatter over all clusters and after removing each catalogue's mean offset (Fig. 16).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["cluster_mask", "leave_one_out", "threshold_cdfs", "terse_values", "encoder_saliency", "binned_saliency",
           "correlation", "partial_correlation", "fit_mass_proxy"]


def cluster_mask(x: np.ndarray) -> np.ndarray:
    """(N, L) True where a row of the padded catalogue (N, L, F) is a cluster."""
    return ~np.isnan(np.asarray(x, float)).all(axis=-1)


def leave_one_out(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Change of the prediction when each cluster is left out of its catalogue.

    Args:
        predict: raw catalogues (M, L, F) -> estimates (M, P) (e.g. ``compress(comp, .)[0]``).
        x: (N, L, F) NaN-padded catalogues.

    Returns:
        (delta (C, P): estimate without the cluster minus with it, for every cluster C of the
        catalogues in order; mock (C,) the row of its catalogue; slot (C,) its row in the catalogue).
    """
    x = np.asarray(x, float)
    mask = cluster_mask(x)
    full = predict(x)
    deltas, mocks, slots = [], [], []
    for i in range(x.shape[0]):
        rows = np.flatnonzero(mask[i])
        if rows.size == 0:
            continue
        variants = np.repeat(x[i][None], rows.size, axis=0)
        variants[np.arange(rows.size), rows] = np.nan
        deltas.append(predict(variants) - full[i])
        mocks.append(np.full(rows.size, i))
        slots.append(rows)
    if not deltas:
        return np.zeros((0, full.shape[1])), np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(deltas), np.concatenate(mocks), np.concatenate(slots)


def threshold_cdfs(delta: np.ndarray, mass: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    """Per threshold: the clusters with ``mass`` above it, their delta quantiles (16, 50, 84%),
    the fraction of negative deltas, and the sorted deltas (the empirical CDF), per parameter column."""
    out = []
    for thr in thresholds:
        sel = mass >= thr
        d = delta[sel]
        entry = {"threshold": float(thr), "n_clusters": int(sel.sum())}
        if d.shape[0]:
            entry["quantiles_16_50_84"] = np.percentile(d, [16, 50, 84], axis=0).T.tolist()
            entry["fraction_negative"] = (d < 0).mean(axis=0).tolist()
        entry["sorted"] = np.sort(d, axis=0).T.tolist()
        out.append(entry)
    return out


def terse_values(encoder, inputs) -> tuple[np.ndarray, np.ndarray]:
    """(terse (N, L), mask (N, L)) of a :class:`~clustersbi.compress.networks.CatalogueEncoder`
    on standardised inputs (N, L, F) (float32 array or tensor)."""
    import torch

    device = next(encoder.parameters()).device
    with torch.no_grad():
        t, m = encoder.terse(torch.as_tensor(np.asarray(inputs, np.float32), device=device))
    return t.cpu().numpy(), m.cpu().numpy()


def encoder_saliency(encoder, inputs) -> np.ndarray:
    """(N, L, F) |d terse / d feature| of every cluster on standardised inputs (0 for padding and
    for the supplementary columns, which the terse value never sees). A cluster's terse value
    depends on its own row alone, so the gradient of the sum of terse values is each cluster's own."""
    import torch

    device = next(encoder.parameters()).device
    x = torch.as_tensor(np.asarray(inputs, np.float32), device=device).clone().requires_grad_(True)
    t, _ = encoder.terse(x)
    (grad,) = torch.autograd.grad(t.sum(), x)
    return grad.abs().cpu().numpy()


def binned_saliency(saliency: np.ndarray, mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(n_bins, F) mean saliency per ``mass`` bin of clusters (C, F) (NaN in an empty bin)."""
    idx = np.digitize(mass, edges[1:-1])
    out = np.full((len(edges) - 1, saliency.shape[1]), np.nan)
    for b in range(len(edges) - 1):
        if np.any(idx == b):
            out[b] = saliency[idx == b].mean(axis=0)
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    """Pearson and Spearman coefficients of two (C,) arrays, finite pairs only (None when fewer
    than 3 pairs or a constant)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return {"pearson": None, "spearman": None, "n": int(ok.sum())}
    return {"pearson": float(np.corrcoef(a[ok], b[ok])[0, 1]), "spearman": float(stats.spearmanr(a[ok], b[ok])[0]),
            "n": int(ok.sum())}


def _residual(y: np.ndarray, x: np.ndarray, degree: int) -> np.ndarray:
    coeffs = np.polyfit(x, y, degree)
    return y - np.polyval(coeffs, x)


def partial_correlation(terse: np.ndarray, param: np.ndarray, fixed: np.ndarray, degree: int = 3) -> float | None:
    """Correlation of ``terse`` and ``param`` once both are freed of a polynomial in ``fixed``
    (the cluster's mass): the paper's check that the terse value knows nothing of the catalogue's
    cosmology at fixed mass. None with too few clusters or a constant parameter."""
    ok = np.isfinite(terse) & np.isfinite(param) & np.isfinite(fixed)
    if ok.sum() < degree + 3 or np.std(param[ok]) == 0:
        return None
    rt, rp = _residual(terse[ok], fixed[ok], degree), _residual(param[ok], fixed[ok], degree)
    if np.std(rt) == 0 or np.std(rp) == 0:
        return None
    return float(np.corrcoef(rt, rp)[0, 1])


def fit_mass_proxy(terse: np.ndarray, log_mass: np.ndarray, mock: np.ndarray) -> dict[str, float]:
    """log10 M = intercept + slope * terse, least squares over all clusters.

    Returns the coefficients, the scatter of log10 M_predicted - log10 M_true [dex] and, as
    the paper, the scatter once each catalogue's mean offset is removed (the intrinsic scatter
    within one sample, also as a fraction: 10^sigma - 1)."""
    ok = np.isfinite(terse) & np.isfinite(log_mass)
    slope, intercept = np.polyfit(terse[ok], log_mass[ok], 1)
    err = intercept + slope * terse[ok] - log_mass[ok]
    centred = err.copy()
    for m in np.unique(mock[ok]):
        sel = mock[ok] == m
        centred[sel] -= err[sel].mean()
    within = float(np.std(centred))
    return {"slope": float(slope), "intercept": float(intercept), "scatter_dex": float(np.std(err)),
            "scatter_within_dex": within, "scatter_within_fraction": float(10**within - 1), "n": int(ok.sum())}


def summarise_correlations(terse: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """{name: correlation(terse, column)} for each (C,) column."""
    return {name: correlation(terse, values) for name, values in columns.items()}
