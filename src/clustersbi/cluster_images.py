"""Semi-analytic cluster images: projected mass, X-ray photon maps per band and Compton-y.

For each halo (a draw from the Tinker et al. 2008 mass function, or a given catalogue) the
generator builds a 3D model and projects it along three orthogonal lines of sight (views
0, 1, 2: the observer frame's x, y, z axes, after a random rotation of the halo). Units:
masses in Msun/h, radii in physical kpc unless named otherwise, densities physical.

Ingredients, each with its source:

- **Halo radii.** R_Delta = (3 M_Delta / (4 pi Delta rho_c(z)))^(1/3), rho_c(z) = rho_c0 E(z)^2
  (flat LCDM), Delta = 500, 200 (critical).
- **Concentration.** c200c = 5.71 (M200c / 2e12 Msun/h)^-0.084 (1+z)^-0.47 (Duffy et al. 2008,
  MNRAS 390, L64, Table 1, full sample, 200c) with log-normal scatter ``sigma_ln_c``
  (0.25 by default, ~0.11 dex, their scatter of log10 c is 0.10-0.15). M200c follows from
  M500c through the NFW profile: m(c x) / m(c) = (500/200) x^3 for x = R500c/R200c,
  m(y) = ln(1+y) - y/(1+y) (Navarro, Frenk & White 1997).
- **Triaxial NFW.** The spherical NFW enclosed-mass profile in the ellipsoidal radius
  r_e^2 = x^2/a^2 + y^2/b^2 + z^2/c^2 with a b c = 1 (volume preserving, so the mass within
  r_e equals the spherical M(<r)), axis ratios s = c/a ~ N(0.55, 0.1) clipped to [0.3, 1] and
  q = b/a uniform in [s, 1] (Jing & Suto 2002, ApJ 574, 538: <s> ~ 0.5-0.6 for cluster halos),
  orientation a uniformly random rotation. Sampled with particles (inverse CDF of m(y)),
  truncated at ``truncation_r200`` x R200c, so the projected mass map carries the NFW cusp
  without pixelisation error; ``n_particles`` sets its shot noise.
- **Satellite subhalos.** A fraction ``subhalo_mass_fraction`` of the mass (0.1: Gao et al. 2004,
  MNRAS 355, 819 find 5-10% of M200 in subhalos) in subhalos with dN/dln m ∝ m^-0.9
  (Giocoli et al. 2010, MNRAS 404, 502) between 1e-3 and 0.1 M200c, positions drawn from the
  host profile within R200c, each a truncated NFW (its own Duffy concentration) cut at the
  Jacobi radius r_J = d (m / (3 M_host(<d)))^(1/3) (King 1962; Tormen et al. 1998). Their mass
  is taken from the smooth component, so the mean profile stays the host's NFW. Subhalos
  carry no gas (ram-pressure stripped) in this model.
- **ICM pressure.** The generalised NFW electron pressure of Arnaud et al. (2010, A&A 517, A92,
  eqs. 11-13, their best fit "universal" profile): P_e(r) = P500 (M500 / 3e14 h70^-1 Msun)^0.12
  P0 / ((c500 x)^g (1 + (c500 x)^a)^((b - g)/a)), x = r/R500c, with P500 = 1.65e-3 E(z)^(8/3)
  (M500 / 3e14 h70^-1 Msun)^(2/3) h70^2 keV cm^-3 and (P0, c500, g, a, b) = (8.403 h70^-3/2,
  1.177, 0.3081, 1.0510, 5.4905).
- **ICM density.** A beta-like profile with an optional central cusp (Vikhlinin et al. 2006,
  ApJ 640, 691, eq. 3, leading term): n_e(r) = n0 (r/r_c)^(-alpha/2) (1 + r^2/r_c^2)^(-3 beta/2 + alpha/4),
  beta = 2/3. A fraction ``cool_core_fraction`` of the clusters are cool cores (alpha =
  ``cool_core_alpha``, r_c = ``cool_core_radius_r500`` R500c); the others have alpha = 0 and
  r_c = ``core_radius_r500`` R500c. n0 is fixed by the gas mass within R500c,
  f_gas M500c with f_gas = ``gas_fraction_500`` (0.11: Vikhlinin et al. 2006; Pratt et al. 2009
  find 0.08-0.13 over 1e14-1e15 Msun), mu_e = 1 / (X_H + (1 - X_H)/2). The gas is an
  ellipsoid with the halo's orientation and the square roots of its axis ratios (gas traces
  the potential, which is rounder than the mass; Lau et al. 2011 find q_gas ~ 0.8-0.9).
- **Temperature.** T = P_e / n_e (ideal gas), clipped to the emission table's range. Cool
  cores then have a falling central temperature, as observed.
- **Scatter.** At fixed mass, ln L_X and ln T get independent log-normal scatter
  ``sigma_ln_lx``, ``sigma_ln_t``: n_e is multiplied by exp(d_L / 2) and P_e by
  exp(d_T + d_L / 2) (so T = P/n_e moves by exp(d_T), n_e^2 by exp(d_L)); they are the
  intrinsic scatters of the model, not of a measured L_X-M, which also carries the cool-core
  and shape scatter.
- **X-ray photons.** The expected count rate of a pixel in band b is
  CR_b = sum_los n_e n_H r_b(T, z) dV / (4 pi D_M^2) with r_b the project's emission table
  (:mod:`clustersbi.xray.emission`, the instrument response folded in) and n_H = n_e / 1.158;
  the line of sight is integrated on sinh-spaced nodes out to ``gas_extent_r500`` R500c.
  Then, in order: AGN point sources added to the rate map, a Gaussian PSF (FWHM
  ``psf_fwhm_arcsec``), a flat background [cts s^-1 arcmin^-2 per band] and Poisson photon
  counts for ``exposure_s`` (:func:`clustersbi.xray.observe`).
- **AGN.** Field AGN only (no cluster-member excess): the soft-band log N - log S of
  Moretti et al. (2003, ApJ 588, 696, eq. 2: N(>S) = N0 (2e-15)^a1 / (S^a1 + S0^(a1-a2) S^a2),
  N0 = 6150 deg^-2, a1 = 1.82, a2 = 0.60, S0 = 1.48e-14 erg s^-1 cm^-2) above
  ``agn_flux_min``, at uniform positions, each an unabsorbed power law of photon index 1.7
  folded through the response.
- **Compton-y.** y = sigma_T / (m_e c^2) integral P_e dl along the line of sight.
- **Projected mass.** Histogram of the particles [Msun/h per pixel].

Images are square, ``npix`` pixels of ``pixel_kpc`` physical kpc, centred on the halo centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage, special
from scipy.spatial.transform import Rotation

from .constants import (KEV_ERG, M_E_C2_KEV, M_P_G, MPC_CM, MSUN_G, NE_OVER_NH, RHO_CRIT_MSUN_H_MPC_H3,
                        SIGMA_T_CM2, X_H)
from .cosmology import Cosmology, angular_diameter_distance_mpc_h, comoving_distance_mpc_h, efunc
from .cutouts import Cutouts, xray_channel_name
from .xray.emission import EmissionTable
from .xray.response import Response, band_effective_area_cm2

__all__ = [
    "ImageModel",
    "HaloSample",
    "radius_delta_kpc",
    "nfw_m",
    "duffy08_c200c",
    "m200c_from_m500c",
    "nfw_cylinder_mass",
    "sample_nfw_radii",
    "triaxial_axes",
    "arnaud_pressure_kev_cm3",
    "beta_density_shape",
    "gas_density_norm_cm3",
    "moretti03_n_above",
    "powerlaw_band_rates_per_flux",
    "draw_halos",
    "halos_from_catalogue",
    "ClusterModel",
    "cluster_model",
    "project_particles",
    "project_gas",
    "generate_cutouts",
    "compton_y",
]

MU_E = 1.0 / (X_H + (1.0 - X_H) / 2.0)
#: Arnaud et al. (2010) universal pressure profile, h70 = 1 values
ARNAUD_P0, ARNAUD_C500, ARNAUD_GAMMA, ARNAUD_ALPHA, ARNAUD_BETA = 8.403, 1.177, 0.3081, 1.0510, 5.4905
#: Moretti et al. (2003) soft-band (0.5-2 keV) log N - log S
MORETTI_N0_DEG2, MORETTI_A1, MORETTI_A2, MORETTI_S0 = 6150.0, 1.82, 0.60, 1.48e-14
AGN_PHOTON_INDEX = 1.7


@dataclass(frozen=True)
class ImageModel:
    """Parameters of the generator (defaults: module docstring; config section ``images.generator``)."""

    npix: int = 64
    pixel_kpc: float = 40.0
    n_views: int = 3
    n_particles: int = 200_000
    truncation_r200: float = 2.0
    sigma_ln_c: float = 0.25
    triaxial: bool = True
    subhalo_mass_fraction: float = 0.1
    gas_fraction_500: float = 0.11
    beta: float = 2.0 / 3.0
    core_radius_r500: float = 0.15
    cool_core_fraction: float = 0.4
    cool_core_radius_r500: float = 0.05
    cool_core_alpha: float = 1.0
    sigma_ln_lx: float = 0.3
    sigma_ln_t: float = 0.12
    gas_extent_r500: float = 3.0
    n_los: int = 96
    exposure_s: float = 5000.0
    background_cts_s_arcmin2: tuple[float, ...] = (1e-3, 1e-3, 1e-3)
    psf_fwhm_arcsec: float = 15.0
    agn: bool = True
    agn_flux_min: float = 1e-15
    agn_flux_max: float = 1e-12
    poisson: bool = True

    def __post_init__(self) -> None:
        if self.npix < 4 or self.pixel_kpc <= 0:
            raise ValueError(f"images.generator: npix >= 4 and pixel_kpc > 0 needed, got {self.npix}, {self.pixel_kpc}")
        if not 1 <= self.n_views <= 3:
            raise ValueError(f"images.generator.n_views must be 1-3, got {self.n_views}")
        if not 0 <= self.cool_core_fraction <= 1 or not 0 <= self.subhalo_mass_fraction < 1:
            raise ValueError("images.generator: cool_core_fraction in [0, 1] and subhalo_mass_fraction in [0, 1)")


# ============================================================================ halo structure
def radius_delta_kpc(mass_msun_h, z, delta: float, cosmo: Cosmology):
    """R_Delta [physical kpc] of mass M_Delta [Msun/h] at z (Delta times the critical density)."""
    rho = RHO_CRIT_MSUN_H_MPC_H3 * efunc(z, cosmo.Omega_m) ** 2  # Msun/h per (physical Mpc/h)^3
    r_mpc_h = (3.0 * np.asarray(mass_msun_h) / (4.0 * np.pi * delta * rho)) ** (1.0 / 3.0)
    return r_mpc_h * 1e3 / cosmo.h


def nfw_m(y):
    """NFW mass profile shape m(y) = ln(1+y) - y/(1+y); M(<r) = 4 pi rho_s r_s^3 m(r/r_s)."""
    y = np.asarray(y, dtype=float)
    return np.log1p(y) - y / (1.0 + y)


def duffy08_c200c(m200c_msun_h, z):
    """Mean c200c of Duffy et al. (2008), full sample: 5.71 (M / 2e12 Msun/h)^-0.084 (1+z)^-0.47."""
    return 5.71 * (np.asarray(m200c_msun_h) / 2e12) ** -0.084 * (1.0 + np.asarray(z)) ** -0.47


def _x500_over_200(c200):
    """x = R500c / R200c of an NFW halo of concentration c200: m(c x)/m(c) = 2.5 x^3 (bisection)."""
    c200 = np.asarray(c200, dtype=float)
    lo, hi = np.full_like(c200, 0.3), np.ones_like(c200)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f = nfw_m(c200 * mid) / nfw_m(c200) - 2.5 * mid**3
        lo, hi = np.where(f > 0, mid, lo), np.where(f > 0, hi, mid)
    return 0.5 * (lo + hi)


def m200c_from_m500c(m500c_msun_h, z, c_scatter_factor=1.0, n_iter: int = 8):
    """(M200c [Msun/h], c200c) of NFW halos of M500c whose concentration is Duffy08 x factor."""
    m500 = np.asarray(m500c_msun_h, dtype=float)
    m200 = 1.4 * m500
    for _ in range(n_iter):
        c = duffy08_c200c(m200, z) * c_scatter_factor
        x = _x500_over_200(c)
        m200 = m500 / (2.5 * x**3)
    return m200, duffy08_c200c(m200, z) * c_scatter_factor


def nfw_cylinder_mass(r_proj, r200, c200, m200):
    """Mass of an untruncated NFW halo inside a cylinder of projected radius R (same units as r200).

    M_cyl(R) = M200 g(R/r_s) / m(c), g(x) = ln(x/2) + arccosh(1/x)/sqrt(1-x^2) (x < 1),
    1 - ln 2 (x = 1), ln(x/2) + arccos(1/x)/sqrt(x^2-1) (x > 1) (Bartelmann 1996; Wright &
    Brainerd 2000, eq. 13 integrated).
    """
    x = np.asarray(r_proj, dtype=float) / (np.asarray(r200) / c200)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(
            x < 1.0,
            np.log(x / 2.0) + np.arccosh(1.0 / np.minimum(x, 1.0 - 1e-12)) / np.sqrt(np.abs(1.0 - x**2) + 1e-300),
            np.log(x / 2.0) + np.arccos(1.0 / np.maximum(x, 1.0 + 1e-12)) / np.sqrt(np.abs(x**2 - 1.0) + 1e-300),
        )
    g = np.where(np.abs(x - 1.0) < 1e-8, 1.0 - np.log(2.0), g)
    return m200 * g / nfw_m(c200)


def sample_nfw_radii(n: int, c: float, y_max: float, rng: np.random.Generator) -> np.ndarray:
    """n radii y = r / r_s of an NFW profile truncated at y_max (inverse CDF of m(y) on a grid)."""
    y_grid = np.concatenate([[0.0], np.geomspace(1e-5, y_max, 4096)])
    cdf = nfw_m(y_grid) / nfw_m(y_max)
    return np.interp(rng.random(n), cdf, y_grid)


def triaxial_axes(rng: np.random.Generator, triaxial: bool = True) -> np.ndarray:
    """(a, b, c) with a b c = 1: s = c/a ~ N(0.55, 0.1) in [0.3, 1], q = b/a ~ U(s, 1) (Jing & Suto 2002)."""
    if not triaxial:
        return np.ones(3)
    s = float(np.clip(rng.normal(0.55, 0.1), 0.3, 1.0))
    q = float(rng.uniform(s, 1.0))
    a = (q * s) ** (-1.0 / 3.0)
    return np.array([a, q * a, s * a])


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ============================================================================ ICM
def arnaud_pressure_kev_cm3(x, m500c_msun_h, z, cosmo: Cosmology):
    """Electron pressure [keV cm^-3] at x = r / R500c (Arnaud et al. 2010, eqs. 11-13)."""
    h70 = cosmo.h / 0.7
    m_ratio = np.asarray(m500c_msun_h) / 0.7 / 3e14  # M500 in units of 3e14 h70^-1 Msun
    p500 = 1.65e-3 * efunc(z, cosmo.Omega_m) ** (8.0 / 3.0) * m_ratio ** (2.0 / 3.0) * h70**2
    cx = ARNAUD_C500 * np.asarray(x, dtype=float)
    shape = ARNAUD_P0 * h70**-1.5 / (cx**ARNAUD_GAMMA * (1.0 + cx**ARNAUD_ALPHA) ** ((ARNAUD_BETA - ARNAUD_GAMMA) / ARNAUD_ALPHA))
    return p500 * m_ratio**0.12 * shape


def beta_density_shape(x, core_radius: float, beta: float, alpha: float = 0.0):
    """n_e / n0 at x (same units as ``core_radius``): (x/r_c)^(-alpha/2) (1 + x^2/r_c^2)^(-3 beta/2 + alpha/4)."""
    u = np.asarray(x, dtype=float) / core_radius
    return u ** (-alpha / 2.0) * (1.0 + u**2) ** (-1.5 * beta + alpha / 4.0)


def gas_density_norm_cm3(m500c_msun_h, r500_kpc, f_gas, core_radius_r500, beta, alpha, h: float) -> float:
    """n0 [cm^-3] such that mu_e m_p int_0^R500 n_e dV = f_gas M500c (spherical integral)."""
    x = np.geomspace(1e-6, 1.0, 4001)
    integrand = 4.0 * np.pi * x**2 * beta_density_shape(x, core_radius_r500, beta, alpha)
    shape_volume = np.trapezoid(integrand, x) * (r500_kpc * 1e-3 * MPC_CM) ** 3  # cm^3 per unit n0
    gas_mass_g = f_gas * m500c_msun_h / h * MSUN_G
    return gas_mass_g / (MU_E * M_P_G * shape_volume)


# ============================================================================ AGN
def moretti03_n_above(flux_cgs):
    """Soft-band (0.5-2 keV) AGN counts N(>S) [deg^-2] of Moretti et al. (2003)."""
    s = np.asarray(flux_cgs, dtype=float)
    return MORETTI_N0_DEG2 * 2e-15**MORETTI_A1 / (s**MORETTI_A1 + MORETTI_S0 ** (MORETTI_A1 - MORETTI_A2) * s**MORETTI_A2)


def powerlaw_band_rates_per_flux(response: Response, bands_kev, photon_index: float = AGN_PHOTON_INDEX) -> np.ndarray:
    """Count rate per band [cts/s] of a power law of unit 0.5-2 keV energy flux [1 erg s^-1 cm^-2]."""
    edges = response.energy_edges_kev
    lo, hi = edges[:-1], edges[1:]
    g1 = 1.0 - photon_index
    photons = (hi**g1 - lo**g1) / g1  # int E^-G dE over each bin (K = 1)
    e_flux = (2.0 ** (2.0 - photon_index) - 0.5 ** (2.0 - photon_index)) / (2.0 - photon_index) * KEV_ERG
    return np.array([band_effective_area_cm2(response, b) @ photons for b in bands_kev]) / e_flux


def _sample_agn_fluxes(n_expected: float, s_min: float, s_max: float, rng: np.random.Generator) -> np.ndarray:
    s = np.geomspace(s_min, s_max, 512)
    n_above = moretti03_n_above(s) - moretti03_n_above(s_max)
    count = rng.poisson(n_expected)
    cdf = 1.0 - n_above / n_above[0]
    return np.interp(rng.random(count), cdf, s)


# ============================================================================ halo samples
@dataclass(frozen=True)
class HaloSample:
    """Halos to image: M500c [Msun/h], redshift, sky region, position (all (N,))."""

    m500c: np.ndarray
    redshift: np.ndarray
    region: np.ndarray
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    cluster_id: np.ndarray

    @property
    def n(self) -> int:
        return int(self.m500c.size)


def _region_positions(n, n_regions, region_side_deg, rng):
    """Regions are square sky tiles on a grid (n_side x n_side >= n_regions); uniform within a tile."""
    region = rng.integers(0, n_regions, n)
    n_side = int(np.ceil(np.sqrt(n_regions)))
    ra = (region % n_side + rng.random(n)) * region_side_deg
    dec = (region // n_side + rng.random(n)) * region_side_deg
    return region, ra, dec


def draw_halos(
    cosmo: Cosmology,
    n_clusters: int,
    m500c_range: tuple[float, float],
    z_range: tuple[float, float],
    n_regions: int,
    region_side_deg: float,
    rng: np.random.Generator,
) -> HaloSample:
    """n halos from the Tinker et al. (2008) M500c mass function (colossus) times dV/dz.

    Redshifts follow dN/dz ∝ dV/dz int n(M, z) dln M over the mass range, masses the mass
    function at each halo's redshift (on a 24-node z grid).
    """
    from colossus.lss import mass_function

    from .cosmology import colossus_cosmology

    colossus_cosmology(cosmo)
    lnm = np.linspace(np.log(m500c_range[0]), np.log(m500c_range[1]), 256)
    z_grid = np.linspace(z_range[0], z_range[1], 24)
    dndlnm = np.stack([
        mass_function.massFunction(np.exp(lnm), z, mdef="500c", model="tinker08", q_out="dndlnM") for z in z_grid
    ])
    chi = comoving_distance_mpc_h(z_grid, cosmo.Omega_m)
    dv_dz = chi**2 / efunc(z_grid, cosmo.Omega_m)
    n_of_z = dv_dz * np.trapezoid(dndlnm, lnm, axis=1)
    z_fine = np.linspace(z_range[0], z_range[1], 1024)
    cdf_z = np.concatenate([[0.0], np.cumsum(0.5 * (n_of_z[1:] + n_of_z[:-1]) * np.diff(z_grid))])
    z = np.interp(rng.random(n_clusters), cdf_z / cdf_z[-1], z_grid)
    del z_fine
    k = np.clip(np.round((z - z_range[0]) / max(z_grid[1] - z_grid[0], 1e-12)).astype(int), 0, len(z_grid) - 1)
    m = np.empty(n_clusters)
    for i, kk in enumerate(k):
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dndlnm[kk, 1:] + dndlnm[kk, :-1]) * np.diff(lnm))])
        m[i] = np.exp(np.interp(rng.random(), cdf / cdf[-1], lnm))
    region, ra, dec = _region_positions(n_clusters, n_regions, region_side_deg, rng)
    return HaloSample(m, z, region, ra, dec, np.arange(n_clusters, dtype=np.int64))


def halos_from_catalogue(
    m500c, redshift, region=None, ra_deg=None, dec_deg=None, n_regions: int = 8, region_side_deg: float = 5.0,
    rng: np.random.Generator | None = None,
) -> HaloSample:
    """A :class:`HaloSample` of given halos; missing regions/positions are drawn as in :func:`draw_halos`."""
    m500c, redshift = np.asarray(m500c, float), np.asarray(redshift, float)
    rng = rng or np.random.default_rng(0)
    r, ra, dec = _region_positions(m500c.size, n_regions, region_side_deg, rng)
    return HaloSample(
        m500c, redshift, np.asarray(region if region is not None else r, dtype=np.int64),
        np.asarray(ra_deg if ra_deg is not None else ra, float), np.asarray(dec_deg if dec_deg is not None else dec, float),
        np.arange(m500c.size, dtype=np.int64),
    )


# ============================================================================ one cluster
@dataclass
class ClusterModel:
    """The 3D model of one cluster (module docstring); lengths in physical kpc."""

    m500c: float
    m200c: float
    c200c: float
    r500_kpc: float
    r200_kpc: float
    z: float
    rotation: np.ndarray  # (3, 3): observer = rotation @ halo frame
    axes: np.ndarray  # (3,) a, b, c of the mass
    gas_axes: np.ndarray
    cool_core: bool
    core_radius_r500: float
    alpha: float
    n0_cm3: float
    pressure_factor: float
    particles_kpc: np.ndarray  # (n, 3) observer frame
    particle_mass: np.ndarray  # (n,) Msun/h
    extras: dict = field(default_factory=dict)


def cluster_model(m500c: float, z: float, model: ImageModel, cosmo: Cosmology, rng: np.random.Generator) -> ClusterModel:
    """Draw the 3D model of a cluster of M500c [Msun/h] at z (module docstring)."""
    c_factor = float(np.exp(model.sigma_ln_c * rng.normal()))
    m200, c200 = (float(v) for v in m200c_from_m500c(m500c, z, c_factor))
    r500 = float(radius_delta_kpc(m500c, z, 500.0, cosmo))
    r200 = float(radius_delta_kpc(m200, z, 200.0, cosmo))
    rotation = Rotation.random(random_state=rng).as_matrix() if model.triaxial else np.eye(3)
    axes = triaxial_axes(rng, model.triaxial)
    gas_axes = np.sqrt(axes) / np.prod(np.sqrt(axes)) ** (1.0 / 3.0)
    r_s = r200 / c200
    y_t = model.truncation_r200 * c200
    m_total = m200 * nfw_m(y_t) / nfw_m(c200)
    # subhalos: dN/dln m ∝ m^-0.9 in [1e-3, 0.1] M200, expected total f_sub M200
    pos_list, mass_list = [], []
    n_part = int(model.n_particles)
    m_sub_total = 0.0
    if model.subhalo_mass_fraction > 0:
        mu = np.geomspace(1e-3, 0.1, 256)
        pdf = mu**-0.9
        mean_mu = np.trapezoid(pdf * mu, np.log(mu)) / np.trapezoid(pdf, np.log(mu))
        n_sub = rng.poisson(model.subhalo_mass_fraction / mean_mu)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(np.log(mu)))])
        mu_sub = np.exp(np.interp(rng.random(n_sub), cdf / cdf[-1], np.log(mu)))
        m_part = m_total / n_part
        for mu_i in mu_sub:
            m_i = mu_i * m200
            d = sample_nfw_radii(1, c200, c200, rng)[0] * r_s  # position within R200
            m_host_d = m200 * nfw_m(d / r_s) / nfw_m(c200)
            r_jacobi = d * (m_i / (3.0 * m_host_d)) ** (1.0 / 3.0)
            c_i = float(duffy08_c200c(m_i, z)) * float(np.exp(model.sigma_ln_c * rng.normal()))
            r200_i = float(radius_delta_kpc(m_i, z, 200.0, cosmo))
            y_j = max(r_jacobi / (r200_i / c_i), 1e-3)
            m_bound = m_i * min(1.0, nfw_m(y_j) / nfw_m(c_i))
            n_i = max(1, int(round(m_bound / m_part)))
            centre = _unit_vectors(1, rng)[0] * d * axes
            r_i = sample_nfw_radii(n_i, c_i, y_j, rng) * (r200_i / c_i)
            pos_list.append(centre + r_i[:, None] * _unit_vectors(n_i, rng))
            mass_list.append(np.full(n_i, m_bound / n_i))
            m_sub_total += m_bound
    m_smooth = max(m_total - m_sub_total, 0.0)
    n_smooth = max(1, int(round(n_part * m_smooth / m_total)))
    r = sample_nfw_radii(n_smooth, c200, y_t, rng) * r_s
    pos_list.insert(0, r[:, None] * _unit_vectors(n_smooth, rng) * axes)
    mass_list.insert(0, np.full(n_smooth, m_smooth / n_smooth))
    particles = np.concatenate(pos_list) @ rotation.T
    # ICM
    cool_core = bool(rng.random() < model.cool_core_fraction)
    rc = model.cool_core_radius_r500 if cool_core else model.core_radius_r500
    alpha = model.cool_core_alpha if cool_core else 0.0
    n0 = gas_density_norm_cm3(m500c, r500, model.gas_fraction_500, rc, model.beta, alpha, cosmo.h)
    d_l, d_t = model.sigma_ln_lx * rng.normal(), model.sigma_ln_t * rng.normal()
    return ClusterModel(
        m500c=float(m500c), m200c=m200, c200c=c200, r500_kpc=r500, r200_kpc=r200, z=float(z), rotation=rotation,
        axes=axes, gas_axes=gas_axes, cool_core=cool_core, core_radius_r500=rc, alpha=alpha,
        n0_cm3=n0 * np.exp(d_l / 2.0), pressure_factor=float(np.exp(d_t + d_l / 2.0)),
        particles_kpc=particles, particle_mass=np.concatenate(mass_list),
    )


def _pixel_edges(npix: int, pixel_kpc: float) -> np.ndarray:
    return (np.arange(npix + 1) - npix / 2.0) * pixel_kpc


def project_particles(positions_kpc: np.ndarray, masses: np.ndarray, view: int, npix: int, pixel_kpc: float) -> np.ndarray:
    """Projected mass map [Msun/h per pixel] (npix, npix), indexed [row = second sky axis, column = first]."""
    sky = [a for a in range(3) if a != view]
    ix = np.floor(positions_kpc[:, sky[0]] / pixel_kpc + npix / 2.0).astype(np.int64)
    iy = np.floor(positions_kpc[:, sky[1]] / pixel_kpc + npix / 2.0).astype(np.int64)
    keep = (ix >= 0) & (ix < npix) & (iy >= 0) & (iy < npix)
    flat = np.bincount(iy[keep] * npix + ix[keep], weights=masses[keep], minlength=npix * npix)
    return flat.reshape(npix, npix)


def _los_nodes(extent_kpc: float, scale_kpc: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """sinh-spaced nodes l in [-extent, extent] and their trapezoid-like weights dl [kpc]."""
    u_max = np.arcsinh(extent_kpc / scale_kpc)
    u = (np.arange(n) + 0.5) / n * 2.0 * u_max - u_max
    return scale_kpc * np.sinh(u), scale_kpc * np.cosh(u) * (2.0 * u_max / n)


def gas_fields(cl: ClusterModel, observer_points_kpc: np.ndarray, model: ImageModel, cosmo: Cosmology):
    """(n_e [cm^-3], P_e [keV cm^-3]) at observer-frame points (..., 3) [kpc]; zero beyond the gas extent."""
    halo = observer_points_kpc @ cl.rotation  # to the halo frame (rotation is orthogonal)
    r_e = np.sqrt(np.sum((halo / cl.gas_axes) ** 2, axis=-1))
    x = np.maximum(r_e / cl.r500_kpc, 1e-4)
    inside = x <= model.gas_extent_r500
    ne = cl.n0_cm3 * beta_density_shape(x, cl.core_radius_r500, model.beta, cl.alpha) * inside
    pe = cl.pressure_factor * arnaud_pressure_kev_cm3(x, cl.m500c, cl.z, cosmo) * inside
    return ne, pe


def compton_y(pressure_kev_cm3: np.ndarray, dl_cm) -> np.ndarray:
    """Compton-y along the last axis: y = sigma_T / (m_e c^2) sum P_e dl.

    Args:
        pressure_kev_cm3: (..., n_los) physical electron pressure n_e k T [keV cm^-3].
        dl_cm: (n_los,) or scalar physical path length per element [cm].
    """
    return SIGMA_T_CM2 / M_E_C2_KEV * np.sum(np.asarray(pressure_kev_cm3) * dl_cm, axis=-1)


def project_gas(
    cl: ClusterModel, view: int, model: ImageModel, cosmo: Cosmology, table: EmissionTable, gas_fn=None
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free X-ray count rates (n_b, npix, npix) [cts/s per pixel] and Compton-y (npix, npix).

    ``gas_fn(points) -> (n_e, P_e)`` replaces :func:`gas_fields` (tests use an isothermal model).
    """
    npix = model.npix
    centres = 0.5 * (_pixel_edges(npix, model.pixel_kpc)[1:] + _pixel_edges(npix, model.pixel_kpc)[:-1])
    l, dl = _los_nodes(model.gas_extent_r500 * cl.r500_kpc, 0.05 * cl.r500_kpc, model.n_los)
    sky = [a for a in range(3) if a != view]
    pts = np.zeros((npix, npix, l.size, 3))
    pts[..., sky[0]] = centres[None, :, None]
    pts[..., sky[1]] = centres[:, None, None]
    pts[..., view] = l[None, None, :]
    ne, pe = gas_fn(pts) if gas_fn is not None else gas_fields(cl, pts, model, cosmo)
    kt = np.where(ne > 0, pe / np.maximum(ne, 1e-300), 0.0)
    kpc_cm = 1e-3 * MPC_CM
    dl_cm = dl * kpc_cm
    y = compton_y(pe, dl_cm)
    em_density = ne**2 / NE_OVER_NH  # n_e n_H [cm^-6]
    rates = _table_rates_at_z(table, kt, cl.z)  # (n_b, npix, npix, n_los); 0 where kT below the table
    d_m_cm = float(comoving_distance_mpc_h(cl.z, cosmo.Omega_m)) * MPC_CM / cosmo.h
    pixel_area_cm2 = (model.pixel_kpc * kpc_cm) ** 2
    cr = np.sum(rates * em_density * dl_cm, axis=-1) * pixel_area_cm2 / (4.0 * np.pi * d_m_cm**2)
    return cr, y


