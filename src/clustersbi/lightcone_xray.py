"""The X-ray stage of the LDL analysis per chunk: emission table, count-rate maps, detection,
XODs and the gathered XOD training set (Cerardi et al., section 2.3).

Contracts (HDF5 via h5py; every output written atomically):

- rule ``emission_table``: ``results/xray/emission_table.h5``, computed once per config: the
  :class:`~clustersbi.xray.EmissionTable` r_b(T, z) [cts s^-1 cm^5] (datasets kt_kev, z,
  bands_kev, rate; attributes backend, response, ...) plus the resolved ``xray`` config.
- rule ``xray_maps``: in ``results/gas/chunk_{chunk}.h5`` (groups
  ``sim_{index:06d}/lc_{l:02d}/slab_{s:02d}`` with ``ne_cm3`` comoving [cm^-3] and ``t_k`` [K]
  on the slab mesh (n_w, n_w, n_d), line of sight along the last axis, and the slab
  geometry as attributes; ``sim_`` attributes index, seed, split, param_<name>, omega_m, h).
  Out ``results/xray/maps/chunk_{chunk}.h5``: per ``sim_{index:06d}/lc_{l:02d}``
  ``rate_cts_s`` (n_slabs, n_b, n_pix, n_pix) float32 per-slab count-rate maps [cts/s per
  pixel], ``z_rate_sum`` (n_slabs, n_pix, n_pix) (all-band rate x z, for emission-weighted
  redshifts), ``summed_cts_s`` (n_b, n_pix, n_pix) the whole lightcone, ``z_lo``, ``z_hi``
  (n_slabs,), ``total_cells_cts_s`` (n_slabs, n_b) the sum over every cell before projection;
  the ``sim_`` group carries theta, param_names, split, index, seed, omega_m, h.
- rule ``detect``: ``results/xray/catalogs/chunk_{chunk}.h5``: per ``sim_/lc_`` group the
  catalogue of :func:`clustersbi.detect.detect_lightcone` (one dataset per column: slab,
  x_pix, y_pix, ra_deg, dec_deg, npix, CR [cts/s, all bands], HR, z, CR per band).
- rule ``xod``: ``results/xod/chunk_{chunk}.h5``: per ``sim_{index:06d}`` the 3D XOD
  ``xod`` (n_cr, n_hr, n_z) summed over the simulation's lightcones and the inference
  statistic ``x`` (the XOD or its configured marginal, :func:`clustersbi.xod.xod_marginal`).
- rule ``gather_xod``: ``results/training/xod.h5`` in the layout of
  :func:`clustersbi.compress.data.write_training_set` (theta (N, P) the design parameters,
  x (N, ...), split (N,), attribute param_names), rows ordered by simulation index; the bin
  edges and marginal are extra attributes.
- rule ``observed_xod``: a user catalogue CSV (columns CR [cts/s, 0.5-2 keV], HR, z) ->
  ``results/observation/xod.h5`` with ``x`` (1, ...) (a batch of one, binned exactly as the
  training set) and the full ``xod``.

Geometry. A slab's box may be deeper than the slab (its mesh has a whole number of cells);
only the cells whose centres lie within the slab's comoving depth are painted, over
[chi_lo, chi_lo + n_keep * cell], so no volume is counted twice along the line of sight.

Observational effects (config ``xray.realistic``, all off as in the paper; beyond the
paper): :func:`clustersbi.xray.observe` applies, in order, a Gaussian PSF, a flat background
and Poisson photon noise for an exposure time to every per-slab map (detection runs per slab,
so each slab map is observed as a full pointing: the background is added to each) and,
separately, to the summed map. The Poisson draws are seeded with
``derive_seed(seed, SeedStream.LIGHTCONE, index, lightcone, slab, NOISE_TAG)`` (slab =
``n_slabs`` for the summed map); ``z_rate_sum`` stays noise-free.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .design import SeedStream, derive_seed
from .io import atomic_path, h5_read_attrs, h5_write_attrs

__all__ = [
    "NOISE_TAG",
    "response_from_config",
    "emission_table_file",
    "read_emission_table",
    "iter_gas_lightcones",
    "paint_gas_lightcone",
    "xray_maps_chunk",
    "detection_config",
    "detect_chunk",
    "read_catalogues",
    "xod_bins",
    "xod_chunk",
    "gather_xod",
    "observed_xod",
    "plot_xray_chunk",
    "plot_mean_xod",
]

logger = logging.getLogger(__name__)

#: Last seed component of the observational-noise streams (tells them from the lightcone ICs).
NOISE_TAG = 1
#: Attributes of a ``sim_`` group copied from the gas file to every later file.
_SIM_KEYS = ("index", "seed", "split", "omega_m", "h")


# ----------------------------------------------------------------------------- emission table
def response_from_config(xray_cfg: Mapping[str, Any]):
    """The instrument response of config section ``xray``: ARF/RMF files when named, else the
    built-in XMM-Newton EPIC curve; Galactic absorption when ``absorption.enabled``."""
    from .xray import apply_absorption, load_response

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
    import h5py

    from .xray import compute_emission_table

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
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        table.to_h5(f.create_group("table"))
        h5_write_attrs(f, {"xray_config": dict(xray_cfg)})


def read_emission_table(path: str | Path):
    """The :class:`~clustersbi.xray.EmissionTable` written by :func:`emission_table_file`."""
    import h5py

    from .xray import EmissionTable

    with h5py.File(path, "r") as f:
        return EmissionTable.from_h5(f["table"])


# ----------------------------------------------------------------------------- maps
def _sorted_groups(group, prefix: str) -> list[str]:
    return sorted(k for k in group if k.startswith(prefix))


def _sim_meta(sim_group, design: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """index, seed, split, omega_m, h, theta (list) and param_names of a gas file's ``sim_`` group.

    With the chunk ``design`` (rule params), theta, param names (in design order) and split
    come from it, and the group's ``param_<name>`` attributes must agree with it (a stale gas
    file is an error); without, the attributes are read in name order.
    """
    attrs = h5_read_attrs(sim_group)
    missing = [k for k in _SIM_KEYS if k not in attrs]
    if missing:
        raise ValueError(f"group {sim_group.name} lacks attributes {missing}")
    meta = {k: attrs[k] for k in _SIM_KEYS}
    meta["index"] = int(meta["index"])
    meta["split"] = str(meta["split"])
    if design is None:
        names = sorted(k[len("param_"):] for k in attrs if k.startswith("param_") and k != "param_names")
        theta = [float(attrs[f"param_{n}"]) for n in names]
    else:
        if meta["index"] not in design["indices"]:
            raise ValueError(f"group {sim_group.name}: simulation {meta['index']} is not in chunk {design['chunk']}")
        pos = design["indices"].index(meta["index"])
        names = list(design["outer_names"]) + list(design["inner_names"])
        theta = list(design["outer"][pos]) + (list(design["inner"][pos][0]) if design["inner"] else [])
        for name, value in zip(names, theta):
            stored = attrs.get(f"param_{name}")
            if stored is not None and not np.isclose(float(stored), value, rtol=1e-6, atol=0.0):
                raise ValueError(f"group {sim_group.name}: param_{name} = {stored} but the design says {value}; "
                                 "the gas file is stale")
        meta["split"] = str(design["splits"][pos])
    meta.update(theta=[float(v) for v in theta], param_names=[str(n) for n in names])
    return meta


def iter_gas_lightcones(gas_file, design: Mapping[str, Any] | None = None) -> Iterator[tuple[dict[str, Any], int, list]]:
    """(sim metadata, lightcone number, [slab h5py groups]) for every lightcone of an open gas file."""
    for sim_name in _sorted_groups(gas_file, "sim_"):
        sim = gas_file[sim_name]
        meta = _sim_meta(sim, design)
        for lc_name in _sorted_groups(sim, "lc_"):
            slabs = [sim[lc_name][s] for s in _sorted_groups(sim[lc_name], "slab_")]
            if not slabs:
                raise ValueError(f"{sim.name}/{lc_name} holds no slab_ groups")
            yield meta, int(lc_name[3:]), slabs


def _slab_extent(slab, n_los: int) -> tuple[int, float, float, float]:
    """(cells kept along the line of sight, chi_lo, chi_hi_painted, transverse width) [Mpc/h]."""
    a = slab.attrs
    box = np.atleast_1d(np.asarray(a["box_mpc_h"], dtype=float))
    box = np.broadcast_to(box, (3,))
    if not np.isclose(box[0], box[1], rtol=1e-6):
        raise ValueError(f"{slab.name}: transverse box sides differ ({box[0]}, {box[1]}); square slabs expected")
    chi_lo, chi_hi = float(a["chi_lo"]), float(a["chi_hi"])
    cell_los = box[2] / n_los
    n_keep = int(min(n_los, max(1, round((chi_hi - chi_lo) / cell_los))))
    return n_keep, chi_lo, chi_lo + n_keep * cell_los, float(box[0])


def paint_gas_lightcone(slab_groups: Sequence, table, grid, omega_m: float, h: float):
    """Paint every slab of one lightcone (h5py groups with ne_cm3, t_k) into sky maps.

    Returns:
        list of :class:`~clustersbi.xray.SlabMap`, one per slab, in order.
    """
    from .xray import paint_slab

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
    design: Mapping[str, Any] | None = None,
    fov_deg2: float | None = None,
) -> None:
    """Count-rate maps of every lightcone of a chunk (module contract).

    Args:
        gas_file: the chunk's gas grids.
        table_file: the emission table (:func:`emission_table_file`).
        xray_cfg: config section ``xray`` (pixel_arcmin, realistic, ...).
        global_seed: the config's seed (observational noise streams).
        out_file: output HDF5 path.
        design: the chunk design (rule params): theta, parameter names and split come from it
            (checked against the gas file's attributes); default: the gas file's attributes.
        fov_deg2: square field of view [deg^2]; default: the field that the farthest slab's
            transverse width subtends, (2 atan(W / 2 chi_max))^2.
    """
    import h5py
    from tqdm import tqdm

    from .xray import make_sky_grid, observe

    table = read_emission_table(table_file)
    pixel = float(xray_cfg["pixel_arcmin"])
    realistic = xray_cfg["realistic"]
    obs_kwargs = _observe_kwargs(realistic)
    bands = np.asarray(table.bands_kev)
    with contextlib.ExitStack() as stack:
        gas = stack.enter_context(h5py.File(gas_file, "r"))
        out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(out_file)), "w"))
        grid = None
        lightcones = list(iter_gas_lightcones(gas, design))
        if not lightcones:
            raise ValueError(f"{gas_file}: no sim_/lc_/slab_ groups")
        for meta, lc, slabs in tqdm(lightcones, desc=f"x-ray maps {Path(gas_file).name}"):
            if grid is None:
                fov = fov_deg2 if fov_deg2 is not None else _fov_from_geometry(slabs)
                grid = make_sky_grid(fov, pixel)
                h5_write_attrs(out, {"pixel_arcmin": pixel, "n_pix": grid.n_pix, "fov_deg2": float(fov),
                                     "bands_kev": bands.tolist(), "emission": table.metadata,
                                     "realistic": dict(realistic)})
            maps = paint_gas_lightcone(slabs, table, grid, float(meta["omega_m"]), float(meta["h"]))
            rates = np.stack([m.rate_cts_s for m in maps])
            summed = rates.sum(axis=0)
            if _any_effect(realistic):
                seeds = [derive_seed(global_seed, SeedStream.LIGHTCONE, meta["index"], lc, s, NOISE_TAG) for s in range(len(maps) + 1)]
                rates = np.stack([observe(r, pixel, seed=seeds[s], **obs_kwargs) for s, r in enumerate(rates)])
                summed = observe(summed, pixel, seed=seeds[-1], **obs_kwargs)
            sim_name = f"sim_{meta['index']:06d}"
            if sim_name not in out:
                h5_write_attrs(out.create_group(sim_name), meta)
            g = out[sim_name].create_group(f"lc_{lc:02d}")
            g.create_dataset("rate_cts_s", data=rates.astype(np.float32), compression="gzip", compression_opts=1)
            g.create_dataset("z_rate_sum", data=np.stack([m.z_rate_sum for m in maps]).astype(np.float32),
                             compression="gzip", compression_opts=1)
            g.create_dataset("summed_cts_s", data=summed.astype(np.float32), compression="gzip", compression_opts=1)
            g["z_lo"] = np.array([m.z_lo for m in maps])
            g["z_hi"] = np.array([m.z_hi for m in maps])
            g["total_cells_cts_s"] = np.stack([m.total_cells_cts_s for m in maps])
            logger.info("simulation %d lightcone %d: %.4g cts/s in the field (all bands)", meta["index"], lc, float(summed.sum()))


def _fov_from_geometry(slabs: Sequence) -> float:
    """Field [deg^2] subtended by the farthest slab's transverse width at its far edge."""
    far = max(slabs, key=lambda s: float(s.attrs["chi_hi"]))
    width = float(far.attrs["width_mpc_h"])
    return float(np.rad2deg(2.0 * np.arctan(0.5 * width / float(far.attrs["chi_hi"])))) ** 2


# ----------------------------------------------------------------------------- detection
def detection_config(detection_cfg: Mapping[str, Any]):
    """:class:`~clustersbi.detect.DetectionConfig` from config section ``detection``."""
    from .detect import DetectionConfig

    cfg = dict(detection_cfg)
    cfg["hr_bands"] = tuple(cfg["hr_bands"])
    return DetectionConfig(**cfg)


class _StoredSlabMap:
    """A slab map read back from a maps file (the attributes detect_lightcone needs)."""

    def __init__(self, rate_cts_s: np.ndarray, z_rate_sum: np.ndarray, z_lo: float, z_hi: float) -> None:
        self.rate_cts_s, self.z_rate_sum, self.z_lo, self.z_hi = rate_cts_s, z_rate_sum, z_lo, z_hi


def detect_chunk(map_file: str | Path, detection_cfg: Mapping[str, Any], out_file: str | Path) -> None:
    """sep detection on every slab map of every lightcone of a chunk (module contract)."""
    import h5py
    from tqdm import tqdm

    from .detect import catalogue_to_h5, detect_lightcone

    cfg = detection_config(detection_cfg)
    with contextlib.ExitStack() as stack:
        maps = stack.enter_context(h5py.File(map_file, "r"))
        out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(out_file)), "w"))
        root = h5_read_attrs(maps)
        pixel = float(root["pixel_arcmin"])
        bands = [tuple(b) for b in root["bands_kev"]]
        h5_write_attrs(out, {**root, "detection": dict(detection_cfg)})
        items = [(s, l) for s in _sorted_groups(maps, "sim_") for l in _sorted_groups(maps[s], "lc_")]
        for sim_name, lc_name in tqdm(items, desc=f"detection {Path(map_file).name}"):
            g = maps[sim_name][lc_name]
            rates, zsum = g["rate_cts_s"][()], g["z_rate_sum"][()]
            slab_maps = [_StoredSlabMap(rates[s], zsum[s], float(g["z_lo"][s]), float(g["z_hi"][s])) for s in range(rates.shape[0])]
            cat = detect_lightcone(slab_maps, pixel, cfg, bands)
            if sim_name not in out:
                h5_write_attrs(out.create_group(sim_name), h5_read_attrs(maps[sim_name]))
            catalogue_to_h5(out[sim_name].create_group(lc_name), cat)
            logger.info("%s/%s: %d detections", sim_name, lc_name, len(cat))


