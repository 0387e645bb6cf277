"""The xray stage of the LDL analysis per chunk: emission table, count-rate maps and detection
(Cerardi et al., section 2.3).

Contracts (HDF5 chunk files, :class:`clustersbi.io.ChunkFile`; every output written atomically):

- rule ``emission_table``: ``results/xray/emission_table.h5``, computed once per config: the
  :class:`~clustersbi.xray.EmissionTable` r_b(T, z) [cts s^-1 cm^5] (datasets kt_kev, z,
  bands_kev, rate; attributes backend, response, ...) plus the resolved ``xray`` config.
- rule ``xray_maps``: in ``results/gas/chunk_{chunk}.h5`` (:mod:`clustersbi.stages.ldl`:
  groups ``sim_{index:06d}/lc_{l:02d}/slab_{s:02d}`` with ``ne_cm3`` comoving [cm^-3] and
  ``t_k`` [K] on the slab mesh (n_w, n_w, n_d), line of sight along the last axis, the slab
  geometry as attributes). Out ``results/xray/maps/chunk_{chunk}.h5``: per
  ``sim_{index:06d}/lc_{l:02d}`` ``rate_cts_s`` (n_slabs, n_b, n_pix, n_pix) float32 per-slab
  count-rate maps [cts/s per pixel], ``z_rate_sum`` (n_slabs, n_pix, n_pix) (per pixel, the
  sum over the slab's cell layers of all-band rate x z, for the continuous emission-weighted
  redshifts of the detections), with observational effects on (``xray.realistic``) also
  ``z_weight_cts_s`` (n_slabs, n_pix, n_pix), the noise-free all-band rate that ``z_rate_sum``
  is weighted with (the noisy maps are not), ``summed_cts_s (n_b, n_pix, n_pix) the whole
  lightcone, ``z_lo``, ``z_hi`` (n_slabs,), ``total_cells_cts_s`` (n_slabs, n_b) the sum over
  every cell before projection; the ``sim_`` group carries the simulation record, omega_m, h.
- rule ``fused_xray_maps`` (``simulation.lightcone.forward: fused``): the same maps file, made
  in one job from the chunk's linear power (:mod:`clustersbi.stages.cosmology`), the LDL
  models (:mod:`clustersbi.stages.ldl`) and the emission table, each slab by the device
  program :func:`clustersbi.forward.slab_maps` (2LPT -> KDK -> LDL n_e and T -> projection;
  only the maps come back), with the staged chain's seeds, slab mesh and painter; no particle
  or gas file is written. Equal to the staged file to float32 round-off (the staged chain paints
  in float64). Root attribute ``forward``: "staged" or "fused".
- rule ``detect``: ``results/xray/catalogs/chunk_{chunk}.h5``: per ``sim_/lc_`` group the
  catalogue of :func:`clustersbi.detect.detect_lightcone` (one dataset per column: slab,
  x_pix, y_pix, ra_deg, dec_deg, npix, CR [cts/s, all bands], HR, z, CR per band); read back
  with :func:`clustersbi.products.read_catalogues`.

Geometry. A slab's box may be deeper than the slab (its mesh has a whole number of cells);
only the cells whose centres lie within the slab's comoving depth are painted, over
[chi_lo, chi_lo + n_keep * cell], so no volume is counted twice along the line of sight.
Cell k of a slab spans [chi_lo + k H, chi_lo + (k + 1) H) (cell convention "centre" of
:mod:`clustersbi.mesh`, as the painted gas).

Observational effects (config ``xray.realistic``, all off as in the paper; beyond the
paper): :func:`clustersbi.xray.observe` applies, in order, a Gaussian PSF, a flat background
and Poisson photon noise for an exposure time to every per-slab map (detection runs per slab,
so each slab map is observed as a full pointing: the background is added to each) and,
separately, to the summed map. The Poisson draws are seeded with
``derive_seed(seed, SeedStream.XRAY_NOISE, index, lightcone, slab)`` (slab = ``n_slabs`` for
the summed map); ``z_rate_sum`` and ``z_weight_cts_s`` stay noise-free, so a detection's
redshift is that of the emission in its footprint (as a cluster's spectroscopic redshift),
not biased by background photons.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..design import ChunkDesign, SeedStream, SimulationRecord, derive_seed
from ..detect import DetectionConfig, catalogue_to_h5, detect_lightcone
from ..io import ChunkFile
from ..products import read_emission_table
from ..xray import apply_absorption, compute_emission_table, load_response, make_sky_grid, observe, paint_slab

__all__ = [
    "response_from_config",
    "emission_table_file",
    "iter_gas_lightcones",
    "paint_gas_lightcone",
    "xray_maps_chunk",
    "write_lightcone_maps",
    "fused_xray_maps_chunk",
    "detection_config",
    "detect_chunk",
]

logger = logging.getLogger(__name__)


def response_from_config(xray_cfg: Mapping[str, Any]):
    """The instrument response of config section ``xray``: ARF/RMF files when named, else the
    built-in XMM-Newton EPIC curve; Galactic absorption when ``absorption.enabled``."""
    r = xray_cfg["response"]
    response = load_response(arf=r["arf"], rmf=r["rmf"], builtin=r["builtin"])
    if xray_cfg["absorption"]["enabled"]:
        response = apply_absorption(response, xray_cfg["absorption"]["nh_1e22"])
    return response


def emission_table_file(xray_cfg: Mapping[str, Any], z_max: float, out: str | Path) -> None:
    """Tabulate r_b(T, z) once per config and write it to ``out`` (module contract).

    Args:
        xray_cfg: config section ``xray`` (emission, bands_kev, table, response, absorption).
        z_max: the largest redshift any slab reaches (simulation.lightcone.z_max); the table
            covers 0 <= z <= z_max + one step, in steps of ``xray.table.dz``.
        out: HDF5 path.
    """
    if z_max <= 0:
        raise ValueError(f"z_max must be positive, got {z_max}")
    tab = xray_cfg["table"]
    dz = float(tab["dz"])
    z = np.round(np.arange(0.0, z_max + 2.0 * dz - 1e-12, dz), 9)
    kt = np.geomspace(tab["kt_min_kev"], tab["kt_max_kev"], int(tab["n_kt"]))
    em = xray_cfg["emission"]
    table = compute_emission_table(
        response_from_config(xray_cfg), backend=em["backend"], bands_kev=xray_cfg["bands_kev"],
        metallicity=em["metallicity_solar"], kt_kev=kt, z=z, atomdb_dir=em["atomdb_dir"],
    )
    with ChunkFile.create(out) as f:
        table.to_h5(f.h5.create_group("table"))
        f.write_attrs({"xray_config": dict(xray_cfg)})


def iter_gas_lightcones(gas_file: ChunkFile, design: ChunkDesign):
    """(mock record, stored sim attributes, lightcone number, [slab h5py groups]) of a gas file.

    The record comes from the chunk ``design`` (rule params; a mock of a nested design, or the
    simulation itself); the stored parameters must agree with it (a stale gas file is an error).
    """
    for attrs, sim in gas_file.simulations():
        record = design.mock_record(int(attrs["index"]))
        record.check_stored(attrs, sim.name)
        for light, lc in ChunkFile.lightcones(sim):
            yield record, attrs, light, ChunkFile.slabs(lc)


def _slab_extent(slab, n_los: int) -> tuple[int, float, float, float]:
    """(cells kept along the line of sight, chi_lo, chi_hi_painted, transverse width) [Mpc/h]."""
    a = slab.attrs
    box = np.atleast_1d(np.asarray(a["box_mpc_h"], dtype=float))
    box = np.broadcast_to(box, (3,))
    if not np.isclose(box[0], box[1], rtol=1e-6):
        raise ValueError(f"{slab.name}: transverse box sides differ ({box[0]}, {box[1]}); square slabs expected")
    from ..forward import slab_extent

    chi_lo = float(a["chi_lo"])
    n_keep, chi_far = slab_extent(chi_lo, float(a["chi_hi"]), n_los, float(box[2]))
    return n_keep, chi_lo, chi_far, float(box[0])


def paint_gas_lightcone(slab_groups: Sequence, table, grid, omega_m: float, h: float):
    """Paint every slab of one lightcone (h5py groups with ne_cm3, t_k) into sky maps.

    Returns:
        list of :class:`~clustersbi.xray.SlabMap`, one per slab, in order.
    """
    maps = []
    for slab in slab_groups:
        los = int(slab.attrs.get("los_axis", 2))
        ne = np.moveaxis(np.asarray(slab["ne_cm3"], dtype=np.float64), los, 2)
        t = np.moveaxis(np.asarray(slab["t_k"], dtype=np.float64), los, 2)
        n_keep, chi_lo, chi_hi, width = _slab_extent(slab, ne.shape[2])
        maps.append(paint_slab(ne[:, :, :n_keep], t[:, :, :n_keep], chi_lo, chi_hi, width, table, grid, omega_m, h, los_axis=2))
    return maps


def _observe_kwargs(realistic: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "poisson": bool(realistic["poisson"]),
        "exposure_s": float(realistic["exposure_s"]),
        "background_cts_s_arcmin2": realistic["background_cts_s_arcmin2"] if realistic["background"] else 0.0,
        "psf_fwhm_arcsec": float(realistic["psf_fwhm_arcsec"]) if realistic["psf"] else 0.0,
    }


def _any_effect(realistic: Mapping[str, Any]) -> bool:
    return bool(realistic["poisson"] or realistic["background"] or realistic["psf"])


def xray_maps_chunk(
    gas_file: str | Path,
    table_file: str | Path,
    xray_cfg: Mapping[str, Any],
    global_seed: int,
    out_file: str | Path,
    design_params: Mapping[str, Any],
    fov_deg2: float | None = None,
) -> None:
    """Count-rate maps of every lightcone of a chunk (module contract).

    Args:
        gas_file: the chunk's gas grids.
        table_file: the emission table (:func:`emission_table_file`).
        xray_cfg: config section ``xray`` (pixel_arcmin, realistic, ...).
        global_seed: the config's seed (observational noise streams).
        out_file: output HDF5 path.
        design_params: the chunk design (rule params): the simulation records come from it
            (checked against the gas file's attributes).
        fov_deg2: square field of view [deg^2]; default: the field that the farthest slab's
            transverse width subtends, (2 atan(W / 2 chi_max))^2.
    """
    from tqdm import tqdm

    table = read_emission_table(table_file)
    pixel = float(xray_cfg["pixel_arcmin"])
    design = ChunkDesign.from_params(design_params)
    with ChunkFile.open(gas_file) as gas, ChunkFile.create(out_file) as out:
        grid = None
        lightcones = list(iter_gas_lightcones(gas, design))
        if not lightcones:
            raise ValueError(f"{gas_file}: no sim_/lc_/slab_ groups")
        for record, attrs, lc, slabs in tqdm(lightcones, desc=f"x-ray maps {Path(gas_file).name}"):
            if grid is None:
                fov = fov_deg2 if fov_deg2 is not None else _fov_from_geometry(slabs)
                grid = make_sky_grid(fov, pixel)
                out.write_attrs(_maps_file_attrs(grid, fov, table, xray_cfg, "staged"))
            maps = paint_gas_lightcone(slabs, table, grid, float(attrs["omega_m"]), float(attrs["h"]))
            write_lightcone_maps(out, record, float(attrs["omega_m"]), float(attrs["h"]), lc, maps, xray_cfg, global_seed)


def _maps_file_attrs(grid, fov_deg2: float, table, xray_cfg: Mapping[str, Any], forward: str) -> dict[str, Any]:
    """Root attributes of a maps file (module contract); ``forward``: which chain made it."""
    return {"pixel_arcmin": float(xray_cfg["pixel_arcmin"]), "n_pix": grid.n_pix, "fov_deg2": float(fov_deg2),
            "bands_kev": np.asarray(table.bands_kev).tolist(), "emission": table.metadata,
            "realistic": dict(xray_cfg["realistic"]), "forward": forward}


def write_lightcone_maps(out: ChunkFile, record: SimulationRecord, omega_m: float, h: float, lightcone: int,
                         maps: Sequence, xray_cfg: Mapping[str, Any], global_seed: int) -> None:
    """Write one lightcone's slab maps into a maps file (module contract), with the observational
    effects of ``xray_cfg["realistic"]`` (seeded per simulation, lightcone and slab).

    Args:
        out: the maps file being written.
        record: the simulation (or mock) the maps belong to.
        omega_m, h: its cosmology (stored on the ``sim_`` group).
        lightcone: the lightcone number.
        maps: one :class:`~clustersbi.xray.SlabMap` per slab, in order.
        xray_cfg: config section ``xray`` (pixel_arcmin, realistic).
        global_seed: the config's seed (the noise streams).
    """
    pixel = float(xray_cfg["pixel_arcmin"])
    realistic = xray_cfg["realistic"]
    rates = np.stack([m.rate_cts_s for m in maps])
    summed = rates.sum(axis=0)
    z_weight = rates.sum(axis=1)  # noise-free all-band rate, the weights of z_rate_sum
    if _any_effect(realistic):
        obs_kwargs = _observe_kwargs(realistic)
        seeds = [derive_seed(global_seed, SeedStream.XRAY_NOISE, record.index, lightcone, s) for s in range(len(maps) + 1)]
        rates = np.stack([observe(r, pixel, seed=seeds[s], **obs_kwargs) for s, r in enumerate(rates)])
        summed = observe(summed, pixel, seed=seeds[-1], **obs_kwargs)
    g_sim = out.simulation(record, omega_m=float(omega_m), h=float(h))
    g = ChunkFile.add_lightcone(g_sim, lightcone)
    g.create_dataset("rate_cts_s", data=rates.astype(np.float32), compression="gzip", compression_opts=1)
    g.create_dataset("z_rate_sum", data=np.stack([m.z_rate_sum for m in maps]).astype(np.float32),
                     compression="gzip", compression_opts=1)
    if _any_effect(realistic):
        g.create_dataset("z_weight_cts_s", data=z_weight.astype(np.float32), compression="gzip", compression_opts=1)
    g.create_dataset("summed_cts_s", data=summed.astype(np.float32), compression="gzip", compression_opts=1)
    g["z_lo"] = np.array([m.z_lo for m in maps])
    g["z_hi"] = np.array([m.z_hi for m in maps])
    g["total_cells_cts_s"] = np.stack([m.total_cells_cts_s for m in maps])
    logger.info("simulation %d lightcone %d: %.4g cts/s in the field (all bands)", record.index, lightcone,
                float(summed.sum()))


def fused_xray_maps_chunk(
    linear_power_file: str | Path,
    ne_model: str | Path,
    t_model: str | Path,
    table_file: str | Path,
    design_params: Mapping[str, Any],
    simulation_cfg: Mapping[str, Any],
    xray_cfg: Mapping[str, Any],
    global_seed: int,
    out_file: str | Path,
    mesh_omega_m: float,
) -> None:
    """Rule ``fused_xray_maps``: the maps file of :func:`xray_maps_chunk` straight from the chunk's
    linear power, by :func:`clustersbi.forward.slab_maps` (no particle or gas file).

    Every slab is what the staged rules make of it: the geometry and fixed slab mesh of
    :func:`clustersbi.stages.simulate.simulate_lightcone_chunk` (``mesh_omega_m``), the seed
    :func:`clustersbi.stages.simulate.slab_seed` (simulation, lightcone, slab), the LDL painter
    of :func:`clustersbi.stages.ldl.paint_gas_chunk` conditioned on the simulation's parameters
    and the slab's ``z_centre``, and the sky grid of the config's field; the file is written by
    the same writer (:func:`write_lightcone_maps`), root attribute ``forward`` = "fused".
    One compilation serves the job: the slabs share the mesh and the largest number of periodic
    images any of them needs.

    Args:
        linear_power_file: the chunk's linear-power file (P(k) at the redshift nearest 0).
        ne_model, t_model: the trained LDL models (rule ``train_ldl``).
        table_file: the emission table (:func:`emission_table_file`).
        design_params: the chunk design (rule params); a nested design is an error.
        simulation_cfg: the config's ``simulation`` section (a_init, n_steps, lightcone).
        xray_cfg: config section ``xray`` (pixel_arcmin, realistic).
        global_seed: the config's seed (slab and noise seeds).
        out_file: output HDF5 path (module contract), written atomically.
        mesh_omega_m: Omega_m that sizes the fixed slab mesh (:func:`clustersbi.lightcone.slab_mesh_omega_m`).

    Raises:
        RuntimeError: naming the simulation, lightcone, slab and parameters when a slab fails
            (non-finite particles or gas, redshifts outside the emission table).
    """
    import time

    from .. import forward
    from ..lightcone import lightcone_slab_geometry, lightcone_slab_mesh
    from ..products import read_linear_power
    from .ldl import LDLPainter
    from .simulate import slab_seed

    if mesh_omega_m is None:
        raise ValueError("the fused forward needs the fixed slab mesh (simulation.lightcone.fixed_mesh: true)")
    lc_cfg = simulation_cfg["lightcone"]
    cell, fov, n_lightcones = float(lc_cfg["cell_mpc_h"]), float(lc_cfg["fov_deg2"]), int(lc_cfg["n_lightcones"])
    geometry = (float(lc_cfg["z_min"]), float(lc_cfg["z_max"]), int(lc_cfg["n_slabs"]), fov)
    pm_settings = {"a_init": float(simulation_cfg["a_init"]), "n_steps": int(simulation_cfg["n_steps"]),
                   "cic_chunk_size": lc_cfg.get("cic_chunk_size")}
    design = ChunkDesign.from_params(design_params, with_inner=False)
    if design.n_inner > 1 or design.inner_names:
        raise ValueError("the fused forward does not paint nested feedback draws (design.nested): use forward: staged")
    table = read_emission_table(table_file)
    grid = make_sky_grid(fov, float(xray_cfg["pixel_arcmin"]))
    painter = LDLPainter(ne_model, t_model)
    emission = forward.emission_arrays(table)  # once per job
    # per simulation: its cosmology, P(k) at z ~ 0, slabs and mesh (as simulate_lightcone_chunk)
    reference = lightcone_slab_geometry(*geometry, float(mesh_omega_m))
    plan = []
    for record in design:
        cosmo, linear = read_linear_power(linear_power_file, record.index)
        z0 = int(np.argmin(np.abs(linear.redshifts)))
        slabs = lightcone_slab_geometry(*geometry, cosmo.Omega_m)
        plan.append((record, cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[z0], slabs,
                     lightcone_slab_mesh(slabs + reference, cell)))
    n_images = max(forward.slab_periodic_images(slab, mesh, cell, grid) for *_, slabs, mesh in plan for slab in slabs)
    total, done, t0 = len(plan) * n_lightcones * geometry[2], 0, time.perf_counter()
    with ChunkFile.create(out_file) as out:
        out.write_attrs(_maps_file_attrs(grid, fov, table, xray_cfg, "fused"))
        for record, cosmo, k_h_mpc, pk_z0, slabs, mesh in plan:
            ne_params = painter.params_ne(record.parameters)
            for light in range(n_lightcones):
                maps = []
                for slab in slabs:
                    seed = slab_seed(global_seed, record.index, light, slab.index)
                    try:
                        maps.append(forward.slab_maps(
                            cosmo, k_h_mpc, pk_z0, slab, mesh_shape=mesh, cell_mpc_h=cell, seed=seed,
                            ne_params=ne_params, t_params=painter.params_t(record.parameters, float(slab.z_centre)),
                            t_floor_k=painter.t_floor_k, table=table, grid=grid, emission=emission,
                            n_images=n_images, **pm_settings,
                        ))
                    except Exception as err:
                        raise RuntimeError(f"simulation {record.index} ({record.parameters}), lightcone {light}, "
                                           f"slab {slab.index} (seed {seed}) failed: {err}") from err
                    done += 1
                    logger.info("chunk %s: %d/%d slabs (simulation %d, lightcone %d/%d, slab %d/%d, mesh %s) in %.1f s",
                                design.chunk, done, total, record.index, light + 1, n_lightcones, slab.index + 1,
                                len(slabs), tuple(mesh), time.perf_counter() - t0)
                write_lightcone_maps(out, record, cosmo.Omega_m, cosmo.h, light, maps, xray_cfg, global_seed)


def _fov_from_geometry(slabs: Sequence) -> float:
    """Field [deg^2] subtended by the farthest slab's transverse width at its far edge."""
    far = max(slabs, key=lambda s: float(s.attrs["chi_hi"]))
    width = float(far.attrs["width_mpc_h"])
    return float(np.rad2deg(2.0 * np.arctan(0.5 * width / float(far.attrs["chi_hi"])))) ** 2


def detection_config(detection_cfg: Mapping[str, Any]):
    """:class:`~clustersbi.detect.DetectionConfig` from config section ``detection``."""
    cfg = dict(detection_cfg)
    cfg["hr_bands"] = tuple(cfg["hr_bands"])
    return DetectionConfig(**cfg)


class _StoredSlabMap:
    """A slab map read back from a maps file (the attributes detect_lightcone needs)."""

    def __init__(self, rate_cts_s: np.ndarray, z_rate_sum: np.ndarray, z_lo: float, z_hi: float,
                 z_weight_cts_s: np.ndarray | None = None) -> None:
        self.rate_cts_s, self.z_rate_sum, self.z_lo, self.z_hi = rate_cts_s, z_rate_sum, z_lo, z_hi
        self.z_weight_cts_s = z_weight_cts_s


def detect_chunk(map_file: str | Path, detection_cfg: Mapping[str, Any], out_file: str | Path) -> None:
    """sep detection on every slab map of every lightcone of a chunk (module contract)."""
    from tqdm import tqdm

    cfg = detection_config(detection_cfg)
    with ChunkFile.open(map_file) as maps, ChunkFile.create(out_file) as out:
        root = maps.attrs
        pixel = float(root["pixel_arcmin"])
        bands = [tuple(b) for b in root["bands_kev"]]
        out.write_attrs({**root, "detection": dict(detection_cfg)})
        items = [(attrs, g_sim, lc, g) for attrs, g_sim in maps.simulations() for lc, g in ChunkFile.lightcones(g_sim)]
        for attrs, g_sim, lc, g in tqdm(items, desc=f"detection {Path(map_file).name}"):
            rates, zsum = g["rate_cts_s"][()], g["z_rate_sum"][()]
            zweight = g["z_weight_cts_s"][()] if "z_weight_cts_s" in g else None  # noisy maps only
            slab_maps = [_StoredSlabMap(rates[s], zsum[s], float(g["z_lo"][s]), float(g["z_hi"][s]),
                                        None if zweight is None else zweight[s]) for s in range(rates.shape[0])]
            cat = detect_lightcone(slab_maps, pixel, cfg, bands)
            record = SimulationRecord.from_attrs(attrs)
            g_out = out.simulation(record, carried=attrs)
            catalogue_to_h5(ChunkFile.add_lightcone(g_out, lc), cat)
            logger.info("%s/lc_%02d: %d detections", g_sim.name, lc, len(cat))
