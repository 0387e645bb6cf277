"""Cluster-level fidelity of LDL gas painting (Cerardi et al., section 4.2, Fig. 6).

On a box painted twice over the same dark matter, once by the gas target (hydro or the
synthetic model) and once by the LDL, clusters are found on the **dark-matter** density, so
that neither gas field biases the sample: connected regions of cells with

    rho_DM / rho_crit(z) > Delta   (the paper: Delta = 200),

an approximation of M_200c without the spherical assumption (contaminants along filaments
included). Here rho_DM is the density of the N-body particles, which carry all the matter
(Omega_m) in a dark-matter-only run: rho_DM / rho_crit(z) = (rho / rho_mean) Omega_m(z), with
Omega_m(z) = Omega_m (1+z)^3 / E(z)^2 (flat LCDM). The paper's hydro DM excludes the baryons
(a factor 1 - Omega_b / Omega_m ~ 0.84), so its Delta = 200 corresponds to ~238 here.

Per region: its mass M = sum over its cells of rho V_cell [Msun/h], and the X-ray count rate
of the target gas and of the LDL gas summed over the same cells, each cell's rate from the
chain's emission table as the lightcone maps compute it
(:func:`clustersbi.xray.voxel_count_rates`: CR = n_e n_H V r_b(T, z) / (4 pi D_M^2)), all at
the box's redshift and comoving distance.

Statistics (:func:`fidelity_statistics`), all in log10 (dex):

- the CR-M relation of each sample, log10 CR = a + b (log10 M - pivot): slope b,
  normalisation a (at a common pivot), scatter (std of the residuals);
- the deviations of both samples from the **target's** mean relation, and their correlation
  (paper: 0.88; LDL clusters inherit their environment's deviations);
- the LDL prediction error std(log CR_LDL - log CR_target) against the natural scatter of
  the target's deviations (paper: the error is about half the scatter);
- the number of LDL and of target clusters above count-rate cuts, and their ratio (1 for a
  painter that reproduces the bright end).

Functions take arrays and return arrays or plain dicts: no files, no config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components

from .constants import NE_OVER_NH, RHO_CRIT_MSUN_H_MPC_H3
from .cosmology import efunc
from .xray.emission import EmissionTable
from .xray.maps import voxel_count_rates

__all__ = [
    "PAPER_DEVIATION_CORRELATION",
    "PAPER_ERROR_OVER_SCATTER",
    "matter_over_critical",
    "overdense_regions",
    "region_sums",
    "BoxClusters",
    "find_box_clusters",
    "cluster_count_rates",
    "cluster_gas_properties",
    "PowerLawFit",
    "fit_power_law",
    "fidelity_statistics",
]

#: Cerardi et al. (Fig. 6): correlation of the LDL and hydro CR deviations from the CR-M relation.
PAPER_DEVIATION_CORRELATION = 0.88
#: Cerardi et al. (Fig. 6): LDL prediction error over the natural CR-M scatter ("two times smaller").
PAPER_ERROR_OVER_SCATTER = 0.5


def matter_over_critical(omega_m: float, z: float) -> float:
    """Omega_m(z) = rho_mean(z) / rho_crit(z) = Omega_m (1+z)^3 / E(z)^2 (flat LCDM, no radiation).

    Multiplies a density in units of the mean matter density into units of rho_crit(z).
    """
    if not 0.0 < omega_m <= 1.0 or z < 0:
        raise ValueError(f"need 0 < omega_m <= 1 and z >= 0, got {omega_m}, {z}")
    return float(omega_m * (1.0 + z) ** 3 / efunc(z, omega_m) ** 2)


def overdense_regions(
    field: np.ndarray, threshold: float, periodic: bool = True, min_cells: int = 1
) -> tuple[np.ndarray, int]:
    """Connected regions of the cells where ``field > threshold``.

    Cells touching by a face, an edge or a corner are connected (the 3D analogue of the
    8-connectivity of sep's 2D segmentation). With ``periodic`` the grid wraps around on
    every axis (a region across a box face is one region).

    Args:
        field: (n0, n1, ...) any-dimensional grid (e.g. rho_DM / rho_crit(z)).
        threshold: cells strictly above it belong to regions.
        periodic: connect across opposite faces.
        min_cells: regions of fewer cells are dropped (their cells get label 0).

    Returns:
        (labels, n): int array of ``field``'s shape, 0 outside regions and 1..n inside, numbered
        in the order of each region's first cell in C (raster) order; n the number of regions.
    """
    mask = np.asarray(field) > threshold
    if mask.ndim < 1 or min(mask.shape) < 1:
        raise ValueError(f"field must be a non-empty grid, got shape {mask.shape}")
    if min_cells < 1:
        raise ValueError(f"min_cells must be >= 1, got {min_cells}")
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    if not periodic:
        raw, _ = ndimage.label(mask, structure=structure)
    else:
        # label a copy padded by one periodic image of each face, then join every padded
        # cell's label to that of the interior cell it is an image of
        padded = np.pad(mask, 1, mode="wrap")
        plab, n_pad = ndimage.label(padded, structure=structure)
        twin_index = np.ix_(*[(np.arange(s + 2) - 1) % s + 1 for s in mask.shape])
        twin = plab[twin_index]
        on = plab > 0
        graph = sparse.coo_matrix((np.ones(int(on.sum())), (plab[on], twin[on])), shape=(n_pad + 1, n_pad + 1))
        _, component = connected_components(graph, directed=False)
        interior = plab[(slice(1, -1),) * mask.ndim]
        raw = np.where(interior > 0, component[interior] + 1, 0)
    labels = np.zeros(mask.shape, dtype=np.int32)
    if not mask.any():
        return labels, 0
    flat = raw.ravel()
    inside = np.flatnonzero(flat)
    ids, first, counts = np.unique(flat[inside], return_index=True, return_counts=True)
    keep = counts >= min_cells
    ids, first = ids[keep], first[keep]
    order = ids[np.argsort(first)]
    lookup = np.zeros(int(flat.max()) + 1, dtype=np.int32)
    lookup[order] = np.arange(1, order.size + 1, dtype=np.int32)
    labels.ravel()[inside] = lookup[flat[inside]]
    return labels, int(order.size)


def region_sums(labels: np.ndarray, n: int, values: np.ndarray) -> np.ndarray:
    """(n,) sum of ``values`` (same shape as ``labels``) over each region 1..n."""
    values = np.asarray(values, dtype=float)
    if values.shape != labels.shape:
        raise ValueError(f"values shape {values.shape} differs from labels shape {labels.shape}")
    return np.bincount(labels.ravel(), weights=values.ravel(), minlength=n + 1)[1 : n + 1]


@dataclass(frozen=True)
class BoxClusters:
    """Clusters of one box found on its dark-matter density.

    Attributes:
        labels: int32 grid (box mesh shape): 0 outside clusters, 1..n inside.
        mass_msun_h: (n,) mass of each region [Msun/h] (the particles' matter inside its cells).
        n_cells: (n,) cells of each region.
        peak_over_crit: (n,) largest rho / rho_crit(z) of each region.
    """

    labels: np.ndarray
    mass_msun_h: np.ndarray
    n_cells: np.ndarray
    peak_over_crit: np.ndarray

    @property
    def n(self) -> int:
        return int(self.mass_msun_h.size)


def find_box_clusters(
    rho_over_mean: np.ndarray,
    omega_m: float,
    z: float,
    cell_volume_mpc3_h3: float,
    overdensity_crit: float = 200.0,
    min_cells: int = 1,
    periodic: bool = True,
) -> BoxClusters:
    """Clusters as connected regions of rho / rho_crit(z) > ``overdensity_crit`` (module docstring).

    Args:
        rho_over_mean: (n0, n1, n2) matter density of the N-body particles in units of its
            box mean (``1 + delta``, e.g. :func:`clustersbi.ldl.particle_density`).
        omega_m: matter density parameter (the particles carry all of it).
        z: redshift of the box.
        cell_volume_mpc3_h3: comoving volume of one cell [(Mpc/h)^3].
        overdensity_crit: threshold in units of rho_crit(z) (paper: 200).
        min_cells: smallest region kept [cells].
        periodic: the box is periodic (regions across faces are joined).
    """
    rho = np.asarray(rho_over_mean, dtype=float)
    over_crit = rho * matter_over_critical(omega_m, z)
    labels, n = overdense_regions(over_crit, overdensity_crit, periodic=periodic, min_cells=min_cells)
    # comoving mean matter density [Msun/h per (Mpc/h)^3] times the comoving cell volume
    cell_mass = omega_m * RHO_CRIT_MSUN_H_MPC_H3 * cell_volume_mpc3_h3
    peak = ndimage.maximum(over_crit, labels, np.arange(1, n + 1)) if n else np.zeros(0)
    return BoxClusters(
        labels=labels,
        mass_msun_h=region_sums(labels, n, rho) * cell_mass,
        n_cells=np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64),
        peak_over_crit=np.asarray(peak, dtype=float),
    )


def cluster_count_rates(
    labels: np.ndarray,
    n: int,
    ne_cm3: np.ndarray,
    t_k: np.ndarray,
    z: float,
    chi_mpc_h: float,
    cell_volume_mpc3_h3: float,
    h: float,
    table: EmissionTable,
    ne_over_nh: float = NE_OVER_NH,
) -> np.ndarray:
    """(n_b, n) count rate of each region per band of ``table`` [cts/s].

    Each cell's rate is :func:`clustersbi.xray.voxel_count_rates` (comoving n_e [cm^-3], T [K],
    redshift ``z``, comoving distance ``chi_mpc_h`` = D_M [Mpc/h]), as the lightcone maps paint
    it; a region's rate is the sum over its cells (no projection: the whole cluster is counted).
    """
    if np.shape(ne_cm3) != labels.shape or np.shape(t_k) != labels.shape:
        raise ValueError(f"ne_cm3 {np.shape(ne_cm3)} and t_k {np.shape(t_k)} must have the labels' shape {labels.shape}")
    inside = labels > 0
    rates = voxel_count_rates(np.asarray(ne_cm3, float)[inside], np.asarray(t_k, float)[inside], z, chi_mpc_h,
                              cell_volume_mpc3_h3, h, table, ne_over_nh=ne_over_nh)
    lab = labels[inside]
    return np.stack([np.bincount(lab, weights=r, minlength=n + 1)[1 : n + 1] for r in rates])


def cluster_gas_properties(labels: np.ndarray, n: int, ne_cm3: np.ndarray, t_k: np.ndarray) -> dict[str, np.ndarray]:
    """Per region (n,): ``ne_mean_cm3`` (volume-mean n_e, units of ``ne_cm3``), ``ne2_mean_cm6``
    (volume-mean n_e^2) and ``t_ew_k`` (n_e^2-weighted T [K]; 0 where n_e vanishes): what
    sets a region's emission measure and band rate."""
    ne = np.asarray(ne_cm3, dtype=float)
    cells = np.maximum(np.bincount(labels.ravel(), minlength=n + 1)[1 : n + 1], 1)
    ne2 = region_sums(labels, n, ne**2)
    ne2_t = region_sums(labels, n, ne**2 * np.asarray(t_k, dtype=float))
    return {
        "ne_mean_cm3": region_sums(labels, n, ne) / cells,
        "ne2_mean_cm6": ne2 / cells,
        "t_ew_k": np.divide(ne2_t, ne2, out=np.zeros(n), where=ne2 > 0),
    }


@dataclass(frozen=True)
class PowerLawFit:
    """log10 y = norm + slope (log10 x - pivot), least squares; ``scatter`` = std of the residuals [dex]."""

    slope: float
    norm: float
    pivot: float
    scatter: float

    def __call__(self, log_x: np.ndarray) -> np.ndarray:
        return self.norm + self.slope * (np.asarray(log_x, dtype=float) - self.pivot)

    def as_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "norm": self.norm, "pivot": self.pivot, "scatter_dex": self.scatter}


