"""Background cosmology and linear matter power spectra.

Flat Lambda-CDM with massless neutrinos and no radiation term in the expansion rate, the
background the particle-mesh code integrates in (jaxpm / jax_cosmo), so that distances,
growth and simulations agree with each other. Radiation changes H(z) by < 0.03% below
z = 1 and by ~0.3% at z = 9 (a typical PM starting redshift).

Units: distances in Mpc/h, wavenumbers in h/Mpc, power in (Mpc/h)^3.

Linear power comes from CAMB (Lewis, Challinor & Lasenby 2000), normalised to each design
point's sigma_8 by rescaling A_s: linear P(k) is proportional to A_s, so one CAMB run and a
rescale give the exact normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .constants import HUBBLE_DISTANCE_MPC_H

__all__ = [
    "Cosmology",
    "efunc",
    "comoving_distance_mpc_h",
    "luminosity_distance_mpc_h",
    "angular_diameter_distance_mpc_h",
    "redshift_at_comoving_distance",
    "growth_factor",
    "growth_rate",
    "sigma_r",
    "LinearPower",
    "camb_power",
    "colossus_cosmology",
    "predicted_halo_counts",
    "eisenstein_hu_power",
]


# Gauss-Legendre nodes for the smooth integrands below; 64 nodes integrate 1/E(z) over
# 0 < z < 10 to ~1e-12 relative accuracy.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(64)


@dataclass(frozen=True)
class Cosmology:
    """Flat Lambda-CDM parameters (Omega_m includes baryons)."""

    Omega_m: float = 0.3071
    sigma_8: float = 0.8224
    h: float = 0.6803
    n_s: float = 0.96641
    Omega_b: float = 0.048446

    @classmethod
    def from_mapping(cls, values: Mapping[str, float], defaults: Mapping[str, float] | None = None) -> "Cosmology":
        """Build from a mapping; missing keys come from ``defaults`` then the class defaults.

        Keys that are not cosmological (e.g. astrophysical parameters) are ignored.
        """
        merged = dict(defaults or {})
        merged.update(values)
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: float(v) for k, v in merged.items() if k in names})

    def __post_init__(self) -> None:
        if not 0.0 < self.Omega_b < self.Omega_m < 1.0:
            raise ValueError(
                f"need 0 < Omega_b < Omega_m < 1, got Omega_b={self.Omega_b}, Omega_m={self.Omega_m}"
            )
        if self.sigma_8 <= 0 or self.h <= 0 or self.n_s <= 0:
            raise ValueError(f"sigma_8, h and n_s must be positive: {self}")


def efunc(z: np.ndarray | float, omega_m: float) -> np.ndarray:
    """E(z) = H(z)/H0 = sqrt(Omega_m (1+z)^3 + 1 - Omega_m) (flat, no radiation)."""
    z = np.asarray(z, dtype=float)
    return np.sqrt(omega_m * (1.0 + z) ** 3 + (1.0 - omega_m))


def _integrate_0_to(upper: np.ndarray, integrand) -> np.ndarray:
    """Integral of ``integrand`` from 0 to each element of ``upper`` (Gauss-Legendre)."""
    upper = np.asarray(upper, dtype=float)
    half = 0.5 * upper[..., None]
    nodes = half * (_GL_X + 1.0)
    return np.sum(half * _GL_W * integrand(nodes), axis=-1)


def comoving_distance_mpc_h(z: np.ndarray | float, omega_m: float) -> np.ndarray:
    """Line-of-sight comoving distance chi(z) = (c/H0) int_0^z dz'/E(z') in Mpc/h.

    In a flat universe this is also the transverse comoving distance D_M.
    """
    z = np.asarray(z, dtype=float)
    if np.any(z < 0):
        raise ValueError("redshift must be >= 0")
    return HUBBLE_DISTANCE_MPC_H * _integrate_0_to(z, lambda x: 1.0 / efunc(x, omega_m))


def luminosity_distance_mpc_h(z: np.ndarray | float, omega_m: float) -> np.ndarray:
    """D_L = (1+z) D_M in Mpc/h."""
    z = np.asarray(z, dtype=float)
    return (1.0 + z) * comoving_distance_mpc_h(z, omega_m)


def angular_diameter_distance_mpc_h(z: np.ndarray | float, omega_m: float) -> np.ndarray:
    """D_A = D_M / (1+z) in Mpc/h."""
    z = np.asarray(z, dtype=float)
    return comoving_distance_mpc_h(z, omega_m) / (1.0 + z)


def redshift_at_comoving_distance(chi_mpc_h: np.ndarray | float, omega_m: float, z_max: float = 20.0) -> np.ndarray:
    """Invert chi(z) by interpolation on a fine grid (relative accuracy ~1e-7)."""
    z_grid = np.concatenate([[0.0], np.geomspace(1e-5, z_max, 4000)])
    chi_grid = comoving_distance_mpc_h(z_grid, omega_m)
    chi = np.asarray(chi_mpc_h, dtype=float)
    if np.any(chi < 0) or np.any(chi > chi_grid[-1]):
        raise ValueError(f"comoving distance outside [0, chi(z={z_max})]")
    return np.interp(chi, chi_grid, z_grid)


def growth_factor(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """Linear growth factor D(a), normalised to D(1) = 1.

    Exact for flat Lambda-CDM without radiation (Heath 1977):
    D(a) proportional to E(a) int_0^a da' / (a' E(a'))^3.
    """
    a = np.asarray(a, dtype=float)
    if np.any(a <= 0):
        raise ValueError("scale factor must be > 0")

    def unnormalised(x):
        e = lambda s: np.sqrt(omega_m / s**3 + 1.0 - omega_m)
        # integrand 1/(s E(s))^3 behaves as s^(3/2) at small s: smooth, no singularity
        return e(x) * _integrate_0_to(x, lambda s: 1.0 / (s * e(s)) ** 3)

    return unnormalised(a) / unnormalised(np.asarray(1.0))


def growth_rate(a: np.ndarray | float, omega_m: float) -> np.ndarray:
    """f = dlnD/dlna for flat Lambda-CDM without radiation.

    Differentiating D = E(a) I(a), I(a) = int_0^a da'/(a' E(a'))^3, gives
    f = dlnE/dlna + 1 / (a^2 E^3 I(a)).
    """
    a = np.asarray(a, dtype=float)
    e2 = omega_m / a**3 + 1.0 - omega_m
    dlne_dlna = -1.5 * omega_m / a**3 / e2
    integral = _integrate_0_to(a, lambda s: 1.0 / (s * np.sqrt(omega_m / s**3 + 1.0 - omega_m)) ** 3)
    return dlne_dlna + 1.0 / (a**2 * e2**1.5 * integral)


def sigma_r(k_h_mpc: np.ndarray, pk_mpc3_h3: np.ndarray, r_mpc_h: float = 8.0) -> float:
    """RMS linear fluctuation in spheres of radius ``r_mpc_h`` (top-hat window).

    sigma^2(R) = 1/(2 pi^2) int dk k^2 P(k) W^2(kR), W(x) = 3 (sin x - x cos x)/x^3,
    integrated with the trapezoid rule in ln k (the grid should be log-spaced and dense).
    """
    k = np.asarray(k_h_mpc, dtype=float)
    x = k * r_mpc_h
    window = 3.0 * (np.sin(x) - x * np.cos(x)) / x**3
    integrand = k**3 * np.asarray(pk_mpc3_h3) * window**2 / (2.0 * np.pi**2)
    return float(np.sqrt(np.trapezoid(integrand, np.log(k))))


@dataclass(frozen=True)
class LinearPower:
    """Linear matter power spectra from CAMB on a (redshift, k) grid.

    Attributes:
        k_h_mpc: (n_k,) wavenumbers [h/Mpc].
        redshifts: (n_z,) redshifts, in the order asked for.
        pk_mpc3_h3: (n_z, n_k) linear P(k, z) [(Mpc/h)^3].
        sigma_8: sigma_8 at z = 0 of the returned spectra.
        a_s: the primordial amplitude that gives it.
        nonlinear: whether the spectra are halofit (then only sigma_8 refers to the linear one).
    """

    k_h_mpc: np.ndarray
    redshifts: np.ndarray
    pk_mpc3_h3: np.ndarray
    sigma_8: float
    a_s: float
    nonlinear: bool = False
    metadata: dict = field(default_factory=dict)


def _camb_params(cosmo: Cosmology, a_s: float, redshifts: Sequence[float], k_max_h_mpc: float, nonlinear: bool):
    import camb  # imported here: only this stage needs it

    pars = camb.CAMBparams()
    # Massless neutrinos: the PM code has no neutrino component. Omega_m = Omega_cdm + Omega_b.
    pars.set_cosmology(
        H0=100.0 * cosmo.h,
        ombh2=cosmo.Omega_b * cosmo.h**2,
        omch2=(cosmo.Omega_m - cosmo.Omega_b) * cosmo.h**2,
        mnu=0.0,
        num_massive_neutrinos=0,
        omk=0.0,
    )
    pars.InitPower.set_params(As=a_s, ns=cosmo.n_s)
    # matter power only: skipping the CMB spectra halves the run time
    pars.WantCls = False
    pars.DoLensing = False
    # CAMB wants k_max in 1/Mpc; pad it so the interpolator is not extrapolating.
    pars.set_matter_power(redshifts=sorted(set(redshifts) | {0.0}, reverse=True), kmax=2.0 * k_max_h_mpc * cosmo.h)
    pars.NonLinear = camb.model.NonLinear_pk if nonlinear else camb.model.NonLinear_none
    if nonlinear:
        pars.NonLinearModel.set_params(halofit_version="takahashi")
    return pars


def camb_power(
    cosmo: Cosmology,
    redshifts: Sequence[float],
    k_h_mpc: np.ndarray,
    nonlinear: bool = False,
    a_s_reference: float = 2.1e-9,
) -> LinearPower:
    """Matter P(k, z) from CAMB, normalised so that the linear sigma_8(z=0) = ``cosmo.sigma_8``.

    Args:
        cosmo: the cosmology (sigma_8 is the target normalisation).
        redshifts: redshifts at which to return P(k).
        k_h_mpc: (n_k,) output wavenumbers [h/Mpc].
        nonlinear: return halofit (Takahashi et al. 2012) spectra instead of linear ones.
            Halofit is not linear in A_s, so this runs CAMB a second time at the rescaled A_s.
        a_s_reference: A_s of the first, unnormalised run.

    Returns:
        :class:`LinearPower` with P in (Mpc/h)^3 on the requested grid.
    """
    import camb

    k = np.asarray(k_h_mpc, dtype=float)
    z = np.asarray(redshifts, dtype=float)
    if k.ndim != 1 or np.any(k <= 0):
        raise ValueError("k_h_mpc must be a 1D array of positive wavenumbers")
    results = camb.get_results(_camb_params(cosmo, a_s_reference, z, k.max(), nonlinear=False))
    sigma8_reference = float(results.get_sigma8_0())
    scale = (cosmo.sigma_8 / sigma8_reference) ** 2
    a_s = a_s_reference * scale
    if nonlinear:
        results = camb.get_results(_camb_params(cosmo, a_s, z, k.max(), nonlinear=True))
        scale = 1.0
    interp = results.get_matter_power_interpolator(
        nonlinear=nonlinear, hubble_units=True, k_hunit=True, extrap_kmax=True
    )
    pk = scale * np.atleast_2d(interp.P(z, k))
    return LinearPower(
        k_h_mpc=k,
        redshifts=z,
        pk_mpc3_h3=pk.reshape(len(z), len(k)),
        sigma_8=cosmo.sigma_8,
        a_s=a_s,
        nonlinear=nonlinear,
        metadata={"camb_version": camb.__version__, "halofit": "takahashi" if nonlinear else "none"},
    )


# --- per-chunk products -------------------------------------------------------------

def colossus_cosmology(cosmo: Cosmology, name: str = "clustersbi"):
    """The equivalent colossus cosmology (flat, no radiation in E(z), massless neutrinos).

    Colossus caches per-cosmology tables on disk unless told not to; parallel jobs would
    race on that cache, so persistence is switched off.
    """
    from colossus import settings
    from colossus.cosmology import cosmology as colossus_cosmo

    settings.PERSISTENCE = ""
    params = {
        "flat": True,
        "H0": 100.0 * cosmo.h,
        "Om0": cosmo.Omega_m,
        "Ob0": cosmo.Omega_b,
        "sigma8": cosmo.sigma_8,
        "ns": cosmo.n_s,
        "relspecies": False,
    }
    return colossus_cosmo.setCosmology(name, **params, persistence="")


def eisenstein_hu_power(cosmo: Cosmology, k_h_mpc: np.ndarray, z: float = 0.0, wiggles: bool = True) -> np.ndarray:
    """Eisenstein & Hu (1998) linear P(k) [(Mpc/h)^3] from colossus, normalised to sigma_8.

    A CAMB-independent reference: the fitting formula is accurate to a few per cent in the
    transfer function (Eisenstein & Hu 1998, their section 5).
    """
    model = "eisenstein98" if wiggles else "eisenstein98_zb"
    return np.asarray(colossus_cosmology(cosmo).matterPowerSpectrum(np.asarray(k_h_mpc), z=z, model=model))


def predicted_halo_counts(
    cosmo: Cosmology, mass_edges_msun_h: np.ndarray, z: float, volume_mpc3_h3: float, model: str = "watson13"
) -> np.ndarray:
    """Expected number of FoF halos per mass bin from a colossus mass-function fit.

    Integrates dn/dlnM (FoF masses, ``mdef='fof'``; Watson et al. 2013 by default) over each
    bin in ln M with 9-point trapezoids. Colossus uses its own Eisenstein & Hu spectrum
    normalised to the same sigma_8.
    """
    from colossus.lss import mass_function

    colossus_cosmology(cosmo)
    counts = []
    for lo, hi in zip(mass_edges_msun_h[:-1], mass_edges_msun_h[1:]):
        m = np.geomspace(lo, hi, 9)
        dn_dlnm = mass_function.massFunction(m, z, q_in="M", q_out="dndlnM", mdef="fof", model=model)
        counts.append(np.trapezoid(dn_dlnm, np.log(m)) * volume_mpc3_h3)
    return np.asarray(counts)
