"""Readers of the stage products (the per-chunk file formats), shared by stages and plots.

Each stage module (:mod:`clustersbi.stages`) writes its products and states their layout at its
top; what later stages and the plots read back is read here, so that plots never import stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cosmology import Cosmology, LinearPower
from .detect import catalogue_from_h5
from .fof import HALO_COLUMNS
from .io import ChunkFile, sorted_groups

__all__ = [
    "GROWTH_TABLE_A",
    "DISTANCE_TABLE_Z",
    "read_linear_power",
    "read_halo_file",
    "read_emission_table",
    "read_catalogues",
    "read_lightcone_catalogues",
    "read_exact_posteriors",
    "read_npe_posteriors",
]

#: scale factors of the stored growth table and redshifts of the stored distance table
GROWTH_TABLE_A = np.geomspace(0.01, 1.0, 200)
DISTANCE_TABLE_Z = np.linspace(0.0, 5.0, 501)


def read_linear_power(path: str | Path, index: int) -> tuple[Cosmology, LinearPower]:
    """Simulation ``index``'s cosmology and spectra from a linear-power chunk file."""
    with ChunkFile.open(path) as f:
        name = f"sim_{index:06d}"
        if name not in f.h5:
            raise KeyError(f"{path}: no simulation {index} (groups: {list(f.h5)[:5]}...)")
        g = f.h5[name]
        cosmo = Cosmology(**{k[len("cosmo_"):]: float(v) for k, v in g.attrs.items() if k.startswith("cosmo_")})
        spec = LinearPower(
            k_h_mpc=f.h5["k_h_mpc"][:],
            redshifts=f.h5["redshifts"][:],
            pk_mpc3_h3=g["pk"][:],
            sigma_8=cosmo.sigma_8,
            a_s=float(g.attrs["a_s"]),
        )
    return cosmo, spec


def read_halo_file(path: str | Path) -> dict[int, tuple[pd.DataFrame, dict[str, Any]]]:
    """All halo tables of a halo chunk file: ``{index: (halos, attributes)}``."""
    out = {}
    with ChunkFile.open(path) as f:
        for attrs, g in f.simulations():
            out[int(attrs["index"])] = (pd.DataFrame({c: g[c][:] for c in HALO_COLUMNS}), attrs)
    return out


def read_emission_table(path: str | Path):
    """The :class:`~clustersbi.xray.EmissionTable` of an emission-table file."""
    import h5py

    from .xray import EmissionTable

    with h5py.File(path, "r") as f:
        return EmissionTable.from_h5(f["table"])


def read_catalogues(catalog_file: str | Path) -> dict[int, tuple[dict[str, Any], list[pd.DataFrame]]]:
    """simulation index -> (simulation attributes, [detection catalogue per lightcone, in order])."""
    out = {}
    with ChunkFile.open(catalog_file) as f:
        for attrs, g in f.simulations():
            out[int(attrs["index"])] = (attrs, [catalogue_from_h5(lc) for _, lc in ChunkFile.lightcones(g)])
    return out


def read_lightcone_catalogues(catalog_file: str | Path) -> dict[tuple[str, str], pd.DataFrame]:
    """(simulation group name, lightcone group name) -> detection catalogue, for every lightcone."""
    out = {}
    with ChunkFile.open(catalog_file) as f:
        for sim in sorted_groups(f.h5, "sim_"):
            for lc in sorted_groups(f.h5[sim], "lc_"):
                out[(sim, lc)] = catalogue_from_h5(f.h5[sim][lc])
    return out


def read_exact_posteriors(path: str | Path) -> dict[str, Any]:
    """An exact-posterior file (:mod:`clustersbi.stages.analytic`): its attributes and datasets,
    with ``samples`` the list of per-XOD (S_k, P) arrays (inference coordinates)."""
    import h5py

    from .io import h5_read_attrs

    with h5py.File(path, "r") as f:
        out: dict[str, Any] = h5_read_attrs(f)
        for key in f:
            if not key.startswith("post_"):
                out[key] = f[key][()]
        out["samples"] = [f[g]["samples"][()] for g in sorted_groups(f, "post_")]
    return out


def read_npe_posteriors(path: str | Path) -> dict[str, Any]:
    """The NPE's posterior samples of the exact posteriors' XODs: ``samples`` (N, S, P), ``index``, ``row``,
    ``param_names`` (inference coordinates)."""
    import h5py

    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["param_names"]]
        return {"samples": f["samples"][()].astype(float), "index": f["index"][()], "row": f["row"][()], "param_names": names}
