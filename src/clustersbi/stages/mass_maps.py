"""The mass_maps stage: U-Net projected total-mass maps from cluster cutouts and their fidelity
metrics (de Andres et al., ``deandres-unet-mass-maps.txt``; :mod:`clustersbi.unet`,
:mod:`clustersbi.mass_map_metrics`).

Contracts (rules of ``mass_maps.smk``; config section ``mass_maps``; every output atomic):

- ``train_unet`` (one job per ``{variant}`` of ``mass_maps.variants``): in
  ``results/images/cutouts.h5`` (the cutout format, :mod:`clustersbi.cutouts`); out
  ``results/models/unet/{variant}/``: ``model.pt`` (best-validation checkpoint: state_dict,
  config, views and transforms), ``history.csv`` (epoch, train_loss, val_loss, lr; L1 of the
  standardised log10 mass per pixel), ``normalization.json`` (views -> channels, per-channel
  transforms, target transform), ``config.json`` (the resolved U-Net settings, seed included),
  ``split.json`` (split fractions, seed, numbers of maps and clusters per role); ``last.pt``,
  the resume point, is removed when training completes. The clusters are split into
  train/val/test by :func:`clustersbi.unet.cluster_split` with the global seed (all
  projections of a cluster in one role); the network seed is
  :func:`clustersbi.unet.variant_seed`.
- ``evaluate_mass_maps``: in the cutouts and every variant's ``model.pt``; out
  ``results/mass_maps/predictions.h5`` (the test maps: datasets ``index`` (rows of the cutout
  file), ``cluster_id``, ``view``, ``M200c`` [Msun/h], ``r500_pix``, ``r200_pix``, ``true``
  (N, npix, npix) [Msun/h per pixel], ``pred/<variant>`` (N, npix, npix) [Msun/h per pixel],
  ``inputs/<channel>`` the test maps' input channels, ``pixel_kpc`` (N,); attributes
  ``variants``, ``mass_bin_edges_log10``),
  ``results/mass_maps/metrics.json`` (per variant: the pixel-wise relative-difference summaries
  in the three apertures, b(rho) percentiles per mass bin at rho / R200 = 0.1 ... 1, the power
  ratio percentiles per ring k, the MMD^2 median per mass bin; the MMD^2 noise calibration per
  alpha; the test set's sizes and the fraction of maps whose R200 circle leaves the map) and
  ``results/mass_maps/table4.csv`` (paper Table 4: one row per variant and mass bin, columns
  :data:`TABLE4_COLUMNS`: the bin's edges and number of test maps, b(R200) as median, +|p84 -
  median|, -|median - p16| (paper Eq. 8), the bin's MMD^2 median, and the variant's whole-map
  pixel-wise D median and spread).
- ``tune_unet`` (optional): ``results/tuning/unet/{variant}/tuning.json``
  (:func:`clustersbi.unet.tune_unet`).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from .. import mass_map_metrics as mm
from ..cutouts import read_cutouts
from ..io import atomic_path, write_json
from ..unet import (
    UNetConfig,
    cluster_split,
    rebin_channels,
    load_unet,
    predict_mass_maps,
    train_unet,
    tune_unet,
    variant_seed,
    variant_views,
)

__all__ = [
    "unet_config",
    "split_roles",
    "train_unet_stage",
    "tune_unet_stage",
    "evaluate_mass_maps_stage",
    "variant_metrics",
    "TABLE4_COLUMNS",
]

logger = logging.getLogger(__name__)

#: columns of table4.csv
TABLE4_COLUMNS = (
    "variant", "mass_bin", "log10_m200_low", "log10_m200_high", "n_maps",
    "b200_median", "b200_plus", "b200_minus", "mmd2_median",
    "pixel_d_median", "pixel_d_plus", "pixel_d_minus",
)
#: apertures of the pixel-wise statistics (paper Fig. 6): name -> radius in units of R500 (None: whole map)
APERTURES = {"whole_map": None, "r500": 1.0, "r500_half": 0.5}


def unet_config(mass_maps: Mapping[str, Any], variant: str, seed: int) -> UNetConfig:
    """The :class:`UNetConfig` of ``variant`` from the ``mass_maps`` section and the global seed."""
    return UNetConfig(**dict(mass_maps["unet"]), seed=variant_seed(seed, variant))


def split_roles(cluster_id: np.ndarray, mass_maps: Mapping[str, Any], seed: int) -> np.ndarray:
    """(N,) train/val/test role of each cutout from ``mass_maps.split`` and the global seed."""
    split = mass_maps["split"]
    fractions = (split["train"], split["val"], split["test"])
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"mass_maps.split: train + val + test must be 1, got {sum(fractions):g}")
    return cluster_split(cluster_id, fractions, seed)


def _checked_roles(cutouts, mass_maps, seed, cutouts_file) -> np.ndarray:
    roles = split_roles(cutouts.cluster_id, mass_maps, seed)
    for role in ("train", "val", "test"):
        if not np.any(roles == role):
            raise ValueError(f"{cutouts_file}: no cluster falls in the '{role}' split "
                             f"({len(np.unique(cutouts.cluster_id))} clusters); make more cutouts or change mass_maps.split")
    return roles


def _views(variant: str, cutouts, cutouts_file) -> dict[str, list[str]]:
    try:
        return variant_views(variant, cutouts.channels)
    except ValueError as err:
        raise ValueError(f"mass_maps.variants: {err} ({cutouts_file})") from None


def _images(cutouts, mass_maps) -> dict[str, np.ndarray]:
    """The cutouts' maps binned by ``mass_maps.rebin``."""
    try:
        return rebin_channels(cutouts.images, mass_maps["rebin"])
    except ValueError as err:
        raise ValueError(f"mass_maps.rebin: {err}") from None


