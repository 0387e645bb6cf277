"""XOD histogram counts against explicit counting of catalogue sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clustersbi.xod import XodBins, load_catalogue_csv, xod_from_csv, xod_histogram, xod_marginal


def _catalogue(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"CR": 10 ** rng.uniform(-2.2, 0.3, n), "HR": rng.uniform(0.0, 2.0, n), "z": rng.uniform(0.05, 0.6, n)})


def _in_range(cat, bins):
    lcr = np.log10(cat["CR"])
    return int(
        ((lcr >= bins.log_cr[0]) & (lcr <= bins.log_cr[-1]) & (cat["HR"] >= bins.hr[0]) & (cat["HR"] <= bins.hr[-1]) & (cat["z"] >= bins.z[0]) & (cat["z"] <= bins.z[-1])).sum()
    )


def test_xod_counts_equal_sources_in_range():
    bins = XodBins.linear()
    cats = [_catalogue(400, s) for s in range(3)]  # three lightcones
    xod = xod_histogram(cats, bins)
    assert xod.shape == (8, 8, 8)
    expected = sum(_in_range(c, bins) for c in cats)
    assert xod.sum() == expected, f"{xod.sum()} vs {expected}"
    # one bin checked by hand
    c = pd.concat(cats)
    lcr = np.log10(c["CR"])
    sel = (lcr >= bins.log_cr[2]) & (lcr < bins.log_cr[3]) & (c["HR"] >= bins.hr[1]) & (c["HR"] < bins.hr[2]) & (c["z"] >= bins.z[4]) & (c["z"] < bins.z[5])
    assert xod[2, 1, 4] == sel.sum()


def test_marginals():
    bins = XodBins.linear()
    xod = xod_histogram(_catalogue(500, 9), bins)
    assert xod_marginal(xod, "cr_hr").shape == (8, 8)
    assert xod_marginal(xod, "z_cr").shape == (8, 8)
    np.testing.assert_array_equal(xod_marginal(xod, "z_cr")[3], xod[:, :, 3].sum(axis=1))
    np.testing.assert_array_equal(xod_marginal(xod, "z"), xod.sum(axis=(0, 1)))
    with pytest.raises(ValueError, match="marginal"):
        xod_marginal(xod, "hr")


def test_csv_loader_builds_same_xod(tmp_path):
    bins = XodBins.linear()
    cat = _catalogue(300, 4)
    cat.assign(extra=1).to_csv(tmp_path / "survey.csv", index=False)
    np.testing.assert_array_equal(xod_from_csv(tmp_path / "survey.csv", bins), xod_histogram(cat, bins))
    cat.drop(columns="HR").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="HR"):
        load_catalogue_csv(tmp_path / "bad.csv")


def test_csv_loader_forms_cr_and_hr_from_band_columns(tmp_path):
    """A catalogue with one count-rate column per band (as the detection catalogues): CR is
    their sum, HR the configured ratio; values come back bit for bit."""
    rng = np.random.default_rng(3)
    soft, hard = 10 ** rng.uniform(-2.5, 0.0, 200), 10 ** rng.uniform(-2.5, 0.0, 200)
    z = rng.uniform(0.05, 0.6, 200)
    pd.DataFrame({"CR_0.5-1": soft, "CR_1-2": hard, "z": z, "ra_deg": 1.0}).to_csv(tmp_path / "bands.csv", index=False)
    cat = load_catalogue_csv(tmp_path / "bands.csv")
    np.testing.assert_array_equal(cat["CR"], soft + hard)
    np.testing.assert_array_equal(cat["HR"], hard / soft)
    np.testing.assert_array_equal(cat["z"], z)
    bins = XodBins.linear()
    expected = xod_histogram(pd.DataFrame({"CR": soft + hard, "HR": hard / soft, "z": z}), bins)
    np.testing.assert_array_equal(xod_from_csv(tmp_path / "bands.csv", bins), expected)
    # other bands and HR the other way round, as xray.bands_kev and detection.hr_bands say
    pd.DataFrame({"CR_0.3-1": soft, "CR_1-3": hard, "z": z}).to_csv(tmp_path / "other.csv", index=False)
    cat = load_catalogue_csv(tmp_path / "other.csv", bands_kev=((0.3, 1.0), (1.0, 3.0)), hr_bands=(0, 1))
    np.testing.assert_array_equal(cat["HR"], soft / hard)
    with pytest.raises(ValueError, match="CR_0.5-1, CR_1-2"):
        load_catalogue_csv(tmp_path / "other.csv")


def test_nonfinite_rows_are_not_counted():
    bins = XodBins.linear()
    cat = pd.DataFrame({"CR": [0.1, 0.1, -1.0], "HR": [0.8, np.nan, 0.8], "z": [0.3, 0.3, 0.3]})
    assert xod_histogram(cat, bins).sum() == 1


def test_bins_from_config_spec_and_attrs():
    spec = {"log_cr": {"low": -2.0, "high": 0.5, "n": 5}, "hr": {"low": 0.1, "high": 2.0, "n": 4}, "z": {"low": 0.0, "high": 1.0, "n": 10}}
    bins = XodBins.from_spec(spec)
    np.testing.assert_array_equal(bins.log_cr, np.linspace(-2.0, 0.5, 6))
    np.testing.assert_array_equal(bins.hr, np.linspace(0.1, 2.0, 5))
    np.testing.assert_array_equal(bins.z, np.linspace(0.0, 1.0, 11))
    back = XodBins.from_attrs(bins.to_attrs())
    for axis in ("log_cr", "hr", "z"):
        np.testing.assert_array_equal(getattr(back, axis), getattr(bins, axis))
    with pytest.raises(ValueError, match="xod.bins.hr"):
        XodBins.from_spec({**spec, "hr": {"low": 1.0, "high": 1.0, "n": 4}})


# --------------------------------------------------------------------------- z axis geometry
#: per z bin, |counted - expected| within this many sqrt(expected): a population with one
#: source per lattice column of the box is sub-Poisson, so 3.5 is loose for the continuous
#: redshifts (measured max 1.8 over the grid) and far below the slab-mode excesses (6-8)
Z_MARGINAL_NSIGMA = 3.5
#: the test population's cell [Mpc/h] (the XOD preset's 0.39 would paint ~2,700 layers per
#: lightcone; the geometry, not the resolution, is under test), lattice spacing [cells], pixel
#: [arcmin] (a far cell, ~4.7 arcmin, spans > 1 pixel)
POP_CELL_MPC_H, POP_SPACING, POP_PIXEL_ARCMIN, POP_H = 2.0, 4, 2.0, 0.7


class _GasSlab:
    """A slab group of the gas contract (attributes, ``ne_cm3``, ``t_k``) held in memory."""

    def __init__(self, attrs, ne_cm3, t_k):
        self.attrs, self._data = attrs, {"ne_cm3": ne_cm3, "t_k": t_k}

    def __getitem__(self, key):
        return self._data[key]


def _uniform_volume_population(omega_m, lightcone, seed):
    """Point sources uniform in comoving volume, painted in the gas layout of each slab box.

    Each slab box (:func:`clustersbi.lightcone.lightcone_slab_mesh`) holds one single-cell source
    per column of a randomly offset lattice (``POP_SPACING`` cells; sources in one slab never
    overlap in projection), at a uniformly drawn layer: uniform in the box, so the sources inside
    the field are uniform in the field's comoving volume. Each has the same flux, 1 cts/s
    (0.5 per band: HR = 1) under the unit emission table of :func:`_unit_table`.
    """
    from clustersbi.constants import MPC_CM, NE_OVER_NH
    from clustersbi.cosmology import redshift_at_comoving_distance
    from clustersbi.lightcone import lightcone_slab_geometry, lightcone_slab_mesh, slab_attributes

    rng = np.random.default_rng(seed)
    slabs = lightcone_slab_geometry(lightcone["z_min"], lightcone["z_max"], lightcone["n_slabs"], lightcone["fov_deg2"], omega_m)
    cell = POP_CELL_MPC_H
    groups = []
    for slab in slabs:
        shape = lightcone_slab_mesh([slab], cell)
        n_w, _, n_d = shape
        n_keep = min(n_d, round(slab.depth_mpc_h / cell))  # the layers the X-ray stage paints
        ox, oy = rng.integers(0, POP_SPACING, 2)
        ii, jj = np.meshgrid(np.arange(ox, n_w, POP_SPACING), np.arange(oy, n_w, POP_SPACING), indexing="ij")
        kk = rng.integers(0, n_keep, ii.shape)
        chi = slab.chi_lo + cell * (kk + 0.5)
        z = redshift_at_comoving_distance(chi, omega_m)
        # CR = n_e^2 (1+z)^3 V / (n_e/n_H) r / (4 pi chi^2) = 1 cts/s with r = 1 (both bands)
        v_cm3 = (cell * MPC_CM / POP_H) ** 3
        ne = np.zeros(shape)
        ne[ii, jj, kk] = np.sqrt(4.0 * np.pi * (chi * MPC_CM / POP_H) ** 2 * NE_OVER_NH / ((1.0 + z) ** 3 * v_cm3))
        attrs = slab_attributes(slab, shape, np.array(shape, float) * cell, cell)
        groups.append(_GasSlab(attrs, ne, np.full(shape, 1e7)))
    return slabs, groups


def _unit_table():
    """r_b = 0.5 cts s^-1 cm^5 in each of two bands at every (T, z)."""
    from clustersbi.xray import EmissionTable

    return EmissionTable(kt_kev=np.array([0.1, 100.0]), z=np.array([0.0, 1.0]), bands_kev=np.array([[0.5, 1.0], [1.0, 2.0]]),
                         rate=np.full((2, 2, 2), 0.5))


def test_z_marginal_of_a_uniform_volume_population_has_no_geometric_excess(repo):
    """The lightcone geometry and the z bins of config/xod.yaml (12 slabs, 10 bins over
    0.1 < z < 0.5): sources uniform in comoving volume, painted into the slab boxes by the X-ray
    stage and detected; binned in z, their XOD z-marginal must match the comoving volume of the
    field per bin, over the whole Omega_m prior. With slab mid redshifts some bins collect two
    slabs and others one, and which ones changes with Omega_m: that mode must fail here."""
    import yaml

    from clustersbi.cosmology import comoving_distance_mpc_h
    from clustersbi.detect import DetectionConfig, detect_lightcone
    from clustersbi.stages.xray import paint_gas_lightcone
    from clustersbi.xray import make_sky_grid

    preset = yaml.safe_load((repo / "config" / "xod.yaml").read_text())
    lightcone = preset["simulation"]["lightcone"]
    bins = XodBins.from_spec(preset["xod"]["bins"])
    prior = next(p for p in preset["priors"]["cosmology"] if p["name"] == "Omega_m")
    grid = make_sky_grid(lightcone["fov_deg2"], POP_PIXEL_ARCMIN)
    table = _unit_table()
    # the CR cut at half a source's flux keeps a source cut by the field edge iff its centre is in it
    detection = dict(threshold=1e-6, min_area_pix=1, cr_cut_cts_s=0.5, filter=False)
    worst = {"emission_weighted": 0.0, "slab": 0.0}
    for i, omega_m in enumerate(np.linspace(prior["low"], prior["high"], 7)):
        slabs, groups = _uniform_volume_population(omega_m, lightcone, seed=100 + i)
        maps = paint_gas_lightcone(groups, table, grid, omega_m, POP_H)
        # expected: source density 1 / (lattice column area x slab depth) times the field's
        # comoving volume per z bin, (2 tan(side / 2))^2 (chi_b^3 - chi_a^3) / 3
        tan_half = np.tan(np.deg2rad(grid.side_deg / 2.0))
        volume = (2.0 * tan_half) ** 2 * np.diff(comoving_distance_mpc_h(bins.z, omega_m) ** 3) / 3.0
        expected = volume / ((POP_SPACING * POP_CELL_MPC_H) ** 2 * slabs[0].depth_mpc_h)
        for mode in worst:
            cat = detect_lightcone(maps, grid.pixel_arcmin, DetectionConfig(**detection, z_mode=mode))
            counted = xod_marginal(xod_histogram(cat, bins), "z")
            pull = (counted - expected) / np.sqrt(expected)
            worst[mode] = max(worst[mode], float(np.abs(pull).max()))
            if mode == "emission_weighted":
                assert np.all(np.abs(pull) < Z_MARGINAL_NSIGMA), (
                    f"Omega_m {omega_m:.3f}: z-marginal {counted.astype(int).tolist()} vs comoving volume "
                    f"{np.round(expected, 1).tolist()} (pulls {np.round(pull, 2).tolist()})")
    assert worst["slab"] > 1.5 * Z_MARGINAL_NSIGMA, f"slab mid redshifts should show the geometric excess: worst pull {worst['slab']:.2f}"
