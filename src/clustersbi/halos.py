"""The simulation stage per chunk: dark matter for every simulation of a design chunk.

Contract (rule ``simulate``):
  in:  the chunk's linear-power file (:func:`clustersbi.cosmology.write_linear_power`) and the
       chunk design (:func:`clustersbi.design.chunk_design`).
  out: ``results/halos/chunk_{chunk}.h5``: one group ``sim_{index:06d}`` per simulation with
       the halo table as datasets (x, y, z [Mpc/h], vx, vy, vz [km/s], mass_msun_h, n_part),
       the validation spectra (``pk_k``, ``pk_initial``, ``pk_final``, ``growth_ratio``) and
       attributes (parameters, seed, split, box, redshift, particle mass, backend);
       optionally the particles (positions, velocities) of every snapshot in a second file,
       for the LDL painting (a temporary intermediate, large).

Backends: JaxPM (:mod:`clustersbi.simulate`, FoF halos from :mod:`clustersbi.fof`) or
Pinocchio (:mod:`clustersbi.pinocchio`, an external executable).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .cosmology import Cosmology, LinearPower, growth_factor, read_linear_power
from .fof import HALO_COLUMNS, fof_halos, particle_mass_msun_h
from .io import atomic_path, h5_read_attrs, h5_write_attrs

__all__ = [
    "SimulationSettings",
    "HaloCatalogue",
    "jaxpm_box_halos",
    "pinocchio_box_halos",
    "simulate_chunk",
    "read_halo_file",
    "predicted_halo_counts",
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
        particles: (positions [Mpc/h], velocities [km/s]) of the final snapshot, if kept.
    """

    halos: pd.DataFrame
    particle_mass_msun_h: float
    validation: dict[str, np.ndarray]
    particles: tuple[np.ndarray, np.ndarray] | None = None


def _validation_spectra(run, box_mpc_h: float, omega_m: float) -> dict[str, np.ndarray]:
    from .simulate import density_power_spectrum

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
    keep_particles: bool = False,
    context: str = "",
) -> HaloCatalogue:
    """Run one JaxPM box to ``settings.z_snapshot`` and find its FoF halos."""
    from .simulate import simulate_box

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
        particles=(snap.positions_mpc_h, snap.velocities_km_s) if keep_particles else None,
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
    from .pinocchio import (
        catalogue_path,
        pinocchio_parameters,
        read_catalogue,
        run_pinocchio,
        write_output_list,
        write_parameter_file,
        write_power_table,
    )

    z0 = int(np.argmin(np.abs(linear.redshifts)))
    with tempfile.TemporaryDirectory(prefix="pinocchio_") as scratch:
        work = Path(scratch)
        write_power_table(linear.k_h_mpc, linear.pk_mpc3_h3[z0], work / "pk_linear_z0.txt")
        write_output_list([settings.z_snapshot], work / "outputs")
        params = pinocchio_parameters(
            cosmo, run_flag="run", box_mpc_h=settings.box_mpc_h, grid_size=settings.n_mesh,
            seed=seed % 2**31, min_halo_mass_particles=settings.fof_min_particles,
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
    design: Mapping[str, Any],
    simulation: Mapping[str, Any],
    halo_file: str | Path,
    pinocchio: Mapping[str, Any] | None = None,
    particle_file: str | Path | None = None,
    log_dir: str | Path | None = None,
) -> None:
    """Simulate every simulation of a chunk and write its halo file (and particles).

    Args:
        linear_power_file: the chunk's CAMB output.
        design: the chunk design (indices, seeds, splits, parameters).
        simulation: the config's ``simulation`` section.
        halo_file: output HDF5 path (written atomically).
        pinocchio: the config's ``pinocchio`` section (backend ``pinocchio`` only).
        particle_file: if given, also write each simulation's final particles there.
        log_dir: where Pinocchio's own logs go.

    Raises:
        RuntimeError: naming the simulation index and parameters when one fails.
    """
    import h5py
    from tqdm import tqdm

    settings = SimulationSettings.from_config(simulation)
    indices: Sequence[int] = design["indices"]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(halo_file)), "w"))
        part_out = None
        if particle_file:
            part_out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(particle_file)), "w"))
        for pos, index in enumerate(tqdm(indices, desc=f"simulate chunk {design['chunk']}")):
            cosmo, linear = read_linear_power(linear_power_file, index)
            seed = int(design["seeds"][pos])
            context = f"simulation {index} (seed {seed}, {cosmo})"
            try:
                if settings.backend == "jaxpm":
                    cat = jaxpm_box_halos(cosmo, linear, settings, seed, keep_particles=part_out is not None,
                                          context=context)
                else:
                    log_path = Path(log_dir or Path(halo_file).parent) / f"pinocchio_{index:06d}.log"
                    cat = pinocchio_box_halos(cosmo, linear, settings, pinocchio or {}, seed, log_path)
            except Exception as err:
                raise RuntimeError(f"{context} failed: {err}") from err
            group = out.create_group(f"sim_{index:06d}")
            for column in HALO_COLUMNS:
                group.create_dataset(column, data=cat.halos[column].to_numpy())
            for name, values in cat.validation.items():
                group.create_dataset(name, data=values)
            h5_write_attrs(group, {
                "index": index, "seed": seed, "split": design["splits"][pos],
                "box_mpc_h": settings.box_mpc_h, "z": settings.z_snapshot, "n_mesh": settings.n_mesh,
                "particle_mass_msun_h": cat.particle_mass_msun_h, "backend": settings.backend,
                "n_halos": len(cat.halos),
                **{f"param_{k}": v for k, v in vars(cosmo).items()},
            })
            if part_out is not None and cat.particles is not None:
                pg = part_out.create_group(f"sim_{index:06d}")
                pg["positions_mpc_h"], pg["velocities_km_s"] = cat.particles
                h5_write_attrs(pg, {"box_mpc_h": settings.box_mpc_h, "z": settings.z_snapshot})
        h5_write_attrs(out, {"simulation": dict(simulation)})
        # the HDF5 files close (ExitStack, last in first out) before their atomic renames


def read_halo_file(path: str | Path) -> dict[int, tuple[pd.DataFrame, dict[str, Any]]]:
    """All halo tables of a chunk file: ``{index: (halos, attributes)}``."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for name in sorted(n for n in f if n.startswith("sim_")):
            g = f[name]
            halos = pd.DataFrame({c: g[c][:] for c in HALO_COLUMNS})
            out[int(name[4:])] = (halos, h5_read_attrs(g))
    return out


def predicted_halo_counts(
    cosmo: Cosmology, mass_edges_msun_h: np.ndarray, z: float, volume_mpc3_h3: float, model: str = "watson13"
) -> np.ndarray:
    """Expected number of FoF halos per mass bin from a colossus mass-function fit.

    Integrates dn/dlnM (FoF masses, ``mdef='fof'``; Watson et al. 2013 by default) over each
    bin in ln M with 9-point trapezoids. Colossus uses its own Eisenstein & Hu spectrum
    normalised to the same sigma_8.
    """
    from colossus.lss import mass_function

    from .cosmology import colossus_cosmology

    colossus_cosmology(cosmo)
    counts = []
    for lo, hi in zip(mass_edges_msun_h[:-1], mass_edges_msun_h[1:]):
        m = np.geomspace(lo, hi, 9)
        dn_dlnm = mass_function.massFunction(m, z, q_in="M", q_out="dndlnM", mdef="fof", model=model)
        counts.append(np.trapezoid(dn_dlnm, np.log(m)) * volume_mpc3_h3)
    return np.asarray(counts)
