"""The cosmology stage: CAMB linear P(k, z), growth and distance tables per design chunk.

Contract (rule ``linear_power`` of ``cosmology.smk``):
  in:  the chunk design (rule params), the fiducial cosmology, the redshifts and k grid.
  out: ``results/linear_power/chunk_{chunk}.h5``: root datasets ``k_h_mpc`` (n_k),
       ``redshifts`` (n_z), ``growth_a`` and ``distance_z``
       (:data:`clustersbi.products.GROWTH_TABLE_A`, ``DISTANCE_TABLE_Z``); one group
       ``sim_{index:06d}`` per simulation with ``pk`` (n_z, n_k) [(Mpc/h)^3], ``growth``
       D(growth_a), ``chi_mpc_h`` chi(distance_z) and attributes: the simulation record
       (:meth:`clustersbi.design.SimulationRecord.to_attrs`), ``a_s`` and ``cosmo_<name>`` for
       every field of :class:`clustersbi.cosmology.Cosmology`.
Read back with :func:`clustersbi.products.read_linear_power`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..cosmology import Cosmology, LinearPower, camb_power, comoving_distance_mpc_h, growth_factor
from ..design import ChunkDesign
from ..io import ChunkFile
from ..products import DISTANCE_TABLE_Z, GROWTH_TABLE_A

__all__ = ["design_cosmologies", "chunk_linear_power", "write_linear_power", "linear_power_stage"]

logger = logging.getLogger(__name__)


def design_cosmologies(design: ChunkDesign, fiducial: Mapping[str, float]) -> list[Cosmology]:
    """The :class:`Cosmology` of each simulation of a chunk; parameters not varied take ``fiducial``."""
    return [Cosmology.from_mapping(record.parameters, fiducial) for record in design]


def chunk_linear_power(
    design: ChunkDesign, fiducial: Mapping[str, float], redshifts: Sequence[float], k_h_mpc: np.ndarray
) -> list[LinearPower]:
    """CAMB linear P(k, z) for every simulation of a chunk (one CAMB run each)."""
    from tqdm import tqdm

    out = []
    for record, cosmo in tqdm(list(zip(design, design_cosmologies(design, fiducial))), desc="CAMB"):
        try:
            out.append(camb_power(cosmo, redshifts, k_h_mpc))
        except Exception as err:  # CAMB raises its own error types; add the simulation index
            raise RuntimeError(f"CAMB failed for simulation {record.index} ({cosmo}): {err}") from err
        if not np.all(np.isfinite(out[-1].pk_mpc3_h3)):
            raise RuntimeError(f"CAMB returned non-finite P(k) for simulation {record.index} ({cosmo})")
    return out


def write_linear_power(path, design: ChunkDesign, cosmologies: Sequence[Cosmology], spectra: Sequence[LinearPower]) -> None:
    """Write a chunk's spectra, growth and distance tables (module contract), atomically."""
    with ChunkFile.create(path) as f:
        f.h5["k_h_mpc"] = spectra[0].k_h_mpc
        f.h5["redshifts"] = spectra[0].redshifts
        f.h5["growth_a"] = GROWTH_TABLE_A
        f.h5["distance_z"] = DISTANCE_TABLE_Z
        f.write_attrs({"camb_version": spectra[0].metadata.get("camb_version", "")})
        for record, cosmo, spec in zip(design, cosmologies, spectra):
            g = f.add_simulation(record, a_s=spec.a_s, **{f"cosmo_{k}": v for k, v in vars(cosmo).items()})
            g["pk"] = spec.pk_mpc3_h3
            g["growth"] = growth_factor(GROWTH_TABLE_A, cosmo.Omega_m)
            g["chi_mpc_h"] = comoving_distance_mpc_h(DISTANCE_TABLE_Z, cosmo.Omega_m)


def linear_power_stage(
    design_params: Mapping[str, Any],
    fiducial: Mapping[str, float],
    redshifts: Sequence[float],
    k_grid: Sequence[float],
    out_file: str | Path,
) -> None:
    """Rule ``linear_power``: CAMB for every simulation of the chunk, on a log-spaced k grid.

    Args:
        design_params: the chunk design (rule params, :func:`clustersbi.design.chunk_design`).
        fiducial: config ``cosmology.fiducial``.
        redshifts: redshifts of the tabulated P(k) (z = 0 included).
        k_grid: (k_min [h/Mpc], k_max [h/Mpc], n_k).
        out_file: the chunk's linear-power file (module contract).
    """
    design = ChunkDesign.from_params(design_params, with_inner=False)
    k_min, k_max, n_k = k_grid
    k = np.geomspace(k_min, k_max, int(n_k))
    spectra = chunk_linear_power(design, fiducial, redshifts, k)
    write_linear_power(out_file, design, design_cosmologies(design, fiducial), spectra)
    logger.info("chunk %s: %d spectra written", design.chunk, len(spectra))
