"""The xod stage (analysis ldl): per simulation, the (log CR, HR, z) histogram of the detections of
its lightcones; the gathered training set; an observed survey binned the same way.

Contracts (HDF5, written atomically):

- rule ``xod``: in the chunk's catalogues (:mod:`clustersbi.stages.xray`); out
  ``results/xod/chunk_{chunk}.h5``: per ``sim_{index:06d}`` (the simulation record as
  attributes, plus ``n_lightcones``, ``n_detections``) the 3D XOD ``xod`` (n_cr, n_hr, n_z)
  summed over the simulation's lightcones and the inference statistic ``x`` (the XOD or its
  configured marginal, :func:`clustersbi.xod.xod_marginal`); root attributes: the bin edges
  (:meth:`clustersbi.xod.XodBins.to_attrs`) and ``marginal``.
- rule ``gather_xod``: ``results/training/{statistic}.h5``, one per XOD statistic of cerardi
  Table 3 (:data:`clustersbi.xod.XOD_STATISTICS`: ``xod`` is the chunks' ``x``, the others the
  marginals of their ``xod``), in the layout of
  :func:`clustersbi.compress.data.write_training_set` (theta (N, P) the design parameters,
  x (N, ...), split (N,), attribute param_names), rows ordered by simulation index; the bin
  edges and the statistic's marginal are extra attributes, dataset ``index`` (N,) the
  simulations' design indices.
- rule ``observed_xod``: a survey catalogue CSV (config ``xod.observation.catalogue_csv``; one
  row per cluster, columns z and CR [cts/s, all bands] and HR, or per-band ``CR_<lo>-<hi>``
  columns to form them from: :func:`clustersbi.xod.load_catalogue_csv`) ->
  ``results/observation/xod.h5`` with ``x`` (1, ...) (a batch of one, binned exactly as the
  training set) and the full ``xod``. The compress stage turns it into the observation of the
  ``xod`` posterior (:func:`clustersbi.stages.compress.compress_observation_stage`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ..compress.data import TrainingSet, write_training_set
from ..design import SimulationRecord
from ..io import ChunkFile, atomic_path, h5_write_attrs
from ..products import read_catalogues
from ..xod import XodBins, load_catalogue_csv, xod_histogram, xod_marginal

__all__ = ["xod_chunk", "gather_xod", "observed_xod"]

logger = logging.getLogger(__name__)


def _bins_attrs(bins: XodBins, marginal: str) -> dict[str, Any]:
    return {**bins.to_attrs(), "marginal": marginal}


def xod_chunk(catalog_file: str | Path, xod_cfg: Mapping[str, Any], out_file: str | Path, n_lightcones: int) -> None:
    """Rule ``xod``: per simulation, the XOD of its lightcones' detections and its inference statistic.

    Args:
        catalog_file: the chunk's catalogues (:func:`clustersbi.stages.xray.detect_chunk`).
        xod_cfg: ``{"bins": config xod.bins, "marginal": config xod.marginal}``.
        out_file: output HDF5 path (module contract).
        n_lightcones: every simulation must have exactly this many lightcones.
    """
    bins = XodBins.from_spec(xod_cfg["bins"])
    marginal = xod_cfg["marginal"]
    with ChunkFile.create(out_file) as out:
        out.write_attrs(_bins_attrs(bins, marginal))
        for index, (attrs, cats) in sorted(read_catalogues(catalog_file).items()):
            if len(cats) != n_lightcones:
                raise ValueError(f"{catalog_file}: simulation {index} has {len(cats)} lightcones, expected {n_lightcones}")
            xod = xod_histogram(cats, bins)
            n_det = int(sum(len(c) for c in cats))
            g = out.add_simulation(SimulationRecord.from_attrs(attrs), n_lightcones=len(cats), n_detections=n_det)
            g["xod"] = xod
            g["x"] = xod_marginal(xod, marginal)
            logger.info("simulation %d: %d of %d detections in the XOD", index, int(xod.sum()), n_det)


def gather_xod(xod_files: Sequence[str | Path], out_file: str | Path, marginal: str | None = None) -> None:
    """Rule ``gather_xod``: all chunks' XODs into one training set (module contract), ordered by index.

    Args:
        xod_files: per-chunk XOD files (this stage's, or the analytic mocks').
        out_file: the training set.
        marginal: None for the chunks' own statistic ``x``; else the marginal of their 3D ``xod``
            (:func:`clustersbi.xod.xod_marginal`) that this training set holds.
    """
    rows, bins_attrs = [], None
    for path in xod_files:
        with ChunkFile.open(path) as f:
            attrs = f.attrs
            if bins_attrs is None:
                bins_attrs = attrs
            elif not all(np.array_equal(np.asarray(attrs[k]), np.asarray(bins_attrs[k])) for k in bins_attrs):
                raise ValueError(f"{path}: XOD bins or marginal differ from the other chunks'")
            for meta, group in f.simulations(keys=("index", "theta", "split", "param_names")):
                x = group["x"][()] if marginal is None else xod_marginal(group["xod"][()], marginal)
                rows.append((int(meta["index"]), meta["theta"], x, meta["split"], meta["param_names"]))
    if not rows:
        raise ValueError(f"no simulations in {len(xod_files)} XOD files")
    rows.sort(key=lambda r: r[0])
    ts = TrainingSet(np.array([r[1] for r in rows], float), np.stack([r[2] for r in rows]),
                     np.array([r[3] for r in rows]), list(rows[0][4]))
    with atomic_path(out_file) as tmp:
        write_training_set(tmp, ts)
        with h5py.File(tmp, "a") as f:
            statistic = {} if marginal is None else {"marginal": marginal}
            h5_write_attrs(f, {**bins_attrs, **statistic})
            # a dataset: as an attribute, more than ~8,000 indices overflow HDF5's 64 kB header message
            f["index"] = np.array([r[0] for r in rows], dtype=np.int64)


def observed_xod(catalogue_csv: str | Path, xod_cfg: Mapping[str, Any], out_file: str | Path,
                 columns: Mapping[str, Any] | None = None) -> None:
    """Rule ``observed_xod``: the XOD of a survey catalogue (CSV: z, and CR and HR or one CR column
    per band), binned as the training set, written as an observation (module contract).

    Args:
        columns: ``{"bands_kev": config xray.bands_kev, "hr_bands": config detection.hr_bands}``,
            how per-band columns make CR and HR (default the paper's two bands, HR = CR[1-2] / CR[0.5-1]).
    """
    bins = XodBins.from_spec(xod_cfg["bins"])
    columns = dict(columns or {})
    cat = load_catalogue_csv(catalogue_csv, columns.get("bands_kev", ((0.5, 1.0), (1.0, 2.0))),
                             tuple(columns.get("hr_bands", (1, 0))))
    xod = xod_histogram(cat, bins)
    with atomic_path(out_file) as tmp, h5py.File(tmp, "w") as f:
        f["x"] = xod_marginal(xod, xod_cfg["marginal"])[None]
        f["xod"] = xod
        h5_write_attrs(f, {**_bins_attrs(bins, xod_cfg["marginal"]), "source": str(Path(catalogue_csv).name),
                           "n_sources": len(cat), "n_in_range": int(xod.sum())})
    logger.info("observed catalogue %s: %d sources, %d in the XOD range", catalogue_csv, len(cat), int(xod.sum()))