def read_catalogues(catalog_file: str | Path) -> dict[int, tuple[dict[str, Any], list]]:
    """simulation index -> (sim metadata, [catalogue DataFrame per lightcone, in order])."""
    import h5py

    from .detect import catalogue_from_h5

    out = {}
    with h5py.File(catalog_file, "r") as f:
        for sim_name in _sorted_groups(f, "sim_"):
            meta = h5_read_attrs(f[sim_name])
            out[int(meta["index"])] = (meta, [catalogue_from_h5(f[sim_name][lc]) for lc in _sorted_groups(f[sim_name], "lc_")])
    return out


# ----------------------------------------------------------------------------- XOD
def xod_bins(xod_cfg: Mapping[str, Any]):
    """:class:`~clustersbi.xod.XodBins` from config section ``xod`` (bins: low, high, n per axis)."""
    from .xod import XodBins

    b = xod_cfg["bins"]
    return XodBins.linear(**{axis: (b[axis]["low"], b[axis]["high"], b[axis]["n"]) for axis in ("log_cr", "hr", "z")})


def _bins_attrs(bins, marginal: str) -> dict[str, Any]:
    return {"log_cr_edges": bins.log_cr, "hr_edges": bins.hr, "z_edges": bins.z, "marginal": marginal}


def xod_chunk(catalog_file: str | Path, xod_cfg: Mapping[str, Any], out_file: str | Path, n_lightcones: int | None = None) -> None:
    """Per simulation, the XOD of its lightcones' detections and its inference statistic.

    Args:
        catalog_file: the chunk's catalogues (:func:`detect_chunk`).
        xod_cfg: config section ``xod`` (bins, marginal).
        out_file: output HDF5 path (module contract).
        n_lightcones: if given, every simulation must have exactly this many lightcones.
    """
    import h5py

    from .xod import xod_histogram, xod_marginal

    bins = xod_bins(xod_cfg)
    marginal = xod_cfg["marginal"]
    with atomic_path(out_file) as tmp, h5py.File(tmp, "w") as out:
        h5_write_attrs(out, _bins_attrs(bins, marginal))
        for index, (meta, cats) in sorted(read_catalogues(catalog_file).items()):
            if n_lightcones is not None and len(cats) != n_lightcones:
                raise ValueError(f"{catalog_file}: simulation {index} has {len(cats)} lightcones, expected {n_lightcones}")
            xod = xod_histogram(cats, bins)
            g = out.create_group(f"sim_{index:06d}")
            g["xod"] = xod
            g["x"] = xod_marginal(xod, marginal)
            h5_write_attrs(g, {**meta, "n_lightcones": len(cats), "n_detections": int(sum(len(c) for c in cats))})
            logger.info("simulation %d: %d of %d detections in the XOD", index, int(xod.sum()), sum(len(c) for c in cats))


