"""The lightcone stage per chunk: dark-matter particles of every lightcone slab of a design chunk.

Contract (rule ``simulate_lightcone``):
  in:  the chunk's linear-power file (:func:`clustersbi.cosmology.write_linear_power`), the
       chunk design (:func:`clustersbi.design.chunk_design`), the config's ``simulation``
       section (``a_init``, ``n_steps`` and ``lightcone``: z_min, z_max, n_slabs, fov_deg2,
       cell_mpc_h, n_lightcones) and the global seed.
  out: ``results/particles/chunk_{chunk}.h5`` (a large intermediate): one group
       ``sim_{index:06d}/lc_{l:02d}/slab_{s:02d}`` per simulation, lightcone and slab, with

       - dataset ``positions_mpc_h``: (N, 3) float32 comoving positions in [0, box) [Mpc/h],
         N = prod(mesh_shape) (one particle per cell), the line of sight along the third axis;
       - slab attributes: the geometry of :class:`clustersbi.simulate.Slab` (``index``,
         ``chi_lo``, ``chi_hi``, ``z_lo``, ``z_hi``, ``z_centre``, ``depth_mpc_h``,
         ``width_mpc_h``), ``box_mpc_h`` (3,), ``mesh_shape`` (3,), ``cell_mpc_h``,
         ``los_axis`` = 2 and ``seed`` (the slab's initial-condition seed);
       - ``lc_..`` attributes: ``lightcone`` and ``seed`` (the lightcone seed);
       - ``sim_..`` attributes: ``index``, ``seed``, ``split``, ``param_<name>`` for every
         design parameter, ``omega_m``, ``h`` and ``cosmology`` (all cosmological parameters).

Geometry and physics are :func:`clustersbi.simulate.lightcone_slab_geometry` and
:func:`clustersbi.simulate.simulate_lightcone_slabs` (Cerardi et al., Sect. 2.3, Fig. 4): the
slabs of a lightcone have equal comoving depth, depend on Omega_m, and each is an independent
periodic box evolved to the redshift of its centre. Lightcone ``l`` of simulation ``i`` has the
seed ``derive_seed(global_seed, SeedStream.LIGHTCONE, i, l)``; its slab ``s`` uses
``clustersbi.simulate.derive_seed(lightcone_seed, s)``, so any slab can be regenerated alone.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .cosmology import read_linear_power
from .design import SeedStream, derive_seed
from .io import atomic_path, h5_read_attrs, h5_write_attrs

__all__ = [
    "LOS_AXIS",
    "lightcone_seed",
    "slab_attributes",
    "simulate_lightcone_chunk",
    "iter_slabs",
    "read_slab_attributes",
    "slab_mesh_omega_m",
]

logger = logging.getLogger(__name__)

#: The line of sight is the third axis of every slab box.
LOS_AXIS = 2


def lightcone_seed(global_seed: int, index: int, lightcone: int) -> int:
    """Seed of lightcone ``lightcone`` of simulation ``index`` (32 bits, from SeedStream.LIGHTCONE)."""
    return derive_seed(global_seed, SeedStream.LIGHTCONE, index, lightcone)


def slab_attributes(slab, mesh_shape, box_mpc_h, cell_mpc_h: float) -> dict[str, Any]:
    """HDF5 attributes of one slab group: the slab geometry plus its box and mesh.

    Args:
        slab: :class:`clustersbi.simulate.Slab`.
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


def _sim_attributes(design: Mapping[str, Any], pos: int, cosmo) -> dict[str, Any]:
    names = list(design["outer_names"])
    row = design["outer"][pos]
    return {
        "index": int(design["indices"][pos]),
        "seed": int(design["seeds"][pos]),
        "split": str(design["splits"][pos]),
        **{f"param_{n}": float(v) for n, v in zip(names, row)},
        "omega_m": float(cosmo.Omega_m),
        "h": float(cosmo.h),
        "cosmology": {k: float(v) for k, v in vars(cosmo).items()},
    }


