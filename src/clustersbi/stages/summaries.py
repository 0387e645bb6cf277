"""The summaries stage (analysis scaling): the M-L_X observable and its summaries per chunk, and
the gathered training sets.

Contract (rule ``summaries``, analysis ``scaling``):
  in:  the chunk's halo file (:mod:`clustersbi.stages.simulate`) and the chunk design.
  out: ``results/catalogs/chunk_{chunk}.h5``: per mock ``mock_{index:07d}``, the selected
       clusters (x, y, z [Mpc/h], mass_msun_h, l_x_erg_s [h^-2 erg/s, ROSAT 0.1-2.4 keV]);
       ``results/summaries/chunk_{chunk}.h5``: per mock the summaries ``abundance`` (n_thr,),
       ``power_spectrum`` (n_k,) [(Mpc/h)^3, shot noise not subtracted] and ``fields``
       (n_channels, n, n, n) overdensities, with attributes theta, split, seed, shot noise.

A mock is one (simulation ``i``, inner point ``j``) pair: simulation i's halos with the
M-L_X parameters of its inner design point j (mls-pinocchio-cnn-field-level, section 2.2);
its index is ``i * n_inner + j`` and its luminosity scatter is seeded by
``derive_seed(seed, SCALING_SCATTER, i, j)``.

Contract (rule ``gather_summaries``): every chunk's summaries of one kind into
``results/training/{summary}.h5`` (:func:`clustersbi.compress.write_training_set` layout:
theta, x, split, param_names).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..compress.data import training_set_writer
from ..design import ChunkDesign, SeedStream, derive_seed
from ..fields import overdensity_variants
from ..io import atomic_path, h5_read_attrs, h5_write_attrs
from ..power import power_spectrum
from ..products import read_halo_file
from ..scaling import abundance_thresholds, assign_luminosity, cluster_abundance, select_clusters

__all__ = [
    "SUMMARY_KINDS",
    "MLX_NAMES",
    "mock_mlx_parameters",
    "mock_summaries",
    "summarise_chunk",
    "gather_summaries",
    "gather_training_set",
]

logger = logging.getLogger(__name__)

SUMMARY_KINDS = ("abundance", "power_spectrum", "fields")
#: M-L_X parameters, in the order of :func:`clustersbi.scaling.assign_luminosity`
MLX_NAMES = ("a_X", "b_X", "c_X", "sigma_tot")


def mock_mlx_parameters(inner_names: Sequence[str], inner_row: Sequence[float], fiducial: Mapping[str, float]) -> dict:
    """M-L_X parameters of a mock: the design's values, the fiducial ones for the others."""
    values = dict(fiducial)
    values.update(dict(zip(inner_names, inner_row)))
    missing = [n for n in MLX_NAMES if n not in values]
    if missing:
        raise ValueError(f"scaling.fiducial lacks M-L_X parameters {missing}")
    return {n: float(values[n]) for n in MLX_NAMES}


class EmptyCatalogueError(ValueError):
    """No cluster passes the selection: the mock has no power spectrum or overdensity."""


@dataclass
class MockSummaries:
    """Summaries of one mock (see the module docstring for units)."""

    clusters: dict[str, np.ndarray]
    abundance: np.ndarray
    power_spectrum: np.ndarray
    k_h_mpc: np.ndarray
    shot_noise_mpc_h3: float
    fields: np.ndarray
    field_channels: list[str]


