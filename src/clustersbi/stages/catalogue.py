"""The catalogue stage: per-cluster feature tables, the input of the interpretable per-cluster
encoder (Ntampaka et al., sect. 3.2: one row per cluster, one column per observable; the
``catalogue_encoder`` compressor, :class:`clustersbi.compress.networks.CatalogueEncoder`).

Features (one table per mock, a row per cluster, logarithms base 10):

- analysis ``scaling`` (the halo catalogues of :mod:`clustersbi.stages.summaries`):
  ``log_l_x`` (L_X [h^-2 erg/s], ROSAT band; the brightness the clusters are sorted by) and
  ``log_mass_proxy``, a noisy "weak-lensing" mass: log10 of the true M [Msun/h] times a
  log-normal factor exp(N(0, ``catalogue.mass_proxy_scatter``)) (the paper's 20-40%), seeded
  by ``derive_seed(seed, SeedStream.MASS_PROXY, simulation, inner)``; by default it is the
  supplementary input joined at the terse layer. The true mass is kept as ``log_mass`` beside
  the features (for the interpretation, never an input).
- analysis ``ldl`` (the detection catalogues of :mod:`clustersbi.stages.xray`, all
  lightcones of a simulation together): ``log_cr`` (all bands [cts/s], the sort key), one
  ``log_cr_<lo>-<hi>`` per band, ``hr``, ``z``, ``log_npix`` (extent: pixels of the
  segmentation footprint) and the radial count-rate profile ``log_cr_r<r>`` (r in arcmin):
  the all-band count rate of the detection's slab map within a circular aperture of radius r
  around the detection (the analogue of the paper's M_gas(r) profile; differences of
  consecutive apertures are its slope). Count rates below 1e-8 cts/s are floored there. The
  detections are not matched to halos, so no true mass or mass proxy exists for them.

Contracts (HDF5, written atomically):

- rule ``catalogue_features``: ``results/catalogue/chunk_{chunk}.h5``: per mock
  ``mock_{index:07d}`` a dataset ``features`` (n, F) (rows sorted by brightness, brightest
  first) and, where known, ``log_mass`` (n,), attributes index, split, theta, param_names;
  root attributes ``feature_names``, ``sort_feature``, ``supplementary_features``, ``analysis``.
  A mock with no cluster has an (0, F) table: it is a legitimate catalogue, not left out.
- rule ``gather_catalogue``: ``results/training/catalogue.h5`` in the training-set layout
  (:func:`clustersbi.compress.data.write_training_set`) with ``x`` (N, n_max, F) padded with
  NaN rows (n_max the largest count, or ``catalogue.n_max``: then only the brightest n_max
  clusters of a mock are kept), ``counts`` (N,) clusters per mock before any cut,
  ``index`` (N,), ``log_mass`` (N, n_max) where known, and the root attributes of the chunks.
- rule ``interpret_catalogue``: in the training set and its ``catalogue_encoder`` compressor;
  out ``results/interpret/catalogue/interpretation.json`` (:func:`interpret_catalogue`: on the
  ``catalogue.interpret.split`` mocks, the leave-one-out changes of every parameter against the
  mass proxy and above mass thresholds, the mean saliency per feature and mass bin, the terse
  value's correlations with the true mass, every feature, the number of clusters and every
  parameter, its partial correlations with each parameter at fixed mass and the
  ``overspecialized`` warnings, the terse value as a mass proxy) and the figures
  ``results/plots/interpret/catalogue_{leave_one_out,saliency,terse,mass_proxy}.png``
  (:mod:`clustersbi.plots.catalogue`, from ``results/interpret/catalogue/clusters.h5``, the
  per-cluster arrays of :func:`interpret_catalogue_stage`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ..compress.data import TrainingSet, write_training_set
from ..design import SeedStream, derive_seed
from ..detect import band_column
from ..io import ChunkFile, atomic_path, h5_read_attrs, h5_write_attrs, sorted_groups

__all__ = ["SORT_FEATURES", "DEFAULT_SUPPLEMENTARY", "CR_FLOOR_CTS_S", "scaling_feature_names", "ldl_feature_names",
           "scaling_features", "aperture_count_rates", "ldl_features", "catalogue_chunk_scaling",
           "catalogue_chunk_ldl", "gather_catalogue", "resolve_catalogue_config", "COSMOLOGICAL",
           "read_catalogue_training_set", "interpret_catalogue", "interpret_catalogue_stage", "CLUSTER_ARRAYS"]

logger = logging.getLogger(__name__)

#: the brightness each analysis's clusters are sorted by (catalogue.sort_by null)
SORT_FEATURES = {"scaling": "log_l_x", "ldl": "log_cr"}
#: the features joined at the terse layer by default (catalogue.supplementary null)
DEFAULT_SUPPLEMENTARY = {"scaling": ["log_mass_proxy"], "ldl": []}
#: count rates are floored here before the logarithm [cts/s]
CR_FLOOR_CTS_S = 1e-8


def scaling_feature_names() -> list[str]:
    return ["log_l_x", "log_mass_proxy"]


def ldl_feature_names(bands_kev: Sequence[Sequence[float]], radii_arcmin: Sequence[float]) -> list[str]:
    return (["log_cr"] + [f"log_{band_column(b)}".replace("CR", "cr") for b in bands_kev]
            + ["hr", "z", "log_npix"] + [f"log_cr_r{r:g}" for r in radii_arcmin])


def resolve_catalogue_config(catalogue: Mapping[str, Any], analysis: str, feature_names: Sequence[str]) -> dict[str, Any]:
    """The sort feature and supplementary features of an analysis (config nulls resolved), checked."""
    sort_by = catalogue.get("sort_by") or SORT_FEATURES[analysis]
    supplementary = catalogue.get("supplementary")
    supplementary = list(DEFAULT_SUPPLEMENTARY[analysis] if supplementary is None else supplementary)
    unknown = sorted(set([sort_by, *supplementary]) - set(feature_names))
    if unknown:
        raise ValueError(f"catalogue: features {unknown} do not exist for analysis {analysis!r} (its features: {list(feature_names)})")
    if len(set(supplementary)) == len(feature_names):
        raise ValueError("catalogue.supplementary: every feature is supplementary; the encoder would see none")
    return {"sort_feature": sort_by, "supplementary_features": supplementary}


def _sorted_rows(features: np.ndarray, names: Sequence[str], sort_feature: str) -> np.ndarray:
    """Row order, brightest first (stable: ties keep their order)."""
    return np.argsort(-features[:, list(names).index(sort_feature)], kind="stable")


def scaling_features(mass_msun_h: np.ndarray, l_x_erg_s: np.ndarray, scatter_ln: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 2): log_l_x, log_mass_proxy; log_mass (n,)) of one mock's clusters."""
    mass = np.asarray(mass_msun_h, float)
    rng = np.random.default_rng(seed)
    log_mass = np.log10(mass)
    proxy = log_mass + rng.normal(0.0, float(scatter_ln), mass.size) / np.log(10.0)
    return np.column_stack([np.log10(np.asarray(l_x_erg_s, float)), proxy]).reshape(-1, 2), log_mass


