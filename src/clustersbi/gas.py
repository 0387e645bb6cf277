"""Training data for LDL baryon painting: gridded electron density n_e and temperature T.

Two sources (DESIGN.md principle 4), both returning :class:`GasGrid`:

1. :func:`load_camels_snapshot` -- a CAMELS IllustrisTNG HDF5 snapshot (Gadget/Arepo layout)
   when the user points the config at one. Read: ``Header`` attributes ``BoxSize`` [ckpc/h],
   ``Redshift``, ``Omega0``, ``OmegaLambda``, ``HubbleParam``, ``MassTable``; ``PartType0``
   (gas) ``Coordinates`` [ckpc/h], ``Masses`` [1e10 Msun/h], ``ElectronAbundance``
   (x_e = n_e / n_H), ``InternalEnergy`` u [(km/s)^2]; ``PartType1`` (DM) ``Coordinates``.
   Per gas particle, with X_H = 0.76::

       N_e  = m X_H x_e / m_p                     (electrons carried by the particle)
       mu   = 4 / (1 + 3 X_H + 4 X_H x_e)         (mean molecular weight)
       T    = (2/3) u / k_B * mu m_p              [K]

   The grid holds ``n_e = sum_p CIC_p N_e,p / V_cell`` in **comoving** cm^-3 (the paper
   emulates comoving n_e; multiply by (1+z)^3 for physical, :func:`physical_ne`) -- i.e.
   ``rho_gas X_H x_e / m_p`` averaged over the cell volume, which conserves the electron
   count -- and the **mass-weighted** CIC temperature ``sum m T CIC / sum m CIC`` [K]
   (0 in cells that receive no gas). The mesh has ``round(BoxSize / cell)`` cells per side
   (0.39 Mpc/h by default, the paper's resolution).

2. :func:`synthetic_gas` -- the default, offline "hydro" target. It is a physically motivated
   toy model applied to DM particles, NOT a hydrodynamical simulation and NOT CAMELS:

   * density: gas traces the DM overdensity smoothed by a Gaussian of comoving radius
     ``R_gas = r_gas0 (A_SN2 A_AGN2)^(1/4)`` (pressure smoothing, widened by faster winds and
     burstier AGN), depleted in dense regions by ``D = 1 / (1 + (rho_g / Delta_dep)^beta)``
     with ``Delta_dep = delta_dep0 / (A_SN1^0.3 A_AGN1^0.5 A_SN2^0.2 A_AGN2^0.2)`` (stronger
     feedback empties halos at lower density), then renormalised so the box mean stays the
     cosmic mean ``nbar_e = Omega_b rho_crit X_H x_e,ion / m_p`` (ejected gas ends in the
     low-density IGM). Each A_i therefore *lowers* n_e in dense voxels and raises it in voids.
   * temperature: ``T = T_igm (rho_g)^0.6`` (photo-heated IGM) ``+ mu m_p max(-Phi, 0) / (3 k_B)``
     (virial-like, from the depth of the peculiar potential of the DM smoothed on ``r_phi``,
     ``nabla^2 Phi = (3/2) Omega_m H0^2 delta / a``, so it depends on Omega_m and, through
     the particles, sigma_8 and z) ``+ T_fb0 A_SN1^0.2 A_SN2^0.1 A_AGN1^0.4 A_AGN2^0.2 rho_g^0.5``
     (feedback heating). Each A_i therefore *raises* T everywhere.

   Limits: no shocks, cooling, cold dense gas, star formation, or halo-to-halo scatter at
   fixed density beyond what the DM field itself carries; exponents and amplitudes are
   chosen for plausible magnitudes (T ~ 1e4 K in voids, 1e6-1e7 K in groups), not
   calibrated on hydro simulations. It exists so that the whole chain runs offline and the
   conditioned LDL has an explicit, monotonic relation to learn; never present it as CAMELS.

:func:`zeldovich_particles` makes a cheap Zel'dovich DM particle set (for tests and demos).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .constants import K_B_ERG_K, M_P_G, MPC_CM, MSUN_G, NE_OVER_NH, RHO_CRIT_H2_G_CM3, X_H
from .mesh import assign_to_mesh

__all__ = [
    "X_H",
    "GasGrid",
    "SyntheticGasParams",
    "mean_molecular_weight",
    "temperature_k",
    "paint_gas_particles",
    "physical_ne",
    "mean_electron_density",
    "load_camels_snapshot",
    "synthetic_gas",
    "zeldovich_particles",
]

#: Electrons per hydrogen atom of fully ionised H + He with X_H = 0.76: the chain's one gas
#: composition (:data:`clustersbi.constants.NE_OVER_NH`, 1.158), also the X-ray stage's n_e / n_H.
X_E_IONISED = NE_OVER_NH


@dataclass(frozen=True)
class GasGrid:
    """Gridded gas fields and the matching DM particles of one box.

    Attributes:
        ne_cm3: (n, n, n) electron density, comoving [cm^-3].
        t_k: (n, n, n) mass-weighted temperature [K].
        dm_pos_mpc_h: (N, 3) DM positions, comoving [Mpc/h], in [0, box).
        box_mpc_h: box side [Mpc/h] (three sides for a rectangular lightcone slab).
        redshift: snapshot redshift.
        cosmology: ``{"omega_m", "omega_lambda", "h"}`` (and more when known).
        source: "camels" or "synthetic".
    """

    ne_cm3: np.ndarray
    t_k: np.ndarray
    dm_pos_mpc_h: np.ndarray
    box_mpc_h: float | tuple[float, float, float]
    redshift: float
    cosmology: dict = field(default_factory=dict)
    source: str = "camels"

    @property
    def mesh_shape(self) -> tuple[int, int, int]:
        return tuple(self.ne_cm3.shape)


@dataclass(frozen=True)
class SyntheticGasParams:
    """Constants of the synthetic gas model (see the module docstring).

    Attributes:
        r_gas0_mpc_h: gas smoothing radius at fiducial feedback [Mpc/h].
        delta_dep0: density (in units of the mean) above which gas is depleted, fiducial feedback.
        beta_dep: steepness of the depletion.
        dep_exponents: exponents of (A_SN1, A_SN2, A_AGN1, A_AGN2) in 1 / Delta_dep.
        r_phi_mpc_h: smoothing of the DM field for the potential [Mpc/h].
        t_igm_k: IGM temperature at mean density [K].
        t_fb0_k: feedback heating at mean density and fiducial feedback [K].
        heat_exponents: exponents of (A_SN1, A_SN2, A_AGN1, A_AGN2) in the heating.
        omega_b: baryon density parameter.
    """

    r_gas0_mpc_h: float = 0.3
    delta_dep0: float = 500.0
    beta_dep: float = 0.5
    dep_exponents: tuple[float, float, float, float] = (0.3, 0.2, 0.5, 0.2)
    r_phi_mpc_h: float = 1.0
    t_igm_k: float = 1.0e4
    t_fb0_k: float = 1.0e5
    heat_exponents: tuple[float, float, float, float] = (0.2, 0.1, 0.4, 0.2)
    omega_b: float = 0.049


def mean_molecular_weight(x_e: np.ndarray | float, x_h: float = X_H) -> np.ndarray:
    """``mu = 4 / (1 + 3 X_H + 4 X_H x_e)`` for H + He gas with electron abundance x_e = n_e/n_H."""
    return 4.0 / (1.0 + 3.0 * x_h + 4.0 * x_h * np.asarray(x_e, dtype=np.float64))


def temperature_k(u_km2_s2: np.ndarray | float, x_e: np.ndarray | float, x_h: float = X_H) -> np.ndarray:
    """Gas temperature ``T = (2/3) u mu m_p / k_B`` [K] from specific internal energy u [(km/s)^2]."""
    u_cgs = np.asarray(u_km2_s2, dtype=np.float64) * 1e10
    return (2.0 / 3.0) * u_cgs * mean_molecular_weight(x_e, x_h) * M_P_G / K_B_ERG_K


def paint_gas_particles(
    pos_mpc_h: np.ndarray, mass_g: np.ndarray, x_e: np.ndarray, t_k: np.ndarray, mesh_shape: Sequence[int], box_mpc_h
) -> np.ndarray:
    """CIC sums per cell (cell convention "centre") of the electrons, mass and mass x T of gas particles.

    Args:
        pos_mpc_h: (N, 3) comoving positions [Mpc/h].
        mass_g: (N,) particle masses [g].
        x_e: (N,) electron abundance n_e / n_H.
        t_k: (N,) temperatures [K].
        mesh_shape: (3,) cells per axis; box_mpc_h: box side(s) [Mpc/h].

    Returns:
        (3,) + mesh_shape array: electron count, mass [g] and mass-weighted T sum [g K] per cell
        (accumulate over particle blocks, then n_e = electrons / V_cell, T = (m T) / m).
    """
    weights = (mass_g * X_H * x_e / M_P_G, mass_g, mass_g * t_k)
    return np.stack([assign_to_mesh(pos_mpc_h, mesh_shape, box_mpc_h, "cic", w, convention="centre") for w in weights])


def physical_ne(ne_comoving_cm3: np.ndarray, redshift: float) -> np.ndarray:
    """Comoving -> physical electron density: ``n_e,phys = n_e,com (1 + z)^3``."""
    return np.asarray(ne_comoving_cm3) * (1.0 + redshift) ** 3


def mean_electron_density(omega_b: float, hubble: float) -> float:
    """Cosmic mean comoving n_e of fully ionised gas [cm^-3]: ``Omega_b rho_crit X_H x_e / m_p``."""
    return omega_b * RHO_CRIT_H2_G_CM3 * hubble**2 * X_H * X_E_IONISED / M_P_G


def _read_attr(header, name: str) -> float | np.ndarray:
    if name not in header.attrs:
        raise ValueError(f"snapshot Header lacks attribute {name!r}")
    value = header.attrs[name]
    return np.asarray(value) if np.ndim(value) else float(value)


def load_camels_snapshot(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    cell_mpc_h: float = 0.39,
    chunk: int = 4_000_000,
) -> GasGrid:
    """Load a CAMELS IllustrisTNG snapshot (one file or its ``.N.hdf5`` pieces) and grid its gas.

    Args:
        paths: HDF5 snapshot file(s) (Gadget layout, see the module docstring).
        cell_mpc_h: target cell size [Mpc/h]; the mesh has ``round(box / cell)`` cells per side.
        chunk: particles read per block (bounds the memory).

    Returns:
        :class:`GasGrid` with comoving n_e [cm^-3], mass-weighted T [K], DM positions [Mpc/h].
    """
    import h5py

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if len(paths) == 0:
        raise ValueError("paths must name at least one snapshot file")
    if cell_mpc_h <= 0:
        raise ValueError(f"cell_mpc_h must be > 0, got {cell_mpc_h}")
    with h5py.File(paths[0], "r") as f:
        if "Header" not in f:
            raise ValueError(f"{paths[0]}: no Header group (not a Gadget/CAMELS snapshot)")
        hdr = f["Header"]
        box_mpc_h = _read_attr(hdr, "BoxSize") / 1e3
        redshift = _read_attr(hdr, "Redshift")
        cosmology = {
            "omega_m": _read_attr(hdr, "Omega0"),
            "omega_lambda": _read_attr(hdr, "OmegaLambda"),
            "h": _read_attr(hdr, "HubbleParam"),
        }
        mass_table = np.atleast_1d(_read_attr(hdr, "MassTable"))
    hubble = cosmology["h"]
    n = int(round(box_mpc_h / cell_mpc_h))
    if n < 2:
        raise ValueError(f"cell_mpc_h={cell_mpc_h} leaves fewer than 2 cells in a {box_mpc_h} Mpc/h box")
    mesh = (n, n, n)
    cell_cm3 = (box_mpc_h / n) ** 3 * (MPC_CM / hubble) ** 3
    sums = np.zeros((3, *mesh))  # electrons, mass, mass x T per cell
    dm = []
    for path in paths:
        with h5py.File(path, "r") as f:
            if "PartType0" in f:
                gas = f["PartType0"]
                for key in ("Coordinates", "Masses", "ElectronAbundance", "InternalEnergy"):
                    if key not in gas:
                        raise ValueError(f"{path}: PartType0 lacks dataset {key!r}")
                n_gas = gas["Coordinates"].shape[0]
                for start in range(0, n_gas, chunk):
                    sl = slice(start, min(start + chunk, n_gas))
                    pos = np.mod(gas["Coordinates"][sl].astype(np.float64) / 1e3, box_mpc_h)
                    mass_g = gas["Masses"][sl].astype(np.float64) * 1e10 * MSUN_G / hubble
                    x_e = gas["ElectronAbundance"][sl].astype(np.float64)
                    t_k = temperature_k(gas["InternalEnergy"][sl], x_e)
                    sums += paint_gas_particles(pos, mass_g, x_e, t_k, mesh, box_mpc_h)
            if "PartType1" in f:
                dm.append(np.mod(f["PartType1"]["Coordinates"][:].astype(np.float64) / 1e3, box_mpc_h))
    if not dm:
        raise ValueError(f"no PartType1 (DM) particles in {[str(p) for p in paths]}")
    n_elec, mass_grid, mt_grid = sums
    if mass_grid.sum() <= 0:
        raise ValueError(f"no PartType0 (gas) particles in {[str(p) for p in paths]}")
    t = np.divide(mt_grid, mass_grid, out=np.zeros_like(mt_grid), where=mass_grid > 0)
    cosmology["dm_particle_mass_1e10msun_h"] = float(mass_table[1]) if mass_table.size > 1 else None
    return GasGrid(
        ne_cm3=n_elec / cell_cm3,
        t_k=t,
        dm_pos_mpc_h=np.concatenate(dm).astype(np.float32),
        box_mpc_h=float(box_mpc_h),
        redshift=float(redshift),
        cosmology=cosmology,
        source="camels",
    )


def _gaussian_smooth(field: np.ndarray, box_mpc_h, radius_mpc_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed field and its rfft (k in h/Mpc); returns (smoothed, k^2 grid).

    ``box_mpc_h`` is the side of a cubic box or the three sides of a rectangular one.
    """
    shape = field.shape
    box = np.broadcast_to(np.asarray(box_mpc_h, dtype=float), (3,))
    k = [
        2 * np.pi * np.fft.fftfreq(shape[0], d=box[0] / shape[0]).reshape(-1, 1, 1),
        2 * np.pi * np.fft.fftfreq(shape[1], d=box[1] / shape[1]).reshape(1, -1, 1),
        2 * np.pi * np.fft.rfftfreq(shape[2], d=box[2] / shape[2]).reshape(1, 1, -1),
    ]
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    fk = np.fft.rfftn(field) * np.exp(-0.5 * k2 * radius_mpc_h**2)
    return np.fft.irfftn(fk, s=shape), k2


