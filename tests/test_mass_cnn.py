"""The X-ray mass CNN and its proxy baselines on problems with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustersbi import mass_cnn as mc


def test_folds_never_split_a_region_or_a_cluster():
    rng = np.random.default_rng(0)
    cluster = np.repeat(np.arange(200), 3)  # three views per cluster
    region_of_cluster = rng.integers(0, 13, 200)
    region = region_of_cluster[cluster]
    folds = mc.assign_folds(region, 8)
    assert set(folds) == set(range(8))
    for k in range(8):
        test, train = folds == k, folds != k
        assert not set(region[test]) & set(region[train]), f"fold {k}: a region straddles train and test"
        assert not set(cluster[test]) & set(cluster[train]), f"fold {k}: a cluster's views straddle train and test"
    with pytest.raises(ValueError, match="n_folds = 8 but .* only 5 regions"):
        mc.assign_folds(np.arange(5), 8)


def test_cnn_recovers_a_known_function_of_the_image():
    """Target ln M = ln(total flux) of a Gaussian blob of random width and position: learnable exactly."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    n, npix = 640, 16
    ln_m = rng.uniform(0.0, 3.0, n)
    yy, xx = np.mgrid[:npix, :npix] + 0.5
    cx, cy = rng.uniform(6, 10, (2, n))
    width = rng.uniform(1.2, 2.5, n)
    blobs = np.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / (2 * width[:, None, None] ** 2))
    images = blobs / blobs.sum(axis=(1, 2), keepdims=True) * np.exp(ln_m)[:, None, None] * 50.0
    x = np.log10(images + 1.0)[:, None].astype(np.float32)
    settings = mc.CnnSettings(batch_size=32, max_epochs=40, patience=8, filters=(8, 8, 8, 8), dense=(32, 32))
    net, history, std = mc.train_mass_cnn(x[:480], ln_m[:480], x[480:560], ln_m[480:560], settings, seed=0)
    pred = mc.predict(net, x[560:], std)
    rms = float(np.sqrt(np.mean((pred - ln_m[560:]) ** 2)))
    assert rms < 0.12, f"rms error {rms:.3f} on ln M (prior std {ln_m.std():.2f})"
    assert history[-1]["epoch"] >= 5 and history[0]["val_loss"] > min(h["val_loss"] for h in history)
    sal = mc.saliency(net, x[560:564], std)
    assert sal.shape == (4, 1, npix, npix) and np.all(np.isfinite(sal)) and sal.sum() > 0


def test_power_law_proxy_recovers_injected_relation_and_corrects_eddington_bias():
    rng = np.random.default_rng(2)
    beta = 2.0
    lo, hi = -3.0, 3.0
    u = rng.random(200_000)
    mu = lo - np.log1p(-u * (1 - np.exp(-beta * (hi - lo)))) / beta  # truncated exp(-beta mu)
    z = rng.uniform(0.1, 0.5, mu.size)
    ln_s = 1.0 + 1.5 * mu + 0.7 * z + rng.normal(0, 0.3, mu.size)
    np.testing.assert_allclose(mc.mass_function_slope(mu, lo, hi), beta, rtol=0.02)
    proxy = mc.fit_power_law_proxy(ln_s, mu, z)
    np.testing.assert_allclose([proxy.pi, proxy.alpha, proxy.gamma, proxy.sigma_s], [1.0, 1.5, 0.7, 0.3], atol=0.03)
    np.testing.assert_allclose(proxy.predictive_scatter_ln, 0.2, rtol=0.02)
    # away from the sample edges E[mu | s] is the eq. 6 prediction; the naive inversion is biased
    pred = proxy.predict_mu(ln_s, z)
    naive = (ln_s - proxy.pi - proxy.gamma * z) / proxy.alpha
    inner = (naive > -1.5) & (naive < 1.5)
    assert abs(np.mean(pred[inner] - mu[inner])) < 0.01
    np.testing.assert_allclose(np.mean(naive[inner] - mu[inner]), beta * 0.3**2 / 1.5**2, rtol=0.1)


def test_residual_statistics_in_dex_and_percent():
    rng = np.random.default_rng(3)
    truth = rng.uniform(30, 35, 50_000)
    pred = truth + np.log(10) * rng.normal(0.02, 0.05, truth.size)
    stats = mc.residual_statistics(pred, truth)
    np.testing.assert_allclose([stats["bias_dex"], stats["scatter_dex"]], [0.02, 0.05], atol=1e-3)
    np.testing.assert_allclose(stats["scatter_pct"], 0.05 * np.log(10) * 100, rtol=0.02)