def train_unet_stage(cutouts_file, variant: str, mass_maps: Mapping[str, Any], seed: int, model_file,
                     device: str = "auto") -> None:
    """Rule ``train_unet``: train (or resume) the U-Net of one variant.

    ``model_file``: the rule's ``model.pt``; the other outputs (module contract) are written beside it.
    """
    cutouts = read_cutouts(cutouts_file)
    roles = _checked_roles(cutouts, mass_maps, seed, cutouts_file)
    views = _views(variant, cutouts, cutouts_file)
    config = unet_config(mass_maps, variant, seed)
    out = Path(model_file).parent
    counts = {r: {"maps": int(np.sum(roles == r)), "clusters": int(len(np.unique(cutouts.cluster_id[roles == r])))}
              for r in ("train", "val", "test")}
    write_json(out / "split.json", {"fractions": dict(mass_maps["split"]), "seed": int(seed), "counts": counts,
                                    "variant": variant, "views": views})
    result = train_unet(_images(cutouts, mass_maps), roles, views, config, out, device=device)
    logger.info("U-Net %s (%s): best val L1 %.4g at epoch %d of %d, %.0f s", variant, views, result.best_val_loss,
                result.best_epoch + 1, len(result.history), result.seconds)


def tune_unet_stage(cutouts_file, variant: str, mass_maps: Mapping[str, Any], seed: int, tuning_file,
                    device: str = "auto") -> None:
    """Rule ``tune_unet``: TPE search of the paper's Table 3 space for one variant (``mass_maps.tune``)."""
    cutouts = read_cutouts(cutouts_file)
    roles = _checked_roles(cutouts, mass_maps, seed, cutouts_file)
    tune = mass_maps["tune"]
    summary = tune_unet(_images(cutouts, mass_maps), roles, _views(variant, cutouts, cutouts_file), unet_config(mass_maps, variant, seed),
                        Path(tuning_file).parent, n_trials=tune["n_trials"], n_startup_trials=tune["n_startup_trials"],
                        device=device, seed=variant_seed(seed, variant))
    logger.info("U-Net %s tuning: best val L1 %.4g with %s", variant, summary["best_value"], summary["best_params"])


# --------------------------------------------------------------------------- evaluation


def _percentiles(values: np.ndarray, axis: int = 0) -> dict[str, list[float]]:
    """Median and 16th/84th percentiles along ``axis`` (NaN-aware), as lists."""
    if values.shape[axis] == 0:
        nan = np.full(np.delete(values.shape, axis), np.nan)
        return {"median": nan.tolist(), "p16": nan.tolist(), "p84": nan.tolist()}
    p16, p50, p84 = np.nanpercentile(values, [16, 50, 84], axis=axis)
    return {"median": p50.tolist(), "p16": p16.tolist(), "p84": p84.tolist()}


