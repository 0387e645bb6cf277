"""Friends-of-friends (FoF) halo finder for particle-mesh snapshots, and the halo table.

Contract: particles (positions in a periodic cube) in, a halo table out. The halo table is
shared with the Pinocchio backend (:mod:`clustersbi.pinocchio`), so that the scaling-relation
stage reads one format whatever made the halos.

Algorithm (Davis et al. 1985): two particles are friends when closer than the linking length
``b * (V / N)^(1/3)`` (b = 0.2 by default, the mean interparticle spacing being (V/N)^(1/3));
halos are the connected components of the friendship graph. Pairs come from
:class:`scipy.spatial.cKDTree` with ``boxsize`` (periodic boundaries), components from
:func:`scipy.sparse.csgraph.connected_components`.

Memory: the pair list holds every linked pair (16 bytes each). At PM resolution (halos
resolved by a few mesh cells) this is a few pairs per particle; for very dense, well-resolved
halos it grows as the square of their particle count.

Units: positions Mpc/h, velocities km/s (whatever the input uses is averaged as is), masses
Msun/h.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .constants import RHO_CRIT_MSUN_H_MPC_H3

__all__ = [
    "HALO_COLUMNS",
    "particle_mass_msun_h",
    "linking_length_mpc_h",
    "make_halo_table",
    "fof_labels",
    "fof_halos",
]

logger = logging.getLogger(__name__)


#: Columns every halo table has, in this order (extra backend-specific columns may follow).
HALO_COLUMNS = ("x", "y", "z", "vx", "vy", "vz", "mass_msun_h", "n_part")


def particle_mass_msun_h(omega_m: float, box_mpc_h: float, n_particles: int) -> float:
    """Mass of one simulation particle: rho_crit Omega_m L^3 / N [Msun/h]."""
    if not 0 < omega_m < 1:
        raise ValueError(f"omega_m must be in (0, 1), got {omega_m}")
    if box_mpc_h <= 0 or n_particles <= 0:
        raise ValueError(f"box_mpc_h and n_particles must be positive, got {box_mpc_h}, {n_particles}")
    return RHO_CRIT_MSUN_H_MPC_H3 * omega_m * box_mpc_h**3 / n_particles


def linking_length_mpc_h(box_mpc_h: float, n_particles: int, b: float = 0.2) -> float:
    """FoF linking length b (L^3/N)^(1/3) [Mpc/h]."""
    if b <= 0:
        raise ValueError(f"linking length b must be positive, got {b}")
    return b * box_mpc_h / n_particles ** (1.0 / 3.0)


def make_halo_table(
    pos_mpc_h: np.ndarray,
    vel_km_s: np.ndarray,
    mass_msun_h: np.ndarray,
    n_part: np.ndarray,
    **extra: np.ndarray,
) -> pd.DataFrame:
    """Build the common halo table, sorted by decreasing mass.

    Args:
        pos_mpc_h: (n, 3) positions [Mpc/h].
        vel_km_s: (n, 3) velocities [km/s].
        mass_msun_h: (n,) masses [Msun/h].
        n_part: (n,) particle counts (-1 where the backend does not give it).
        extra: further (n,) columns (e.g. ``id``, ``redshift``).

    Returns:
        DataFrame with :data:`HALO_COLUMNS` first, then ``extra`` in the given order.
    """
    pos = np.asarray(pos_mpc_h, dtype=np.float64).reshape(-1, 3)
    vel = np.asarray(vel_km_s, dtype=np.float64).reshape(-1, 3)
    n = len(pos)
    if len(vel) != n or len(mass_msun_h) != n or len(n_part) != n:
        raise ValueError(
            f"halo columns differ in length: pos {n}, vel {len(vel)}, mass {len(mass_msun_h)}, n_part {len(n_part)}"
        )
    data = {
        "x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
        "vx": vel[:, 0], "vy": vel[:, 1], "vz": vel[:, 2],
        "mass_msun_h": np.asarray(mass_msun_h, dtype=np.float64),
        "n_part": np.asarray(n_part, dtype=np.int64),
    }
    for name, values in extra.items():
        if len(values) != n:
            raise ValueError(f"extra halo column {name!r} has length {len(values)}, expected {n}")
        data[name] = np.asarray(values)
    table = pd.DataFrame(data)
    return table.sort_values("mass_msun_h", ascending=False, kind="stable").reset_index(drop=True)


def fof_labels(pos_mpc_h: np.ndarray, box_mpc_h: float, linking_length_mpc_h: float) -> np.ndarray:
    """Friends-of-friends group label of every particle in a periodic cube.

    Args:
        pos_mpc_h: (n, 3) positions [Mpc/h]; wrapped into [0, box) here.
        box_mpc_h: side of the periodic cube [Mpc/h], or (3,) sides of a periodic box
            (lightcone slabs are (W, W, depth) boxes).
        linking_length_mpc_h: particles closer than this are friends [Mpc/h].

    Returns:
        (n,) int labels; particles share a label iff they are in the same group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pos = np.asarray(pos_mpc_h, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos_mpc_h must have shape (n, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("pos_mpc_h contains non-finite values")
    box = np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,))
    if linking_length_mpc_h <= 0 or np.any(linking_length_mpc_h >= 0.5 * box):
        raise ValueError(f"linking_length_mpc_h must be in (0, box/2), got {linking_length_mpc_h}")
    pos = np.mod(pos, box)
    pos[pos >= box] = 0.0  # np.mod can round up to exactly box for tiny negatives
    tree = cKDTree(pos, boxsize=box)
    pairs = tree.query_pairs(linking_length_mpc_h, output_type="ndarray")
    n = len(pos)
    logger.info("FoF: %d particles, %d linked pairs", n, len(pairs))
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def fof_halos(
    pos_mpc_h: np.ndarray,
    vel_km_s: np.ndarray,
    box_mpc_h: float,
    particle_mass_msun_h: float,
    b: float = 0.2,
    min_particles: int = 20,
    n_particles_total: int | None = None,
) -> pd.DataFrame:
    """Friends-of-friends halos of a periodic particle set.

    Halo position is the centre of mass computed with periodic unwrapping around one member
    particle (valid while a halo is smaller than half the box), wrapped back into [0, box);
    velocity is the members' mean; mass is ``n_part * particle_mass_msun_h`` (FoF mass).

    Args:
        pos_mpc_h: (n, 3) particle positions [Mpc/h].
        vel_km_s: (n, 3) particle velocities [km/s].
        box_mpc_h: side of the periodic cube [Mpc/h].
        particle_mass_msun_h: mass of one particle [Msun/h] (see :func:`particle_mass_msun_h`).
        b: linking length in units of the mean interparticle spacing.
        min_particles: smallest group kept.
        n_particles_total: particle count that sets the mean spacing (default: ``len(pos)``).

    Returns:
        Halo table (:func:`make_halo_table`), most massive first.
    """
    pos = np.asarray(pos_mpc_h, dtype=np.float64)
    vel = np.asarray(vel_km_s, dtype=np.float64)
    if vel.shape != pos.shape:
        raise ValueError(f"vel_km_s shape {vel.shape} differs from pos_mpc_h shape {pos.shape}")
    if min_particles < 2:
        raise ValueError(f"min_particles must be >= 2, got {min_particles}")
    n_total = len(pos) if n_particles_total is None else int(n_particles_total)
    labels = fof_labels(pos, box_mpc_h, linking_length_mpc_h(box_mpc_h, n_total, b))
    pos = np.mod(pos, box_mpc_h)
    counts = np.bincount(labels)
    keep_group = counts >= min_particles
    member = keep_group[labels]
    if not np.any(member):
        return make_halo_table(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=np.int64))
    # renumber the kept groups 0..n_halo-1
    new_index = np.cumsum(keep_group) - 1
    halo_of = new_index[labels[member]]
    p, v = pos[member], vel[member]
    n_halo = int(keep_group.sum())
    n_part = np.bincount(halo_of, minlength=n_halo)
    # reference particle of each halo: its first member; unwrap the others around it
    _, first_idx = np.unique(halo_of, return_index=True)
    ref = p[first_idx][halo_of]
    dx = np.mod(p - ref + 0.5 * box_mpc_h, box_mpc_h) - 0.5 * box_mpc_h
    centre = np.stack([np.bincount(halo_of, dx[:, i], n_halo) for i in range(3)], axis=1) / n_part[:, None]
    centre = np.mod(p[first_idx] + centre, box_mpc_h)
    mean_vel = np.stack([np.bincount(halo_of, v[:, i], n_halo) for i in range(3)], axis=1) / n_part[:, None]
    return make_halo_table(centre, mean_vel, n_part * particle_mass_msun_h, n_part)
