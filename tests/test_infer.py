"""NPE on a linear-Gaussian toy with an analytic posterior; calibration (SBC, TARP); metrics
against hand-computable cases; save/load round trip; plots are written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sbi")

from clustersbi.infer import (  # noqa: E402
    NPEConfig,
    evaluate_test_set,
    figure_of_merit,
    load_npe,
    regression_metrics,
    run_calibration,
    sample_posteriors,
    save_npe,
    summarize_observation,
    train_npe,
)

torch.set_num_threads(2)

# Linear-Gaussian toy: theta ~ U([-3, 3]^2), x = A theta + N(0, diag(sig^2)). Test points lie in
# [-1, 1]^2, > 5 posterior sigmas from the box edges, so the posterior is the untruncated
# Gaussian N(C A^T S^-1 x, C), C = (A^T S^-1 A)^-1.
A = np.array([[1.0, 0.5], [0.2, 1.0]])
SIG = np.array([0.5, 0.4])
LOW, HIGH = np.array([-3.0, -3.0]), np.array([3.0, 3.0])
MEAN_TOL_SIGMA = 0.35  # |NPE mean - analytic mean| / analytic sigma, worst of 20 points
STD_RATIO_RANGE = (0.80, 1.20)  # NPE std / analytic std, every point and parameter
SBC_KS_PVAL_MIN = 1e-3  # SBC rank uniformity (KS) must not be rejected at this level
TARP_ATC_MAX = 0.05  # |area to curve| of TARP expected coverage (0 when calibrated)


def _simulate(rng, n):
    theta = rng.uniform(LOW, HIGH, size=(n, 2))
    return theta, theta @ A.T + rng.normal(size=(n, 2)) * SIG


def _analytic(x):
    prec = A.T @ np.diag(SIG**-2) @ A
    cov = np.linalg.inv(prec)
    return (cov @ A.T @ np.diag(SIG**-2) @ x.T).T, cov


@pytest.fixture(scope="module")
def toy_npe():
    rng = np.random.default_rng(0)
    th_tr, x_tr = _simulate(rng, 2000)
    th_va, x_va = _simulate(rng, 400)
    cfg = NPEConfig(learning_rate=3e-3, batch_size=500, max_epochs=200, stop_after_epochs=15, seed=0)
    return train_npe(th_tr, x_tr, th_va, x_va, LOW, HIGH, cfg, device="cpu")


@pytest.mark.slow
def test_npe_matches_analytic_posterior(toy_npe):
    rng = np.random.default_rng(1)
    th0 = rng.uniform(-1, 1, size=(20, 2))
    x0 = th0 @ A.T + rng.normal(size=(20, 2)) * SIG
    mu, cov = _analytic(x0)
    s = sample_posteriors(toy_npe.posterior, x0, 4000, seed=2)
    sd = np.sqrt(np.diag(cov))
    dmean = np.abs(s.mean(1) - mu) / sd
    ratio = s.std(1) / sd
    print(f"\nNPE vs analytic: max |dmean|/sigma={dmean.max():.3f}, std ratio in [{ratio.min():.3f}, {ratio.max():.3f}]"
          f", epochs={len(toy_npe.history)}, {toy_npe.seconds:.1f}s")
    assert dmean.max() < MEAN_TOL_SIGMA, f"posterior mean off by {dmean.max():.3f} sigma"
    assert STD_RATIO_RANGE[0] < ratio.min() and ratio.max() < STD_RATIO_RANGE[1], f"std ratios {ratio.min():.3f}..{ratio.max():.3f}"


@pytest.mark.slow
def test_npe_calibration_sbc_tarp(toy_npe, tmp_path):
    rng = np.random.default_rng(3)
    th, x = _simulate(rng, 200)
    cal = run_calibration(toy_npe.posterior, th, x, n_samples=200, seed=4, param_names=["a", "b"])
    print(f"\nSBC KS p-values {cal['sbc_ks_pvals']}, TARP ATC {cal['tarp_atc']:.4f} (KS p {cal['tarp_ks_pval']:.3f})")
    assert min(cal["sbc_ks_pvals"].values()) > SBC_KS_PVAL_MIN, f"SBC ranks non-uniform: {cal['sbc_ks_pvals']}"
    assert abs(cal["tarp_atc"]) < TARP_ATC_MAX, f"TARP ATC {cal['tarp_atc']:.4f}"
    assert np.asarray(cal["sbc_ranks"]).shape == (200, 2)

    from clustersbi import plots_inference as P

    samples = sample_posteriors(toy_npe.posterior, x[:50], 300, seed=5)
    metrics = evaluate_test_set(samples, th[:50], ["a", "b"], fom_params=("a", "b"))
    assert metrics["per_parameter"]["a"]["r2"] > 0.9, metrics["per_parameter"]["a"]
    files = [
        P.plot_predicted_vs_true(samples.mean(1), th[:50], ["a", "b"], tmp_path / "pvt.png",
                                 pred_err=samples.std(1)),
        P.plot_corner(samples[0], ["a", "b"], tmp_path / "corner.png", truth=th[0]),
        P.plot_sbc_ranks(np.asarray(cal["sbc_ranks"]), 200, ["a", "b"], tmp_path / "sbc.png"),
        P.plot_tarp(cal["tarp_ecp"], cal["tarp_alpha"], tmp_path / "tarp.png"),
        P.plot_training_curves(toy_npe.history, tmp_path / "curves.png"),
    ]
    for f in files:
        assert f.exists() and f.stat().st_size > 1000, f


@pytest.mark.slow
def test_save_load_roundtrip(toy_npe, tmp_path):
    save_npe(tmp_path / "npe.pt", toy_npe)
    back = load_npe(tmp_path / "npe.pt", device="cpu")
    th = torch.tensor([[0.1, -0.2], [1.0, 0.5]], dtype=torch.float32)
    x = torch.tensor([[0.3, 0.1], [1.2, 0.9]], dtype=torch.float32)
    a = toy_npe.estimator.log_prob(th[None], x)
    b = back.estimator.log_prob(th[None], x)
    assert torch.equal(a, b), f"log_prob differs after reload: {a} vs {b}"


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


def test_figure_of_merit_gaussian():
    # For a bivariate Gaussian with sigmas (0.05, 0.1) and correlation -0.8:
    # FoM = 1 / sqrt(det C) = 1 / (0.05 * 0.1 * sqrt(1 - 0.64)) = 333.3.
    rng = np.random.default_rng(7)
    c = np.array([[0.05**2, -0.8 * 0.005], [-0.8 * 0.005, 0.1**2]])
    s = rng.multivariate_normal([0.3, 0.8], c, size=200_000)
    fom = figure_of_merit(s, 0, 1)
    assert fom == pytest.approx(1 / (0.005 * 0.6), rel=0.01), fom
    summ = summarize_observation(s[:5000], ["Omega_m", "sigma_8"], theta_true=np.array([0.3, 0.8]))
    assert summ["per_parameter"]["Omega_m"]["sigma68"] == pytest.approx(0.05, rel=0.05)
    assert summ["fom"] is not None