def aperture_count_rates(image: np.ndarray, x_pix: np.ndarray, y_pix: np.ndarray, radii_pix: Sequence[float]) -> np.ndarray:
    """(n, n_r) sums of ``image`` (ny, nx) within circles of radius r [pixels] around (x, y)
    (x the column, y the row, pixel centres at integers as sep's); pixels whose centre lies within
    r count whole."""
    ny, nx = image.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    out = np.zeros((len(x_pix), len(radii_pix)))
    for i, (x, y) in enumerate(zip(x_pix, y_pix)):
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        for k, r in enumerate(radii_pix):
            out[i, k] = image[d2 <= r * r].sum()
    return out


def ldl_features(catalogue, slab_maps: np.ndarray, bands_kev: Sequence[Sequence[float]], radii_arcmin: Sequence[float],
                 pixel_arcmin: float) -> np.ndarray:
    """(n, F) features (:func:`ldl_feature_names`) of one lightcone's detections.

    Args:
        catalogue: the lightcone's detection catalogue (DataFrame of :mod:`clustersbi.detect`).
        slab_maps: (n_slabs, n_b, ny, nx) count-rate maps the detections were made on.
    """
    n = len(catalogue)
    names = ldl_feature_names(bands_kev, radii_arcmin)
    if n == 0:
        return np.zeros((0, len(names)))
    floor = lambda v: np.log10(np.maximum(np.asarray(v, float), CR_FLOOR_CTS_S))  # noqa: E731
    cols = [floor(catalogue["CR"])] + [floor(catalogue[band_column(b)]) for b in bands_kev]
    cols += [np.asarray(catalogue["HR"], float), np.asarray(catalogue["z"], float), np.log10(np.maximum(catalogue["npix"], 1))]
    radii_pix = [float(r) / float(pixel_arcmin) for r in radii_arcmin]
    profile = np.zeros((n, len(radii_pix)))
    slabs = np.asarray(catalogue["slab"], int)
    x, y = np.asarray(catalogue["x_pix"], float), np.asarray(catalogue["y_pix"], float)
    for s in np.unique(slabs):
        rows = np.flatnonzero(slabs == s)
        profile[rows] = aperture_count_rates(np.asarray(slab_maps[s], float).sum(axis=0), x[rows], y[rows], radii_pix)
    features = np.column_stack(cols + [floor(profile[:, k]) for k in range(len(radii_pix))])
    # a detection's HR is undefined when its denominator band is empty: NaN, which the encoder
    # reads as the feature's mean (a row NaN in every column would be padding: log_cr never is)
    return np.where(np.isfinite(features), features, np.nan)