def test_count_normalisation_removes_an_injected_redshift_trend():
    rng = np.random.default_rng(4)
    z = rng.uniform(0.1, 0.5, 300)
    totals = 10 ** (4.0 - 2.0 * z)
    images = np.ones((300, 1, 8, 8)) * (totals / 64)[:, None, None, None]
    norm = mc.fit_count_normalisation(images, z)
    np.testing.assert_allclose([norm.gamma, norm.eta], [-2.0, 4.0], atol=1e-6)
    x = mc.transform_counts(images, z, norm)
    np.testing.assert_allclose(x, np.log10(mc.N0_PHOTONS / 64 + 1), rtol=1e-5)


def test_radial_profile_and_masks():
    npix = 32
    c = np.arange(npix) + 0.5 - npix / 2
    r = np.hypot(*np.meshgrid(c, c))
    maps = np.stack([r, 2 * r])
    prof = mc.radial_profile(maps, np.array([8.0, 8.0]), np.array([0.0, 0.5, 1.0, 1.5]))
    # mean radius in an annulus [a, b] of a continuous disc: 2/3 (b^3 - a^3)/(b^2 - a^2), in pixels
    for k, (a, b) in enumerate([(0, 4), (4, 8), (8, 12)]):
        np.testing.assert_allclose(prof[0, k], 2 / 3 * (b**3 - a**3) / (b**2 - a**2), rtol=0.03)
    np.testing.assert_allclose(prof[1], 2 * prof[0])
    sal = np.ones((1, 4, 4)); sal[0, 0, 0] = 5.0
    agn = np.zeros((1, 4, 4)); agn[0, 0, 0] = 10.0
    icm = np.ones((1, 4, 4))
    s_agn, s_icm = mc.mask_saliency(sal, icm, agn)
    assert s_agn[0] == 5.0 and s_icm[0] == 1.0
    np.testing.assert_allclose(mc.aperture_sum(np.ones((2, npix, npix)), np.array([4.0, 100.0])), [np.sum(r < 4), npix**2])


def test_tune_searches_the_space_and_reports_the_best_trial():
    torch.set_num_threads(1)
    rng = np.random.default_rng(6)
    x = rng.random((96, 1, 8, 8)).astype(np.float32)
    y = x.sum(axis=(1, 2, 3)) + rng.normal(0, 0.1, 96)
    base = mc.CnnSettings(max_epochs=2, patience=2)
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "n_filters": {"low": 8, "high": 16, "step": 8, "int": True}}
    result = mc.tune_mass_cnn(x[:64], y[:64], x[64:], y[64:], base, seed=0, n_trials=3, n_startup_trials=3, search_space=space)
    assert result["n_trials"] == 3 and set(result["best_params"]) == set(space)
    values = [t["value"] for t in result["trials"] if t["value"] is not None]
    assert result["best_value"] == min(values)
    assert 1e-4 <= result["best_params"]["learning_rate"] <= 1e-2 and result["best_params"]["n_filters"] in (8, 16)
    with pytest.raises(ValueError, match="unknown key 'dropout'"):
        mc._settings_from_trial(base, {"dropout": 0.1})


def test_rebin_conserves_counts():
    img = np.arange(2 * 3 * 8 * 8, dtype=float).reshape(2, 3, 8, 8)
    out = mc.rebin_images(img, 4)
    assert out.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(out.sum(axis=(-1, -2)), img.sum(axis=(-1, -2)))
    assert out[0, 0, 0, 0] == img[0, 0, :4, :4].sum()
    with pytest.raises(ValueError, match="mass_cnn.rebin = 3"):
        mc.rebin_images(img, 3)


def test_inverse_power_law_is_unbiased_on_a_mass_limited_sample():
    """With a mass cut, eq. 6's exponential prior is biased near the cut; the regression is not."""
    rng = np.random.default_rng(7)
    beta, lo, hi = 3.0, 0.0, 2.3
    u = rng.random(100_000)
    mu = lo - np.log1p(-u * (1 - np.exp(-beta * (hi - lo)))) / beta
    z = rng.uniform(0.1, 0.5, mu.size)
    ln_s = 2.0 + 1.2 * mu - 1.0 * z + rng.normal(0, 0.4, mu.size)
    reg = mc.fit_inverse_power_law(ln_s, mu, z)
    assert abs(np.mean(reg.predict_ln_m(ln_s, z) - mu)) < 1e-3
    forward = mc.fit_power_law_proxy(ln_s, mu, z)
    assert np.mean(forward.predict_mu(ln_s, z) - mu) < -0.05  # the bias the regression avoids
