"""The X-ray stage (clustersbi.stages.xray) on gas files written here in the contract layout.

References: the count rate of uniform gas in the field from a direct integral over the
lightcone with astropy distances; injected single-cell clumps of known count rate and sky
position; XOD counts by direct counting of catalogue rows. The xod stage alone is tested in
test_stage_xod.py.
"""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy import cosmology as astropy_cosmology
from scipy import integrate

from clustersbi.compress.data import load_training_set
from clustersbi.config import load_schema, validate_config
from clustersbi.design import ChunkDesign, DesignSpec, Prior, SeedStream, SimulationRecord, chunk_design, derive_seed
from clustersbi.detect import catalogue_from_h5
from clustersbi.io import ChunkFile
from clustersbi.lightcone import Slab, slab_attributes
from clustersbi.products import read_emission_table
from clustersbi.stages.xod import gather_xod, xod_chunk
from clustersbi.stages.xray import detect_chunk, emission_table_file, xray_maps_chunk
from clustersbi.xray import observe

#: uniform gas: painted field flux vs the lightcone integral (midpoint rule over layers,
#: flat-plane layers vs the sphere: ~1e-4 for a 1 deg field)
FLUX_RTOL = 2e-3
#: isolated single-cell clumps: detected CR vs injected CR (whole footprint above threshold)
CLUMP_CR_RTOL = 0.01
#: detected centroid vs the clump cell's projected centre [pixels] (a cell spans ~4-6 pixels)
POSITION_TOL_PIX = 1.0
#: catalogue z (emission-weighted, the default) vs the clump cell's redshift (astropy's z(chi)
#: interpolated on a 5e-5 grid vs the painter's)
CLUMP_Z_ATOL = 1e-5
#: z_mode slab: catalogue z vs the nominal slab mid redshift (painted depth is whole cells)
SLAB_Z_ATOL = 2e-4
#: HR of a single-temperature clump vs the table's band ratio at its redshift
HR_RTOL = 1e-3
#: Poisson realisation: total counts within this many standard deviations of the expectation
POISSON_NSIGMA = 5.0
#: noisy maps redrawn here from the stored (float32) noise-free maps with the documented seeds:
#: fraction of pixels that must come out identical (a float32 rounding can move a rare draw)
NOISE_REDRAW_MATCH = 0.999

OMEGA_M, H = 0.3, 0.7
Z_MIN, Z_MAX, N_SLABS, FOV_DEG2, CELL_MPC_H = 0.1, 0.3, 2, 1.0, 1.0
MPC_CM = 3.0856775814913673e24
NE_OVER_NH = 1.0 + 0.24 / (2.0 * 0.76)  # fully ionised primordial H + He, X_H = 0.76 (clustersbi.constants)
K_B_KEV_PER_K = 8.617333262e-8
PARAM_NAMES = ["Omega_m", "sigma_8", "A_SN1", "A_SN2", "A_AGN1", "A_AGN2"]
N_LIGHTCONES = 2
#: injected clumps per slab: (transverse offset in units of the slab's field half-width at the
#: cell's distance, x and y; target count rate [cts/s] in all bands)
CLUMPS = [((-0.5, -0.4), 0.05), ((0.45, 0.5), 0.3), ((0.1, -0.3), 1.5)]
CLUMP_KT_KEV = 3.0


def astropy_lcdm():
    return astropy_cosmology.FlatLambdaCDM(H0=100.0, Om0=OMEGA_M, Tcmb0=0.0)


def slab_geometry():
    """Slabs of equal comoving depth over [Z_MIN, Z_MAX] (astropy distances, Mpc/h)."""
    cosmo = astropy_lcdm()
    chi_min, chi_max = cosmo.comoving_distance([Z_MIN, Z_MAX]).value
    edges = np.linspace(chi_min, chi_max, N_SLABS + 1)
    width = 2.0 * chi_max * np.tan(0.5 * np.deg2rad(np.sqrt(FOV_DEG2)))
    n_w = int(np.ceil(width / CELL_MPC_H))
    n_d = int(np.ceil((edges[1] - edges[0]) / CELL_MPC_H))
    z_grid = np.linspace(0.0, 1.0, 20001)
    chi_grid = cosmo.comoving_distance(z_grid).value
    z_of = lambda chi: np.interp(chi, chi_grid, z_grid)  # noqa: E731
    return [
        dict(index=s, chi_lo=edges[s], chi_hi=edges[s + 1], z_lo=float(z_of(edges[s])), z_hi=float(z_of(edges[s + 1])),
             z_centre=float(z_of(0.5 * (edges[s] + edges[s + 1]))), depth_mpc_h=edges[1] - edges[0], width_mpc_h=width,
             n_w=n_w, n_d=n_d)
        for s in range(N_SLABS)
    ], z_of