def _write_mock(out: h5py.File, meta: Mapping[str, Any], features: np.ndarray, names, sort_feature, log_mass=None) -> None:
    order = _sorted_rows(features, names, sort_feature)
    g = out.create_group(f"mock_{int(meta['index']):07d}")
    g["features"] = np.asarray(features, float)[order].reshape(-1, len(names))
    if log_mass is not None:
        g["log_mass"] = np.asarray(log_mass, float)[order]
    h5_write_attrs(g, meta)


def catalogue_chunk_scaling(catalog_file, summary_file, global_seed: int, catalogue: Mapping[str, Any], out_file) -> None:
    """Rule ``catalogue_features``, analysis scaling: every mock of a chunk (module contract).

    ``catalog_file``: the chunk's cluster catalogues; ``summary_file``: its summaries file, which
    lists the mocks whose catalogue is empty (they get an empty table)."""
    names = scaling_feature_names()
    layout = resolve_catalogue_config(catalogue, "scaling", names)
    keys = ("index", "simulation", "inner", "split", "theta", "param_names")
    with h5py.File(catalog_file, "r") as cats, h5py.File(summary_file, "r") as sums, atomic_path(out_file) as tmp, \
            h5py.File(tmp, "w") as out:
        h5_write_attrs(out, {"feature_names": names, "analysis": "scaling", **layout})
        for name in sorted_groups(sums, "mock_"):
            meta = h5_read_attrs(sums[name], keys)
            seed = derive_seed(global_seed, SeedStream.MASS_PROXY, int(meta["simulation"]), int(meta["inner"]))
            if name in cats:
                g = cats[name]
                features, log_mass = scaling_features(g["mass_msun_h"][()], g["l_x_erg_s"][()],
                                                      catalogue["mass_proxy_scatter"], seed)
            else:
                features, log_mass = np.zeros((0, len(names))), np.zeros(0)
            _write_mock(out, meta, features, names, layout["sort_feature"], log_mass)


