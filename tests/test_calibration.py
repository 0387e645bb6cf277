"""clustersbi.calibration: metrics against hand-computable cases, SBC ranks, and the test-set
metrics of exact Gaussian posteriors (widths known, so z_rms ~ 1 and sigma68 = sigma).

The calibration of a trained NPE (run_calibration: SBC, TARP) is tests/test_npe.py."""

from __future__ import annotations

import numpy as np
import pytest

from clustersbi.calibration import (
    evaluate_test_set,
    figure_of_merit,
    posterior_summary,
    regression_metrics,
    sbc_ranks,
    summarize_observation,
)

#: relative tolerance of sample estimates of Gaussian widths from 200k (or 5k) draws
FOM_RTOL = 0.01
SIGMA68_RTOL = 0.05
#: rms of (posterior mean - truth) / posterior std over 400 exact posteriors (1 when calibrated)
Z_RMS_RANGE = (0.9, 1.1)


def test_regression_metrics_hand_values():
    true = np.array([[1.0], [2.0], [3.0]])
    pred = np.array([[1.1], [1.8], [3.3]])
    m = regression_metrics(pred, true, ["p"])["p"]
    # eq. 11: mean(|0.1/1|, |0.2/2|, |0.3/3|) = 0.1; eq. 12: mean(0.1, -0.2, 0.3) / 2 = 1/30;
    # eq. 13: 1 - (0.01 + 0.04 + 0.09) / 2 = 0.93.
    assert m["mare"] == pytest.approx(0.1, rel=1e-12)
    assert m["nmb"] == pytest.approx(1 / 30, rel=1e-12)
    assert m["r2"] == pytest.approx(0.93, rel=1e-12)
    with pytest.raises(ValueError, match="pred"):
        regression_metrics(pred, true[:2], ["p"])


def test_zero_truths_are_skipped_in_mare():
    m = regression_metrics(np.array([[0.5], [2.2]]), np.array([[0.0], [2.0]]), ["ln_p"])["ln_p"]
    assert m["n_skipped_zero_truth"] == 1 and m["mare"] == pytest.approx(0.1, rel=1e-12), m


def test_figure_of_merit_gaussian():
    # For a bivariate Gaussian with sigmas (0.05, 0.1) and correlation -0.8:
    # FoM = 1 / sqrt(det C) = 1 / (0.05 * 0.1 * sqrt(1 - 0.64)) = 333.3.
    rng = np.random.default_rng(7)
    c = np.array([[0.05**2, -0.8 * 0.005], [-0.8 * 0.005, 0.1**2]])
    s = rng.multivariate_normal([0.3, 0.8], c, size=200_000)
    fom = figure_of_merit(s, 0, 1)
    assert fom == pytest.approx(1 / (0.005 * 0.6), rel=FOM_RTOL), fom
    summ = summarize_observation(s[:5000], ["Omega_m", "sigma_8"], theta_true=np.array([0.3, 0.8]))
    assert summ["per_parameter"]["Omega_m"]["sigma68"] == pytest.approx(0.05, rel=SIGMA68_RTOL)
    assert summ["fom"] is not None and summ["fom_params"] == ["Omega_m", "sigma_8"]
    assert summarize_observation(s[:100], ["a", "b"])["fom"] is None


def test_sbc_ranks_and_posterior_summary_hand_values():
    samples = np.array([[[0.0, 5.0], [1.0, 6.0], [2.0, 7.0], [3.0, 8.0]]])  # (B=1, S=4, P=2)
    ranks = sbc_ranks(samples, np.array([[1.5, 10.0]]))
    np.testing.assert_array_equal(ranks, [[2, 4]])
    summ = posterior_summary(samples)
    np.testing.assert_allclose(summ["mean"], [[1.5, 6.5]])
    np.testing.assert_allclose(summ["median"], [[1.5, 6.5]])
    np.testing.assert_allclose(summ["sigma68"], 0.5 * (summ["q84"] - summ["q16"]))


def test_exact_posteriors_have_unit_z_rms():
    """Truths drawn from N(mu, sigma^2), posterior samples from the same: the posterior is exact."""
    rng = np.random.default_rng(11)
    b, s = 400, 500
    mu = rng.uniform(0.2, 0.4, size=(b, 2))
    sigma = np.array([0.02, 0.05])
    truth = mu + sigma * rng.normal(size=(b, 2))
    samples = mu[:, None, :] + sigma * rng.normal(size=(b, s, 2))
    out = evaluate_test_set(samples, truth, ["Omega_m", "sigma_8"])
    for j, name in enumerate(("Omega_m", "sigma_8")):
        m = out["per_parameter"][name]
        assert Z_RMS_RANGE[0] < m["z_rms"] < Z_RMS_RANGE[1], f"{name}: z_rms {m['z_rms']:.3f}"
        assert m["sigma68_mean"] == pytest.approx(sigma[j], rel=SIGMA68_RTOL), (name, m["sigma68_mean"])
    # FoM of N(0, diag(sigma^2)): 1 / (0.02 * 0.05) = 1000
    assert out["fom_median"] == pytest.approx(1000.0, rel=0.1), out["fom_median"]
    assert evaluate_test_set(samples, truth, ["a", "b"])["fom_median"] is None


def test_width_over_prior_of_known_gaussians_and_s8():
    """Posteriors N(mu, 0.02) under a U(0.6, 1.0) prior: sigma68 ratio 0.02 / (0.68 * 0.4 / 2);
    at Omega_m = 0.3 exactly S8 = sigma_8, at Omega_m = 1.2 S8 = 2 sigma_8."""
    from clustersbi.calibration import width_over_prior, with_s8

    rng = np.random.default_rng(3)
    n_test, n_samples = 40, 4000
    omega_m = np.full((n_test, n_samples), 0.3)
    sigma_8 = rng.uniform(0.7, 0.9, size=(n_test, 1)) + 0.02 * rng.standard_normal((n_test, n_samples))
    samples = np.stack([omega_m, sigma_8], axis=-1)
    prior = np.column_stack([np.full(50000, 0.3), rng.uniform(0.6, 1.0, 50000)])
    ratios = width_over_prior(samples, prior, ["Omega_m", "sigma_8"])
    expected = 0.02 / (0.68 * 0.4 / 2)
    assert ratios["sigma_8"]["ratio_median"] == pytest.approx(expected, rel=0.05)
    assert ratios["S8"]["ratio_median"] == pytest.approx(expected, rel=0.05)
    assert ratios["sigma_8"]["sigma68_prior"] == pytest.approx(0.136, rel=0.02)
    doubled, names = with_s8(np.array([[1.2, 0.8]]), ["Omega_m", "sigma_8"])
    assert names == ["Omega_m", "sigma_8", "S8"] and doubled[0, 2] == pytest.approx(1.6)
    unchanged, names = with_s8(np.array([[0.8]]), ["sigma_8"])
    assert names == ["sigma_8"] and unchanged.shape == (1, 1)