def clump_cells(geom: dict, shift: int = 0):
    """(i, j, k) cell indices and chi of each clump of a slab (line of sight = last axis)."""
    out = []
    for c, ((fx, fy), _) in enumerate(CLUMPS):
        k = int(geom["n_d"] * (0.2 + 0.3 * c)) + shift
        chi = geom["chi_lo"] + (k + 0.5) * CELL_MPC_H
        half = chi * np.tan(0.5 * np.deg2rad(np.sqrt(FOV_DEG2)))
        centre = 0.5 * geom["n_w"] * CELL_MPC_H
        i = int((centre + fx * half) // CELL_MPC_H)
        j = int((centre + fy * half) // CELL_MPC_H)
        out.append((i, j, k, chi))
    return out


def clump_density(table, cr_cts_s: float, chi: float, z: float) -> float:
    """Comoving n_e [cm^-3] of one cell emitting ``cr_cts_s`` (all bands) at (chi, z)."""
    v_cm3 = (CELL_MPC_H * MPC_CM / H) ** 3
    d_cm = chi * MPC_CM / H
    r = table(CLUMP_KT_KEV, z).sum()
    em = cr_cts_s * 4.0 * np.pi * d_cm**2 / r
    return float(np.sqrt(em * NE_OVER_NH / ((1 + z) ** 3 * v_cm3)))


def write_gas_file(path, table, design_params):
    """Two simulations in the gas contract layout (the paint_gas stage's: simulation record,
    omega_m and h on ``sim_``, the slab geometry of clustersbi.lightcone.slab_attributes on each
    ``slab_``), N_LIGHTCONES lightcones each: simulation 0 = uniform 2 keV gas, 1 = cold faint
    gas with hot single-cell clumps. Returns the slab geometry and the injections."""
    geoms, z_of = slab_geometry()
    injected = []
    with ChunkFile.create(path) as f:
        for pos, record in enumerate(ChunkDesign.from_params(design_params, with_inner=False)):
            sim = f.add_simulation(record, omega_m=OMEGA_M, h=H)
            for lc in range(N_LIGHTCONES):
                g_lc = ChunkFile.add_lightcone(sim, lc)
                for g in geoms:
                    shape = (g["n_w"], g["n_w"], g["n_d"])
                    if pos == 0:
                        ne = np.full(shape, 1e-5, np.float32)
                        t = np.full(shape, 2.0 / K_B_KEV_PER_K, np.float32)
                    else:
                        ne = np.full(shape, 1e-7, np.float32)
                        t = np.full(shape, 1e5, np.float32)  # below the table: no X-rays
                        for (i, j, k, chi), (_, cr) in zip(clump_cells(g, shift=3 * lc), CLUMPS):
                            ne[i, j, k] = clump_density(table, cr, chi, float(z_of(chi)))
                            t[i, j, k] = CLUMP_KT_KEV / K_B_KEV_PER_K
                            injected.append(dict(sim=record.index, lc=lc, slab=g["index"], i=i, j=j, chi=chi, z=float(z_of(chi)), cr=cr))
                    slab = Slab(**{k: g[k] for k in Slab.__dataclass_fields__})
                    attrs = slab_attributes(slab, shape, np.array(shape, float) * CELL_MPC_H, CELL_MPC_H)
                    g_slab = ChunkFile.add_slab(g_lc, g["index"], **attrs)
                    g_slab["ne_cm3"], g_slab["t_k"] = ne, t
    return geoms, pd.DataFrame(injected)


@pytest.fixture(scope="module")
def config(repo):
    base = {
        "analysis": "ldl",
        "design": {"n_simulations": 2, "chunk_size": 2},
        "priors": {"cosmology": [{"name": "Omega_m", "label": "x", "distribution": "uniform", "low": 0.1, "high": 0.5}]},
        "cosmology": {},
        "xray": {"table": {"n_kt": 24}, "pixel_arcmin": 1.0},
    }
    return validate_config(base, load_schema(repo / "workflow" / "schemas" / "config.schema.yaml"))


@pytest.fixture(scope="module")
def design():
    """The chunk design as the rule params carry it (two simulations, one chunk)."""
    spec = DesignSpec(
        outer=(Prior("Omega_m", r"\Omega_m", "uniform", 0.2, 0.4), Prior("sigma_8", r"\sigma_8", "uniform", 0.7, 0.9),
               *(Prior(n, n, "loguniform", 0.25, 4.0) for n in PARAM_NAMES[2:])),
        inner=(), n_simulations=2, n_inner=1, chunk_size=2, seed=7, split_fractions=(0.5, 0.5, 0.0, 0.0),
    )
    return chunk_design(spec, 0)


def xod_params(config):
    """The xod stage's params (workflow rules/common.smk xod_binning)."""
    return {"bins": config["xod"]["bins"], "marginal": config["xod"]["marginal"]}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, config, design):
    """emission table -> gas file -> maps -> catalogues -> XODs, noise-free (the paper's setting)."""
    d = tmp_path_factory.mktemp("xray_chain")
    emission_table_file(config["xray"], Z_MAX, d / "table.h5")
    table = read_emission_table(d / "table.h5")
    geoms, injected = write_gas_file(d / "gas.h5", table, design)
    xray_maps_chunk(d / "gas.h5", d / "table.h5", config["xray"], config["seed"], d / "maps.h5",
                    design_params=design, fov_deg2=FOV_DEG2)
    detect_chunk(d / "maps.h5", config["detection"], d / "catalogs.h5")
    xod_chunk(d / "catalogs.h5", xod_params(config), d / "xod.h5", n_lightcones=N_LIGHTCONES)
    return d, table, geoms, injected


def test_uniform_gas_flux_matches_lightcone_integral(chain):
    d, table, geoms, _ = chain
    cosmo = astropy_lcdm()
    with h5py.File(d / "maps.h5", "r") as f:
        pixel, n_pix = f.attrs["pixel_arcmin"], int(f.attrs["n_pix"])
        g = f["sim_000000/lc_00"]
        summed, per_slab = g["summed_cts_s"][()], g["rate_cts_s"][()]
    tan_half = np.tan(0.5 * np.deg2rad(n_pix * pixel / 60.0))
    solid_angle = 4.0 * np.arcsin(tan_half**2 / (1.0 + tan_half**2))  # square tangent-plane field [sr]
    ne, kt = 1e-5, 2.0
    expected = np.zeros(2)
    for g in geoms:
        n_keep = min(g["n_d"], round(g["depth_mpc_h"] / CELL_MPC_H))
        z_lo = g["z_lo"]
        z_hi = astropy_cosmology.z_at_value(cosmo.comoving_distance, (g["chi_lo"] + n_keep * CELL_MPC_H) * cosmo.comoving_distance(1).unit).value
        for b in range(2):
            # CR = Omega/(4 pi) int n_e^2 (1+z)^3 / (n_e/n_H) r_b(T, z) dchi, dchi = (c/H0) dz / E(z)
            integrand = lambda z: (1 + z) ** 3 * table(kt, z)[b] * cosmo.hubble_distance.value / cosmo.efunc(z)  # noqa: E731
            expected[b] += solid_angle / (4 * np.pi) * ne**2 / NE_OVER_NH * (MPC_CM / H) * integrate.quad(integrand, z_lo, z_hi, epsabs=0, epsrel=1e-8)[0]
    got = summed.reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=FLUX_RTOL, err_msg=f"field flux {got} vs lightcone integral {expected}")
    np.testing.assert_allclose(per_slab.sum(axis=0), summed, rtol=1e-5, err_msg="summed map != sum of slab maps")