def mock_summaries(
    halos,
    box_mpc_h: float,
    mlx: Mapping[str, float],
    seed: int,
    scaling: Mapping[str, Any],
    summaries: Mapping[str, Any],
    context: str,
) -> MockSummaries:
    """Assign luminosities to one simulation's halos and compute every summary.

    Raises:
        ValueError: naming ``context`` when no cluster passes the selection (an empty
            catalogue has no power spectrum or overdensity; it is reported, not used).
    """
    l_x = assign_luminosity(
        halos["mass_msun_h"].to_numpy(), mlx["a_X"], mlx["b_X"], mlx["c_X"], mlx["sigma_tot"], seed,
        scatter_base=scaling["scatter_base"], mean_convention=scaling["mean_convention"],
    )
    selected = select_clusters(l_x, scaling["threshold_erg_s"])
    if not selected.any():
        raise EmptyCatalogueError(
            f"{context}: {int(selected.sum())} clusters above L_X = {scaling['threshold_erg_s']:.3g} erg/s "
            f"out of {len(halos)} halos; the box is too small or the halo mass limit too high"
        )
    pos = halos[["x", "y", "z"]].to_numpy()[selected]
    l_sel = l_x[selected]
    thr = summaries["abundance"]["thresholds"]
    abundance = cluster_abundance(l_x, abundance_thresholds(thr["low"], thr["high"], thr["n"]))
    ps_cfg = summaries["power_spectrum"]
    pk = power_spectrum(
        pos, box_mpc_h, ps_cfg["n_mesh"], scheme=ps_cfg["assignment"], interlacing=ps_cfg["interlacing"],
        dk_in_kf=ps_cfg["dk_in_kf"], k_min_in_kf=ps_cfg["k_min_in_kf"], workers=ps_cfg["workers"],
    )
    f_cfg = summaries["fields"]
    fields, channels = overdensity_variants(
        pos, l_sel, f_cfg["n_mesh"], box_mpc_h, variants=f_cfg["variants"],
        luminosity_cuts_erg_s=f_cfg["luminosity_cuts_erg_s"], scheme=f_cfg["assignment"],
    )
    clusters = {"x": pos[:, 0], "y": pos[:, 1], "z": pos[:, 2],
                "mass_msun_h": halos["mass_msun_h"].to_numpy()[selected], "l_x_erg_s": l_sel}
    return MockSummaries(clusters, abundance, pk.pk_mpc_h3, pk.k_h_mpc, float(pk.shot_noise_mpc_h3), fields, channels)


def summarise_chunk(
    halo_file: str | Path,
    design_params: Mapping[str, Any],
    global_seed: int,
    scaling: Mapping[str, Any],
    summaries: Mapping[str, Any],
    catalogue_file: str | Path,
    summary_file: str | Path,
) -> None:
    """Rule ``summaries``: every mock of a chunk, cluster catalogues and summaries, written atomically."""
    import h5py
    from tqdm import tqdm

    halos_by_index = read_halo_file(halo_file)
    design = ChunkDesign.from_params(design_params)
    with contextlib.ExitStack() as stack:
        cat_out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(catalogue_file)), "w"))
        sum_out = stack.enter_context(h5py.File(stack.enter_context(atomic_path(summary_file)), "w"))
        k_h_mpc = None
        for record in tqdm(design, desc=f"summaries chunk {design.chunk}"):
            index = record.index
            if index not in halos_by_index:
                raise ValueError(f"{halo_file}: no simulation {index} of chunk {design.chunk}")
            halos, attrs = halos_by_index[index]
            record.check_stored(attrs, str(halo_file))
            for j, inner_row in enumerate(record.inner or [()]):
                mlx = mock_mlx_parameters(record.inner_names, inner_row, scaling["fiducial"])
                mock = index * design.n_inner + j
                seed = derive_seed(global_seed, SeedStream.SCALING_SCATTER, index, j)
                meta = {"index": mock, "simulation": index, "inner": j, "split": record.split, "seed": seed,
                        "theta": list(record.values) + list(inner_row),
                        "param_names": list(record.names) + list(record.inner_names)}
                try:
                    result = mock_summaries(halos, float(attrs["box_mpc_h"]), mlx, seed, scaling, summaries,
                                            context=f"mock {mock} (simulation {index}, inner {j}, {mlx})")
                except EmptyCatalogueError as err:
                    # Reported and recorded, never used: the gather step leaves it out of the
                    # training set and lists it there.
                    logger.warning("%s", err)
                    h5_write_attrs(sum_out.create_group(f"mock_{mock:07d}"), {**meta, "empty": str(err)})
                    continue
                cg = cat_out.create_group(f"mock_{mock:07d}")
                for name, values in result.clusters.items():
                    cg.create_dataset(name, data=values)
                h5_write_attrs(cg, meta)
                k_h_mpc = result.k_h_mpc
                sg = sum_out.create_group(f"mock_{mock:07d}")
                sg["abundance"] = result.abundance
                sg["power_spectrum"] = result.power_spectrum
                sg.create_dataset("fields", data=result.fields, compression="gzip", compression_opts=1)
                h5_write_attrs(sg, {**meta, "shot_noise_mpc_h3": result.shot_noise_mpc_h3,
                                    "field_channels": result.field_channels})
        if k_h_mpc is not None:
            sum_out["k_h_mpc"] = k_h_mpc


