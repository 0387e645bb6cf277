"""X-ray emission, response and projection against references nobody here wrote."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from scipy import integrate

from clustersbi.cosmology import comoving_distance_mpc_h
from clustersbi.xray import emission, maps, response
from clustersbi.xray.emission import (
    BremsstrahlungBackend,
    EmissionTable,
    bremsstrahlung_emissivity_erg_s_cm3_hz,
    compute_emission_table,
    gaunt_ff_born,
    observed_band_rates,
)

RL_514_COEFF = 6.8e-38  # Rybicki & Lightman eq. 5.14b, as printed (2 significant digits)
RL_515_COEFF = 1.4e-27  # R&L eq. 5.15b, frequency-integrated, as printed
RL_RTOL = 0.01  # the printed coefficients are rounded to 2 digits (6.84e-38, 1.43e-27 exact)
RL_515_RTOL = 0.03
GAUNT_SMALL_U_RTOL = 1e-3
GAUNT_LARGE_U_RTOL = 0.01  # next asymptotic term ~ 1/(4u)
FOLD_RTOL = 1e-10
REDSHIFT_RTOL = 2e-3  # linear interpolation of the cumulative spectrum on 0.1% rest bins
FLUX_RTOL = 1e-10
CENTROID_ATOL_PIX = 0.02
EMULATOR_CONTINUUM_RTOL = 0.15  # APEC Z=0 at 8 keV: bremsstrahlung + ~5-10% recombination/He


@pytest.mark.parametrize("t_k", [1e7, 3e7, 1e8])
@pytest.mark.parametrize("e_kev", [0.5, 2.0, 7.0])
def test_bremsstrahlung_vs_rybicki_lightman_514(t_k, e_kev):
    h, k = 6.62607015e-27, 1.380649e-16
    nu = e_kev * emission.KEV_ERG / h
    ours = bremsstrahlung_emissivity_erg_s_cm3_hz(nu, t_k, z_ion=2.0, n_e_cm3=3e-3, n_i_cm3=1e-3, gaunt="unity")
    ref = RL_514_COEFF * 4.0 * 3e-3 * 1e-3 * t_k**-0.5 * np.exp(-h * nu / (k * t_k))
    assert ours == pytest.approx(ref, rel=RL_RTOL), f"ratio {ours / ref}"


@pytest.mark.parametrize("t_k", [1e7, 1e8])
def test_bremsstrahlung_frequency_integral_vs_515(t_k):
    h, k = 6.62607015e-27, 1.380649e-16
    nu_t = k * t_k / h
    val, _ = integrate.quad(lambda x: bremsstrahlung_emissivity_erg_s_cm3_hz(x * nu_t, t_k, gaunt="unity"), 0, 60)
    total = val * nu_t
    ref = RL_515_COEFF * np.sqrt(t_k)
    assert total == pytest.approx(ref, rel=RL_515_RTOL), f"ratio {total / ref}"


def test_gaunt_factor_limits():
    zeta = np.exp(np.euler_gamma)
    u = 1e-4
    ref = np.sqrt(3) / np.pi * np.log(4 / (zeta * u))  # R&L eq. 5.19 regime (small u, Born)
    assert gaunt_ff_born(u) == pytest.approx(ref, rel=GAUNT_SMALL_U_RTOL), f"{gaunt_ff_born(u)} vs {ref}"
    u = 50.0
    ref = np.sqrt(3 / (np.pi * u))
    assert gaunt_ff_born(u) == pytest.approx(ref, rel=GAUNT_LARGE_U_RTOL), f"{gaunt_ff_born(u)} vs {ref}"


def test_flat_spectrum_through_toy_arf_gives_integral():
    edges = np.linspace(0.2, 5.0, 481)
    resp = response.Response(edges[:-1], edges[1:], 100.0 + 50.0 * 0.5 * (edges[:-1] + edges[1:]))
    # the toy ARF is linear within each bin, so the bin-centre value is exact for a flat spectrum
    rest_edges = np.linspace(0.1, 6.0, 11)
    level = 3.0  # ph s^-1 cm^3 keV^-1
    cum = (level * (rest_edges - rest_edges[0]))[None]
    area = np.stack([response.band_effective_area_cm2(resp, b) for b in [(0.5, 1.0), (1.0, 2.0)]])
    r = observed_band_rates(rest_edges, cum, [0.0], resp.energy_edges_kev, area)[:, 0, 0]
    ref = [level * (100 * 0.5 + 25 * (1.0**2 - 0.5**2)), level * (100 * 1.0 + 25 * (2.0**2 - 1.0**2))]
    np.testing.assert_allclose(r, ref, rtol=FOLD_RTOL, err_msg=f"{r} vs {ref}")


@pytest.fixture(scope="module")
def toy_response():
    edges = np.arange(0.3, 5.0 + 1e-9, 0.002)
    centre = 0.5 * (edges[1:] + edges[:-1])
    return response.Response(edges[:-1], edges[1:], 500.0 * np.exp(-((np.log(centre / 1.5)) ** 2)), name="toy")


@pytest.mark.parametrize("z", [0.1, 0.45])
def test_redshift_factors_vs_direct_observed_integral(toy_response, z):
    """CR = EM r / (4 pi D_M^2) vs the textbook F_E = (1+z) L_E((1+z) E) / (4 pi D_L^2)."""
    from astropy.cosmology import FlatLambdaCDM

    omega_m, h, kt = 0.3, 0.7, 2.0
    table = compute_emission_table(toy_response, "bremsstrahlung", kt_kev=np.array([1.0, 2.0, 4.0]), z=np.array([0.0, z]))
    em_cm3 = 1e66
    mpc = maps.MPC_CM
    d_m = comoving_distance_mpc_h(z, omega_m) * mpc / h
    ours = em_cm3 * table(np.array(kt), z) / (4 * np.pi * d_m**2)
    d_l = FlatLambdaCDM(H0=100 * h, Om0=omega_m, Tcmb0=0).luminosity_distance(z).to("cm").value
    brems = BremsstrahlungBackend()

    def photon_flux_density(e_obs):  # ph s^-1 cm^-2 keV^-1 at observed energy
        l_e = em_cm3 * brems.photon_spectrum((1 + z) * e_obs, kt) * (1 + z) * e_obs  # keV s^-1 keV^-1
        f_e = (1 + z) * l_e / (4 * np.pi * d_l**2)
        return f_e / e_obs

    area = lambda e: np.interp(e, toy_response.energy_centres_kev, toy_response.area_cm2)
    for b, (lo, hi) in enumerate([(0.5, 1.0), (1.0, 2.0)]):
        ref, _ = integrate.quad(lambda e: photon_flux_density(e) * area(e), lo, hi, limit=200)
        assert ours[b] == pytest.approx(ref, rel=REDSHIFT_RTOL), f"band {b}: {ours[b]} vs {ref}"


def _write_ogip(tmp_path):
    from astropy.io import fits

    lo = np.array([0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    hi = lo + 0.2
    area = np.linspace(400.0, 800.0, lo.size)
    arf = fits.BinTableHDU.from_columns(
        [fits.Column("ENERG_LO", "E", array=lo), fits.Column("ENERG_HI", "E", array=hi), fits.Column("SPECRESP", "E", array=area)],
        name="SPECRESP",
    )
    fits.HDUList([fits.PrimaryHDU(), arf]).writeto(tmp_path / "toy.arf")
    n_chan = lo.size
    rows, f_chan, n_ch = [], [], []
    dense = np.zeros((lo.size, n_chan))
    for i in range(lo.size):
        first = max(i - 1, 0)
        last = min(i + 1, n_chan - 1)
        w = np.array([0.2, 0.6, 0.2])[(first - (i - 1)) : 3 - ((i + 1) - last)]
        w = w / w.sum()
        dense[i, first : last + 1] = w
        rows.append(w.astype(np.float32))
        f_chan.append(first + 1)  # channels numbered from 1 (TLMIN = 1)
        n_ch.append(last - first + 1)
    matrix = fits.BinTableHDU.from_columns(
        [
            fits.Column("ENERG_LO", "E", array=lo),
            fits.Column("ENERG_HI", "E", array=hi),
            fits.Column("N_GRP", "I", array=np.ones(lo.size, int)),
            fits.Column("F_CHAN", "I", array=np.array(f_chan)),
            fits.Column("N_CHAN", "I", array=np.array(n_ch)),
            fits.Column("MATRIX", "PE()", array=np.array(rows, dtype=object)),
        ],
        name="MATRIX",
    )
    matrix.header["TLMIN4"] = 1
    ebounds = fits.BinTableHDU.from_columns(
        [fits.Column("CHANNEL", "J", array=np.arange(1, n_chan + 1)), fits.Column("E_MIN", "E", array=lo), fits.Column("E_MAX", "E", array=hi)],
        name="EBOUNDS",
    )
    fits.HDUList([fits.PrimaryHDU(), matrix, ebounds]).writeto(tmp_path / "toy.rmf")
    return lo, hi, area, dense


def test_ogip_readers(tmp_path):
    lo, hi, area, dense = _write_ogip(tmp_path)
    arf = response.read_arf(tmp_path / "toy.arf")
    np.testing.assert_allclose(arf.area_cm2, area, rtol=1e-6)
    np.testing.assert_allclose(arf.energ_lo_kev, lo, rtol=1e-6)
    full = response.load_response(tmp_path / "toy.arf", tmp_path / "toy.rmf")
    np.testing.assert_allclose(full.matrix, dense, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(full.area_cm2, area, rtol=1e-6)
    # band (1.0, 1.6) = channels with centres 1.1, 1.3, 1.5 (indices 3, 4, 5)
    expected = area * dense[:, 3:6].sum(axis=1)
    np.testing.assert_allclose(response.band_effective_area_cm2(full, (1.0, 1.6)), expected, rtol=1e-6)


# Mateos et al. (2009, A&A 496, 879), Table 1: EPIC count-rate-to-flux conversion factors
# [1e11 cts cm^2 erg^-1] per camera, medium filter, power law Gamma = 1.7, N_H = 3e20 cm^-2.
MATEOS09_ECF = {
    (0.5, 1.0): {"pn": 7.995, "mos1": 1.756, "mos2": 1.759},
    (1.0, 2.0): {"pn": 5.779, "mos1": 1.993, "mos2": 1.999},
}
MATEOS09_GAMMA, MATEOS09_NH_1E22 = 1.7, 0.03
#: the built-in curves are approximate; their band-averaged MOS/pn ratios must match the
#: published conversion-factor ratios to 10%
ECF_RATIO_RTOL = 0.10


def _power_law_band_rate(resp, band, gamma=MATEOS09_GAMMA, nh_1e22=MATEOS09_NH_1E22):
    """Count rate [arbitrary units] of an absorbed power-law photon spectrum E^-gamma in ``band``."""
    absorbed = response.apply_absorption(resp, nh_1e22)
    photons = absorbed.energy_centres_kev ** -gamma * (absorbed.energ_hi_kev - absorbed.energ_lo_kev)
    return float(np.sum(response.band_effective_area_cm2(absorbed, band) * photons))


@pytest.fixture(scope="module")
def xmm_cameras():
    return response.builtin_xmm_epic_cameras()


@pytest.mark.parametrize("band", sorted(MATEOS09_ECF))
@pytest.mark.parametrize("mos", ["mos1", "mos2"])
def test_builtin_mos_to_pn_ratio_vs_mateos09(xmm_cameras, band, mos):
    # an ECF is counts per unit flux, so for one spectrum ECF_MOS / ECF_pn = CR_MOS / CR_pn
    expected = MATEOS09_ECF[band][mos] / MATEOS09_ECF[band]["pn"]
    got = _power_law_band_rate(xmm_cameras[mos], band) / _power_law_band_rate(xmm_cameras["pn"], band)
    assert got == pytest.approx(expected, rel=ECF_RATIO_RTOL), (
        f"{mos}/pn in {band} keV: built-in {got:.4f}, Mateos+09 ECF ratio {expected:.4f} ({got / expected - 1:+.1%})"
    )


def test_builtin_total_is_the_sum_of_the_cameras(xmm_cameras):
    total = response.builtin_xmm_epic()
    summed = sum(r.area_cm2 for r in xmm_cameras.values())
    np.testing.assert_allclose(total.area_cm2, summed, rtol=1e-12)
    np.testing.assert_allclose(total.energ_lo_kev, xmm_cameras["pn"].energ_lo_kev)
    for band in MATEOS09_ECF:
        got = response.band_effective_area_cm2(total, band).sum()
        want = sum(response.band_effective_area_cm2(r, band).sum() for r in xmm_cameras.values())
        assert got == pytest.approx(want, rel=1e-12), f"{band}: total {got}, sum of cameras {want}"
    pn_only = response.load_response(builtin="xmm-epic-pn")
    np.testing.assert_allclose(pn_only.area_cm2, xmm_cameras["pn"].area_cm2, rtol=1e-12)


def test_builtin_xmm_anchor_and_absorption(xmm_cameras):
    # Users Handbook values at 1.5 keV: pn 1227 cm^2; 922 cm^2 for the two MOS cameras together
    at = {c: np.interp(1.5, r.energy_centres_kev, r.area_cm2) for c, r in xmm_cameras.items()}
    assert at["pn"] == pytest.approx(1227, rel=1e-3), f"{at}"
    assert at["mos1"] + at["mos2"] == pytest.approx(922, rel=1e-3), f"{at}"
    r = response.builtin_xmm_epic()
    absorbed = response.apply_absorption(r, 0.03)
    t = absorbed.area_cm2 / r.area_cm2
    sigma_1kev = (120.6 + 169.3 - 47.7) * 1e-24  # MM83 Table 2 at 1 keV
    assert np.interp(1.0, r.energy_centres_kev, t) == pytest.approx(np.exp(-0.03e22 * sigma_1kev), rel=1e-3)


def _write_arf(path, lo, hi, area):
    from astropy.io import fits

    cols = [fits.Column("ENERG_LO", "E", array=lo), fits.Column("ENERG_HI", "E", array=hi), fits.Column("SPECRESP", "E", array=area)]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="SPECRESP")]).writeto(path)


def test_summed_arfs_on_one_grid(tmp_path):
    lo = np.linspace(0.3, 2.9, 14)
    hi = lo + 0.2
    a1, a2 = np.linspace(300.0, 900.0, lo.size), 50.0 + 10.0 * np.arange(lo.size)
    _write_arf(tmp_path / "pn.arf", lo, hi, a1)
    _write_arf(tmp_path / "mos.arf", lo, hi, a2)
    total = response.load_response(arf=[tmp_path / "pn.arf", tmp_path / "mos.arf"])
    np.testing.assert_allclose(total.area_cm2, a1 + a2, rtol=1e-6)
    np.testing.assert_allclose(total.energ_lo_kev, lo, rtol=1e-6)
    assert total.matrix is None


def test_summed_arfs_on_different_grids(tmp_path):
    # camera 1: 0.2 keV bins over 0.3-3.1 keV; camera 2: 0.1 keV bins over 0.5-2.5 keV
    lo1 = np.linspace(0.3, 2.9, 14)
    lo2 = np.linspace(0.5, 2.4, 20)
    a1, a2 = np.linspace(300.0, 900.0, lo1.size), 100.0 + 5.0 * np.arange(lo2.size)
    _write_arf(tmp_path / "a.arf", lo1, lo1 + 0.2, a1)
    _write_arf(tmp_path / "b.arf", lo2, lo2 + 0.1, a2)
    one, two = response.read_arf(tmp_path / "a.arf"), response.read_arf(tmp_path / "b.arf")
    total = response.load_response(arf=[tmp_path / "a.arf", tmp_path / "b.arf"])
    assert total.energ_lo_kev[0] == pytest.approx(0.5) and total.energ_hi_kev[-1] == pytest.approx(2.5)
    for band in [(0.5, 1.0), (1.0, 2.0), (0.7, 2.5)]:
        # integrals of the band effective area over true energy [cm^2 keV]
        got = np.sum(response.band_effective_area_cm2(total, band) * (total.energ_hi_kev - total.energ_lo_kev))
        want = sum(np.sum(response.band_effective_area_cm2(r, band) * (r.energ_hi_kev - r.energ_lo_kev)) for r in (one, two))
        assert got == pytest.approx(want, rel=1e-5), f"{band}: integral of summed area {got}, sum of integrals {want}"


def test_summed_arfs_with_rmfs(tmp_path):
    lo, hi, area, dense = _write_ogip(tmp_path)  # toy.arf + toy.rmf (channels = energy bins)
    _write_arf(tmp_path / "second.arf", lo, hi, 0.5 * area)
    band = (1.0, 1.6)  # channels 3, 4, 5
    per_camera = area * dense[:, 3:6].sum(axis=1)
    shared = response.load_response(arf=[tmp_path / "toy.arf", tmp_path / "second.arf"], rmf=tmp_path / "toy.rmf")
    np.testing.assert_allclose(response.band_effective_area_cm2(shared, band), 1.5 * per_camera, rtol=1e-6)
    paired = response.load_response(arf=[tmp_path / "toy.arf", tmp_path / "second.arf"], rmf=[tmp_path / "toy.rmf"] * 2)
    assert paired.matrix.shape == (lo.size, 2 * lo.size)  # both cameras' channels side by side
    np.testing.assert_allclose(response.band_effective_area_cm2(paired, band), 1.5 * per_camera, rtol=1e-6)
    with pytest.raises(ValueError, match="one ARF per RMF"):
        response.load_response(arf=[tmp_path / "toy.arf"], rmf=[tmp_path / "toy.rmf"] * 2)
    with pytest.raises(ValueError, match="with and without an RMF"):
        response.sum_responses([response.read_arf(tmp_path / "toy.arf"), shared])


def test_response_lists_pass_the_config_schema(repo):
    from clustersbi.config import ConfigError, load_schema, load_yaml, validate_config

    schema = load_schema(repo / "workflow/schemas/config.schema.yaml")
    config = load_yaml(repo / "config/config.yaml")
    config["xray"]["response"].update(arf=["pn.arf", "mos1.arf", "mos2.arf"], rmf="epic.rmf")
    validate_config(config, schema)
    config["xray"]["response"]["arf"] = []
    with pytest.raises(ConfigError, match="xray.response.arf"):
        validate_config(config, schema)


def _box_fields(n=12, seed=3):
    rng = np.random.default_rng(seed)
    ne = 1e-4 * np.exp(rng.normal(size=(n, n, n)))
    t = 10 ** rng.uniform(6.5, 8.0, size=(n, n, n))
    return ne, t


@pytest.fixture(scope="module")
def brems_table():
    return compute_emission_table(response.builtin_xmm_epic(), "bremsstrahlung", kt_kev=np.geomspace(0.08, 64, 24), z=np.linspace(0, 1, 11))


def test_projection_conserves_flux(brems_table):
    ne, t = _box_fields()
    grid = maps.make_sky_grid(1.0, pixel_arcmin=1.0)  # 1 deg side, 60 pixels
    # box of 10 Mpc/h at chi 700-720 Mpc/h: < 0.82 deg wide, fully inside the 1 deg field
    m = maps.paint_slab(ne, t, 700.0, 720.0, 10.0, brems_table, grid, 0.3, 0.7, periodic=False)
    got = m.rate_cts_s.sum(axis=(1, 2))
    assert np.all(got > 0)
    np.testing.assert_allclose(got, m.total_cells_cts_s, rtol=FLUX_RTOL, err_msg=f"{got} vs {m.total_cells_cts_s}")


def test_projection_position_of_a_single_cell(brems_table):
    n = 8
    ne = np.zeros((n, n, n))
    t = np.full((n, n, n), 3e7)
    ne[3, 6, 1] = 1e-3  # layer 3, x index 6, y index 1
    grid = maps.make_sky_grid(1.0, 1.0)
    chi_lo, chi_hi, width = 500.0, 516.0, 8.0
    m = maps.paint_slab(ne, t, chi_lo, chi_hi, width, brems_table, grid, 0.3, 0.7)
    img = m.rate_cts_s.sum(axis=0)
    yy, xx = np.indices(img.shape)
    cx, cy = (img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()
    chi = chi_lo + 3.5 * (chi_hi - chi_lo) / n
    pix_rad = np.deg2rad(1 / 60)
    expect_x = np.arctan((-width / 2 + 6.5 * width / n) / chi) / pix_rad + grid.n_pix / 2 - 0.5
    expect_y = np.arctan((-width / 2 + 1.5 * width / n) / chi) / pix_rad + grid.n_pix / 2 - 0.5
    assert abs(cx - expect_x) < CENTROID_ATOL_PIX and abs(cy - expect_y) < CENTROID_ATOL_PIX, f"({cx}, {cy}) vs ({expect_x}, {expect_y})"


def test_observe_poisson_mean_and_psf_flux():
    img = np.zeros((2, 40, 40))
    img[:, 20, 20] = 0.5
    out = maps.observe(img, 1.0, psf_fwhm_arcsec=120.0)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0 * 0.5, rtol=1e-6)
    flat = np.full((200, 200), 0.01)
    noisy = maps.observe(flat, 1.0, seed=1, poisson=True, exposure_s=1e4)
    # mean 100 counts/pixel: sample mean within 5 sigma of 100 / sqrt(40000)
    assert abs(noisy.mean() * 1e4 - 100.0) < 5 * np.sqrt(100.0 / flat.size), f"{noisy.mean() * 1e4}"


def test_emulator_continuum_vs_bremsstrahlung():
    try:
        emu = emission.ApecEmulatorBackend()
    except ImportError as err:
        pytest.skip(f"nnapec not installed: {err}")
    spec = emu.xspec_spectrum(0.0, np.array([8.0]))[0] * 1e-14  # ph s^-1 cm^3 keV^-1
    e = emu.energies_kev
    sel = (e > 3) & (e < 6)
    # like with like: APEC's own (Anders & Grevesse 1989) helium, not the chain's primordial gas
    brems = BremsstrahlungBackend(he_abundance=emission.HE_ABUNDANCE_AG89)
    ratio = np.median(spec[sel] / brems.photon_spectrum(e[sel], 8.0))
    assert ratio == pytest.approx(1.0, rel=EMULATOR_CONTINUUM_RTOL), f"APEC-emulator / bremsstrahlung = {ratio}"


def test_emulator_missing_package_names_it(monkeypatch):
    monkeypatch.setattr(emission.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="nnapec"):
        emission.ApecEmulatorBackend()


def test_emission_table_roundtrip_h5(tmp_path, brems_table):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        brems_table.to_h5(f.create_group("table"))
    with h5py.File(tmp_path / "t.h5", "r") as f:
        back = EmissionTable.from_h5(f["table"])
    np.testing.assert_array_equal(back.rate, brems_table.rate)
    assert back.metadata["backend"] == "bremsstrahlung"


def _atomdb_ready() -> str | None:
    root = os.environ.get("ATOMDB")
    if not root:
        return "$ATOMDB is not set (AtomDB apec_line.fits / apec_coco.fits are not on PyPI)"
    try:
        emission._find_atomdb_files(root)
    except FileNotFoundError as err:
        return str(err)
    return None


def test_apec_backend_continuum():
    reason = _atomdb_ready()
    if reason:
        pytest.skip(f"apec backend needs AtomDB data: {reason}")
    apec = emission.ApecBackend(metallicity=0.0)
    edges = np.linspace(3.0, 6.0, 31)
    spec = apec.binned_spectrum(np.array([8.0]), edges)[0]
    ref = emission._gauss_bin_integral(BremsstrahlungBackend().photon_spectrum, np.array([8.0]), edges)[0]
    ratio = np.median(spec / ref)
    assert ratio == pytest.approx(1.0, rel=EMULATOR_CONTINUUM_RTOL), f"APEC / bremsstrahlung = {ratio}"


def test_apec_backend_clear_error_without_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="apec_line.fits"):
        emission._find_atomdb_files(tmp_path)