def test_injected_clumps_detected_with_their_count_rate(chain):
    d, table, geoms, injected = chain
    with h5py.File(d / "catalogs.h5", "r") as f:
        n_pix = int(f.attrs["n_pix"])
        pixel_rad = np.deg2rad(float(f.attrs["pixel_arcmin"]) / 60.0)
        # uniform gas above the absolute threshold everywhere: one segment per slab, the whole map
        uniform = catalogue_from_h5(f["sim_000000/lc_00"])
    with h5py.File(d / "maps.h5", "r") as f:
        slab_totals = f["sim_000000/lc_00/rate_cts_s"][()].astype(np.float64).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(uniform["CR"], slab_totals, rtol=1e-5, err_msg="uniform slab: segment CR != map total")
    with h5py.File(d / "catalogs.h5", "r") as f:
        cats = {lc: catalogue_from_h5(f[f"sim_000001/lc_{lc:02d}"]) for lc in range(N_LIGHTCONES)}
    for _, inj in injected.iterrows():
        g = geoms[int(inj.slab)]
        centre = 0.5 * g["n_w"] * CELL_MPC_H
        # projected cell centre in pixel coordinates (0 = centre of the first pixel)
        px = np.arctan(((inj.i + 0.5) * CELL_MPC_H - centre) / inj.chi) / pixel_rad + 0.5 * n_pix - 0.5
        py = np.arctan(((inj.j + 0.5) * CELL_MPC_H - centre) / inj.chi) / pixel_rad + 0.5 * n_pix - 0.5
        cat = cats[int(inj.lc)]
        cat = cat[cat["slab"] == inj.slab]
        sep_pix = np.hypot(cat["x_pix"] - px, cat["y_pix"] - py)
        assert len(cat) and sep_pix.min() < POSITION_TOL_PIX, f"clump {dict(inj)} not found (nearest {sep_pix.min() if len(cat) else None} pix)"
        row = cat.iloc[int(np.argmin(sep_pix))]
        assert abs(row["CR"] / inj.cr - 1) < CLUMP_CR_RTOL, f"CR {row['CR']:.5g} vs injected {inj.cr}"
        # a single-cell clump: its emission-weighted z is its cell's
        assert row["z"] == pytest.approx(inj.z, abs=CLUMP_Z_ATOL), (row["z"], inj.z)
        rates = table(CLUMP_KT_KEV, inj.z)
        assert abs(row["HR"] / (rates[1] / rates[0]) - 1) < HR_RTOL, f"HR {row['HR']:.5g} vs {rates[1] / rates[0]:.5g}"
    n_det = sum(len(c) for c in cats.values())
    assert n_det == len(injected), f"{n_det} detections for {len(injected)} injected clumps"


