"""X-ray emission, response and projection against references nobody here wrote."""

from __future__ import annotations

import os

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


def test_builtin_xmm_anchor_and_absorption():
    r = response.builtin_xmm_epic()
    a15 = np.interp(1.5, r.energy_centres_kev, r.area_cm2)
    assert a15 == pytest.approx(1227 + 2 * 922, rel=1e-3), f"{a15}"
    absorbed = response.apply_absorption(r, 0.03)
    t = absorbed.area_cm2 / r.area_cm2
    sigma_1kev = (120.6 + 169.3 - 47.7) * 1e-24  # MM83 Table 2 at 1 keV
    assert np.interp(1.0, r.energy_centres_kev, t) == pytest.approx(np.exp(-0.03e22 * sigma_1kev), rel=1e-3)


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
    pytest.importorskip("h5py")
    try:
        emu = emission.ApecEmulatorBackend()
    except ImportError as err:
        pytest.skip(f"nnapec not installed: {err}")
    spec = emu.xspec_spectrum(0.0, np.array([8.0]))[0] * 1e-14  # ph s^-1 cm^3 keV^-1
    e = emu.energies_kev
    sel = (e > 3) & (e < 6)
    ratio = np.median(spec[sel] / BremsstrahlungBackend().photon_spectrum(e[sel], 8.0))
    assert ratio == pytest.approx(1.0, rel=EMULATOR_CONTINUUM_RTOL), f"APEC-emulator / bremsstrahlung = {ratio}"


def test_emulator_missing_package_names_it(monkeypatch):
    monkeypatch.setattr(emission.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="nnapec"):
        emission.ApecEmulatorBackend()


def test_emission_table_roundtrip_h5(tmp_path, brems_table):
    h5py = pytest.importorskip("h5py")
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
    pytest.importorskip("pyatomdb")
    apec = emission.ApecBackend(metallicity=0.0)
    edges = np.linspace(3.0, 6.0, 31)
    spec = apec.binned_spectrum(np.array([8.0]), edges)[0]
    ref = emission._gauss_bin_integral(BremsstrahlungBackend().photon_spectrum, np.array([8.0]), edges)[0]
    ratio = np.median(spec / ref)
    assert ratio == pytest.approx(1.0, rel=EMULATOR_CONTINUUM_RTOL), f"APEC / bremsstrahlung = {ratio}"


def test_apec_backend_clear_error_without_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="apec_line.fits"):
        emission._find_atomdb_files(tmp_path)
