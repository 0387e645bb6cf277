"""Fidelity metrics of mass maps (clustersbi.mass_map_metrics) on inputs with known answers.

References: exact scalings (a map times 1.1 has b = 0.1 and P ratio 1.21), the projected NFW
cylinder mass (Bartelmann 1996; Wright & Brainerd 2000, Eqs. 11-13), Parseval's theorem and the
flat spectrum of white noise, and the closed-form MMD^2 of two Gaussians under a Gaussian kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

from clustersbi import mass_map_metrics as mm

#: relative accuracy of the cylinder mass of a sub-pixel-sampled projected NFW (the test map
#: itself misses ~0.5% of the mass inside r_s to the sampling of the central cusp)
CYLINDER_RTOL = 1e-2
#: MMD^2 estimate of 2 x 2000 samples vs closed form (its scatter is ~5% of the value here)
MMD_RTOL = 0.12


def _nfw_sigma_and_cylinder(x):
    """Projected NFW in units of rho_s r_s: Sigma(x) / (rho_s r_s) and M_2D(<x) / (4 pi rho_s r_s^3)."""
    x = np.asarray(x, dtype=float)
    f = np.empty_like(x)
    g = np.empty_like(x)
    lo, hi = x < 1, x > 1
    a_lo = np.arctanh(np.sqrt((1 - x[lo]) / (1 + x[lo]))) * 2 / np.sqrt(1 - x[lo] ** 2)
    a_hi = np.arctan(np.sqrt((x[hi] - 1) / (x[hi] + 1))) * 2 / np.sqrt(x[hi] ** 2 - 1)
    f[lo], f[hi] = (1 - a_lo) / (x[lo] ** 2 - 1), (1 - a_hi) / (x[hi] ** 2 - 1)
    g[lo], g[hi] = np.log(x[lo] / 2) + a_lo, np.log(x[hi] / 2) + a_hi
    f[~(lo | hi)], g[~(lo | hi)] = 1.0 / 3.0, 1 + np.log(0.5)
    return 2 * f, g


def _nfw_map(npix, rs_pix, sub=16):
    """Mass per pixel of a projected NFW (rho_s = 1, lengths in pixels), sampled on sub-pixels."""
    c = (npix - 1) / 2
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    coord = (np.arange(npix)[:, None] + offs[None, :]).ravel() - c
    r = np.hypot(coord[:, None], coord[None, :]) / rs_pix
    sigma, _ = _nfw_sigma_and_cylinder(r)
    sigma *= rs_pix  # Sigma = 2 rho_s r_s f(x)
    return sigma.reshape(npix, sub, npix, sub).mean(axis=(1, 3))


def test_cylinder_mass_of_a_projected_nfw_matches_the_analytic_profile():
    npix, rs = 81, 6.0
    m = _nfw_map(npix, rs)[None]
    radii = np.array([[5.0, 10.0, 20.0, 35.0]])
    got = mm.cylinder_mass(m, radii)[0]
    _, g = _nfw_sigma_and_cylinder(radii[0] / rs)
    expected = 4 * np.pi * rs**3 * g
    np.testing.assert_allclose(got, expected, rtol=CYLINDER_RTOL, err_msg=f"{got} vs {expected}")


def test_scaled_maps_have_the_exact_bias_and_power_ratio():
    rng = np.random.default_rng(0)
    true = rng.lognormal(size=(5, 32, 32))
    r200 = np.full(5, 12.0)
    np.testing.assert_allclose(mm.profile_bias(1.1 * true, true, r200), 0.1, rtol=1e-12)
    np.testing.assert_allclose(mm.profile_bias(true, true, r200), 0.0, atol=1e-12)
    k, ratio = mm.power_ratio(1.1 * true, true)
    assert k[0] == 1 and k[-1] == 16
    np.testing.assert_allclose(ratio, 1.21, rtol=1e-12)
    np.testing.assert_allclose(mm.power_ratio(true, true)[1], 1.0, rtol=1e-12)
    d = mm.pixel_relative_differences(1.1 * true, true)
    assert d.size == true.size
    np.testing.assert_allclose(d, 0.1, rtol=1e-12)


def test_pixel_apertures_and_zero_pixels():
    true = np.ones((2, 41, 41))
    inside = mm.pixel_relative_differences(true, true, radius_pix=np.array([10.0, 5.0]))
    # pixel centres strictly inside circles of radius 10 and 5 about the middle: the Gauss circle
    # counts N(10) = 317 and N(5) = 81 less the 12 lattice points on each circle
    assert inside.size == 305 + 69, inside.size
    true[0, 0, 0], true[0, 0, 1] = 0.0, 0.0
    pred = true.copy()
    pred[0, 0, 1] = 3.0  # true 0, pred not: dropped; true 0 = pred: kept with D = 0
    d = mm.pixel_relative_differences(pred, true)
    assert d.size == true.size - 1 and np.all(d == 0.0)
    s = mm.percentile_summary(np.random.default_rng(1).normal(0.2, 0.5, 200_000))
    assert abs(s["median"] - 0.2) < 0.01 and abs(s["plus"] - 0.5) < 0.01 and abs(s["minus"] - 0.5) < 0.01, s


def test_power_spectrum_parseval_plane_wave_and_white_noise():
    n = 64
    x = np.arange(n)
    wave = 3.0 * np.cos(2 * np.pi * 5 * x / n)[None, :] * np.ones((n, 1))
    k, p = mm.power_spectrum_2d(wave)
    ring = np.floor(np.hypot(*np.meshgrid(np.fft.fftfreq(n) * n, np.fft.fftfreq(n) * n)) + 0.5)
    n5 = int((ring == 5).sum())
    # all the power (Parseval: sum |F|^2 / n^2 = sum x^2 = n^2 A^2 / 2) sits in ring 5
    assert p[4] * n5 == pytest.approx(n * n * 9.0 / 2, rel=1e-10)
    assert np.all(p[np.arange(len(k)) != 4] < 1e-20)
    noise = np.random.default_rng(2).normal(0.0, 2.0, (40, n, n))
    _, pn = mm.power_spectrum_2d(noise)
    assert pn.mean() == pytest.approx(4.0, rel=0.02)
    assert np.all(np.abs(pn.mean(axis=0) / 4.0 - 1) < 0.35)  # flat: even ring 1 (6 modes x 40 maps)


def _gaussian_mmd2(mu1, s1, mu2, s2, bandwidths):
    """E k(X, X') + E k(Y, Y') - 2 E k(X, Y) for X ~ N(mu1, s1^2), Y ~ N(mu2, s2^2)."""
    total = 0.0
    for s in bandwidths:
        v = s1 * s1 + s2 * s2
        total += s / np.sqrt(s * s + 2 * s1 * s1) + s / np.sqrt(s * s + 2 * s2 * s2)
        total -= 2 * s / np.sqrt(s * s + v) * np.exp(-((mu1 - mu2) ** 2) / (2 * (s * s + v)))
    return total


def test_mmd_of_two_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(3)
    bandwidths = [0.5, 2.0]
    x, y = rng.normal(0.0, 1.0, 2000), rng.normal(0.7, 1.3, 2000)
    expected = _gaussian_mmd2(0.0, 1.0, 0.7, 1.3, bandwidths)
    got = mm.mmd2(x, y, bandwidths)
    assert got == pytest.approx(expected, rel=MMD_RTOL), (got, expected)
    same = mm.mmd2(x, rng.normal(0.0, 1.0, 2000), bandwidths)
    assert abs(same) < 0.05 * expected, same


def test_map_mmd_is_zero_for_identical_maps_and_grows_with_noise():
    rng = np.random.default_rng(4)
    true = rng.lognormal(size=(3, 24, 24))
    assert np.all(np.abs(mm.map_mmd2(true, true, [0.05, 0.2], n_pixels=None)) < 5e-3)
    cal = mm.noise_calibration_mmd2(true, [0.05, 0.3], [0.05, 0.2], n_pixels=None)
    assert cal.shape == (3, 2) and np.all(cal[:, 1] > cal[:, 0]) and np.all(cal[:, 1] > 0.01), cal


def test_mass_bins_are_tertiles_by_default():
    m = np.random.default_rng(5).uniform(13.5, 15.4, 300)
    edges = mm.mass_bin_edges(m)
    bins = mm.assign_mass_bins(m, edges)
    assert np.all(np.bincount(bins) == 100)
    fixed = mm.assign_mass_bins(np.array([13.0, 14.0, 14.7, 15.5]), np.array([13.5, 14.05, 14.65, 15.38]))
    assert fixed.tolist() == [-1, 0, 2, -1]
    with pytest.raises(ValueError, match="increase"):
        mm.mass_bin_edges(m, [14.0, 13.0])
