"""Lightcone slabs: geometry, and dark-matter runs of each slab as a periodic box.

Geometry (Cerardi et al., Sect. 2.3 and Fig. 4): :func:`lightcone_slab_geometry` cuts
z_min < z < z_max into ``n_slabs`` slabs of equal comoving depth whose transverse size covers
the field of view at z_max; each slab is an independent periodic box (:func:`clustersbi.pm.run_pm`)
evolved to the redshift of its comoving centre. The line of sight is the third axis of every
slab box (:data:`LOS_AXIS`). Distances in Mpc/h (flat Lambda-CDM).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .cosmology import Cosmology, comoving_distance_mpc_h, redshift_at_comoving_distance
from .pm import PMRun, run_pm

__all__ = [
    "LOS_AXIS",
    "Slab",
    "lightcone_slab_geometry",
    "lightcone_slab_mesh",
    "slab_mesh_omega_m",
    "slab_attributes",
    "simulate_lightcone_slabs",
]

logger = logging.getLogger(__name__)

#: The line of sight is the third axis of every slab box.
LOS_AXIS = 2


@dataclass(frozen=True)
class Slab:
    """One lightcone slab: a periodic box of comoving depth ``depth_mpc_h`` along the line of sight.

    Distances in Mpc/h; ``z_centre`` is the redshift at the slab's comoving mid-distance.
    """

    index: int
    chi_lo: float
    chi_hi: float
    z_lo: float
    z_hi: float
    z_centre: float
    depth_mpc_h: float
    width_mpc_h: float


def lightcone_slab_geometry(
    z_min: float, z_max: float, n_slabs: int, fov_deg2: float, omega_m: float
) -> list[Slab]:
    """Slabs of equal comoving depth between z_min and z_max covering a square field of view.

    depth = [chi(z_max) - chi(z_min)] / n_slabs; width = 2 chi(z_max) tan(theta / 2) with
    theta = sqrt(fov_deg2) degrees, the side of a square field: the transverse size of the
    field's pyramid at the far end, so every slab covers the field (Cerardi et al. Fig. 4).
    Distances in Mpc/h (flat Lambda-CDM, :func:`clustersbi.cosmology.comoving_distance_mpc_h`).

    Returns:
        ``n_slabs`` :class:`Slab` ordered by increasing distance.
    """
    if not 0 <= z_min < z_max:
        raise ValueError(f"need 0 <= z_min < z_max, got z_min={z_min}, z_max={z_max}")
    if n_slabs < 1:
        raise ValueError(f"n_slabs must be >= 1, got {n_slabs}")
    if not 0 < fov_deg2 < 180.0**2:
        raise ValueError(f"fov_deg2 must be in (0, 32400), got {fov_deg2}")
    chi_min, chi_max = (float(c) for c in comoving_distance_mpc_h(np.array([z_min, z_max]), omega_m))
    edges = np.linspace(chi_min, chi_max, n_slabs + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    z_edges = redshift_at_comoving_distance(edges, omega_m)
    z_edges[0], z_edges[-1] = z_min, z_max
    z_centres = redshift_at_comoving_distance(centres, omega_m)
    theta_rad = np.deg2rad(np.sqrt(fov_deg2))
    width = 2.0 * chi_max * np.tan(0.5 * theta_rad)
    depth = (chi_max - chi_min) / n_slabs
    return [
        Slab(i, float(edges[i]), float(edges[i + 1]), float(z_edges[i]), float(z_edges[i + 1]),
             float(z_centres[i]), float(depth), float(width))
        for i in range(n_slabs)
    ]


def lightcone_slab_mesh(slabs: Sequence[Slab], cell_mpc_h: float) -> tuple[int, int, int]:
    """Smallest (n_w, n_w, n_d) mesh of ``cell_mpc_h`` cells whose box covers every slab given."""
    n_w = max(int(np.ceil(s.width_mpc_h / cell_mpc_h - 1e-9)) for s in slabs)
    n_d = max(int(np.ceil(s.depth_mpc_h / cell_mpc_h - 1e-9)) for s in slabs)
    return (n_w, n_w, n_d)


def simulate_lightcone_slabs(
    cosmo: Cosmology,
    k_h_mpc: np.ndarray,
    pk_linear_z0: np.ndarray,
    slabs: Sequence[Slab],
    *,
    cell_mpc_h: float,
    seeds: Sequence[int],
    a_init: float = 0.1,
    n_steps: int = 40,
    keep_particles: bool = True,
    force_mesh_factor: int = 1,
    mesh_shape: Sequence[int] | None = None,
    density: bool = False,
    cic_chunk_size: int | None = None,
) -> list[PMRun]:
    """Evolve each slab as an independent periodic box to the redshift of its centre.

    Each slab's box is (n_w, n_w, n_d) cells of ``cell_mpc_h`` with n_w = ceil(width / cell),
    n_d = ceil(depth / cell) (the line of sight is the third axis), so it covers the slab; slab
    ``slabs[i]`` uses ``seeds[i]`` (the stage derives them per simulation, lightcone and slab). A given ``mesh_shape`` (at least that large,
    :func:`lightcone_slab_mesh`) is used for every slab instead: simulations of different
    Omega_m then share one compiled PM step; the painters keep only the cells inside the slab.

    Returns:
        one :class:`PMRun` per slab, each with a single snapshot at a = 1 / (1 + z_centre).
    """
    if cell_mpc_h <= 0:
        raise ValueError(f"cell_mpc_h must be positive, got {cell_mpc_h}")
    if mesh_shape is not None:
        needed = lightcone_slab_mesh(slabs, cell_mpc_h)
        if any(m < n for m, n in zip(mesh_shape, needed)):
            raise ValueError(f"mesh_shape {tuple(mesh_shape)} does not cover the slabs, which need {needed} cells")
    if len(seeds) != len(slabs):
        raise ValueError(f"{len(seeds)} seeds for {len(slabs)} slabs")
    runs = []
    for slab, slab_seed in zip(slabs, seeds):
        shape = tuple(int(m) for m in mesh_shape) if mesh_shape is not None else lightcone_slab_mesh([slab], cell_mpc_h)
        logger.info("lightcone slab %d/%d: mesh %s, z_centre %.4f", slab.index + 1, len(slabs), shape, slab.z_centre)
        runs.append(
            run_pm(
                cosmo, k_h_mpc, pk_linear_z0, mesh_shape=shape,
                box_mpc_h=tuple(n * cell_mpc_h for n in shape), seed=slab_seed,
                snapshot_a=(1.0 / (1.0 + slab.z_centre),), a_init=a_init, n_steps=n_steps,
                keep_particles=keep_particles, force_mesh_factor=force_mesh_factor,
                context=f"slab {slab.index} (seed {slab_seed}), {cosmo}",
                initial_snapshot=False, density=density, cic_chunk_size=cic_chunk_size,
            )
        )
    return runs


def slab_mesh_omega_m(cosmology_priors: Sequence[Mapping[str, Any]], fiducial_omega_m: float) -> float:
    """Omega_m at which fixed slab meshes are sized: the prior's lower bound of Omega_m.

    Comoving distances in Mpc/h, hence slab widths and depths, decrease with Omega_m, so the
    smallest Omega_m of the prior needs the largest boxes; the fiducial when Omega_m is fixed.
    """
    for prior in cosmology_priors:
        if prior["name"] == "Omega_m":
            return float(prior["low"])
    return float(fiducial_omega_m)


def slab_attributes(slab, mesh_shape, box_mpc_h, cell_mpc_h: float) -> dict[str, Any]:
    """HDF5 attributes of one slab group: the slab geometry plus its box and mesh.

    Args:
        slab: :class:`Slab`.
        mesh_shape: (3,) cells (= particles) per axis of the slab box.
        box_mpc_h: (3,) box sides [Mpc/h] (mesh_shape x cell_mpc_h).
        cell_mpc_h: cell size [Mpc/h].
    """
    return {
        "index": int(slab.index),
        "chi_lo": float(slab.chi_lo),
        "chi_hi": float(slab.chi_hi),
        "z_lo": float(slab.z_lo),
        "z_hi": float(slab.z_hi),
        "z_centre": float(slab.z_centre),
        "depth_mpc_h": float(slab.depth_mpc_h),
        "width_mpc_h": float(slab.width_mpc_h),
        "box_mpc_h": np.asarray(box_mpc_h, dtype=np.float64),
        "mesh_shape": np.asarray(mesh_shape, dtype=np.int64),
        "cell_mpc_h": float(cell_mpc_h),
        "los_axis": LOS_AXIS,
    }
