"""The simulate stage: dark matter for every simulation of a design chunk.

Contracts (HDF5 chunk files, :class:`clustersbi.io.ChunkFile`; written atomically):

- rule ``simulate`` (analysis ``scaling``): in the chunk's linear-power file
  (:mod:`clustersbi.stages.cosmology`), the chunk design and config sections ``simulation``
  and ``pinocchio``. Out ``results/halos/chunk_{chunk}.h5``: one group ``sim_{index:06d}``
  per simulation with the halo table as datasets (x, y, z [Mpc/h], vx, vy, vz [km/s],
  mass_msun_h, n_part), for PM runs the validation spectra and slice (``pk_k``,
  ``pk_initial``, ``pk_final``, ``growth_ratio``, ``density_slice``), and attributes: the
  simulation record, ``box_mpc_h``, ``z``, ``n_mesh``, ``particle_mass_msun_h``, ``backend``,
  ``n_halos``, ``cosmo_<name>`` (every cosmological parameter) and, for Pinocchio, the
  ``pinocchio_seed`` it ran with (the design seed folded to 31 bits). Backends: JaxPM
  (:mod:`clustersbi.pm`, FoF halos from :mod:`clustersbi.fof`) or Pinocchio
  (:mod:`clustersbi.pinocchio`, an external executable).
- rule ``simulate_lightcone`` (analysis ``ldl``): in the linear-power file, the chunk design,
  config section ``simulation`` (``a_init``, ``n_steps``, ``lightcone``) and the global seed.
  Out ``results/particles/chunk_{chunk}.h5`` (a large intermediate): one group
  ``sim_{index:06d}/lc_{l:02d}/slab_{s:02d}`` per simulation, lightcone and slab, with

  - dataset ``positions_mpc_h``: (N, 3) float32 comoving positions in [0, box) [Mpc/h],
    N = prod(mesh_shape) (one particle per cell), the line of sight along the third axis;
  - slab attributes: :func:`clustersbi.lightcone.slab_attributes` (geometry, ``box_mpc_h``
    (3,), ``mesh_shape`` (3,), ``cell_mpc_h``, ``los_axis`` = 2), ``seed`` (the slab's
    initial-condition seed) and ``z_snapshot``;
  - ``sim_..`` attributes: the simulation record, ``omega_m``, ``h`` and ``cosmology`` (all
    cosmological parameters).

  Slab ``s`` of lightcone ``l`` of simulation ``i`` has the seed
  ``derive_seed(global_seed, SeedStream.SLAB, i, l, s)``: any slab can be regenerated alone.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..cosmology import Cosmology, LinearPower, growth_factor
from ..design import ChunkDesign, SeedStream, derive_seed
from ..fof import HALO_COLUMNS, fof_halos, particle_mass_msun_h
from ..io import ChunkFile
from ..lightcone import lightcone_slab_geometry, lightcone_slab_mesh, simulate_lightcone_slabs, slab_attributes
from ..pinocchio import (
    catalogue_path,
    pinocchio_parameters,
    pinocchio_seed,
    read_catalogue,
    run_pinocchio,
    write_output_list,
    write_parameter_file,
    write_power_table,
)
from ..pm import density_power_spectrum, simulate_box
from ..products import read_linear_power

__all__ = [
    "SimulationSettings",
    "HaloCatalogue",
    "jaxpm_box_halos",
    "pinocchio_box_halos",
    "simulate_chunk",
    "slab_seed",
    "simulate_lightcone_chunk",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationSettings:
    """The ``simulation`` config section (box geometry) as typed values."""

    backend: str
    box_mpc_h: float
    n_mesh: int
    a_init: float
    n_steps: int
    z_snapshot: float
    force_mesh_factor: int
    fof_linking_length: float
    fof_min_particles: int

    @classmethod
    def from_config(cls, sim: Mapping[str, Any]) -> "SimulationSettings":
        return cls(
            backend=sim["backend"],
            box_mpc_h=float(sim["box_mpc_h"]),
            n_mesh=int(sim["n_mesh"]),
            a_init=float(sim["a_init"]),
            n_steps=int(sim["n_steps"]),
            z_snapshot=float(sim["z_snapshot"]),
            force_mesh_factor=int(sim["force_mesh_factor"]),
            fof_linking_length=float(sim["fof"]["linking_length"]),
            fof_min_particles=int(sim["fof"]["min_particles"]),
        )


@dataclass
class HaloCatalogue:
    """Halos of one simulation, with what is needed to validate it.

    Attributes:
        halos: halo table (:data:`clustersbi.fof.HALO_COLUMNS`), most massive first.
        particle_mass_msun_h: mass of one particle [Msun/h].
        validation: ``pk_k`` [h/Mpc], ``pk_initial``/``pk_final`` [(Mpc/h)^3] of the matter
            field (same seed), and ``growth_ratio`` = P_final / P_initial / (D/D_init)^2
            per bin (1 on linear scales); empty for backends without particles.
    """

    halos: pd.DataFrame
    particle_mass_msun_h: float
    validation: dict[str, np.ndarray]


def _validation_spectra(run, box_mpc_h: float, omega_m: float) -> dict[str, np.ndarray]:
    initial = density_power_spectrum(run.initial.density, box_mpc_h)
    final = density_power_spectrum(run.snapshots[-1].density, box_mpc_h)
    linear_growth = (growth_factor(run.snapshots[-1].a, omega_m) / growth_factor(run.initial.a, omega_m)) ** 2
    density = run.snapshots[-1].density
    return {
        "pk_k": initial.k_h_mpc,
        "pk_initial": initial.pk_mpc_h3,
        "pk_final": final.pk_mpc_h3,
        "growth_ratio": final.pk_mpc_h3 / initial.pk_mpc_h3 / linear_growth,
        # projected density (units of the mean) of a slab one eighth of the box deep
        "density_slice": density[:, :, : max(1, density.shape[2] // 8)].mean(axis=2),
    }


def jaxpm_box_halos(
    cosmo: Cosmology,
    linear: LinearPower,
    settings: SimulationSettings,
    seed: int,
    context: str = "",
) -> HaloCatalogue:
    """Run one JaxPM box to ``settings.z_snapshot`` and find its FoF halos."""
    z0 = int(np.argmin(np.abs(linear.redshifts)))
    run = simulate_box(
        cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[z0],
        box_mpc_h=settings.box_mpc_h, n_mesh=settings.n_mesh, z_snapshot=settings.z_snapshot,
        seed=seed, a_init=settings.a_init, n_steps=settings.n_steps, keep_particles=True,
        force_mesh_factor=settings.force_mesh_factor,
    )
    snap = run.snapshots[-1]
    n_particles = settings.n_mesh**3
    m_particle = particle_mass_msun_h(cosmo.Omega_m, settings.box_mpc_h, n_particles)
    halos = fof_halos(
        snap.positions_mpc_h, snap.velocities_km_s, settings.box_mpc_h, m_particle,
        b=settings.fof_linking_length, min_particles=settings.fof_min_particles,
    )
    if halos.empty:
        logger.warning("%s: no FoF halo with >= %d particles", context, settings.fof_min_particles)
    return HaloCatalogue(
        halos=halos,
        particle_mass_msun_h=m_particle,
        validation=_validation_spectra(run, settings.box_mpc_h, cosmo.Omega_m),
    )


def pinocchio_box_halos(
    cosmo: Cosmology,
    linear: LinearPower,
    settings: SimulationSettings,
    pinocchio: Mapping[str, Any],
    seed: int,
    log_path: str | Path,
) -> HaloCatalogue:
    """Run Pinocchio for one box (in a scratch directory) and read its halo catalogue."""
    z0 = int(np.argmin(np.abs(linear.redshifts)))
    with tempfile.TemporaryDirectory(prefix="pinocchio_") as scratch:
        work = Path(scratch)
        write_power_table(linear.k_h_mpc, linear.pk_mpc3_h3[z0], work / "pk_linear_z0.txt")
        write_output_list([settings.z_snapshot], work / "outputs")
        params = pinocchio_parameters(
            cosmo, run_flag="run", box_mpc_h=settings.box_mpc_h, grid_size=settings.n_mesh,
            seed=seed, min_halo_mass_particles=settings.fof_min_particles,
            analytic_mass_function=int(pinocchio["analytic_mass_function"]),
            max_mem_mb=int(pinocchio["max_mem_mb"]),
        )
        write_parameter_file(params, work / "parameters")
        run_pinocchio(
            work / "parameters", pinocchio["executable"], log_path,
            mpi_launcher=pinocchio["mpi_launcher"], n_tasks=int(pinocchio["n_tasks"]), workdir=work,
            timeout_s=pinocchio.get("timeout_s"),
        )
        m_particle = particle_mass_msun_h(cosmo.Omega_m, settings.box_mpc_h, settings.n_mesh**3)
        halos = read_catalogue(catalogue_path(work, settings.z_snapshot, "run"), particle_mass_msun_h=m_particle)
    return HaloCatalogue(halos=halos[list(HALO_COLUMNS)], particle_mass_msun_h=m_particle, validation={})


def simulate_chunk(
    linear_power_file: str | Path,
    design_params: Mapping[str, Any],
    simulation: Mapping[str, Any],
    halo_file: str | Path,
    pinocchio: Mapping[str, Any] | None = None,
    log_dir: str | Path | None = None,
) -> None:
    """Rule ``simulate``: simulate every simulation of a chunk and write its halo file.

    Args:
        linear_power_file: the chunk's CAMB output.
        design_params: the chunk design (rule params).
        simulation: the config's ``simulation`` section.
        halo_file: output HDF5 path (module contract), written atomically.
        pinocchio: the config's ``pinocchio`` section (backend ``pinocchio`` only).
        log_dir: where Pinocchio's own logs go.

    Raises:
        RuntimeError: naming the simulation index and parameters when one fails.
    """
    from tqdm import tqdm

    settings = SimulationSettings.from_config(simulation)
    design = ChunkDesign.from_params(design_params, with_inner=False)
    with ChunkFile.create(halo_file) as out:
        for record in tqdm(design, desc=f"simulate chunk {design.chunk}"):
            cosmo, linear = read_linear_power(linear_power_file, record.index)
            context = f"simulation {record.index} (seed {record.seed}, {cosmo})"
            try:
                if settings.backend == "jaxpm":
                    cat = jaxpm_box_halos(cosmo, linear, settings, record.seed, context=context)
                else:
                    log_path = Path(log_dir or Path(halo_file).parent) / f"pinocchio_{record.index:06d}.log"
                    cat = pinocchio_box_halos(cosmo, linear, settings, pinocchio or {}, record.seed, log_path)
            except Exception as err:
                raise RuntimeError(f"{context} failed: {err}") from err
            group = out.add_simulation(
                record, box_mpc_h=settings.box_mpc_h, z=settings.z_snapshot, n_mesh=settings.n_mesh,
                particle_mass_msun_h=cat.particle_mass_msun_h, backend=settings.backend, n_halos=len(cat.halos),
                **({"pinocchio_seed": pinocchio_seed(record.seed)} if settings.backend == "pinocchio" else {}),
                **{f"cosmo_{k}": v for k, v in vars(cosmo).items()},
            )
            for column in HALO_COLUMNS:
                group.create_dataset(column, data=cat.halos[column].to_numpy())
            for name, values in cat.validation.items():
                group.create_dataset(name, data=values)
        out.write_attrs({"simulation": dict(simulation)})


def slab_seed(global_seed: int, index: int, lightcone: int, slab: int) -> int:
    """Initial-condition seed of slab ``slab`` of lightcone ``lightcone`` of simulation ``index``."""
    return derive_seed(global_seed, SeedStream.SLAB, index, lightcone, slab)


def simulate_lightcone_chunk(
    linear_power_file: str | Path,
    design_params: Mapping[str, Any],
    simulation_cfg: Mapping[str, Any],
    global_seed: int,
    particle_file: str | Path,
    mesh_omega_m: float | None = None,
) -> None:
    """Rule ``simulate_lightcone``: ``n_lightcones`` x ``n_slabs`` slab boxes per simulation of a chunk.

    Args:
        linear_power_file: the chunk's CAMB file (P(k) at the redshift nearest 0 is used).
        design_params: the chunk design (rule params).
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
    lc = simulation_cfg["lightcone"]
    n_lightcones = int(lc["n_lightcones"])
    cell = float(lc["cell_mpc_h"])
    n_slabs = int(lc["n_slabs"])
    design = ChunkDesign.from_params(design_params, with_inner=False)
    geometry = (float(lc["z_min"]), float(lc["z_max"]), n_slabs, float(lc["fov_deg2"]))
    total = len(design) * n_lightcones * n_slabs
    done = 0
    with ChunkFile.create(particle_file) as out:
        for record in design:
            cosmo, linear = read_linear_power(linear_power_file, record.index)
            z0 = int(np.argmin(np.abs(linear.redshifts)))
            slabs = lightcone_slab_geometry(*geometry, cosmo.Omega_m)
            mesh = None
            if mesh_omega_m is not None:
                mesh = lightcone_slab_mesh(slabs + lightcone_slab_geometry(*geometry, mesh_omega_m), cell)
            g_sim = out.add_simulation(record, omega_m=float(cosmo.Omega_m), h=float(cosmo.h),
                                       cosmology={k: float(v) for k, v in vars(cosmo).items()})
            for light in range(n_lightcones):
                g_lc = ChunkFile.add_lightcone(g_sim, light)
                for slab in slabs:
                    where = f"simulation {record.index} ({record.parameters}), lightcone {light}, slab {slab.index}"
                    seed = slab_seed(global_seed, record.index, light, slab.index)
                    try:
                        # one slab at a time: only one slab's particles are ever in memory
                        (run,) = simulate_lightcone_slabs(
                            cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[z0], [slab], cell_mpc_h=cell,
                            seeds=[seed], a_init=float(simulation_cfg["a_init"]),
                            n_steps=int(simulation_cfg["n_steps"]), keep_particles=True, mesh_shape=mesh,
                            density=False,  # only the positions are written (no a_init snapshot either)
                            cic_chunk_size=lc.get("cic_chunk_size"),
                        )
                        # run_pm has already checked the positions are finite
                        positions = np.asarray(run.snapshots[-1].positions_mpc_h, dtype=np.float32)
                    except Exception as err:
                        raise RuntimeError(f"{where} failed: {err}") from err
                    g_slab = ChunkFile.add_slab(
                        g_lc, slab.index, **slab_attributes(slab, run.mesh_shape, run.box_mpc_h, cell),
                        seed=seed, z_snapshot=1.0 / run.snapshots[-1].a - 1.0,
                    )
                    g_slab.create_dataset("positions_mpc_h", data=positions)
                    done += 1
                    logger.info(
                        "chunk %s: %d/%d slabs (simulation %d, lightcone %d/%d, slab %d/%d, mesh %s)",
                        design.chunk, done, total, record.index, light + 1, n_lightcones, slab.index + 1, n_slabs,
                        tuple(run.mesh_shape),
                    )
        out.write_attrs({"simulation": dict(simulation_cfg), "global_seed": int(global_seed)})