def synthetic_gas(
    dm_pos_mpc_h: np.ndarray,
    mesh_shape: Sequence[int],
    box_mpc_h: float | Sequence[float],
    theta_sim: Mapping[str, float],
    redshift: float,
    hubble: float = 0.6711,
    model: SyntheticGasParams = SyntheticGasParams(),
) -> GasGrid:
    """The offline synthetic "hydro" target (module docstring) painted from DM particles.

    Args:
        dm_pos_mpc_h: (N, 3) DM particle positions [Mpc/h].
        mesh_shape: output mesh (n0, n1, n2).
        box_mpc_h: box side [Mpc/h], or the three sides of a rectangular box (lightcone slab).
        theta_sim: ``omega_m``, ``a_sn1``, ``a_sn2``, ``a_agn1``, ``a_agn2`` (linear A's, > 0);
            ``sigma_8`` may be present and acts only through the particles.
        redshift: z of the particles.
        hubble: h (only for the cm^-3 normalisation of n_e).

    Returns:
        :class:`GasGrid` with comoving n_e [cm^-3] and T [K], ``source="synthetic"``.
    """
    for key in ("omega_m", "a_sn1", "a_sn2", "a_agn1", "a_agn2"):
        if key not in theta_sim:
            raise ValueError(f"theta_sim lacks {key!r}")
        if theta_sim[key] <= 0:
            raise ValueError(f"theta_sim[{key!r}] must be > 0, got {theta_sim[key]}")
    a_fb = np.array([theta_sim["a_sn1"], theta_sim["a_sn2"], theta_sim["a_agn1"], theta_sim["a_agn2"]], float)
    rho_dm = assign_to_mesh(dm_pos_mpc_h, mesh_shape, box_mpc_h, "cic", convention="centre")
    rho_dm /= rho_dm.mean()  # 1 + delta_DM

    # density: smoothing, feedback depletion, baryon conservation
    r_gas = model.r_gas0_mpc_h * (a_fb[1] * a_fb[3]) ** 0.25
    rho_g, _ = _gaussian_smooth(rho_dm, box_mpc_h, r_gas)
    rho_g = np.maximum(rho_g, 1e-3)
    delta_dep = model.delta_dep0 / np.prod(a_fb ** np.asarray(model.dep_exponents))
    rho_gas = rho_g / (1.0 + (rho_g / delta_dep) ** model.beta_dep)
    rho_gas /= rho_gas.mean()
    ne = mean_electron_density(model.omega_b, hubble) * rho_gas

    # temperature: IGM + potential depth + feedback heating
    a = 1.0 / (1.0 + redshift)
    smooth_dm, k2 = _gaussian_smooth(rho_dm - 1.0, box_mpc_h, model.r_phi_mpc_h)
    k2_safe = np.where(k2 > 0, k2, 1.0)
    phi_k = np.where(k2 > 0, -1.5 * theta_sim["omega_m"] * 100.0**2 * np.fft.rfftn(smooth_dm) / (a * k2_safe), 0)
    phi_km2_s2 = np.fft.irfftn(phi_k, s=rho_dm.shape)
    mu = mean_molecular_weight(X_E_IONISED)
    t_grav = mu * M_P_G * np.maximum(-phi_km2_s2, 0.0) * 1e10 / (3.0 * K_B_ERG_K)
    t_fb = model.t_fb0_k * np.prod(a_fb ** np.asarray(model.heat_exponents)) * rho_g**0.5
    t = model.t_igm_k * rho_g**0.6 + t_grav + t_fb
    return GasGrid(
        ne_cm3=ne,
        t_k=t,
        dm_pos_mpc_h=np.asarray(dm_pos_mpc_h, dtype=np.float32),
        box_mpc_h=float(box_mpc_h) if np.ndim(box_mpc_h) == 0 else tuple(float(b) for b in box_mpc_h),
        redshift=float(redshift),
        cosmology={"omega_m": float(theta_sim["omega_m"]), "h": hubble, "omega_b": model.omega_b},
        source="synthetic",
    )


