"""Cluster cutouts from our own lightcone slabs: halos, SO masses and images.

Arrays in, arrays out (the slab's particles and painted gas; no files). Units: comoving
positions and lengths in Mpc/h, masses in Msun/h, radii of the cutout format in physical kpc,
electron densities comoving [cm^-3] as the gas stage writes them (physical = comoving (1+z)^3),
temperatures in K. The line of sight is the slab's third axis (:data:`clustersbi.lightcone.LOS_AXIS`).

- **Halos.** Friends-of-friends groups of the slab particles (:func:`clustersbi.fof.fof_labels`,
  b = 0.2, periodic (W, W, depth) box) above a FoF-mass cut.
- **Centre.** The members' centre of mass (periodic unwrapping about one member), not a
  potential minimum: at 1 Mpc/h cells a PM halo is a few cells across, so the two differ by
  less than a cell.
- **SO masses.** M_Delta, R_Delta (Delta = 500, 200 times rho_c(z) = rho_c0 E(z)^2, flat LCDM):
  the largest radius about the centre within which the mean density of the particles is at
  least Delta rho_c(z), and the particle mass inside it (particles sorted by distance; physical
  radius = comoving / (1+z)).
- **Images** on the slab's cells (pixel = one cell, ``cell_mpc_h`` comoving, projected through
  the slab's whole depth): projected total mass (NGP histogram of the particles) [Msun/h per
  pixel]; X-ray count rate per band [cts/s per pixel] summed over the cells along the line of
  sight by :func:`clustersbi.xray.maps.voxel_count_rates` (the X-ray chain's emission table,
  response and gas composition), each cell at the slab's ``z_centre`` and comoving distance of
  its layer; Compton-y, y = sigma_T / (m_e c^2) integral n_e k T dl with physical n_e and dl.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cluster_images import compton_y
from .cutouts import Cutouts, xray_channel_name
from .constants import K_B_KEV_PER_K, MPC_CM, RHO_CRIT_MSUN_H_MPC_H3
from .cosmology import efunc
from .fof import fof_labels, linking_length_mpc_h
from .xray.emission import EmissionTable
from .xray.maps import voxel_count_rates

__all__ = [
    "SlabHalos",
    "find_slab_halos",
    "spherical_overdensity",
    "cell_window",
    "projected_mass_map",
    "compton_y_map",
    "xray_rate_map",
    "slab_cutouts",
]


@dataclass(frozen=True)
class SlabHalos:
    """FoF halos of a slab: ``centre_mpc_h`` (n, 3) comoving in [0, box), ``fof_mass_msun_h`` (n,),
    ``n_part`` (n,), most massive first."""

    centre_mpc_h: np.ndarray
    fof_mass_msun_h: np.ndarray
    n_part: np.ndarray


def find_slab_halos(positions_mpc_h: np.ndarray, box_mpc_h, particle_mass_msun_h: float, mass_min_msun_h: float,
                    b: float = 0.2, min_particles: int = 20) -> SlabHalos:
    """FoF halos of a slab's particles with FoF mass >= ``mass_min_msun_h`` (module docstring).

    Args:
        positions_mpc_h: (N, 3) comoving positions [Mpc/h], one particle per cell.
        box_mpc_h: (3,) periodic box sides [Mpc/h].
        particle_mass_msun_h: mass of one particle [Msun/h].
        mass_min_msun_h: FoF mass cut [Msun/h]; groups of fewer than ``min_particles`` are dropped too.
        b: linking length in mean interparticle spacings (the spacing is the cell, N = cells).
    """
    pos = np.asarray(positions_mpc_h, dtype=np.float64)
    box = np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,))
    spacing = float(np.prod(box) / len(pos)) ** (1.0 / 3.0)
    labels = fof_labels(pos, box, linking_length_mpc_h(spacing, 1, b))
    pos = np.mod(pos, box)
    counts = np.bincount(labels)
    keep = (counts >= min_particles) & (counts * particle_mass_msun_h >= mass_min_msun_h)
    groups = np.flatnonzero(keep)
    groups = groups[np.argsort(-counts[groups], kind="stable")]
    centres = np.empty((groups.size, 3))
    for k, g in enumerate(groups):
        p = pos[labels == g]
        d = np.mod(p - p[0] + 0.5 * box, box) - 0.5 * box
        centres[k] = np.mod(p[0] + d.mean(axis=0), box)
    n = counts[groups].astype(np.int64)
    return SlabHalos(centres, n * float(particle_mass_msun_h), n)


def spherical_overdensity(positions_mpc_h: np.ndarray, box_mpc_h, centre_mpc_h, particle_mass_msun_h: float,
                          z: float, omega_m: float, delta: float) -> tuple[float, float]:
    """(M_Delta [Msun/h], R_Delta [comoving Mpc/h]) about ``centre_mpc_h`` (module docstring).

    Args:
        positions_mpc_h: (N, 3) comoving particle positions [Mpc/h] in a periodic box of sides
            ``box_mpc_h`` (3,) (distances use the nearest periodic image).
        centre_mpc_h: (3,) comoving centre [Mpc/h].
        z, omega_m: redshift and Omega_m of rho_c(z) = rho_c0 E(z)^2.
        delta: overdensity in units of rho_c(z) (500, 200).

    Returns:
        the mass and comoving radius; (0, 0) when not even the nearest particle's sphere is dense enough.
    """
    box = np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,))
    d = np.asarray(positions_mpc_h, dtype=np.float64) - np.asarray(centre_mpc_h, dtype=np.float64)
    d = np.mod(d + 0.5 * box, box) - 0.5 * box
    r = np.sort(np.sqrt(np.sum(d * d, axis=1)))
    # comoving threshold: Delta rho_c(z) in physical units is Delta rho_c(z) (1+z)^-3 per comoving volume
    rho_threshold = delta * RHO_CRIT_MSUN_H_MPC_H3 * float(efunc(z, omega_m)) ** 2 / (1.0 + z) ** 3
    enclosed = particle_mass_msun_h * np.arange(1, r.size + 1)
    with np.errstate(divide="ignore"):
        mean_density = enclosed / (4.0 / 3.0 * np.pi * r**3)
    dense = np.flatnonzero(mean_density >= rho_threshold)
    if dense.size == 0:
        return 0.0, 0.0
    k = int(dense[-1])
    return float(enclosed[k]), float(r[k])


def cell_window(grid: np.ndarray, centre_cell: tuple[int, int], npix: int) -> np.ndarray:
    """The npix x npix transverse window of a (n0, n1, n_los) grid about cell (i, j), whole depth,
    wrapped periodically; shape (npix, npix, n_los), first index along axis 0."""
    i0 = int(centre_cell[0]) - npix // 2
    j0 = int(centre_cell[1]) - npix // 2
    rows = np.arange(i0, i0 + npix) % grid.shape[0]
    cols = np.arange(j0, j0 + npix) % grid.shape[1]
    return grid[np.ix_(rows, cols)]


def projected_mass_map(positions_mpc_h: np.ndarray, box_mpc_h, centre_cell: tuple[int, int], npix: int,
                       cell_mpc_h: float, particle_mass_msun_h: float) -> np.ndarray:
    """Projected total mass [Msun/h per pixel] (npix, npix) on the cells of :func:`cell_window`
    (NGP; the whole slab depth), indexed like the gas windows: [axis-0 cell, axis-1 cell]."""
    box = np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,))
    n_cells = np.rint(box[:2] / cell_mpc_h).astype(np.int64)
    cells = np.floor(np.mod(np.asarray(positions_mpc_h, dtype=np.float64)[:, :2], box[:2]) / cell_mpc_h).astype(np.int64)
    cells = np.minimum(cells, n_cells - 1)
    origin = np.asarray(centre_cell, dtype=np.int64) - npix // 2
    local = np.mod(cells - origin, n_cells)
    keep = np.all(local < npix, axis=1)
    flat = np.bincount(local[keep, 0] * npix + local[keep, 1], minlength=npix * npix)
    return flat.reshape(npix, npix) * float(particle_mass_msun_h)


def compton_y_map(ne_cm3: np.ndarray, t_k: np.ndarray, z: float, cell_mpc_h: float, h: float) -> np.ndarray:
    """Compton-y (npix, npix) of gas cells (npix, npix, n_los), summed along the last axis.

    y = sigma_T / (m_e c^2) sum n_e,phys k T dl_phys, n_e,phys = n_e,com (1+z)^3 [cm^-3],
    dl_phys = cell_mpc_h (Mpc/h -> cm) / (1+z), kT in keV, m_e c^2 = 511 keV.
    """
    ne_phys = np.asarray(ne_cm3, dtype=np.float64) * (1.0 + z) ** 3
    kt_kev = np.asarray(t_k, dtype=np.float64) * K_B_KEV_PER_K
    dl_cm = cell_mpc_h * MPC_CM / h / (1.0 + z)
    return compton_y(ne_phys * kt_kev, dl_cm)


def xray_rate_map(ne_cm3: np.ndarray, t_k: np.ndarray, z: float, chi_lo_mpc_h: float, cell_mpc_h: float, h: float,
                  table: EmissionTable) -> np.ndarray:
    """X-ray count rate [cts/s per pixel] (n_b, npix, npix) of gas cells (npix, npix, n_los).

    Every cell is at redshift ``z`` (the slab's centre); layer k along the line of sight at
    comoving distance chi_lo + (k + 1/2) cell; the per-cell rates are
    :func:`clustersbi.xray.maps.voxel_count_rates` (comoving n_e), summed over the layers.
    """
    ne = np.asarray(ne_cm3, dtype=np.float64)
    t = np.asarray(t_k, dtype=np.float64)
    out = np.zeros((table.bands_kev.shape[0],) + ne.shape[:2])
    for k in range(ne.shape[-1]):
        chi = chi_lo_mpc_h + (k + 0.5) * cell_mpc_h
        out += voxel_count_rates(ne[..., k], t[..., k], z, chi, cell_mpc_h**3, h, table)
    return out


def slab_cutouts(positions_mpc_h: np.ndarray, ne_cm3: np.ndarray, t_k: np.ndarray, slab: dict, omega_m: float,
                 h: float, table: EmissionTable, *, mass_min_msun_h: float, npix: int, exposure_s: float,
                 region: int = 0, first_id: int = 0) -> Cutouts | None:
    """Cutouts (one view, along the slab's line of sight) of every halo of one slab, or None if none.

    Args:
        positions_mpc_h: (N, 3) the slab's particles; ``ne_cm3``, ``t_k``: its painted gas on the
            slab mesh ``slab["mesh_shape"]`` (comoving n_e [cm^-3], T [K]).
        slab: the slab attributes (:func:`clustersbi.lightcone.slab_attributes`).
        omega_m, h: the simulation's cosmology; ``table``: the X-ray chain's emission table.
        mass_min_msun_h: FoF mass cut [Msun/h]; npix: pixels (= cells) per side.
        exposure_s: the X-ray channels are expected counts, count rate x exposure (no Poisson noise).
        region, first_id: the cutouts' ``region`` and the first ``cluster_id``.

    Channels: ``xray_<lo>-<hi>`` per band of ``table``, ``y``, ``mass``; pixel scale = the cell,
    cell_mpc_h / (1+z) / h in physical kpc x 1e3; redshift = the slab's ``z_centre``.
    """
    box = np.asarray(slab["box_mpc_h"], dtype=np.float64)
    cell = float(slab["cell_mpc_h"])
    z = float(slab["z_centre"])
    m_part = RHO_CRIT_MSUN_H_MPC_H3 * omega_m * float(np.prod(box)) / len(positions_mpc_h)
    halos = find_slab_halos(positions_mpc_h, box, m_part, mass_min_msun_h)
    kept, images = [], {name: [] for name in ("xray", "y", "mass")}
    for k, centre in enumerate(halos.centre_mpc_h):
        m500, r500 = spherical_overdensity(positions_mpc_h, box, centre, m_part, z, omega_m, 500.0)
        m200, r200 = spherical_overdensity(positions_mpc_h, box, centre, m_part, z, omega_m, 200.0)
        if m500 <= 0 or m200 <= 0:
            continue  # no particle sphere reaches 500 rho_c(z) about the FoF centre
        cc = tuple(int(c) for c in np.floor(centre[:2] / cell))
        ne_w, t_w = cell_window(ne_cm3, cc, npix), cell_window(t_k, cc, npix)
        images["xray"].append(xray_rate_map(ne_w, t_w, z, float(slab["chi_lo"]), cell, h, table) * exposure_s)
        images["y"].append(compton_y_map(ne_w, t_w, z, cell, h))
        images["mass"].append(projected_mass_map(positions_mpc_h, box, cc, npix, cell, m_part))
        kept.append((k, m500, m200, r500, r200))
    if not kept:
        return None
    idx, m500, m200, r500, r200 = (np.array(v) for v in zip(*kept))
    to_kpc = 1e3 / h / (1.0 + z)
    xray = np.stack(images["xray"])
    channels = {xray_channel_name(lo, hi): xray[:, b] for b, (lo, hi) in enumerate(table.bands_kev)}
    n = len(idx)
    return Cutouts(
        images={**channels, "y": np.stack(images["y"]), "mass": np.stack(images["mass"])},
        pixel_kpc=np.full(n, cell * to_kpc), cluster_id=first_id + np.arange(n), view=np.zeros(n, dtype=np.int64),
        region=np.full(n, region), redshift=np.full(n, z), M500c=m500, M200c=m200, R500c_kpc=r500 * to_kpc,
        R200c_kpc=r200 * to_kpc, exposure_s=np.full(n, exposure_s), source="simulation",
        position=halos.centre_mpc_h[idx.astype(int)], extras={"fof_mass_msun_h": halos.fof_mass_msun_h[idx.astype(int)]},
    )