def fit_power_law(log_x: np.ndarray, log_y: np.ndarray, pivot: float) -> PowerLawFit:
    """Least-squares line of ``log_y`` against ``log_x - pivot`` (>= 3 points)."""
    lx, ly = np.asarray(log_x, dtype=float), np.asarray(log_y, dtype=float)
    if lx.size < 3 or lx.shape != ly.shape:
        raise ValueError(f"need >= 3 paired points, got shapes {lx.shape} and {ly.shape}")
    slope, norm = np.polyfit(lx - pivot, ly, 1)
    resid = ly - (norm + slope * (lx - pivot))
    return PowerLawFit(float(slope), float(norm), float(pivot), float(np.std(resid)))


def _core_statistics(log_m, log_t, log_l, pivot) -> dict[str, float]:
    fit_t = fit_power_law(log_m, log_t, pivot)
    fit_l = fit_power_law(log_m, log_l, pivot)
    dev_t = log_t - fit_t(log_m)
    dev_l = log_l - fit_t(log_m)
    dev_l_own = log_l - fit_l(log_m)
    err = float(np.std(log_l - log_t))
    return {
        "fit_target": fit_t.as_dict(),
        "fit_ldl": fit_l.as_dict(),
        "deviation_correlation": float(np.corrcoef(dev_t, dev_l)[0, 1]),
        "deviation_correlation_own_fits": float(np.corrcoef(dev_t, dev_l_own)[0, 1]),
        "prediction_error_dex": err,
        "prediction_bias_dex": float(np.mean(log_l - log_t)),
        "natural_scatter_dex": fit_t.scatter,
        "error_over_scatter": err / fit_t.scatter if fit_t.scatter > 0 else None,
    }