def gather_xod(xod_files: Sequence[str | Path], out_file: str | Path) -> None:
    """All chunks' XOD statistics into one training set (module contract), ordered by index."""
    import h5py

    from .compress.data import TrainingSet, write_training_set

    rows, bins_attrs = [], None
    for path in xod_files:
        with h5py.File(path, "r") as f:
            attrs = h5_read_attrs(f)
            if bins_attrs is None:
                bins_attrs = attrs
            elif not all(np.array_equal(np.asarray(attrs[k]), np.asarray(bins_attrs[k])) for k in bins_attrs):
                raise ValueError(f"{path}: XOD bins or marginal differ from the other chunks'")
            for name in _sorted_groups(f, "sim_"):
                meta = h5_read_attrs(f[name])
                rows.append((int(meta["index"]), meta["theta"], f[name]["x"][()], meta["split"], meta["param_names"]))
    if not rows:
        raise ValueError(f"no simulations in {len(xod_files)} XOD files")
    rows.sort(key=lambda r: r[0])
    ts = TrainingSet(np.array([r[1] for r in rows], float), np.stack([r[2] for r in rows]),
                     np.array([r[3] for r in rows]), list(rows[0][4]))
    with atomic_path(out_file) as tmp:
        write_training_set(tmp, ts)
        with h5py.File(tmp, "a") as f:
            h5_write_attrs(f, {**bins_attrs, "index": [r[0] for r in rows]})


