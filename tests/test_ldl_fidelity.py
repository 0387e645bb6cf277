"""Cluster-level fidelity of LDL painting (clustersbi.ldl_fidelity; Cerardi et al. Fig. 6).

References: injected overdense blobs whose cells, masses and periodic joins are known by
construction; the flat-LCDM Omega_m(z) limits; the emission measure scaling of the chain's own
voxel count rates; synthetic cluster catalogues whose LDL is the target plus Gaussian noise of
known width, so that the prediction error, the natural scatter and the deviation correlation
sigma_T / sqrt(sigma_T^2 + sigma_L^2) are known.
"""

from __future__ import annotations

import numpy as np
import pytest

from clustersbi.constants import RHO_CRIT_MSUN_H_MPC_H3
from clustersbi.ldl_fidelity import (
    cluster_count_rates,
    cluster_gas_properties,
    fidelity_statistics,
    find_box_clusters,
    fit_power_law,
    matter_over_critical,
    overdense_regions,
)
from clustersbi.xray import EmissionTable, voxel_count_rates

# ---- tolerances
MASS_RTOL = 1e-12  # region masses vs the injected sums (float64 sums of the same numbers)
RATE_RTOL = 1e-12  # region count rates vs the sum of the cells' own rates
#: synthetic catalogue of N_CAT clusters: the estimators' sampling errors are ~1/sqrt(N) of the
#: quantity (sigma/sqrt(2N) = 0.3% for the widths; (1 - rho^2)/sqrt(N) = 0.3% for rho)
N_CAT = 5000
WIDTH_RTOL = 0.03
CORR_ATOL = 0.02
SLOPE_ATOL = 0.02


def _blob_field(n: int = 12) -> tuple[np.ndarray, list[list[tuple[int, int, int]]]]:
    """A field of 1 with three injected blobs of values above 10 (cells listed per blob)."""
    field = np.ones((n, n, n))
    blobs = [
        [(2, 2, 2), (2, 2, 3), (2, 3, 2), (3, 2, 2)],  # face-connected
        [(6, 6, 6), (7, 7, 7), (8, 8, 8)],  # corner-connected only
        [(0, 5, 9), (n - 1, 5, 9), (n - 1, 6, 9)],  # across the x = 0 / x = n-1 face
    ]
    rng = np.random.default_rng(3)
    for cells in blobs:
        for c in cells:
            field[c] = 20.0 + 10.0 * rng.random()
    return field, blobs


def test_regions_are_the_injected_blobs_with_periodic_joins():
    field, blobs = _blob_field()
    labels, n = overdense_regions(field, 10.0)
    assert n == len(blobs), f"found {n} regions, injected {len(blobs)}"
    for cells in blobs:
        ids = {int(labels[c]) for c in cells}
        assert len(ids) == 1 and 0 not in ids, f"blob {cells} split or missed: labels {ids}"
    assert int((labels > 0).sum()) == sum(len(b) for b in blobs)
    # labels in raster order of each region's first cell: the blob across the face starts at x = 0
    assert labels[0, 5, 9] == 1 and labels[2, 2, 2] == 2 and labels[6, 6, 6] == 3, np.unique(labels)
    # without periodicity the blob across the face is two regions
    _, n_open = overdense_regions(field, 10.0, periodic=False)
    assert n_open == len(blobs) + 1
    # min_cells drops the regions of fewer cells and renumbers the rest
    labels4, n4 = overdense_regions(field, 10.0, min_cells=4)
    assert n4 == 1 and set(np.unique(labels4)) == {0, 1} and labels4[2, 2, 2] == 1


def test_empty_field_has_no_region():
    labels, n = overdense_regions(np.zeros((4, 4, 4)), 1.0)
    assert n == 0 and not labels.any()


def test_matter_over_critical_limits():
    assert matter_over_critical(0.3, 0.0) == pytest.approx(0.3, rel=1e-14)
    assert matter_over_critical(0.3, 100.0) == pytest.approx(1.0, abs=1e-5)
    assert matter_over_critical(1.0, 0.7) == pytest.approx(1.0, rel=1e-14)


def test_cluster_masses_equal_the_injected_sums():
    field, blobs = _blob_field()
    omega_m, z, cell_volume = 0.3, 0.21, 1.5**3
    om_z = matter_over_critical(omega_m, z)
    # a threshold in rho_crit(z) that the blobs pass and the background does not
    found = find_box_clusters(field, omega_m, z, cell_volume, overdensity_crit=10.0 * om_z)
    assert found.n == 3
    by_first_cell = {int(found.labels[b[0]]): b for b in blobs}
    for k in range(found.n):
        cells = by_first_cell[k + 1]
        expected = sum(field[c] for c in cells) * omega_m * RHO_CRIT_MSUN_H_MPC_H3 * cell_volume
        assert found.mass_msun_h[k] == pytest.approx(expected, rel=MASS_RTOL)
        assert found.n_cells[k] == len(cells)
        assert found.peak_over_crit[k] == pytest.approx(max(field[c] for c in cells) * om_z, rel=1e-12)


def _flat_table() -> EmissionTable:
    """A table of two bands whose rate doubles from the lower to the higher temperature node."""
    kt = np.array([0.1, 10.0])
    z = np.array([0.0, 1.0])
    rate = np.stack([np.full((2, 2), 1e-15), np.full((2, 2), 2e-15)])
    rate[:, 1, :] *= 2.0
    return EmissionTable(kt, z, np.array([[0.5, 1.0], [1.0, 2.0]]), rate)