def _counts_above(cr_t, cr_l, cuts) -> list[dict]:
    out = []
    for cut in cuts:
        n_t, n_l = int(np.sum(cr_t > cut)), int(np.sum(cr_l > cut))
        out.append({"cr_cut_cts_s": float(cut), "n_target": n_t, "n_ldl": n_l,
                    "ratio": n_l / n_t if n_t else None})
    return out


def fidelity_statistics(
    mass_msun_h: np.ndarray,
    cr_target_cts_s: np.ndarray,
    cr_ldl_cts_s: np.ndarray,
    cr_cuts_cts_s: Sequence[float] = (0.02,),
    pivot_log_mass: float | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> dict:
    """CR-M relations, deviation correlation, prediction error and counts above cuts (module docstring).

    Args:
        mass_msun_h: (n,) cluster masses [Msun/h].
        cr_target_cts_s, cr_ldl_cts_s: (n,) count rates of the same clusters from the target and
            the LDL gas [cts/s]; fits use the clusters where mass and both rates are > 0.
        cr_cuts_cts_s: count-rate cuts of the detection counts.
        pivot_log_mass: pivot of the fits [log10 Msun/h]; default the median log10 mass used.
        n_bootstrap: resamplings of the clusters for the ``*_std`` uncertainties (0: none).
        seed: seed of the resampling.

    Returns:
        a JSON-ready dict: ``n_clusters``, ``n_fitted``, ``fit_target``/``fit_ldl`` (slope,
        norm [log10 cts/s at the pivot], pivot, scatter_dex), ``deviation_correlation`` (from the
        target's relation) and ``deviation_correlation_own_fits`` (each sample from its own),
        ``prediction_error_dex``, ``prediction_bias_dex`` (mean log CR_LDL - log CR_target),
        ``natural_scatter_dex``, ``error_over_scatter``, bootstrap std of the correlation and of
        error/scatter, and ``counts_above`` (per cut: n_target, n_ldl, ratio, and the ratio's
        bootstrap std). Statistics that need more than the available clusters (3 fitted, 2
        above a cut) are None.
    """
    m = np.asarray(mass_msun_h, dtype=float)
    cr_t = np.asarray(cr_target_cts_s, dtype=float)
    cr_l = np.asarray(cr_ldl_cts_s, dtype=float)
    if not m.shape == cr_t.shape == cr_l.shape or m.ndim != 1:
        raise ValueError(f"need three (n,) arrays, got {m.shape}, {cr_t.shape}, {cr_l.shape}")
    ok = (m > 0) & (cr_t > 0) & (cr_l > 0)
    log_m, log_t, log_l = np.log10(m[ok]), np.log10(cr_t[ok]), np.log10(cr_l[ok])
    pivot = float(np.median(log_m)) if pivot_log_mass is None and log_m.size else pivot_log_mass
    out: dict = {"n_clusters": int(m.size), "n_fitted": int(ok.sum()), "counts_above": _counts_above(cr_t, cr_l, cr_cuts_cts_s)}
    keys = ("fit_target", "fit_ldl", "deviation_correlation", "deviation_correlation_own_fits",
            "prediction_error_dex", "prediction_bias_dex", "natural_scatter_dex", "error_over_scatter")
    if ok.sum() >= 3 and np.ptp(log_m) > 0:
        out.update(_core_statistics(log_m, log_t, log_l, pivot))
    else:
        out.update(dict.fromkeys(keys))
    out["deviation_correlation_std"] = out["error_over_scatter_std"] = None
    for c in out["counts_above"]:
        c["ratio_std"] = None
    if n_bootstrap > 0 and m.size >= 3:
        rng = np.random.default_rng(seed)
        corr, eos, ratios = [], [], [[] for _ in cr_cuts_cts_s]
        idx_ok = np.flatnonzero(ok)
        for _ in range(n_bootstrap):
            pick = rng.integers(0, m.size, m.size)
            for j, c in enumerate(_counts_above(cr_t[pick], cr_l[pick], cr_cuts_cts_s)):
                if c["ratio"] is not None:
                    ratios[j].append(c["ratio"])
            if idx_ok.size >= 3:
                b = rng.choice(idx_ok, idx_ok.size)
                lm = np.log10(m[b])
                if np.ptp(lm) > 0:
                    s = _core_statistics(lm, np.log10(cr_t[b]), np.log10(cr_l[b]), pivot)
                    if np.isfinite(s["deviation_correlation"]):
                        corr.append(s["deviation_correlation"])
                    if s["error_over_scatter"] is not None:
                        eos.append(s["error_over_scatter"])
        if out["deviation_correlation"] is not None and len(corr) > 1:
            out["deviation_correlation_std"] = float(np.std(corr))
        if out["error_over_scatter"] is not None and len(eos) > 1:
            out["error_over_scatter_std"] = float(np.std(eos))
        for c, r in zip(out["counts_above"], ratios):
            if c["n_target"] >= 2 and len(r) > 1:
                c["ratio_std"] = float(np.std(r))
    return out
