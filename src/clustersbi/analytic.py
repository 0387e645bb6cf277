"""Analytic XOD model: Tinker08 mass function x XXL scaling relations -> expected counts.

The traditional forward model of cerardi-ldl-xod-npe (section 4.1, Table 2 "2+6", section 5.1
and Fig. 11), the reference against which the neural inference is validated:

    lambda_i(theta) = Omega_sky int dz dV/dz/dOmega int dlnM dn/dlnM(M500c, z)
                      int dlnT P(lnT | M, z) int dlnL P(lnL | T, z)  1_i(log10 CR, HR, z) 1[CR > cut]

* mass function: Tinker et al. (2008, ApJ 688, 709; eqs. 2-8 and Table 2), at M500c, i.e.
  Delta = 500 rho_c(z), converted to Delta_m = 500 / Omega_m(z) for the interpolation of the
  Table 2 parameters; sigma(M) from the CAMB linear P(k) (:func:`sigma_table`) and the linear
  growth of flat Lambda-CDM;
* scaling relations (the XXL relations used by Pacaud et al. 2018, A&A 620, A10):
  M500-T of Lieu et al. (2016, A&A 592, A4) and bolometric L500-T of Giles et al. (2016, A&A
  592, A3), each a power law with E(z) evolution and log-normal scatter (:class:`XxlParameters`);
* count rates through the same emission table r_b(T, z) and instrument response as the
  simulation chain (:mod:`clustersbi.xray.emission`): CR_b = L r_b(T, z) / (Lambda_L(T) 4 pi D_M^2),
  with Lambda_L the band luminosity per unit emission measure of the same plasma model;
  CR = CR_[0.5-1] + CR_[1-2], HR = CR_[1-2] / CR_[0.5-1];
* the scatter is integrated by quadrature, never sampled: T | M by Gauss-Hermite over ln M, and
  L | T exactly (log10 CR is Gaussian at fixed T, so each CR bin is a difference of normal CDFs).
  HR depends only on (T, z), which no parameter changes, so the HR bins are fixed intervals in
  T at each redshift and the quadrature nodes are placed once (:func:`xod_quadrature`).

Then Poisson mock XODs, the exact Poisson likelihood, the Fisher matrix by JAX autodiff and an
exact-posterior sampler (emcee, Foreman-Mackey et al. 2013).

Units: masses in Msun/h (M500c), comoving distances in Mpc/h, number densities in (Mpc/h)^-3,
temperatures in keV, luminosities in erg/s, count rates in cts/s, areas in deg^2.

JAX runs in float64 inside :func:`jax_float64`: the functions that return numpy arrays
(:func:`expected_xods`, :func:`fisher_matrix`, :func:`xod_log_posterior`) enter it themselves;
call the jnp functions (:func:`expected_xod`, :func:`xod_function`, ...) inside that block.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, ndtr, xlogy
from scipy.interpolate import CubicSpline

from .constants import HUBBLE_DISTANCE_MPC_H, KEV_ERG, MPC_CM, RHO_CRIT_MSUN_H_MPC_H3
from .cosmology import Cosmology, camb_power
from .xod import XodBins
from .xray.emission import ApecEmulatorBackend, EmissionTable

__all__ = [
    "jax_float64",
    # mass function
    "TINKER08_DELTA_M",
    "omega_m_of_z",
    "efunc_jnp",
    "growth_factor_jnp",
    "comoving_distance_jnp",
    "tinker08_parameters",
    "tinker08_multiplicity",
    "tinker08_dndlnm",
    "lagrangian_radius_mpc_h",
    "tophat_sigma",
    "extend_power_law",
    "SigmaTable",
    "OMEGA_M_NODES",
    "sigma_table",
    "sigma_of_mass",
    "mass_function_dndlnm",
    # scaling relations
    "XxlParameters",
    "FIDUCIAL_XXL",
    "FREE_PARAMETERS",
    "XXL_MASS_PIVOT_MSUN_H70",
    "XXL_T_PIVOT_LT_KEV",
    "mean_ln_temperature",
    "mean_ln_luminosity",
    "luminosity_h70_to_erg_s",
    # count rates and the XOD
    "BandLuminosity",
    "band_luminosity",
    "count_rates_cts_s",
    "hardness_ratio",
    "XodQuadrature",
    "xod_quadrature",
    "AnalyticXodModel",
    "expected_xod",
    "expected_counts_per_z_bin",
    "xod_function",
    "counts_per_z_function",
    "params_from_vector",
    "expected_xods",
    "mock_xods",
    # likelihood, Fisher, posterior
    "poisson_log_likelihood",
    "fisher_matrix",
    "FisherForecast",
    "fisher_forecast",
    "PosteriorSamples",
    "sample_posterior",
    "xod_log_posterior",
]


@contextlib.contextmanager
def jax_float64() -> Iterator[None]:
    """Run JAX in float64 inside the block, restoring the previous setting after.

    The Poisson log-likelihood of ~10^3 clusters changes by O(1) across a posterior: float32
    (7 digits) is not enough. jax.experimental.enable_x64 is gone from recent jax, hence this.
    Not thread-safe (it flips a global flag).
    """
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


# ============================================================================ background (jnp)
# Gauss-Legendre nodes on [-1, 1] for the smooth background integrals (as clustersbi.cosmology).
_GL_X, _GL_W = np.polynomial.legendre.leggauss(64)


def efunc_jnp(z, omega_m):
    """E(z) = H(z)/H0 of flat Lambda-CDM without radiation (as :func:`clustersbi.cosmology.efunc`)."""
    return jnp.sqrt(omega_m * (1.0 + z) ** 3 + 1.0 - omega_m)


def omega_m_of_z(z, omega_m):
    """Omega_m(z) = Omega_m (1+z)^3 / E(z)^2."""
    return omega_m * (1.0 + z) ** 3 / efunc_jnp(z, omega_m) ** 2


def _integrate_0_to(upper, integrand):
    upper = jnp.asarray(upper)
    half = 0.5 * upper[..., None]
    nodes = half * (jnp.asarray(_GL_X) + 1.0)
    return jnp.sum(half * jnp.asarray(_GL_W) * integrand(nodes), axis=-1)


def comoving_distance_jnp(z, omega_m):
    """Comoving distance chi(z) = D_M(z) [Mpc/h] (flat), 64-node Gauss-Legendre in z."""
    return HUBBLE_DISTANCE_MPC_H * _integrate_0_to(z, lambda x: 1.0 / efunc_jnp(x, omega_m))


def growth_factor_jnp(z, omega_m):
    """Linear growth D(z)/D(0), flat Lambda-CDM without radiation (Heath 1977).

    D(a) proportional to E(a) int_0^a da' / (a' E(a'))^3, as :func:`clustersbi.cosmology.growth_factor`.
    """

    def unnormalised(a):
        e = lambda s: jnp.sqrt(omega_m / s**3 + 1.0 - omega_m)
        return e(a) * _integrate_0_to(a, lambda s: 1.0 / (s * e(s)) ** 3)

    a = 1.0 / (1.0 + jnp.asarray(z))
    return unnormalised(a) / unnormalised(jnp.ones(()))


# ============================================================================ Tinker et al. 2008
#: Tinker et al. (2008) Table 2: overdensities relative to the mean density and f(sigma) parameters.
TINKER08_DELTA_M = np.array([200.0, 300.0, 400.0, 600.0, 800.0, 1200.0, 1600.0, 2400.0, 3200.0])
_TINKER08_A0 = np.array([0.186, 0.200, 0.212, 0.218, 0.248, 0.255, 0.260, 0.260, 0.260])
_TINKER08_a0 = np.array([1.47, 1.52, 1.56, 1.61, 1.87, 2.13, 2.30, 2.53, 2.66])
_TINKER08_b0 = np.array([2.57, 2.25, 2.05, 1.87, 1.59, 1.51, 1.46, 1.44, 1.41])
_TINKER08_c0 = np.array([1.19, 1.27, 1.34, 1.45, 1.58, 1.80, 1.97, 2.24, 2.44])


def tinker08_parameters(delta_m, z):
    """(A, a, b, c) of Tinker et al. (2008) eqs. 5-8 at overdensity ``delta_m`` (mean) and z.

    Table 2 is interpolated linearly in Delta_m, as colossus does (Tinker et al. only say the
    parameters vary smoothly; a cubic spline in ln Delta_m would change f by up to 7% at
    sigma = 0.3 between nodes). At M500c the interpolation has kinks where Delta_m(z) crosses a
    node (Delta_m = 1200 at z = 0.19 for Omega_m = 0.3): dN/dz is continuous with a slope change
    of ~0.2% per 0.01 in z there. Outside 200 <= Delta_m <= 3200 (their calibrated range) the
    end values are held; only the b-evolution exponent alpha(Delta) keeps its formula (eq. 8).
    A(z) = A0 (1+z)^-0.14, a(z) = a0 (1+z)^-0.06, b(z) = b0 (1+z)^-alpha,
    log10 alpha = -[0.75 / log10(Delta_m / 75)]^1.2.
    """
    delta_m = jnp.asarray(delta_m)
    zp1 = 1.0 + jnp.asarray(z)
    a0 = jnp.interp(delta_m, TINKER08_DELTA_M, _TINKER08_a0)
    amp0 = jnp.interp(delta_m, TINKER08_DELTA_M, _TINKER08_A0)
    b0 = jnp.interp(delta_m, TINKER08_DELTA_M, _TINKER08_b0)
    c0 = jnp.interp(delta_m, TINKER08_DELTA_M, _TINKER08_c0)
    alpha = 10.0 ** (-((0.75 / jnp.log10(delta_m / 75.0)) ** 1.2))
    return amp0 * zp1**-0.14, a0 * zp1**-0.06, b0 * zp1**-alpha, c0


def tinker08_multiplicity(sigma, delta_m, z):
    """f(sigma) = A [(sigma/b)^-a + 1] exp(-c / sigma^2) (Tinker et al. 2008, eq. 3)."""
    amp, a, b, c = tinker08_parameters(delta_m, z)
    return amp * ((sigma / b) ** (-a) + 1.0) * jnp.exp(-c / sigma**2)


def tinker08_dndlnm(mass_msun_h, z, omega_m, sigma, dlnsigma_dlnm, delta_c: float = 500.0):
    """dn/dlnM [(Mpc/h)^-3, comoving] of Tinker et al. (2008, eq. 2) at M_Delta_c (critical).

    dn/dlnM = f(sigma) rho_m0 / M |dln sigma / dln M|, with Delta_m = Delta_c / Omega_m(z).

    Args:
        mass_msun_h: M_Delta [Msun/h], any shape.
        z: redshift, broadcastable.
        omega_m: Omega_m at z = 0.
        sigma: sigma(M, z), the rms linear overdensity in the Lagrangian radius of M (same shape).
        dlnsigma_dlnm: d ln sigma / d ln M (negative), same shape.
        delta_c: overdensity relative to the critical density (500 for M500c).
    """
    delta_m = delta_c / omega_m_of_z(z, omega_m)
    rho_m0 = RHO_CRIT_MSUN_H_MPC_H3 * omega_m
    return tinker08_multiplicity(sigma, delta_m, z) * rho_m0 / mass_msun_h * jnp.abs(dlnsigma_dlnm)


# ============================================================================ sigma(M) from CAMB
def lagrangian_radius_mpc_h(mass_msun_h, omega_m):
    """R(M) = (3 M / (4 pi rho_m0))^(1/3) [Mpc/h], comoving."""
    return (3.0 * np.asarray(mass_msun_h) / (4.0 * np.pi * RHO_CRIT_MSUN_H_MPC_H3 * omega_m)) ** (1.0 / 3.0)


def _tophat_and_derivative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W(x) = 3 (sin x - x cos x) / x^3 and dW/dx, with their series below x = 0.01."""
    small = x < 1e-2
    xs = np.where(small, 1.0, x)
    w = np.where(small, 1.0 - x**2 / 10.0, 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3)
    dw = np.where(small, -x / 5.0, 3.0 * ((xs**2 - 3.0) * np.sin(xs) + 3.0 * xs * np.cos(xs)) / xs**4)
    return w, dw


def tophat_sigma(k_h_mpc: np.ndarray, pk_mpc3_h3: np.ndarray, radius_mpc_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigma(R) and d ln sigma / d ln R for a top-hat window, by the trapezoid rule in ln k.

    sigma^2(R) = 1/(2 pi^2) int dk k^2 P(k) W^2(kR) (as :func:`clustersbi.cosmology.sigma_r`),
    d sigma^2/dR = 1/(2 pi^2) int dk k^3 P(k) 2 W(kR) W'(kR).

    Args:
        k_h_mpc: (n_k,) log-spaced wavenumbers [h/Mpc] (dense: ~200 points per decade).
        pk_mpc3_h3: (n_k,) linear P(k) [(Mpc/h)^3].
        radius_mpc_h: (n_R,) radii [Mpc/h].

    Returns:
        (sigma, dln sigma / dln R), each (n_R,).
    """
    k = np.asarray(k_h_mpc, dtype=float)
    r = np.atleast_1d(np.asarray(radius_mpc_h, dtype=float))
    lnk = np.log(k)
    w, dw = _tophat_and_derivative(k[None] * r[:, None])
    base = k**3 * np.asarray(pk_mpc3_h3, dtype=float) / (2.0 * np.pi**2)
    sigma2 = np.trapezoid(base * w**2, lnk, axis=-1)
    # R dsigma^2/dR = int dlnk k^3 P/(2 pi^2) 2 W W' kR
    r_dsigma2_dr = np.trapezoid(base * 2.0 * w * dw * k[None] * r[:, None], lnk, axis=-1)
    return np.sqrt(sigma2), 0.5 * r_dsigma2_dr / sigma2


def extend_power_law(
    k_h_mpc: np.ndarray, pk: np.ndarray, k_max_h_mpc: float, n_fit: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Continue a log-spaced P(k) to ``k_max_h_mpc`` with the log-log slope of its last points.

    CAMB's run time grows with its k_max (0.5 s to 10 h/Mpc, 4 s to 100 h/Mpc); beyond
    10 h/Mpc the linear P(k) bends slowly in log-log (slope -2.6 at 10 h/Mpc, -2.7 at 50), and
    the top-hat window suppresses those scales: against CAMB run to 100 h/Mpc, sigma(M) changes
    by < 3e-6 and d ln sigma / d ln M by < 3e-5 for M >= 1e11 Msun/h.
    """
    k = np.asarray(k_h_mpc, dtype=float)
    p = np.asarray(pk, dtype=float)
    if k_max_h_mpc <= k[-1]:
        return k, p
    slope = np.polyfit(np.log(k[-n_fit:]), np.log(p[-n_fit:]), 1)[0]
    dlnk = np.log(k[-1] / k[-2])
    n_new = int(np.ceil(np.log(k_max_h_mpc / k[-1]) / dlnk))
    k_new = k[-1] * np.exp(dlnk * np.arange(1, n_new + 1))
    return np.concatenate([k, k_new]), np.concatenate([p, p[-1] * (k_new / k[-1]) ** slope])


@dataclass(frozen=True)
class SigmaTable:
    """ln sigma(M) at z = 0 for sigma_8 = 1, on an (Omega_m, ln M) grid, cubic in Omega_m.

    sigma(M, z; Omega_m, sigma_8) = sigma_8 D(z) exp(ln_sigma(M; Omega_m)): linear P(k) is
    proportional to sigma_8^2, so only Omega_m changes the shape. The other cosmological
    parameters (h, n_s, Omega_b) are those of ``cosmology``.

    Attributes:
        omega_m: (n_om,) increasing Omega_m nodes.
        ln_mass: (n_m,) ln(M / [Msun/h]), increasing, uniform.
        ln_sigma: (n_om, n_m) ln sigma(M) at z = 0 for sigma_8 = 1 (normalised by the same
            quadrature, so sigma(R = 8 Mpc/h) = 1 exactly).
        dlnsigma_dlnm: (n_om, n_m) d ln sigma / d ln M.
        cosmology: the fixed parameters.
    """

    omega_m: np.ndarray
    ln_mass: np.ndarray
    ln_sigma: np.ndarray
    dlnsigma_dlnm: np.ndarray
    cosmology: Cosmology = field(default_factory=Cosmology)

    def __post_init__(self) -> None:
        steps = np.diff(self.ln_mass)
        if self.ln_mass.size < 2 or not np.allclose(steps, steps[0], rtol=1e-9):
            raise ValueError("SigmaTable.ln_mass must be uniform and increasing")

    @property
    def _splines(self):
        return (
            CubicSpline(self.omega_m, self.ln_sigma, axis=0, bc_type="not-a-knot").c,
            CubicSpline(self.omega_m, self.dlnsigma_dlnm, axis=0, bc_type="not-a-knot").c,
        )


#: Omega_m nodes covering the cerardi prior U(0.1, 0.5) with one node of margin; spacing 0.04
#: interpolates sigma(M) to < 1e-5 (tested at 0.05 spacing against a direct CAMB run).
OMEGA_M_NODES = np.round(np.arange(0.06, 0.5401, 0.04), 2)


def sigma_table(
    omega_m_grid: Sequence[float] = OMEGA_M_NODES,
    cosmology: Cosmology = Cosmology(),
    mass_range_msun_h: tuple[float, float] = (1e11, 10**16.5),
    n_mass: int = 400,
    k_camb_max_h_mpc: float = 10.0,
    k_max_h_mpc: float = 1e3,
    points_per_decade: int = 200,
) -> SigmaTable:
    """Tabulate sigma(M) from CAMB linear P(k) at z = 0 on Omega_m nodes (one CAMB run each).

    Args:
        omega_m_grid: (n_om >= 4,) increasing Omega_m nodes; the model is valid between the
            first and last (cubic spline in between; outside, extrapolated by the end cubic).
        cosmology: h, n_s, Omega_b of every node (its Omega_m and sigma_8 are replaced).
        mass_range_msun_h: table range [Msun/h]; masses outside are clamped to its ends (the
            quadrature reaches below 1e11 only for T < 0.1 keV, far below any CR cut).
        n_mass: number of log-spaced masses.
        k_camb_max_h_mpc: largest k asked of CAMB; :func:`extend_power_law` continues it.
        k_max_h_mpc: upper end of the sigma integrals; the lower end is 1e-4 h/Mpc.
        points_per_decade: density of the log-spaced k grid.
    """
    om = np.asarray(omega_m_grid, dtype=float)
    if om.ndim != 1 or om.size < 4 or np.any(np.diff(om) <= 0):
        raise ValueError(f"omega_m_grid must hold >= 4 increasing values, got {om}")
    k_camb = np.geomspace(1e-4, k_camb_max_h_mpc, int(points_per_decade * np.log10(k_camb_max_h_mpc / 1e-4)) + 1)
    ln_m = np.linspace(np.log(mass_range_msun_h[0]), np.log(mass_range_msun_h[1]), n_mass)
    ln_sigma = np.empty((om.size, n_mass))
    slope = np.empty((om.size, n_mass))
    for i, omega_m in enumerate(om):
        node = replace(cosmology, Omega_m=float(omega_m), sigma_8=1.0)
        lin = camb_power(node, [0.0], k_camb)
        k, pk = extend_power_law(lin.k_h_mpc, lin.pk_mpc3_h3[0], k_max_h_mpc)
        pk = pk / tophat_sigma(k, pk, np.array([8.0]))[0][0] ** 2
        sig, dlns_dlnr = tophat_sigma(k, pk, lagrangian_radius_mpc_h(np.exp(ln_m), omega_m))
        ln_sigma[i], slope[i] = np.log(sig), dlns_dlnr / 3.0
    return SigmaTable(om, ln_m, ln_sigma, slope, cosmology)


def _pp_eval(breaks, coeffs, x):
    """Evaluate a scipy piecewise cubic (coeffs (4, n-1, ...), highest power first) at scalar x."""
    i = jnp.clip(jnp.searchsorted(breaks, x, side="right") - 1, 0, breaks.shape[0] - 2)
    dx = x - breaks[i]
    c = coeffs[:, i]
    return ((c[0] * dx + c[1]) * dx + c[2]) * dx + c[3]


def _sigma_rows(table: SigmaTable, omega_m):
    """(ln sigma, dln sigma/dln M) on table.ln_mass at one Omega_m (traced), each (n_m,)."""
    c_sig, c_slope = table._splines
    breaks = jnp.asarray(table.omega_m)
    return _pp_eval(breaks, jnp.asarray(c_sig), omega_m), _pp_eval(breaks, jnp.asarray(c_slope), omega_m)


def _uniform_interp(x, grid: np.ndarray, rows):
    """Linear interpolation of each of ``rows`` (n,) at x on the uniform ``grid``, clamped at its ends.

    Same result as jnp.interp without its search: the cell index is computed from the spacing.
    """
    x0, dx, n = float(grid[0]), float(grid[1] - grid[0]), grid.size
    u = jnp.clip((x - x0) / dx, 0.0, n - 1.0)
    i = jnp.minimum(jnp.floor(u).astype(jnp.int32), n - 2)
    frac = u - i
    return tuple(r[i] * (1.0 - frac) + r[i + 1] * frac for r in rows)


def sigma_of_mass(table: SigmaTable, mass_msun_h, omega_m):
    """(ln sigma(M, z=0) for sigma_8 = 1, dln sigma/dln M) at masses [Msun/h] (jnp, any shape)."""
    ln_sig_row, slope_row = _sigma_rows(table, omega_m)
    lnm = jnp.log(mass_msun_h)
    grid = jnp.asarray(table.ln_mass)
    return jnp.interp(lnm, grid, ln_sig_row), jnp.interp(lnm, grid, slope_row)


def mass_function_dndlnm(table: SigmaTable, mass_msun_h, z, omega_m, sigma_8, delta_c: float = 500.0):
    """Tinker08 dn/dlnM [(Mpc/h)^-3] at M500c (``delta_c`` = 500) from the CAMB sigma table.

    Args:
        table: :class:`SigmaTable`.
        mass_msun_h: masses [Msun/h], any shape; z: redshift(s), broadcastable.
        omega_m, sigma_8: the cosmology (other parameters from ``table.cosmology``).
    """
    ln_sig, slope = sigma_of_mass(table, mass_msun_h, omega_m)
    z = jnp.asarray(z)
    sigma = sigma_8 * growth_factor_jnp(z, omega_m) * jnp.exp(ln_sig)
    return tinker08_dndlnm(mass_msun_h, z, omega_m, sigma, slope, delta_c)


# ============================================================================ XXL scaling relations
class XxlParameters(NamedTuple):
    """Cosmology + XXL scaling relations (a JAX pytree; fields may be arrays for vmap).

    The forms of the XXL relations that Pacaud et al. (2018) build their model on; the default
    values are those of the papers that fitted them (see :data:`FIDUCIAL_XXL`).

    M-T (Lieu et al. 2016, weak-lensing masses, XXL+COSMOS+CCCP fit):
        M500 / (1e14 h70^-1 Msun) = m0 (T / 1 keV)^alpha_mt E(z)^gamma_mt,
        ln T log-normal at fixed M with standard deviation sigma_ln_t_m.
    L-T (Giles et al. 2016, bolometric L500):
        L500 / (1e44 h70^-2 erg/s) = l0 (T / 3 keV)^alpha_lt E(z)^gamma_lt,
        ln L log-normal at fixed T with standard deviation sigma_ln_l_t.
    The relations give the mean of ln T and ln L (the median, not the mean, of T and L).
    """

    omega_m: float = 0.3
    sigma_8: float = 0.8
    m0: float = 0.372
    alpha_mt: float = 1.67
    gamma_mt: float = -1.0
    l0: float = 0.71
    alpha_lt: float = 3.08
    gamma_lt: float = 1.64
    sigma_ln_t_m: float = 0.12
    sigma_ln_l_t: float = 0.67


#: Fiducial point: cerardi Table 1 cosmology (Omega_m = 0.3, sigma_8 = 0.8; h, n_s, Omega_b from
#: the sigma table's cosmology) and the XXL relations: M-T normalisation 10^13.57 h70^-1 Msun at
#: 1 keV and slope 1.67 (Lieu et al. 2016, XXL+COSMOS+CCCP), self-similar E(z)^-1; bolometric
#: L-T normalisation 0.71e44 h70^-2 erg/s at 3 keV, slope 3.08, evolution E(z)^1.64 and scatter
#: 0.67 (Giles et al. 2016); sigma_lnT|M = 0.12. These are not read from Pacaud et al. (2018)
#: Table 1: check them against it before quoting results as that model's; any of them can be
#: replaced (``FIDUCIAL_XXL._replace(...)``).
FIDUCIAL_XXL = XxlParameters()

#: The "2+6" free parameters of cerardi Table 2 (Fig. 11 shows M_0, alpha_MT, gamma_MT among
#: them); the two scatters are held fixed.
FREE_PARAMETERS = ("omega_m", "sigma_8", "m0", "alpha_mt", "gamma_mt", "l0", "alpha_lt", "gamma_lt")

#: M-T mass unit: 1e14 h70^-1 Msun = 0.7e14 Msun/h (M[Msun/h] = 0.7 M[h70^-1 Msun], any h).
XXL_MASS_PIVOT_MSUN_H70 = 1e14
#: L-T temperature pivot [keV].
XXL_T_PIVOT_LT_KEV = 3.0


def mean_ln_temperature(mass_msun_h, z, params: XxlParameters):
    """Mean ln(T / keV) at fixed M500c [Msun/h] and z (M-T relation of :class:`XxlParameters`)."""
    m_h70 = mass_msun_h / 0.7
    ln_e = jnp.log(efunc_jnp(z, params.omega_m))
    return (jnp.log(m_h70 / (XXL_MASS_PIVOT_MSUN_H70 * params.m0)) - params.gamma_mt * ln_e) / params.alpha_mt


def mean_ln_luminosity(kt_kev, z, params: XxlParameters):
    """Mean ln(L / [h70^-2 erg/s]) at fixed T [keV] and z (bolometric L-T of :class:`XxlParameters`)."""
    ln_e = jnp.log(efunc_jnp(z, params.omega_m))
    return jnp.log(1e44 * params.l0) + params.alpha_lt * jnp.log(kt_kev / XXL_T_PIVOT_LT_KEV) + params.gamma_lt * ln_e


def luminosity_h70_to_erg_s(l_h70, h: float):
    """L [erg/s] from L [h70^-2 erg/s]: multiply by (0.7 / h)^2."""
    return l_h70 * (0.7 / h) ** 2


# ============================================================================ count rates
@dataclass(frozen=True)
class BandLuminosity:
    """Band luminosity per unit emission measure, Lambda_L(T) [erg s^-1 cm^3], on a kT grid.

    L = EM Lambda_L(T) for EM = n_e n_H V, the emission-measure convention of
    :class:`clustersbi.xray.emission.EmissionTable`. Interpolated linearly in log-log.
    """

    kt_kev: np.ndarray
    erg_s_cm3: np.ndarray
    band_kev: tuple[float, float]

    def __call__(self, kt_kev):
        return np.exp(np.interp(np.log(kt_kev), np.log(self.kt_kev), np.log(self.erg_s_cm3)))


def band_luminosity(
    backend,
    kt_kev: np.ndarray,
    band_kev: tuple[float, float] = (0.01, 100.0),
    metallicity: float = 0.3,
    n_bins: int = 4000,
) -> BandLuminosity:
    """Rest-frame band luminosity per unit emission measure of an emission backend.

    Lambda_L(T) = int_band E eps(E; T) dE, with eps the backend's photon emissivity per unit
    n_e n_H (:mod:`clustersbi.xray.emission`), integrated on ``n_bins`` log-spaced bins (the APEC
    emulator on its native bins, which stop at 50 keV: it misses ~exp(-50 keV / kT) of the
    bolometric output, 0.2% at 8 keV, 3.6% at 15 keV). The default band is "bolometric"
    (0.01-100 keV), the L of Giles et al. (2016).

    Args:
        backend: ``BremsstrahlungBackend``, ``ApecEmulatorBackend`` or ``ApecBackend``.
        kt_kev: (n_T,) temperatures [keV].
        band_kev: rest-frame band [keV].
        metallicity: solar units (used by the APEC emulator; the others carry their own).
    """
    kt = np.asarray(kt_kev, dtype=float)
    lo, hi = float(band_kev[0]), float(band_kev[1])
    if isinstance(backend, ApecEmulatorBackend):
        edges = backend.edges_kev
        photons = backend.binned_spectrum_native(kt, metallicity)
    else:
        edges = np.geomspace(lo, hi, n_bins + 1)
        photons = backend.binned_spectrum(kt, edges)
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None) / np.diff(edges)
    e_mid = np.sqrt(edges[1:] * edges[:-1])
    return BandLuminosity(kt, np.sum(photons * (e_mid * overlap * KEV_ERG), axis=-1), (lo, hi))


def count_rates_cts_s(
    luminosity_erg_s: np.ndarray,
    kt_kev: np.ndarray,
    z: np.ndarray,
    table: EmissionTable,
    band_lum: BandLuminosity,
    comoving_distance_mpc_h: np.ndarray,
    h: float,
) -> np.ndarray:
    """Count rate per band [cts/s] of clusters of luminosity L, temperature T at redshift z.

    CR_b = EM r_b(T, z) / (4 pi D_M^2) with EM = L / Lambda_L(T) (module equations).

    Args:
        luminosity_erg_s: L in the band of ``band_lum`` [erg/s], any shape.
        kt_kev, z: same shape (z broadcastable).
        table: r_b(T, z) [cts s^-1 cm^5].
        band_lum: Lambda_L(T) of the same plasma model.
        comoving_distance_mpc_h: D_M(z) [Mpc/h], broadcastable.
        h: H0 / (100 km/s/Mpc).

    Returns:
        (n_b, *shape) count rates.
    """
    em = np.asarray(luminosity_erg_s) / band_lum(kt_kev)
    d_cm = np.asarray(comoving_distance_mpc_h) * MPC_CM / h
    return em[None] * table(kt_kev, z) / (4.0 * np.pi * d_cm**2)


def hardness_ratio(rates: np.ndarray) -> np.ndarray:
    """HR = CR_[1-2] / CR_[0.5-1] from (2, ...) band rates (band order of the table)."""
    return rates[1] / rates[0]


# ============================================================================ quadrature
@dataclass(frozen=True)
class XodQuadrature:
    """Quadrature nodes of the XOD integral that no parameter moves.

    Redshift nodes are Gauss-Legendre in segments between the XOD z edges and the emission
    table's z nodes; at each redshift node, ln T nodes are Gauss-Legendre in segments between
    the table's kT nodes and the temperatures where HR(T, z) crosses an HR edge (exact: within a
    table cell the table's ln HR is linear in ln T), so each segment lies in one HR bin.

    Attributes:
        z: (n_zn,) redshift nodes; z_weight: (n_zn,) dz weights; z_bin: (n_zn,) XOD z bin.
        point_z: (n_p,) index of each (z, T) point's redshift node.
        ln_kt: (n_p,) ln(T / keV); ln_kt_weight: (n_p,) d lnT weights.
        hr_bin: (n_p,) HR bin of the point, -1 outside the HR edges.
        log10_rate_per_lum: (n_p,) log10[(r_0 + r_1)(T, z) / Lambda_L(T)] [cts s^-1 cm^2 / (erg/s)].
        log_cr_edges: (n_cr + 1,) log10 CR edges; log_cr_cut: log10 of the CR cut [cts/s].
        n_hr, n_z: numbers of HR and z bins.
    """

    z: np.ndarray
    z_weight: np.ndarray
    z_bin: np.ndarray
    point_z: np.ndarray
    ln_kt: np.ndarray
    ln_kt_weight: np.ndarray
    hr_bin: np.ndarray
    log10_rate_per_lum: np.ndarray
    log_cr_edges: np.ndarray
    log_cr_cut: float
    n_hr: int
    n_z: int

    @property
    def shape(self) -> tuple[int, int, int]:
        """XOD shape (n_cr, n_hr, n_z), as :func:`clustersbi.xod.xod_histogram`."""
        return (self.log_cr_edges.size - 1, self.n_hr, self.n_z)


def _segments(breaks: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes, weights and segment index over consecutive ``breaks``."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    lo, hi = breaks[:-1, None], breaks[1:, None]
    half = 0.5 * (hi - lo)
    nodes = lo + half * (x + 1.0)
    weights = half * w
    seg = np.repeat(np.arange(breaks.size - 1), n_nodes)
    return nodes.ravel(), weights.ravel(), seg


def _merge_breaks(values: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Sorted unique break points, merging those closer than ``tol`` (rounding of edge grids)."""
    v = np.sort(np.asarray(values, dtype=float))
    return v[np.concatenate([[True], np.diff(v) > tol])]


def _hr_crossings(ln_t: np.ndarray, ln_hr: np.ndarray, ln_edges: np.ndarray) -> np.ndarray:
    """ln T where ln HR (linear between the given points) crosses each edge."""
    out = []
    for e in ln_edges:
        d = ln_hr - e
        cross = np.nonzero(d[:-1] * d[1:] < 0)[0]
        frac = d[cross] / (d[cross] - d[cross + 1])
        out.append(ln_t[cross] + frac * (ln_t[cross + 1] - ln_t[cross]))
    return np.concatenate(out) if out else np.empty(0)


def xod_quadrature(
    bins: XodBins,
    table: EmissionTable,
    band_lum: BandLuminosity,
    cr_cut_cts_s: float = 0.02,
    kt_range_kev: tuple[float, float] = (0.1, 30.0),
    n_z_nodes: int = 3,
    n_t_nodes: int = 3,
) -> XodQuadrature:
    """Place the (z, T) quadrature of the XOD integral (see :class:`XodQuadrature`).

    Args:
        bins: XOD edges (log10 CR of CR_[0.5-2], HR, z).
        table: band rates r_b(T, z) with two bands, [0.5-1] and [1-2] keV.
        band_lum: Lambda_L(T), the luminosity per emission measure of the L-T band.
        cr_cut_cts_s: selection CR_[0.5-2] > cut (cerardi: 0.02 cts/s).
        kt_range_kev: temperatures integrated over; inside the table's kT range. At the
            fiducial point clusters below 0.5 keV make 5e-6 of the counts, above 10 keV 1e-4.
        n_z_nodes, n_t_nodes: Gauss-Legendre nodes per z and ln T segment.
    """
    if table.rate.shape[0] != 2:
        raise ValueError(f"the XOD needs two bands ([0.5-1], [1-2] keV), the table has {table.rate.shape[0]}")
    t_lo, t_hi = kt_range_kev
    if not table.kt_kev[0] <= t_lo < t_hi <= table.kt_kev[-1]:
        raise ValueError(
            f"kt_range_kev {kt_range_kev} must lie inside the emission table's [{table.kt_kev[0]}, {table.kt_kev[-1]}] keV"
        )
    if bins.z[0] < table.z[0] or bins.z[-1] > table.z[-1]:
        raise ValueError(f"XOD z edges [{bins.z[0]}, {bins.z[-1]}] outside the emission table's z range")
    z_inner = table.z[(table.z > bins.z[0]) & (table.z < bins.z[-1])]
    z_breaks = _merge_breaks(np.concatenate([bins.z, z_inner]))
    z_nodes, z_w, z_seg = _segments(z_breaks, n_z_nodes)
    z_bin = np.searchsorted(bins.z, 0.5 * (z_breaks[z_seg] + z_breaks[z_seg + 1]), side="right") - 1

    ln_t_table = np.log(table.kt_kev[(table.kt_kev > t_lo) & (table.kt_kev < t_hi)])
    ln_t_base = np.concatenate([[np.log(t_lo)], ln_t_table, [np.log(t_hi)]])
    ln_hr_edges = np.log(bins.hr[bins.hr > 0])
    points = {k: [] for k in ("z", "lnt", "w", "hr", "q")}
    for iz, z in enumerate(z_nodes):
        rates = table(np.exp(ln_t_base), z)
        ln_hr = np.log(rates[1] / rates[0])
        t_breaks = _merge_breaks(np.concatenate([ln_t_base, _hr_crossings(ln_t_base, ln_hr, ln_hr_edges)]))
        lnt, w, seg = _segments(t_breaks, n_t_nodes)
        mid = np.exp(0.5 * (t_breaks[:-1] + t_breaks[1:]))
        hr_mid = hardness_ratio(table(mid, z))
        label = np.searchsorted(bins.hr, hr_mid, side="right") - 1
        label = np.where((label >= 0) & (label < bins.hr.size - 1), label, -1)
        r = table(np.exp(lnt), z)
        points["z"].append(np.full(lnt.size, iz))
        points["lnt"].append(lnt)
        points["w"].append(w)
        points["hr"].append(label[seg])
        points["q"].append(np.log10((r[0] + r[1]) / band_lum(np.exp(lnt))))
    cat = {k: np.concatenate(v) for k, v in points.items()}
    return XodQuadrature(
        z=z_nodes,
        z_weight=z_w,
        z_bin=z_bin,
        point_z=cat["z"],
        ln_kt=cat["lnt"],
        ln_kt_weight=cat["w"],
        hr_bin=cat["hr"],
        log10_rate_per_lum=cat["q"],
        log_cr_edges=np.asarray(bins.log_cr, dtype=float),
        log_cr_cut=float(np.log10(cr_cut_cts_s)),
        n_hr=bins.hr.size - 1,
        n_z=bins.z.size - 1,
    )


# ============================================================================ expected counts
@dataclass(frozen=True)
class AnalyticXodModel:
    """Everything the expected XOD needs besides the parameters (static, never traced).

    Attributes:
        quadrature: :class:`XodQuadrature`.
        sigma: :class:`SigmaTable` (its cosmology fixes h, n_s, Omega_b).
        n_hermite: Gauss-Hermite nodes of the T | M scatter integral over ln M.
        delta_c: overdensity of the scaling relations' masses (500: M500c).
    """

    quadrature: XodQuadrature
    sigma: SigmaTable
    n_hermite: int = 16
    delta_c: float = 500.0

    @property
    def h(self) -> float:
        return self.sigma.cosmology.h


def _normal_interval(lo, hi):
    """P(lo < X < hi) for X ~ N(0, 1), accurate in both tails."""
    upper = lo > 0
    return jnp.where(upper, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))


def _point_terms(params: XxlParameters, model: AnalyticXodModel, area_deg2):
    """Per (z, T) point: counts per unit probability over CR, mean and width of log10 CR.

    Returns (weight (n_p,), mu_log10_cr (n_p,), s_log10_cr scalar): the expected number of
    clusters of the point is weight * P(log10 CR in a bin), P from N(mu, s).
    """
    q = model.quadrature
    om, s8 = params.omega_m, params.sigma_8
    z = jnp.asarray(q.z)
    chi = comoving_distance_jnp(z, om)
    e_z = efunc_jnp(z, om)
    dvdz = HUBBLE_DISTANCE_MPC_H * chi**2 / e_z  # (Mpc/h)^3 sr^-1
    omega_sky = area_deg2 * (np.pi / 180.0) ** 2
    pz = jnp.asarray(q.point_z)
    zp = z[pz]
    ln_t = jnp.asarray(q.ln_kt)

    # P(ln T | z) dlnT = alpha int dlnM n(lnM) N(lnM; mu_M(T), alpha sigma_T): Gauss-Hermite
    x_gh, w_gh = np.polynomial.hermite.hermgauss(model.n_hermite)
    ln_e = jnp.log(e_z)[pz]
    mu_ln_m = jnp.log(0.7 * XXL_MASS_PIVOT_MSUN_H70 * params.m0) + params.alpha_mt * ln_t + params.gamma_mt * ln_e
    width = params.alpha_mt * params.sigma_ln_t_m
    ln_m = mu_ln_m[:, None] + np.sqrt(2.0) * width * jnp.asarray(x_gh)[None]  # (n_p, n_gh)
    ln_sig_row, slope_row = _sigma_rows(model.sigma, om)
    ln_sig, slope = _uniform_interp(ln_m, model.sigma.ln_mass, (ln_sig_row, slope_row))
    sigma = s8 * growth_factor_jnp(z, om)[pz][:, None] * jnp.exp(ln_sig)
    # Tinker08 parameters once per redshift node, then eq. 2-3 per (point, node)
    amp, a, b, c = (x[pz][:, None] for x in tinker08_parameters(model.delta_c / omega_m_of_z(z, om), z))
    f_sigma = amp * ((sigma / b) ** (-a) + 1.0) * jnp.exp(-c / sigma**2)
    dndlnm = f_sigma * (RHO_CRIT_MSUN_H_MPC_H3 * om) * jnp.exp(-ln_m) * jnp.abs(slope)
    p_ln_t = params.alpha_mt * jnp.sum(dndlnm * (jnp.asarray(w_gh) / np.sqrt(np.pi))[None], axis=1)

    weight = omega_sky * jnp.asarray(q.z_weight)[pz] * dvdz[pz] * jnp.asarray(q.ln_kt_weight) * p_ln_t
    # log10 CR = log10[L (0.7/h)^2 q / (4 pi D_M^2)], D_M in cm
    ln_l = mean_ln_luminosity(jnp.exp(ln_t), zp, params)
    d_cm = chi[pz] * MPC_CM / model.h
    mu = (ln_l / np.log(10.0) + 2.0 * np.log10(0.7 / model.h) + jnp.asarray(q.log10_rate_per_lum)
          - jnp.log10(4.0 * np.pi * d_cm**2))
    return weight, mu, params.sigma_ln_l_t / np.log(10.0)


def expected_xod(params: XxlParameters, model: AnalyticXodModel, area_deg2: float):
    """Expected counts lambda_i(theta) per XOD bin, (n_cr, n_hr, n_z) (jnp; differentiable).

    Clusters with CR_[0.5-2] > cut whose (log10 CR, HR, z) falls inside the XOD edges, for a
    survey of ``area_deg2`` [deg^2]. Call inside :func:`jax_float64`.
    """
    q = model.quadrature
    weight, mu, s = _point_terms(params, model, area_deg2)
    edges = jnp.maximum(jnp.asarray(q.log_cr_edges), q.log_cr_cut)
    t = (edges[None, :] - mu[:, None]) / s
    prob = _normal_interval(t[:, :-1], t[:, 1:])  # (n_p, n_cr)
    hr = jnp.asarray(q.hr_bin)
    flat = jnp.where(hr >= 0, hr * q.n_z + jnp.asarray(q.z_bin)[jnp.asarray(q.point_z)], q.n_hr * q.n_z)
    binned = jax.ops.segment_sum(weight[:, None] * prob, flat, num_segments=q.n_hr * q.n_z + 1)[:-1]
    return binned.reshape(q.n_hr, q.n_z, -1).transpose(2, 0, 1)


def expected_counts_per_z_bin(params: XxlParameters, model: AnalyticXodModel, area_deg2: float):
    """Expected counts with CR_[0.5-2] > cut per z bin, any HR and CR (dN/dz x dz), (n_z,)."""
    q = model.quadrature
    weight, mu, s = _point_terms(params, model, area_deg2)
    above = ndtr((mu - q.log_cr_cut) / s)
    zb = jnp.asarray(q.z_bin)[jnp.asarray(q.point_z)]
    return jax.ops.segment_sum(weight * above, zb, num_segments=q.n_z)


def xod_function(model: AnalyticXodModel) -> Callable[[XxlParameters, float], jnp.ndarray]:
    """Jitted (params, area_deg2) -> lambda (n_cr, n_hr, n_z); call it inside :func:`jax_float64`.

    One compilation serves every parameter point and area (both are traced).
    """
    return jax.jit(lambda params, area_deg2: expected_xod(params, model, area_deg2))


def counts_per_z_function(model: AnalyticXodModel) -> Callable[[XxlParameters, float], jnp.ndarray]:
    """Jitted (params, area_deg2) -> expected counts above the cut per z bin (n_z,), as :func:`xod_function`."""
    return jax.jit(lambda params, area_deg2: expected_counts_per_z_bin(params, model, area_deg2))


def params_from_vector(vector, names: Sequence[str], base: XxlParameters = FIDUCIAL_XXL) -> XxlParameters:
    """The parameters ``base`` with the fields ``names`` set from ``vector`` (..., len(names))."""
    return base._replace(**{n: vector[..., i] for i, n in enumerate(names)})


def expected_xods(
    model: AnalyticXodModel,
    area_deg2: float,
    vectors: np.ndarray,
    names: Sequence[str] = FREE_PARAMETERS,
    base: XxlParameters = FIDUCIAL_XXL,
    batch_size: int = 16,
) -> np.ndarray:
    """lambda(theta) for many parameter vectors, (n, n_cr, n_hr, n_z), vmapped in batches.

    About 10 ms per XOD on two CPU cores (8 x 8 x 8 bins, default quadrature), one compilation
    per call (the last batch is padded to the same shape).

    Args:
        vectors: (n, len(names)) parameter values; the other fields come from ``base``.
        batch_size: parameter points per vmapped call (memory ~ batch_size x 20 MB).
    """
    vectors = np.atleast_2d(np.asarray(vectors, dtype=float))
    n = vectors.shape[0]
    padded = np.concatenate([vectors, np.repeat(vectors[-1:], (-n) % batch_size, axis=0)])
    with jax_float64():
        fn = jax.jit(jax.vmap(lambda v: expected_xod(params_from_vector(v, names, base), model, area_deg2)))
        out = [np.asarray(fn(jnp.asarray(padded[i : i + batch_size]))) for i in range(0, padded.shape[0], batch_size)]
    return np.concatenate(out, axis=0)[:n]


def mock_xods(expected: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Poisson draws of the expected counts: one mock XOD per row (or ``n`` mocks of one lambda).

    Args:
        expected: lambda, any shape (e.g. (n_cr, n_hr, n_z) or (n_theta, n_cr, n_hr, n_z)).
        rng: the random generator (seeded by the caller).
        n: if given, the number of independent mocks of ``expected`` (prepended axis).
    """
    lam = np.asarray(expected, dtype=float)
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("expected counts must be finite and non-negative")
    return rng.poisson(lam if n is None else np.broadcast_to(lam, (n,) + lam.shape)).astype(float)


# ============================================================================ likelihood, Fisher
def poisson_log_likelihood(observed, expected):
    """Exact Poisson log-likelihood sum_i [n_i ln lambda_i - lambda_i - ln n_i!] (jnp).

    Bins are independent (cerardi section 5.1); the sum runs over every axis (vmap it for a
    batch). lambda_i = 0 with n_i > 0 gives -inf, with n_i = 0 a zero term.
    """
    n = jnp.asarray(observed)
    lam = jnp.asarray(expected)
    return jnp.sum(xlogy(n, lam) - lam - gammaln(n + 1.0))


def fisher_matrix(
    expected: Callable[[XxlParameters], jnp.ndarray],
    params: XxlParameters,
    names: Sequence[str] = FREE_PARAMETERS,
    min_expected: float = 1e-10,
) -> np.ndarray:
    """Poisson Fisher matrix F_ab = sum_i d_a lambda_i d_b lambda_i / lambda_i (cerardi eq. 8).

    Derivatives by forward-mode autodiff (jax.jacfwd) in float64. Bins with
    lambda_i <= ``min_expected`` are left out (their terms are ~lambda_i (d ln lambda)^2).

    Args:
        expected: params -> lambda (any shape), e.g. ``lambda p: xod_function(model)(p, 200.0)``.
        params: the point (fields not in ``names`` stay fixed).
        names: parameters of the matrix, in order.

    Returns:
        (n, n) matrix in the units of ``names``.
    """
    with jax_float64():
        v0 = jnp.asarray([float(getattr(params, n)) for n in names])
        flat = lambda v: jnp.ravel(expected(params_from_vector(v, names, params)))
        lam = np.asarray(flat(v0))
        jac = np.asarray(jax.jit(jax.jacfwd(flat))(v0))
    keep = lam > min_expected
    j = jac[keep]
    return j.T @ (j / lam[keep, None])


@dataclass(frozen=True)
class FisherForecast:
    """Gaussian forecast from a Fisher matrix.

    Attributes:
        names: parameter order.
        fisher: (n, n), priors included; covariance: (n, n) = F^-1 (marginalised).
        sigma: {name: sqrt(C_aa)} (marginalised 1-sigma errors).
        sigma_conditional: {name: 1/sqrt(F_aa)} (all other parameters fixed).
        fom: Omega_m-sigma_8 figure of merit 1/sqrt(det C[Omega_m, sigma_8]) (the inverse area
            of the 1-sigma ellipse up to pi), NaN if either is not in ``names``.
    """

    names: tuple[str, ...]
    fisher: np.ndarray
    covariance: np.ndarray
    sigma: dict
    sigma_conditional: dict
    fom: float


def fisher_forecast(
    fisher: np.ndarray,
    names: Sequence[str] = FREE_PARAMETERS,
    prior_sigma: dict | None = None,
) -> FisherForecast:
    """Marginalised errors and the Omega_m-sigma_8 figure of merit of a Fisher matrix.

    Args:
        fisher: (n, n) Fisher matrix of the parameters ``names``.
        prior_sigma: optional Gaussian prior widths {name: sigma} added as 1/sigma^2 to the
            diagonal (a uniform prior of width w is often approximated by w / sqrt(12)). With
            the six scaling-relation parameters free and no prior, the XOD Fisher matrix is
            nearly degenerate (cerardi Fig. 11) and the marginalised errors exceed the priors.
    """
    f = np.asarray(fisher, dtype=float)
    names = tuple(names)
    if prior_sigma:
        unknown = set(prior_sigma) - set(names)
        if unknown:
            raise ValueError(f"prior_sigma names {sorted(unknown)} are not among {names}")
        f = f + np.diag([1.0 / prior_sigma[n] ** 2 if n in prior_sigma else 0.0 for n in names])
    cov = np.linalg.inv(f)
    sigma = {n: float(np.sqrt(cov[i, i])) for i, n in enumerate(names)}
    cond = {n: float(1.0 / np.sqrt(f[i, i])) for i, n in enumerate(names)}
    if "omega_m" in names and "sigma_8" in names:
        idx = [names.index("omega_m"), names.index("sigma_8")]
        fom = float(1.0 / np.sqrt(np.linalg.det(cov[np.ix_(idx, idx)])))
    else:
        fom = float("nan")
    return FisherForecast(names, f, cov, sigma, cond, fom)


# ============================================================================ exact posterior
@dataclass(frozen=True)
class PosteriorSamples:
    """MCMC samples of an exact posterior and their convergence diagnostics.

    Attributes:
        samples: (n_samples, n_dim) after burn-in and thinning, all walkers pooled.
        names: parameter names.
        autocorr_time: (n_dim,) integrated autocorrelation time [steps] (emcee, Goodman & Weare).
        n_steps, burn, thin: chain length, discarded steps, thinning.
        acceptance_fraction: mean over walkers.
        converged: n_steps >= 50 max(autocorr_time) (emcee's recommended criterion).
    """

    samples: np.ndarray
    names: tuple[str, ...]
    autocorr_time: np.ndarray
    n_steps: int
    burn: int
    thin: int
    acceptance_fraction: float
    converged: bool


def sample_posterior(
    log_prob: Callable[[np.ndarray], np.ndarray],
    initial: np.ndarray,
    n_steps: int,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    moves=None,
) -> PosteriorSamples:
    """Sample a posterior with emcee's affine-invariant ensemble sampler.

    Args:
        log_prob: vectorised log posterior, (n_walkers, n_dim) -> (n_walkers,); -inf outside
            the support.
        initial: (n_walkers, n_dim) starting positions (n_walkers >= 2 n_dim, all finite log_prob).
        n_steps: steps per walker.
        rng: seeds emcee's own generator.
        names: parameter names (default p0, p1, ...).
        moves: emcee moves (default: the stretch move of Goodman & Weare 2010), e.g.
            ``[(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)]``.

    Burn-in is 3 max(tau) steps and thinning max(1, min(tau)/2), tau the integrated
    autocorrelation time of the whole chain.
    """
    import emcee  # imported here: only the exact-posterior stage needs it

    p0 = np.asarray(initial, dtype=float)
    n_walkers, n_dim = p0.shape
    names = tuple(names) if names is not None else tuple(f"p{i}" for i in range(n_dim))
    if not np.all(np.isfinite(log_prob(p0))):
        raise ValueError("every initial walker position needs a finite log posterior")
    sampler = emcee.EnsembleSampler(n_walkers, n_dim, log_prob, vectorize=True, moves=moves)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**32 - 1))).get_state()
    sampler.run_mcmc(p0, n_steps, progress=False)
    tau = np.asarray(sampler.get_autocorr_time(tol=0), dtype=float)
    burn = int(min(np.ceil(3 * np.nanmax(tau)), n_steps // 2))
    thin = max(1, int(np.nanmin(tau) / 2))
    samples = sampler.get_chain(discard=burn, thin=thin, flat=True)
    return PosteriorSamples(
        samples=samples,
        names=names,
        autocorr_time=tau,
        n_steps=n_steps,
        burn=burn,
        thin=thin,
        acceptance_fraction=float(np.mean(sampler.acceptance_fraction)),
        converged=bool(n_steps >= 50 * np.nanmax(tau)),
    )


def xod_log_posterior(
    observed: np.ndarray,
    model: AnalyticXodModel,
    area_deg2: float,
    low: Sequence[float],
    high: Sequence[float],
    names: Sequence[str] = FREE_PARAMETERS,
    base: XxlParameters = FIDUCIAL_XXL,
) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised exact log posterior of one XOD: Poisson likelihood x uniform box prior.

    Args:
        observed: (n_cr, n_hr, n_z) observed counts (the XOD binning of ``model``).
        low, high: bounds of the uniform prior on the parameters ``names``.

    Returns:
        (n_walkers, n_dim) -> (n_walkers,) numpy function, -inf outside the box; for
        :func:`sample_posterior`. The Omega_m bounds must lie within the sigma table's nodes.
    """
    lo = np.asarray(low, dtype=float)
    hi = np.asarray(high, dtype=float)
    if not np.all(hi > lo):
        raise ValueError(f"prior bounds need low < high, got {lo} and {hi}")
    if "omega_m" in names:
        i = list(names).index("omega_m")
        if lo[i] < model.sigma.omega_m[0] or hi[i] > model.sigma.omega_m[-1]:
            nodes = model.sigma.omega_m
            raise ValueError(f"Omega_m prior [{lo[i]}, {hi[i]}] outside the sigma table nodes [{nodes[0]}, {nodes[-1]}]")
    with jax_float64():
        obs = jnp.asarray(np.asarray(observed, dtype=float))

        def one(v):
            lam = expected_xod(params_from_vector(v, names, base), model, area_deg2)
            return poisson_log_likelihood(obs, lam)

        batched = jax.jit(jax.vmap(one))

    def log_prob(x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        inside = np.all((x > lo) & (x < hi), axis=1)
        out = np.full(x.shape[0], -np.inf)
        if np.any(inside):
            with jax_float64():
                out[inside] = np.asarray(batched(jnp.asarray(x[inside])))
        return np.where(np.isfinite(out), out, -np.inf)

    return log_prob
