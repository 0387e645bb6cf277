"""The semi-analytic cluster image generator against analytic references.

References nobody here wrote: the analytic emission measure of a beta = 2/3 model, the NFW
cylinder mass (Bartelmann 1996; Wright & Brainerd 2000), colossus' NFW mass conversion,
the Arnaud et al. (2010) integrated pressure I(5) = 1.1037, the Moretti et al. (2003) counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from clustersbi import cluster_images as ci
from clustersbi.constants import M_P_G, MPC_CM, MSUN_G, NE_OVER_NH
from clustersbi.cosmology import Cosmology, angular_diameter_distance_mpc_h, comoving_distance_mpc_h
from clustersbi.xray import compute_emission_table, load_response

COUNTS_RTOL = 0.005  # pixel-centred line-of-sight sums vs the analytic volume integral (3e-5 measured)
CYL_RTOL = 0.015  # particle shot noise (~0.3% at 4e5 particles) plus the truncation at 30 R200
Y_RTOL = 0.02
COSMO = Cosmology(h=0.7)
BANDS = [(0.5, 1.2), (1.2, 2.0), (2.0, 7.0)]


@pytest.fixture(scope="module")
def response():
    return load_response(arf=None, rmf=None, builtin="xmm-epic-pn+2mos")


@pytest.fixture(scope="module")
def table(response):
    return compute_emission_table(response, "bremsstrahlung", BANDS, kt_kev=np.geomspace(0.08, 64, 48), z=np.arange(0, 0.61, 0.05))


def _spherical_model(**kw):
    base = dict(npix=96, pixel_kpc=60.0, n_views=1, triaxial=False, subhalo_mass_fraction=0.0, sigma_ln_c=0.0,
                cool_core_fraction=0.0, sigma_ln_lx=0.0, sigma_ln_t=0.0, agn=False, poisson=False,
                background_cts_s_arcmin2=(0.0, 0.0, 0.0), psf_fwhm_arcsec=0.0, n_los=128)
    base.update(kw)
    return ci.ImageModel(**base)


def test_integrated_counts_equal_analytic_count_rate_times_exposure(table, response):
    """Isothermal beta = 2/3 sphere: sum of expected counts = EM r_b(T, z) / (4 pi D_M^2) x exposure."""
    model = _spherical_model(gas_extent_r500=2.0, psf_fwhm_arcsec=20.0)
    m500, z, kt = 5e14, 0.2, 5.0
    cl = ci.cluster_model(m500, z, model, COSMO, np.random.default_rng(1))
    assert 2.0 * cl.r500_kpc * 2.0 < model.npix * model.pixel_kpc  # the field holds the whole sphere

    def isothermal(points):
        ne, _ = ci.gas_fields(cl, points, model, COSMO)
        return ne, ne * kt

    rate, _ = ci.project_gas(cl, 0, model, COSMO, table, gas_fn=isothermal)
    counts, icm, agn = ci.observe_cutout(rate, z, model, COSMO, np.zeros(3), np.random.default_rng(2))
    # analytic: n_e^2 = n0^2 (1 + x^2/rc^2)^-2, int_0^X 4 pi r^2 ... = 2 pi n0^2 rc^3 (atan X - X/(1+X^2))
    rc_cm = cl.core_radius_r500 * cl.r500_kpc * 1e-3 * MPC_CM
    big_x = model.gas_extent_r500 / cl.core_radius_r500
    em = 2.0 * np.pi * cl.n0_cm3**2 * rc_cm**3 * (np.arctan(big_x) - big_x / (1 + big_x**2)) / NE_OVER_NH
    d_m = comoving_distance_mpc_h(z, COSMO.Omega_m) * MPC_CM / COSMO.h
    expected = em * table(np.array([kt]), z)[:, 0] / (4 * np.pi * d_m**2) * model.exposure_s
    got = counts.sum(axis=(1, 2))
    np.testing.assert_allclose(got, expected, rtol=COUNTS_RTOL, err_msg=f"counts {got} vs analytic {expected}")
    np.testing.assert_allclose(icm.sum(axis=(1, 2)), got)
    assert expected[0] > 100  # a real signal, not a vacuous comparison


def test_gas_mass_normalisation_matches_beta_model_integral():
    m500, r500, rc, h = 3e14, 1000.0, 0.15, 0.7
    n0 = ci.gas_density_norm_cm3(m500, r500, 0.11, rc, 2.0 / 3.0, 0.0, h)
    # beta = 2/3: int_0^X 4 pi x^2 / (1 + x^2) dx = 4 pi (X - atan X), in units of rc^3
    big_x = 1.0 / rc
    vol = 4 * np.pi * (big_x - np.arctan(big_x)) * (rc * r500 * 1e-3 * MPC_CM) ** 3
    m_gas = ci.MU_E * M_P_G * n0 * vol / MSUN_G * h
    np.testing.assert_allclose(m_gas, 0.11 * m500, rtol=1e-3)


def test_projected_mass_inside_r_equals_nfw_cylinder_mass():
    model = _spherical_model(n_particles=400_000, truncation_r200=30.0, npix=200, pixel_kpc=20.0)
    cl = ci.cluster_model(4e14, 0.3, model, COSMO, np.random.default_rng(3))
    mass_map = ci.project_particles(cl.particles_kpc, cl.particle_mass, 2, model.npix, model.pixel_kpc)
    centres = (np.arange(model.npix) + 0.5 - model.npix / 2) * model.pixel_kpc
    rr = np.hypot(*np.meshgrid(centres, centres))
    for radius in (0.5 * cl.r500_kpc, cl.r500_kpc, cl.r200_kpc):
        # exact particle count inside the circle (the map's pixels cut the circle)
        r_part = np.hypot(cl.particles_kpc[:, 0], cl.particles_kpc[:, 1])
        exact = cl.particle_mass[r_part < radius].sum()
        ref = ci.nfw_cylinder_mass(radius, cl.r200_kpc, cl.c200c, cl.m200c)
        np.testing.assert_allclose(exact, ref, rtol=CYL_RTOL, err_msg=f"R = {radius:.0f} kpc")
        on_map = mass_map[rr < radius].sum()
        np.testing.assert_allclose(on_map, ref, rtol=0.03, err_msg=f"map inside R = {radius:.0f} kpc")


def test_cylinder_formula_matches_numerical_projection():
    r200, c, m200 = 1500.0, 5.0, 1e15
    rs = r200 / c
    rho_s = m200 / (4 * np.pi * rs**3 * ci.nfw_m(c))

    def cyl(radius):
        sigma = lambda rp: 2 * integrate.quad(lambda l: rho_s / ((np.hypot(rp, l) / rs) * (1 + np.hypot(rp, l) / rs) ** 2), 0, np.inf, limit=200)[0]
        return integrate.quad(lambda rp: 2 * np.pi * rp * sigma(rp), 0, radius, limit=200)[0]

    for radius in (300.0, 1500.0):
        np.testing.assert_allclose(ci.nfw_cylinder_mass(radius, r200, c, m200), cyl(radius), rtol=1e-4)


def test_m200c_from_m500c_matches_colossus_nfw_conversion():
    from colossus.halo import mass_defs

    from clustersbi.cosmology import colossus_cosmology

    colossus_cosmology(COSMO)
    m500, z = 3e14, 0.3
    m200, c200 = ci.m200c_from_m500c(m500, z)
    m500_back, _, _ = mass_defs.changeMassDefinition(m200, c200, z, "200c", "500c", profile="nfw")
    np.testing.assert_allclose(m500_back, m500, rtol=2e-3)
    r500 = ci.radius_delta_kpc(m500, z, 500, COSMO)
    from colossus.halo import mass_so

    np.testing.assert_allclose(r500, mass_so.M_to_R(m500, z, "500c") / COSMO.h, rtol=2e-3)  # colossus: comoving kpc/h


def test_y_map_integrates_arnaud_pressure(table):
    """sum y dA = sigma_T/(m_e c^2) (4 pi/3) R500^3 P500 (M/3e14)^0.12 I(5), I(5) = 1.1037 (Arnaud et al. 2010)."""
    model = _spherical_model(gas_extent_r500=5.0, npix=128, pixel_kpc=100.0, n_los=160)
    m500, z = 6e14, 0.1
    cl = ci.cluster_model(m500, z, model, COSMO, np.random.default_rng(4))
    _, y = ci.project_gas(cl, 1, model, COSMO, table)
    area_cm2 = (model.pixel_kpc * 1e-3 * MPC_CM) ** 2
    y_sph = y.sum() * area_cm2
    p500_times_mass = ci.arnaud_pressure_kev_cm3(1.0 / ci.ARNAUD_C500, m500, z, COSMO) / (
        ci.ARNAUD_P0 / (1.0 * 2.0 ** ((ci.ARNAUD_BETA - ci.ARNAUD_GAMMA) / ci.ARNAUD_ALPHA))
    )
    r500_cm = cl.r500_kpc * 1e-3 * MPC_CM
    expected = ci.SIGMA_T_CM2 / ci.M_E_C2_KEV * 4 * np.pi / 3 * r500_cm**3 * p500_times_mass * 1.1037
    np.testing.assert_allclose(y_sph, expected, rtol=Y_RTOL)


def test_moretti_counts_and_agn_rates(response):
    # eq. 2 of Moretti et al. (2003) at S = S0: N0 (2e-15/S0)^a1 / 2
    np.testing.assert_allclose(ci.moretti03_n_above(ci.MORETTI_S0), 6150 * (2e-15 / 1.48e-14) ** 1.82 / 2, rtol=1e-12)
    per_flux = ci.powerlaw_band_rates_per_flux(response, BANDS)
    # Mateos et al. (2009) conversion factors (Gamma = 1.7) for pn + MOS1 + MOS2 [1e11 cts cm^2/erg]:
    # 0.5-1 keV 7.995 + 1.756 + 1.759, 1-2 keV 5.779 + 1.993 + 1.999; a Gamma = 1.7 power law has
    # (1 - 0.5^0.3) / (2^0.3 - 0.5^0.3) = 0.449 of its 0.5-2 keV energy flux in 0.5-1 keV
    frac = (1 - 0.5**0.3) / (2**0.3 - 0.5**0.3)
    mateos = 1e11 * (frac * (7.995 + 1.756 + 1.759) + (1 - frac) * (5.779 + 1.993 + 1.999))
    np.testing.assert_allclose(per_flux[:2].sum(), mateos, rtol=0.15)  # the built-in curve is a ~10-20% approximation
    assert per_flux[2] < per_flux[0]


def test_generate_cutouts_views_share_a_cluster(table, response):
    model = ci.ImageModel(npix=32, pixel_kpc=60.0, n_particles=20_000, n_los=48)
    halos = ci.halos_from_catalogue([2e14, 8e14], [0.2, 0.3], n_regions=4)
    cut = ci.generate_cutouts(halos, model, COSMO, table, response, seeds=[11, 12])
    assert cut.n == 6 and cut.channels == ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7", "y", "mass"]
    np.testing.assert_array_equal(cut.cluster_id, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cut.view, [0, 1, 2, 0, 1, 1 + 1])
    # photon counts are integers and the heavier cluster is brighter, with more y and more mass
    xr = cut.images["xray_0.5-1.2"]
    assert np.all(xr == np.round(xr))
    for ch in ("xray_0.5-1.2", "y", "mass"):
        tot = cut.images[ch].sum(axis=(1, 2))
        assert tot[3:].min() > tot[:3].max(), (ch, tot)
    assert cut.extras["icm_counts"].shape == (6, 32, 32)


def test_halo_draw_follows_the_tinker08_mass_function():
    """Fractions of the draw above 3e14 Msun/h and below z = 0.3 against colossus' n(M, z) dV/dz."""
    from colossus.lss import mass_function

    from clustersbi.cosmology import colossus_cosmology, efunc

    halos = ci.draw_halos(COSMO, 4000, (1e14, 1e15), (0.1, 0.5), 8, 5.0, np.random.default_rng(8))
    colossus_cosmology(COSMO)
    z = np.linspace(0.1, 0.5, 81)
    lnm = np.linspace(np.log(1e14), np.log(1e15), 301)
    dn = np.array([mass_function.massFunction(np.exp(lnm), zz, mdef="500c", model="tinker08", q_out="dndlnM") for zz in z])
    dvdz = comoving_distance_mpc_h(z, COSMO.Omega_m) ** 2 / efunc(z, COSMO.Omega_m)
    weight = dn * dvdz[:, None]
    total = integrate.trapezoid(integrate.trapezoid(weight, lnm, axis=1), z)
    above = lnm >= np.log(3e14)
    frac_heavy = integrate.trapezoid(integrate.trapezoid(weight[:, above], lnm[above], axis=1), z) / total
    low_z = z <= 0.3
    frac_low_z = integrate.trapezoid(integrate.trapezoid(weight[low_z], lnm, axis=1), z[low_z]) / total
    n = halos.n
    for got, want in ((np.mean(halos.m500c >= 3e14), frac_heavy), (np.mean(halos.redshift <= 0.3), frac_low_z)):
        assert abs(got - want) < 4 * np.sqrt(want * (1 - want) / n) + 0.005, (got, want)
    assert set(np.unique(halos.region)) == set(range(8))