def variant_metrics(pred: np.ndarray, true: np.ndarray, r500_pix: np.ndarray, r200_pix: np.ndarray,
                    mass_bins: np.ndarray, n_bins: int, metrics: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The four metrics of one variant's test maps (module contract, ``metrics.json``)."""
    pixel = {name: mm.percentile_summary(mm.pixel_relative_differences(pred, true, None if f is None else f * r500_pix))
             for name, f in APERTURES.items()}
    bias = mm.profile_bias(pred, true, r200_pix)
    k, ratio = mm.power_ratio(pred, true)
    mmd = mm.map_mmd2(pred, true, metrics["mmd_bandwidths"], metrics["mmd_pixels"], seed)
    per_bin = []
    for b in range(n_bins):
        sel = mass_bins == b
        per_bin.append({
            "n_maps": int(sel.sum()),
            "profile_bias": _percentiles(bias[sel]),
            "b200": mm.percentile_summary(bias[sel, -1]),
            "mmd2_median": float(np.median(mmd[sel])) if sel.any() else float("nan"),
        })
    return {
        "pixel_relative_difference": pixel,
        "mass_bins": per_bin,
        "power_ratio": {"k": k.tolist(), **_percentiles(ratio)},
        "mmd2": {name: float(v) for name, v in zip(("p16", "median", "p84"), np.percentile(mmd, [16, 50, 84]))},
    }


def _write_table4(path, variants: Sequence[str], results: Mapping[str, Any], edges: np.ndarray) -> None:
    rows = []
    for variant in variants:
        res = results[variant]
        whole = res["pixel_relative_difference"]["whole_map"]
        for b, entry in enumerate(res["mass_bins"]):
            rows.append({
                "variant": variant, "mass_bin": b + 1, "log10_m200_low": float(edges[b]),
                "log10_m200_high": float(edges[b + 1]), "n_maps": entry["n_maps"],
                "b200_median": entry["b200"]["median"], "b200_plus": entry["b200"]["plus"],
                "b200_minus": entry["b200"]["minus"], "mmd2_median": entry["mmd2_median"],
                "pixel_d_median": whole["median"], "pixel_d_plus": whole["plus"], "pixel_d_minus": whole["minus"],
            })
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(TABLE4_COLUMNS))
            w.writeheader()
            for row in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def evaluate_mass_maps_stage(cutouts_file, model_files: Mapping[str, str | os.PathLike], mass_maps: Mapping[str, Any],
                             seed: int, predictions_file, metrics_file, table_file, device: str = "auto") -> dict[str, Any]:
    """Rule ``evaluate_mass_maps``: predict the test maps with every variant and compute the metrics.

    Args:
        model_files: variant -> its ``model.pt``.
    Returns:
        the ``metrics.json`` content.
    """
    cutouts = read_cutouts(cutouts_file)
    roles = _checked_roles(cutouts, mass_maps, seed, cutouts_file)
    test = np.flatnonzero(roles == "test")
    if "mass" not in cutouts.images:
        raise ValueError(f"{cutouts_file}: no images/mass (the projected total mass the U-Nets predict)")
    binned = _images(cutouts, mass_maps)
    images = {c: v[test] for c, v in binned.items()}
    true = images["mass"].astype(np.float64)
    pixel_kpc = cutouts.pixel_kpc_array()[test] * mass_maps["rebin"]
    r500_pix, r200_pix = cutouts.R500c_kpc[test] / pixel_kpc, cutouts.R200c_kpc[test] / pixel_kpc
    half_width = true.shape[-1] / 2.0
    clipped = float(np.mean(r200_pix > half_width))
    if clipped > 0:
        logger.warning("%.0f%% of the test maps are narrower than 2 R200: their outer profile apertures are cut "
                       "by the map edge", 100 * clipped)
    log_m200 = np.log10(cutouts.M200c[test])
    metrics = mass_maps["metrics"]
    edges = mm.mass_bin_edges(log_m200, metrics["mass_bin_edges_log10"])
    bins = mm.assign_mass_bins(log_m200, edges)
    n_bins = len(edges) - 1

    variants = list(model_files)
    preds, results, views = {}, {}, {}
    for variant in variants:
        unet = load_unet(model_files[variant], device=device)
        views[variant] = unet.views
        preds[variant] = predict_mass_maps(unet, images)
        results[variant] = variant_metrics(preds[variant], true, r500_pix, r200_pix, bins, n_bins, metrics, seed)
        b200 = ", ".join(f"{e['b200']['median']:+.3f}" for e in results[variant]["mass_bins"])
        logger.info("%s: b200 per mass bin %s; whole-map D median %+.3f", variant, b200,
                    results[variant]["pixel_relative_difference"]["whole_map"]["median"])
    calibration = mm.noise_calibration_mmd2(true, metrics["mmd_noise_alphas"], metrics["mmd_bandwidths"],
                                            metrics["mmd_pixels"], seed)
    summary = {
        "variants": variants,
        "views": views,
        "n_test_maps": int(test.size),
        "n_test_clusters": int(len(np.unique(cutouts.cluster_id[test]))),
        "mass_bin_edges_log10": edges.tolist(),
        "profile_fractions": mm.PROFILE_FRACTIONS.tolist(),
        "r200_beyond_map_fraction": clipped,
        "results": results,
        "mmd2_noise_calibration": {
            "alphas": list(metrics["mmd_noise_alphas"]),
            "median": np.median(calibration, axis=0).tolist() if test.size else [],
            "median_per_mass_bin": [np.median(calibration[bins == b], axis=0).tolist() if np.any(bins == b) else None
                                    for b in range(n_bins)],
        },
        "mmd_bandwidths": list(metrics["mmd_bandwidths"]),
    }
    with atomic_path(predictions_file) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["variants"] = np.array(variants, dtype=h5py.string_dtype())
            h5.attrs["mass_bin_edges_log10"] = edges
            h5.create_dataset("index", data=test)
            for name in ("cluster_id", "view", "M200c"):
                h5.create_dataset(name, data=getattr(cutouts, name)[test])
            h5.create_dataset("r500_pix", data=r500_pix)
            h5.create_dataset("r200_pix", data=r200_pix)
            h5.create_dataset("pixel_kpc", data=pixel_kpc)
            h5.create_dataset("true", data=true.astype(np.float32), compression="gzip")
            for variant in variants:
                h5.create_dataset(f"pred/{variant}", data=preds[variant].astype(np.float32), compression="gzip")
            for channel, arr in images.items():
                if channel != "mass":
                    h5.create_dataset(f"inputs/{channel}", data=arr, compression="gzip")
    write_json(metrics_file, summary)
    _write_table4(table_file, variants, results, edges)
    return summary
