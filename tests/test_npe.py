"""clustersbi.npe on a linear-Gaussian toy with an analytic posterior: the posterior itself, its
calibration (SBC, TARP through clustersbi.calibration), the save/load round trip, the plots.

Metrics against hand-computable cases are tests/test_calibration.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustersbi.calibration import evaluate_test_set, run_calibration
from clustersbi.npe import (
    NPEConfig,
    NPEEnsemble,
    build_prior,
    ensemble_weights,
    load_npe,
    member_configs,
    npe_config_from_dict,
    sample_posteriors,
    save_npe,
    train_npe,
    train_npe_ensemble,
)
from clustersbi.plots import infer as P

torch.set_num_threads(1)  # networks this small train faster on one thread (and CI shares two cores)

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
    b = back.members[0].estimator.log_prob(th[None], x)
    assert back.posterior is back.members[0].posterior and back.weights.tolist() == [1.0]
    assert torch.equal(a, b), f"log_prob differs after reload: {a} vs {b}"


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown infer config keys: \\['n_components'\\]"):
        npe_config_from_dict({"n_components": 3})
    with pytest.raises(ValueError, match="density_estimator"):
        NPEConfig(density_estimator="gmm")
    with pytest.raises(ValueError, match="batch_size"):
        NPEConfig(batch_size=0)


def test_prior_box_is_checked():
    prior = build_prior(LOW, HIGH)
    # uniform on the 6 x 6 box: log density -ln 36 inside, -inf outside
    logp = prior.log_prob(torch.tensor([[0.0, 2.9], [3.1, 0.0]])).numpy()
    assert logp[0] == pytest.approx(-np.log(36.0), rel=1e-6) and logp[1] == -np.inf, logp
    with pytest.raises(ValueError, match="high must exceed low"):
        build_prior([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="1D of equal length"):
        build_prior([0.0], [1.0, 2.0])


# --------------------------------------------------------------------------- ensembles

#: the toy MDN above and a small flow: mean / std checked against the analytic posterior with the
#: single estimator's tolerances
FLOW_MEMBER = {"density_estimator": "maf", "num_transforms": 2, "hidden_features": 32, "seed": 2}


@pytest.fixture(scope="module")
def toy_ensemble(toy_npe):
    """The toy MDN and a flow trained by train_npe_ensemble on the same rows, weighted as one ensemble."""
    rng = np.random.default_rng(0)
    th_tr, x_tr = _simulate(rng, 2000)
    th_va, x_va = _simulate(rng, 400)
    cfg = NPEConfig(learning_rate=3e-3, batch_size=500, max_epochs=100, stop_after_epochs=10, ensemble=[FLOW_MEMBER])
    flow = train_npe_ensemble(th_tr, x_tr, th_va, x_va, LOW, HIGH, cfg, device="cpu")
    assert len(flow.members) == 1 and flow.posterior is flow.members[0].posterior
    members = [toy_npe, flow.members[0]]
    return NPEEnsemble(members, ensemble_weights([m.val_log_prob for m in members]), cfg)


def test_member_configs_override_only_what_they_set():
    base = NPEConfig(num_components=3, seed=7, ensemble=[{"seed": 1}, {"density_estimator": "nsf", "seed": None}])
    first, second = member_configs(base)
    assert (first.density_estimator, first.num_components, first.seed, first.ensemble) == ("mdn", 3, 1, [])
    assert (second.density_estimator, second.seed) == ("nsf", 7)
    assert member_configs(NPEConfig()) == [NPEConfig()]
    with pytest.raises(ValueError, match=r"ensemble\[0\]: unknown keys \['lr'\]"):
        NPEConfig(ensemble=[{"lr": 1e-3}])
    with pytest.raises(ValueError, match="density_estimator"):
        member_configs(NPEConfig(ensemble=[{"density_estimator": "gmm"}]))


def test_ensemble_weights_are_the_softmax_of_validation_log_probs():
    w = ensemble_weights([-1.0, -2.0, -1.5])
    expected = np.exp([-1.0, -2.0, -1.5]) / np.exp([-1.0, -2.0, -1.5]).sum()
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    np.testing.assert_allclose(ensemble_weights([-1e4, -1e4 - 1.0]), [1 / (1 + np.exp(-1)), 1 - 1 / (1 + np.exp(-1))])
    np.testing.assert_allclose(ensemble_weights([-1.0, -5.0], "uniform"), [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        ensemble_weights([np.nan, 1.0])


@pytest.mark.slow
def test_ensemble_weights_come_from_each_members_best_validation_loss(toy_ensemble):
    best = [min(h["val_loss"] for h in m.history) for m in toy_ensemble.members]
    np.testing.assert_allclose([m.val_log_prob for m in toy_ensemble.members], -np.array(best), rtol=1e-12)
    w = toy_ensemble.weights
    np.testing.assert_allclose(w[0] / w[1], np.exp(best[1] - best[0]), rtol=1e-9)  # w_i ~ exp(val log-prob_i)
    assert abs(w.sum() - 1.0) < 1e-12
    assert [m.config.density_estimator for m in toy_ensemble.members] == ["mdn", "maf"]
    assert toy_ensemble.members[1].config.num_transforms == 2 and toy_ensemble.members[1].config.ensemble == []


@pytest.mark.slow
def test_ensemble_is_the_weighted_mixture_and_matches_the_analytic_posterior(toy_ensemble):
    rng = np.random.default_rng(1)
    th0 = rng.uniform(-1, 1, size=(10, 2))
    x0 = th0 @ A.T + rng.normal(size=(10, 2)) * SIG
    # log q = log sum_i w_i q_i, each member normalised on the prior box
    th = torch.tensor(th0[:4] + 0.1, dtype=torch.float32)
    x = torch.tensor(x0[0], dtype=torch.float32)
    mixed = toy_ensemble.posterior.log_prob(th, x=x).detach()
    members = torch.stack([m.posterior.log_prob(th, x=x).detach() for m in toy_ensemble.members])
    by_hand = torch.logsumexp(members + torch.log(torch.tensor(toy_ensemble.weights, dtype=torch.float32))[:, None], dim=0)
    torch.testing.assert_close(mixed, by_hand, rtol=1e-4, atol=5e-3)  # each normalisation is a Monte Carlo estimate
    mu, cov = _analytic(x0)
    s = sample_posteriors(toy_ensemble.posterior, x0, 4000, seed=2)
    sd = np.sqrt(np.diag(cov))
    dmean = np.abs(s.mean(1) - mu) / sd
    ratio = s.std(1) / sd
    print(f"\nensemble vs analytic: weights {np.round(toy_ensemble.weights, 3)}, max |dmean|/sigma={dmean.max():.3f}, "
          f"std ratio in [{ratio.min():.3f}, {ratio.max():.3f}]")
    assert dmean.max() < MEAN_TOL_SIGMA, f"ensemble posterior mean off by {dmean.max():.3f} sigma"
    assert STD_RATIO_RANGE[0] < ratio.min() and ratio.max() < STD_RATIO_RANGE[1], f"std ratios {ratio.min():.3f}..{ratio.max():.3f}"


@pytest.mark.slow
def test_ensemble_save_load_roundtrip(toy_ensemble, tmp_path):
    save_npe(tmp_path / "npe.pt", toy_ensemble)
    payload = torch.load(tmp_path / "npe.pt", weights_only=True)  # plain tensors and strings: no pickled modules
    assert len(payload["members"]) == 2
    back = load_npe(tmp_path / "npe.pt", device="cpu")
    np.testing.assert_array_equal(back.weights, toy_ensemble.weights)
    assert back.member_names() == toy_ensemble.member_names() == ["mdn(seed 0)", "maf(seed 2)"]
    th = torch.tensor([[0.1, -0.2], [1.0, 0.5]], dtype=torch.float32)
    x = torch.tensor([[0.3, 0.1], [1.2, 0.9]], dtype=torch.float32)
    for a, b in zip(toy_ensemble.members, back.members):
        assert torch.equal(a.estimator.log_prob(th[None], x), b.estimator.log_prob(th[None], x)), a.config
    s1 = sample_posteriors(toy_ensemble.posterior, x.numpy(), 500, seed=3)
    s2 = sample_posteriors(back.posterior, x.numpy(), 500, seed=3)
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.slow
def test_sampling_does_not_stall_where_the_estimator_leaves_the_box(toy_npe):
    """An observation whose posterior lies beyond the prior box (acceptance ~0): sbi's rejection
    would loop for hours; the box posterior gives up after its rounds and stays inside the box."""
    import time

    t0 = time.perf_counter()
    s = sample_posteriors(toy_npe.posterior, np.array([[0.2, 0.1], [12.0, 12.0]]), 500, seed=0)
    seconds = time.perf_counter() - t0
    assert seconds < 30, f"sampling took {seconds:.1f} s"
    assert s.shape == (2, 500, 2) and np.all((s >= LOW) & (s <= HIGH)), "samples outside the prior box"
    assert s[0].std(0).min() > 0.05, "the ordinary observation lost its spread"