def test_slab_z_mode_gives_the_slab_mid_redshift(chain, config, tmp_path):
    d, _, geoms, _ = chain
    detect_chunk(d / "maps.h5", {**config["detection"], "z_mode": "slab"}, tmp_path / "catalogs.h5")
    with h5py.File(tmp_path / "catalogs.h5", "r") as f:
        cat = catalogue_from_h5(f["sim_000001/lc_00"])
    assert len(cat)
    for _, row in cat.iterrows():
        g = geoms[int(row["slab"])]
        # slab mid redshift of the painted depth (whole cells: up to half a cell from the nominal)
        assert row["z"] == pytest.approx(0.5 * (g["z_lo"] + g["z_hi"]), abs=SLAB_Z_ATOL), row["z"]


def test_xod_counts_equal_catalogue_rows_in_range(chain, config):
    d, _, _, _ = chain
    with h5py.File(d / "catalogs.h5", "r") as f:
        rows = pd.concat([catalogue_from_h5(f[f"sim_000001/lc_{lc:02d}"]) for lc in range(N_LIGHTCONES)])
    b = config["xod"]["bins"]
    in_range = (
        (np.log10(rows["CR"]) >= b["log_cr"]["low"]) & (np.log10(rows["CR"]) <= b["log_cr"]["high"])
        & (rows["HR"] >= b["hr"]["low"]) & (rows["HR"] <= b["hr"]["high"])
        & (rows["z"] >= b["z"]["low"]) & (rows["z"] <= b["z"]["high"])
    )
    assert 0 < in_range.sum() < len(rows), "the injection should put some sources out of range"
    with h5py.File(d / "xod.h5", "r") as f:
        xod = f["sim_000001/xod"][()]
        assert f["sim_000001"].attrs["n_lightcones"] == N_LIGHTCONES
        np.testing.assert_array_equal(f["sim_000001/x"][()], xod)  # marginal 'none'
    assert xod.shape == (b["log_cr"]["n"], b["hr"]["n"], b["z"]["n"])
    assert xod.sum() == in_range.sum(), f"XOD holds {xod.sum()} sources, {in_range.sum()} catalogue rows in range"


def test_records_reach_the_training_set(chain, design, tmp_path):
    """The simulation records travel gas -> maps -> catalogues -> XOD -> training set."""
    d, _, _, _ = chain
    gather_xod([d / "xod.h5"], tmp_path / "training" / "xod.h5")
    ts = load_training_set(tmp_path / "training" / "xod.h5")
    np.testing.assert_allclose(ts.theta, design["outer"], rtol=1e-12)
    assert ts.param_names == PARAM_NAMES and list(ts.split) == design["splits"]
    for name in ("maps.h5", "catalogs.h5", "xod.h5"):
        with ChunkFile.open(d / name) as f:
            stored = [SimulationRecord.from_attrs(attrs) for attrs, _ in f.simulations()]
        assert stored == list(ChunkDesign.from_params(design)), name
    with h5py.File(d / "xod.h5", "r") as f:
        np.testing.assert_array_equal(ts.x[1], f["sim_000001/x"][()])
    assert ts.x.shape == (2, 8, 8, 8)