def test_cluster_count_rates_sum_the_cells_rates():
    field, blobs = _blob_field()
    labels, n = overdense_regions(field, 10.0)
    rng = np.random.default_rng(5)
    ne = 1e-4 * (1 + rng.random(field.shape))
    t = 1e7 * (1 + rng.random(field.shape))
    table = _flat_table()
    args = (0.2, 800.0, 1.0, 0.7, table)
    cr = cluster_count_rates(labels, n, ne, t, *args)
    cells = voxel_count_rates(ne, t, *args)
    assert cr.shape == (2, n)
    for k in range(n):
        np.testing.assert_allclose(cr[:, k], cells[:, labels == k + 1].sum(axis=1), rtol=RATE_RTOL)
    # the emission measure: twice the electron density, four times the rate
    np.testing.assert_allclose(cluster_count_rates(labels, n, 2 * ne, t, *args), 4 * cr, rtol=RATE_RTOL)
    props = cluster_gas_properties(labels, n, ne, t)
    k = int(labels[blobs[0][0]]) - 1
    sel = labels == k + 1
    assert props["t_ew_k"][k] == pytest.approx(np.sum(ne[sel] ** 2 * t[sel]) / np.sum(ne[sel] ** 2), rel=1e-12)


def _catalogue(sigma_t: float, sigma_l: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    log_m = rng.uniform(13.0, 14.5, N_CAT)
    log_t = -2.5 + 1.6 * (log_m - 13.5) + sigma_t * rng.standard_normal(N_CAT)
    log_l = log_t + sigma_l * rng.standard_normal(N_CAT)
    return 10**log_m, 10**log_t, 10**log_l


def test_fidelity_statistics_of_a_noisy_copy_of_the_target():
    sigma_t, sigma_l = 0.2, 0.1
    m, cr_t, cr_l = _catalogue(sigma_t, sigma_l)
    s = fidelity_statistics(m, cr_t, cr_l, cr_cuts_cts_s=[1e-3], n_bootstrap=20)
    assert s["n_clusters"] == s["n_fitted"] == N_CAT
    assert s["prediction_error_dex"] == pytest.approx(sigma_l, rel=WIDTH_RTOL), s["prediction_error_dex"]
    assert s["natural_scatter_dex"] == pytest.approx(sigma_t, rel=WIDTH_RTOL), s["natural_scatter_dex"]
    assert s["error_over_scatter"] == pytest.approx(sigma_l / sigma_t, rel=2 * WIDTH_RTOL), s["error_over_scatter"]
    expected_corr = sigma_t / np.hypot(sigma_t, sigma_l)  # 0.894, near the paper's 0.88
    assert s["deviation_correlation"] == pytest.approx(expected_corr, abs=CORR_ATOL), s["deviation_correlation"]
    assert abs(s["prediction_bias_dex"]) < 3 * sigma_l / np.sqrt(N_CAT), s["prediction_bias_dex"]
    for who, scatter in (("target", sigma_t), ("ldl", np.hypot(sigma_t, sigma_l))):
        fit = s[f"fit_{who}"]
        assert fit["slope"] == pytest.approx(1.6, abs=SLOPE_ATOL), (who, fit)
        assert fit["scatter_dex"] == pytest.approx(scatter, rel=WIDTH_RTOL), (who, fit)
    assert 0 < s["deviation_correlation_std"] < 0.05 and 0 < s["error_over_scatter_std"] < 0.05, s


def test_uncorrelated_painting_has_no_deviation_correlation():
    m, cr_t, _ = _catalogue(0.2, 0.0, seed=2)
    # the LDL on the target's masses and relation, with its own independent scatter
    rng = np.random.default_rng(4)
    cr_l = 10 ** (-2.5 + 1.6 * (np.log10(m) - 13.5) + 0.2 * rng.standard_normal(m.size))
    s = fidelity_statistics(m, cr_t, cr_l, n_bootstrap=0)
    assert abs(s["deviation_correlation"]) < 4 / np.sqrt(N_CAT), s["deviation_correlation"]
    assert s["error_over_scatter"] == pytest.approx(np.sqrt(2), rel=2 * WIDTH_RTOL), s["error_over_scatter"]
    assert s["deviation_correlation_std"] is None


def test_counts_above_cuts():
    cr_t = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    cr_l = 0.5 * cr_t  # the LDL at half the target's rate
    m = np.array([1e13, 2e13, 3e13, 4e13, 5e13, 6e13])
    s = fidelity_statistics(m, cr_t, cr_l, cr_cuts_cts_s=[0.9, 2.5, 10.0], n_bootstrap=10)
    (low, mid, high) = s["counts_above"]
    assert (low["n_target"], low["n_ldl"]) == (6, 5) and low["ratio"] == pytest.approx(5 / 6)
    assert (mid["n_target"], mid["n_ldl"]) == (4, 1) and mid["ratio"] == pytest.approx(0.25)
    assert (high["n_target"], high["ratio"], high["ratio_std"]) == (0, None, None)
    # a constant factor is a bias, not an error: the deviations are perfectly correlated
    assert s["prediction_bias_dex"] == pytest.approx(np.log10(0.5), rel=1e-12)
    assert s["prediction_error_dex"] == pytest.approx(0.0, abs=1e-12)


def test_too_few_clusters_give_none_not_an_error():
    s = fidelity_statistics(np.array([1e13, 2e13]), np.array([1e-3, 2e-3]), np.array([1e-3, 0.0]))
    assert s["n_fitted"] == 1 and s["deviation_correlation"] is None and s["fit_target"] is None
    assert s["counts_above"][0]["n_target"] == 0


def test_power_law_fit_recovers_a_line():
    x = np.linspace(13, 15, 7)
    fit = fit_power_law(x, 2.0 + 1.5 * (x - 14.0), pivot=14.0)
    assert (fit.slope, fit.norm) == (pytest.approx(1.5), pytest.approx(2.0)) and fit.scatter < 1e-12