def _table_rates_at_z(table: EmissionTable, kt_kev: np.ndarray, z: float) -> np.ndarray:
    """``table(kt_kev, z)`` for one redshift, fast: the table's rows at z, then 1D log-log in kT.

    The same interpolant as :meth:`EmissionTable.__call__` (bilinear in (log kT, z) of log r)
    at a fixed z; 0 below the table's lowest kT, the last value above its highest.
    """
    rows = np.log(np.maximum(table(table.kt_kev, z), 1e-300))  # (n_b, n_T)
    lt = np.log(np.clip(kt_kev, table.kt_kev[0], table.kt_kev[-1]))
    lgrid = np.log(table.kt_kev)
    out = np.stack([np.exp(np.interp(lt, lgrid, r)) for r in rows])
    return np.where(kt_kev >= table.kt_kev[0], out, 0.0)


def _pixel_arcmin(z: float, pixel_kpc: float, cosmo: Cosmology) -> float:
    d_a_kpc = float(angular_diameter_distance_mpc_h(z, cosmo.Omega_m)) * 1e3 / cosmo.h
    return pixel_kpc / d_a_kpc * (180.0 / np.pi) * 60.0


def observe_cutout(
    icm_rate: np.ndarray, z: float, model: ImageModel, cosmo: Cosmology, agn_rate_per_flux: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photon counts, expected ICM counts, expected AGN counts), each (n_b, npix, npix).

    AGN at uniform positions are added to the rate map; then PSF, background, Poisson.
    """
    pix_arcmin = _pixel_arcmin(z, model.pixel_kpc, cosmo)
    n_b, npix = icm_rate.shape[0], model.npix
    agn = np.zeros_like(icm_rate)
    if model.agn:
        area_deg2 = (npix * pix_arcmin / 60.0) ** 2
        n_exp = (moretti03_n_above(model.agn_flux_min) - moretti03_n_above(model.agn_flux_max)) * area_deg2
        fluxes = _sample_agn_fluxes(n_exp, model.agn_flux_min, model.agn_flux_max, rng)
        iy, ix = rng.integers(0, npix, (2, fluxes.size))
        for b in range(n_b):
            np.add.at(agn[b], (iy, ix), fluxes * agn_rate_per_flux[b])
    sigma_pix = model.psf_fwhm_arcsec / 60.0 / pix_arcmin / (2.0 * np.sqrt(2.0 * np.log(2.0)))

    def psf(maps):
        if sigma_pix <= 0:
            return maps
        return np.stack([ndimage.gaussian_filter(m, sigma_pix, mode="constant", truncate=5.0) for m in maps])

    icm_c, agn_c = psf(icm_rate) * model.exposure_s, psf(agn) * model.exposure_s
    bkg = np.broadcast_to(np.asarray(model.background_cts_s_arcmin2, float), (n_b,))
    mean = icm_c + agn_c + (bkg * pix_arcmin**2 * model.exposure_s)[:, None, None]
    counts = rng.poisson(mean).astype(np.float64) if model.poisson else mean
    return counts, icm_c, agn_c


# ============================================================================ the cutout set
def generate_cutouts(
    halos: HaloSample,
    model: ImageModel,
    cosmo: Cosmology,
    table: EmissionTable,
    response: Response,
    seeds: Sequence[int],
    progress=None,
) -> Cutouts:
    """Cutouts of every halo in ``n_views`` projections (channels xray_<band>..., y, mass).

    Args:
        halos: the halos (M500c, z, region, sky position).
        model: generator parameters.
        table: the emission table r_b(T, z) of the bands to image.
        response: the instrument response (AGN power-law count rates).
        seeds: one seed per halo (``derive_seed(seed, CLUSTER_IMAGES, cluster_id)``).
        progress: optional iterable wrapper (tqdm).

    Returns:
        :class:`Cutouts` with ``extras`` ``icm_counts`` and ``agn_counts`` (expected counts,
        all bands summed) for the saliency studies, and per-cutout ``cool_core``.
    """
    bands = [tuple(float(v) for v in b) for b in np.asarray(table.bands_kev)]
    agn_rate = powerlaw_band_rates_per_flux(response, bands)
    channels = [xray_channel_name(*b) for b in bands]
    images = {c: [] for c in channels + ["y", "mass"]}
    icm_all, agn_all = [], []
    rows = {k: [] for k in ("cluster_id", "view", "region", "redshift", "M500c", "M200c", "R500c_kpc", "R200c_kpc", "ra_deg", "dec_deg", "cool_core", "c200c")}
    it = range(halos.n) if progress is None else progress(range(halos.n))
    for i in it:
        rng = np.random.default_rng(int(seeds[i]))
        cl = cluster_model(float(halos.m500c[i]), float(halos.redshift[i]), model, cosmo, rng)
        for view in range(model.n_views):
            rate, y = project_gas(cl, view, model, cosmo, table)
            counts, icm_c, agn_c = observe_cutout(rate, cl.z, model, cosmo, agn_rate, rng)
            for b, c in enumerate(channels):
                images[c].append(counts[b])
            images["y"].append(y)
            images["mass"].append(project_particles(cl.particles_kpc, cl.particle_mass, view, model.npix, model.pixel_kpc))
            icm_all.append(icm_c.sum(0))
            agn_all.append(agn_c.sum(0))
            for k, v in (("cluster_id", halos.cluster_id[i]), ("view", view), ("region", halos.region[i]), ("redshift", cl.z),
                         ("M500c", cl.m500c), ("M200c", cl.m200c), ("R500c_kpc", cl.r500_kpc), ("R200c_kpc", cl.r200_kpc),
                         ("ra_deg", halos.ra_deg[i]), ("dec_deg", halos.dec_deg[i]), ("cool_core", cl.cool_core), ("c200c", cl.c200c)):
                rows[k].append(v)
    n = len(rows["view"])
    cut = Cutouts(
        images={k: np.asarray(v, np.float32) for k, v in images.items()}, pixel_kpc=model.pixel_kpc,
        cluster_id=rows["cluster_id"], view=rows["view"], region=rows["region"], redshift=rows["redshift"],
        M500c=rows["M500c"], M200c=rows["M200c"], R500c_kpc=rows["R500c_kpc"], R200c_kpc=rows["R200c_kpc"],
        exposure_s=np.full(n, model.exposure_s), ra_deg=rows["ra_deg"], dec_deg=rows["dec_deg"], source="generator",
        extras={"icm_counts": np.asarray(icm_all, np.float32), "agn_counts": np.asarray(agn_all, np.float32),
                "cool_core": np.asarray(rows["cool_core"], np.int8), "c200c": np.asarray(rows["c200c"])},
    )
    return cut