def catalogue_chunk_ldl(catalog_file, maps_file, catalogue: Mapping[str, Any], bands_kev, pixel_arcmin: float, out_file) -> None:
    """Rule ``catalogue_features``, analysis ldl: per simulation, the detections of all its
    lightcones with their aperture profiles from the maps (module contract)."""
    from ..detect import catalogue_from_h5

    radii = [float(r) for r in catalogue["profile_radii_arcmin"]]
    names = ldl_feature_names(bands_kev, radii)
    layout = resolve_catalogue_config(catalogue, "ldl", names)
    with ChunkFile.open(catalog_file) as cats, ChunkFile.open(maps_file) as maps, atomic_path(out_file) as tmp, \
            h5py.File(tmp, "w") as out:
        h5_write_attrs(out, {"feature_names": names, "analysis": "ldl", "profile_radii_arcmin": radii, **layout})
        for attrs, sim in cats.simulations():
            rows = []
            for lc_number, lc in ChunkFile.lightcones(sim):
                cat = catalogue_from_h5(lc)
                maps_lc = maps.h5[sim.name.strip("/")][f"lc_{lc_number:02d}"]["rate_cts_s"]
                rows.append(ldl_features(cat, maps_lc, bands_kev, radii, pixel_arcmin) if len(cat) else np.zeros((0, len(names))))
            meta = {k: attrs[k] for k in ("index", "split", "theta", "param_names")}
            _write_mock(out, meta, np.concatenate(rows) if rows else np.zeros((0, len(names))), names, layout["sort_feature"])


def gather_catalogue(chunk_files: Sequence[str | Path], out_file, n_max: int | None = None) -> None:
    """Rule ``gather_catalogue``: every chunk's tables into one padded training set (module contract)."""
    rows, root = [], None
    for path in chunk_files:
        with h5py.File(path, "r") as f:
            attrs = h5_read_attrs(f)
            if root is None:
                root = attrs
            elif [str(n) for n in attrs["feature_names"]] != [str(n) for n in root["feature_names"]]:
                raise ValueError(f"{path}: feature names differ from the other chunks'")
            for name in sorted_groups(f, "mock_"):
                g = f[name]
                meta = h5_read_attrs(g, ("index", "split", "theta", "param_names"))
                rows.append((int(meta["index"]), meta, g["features"][()], g["log_mass"][()] if "log_mass" in g else None))
    if not rows:
        raise ValueError(f"no mocks in {len(chunk_files)} catalogue files")
    rows.sort(key=lambda r: r[0])
    n_features = len(root["feature_names"])
    counts = np.array([len(r[2]) for r in rows], dtype=np.int64)
    width = int(counts.max()) if n_max is None else int(n_max)
    width = max(width, 1)
    x = np.full((len(rows), width, n_features), np.nan)
    with_mass = all(r[3] is not None for r in rows)
    log_mass = np.full((len(rows), width), np.nan) if with_mass else None
    for i, (_, _, feats, mass) in enumerate(rows):
        k = min(len(feats), width)  # the brightest k: the tables are sorted
        x[i, :k] = feats[:k]
        if with_mass:
            log_mass[i, :k] = mass[:k]
    n_cut = int(np.maximum(counts - width, 0).sum())
    if n_cut:
        logger.warning("catalogue.n_max = %d: %d clusters of %d mocks left out (the faintest)", width, n_cut,
                       int((counts > width).sum()))
    ts = TrainingSet(np.array([r[1]["theta"] for r in rows], float), x, np.array([r[1]["split"] for r in rows]),
                     [str(n) for n in rows[0][1]["param_names"]])
    with atomic_path(out_file) as tmp:
        write_training_set(tmp, ts)
        with h5py.File(tmp, "a") as f:
            f["counts"] = counts
            f["index"] = np.array([r[0] for r in rows], dtype=np.int64)
            if with_mass:
                f["log_mass"] = log_mass
            h5_write_attrs(f, {**root, "n_max": width, "n_clusters_cut": n_cut})
    logger.info("catalogue training set: %d mocks, %d clusters (%d empty mocks), n_max %d", len(rows), int(counts.sum()),
                int((counts == 0).sum()), width)


# --------------------------------------------------------------------------- interpretation