def zeldovich_particles(
    seed: int,
    n_per_side: int,
    box_mpc_h: float,
    sigma_disp_mpc_h: float = 2.0,
    spectral_index: float = -2.0,
    r_cut_mpc_h: float = 1.0,
) -> np.ndarray:
    """Zel'dovich-displaced lattice of ``n_per_side^3`` DM particles (cheap stand-in for an N-body run).

    The displacement is ``psi_k = i k / k^2 delta_k`` of a Gaussian field with power
    ``P(k) ~ k^spectral_index exp(-k^2 r_cut^2)``, scaled to a 1D rms of ``sigma_disp_mpc_h``;
    at rms displacements of a few Mpc/h it forms pancakes and filaments with density peaks of
    tens to hundreds times the mean on ~1 Mpc/h cells.

    Returns:
        (n_per_side^3, 3) float32 positions [Mpc/h] in [0, box).
    """
    n = int(n_per_side)
    if n < 2:
        raise ValueError(f"n_per_side must be >= 2, got {n_per_side}")
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((n, n, n))
    k1 = 2 * np.pi * np.fft.fftfreq(n, d=box_mpc_h / n)
    kz = 2 * np.pi * np.fft.rfftfreq(n, d=box_mpc_h / n)
    kx, ky, kz = np.meshgrid(k1, k1, kz, indexing="ij")
    k2 = kx**2 + ky**2 + kz**2
    k2_safe = np.where(k2 > 0, k2, 1.0)
    amp = np.where(k2 > 0, k2_safe ** (spectral_index / 4.0) * np.exp(-0.5 * k2 * r_cut_mpc_h**2), 0.0)
    delta_k = np.fft.rfftn(white) * amp
    psi = np.stack([np.fft.irfftn(1j * kk / k2_safe * delta_k, s=(n, n, n)) for kk in (kx, ky, kz)], axis=-1)
    psi *= sigma_disp_mpc_h / psi.std()
    q = (np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1) + 0.5) * (box_mpc_h / n)
    return np.mod(q + psi, box_mpc_h).reshape(-1, 3).astype(np.float32)