def observed_xod(catalogue_csv: str | Path, xod_cfg: Mapping[str, Any], out_file: str | Path) -> None:
    """The XOD of a user catalogue (CSV with CR [cts/s, 0.5-2 keV], HR, z), binned as the
    training set, written as an observation (module contract)."""
    import h5py

    from .xod import load_catalogue_csv, xod_histogram, xod_marginal

    bins = xod_bins(xod_cfg)
    cat = load_catalogue_csv(catalogue_csv)
    xod = xod_histogram(cat, bins)
    with atomic_path(out_file) as tmp, h5py.File(tmp, "w") as f:
        f["x"] = xod_marginal(xod, xod_cfg["marginal"])[None]
        f["xod"] = xod
        h5_write_attrs(f, {**_bins_attrs(bins, xod_cfg["marginal"]), "source": str(Path(catalogue_csv).name),
                           "n_sources": len(cat), "n_in_range": int(xod.sum())})
    logger.info("observed catalogue %s: %d sources, %d in the XOD range", catalogue_csv, len(cat), int(xod.sum()))


# ----------------------------------------------------------------------------- plots
def plot_xray_chunk(
    map_file: str | Path,
    catalog_files: Sequence[str | Path],
    slab_png: str | Path,
    lightcone_png: str | Path,
    cr_hr_png: str | Path,
    xod_cfg: Mapping[str, Any],
) -> None:
    """The X-ray stage's figures (cf. Cerardi et al. Fig. 3).

    ``slab_png``: the count-rate map of the slab with the most detections in the first
    lightcone of the first simulation of ``map_file``, its detections circled;
    ``lightcone_png``: that lightcone's summed map with all its detections circled;
    ``cr_hr_png``: CR-HR and dN/dz (in the XOD's z bins, config section ``xod``) of the
    detections of every lightcone in ``catalog_files``.
    """
    import h5py
    import pandas as pd

    from .detect import catalogue_from_h5
    from .plots_xray import plot_cr_hr_dndz, plot_cr_map

    with h5py.File(map_file, "r") as f:
        pixel = float(f.attrs["pixel_arcmin"])
        sim = _sorted_groups(f, "sim_")[0]
        lc = _sorted_groups(f[sim], "lc_")[0]
        g = f[sim][lc]
        rates, summed = g["rate_cts_s"][()], g["summed_cts_s"][()]
        z_lo, z_hi = g["z_lo"][()], g["z_hi"][()]
    catalogues = []
    first = None
    for path in catalog_files:
        with h5py.File(path, "r") as f:
            for s in _sorted_groups(f, "sim_"):
                for name in _sorted_groups(f[s], "lc_"):
                    cat = catalogue_from_h5(f[s][name])
                    catalogues.append(cat)
                    if (s, name) == (sim, lc) and Path(path).name == Path(map_file).name:
                        first = cat
    if first is None:
        raise ValueError(f"no catalogue of {sim}/{lc} of {map_file} among {len(catalog_files)} catalogue files")
    counts = np.bincount(first["slab"].to_numpy(int), minlength=rates.shape[0]) if len(first) else np.zeros(rates.shape[0], int)
    slab = int(np.argmax(counts))
    plot_cr_map(rates[slab], pixel, slab_png, first[first["slab"] == slab],
                title=f"{sim} {lc} slab {slab}: {z_lo[slab]:.3f} < z < {z_hi[slab]:.3f}, {counts[slab]} detections")
    plot_cr_map(summed, pixel, lightcone_png, first, title=f"{sim} {lc}: all slabs, {len(first)} detections")
    plot_cr_hr_dndz(pd.concat(catalogues, ignore_index=True), cr_hr_png, z_edges=xod_bins(xod_cfg).z)


def plot_mean_xod(xod_files: Sequence[str | Path], path: str | Path) -> None:
    """XOD slices (one (log CR, HR) panel per z bin) of the mean XOD over every simulation."""
    import h5py

    from .plots_xray import plot_xod_slices
    from .xod import XodBins

    total, n, bins = None, 0, None
    for p in xod_files:
        with h5py.File(p, "r") as f:
            a = h5_read_attrs(f)
            bins = XodBins(np.asarray(a["log_cr_edges"]), np.asarray(a["hr_edges"]), np.asarray(a["z_edges"]))
            for s in _sorted_groups(f, "sim_"):
                x = f[s]["xod"][()]
                total = x if total is None else total + x
                n += 1
    if not n:
        raise ValueError(f"no simulations in {len(xod_files)} XOD files")
    plot_xod_slices(total / n, bins, path)