#: parameters a single cluster's terse value must not know at fixed mass (Appendix B's check);
#: the astrophysical ones may legitimately move the observables at fixed mass
COSMOLOGICAL = ("Omega_m", "sigma_8", "h", "n_s", "Omega_b")


def read_catalogue_training_set(path) -> dict[str, Any]:
    """A catalogue training set with its extras: ``ts``, ``counts``, ``log_mass`` (or None),
    ``feature_names``, ``sort_feature``, ``supplementary_features``."""
    from ..compress.data import load_training_set

    ts = load_training_set(path)
    with h5py.File(path, "r") as f:
        attrs = h5_read_attrs(f)
        counts = f["counts"][()]
        log_mass = f["log_mass"][()] if "log_mass" in f else None
    return {"ts": ts, "counts": counts, "log_mass": log_mass, "feature_names": [str(n) for n in attrs["feature_names"]],
            "sort_feature": str(attrs["sort_feature"]),
            "supplementary_features": [str(n) for n in attrs.get("supplementary_features", [])]}


def interpret_catalogue(training_file, model_dir, interpret: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Leave-one-out, saliency, terse-layer correlations and the terse mass proxy of a trained
    catalogue encoder on one split (:mod:`clustersbi.interpret`).

    Returns (summary: JSON-ready, arrays: per-cluster arrays for the figures).
    """
    from .. import interpret as it
    from ..compress.train import compress, load_compressor, prepare_inputs

    data = read_catalogue_training_set(training_file)
    ts, names = data["ts"], data["feature_names"]
    rows = ts.mask(interpret["split"])
    if not rows.any():
        raise ValueError(f"{training_file}: no '{interpret['split']}' mocks to interpret")
    x, theta = ts.x[rows], ts.theta[rows]
    comp = load_compressor(model_dir, device="cpu")
    encoder = next(iter(comp.model.extractors.values()))
    inputs = prepare_inputs({next(iter(comp.config.inputs)): x}, comp.config, comp.transforms)
    inputs = next(iter(inputs.values()))
    terse, mask = it.terse_values(encoder, inputs)
    saliency = it.encoder_saliency(encoder, inputs)[mask]  # (C, F)
    delta, mock, slot = it.leave_one_out(lambda a: compress(comp, a)[0], x)
    # leave_one_out runs over the clusters in the order of the mask: the same as x[mask]
    feats = x[mask]  # (C, F)
    per_cluster = {"terse": terse[mask], "mock": np.nonzero(mask)[0], "features": feats,
                   "n_clusters": data["counts"][rows][np.nonzero(mask)[0]].astype(float),
                   "theta": theta[np.nonzero(mask)[0]]}
    log_mass = data["log_mass"][rows][mask] if data["log_mass"] is not None else None
    if "log_mass_proxy" in names:
        proxy, proxy_name = feats[:, names.index("log_mass_proxy")], "log_mass_proxy"
    elif log_mass is not None:
        proxy, proxy_name = log_mass, "log_mass"
    else:
        proxy, proxy_name = feats[:, names.index(data["sort_feature"])], data["sort_feature"]
    fixed, fixed_name = (log_mass, "log_mass") if log_mass is not None else (proxy, proxy_name)
    t = per_cluster["terse"]
    columns = {**({"log_mass": log_mass} if log_mass is not None else {}),
               **{n: feats[:, i] for i, n in enumerate(names)},
               "n_clusters": per_cluster["n_clusters"],
               **{p: per_cluster["theta"][:, j] for j, p in enumerate(ts.param_names)}}
    correlations = it.summarise_correlations(t, columns)
    at_fixed = {p: it.partial_correlation(t, per_cluster["theta"][:, j], fixed) for j, p in enumerate(ts.param_names)}
    thr = float(interpret["overspecialized_rho"])
    warnings = [f"terse value correlates with {p} at fixed {fixed_name}: partial rho = {r:.3f} (|rho| > {thr}): "
                "the encoder may have learnt the catalogue's cosmology from single clusters (overspecialised)"
                for p, r in at_fixed.items() if p in COSMOLOGICAL and r is not None and abs(r) > thr]
    for w in warnings:
        logger.warning("%s", w)
    thresholds = interpret.get("mass_thresholds")
    if thresholds is None:
        thresholds = np.round(np.quantile(proxy, [0.5, 0.84, 0.975]), 2).tolist() if proxy.size else []
    edges = np.quantile(proxy, np.linspace(0, 1, int(interpret["n_mass_bins"]) + 1)) if proxy.size else np.zeros(2)
    binned = it.binned_saliency(saliency, proxy, edges) if proxy.size else np.zeros((0, len(names)))
    summary: dict[str, Any] = {
        "split": interpret["split"], "n_mocks": int(rows.sum()), "n_clusters": int(mask.sum()),
        "n_empty_mocks": int((data["counts"][rows] == 0).sum()), "feature_names": names,
        "supplementary_features": data["supplementary_features"], "sort_feature": data["sort_feature"],
        "param_names": list(ts.param_names), "mass_proxy": proxy_name, "fixed_mass": fixed_name,
        "leave_one_out": {
            "median_abs_delta": np.median(np.abs(delta), axis=0).tolist() if delta.size else None,
            "central_68_abs_delta": np.percentile(np.abs(delta), 68, axis=0).tolist() if delta.size else None,
            "estimated_parameters": list(comp.param_names),
            "correlation_with_mass_proxy": {p: it.correlation(delta[:, j], proxy) for j, p in enumerate(comp.param_names)},
            "above_thresholds": [{k: v for k, v in e.items() if k != "sorted"}
                                 for e in it.threshold_cdfs(delta, proxy, thresholds)],
        },
        "saliency": {
            "mean_per_feature": dict(zip(names, saliency.mean(axis=0).tolist())) if saliency.size else None,
            "mass_bin_edges": edges.tolist(), "mean_per_feature_and_mass_bin": binned.tolist(),
        },
        "terse_correlations": correlations,
        "terse_partial_correlations_at_fixed_mass": at_fixed,
        "warnings": warnings,
        "overspecialized": bool(warnings),
    }
    if log_mass is not None:
        summary["terse_mass_proxy"] = it.fit_mass_proxy(t, log_mass, per_cluster["mock"])
        summary["feature_mass_proxies"] = {n: it.fit_mass_proxy(feats[:, i], log_mass, per_cluster["mock"])
                                           for i, n in enumerate(names) if np.std(feats[:, i][np.isfinite(feats[:, i])]) > 0}
    arrays = {**per_cluster, "delta": delta, "proxy": proxy, "proxy_name": proxy_name, "log_mass": log_mass,
              "saliency": saliency, "binned_saliency": binned, "edges": edges, "feature_names": names,
              "param_names": list(ts.param_names), "estimated_names": list(comp.param_names), "thresholds": list(thresholds),
              "supplementary": data["supplementary_features"]}
    return summary, arrays


#: the per-cluster arrays of the interpretation written for the figures (clusters.h5)
CLUSTER_ARRAYS = ("terse", "mock", "features", "n_clusters", "theta", "delta", "proxy", "log_mass", "saliency",
                  "binned_saliency", "edges")


def interpret_catalogue_stage(training_file, model_file, interpret: Mapping[str, Any], out_json, out_clusters) -> None:
    """Rule ``interpret_catalogue``: the JSON summary and the per-cluster arrays the figures
    read (``clusters.h5``: :data:`CLUSTER_ARRAYS` as datasets, ``log_mass`` only when known; the
    names, thresholds and supplementary features as attributes)."""
    from ..io import write_json

    summary, arrays = interpret_catalogue(training_file, Path(model_file).parent, interpret)
    write_json(out_json, summary)
    with atomic_path(out_clusters) as tmp, h5py.File(tmp, "w") as f:
        for key in CLUSTER_ARRAYS:
            if arrays[key] is not None:
                f[key] = np.asarray(arrays[key])
        h5_write_attrs(f, {k: arrays[k] for k in ("proxy_name", "feature_names", "param_names", "estimated_names",
                                                   "thresholds", "supplementary")})