def simulate_lightcone_chunk(
    linear_power_file: str | Path,
    design: Mapping[str, Any],
    simulation_cfg: Mapping[str, Any],
    global_seed: int,
    particle_file: str | Path,
    mesh_omega_m: float | None = None,
) -> None:
    """Simulate ``n_lightcones`` x ``n_slabs`` slab boxes per simulation of a chunk; write the particles.

    Args:
        linear_power_file: the chunk's CAMB file (P(k) at the redshift nearest 0 is used).
        design: the chunk design (``indices``, ``seeds``, ``splits``, ``outer_names``, ``outer``).
        simulation_cfg: the config's ``simulation`` section.
        global_seed: the config's ``seed``.
        particle_file: output HDF5 path (layout in the module docstring), written atomically.
        mesh_omega_m: if given, every slab box of the chunk gets the mesh that covers the slabs
            at this Omega_m (:func:`slab_mesh_omega_m`) and the simulation's own: one PM
            compilation per job instead of one per simulation.

    Raises:
        RuntimeError: naming the simulation index, lightcone, slab and parameters when a run
            fails (e.g. NaN in the particles).
    """
    import h5py

    from .simulate import derive_seed as slab_seed
    from .simulate import lightcone_slab_geometry, lightcone_slab_mesh, simulate_lightcone_slabs

    lc = simulation_cfg["lightcone"]
    n_lightcones = int(lc["n_lightcones"])
    if n_lightcones < 1:
        raise ValueError(f"simulation.lightcone.n_lightcones must be >= 1, got {n_lightcones}")
    cell = float(lc["cell_mpc_h"])
    indices = list(design["indices"])
    n_slabs = int(lc["n_slabs"])
    total = len(indices) * n_lightcones * n_slabs
    done = 0
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(particle_file)), "w"))
        for pos, index in enumerate(indices):
            cosmo, linear = read_linear_power(linear_power_file, index)
            z0 = int(np.argmin(np.abs(linear.redshifts)))
            params = dict(zip(design["outer_names"], design["outer"][pos]))
            geometry = (float(lc["z_min"]), float(lc["z_max"]), n_slabs, float(lc["fov_deg2"]))
            slabs = lightcone_slab_geometry(*geometry, cosmo.Omega_m)
            mesh = None
            if mesh_omega_m is not None:
                mesh = lightcone_slab_mesh(slabs + lightcone_slab_geometry(*geometry, mesh_omega_m), cell)
            g_sim = out.create_group(f"sim_{index:06d}")
            h5_write_attrs(g_sim, _sim_attributes(design, pos, cosmo))
            for light in range(n_lightcones):
                seed_lc = lightcone_seed(global_seed, index, light)
                g_lc = g_sim.create_group(f"lc_{light:02d}")
                h5_write_attrs(g_lc, {"lightcone": light, "seed": seed_lc})
                for slab in slabs:
                    where = f"simulation {index} ({params}), lightcone {light}, slab {slab.index}"
                    try:
                        # one slab at a time (same per-slab seeds as a call with all slabs): only
                        # one slab's particles are ever in memory
                        (run,) = simulate_lightcone_slabs(
                            cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[z0], [slab], cell_mpc_h=cell,
                            seed=seed_lc, a_init=float(simulation_cfg["a_init"]),
                            n_steps=int(simulation_cfg["n_steps"]), keep_particles=True, mesh_shape=mesh,
                        )
                        # run_pm has already checked the positions are finite
                        positions = np.asarray(run.snapshots[-1].positions_mpc_h, dtype=np.float32)
                    except Exception as err:
                        raise RuntimeError(f"{where} failed: {err}") from err
                    g_slab = g_lc.create_group(f"slab_{slab.index:02d}")
                    g_slab.create_dataset("positions_mpc_h", data=positions)
                    h5_write_attrs(g_slab, {
                        **slab_attributes(slab, run.mesh_shape, run.box_mpc_h, cell),
                        "seed": slab_seed(seed_lc, slab.index),
                        "z_snapshot": 1.0 / run.snapshots[-1].a - 1.0,
                    })
                    done += 1
                    logger.info(
                        "chunk %s: %d/%d slabs (simulation %d, lightcone %d/%d, slab %d/%d, mesh %s)",
                        design["chunk"], done, total, index, light + 1, n_lightcones, slab.index + 1, n_slabs,
                        tuple(run.mesh_shape),
                    )
        h5_write_attrs(out, {"simulation": dict(simulation_cfg), "global_seed": int(global_seed)})
        # the HDF5 file closes (ExitStack, last in first out) before its atomic rename


def slab_mesh_omega_m(cosmology_priors: Sequence[Mapping[str, Any]], fiducial_omega_m: float) -> float:
    """Omega_m at which fixed slab meshes are sized: the prior's lower bound of Omega_m.

    Comoving distances in Mpc/h, hence slab widths and depths, decrease with Omega_m, so the
    smallest Omega_m of the prior needs the largest boxes; the fiducial when Omega_m is fixed.
    """
    for prior in cosmology_priors:
        if prior["name"] == "Omega_m":
            return float(prior["low"])
    return float(fiducial_omega_m)


def iter_slabs(h5file):
    """Yield ``(sim_group, lc_group, slab_group)`` of an open particle or gas file, in sorted order."""
    for sim_name in sorted(n for n in h5file if n.startswith("sim_")):
        g_sim = h5file[sim_name]
        for lc_name in sorted(n for n in g_sim if n.startswith("lc_")):
            g_lc = g_sim[lc_name]
            for slab_name in sorted(n for n in g_lc if n.startswith("slab_")):
                yield g_sim, g_lc, g_lc[slab_name]


def read_slab_attributes(group) -> dict[str, Any]:
    """Attributes of a slab group as plain Python values (arrays for box and mesh)."""
    return h5_read_attrs(group)
