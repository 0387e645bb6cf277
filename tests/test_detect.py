"""Detection of injected beta-model clusters with sep."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from clustersbi.detect import DetectionConfig, catalogue_from_h5, catalogue_to_h5, detect_sources
from clustersbi.xray.maps import observe

COMPLETENESS_MIN = 0.95
CR_RTOL = 0.05  # noise-free map: isolated sources, truncated profiles
HR_RTOL = 0.05
POISSON_MASK_MEDIAN_RTOL = 0.05  # measured CR vs injected CR inside the same mask (bias only)
ISOPHOTAL_LOSS_MAX = 0.25  # at 10 ks, wings below the 1.5 sigma isophote carry ~10% of the flux
POSITION_ATOL_PIX = 0.5
CR_CUT = 0.02
PIXEL_ARCMIN = 1.0


def beta_model_image(n_pix, x0, y0, rc_pix, r_trunc_pix, beta=2.0 / 3.0, sub=5):
    """Pixel-integrated (sub x sub supersampled) beta-model surface brightness, unit total."""
    off = (np.arange(sub) + 0.5) / sub - 0.5
    yy, xx = np.indices((n_pix, n_pix), dtype=float)
    img = np.zeros((n_pix, n_pix))
    for dy in off:
        for dx in off:
            r2 = (xx + dx - x0) ** 2 + (yy + dy - y0) ** 2
            s = (1.0 + r2 / rc_pix**2) ** (0.5 - 3.0 * beta)
            img += np.where(r2 <= r_trunc_pix**2, s, 0.0)
    return img / img.sum()


@pytest.fixture(scope="module")
def injected():
    rng = np.random.default_rng(42)
    n_side, spacing = 5, 40
    n_pix = n_side * spacing
    rows = []
    bands = np.zeros((2, n_pix, n_pix))
    for i in range(n_side):
        for j in range(n_side):
            x0 = spacing * (j + 0.5) + rng.uniform(-3, 3)
            y0 = spacing * (i + 0.5) + rng.uniform(-3, 3)
            cr = 10 ** rng.uniform(np.log10(0.012), np.log10(0.5))
            hr = rng.uniform(0.5, 1.3)
            rc = rng.uniform(0.4, 1.0)
            img = beta_model_image(n_pix, x0, y0, rc, 8.0 * rc + 3.0)
            bands[0] += cr / (1 + hr) * img
            bands[1] += cr * hr / (1 + hr) * img
            rows.append((x0, y0, cr, hr))
    truth = pd.DataFrame(rows, columns=["x", "y", "CR", "HR"])
    return bands, truth


def _match(cat, truth):
    out = []
    for _, t in truth.iterrows():
        d = np.hypot(cat["x_pix"] - t.x, cat["y_pix"] - t.y) if len(cat) else np.array([])
        out.append(int(np.argmin(d)) if len(d) and d.min() < 3 else -1)
    return np.array(out)


def test_noise_free_with_flat_background(injected):
    bands, truth = injected
    bkg = 1e-3  # cts/s/arcmin^2 per band
    maps = observe(bands, PIXEL_ARCMIN, background_cts_s_arcmin2=bkg)
    # no noise: any threshold above the background residual keeps the whole truncated profile
    cfg = DetectionConfig(threshold=1e-7, threshold_mode="absolute", subtract_background=True, background_box_pix=40, cr_cut_cts_s=0.0, z_mode="slab")
    cat = detect_sources(maps, PIXEL_ARCMIN, cfg, z_slab=0.3)
    idx = _match(cat, truth)
    above = truth["CR"].to_numpy() > CR_CUT
    completeness = np.mean(idx[above] >= 0)
    assert completeness >= COMPLETENESS_MIN, f"completeness {completeness}"
    m = idx >= 0
    got = cat.iloc[idx[m]]
    ratio = got["CR"].to_numpy() / truth["CR"].to_numpy()[m]
    assert np.all(np.abs(ratio - 1) < CR_RTOL), f"CR ratios {np.sort(ratio)}"
    hr_ratio = got["HR"].to_numpy() / truth["HR"].to_numpy()[m]
    assert np.all(np.abs(hr_ratio - 1) < HR_RTOL), f"HR ratios {np.sort(hr_ratio)}"
    dpos = np.hypot(got["x_pix"].to_numpy() - truth["x"].to_numpy()[m], got["y_pix"].to_numpy() - truth["y"].to_numpy()[m])
    assert np.all(dpos < POSITION_ATOL_PIX), f"position errors {dpos.max()}"
    assert np.all(got["z"] == 0.3)


def test_cr_cut_applied(injected):
    bands, truth = injected
    cfg = DetectionConfig(threshold=2e-5, cr_cut_cts_s=CR_CUT, z_mode="slab")
    cat = detect_sources(bands, PIXEL_ARCMIN, cfg, z_slab=0.2)
    assert (cat["CR"] > CR_CUT).all()
    n_expected = int((truth["CR"] > CR_CUT).sum())
    # noise-free, background-free (the paper's maps): every source above the cut, nothing else
    assert len(cat) == n_expected, f"{len(cat)} detections vs {n_expected} injected above the cut"


def test_poisson_background(injected):
    bands, truth = injected
    maps = observe(bands, PIXEL_ARCMIN, seed=7, poisson=True, exposure_s=1e4, background_cts_s_arcmin2=5e-4)
    cfg = DetectionConfig(threshold=1.5, threshold_mode="sigma", subtract_background=True, background_box_pix=40, min_area_pix=5, cr_cut_cts_s=0.0, z_mode="slab")
    cat, seg = detect_sources(maps, PIXEL_ARCMIN, cfg, z_slab=0.3, return_segmentation=True)
    idx = _match(cat, truth)
    above = truth["CR"].to_numpy() > CR_CUT
    completeness = np.mean(idx[above] >= 0)
    assert completeness >= COMPLETENESS_MIN, f"completeness {completeness}"
    m = (idx >= 0) & above
    # the catalogue keeps every segment here (cut 0), so row i is segment label i + 1
    in_mask = np.bincount(seg.ravel(), weights=bands.sum(axis=0).ravel(), minlength=len(cat) + 1)[1:]
    measured = cat["CR"].to_numpy()[idx[m]]
    ratio_mask = measured / in_mask[idx[m]]
    assert abs(np.median(ratio_mask) - 1) < POISSON_MASK_MEDIAN_RTOL, f"median CR / injected-in-mask {np.median(ratio_mask)}"
    loss = 1 - np.median(measured / truth["CR"].to_numpy()[m])
    assert loss < ISOPHOTAL_LOSS_MAX, f"median isophotal flux loss {loss}"


def test_emission_weighted_z_and_h5_roundtrip(injected, tmp_path):
    bands, _ = injected
    zmap = bands.sum(axis=0) * 0.37  # every pixel's emission at z = 0.37
    cfg = DetectionConfig(threshold=2e-5, z_mode="emission_weighted")
    cat = detect_sources(bands, PIXEL_ARCMIN, cfg, z_rate_sum=zmap)
    np.testing.assert_allclose(cat["z"], 0.37, rtol=1e-12)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        catalogue_to_h5(f.create_group("cat"), cat)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        back = catalogue_from_h5(f["cat"])
    pd.testing.assert_frame_equal(back, cat)


#: flux-weighted z of a painted source vs the hand value (float64 maps; z(chi) of the painter
#: vs astropy's inversion)
FLUX_WEIGHTED_Z_ATOL = 1e-6


def test_flux_weighted_z_of_an_injected_source_is_the_known_value():
    """One source spread over three cell layers along the line of sight with fluxes 0.1, 0.3 and
    0.6 cts/s, painted into a slab by the X-ray stage's painter: its detected z is the
    flux-weighted mean of the layers' redshifts (astropy), also with background and Poisson
    noise on the maps when the noise-free rate weights the z sums."""
    from astropy import cosmology as astropy_cosmology
    from astropy import units

    from clustersbi.constants import MPC_CM, NE_OVER_NH
    from clustersbi.xray import EmissionTable, make_sky_grid, paint_slab

    omega_m, h, cell, chi_lo, n_w, n_los = 0.3, 0.7, 2.0, 600.0, 16, 40
    lcdm = astropy_cosmology.FlatLambdaCDM(H0=100.0, Om0=omega_m, Tcmb0=0.0)
    table = EmissionTable(kt_kev=np.array([0.1, 100.0]), z=np.array([0.0, 1.0]), bands_kev=np.array([[0.5, 1.0], [1.0, 2.0]]),
                          rate=np.full((2, 2, 2), 0.5))
    layers, fluxes = np.array([5, 17, 30]), np.array([0.1, 0.3, 0.6])
    chi = chi_lo + cell * (layers + 0.5)
    z_layers = np.array([astropy_cosmology.z_at_value(lcdm.comoving_distance, c * units.Mpc).value for c in chi])
    ne = np.zeros((n_los, n_w, n_w))  # line of sight first
    v_cm3 = (cell * MPC_CM / h) ** 3
    ne[layers, 8, 8] = np.sqrt(fluxes * 4 * np.pi * (chi * MPC_CM / h) ** 2 * NE_OVER_NH / ((1 + z_layers) ** 3 * v_cm3))
    grid = make_sky_grid(1.0, 1.0)
    m = paint_slab(ne, np.full(ne.shape, 1e7), chi_lo, chi_lo + n_los * cell, n_w * cell, table, grid, omega_m, h, los_axis=0)
    z_true = float(np.sum(fluxes * z_layers) / fluxes.sum())
    cfg = DetectionConfig(threshold=1e-5, min_area_pix=1, cr_cut_cts_s=0.0, z_mode="emission_weighted")
    cat = detect_sources(m.rate_cts_s, grid.pixel_arcmin, cfg, z_rate_sum=m.z_rate_sum)
    assert len(cat) == 1 and cat["CR"].iloc[0] == pytest.approx(1.0, rel=1e-6), cat
    assert cat["z"].iloc[0] == pytest.approx(z_true, abs=FLUX_WEIGHTED_Z_ATOL), (cat["z"].iloc[0], z_true, z_layers)
    # noisy maps (background + Poisson): the noise-free rate weights the noise-free z sums
    noisy = observe(m.rate_cts_s, grid.pixel_arcmin, seed=3, poisson=True, exposure_s=1e5, background_cts_s_arcmin2=1e-4)
    cfg_noisy = DetectionConfig(threshold=5.0, threshold_mode="sigma", subtract_background=True, background_box_pix=20,
                                min_area_pix=3, cr_cut_cts_s=0.1)
    cat = detect_sources(noisy, grid.pixel_arcmin, cfg_noisy, z_rate_sum=m.z_rate_sum, z_weight_cts_s=m.rate_cts_s.sum(axis=0))
    assert len(cat) == 1, cat
    assert cat["z"].iloc[0] == pytest.approx(z_true, abs=FLUX_WEIGHTED_Z_ATOL), (cat["z"].iloc[0], z_true)
    # the noisy map itself as the weight counts background photons at z = 0 (here ~0.008 low)
    biased = detect_sources(noisy, grid.pixel_arcmin, cfg_noisy, z_rate_sum=m.z_rate_sum)["z"].iloc[0]
    assert abs(biased - z_true) > 100 * FLUX_WEIGHTED_Z_ATOL, (biased, z_true)