def test_stale_gas_file_is_rejected(chain, config, design, tmp_path):
    d, _, _, _ = chain
    other = copy.deepcopy(design)
    other["outer"][1][0] += 0.05
    with pytest.raises(ValueError, match="simulation 1 has param_Omega_m .* stale"):
        xray_maps_chunk(d / "gas.h5", d / "table.h5", config["xray"], config["seed"], tmp_path / "m.h5", design_params=other)
    assert not (tmp_path / "m.h5").exists()


def test_realistic_maps_poisson_noise_is_seeded_and_unbiased(chain, config, design, tmp_path):
    d, _, _, _ = chain
    xray = copy.deepcopy(config["xray"])
    xray["realistic"].update(poisson=True, background=True, psf=True)
    xray_maps_chunk(d / "gas.h5", d / "table.h5", xray, config["seed"], tmp_path / "a.h5", design_params=design,
                    fov_deg2=FOV_DEG2)
    with h5py.File(tmp_path / "a.h5", "r") as a, h5py.File(d / "maps.h5", "r") as clean:
        noisy = a["sim_000001/lc_00/summed_cts_s"][()].astype(np.float64)
        base = clean["sim_000001/lc_00/summed_cts_s"][()].astype(np.float64)
        n_pix = base.shape[-1]
        exposure = xray["realistic"]["exposure_s"]
        bkg = np.asarray(xray["realistic"]["background_cts_s_arcmin2"]) * xray["pixel_arcmin"] ** 2 * n_pix**2
        expected_counts = (base.reshape(2, -1).sum(axis=1) + bkg) * exposure
        counts = noisy.reshape(2, -1).sum(axis=1) * exposure
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-2, err_msg="noisy maps are not whole counts")
        z = (counts - expected_counts) / np.sqrt(expected_counts)
        assert np.all(np.abs(z) < POISSON_NSIGMA), f"total counts {counts} vs expected {expected_counts} ({z} sigma)"
        assert not np.array_equal(a["sim_000001/lc_00/rate_cts_s"][0], a["sim_000001/lc_00/rate_cts_s"][1])
        # the weights of the z sums stay noise-free: the clean all-band rate per slab
        np.testing.assert_allclose(a["sim_000001/lc_00/z_weight_cts_s"][()], clean["sim_000001/lc_00/rate_cts_s"][()].sum(axis=1),
                                   rtol=1e-6, atol=0.0)
        assert "z_weight_cts_s" not in clean["sim_000001/lc_00"]
        # the draws are the documented streams, derive_seed(seed, XRAY_NOISE, index, lightcone, slab)
        # with slab = n_slabs for the summed map: redrawn here from the noise-free maps, so the
        # noise is a pure function of the seed and the indices (a rerun gives the same maps)
        effects = dict(poisson=True, exposure_s=exposure, background_cts_s_arcmin2=xray["realistic"]["background_cts_s_arcmin2"],
                       psf_fwhm_arcsec=xray["realistic"]["psf_fwhm_arcsec"])
        for lc in range(N_LIGHTCONES):
            clean_slabs = clean[f"sim_000001/lc_{lc:02d}/rate_cts_s"][()].astype(np.float64)
            inputs = [*clean_slabs, clean[f"sim_000001/lc_{lc:02d}/summed_cts_s"][()].astype(np.float64)]
            stored = [*a[f"sim_000001/lc_{lc:02d}/rate_cts_s"][()], a[f"sim_000001/lc_{lc:02d}/summed_cts_s"][()]]
            for s, (rate, got) in enumerate(zip(inputs, stored)):
                redrawn = observe(rate, xray["pixel_arcmin"], seed=derive_seed(config["seed"], SeedStream.XRAY_NOISE, 1, lc, s), **effects)
                match = np.mean(np.isclose(redrawn, got, rtol=1e-6, atol=0.0))
                assert match > NOISE_REDRAW_MATCH, f"lightcone {lc}, slab {s}: {match:.4f} of the pixels redrawn with the XRAY_NOISE seed"
                other = observe(rate, xray["pixel_arcmin"], seed=derive_seed(config["seed"], SeedStream.SLAB, 1, lc, s), **effects)
                assert np.mean(np.isclose(other, got, rtol=1e-6, atol=0.0)) < 0.5, "another stream's seed gives the same noise"