def _usable_mocks(summary_files: Sequence[str | Path], kind: str) -> dict[str, Any]:
    """The mocks that enter a training set, ordered by index, without their summaries:
    index (N,), theta (N, P), split (N,), param_names, where (N,) (file, group) pairs,
    empty (indices of the mocks with an empty catalogue)."""
    import h5py

    if kind not in SUMMARY_KINDS:
        raise ValueError(f"unknown summary kind {kind!r}; expected one of {SUMMARY_KINDS}")
    rows, empty = [], []
    for path in summary_files:
        with h5py.File(path, "r") as f:
            for name in (n for n in f if n.startswith("mock_")):
                attrs = h5_read_attrs(f[name])
                if "empty" in attrs:
                    empty.append(int(attrs["index"]))
                    continue
                rows.append((attrs["index"], attrs["theta"], attrs["split"], attrs["param_names"], str(path), name))
    if empty:
        logger.warning("%d mocks with an empty cluster catalogue left out of the %s training set: %s",
                       len(empty), kind, sorted(empty))
    if not rows:
        raise ValueError(f"no usable mocks in {len(summary_files)} summary files ({len(empty)} empty)")
    rows.sort(key=lambda r: r[0])
    return {
        "empty": sorted(empty),
        "index": np.array([r[0] for r in rows]),
        "theta": np.array([r[1] for r in rows], dtype=np.float64),
        "split": np.array([r[2] for r in rows]),
        "param_names": list(rows[0][3]),
        "where": [(r[4], r[5]) for r in rows],
    }


def _mock_summaries(mocks: Mapping[str, Any], kind: str) -> Iterator[tuple[int, np.ndarray]]:
    """(row, summary) of every mock of :func:`_usable_mocks`, one file open at a time, one
    summary held at a time; a non-finite summary is an error naming its file and mock."""
    import h5py

    by_file: dict[str, list[tuple[int, str]]] = {}
    for row, (path, name) in enumerate(mocks["where"]):
        by_file.setdefault(path, []).append((row, name))
    for path, members in by_file.items():
        with h5py.File(path, "r") as f:
            for row, name in members:
                x = f[name][kind][()]
                if not np.all(np.isfinite(x)):
                    raise ValueError(f"{path}: mock {mocks['index'][row]} has non-finite {kind}")
                yield row, x


def gather_summaries(summary_files: Sequence[str | Path], kind: str) -> dict[str, Any]:
    """Stack one summary kind of all mocks: theta (N, P), x (N, ...), split (N,), index (N,).

    Mocks come out ordered by index whatever the order of the files. (The gather rule writes
    the rows one at a time instead: :func:`gather_training_set`.)
    """
    mocks = _usable_mocks(summary_files, kind)
    x = [None] * len(mocks["where"])
    for row, summary in _mock_summaries(mocks, kind):
        x[row] = summary
    return {k: v for k, v in mocks.items() if k != "where"} | {"x": np.stack(x)}


def gather_training_set(summary_files: Sequence[str | Path], name: str, path: str | Path) -> None:
    """Rule ``gather_summaries``: write the training set ``name`` (a kind, or kinds joined by '+' for combined inputs).

    A single kind gives ``x`` as one array; ``abundance+power_spectrum`` gives a group ``x``
    with one array per kind (the compressor's combined feature extractors). Rows are written
    one mock at a time, so a training set larger than memory (paper-scale 64^3 fields) can
    be gathered; its datasets are chunked along rows for the compressor's lazy reader.
    """
    import h5py

    kinds = name.split("+")
    mocks = {kind: _usable_mocks(summary_files, kind) for kind in kinds}
    first = mocks[kinds[0]]
    for kind in kinds[1:]:
        if not np.array_equal(mocks[kind]["index"], first["index"]):
            raise ValueError(f"summary kinds {kinds} cover different mocks")
    layout = {}
    for kind in kinds:
        path0, group0 = first["where"][0]
        with h5py.File(path0, "r") as f:
            ds = f[group0][kind]
            layout[kind] = (ds.shape, ds.dtype)
    with training_set_writer(path, first["theta"], first["split"], first["param_names"], layout, len(kinds) > 1) as (f, datasets):
        for kind in kinds:
            for row, x in _mock_summaries(mocks[kind], kind):
                if x.shape != layout[kind][0]:
                    raise ValueError(f"mock {first['index'][row]}: {kind} of shape {x.shape}, the first mock's is {layout[kind][0]}")
                datasets[kind][row] = x
        f.attrs["excluded_empty_mocks"] = first["empty"]
