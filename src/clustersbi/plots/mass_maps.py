"""Figures of the mass_maps stage (de Andres et al. Figs. 5-9): example test maps with every
variant's prediction, the pixel-wise relative differences in three apertures, the cylindrical
mass-profile bias per mass bin, the power-spectrum ratio, the MMD against its noise
calibration, and the training curves. They read ``results/mass_maps/predictions.h5`` and
``metrics.json`` (:mod:`clustersbi.stages.mass_maps`' contract) and the histories."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from .. import mass_map_metrics as mm
from . import plt, save_figure

__all__ = ["plot_mass_maps", "plot_examples", "plot_pixel_differences", "plot_profile_bias", "plot_power_ratio",
           "plot_mmd", "plot_training"]

APERTURE_LABELS = {"whole_map": "whole map", "r500": r"$< R_{500}$", "r500_half": r"$< R_{500}/2$"}


def _read_predictions(path):
    with h5py.File(path, "r") as h5:
        variants = [v.decode() if isinstance(v, bytes) else str(v) for v in h5.attrs["variants"]]
        data = {
            "true": h5["true"][...],
            "pred": {v: h5[f"pred/{v}"][...] for v in variants},
            "inputs": {k: h5[f"inputs/{k}"][...] for k in h5["inputs"]} if "inputs" in h5 else {},
            "M200c": h5["M200c"][...],
            "r500_pix": h5["r500_pix"][...],
            "r200_pix": h5["r200_pix"][...],
        }
    return variants, data


def _log_image(img: np.ndarray, counts: bool) -> np.ndarray:
    """log10 of a map for display: counts + 1, or positive values floored at their 1st percentile."""
    if counts:
        return np.log10(np.clip(img, 0.0, None) + 1.0)
    pos = img[img > 0]
    floor = np.percentile(pos, 1) if pos.size else 1.0
    return np.log10(np.clip(img, floor, None))


def _color(i: int) -> str:
    return f"C{i}"


def plot_examples(predictions_file, path, n_examples: int = 4) -> None:
    """Rows: test clusters spread over the mass range; columns: input tracers (X-ray counts summed
    over the bands), the true mass map and each variant's prediction (one log10 colour scale per
    row), and the relative residual of the last variant."""
    variants, d = _read_predictions(predictions_file)
    n = d["true"].shape[0]
    order = np.argsort(d["M200c"])
    rows = order[np.unique(np.linspace(0, n - 1, min(n_examples, n)).round().astype(int))]
    xray = [k for k in d["inputs"] if k.startswith("xray_")]
    tracers = ([("X-ray counts", sum(d["inputs"][k] for k in xray))] if xray else [])
    tracers += [(name, d["inputs"][key]) for name, key in (("Compton-y", "y"), ("stellar", "stellar")) if key in d["inputs"]]
    ncol = len(tracers) + 1 + len(variants) + 1
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.9 * ncol, 1.9 * len(rows) + 0.4), squeeze=False)
    for r, i in enumerate(rows):
        true = d["true"][i]
        floor = max(np.percentile(true[true > 0], 1) if np.any(true > 0) else 1.0, 1e-30)
        lo, hi = np.log10(floor), np.log10(max(true.max(), floor * 10))
        panels = [(name, _log_image(img[i], counts=name == "X-ray counts"), None) for name, img in tracers]
        panels += [("true mass", np.log10(np.clip(true, floor, None)), (lo, hi))]
        panels += [(v, np.log10(np.clip(d["pred"][v][i], floor, None)), (lo, hi)) for v in variants]
        for c, (title, img, lim) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img, origin="lower", cmap="magma", vmin=None if lim is None else lim[0], vmax=None if lim is None else lim[1])
            if r == 0:
                ax.set_title(title, fontsize=8)
        last = variants[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            resid = np.where(true > 0, d["pred"][last][i] / true - 1, 0.0)
        ax = axes[r, -1]
        ax.imshow(resid, origin="lower", cmap="RdBu_r", vmin=-0.5, vmax=0.5)
        if r == 0:
            ax.set_title(f"{last}: pred/true - 1", fontsize=8)
        axes[r, 0].set_ylabel(rf"$\log M_{{200}}$ = {np.log10(d['M200c'][i]):.2f}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("test clusters: log10 of each map (mass maps on one scale per row)", fontsize=9)
    save_figure(fig, path)


def plot_pixel_differences(predictions_file, path) -> None:
    """Histograms of D = (pred - true) / true per variant, whole map, inside R500 and R500/2 (paper Fig. 6)."""
    variants, d = _read_predictions(predictions_file)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    bins = np.linspace(-1.0, 1.5, 101)
    for ax, (name, factor) in zip(axes, (("whole_map", None), ("r500", 1.0), ("r500_half", 0.5))):
        for k, v in enumerate(variants):
            radius = None if factor is None else factor * d["r500_pix"]
            diff = mm.pixel_relative_differences(d["pred"][v], d["true"], radius)
            s = mm.percentile_summary(diff)
            label = rf"{v}: ${s['median']:+.2f}^{{+{s['plus']:.2f}}}_{{-{s['minus']:.2f}}}$"
            ax.hist(np.clip(diff, bins[0], bins[-1]), bins=bins, density=True, histtype="step", color=_color(k), label=label)
        ax.axvline(0.0, color="k", lw=0.8, ls="--")
        ax.set_title(APERTURE_LABELS[name])
        ax.set_xlabel(r"$(\hat I - I)/I$")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("probability density")
    save_figure(fig, path)


def plot_profile_bias(metrics_file, path) -> None:
    """b(rho) = (M_pred - M_true) / M_true of cylinders rho = R200/10 ... R200 per mass bin:
    median and 16-84th percentile band per variant (paper Fig. 7)."""
    m = json.loads(Path(metrics_file).read_text())
    edges, x = m["mass_bin_edges_log10"], np.asarray(m["profile_fractions"])
    n_bins = len(edges) - 1
    fig, axes = plt.subplots(1, n_bins, figsize=(4 * n_bins, 3.4), sharey=True, squeeze=False)
    for b in range(n_bins):
        ax = axes[0, b]
        for k, v in enumerate(m["variants"]):
            entry = m["results"][v]["mass_bins"][b]
            pb = entry["profile_bias"]
            ax.plot(x, pb["median"], color=_color(k), label=f"{v} (n={entry['n_maps']})")
            ax.fill_between(x, pb["p16"], pb["p84"], color=_color(k), alpha=0.15)
        ax.axhline(0.0, color="k", lw=0.8, ls="--")
        ax.set_title(rf"${edges[b]:.2f} \leq \log M_{{200}} < {edges[b + 1]:.2f}$", fontsize=9)
        ax.set_xlabel(r"$\rho / R_{200}$")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel(r"$b(\rho) = (\hat M_\rho - M_\rho)/M_\rho$")
    save_figure(fig, path)


def plot_power_ratio(metrics_file, path) -> None:
    """P_pred(k) / P_true(k) - 1 per variant: median and 16-84th percentiles over the test maps
    (paper Fig. 8, bottom), against k in cycles per map side."""
    m = json.loads(Path(metrics_file).read_text())
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, v in enumerate(m["variants"]):
        pr = m["results"][v]["power_ratio"]
        kk = np.asarray(pr["k"])
        ax.plot(kk, np.asarray(pr["median"]) - 1, color=_color(k), label=v)
        ax.fill_between(kk, np.asarray(pr["p16"]) - 1, np.asarray(pr["p84"]) - 1, color=_color(k), alpha=0.15)
    ax.axhline(0.0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("k [cycles per map side]  (wavelength = map side / k)")
    ax.set_ylabel(r"$(P_{\rm pred} - P_{\rm true}) / P_{\rm true}$")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_mmd(metrics_file, path) -> None:
    """Median MMD^2 of the pixel distributions per mass bin and variant, with the noise
    calibration (true map + N(0, alpha max) noise) as dashed lines (paper Fig. 9)."""
    m = json.loads(Path(metrics_file).read_text())
    edges = np.asarray(m["mass_bin_edges_log10"])
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, v in enumerate(m["variants"]):
        ax.plot(centres, [e["mmd2_median"] for e in m["results"][v]["mass_bins"]], "o-", color=_color(k), label=v)
    cal = m["mmd2_noise_calibration"]
    for a, alpha in enumerate(cal["alphas"]):
        if cal["median"]:
            ax.axhline(cal["median"][a], color="0.5", ls="--", lw=0.8)
            ax.text(edges[0], cal["median"][a], rf"$\alpha$={alpha:g}", fontsize=7, va="bottom", color="0.3")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel(r"$\log_{10} M_{200c}\ [h^{-1} M_\odot]$ (bin centre)")
    ax.set_ylabel(r"median MMD$^2$")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_training(histories: Mapping[str, str | os.PathLike], path) -> None:
    """Train (dashed) and validation (solid) L1 loss per epoch of every variant."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, (v, hist) in enumerate(histories.items()):
        with open(hist) as fh:
            rows = list(csv.DictReader(fh))
        ep = [int(r["epoch"]) + 1 for r in rows]
        ax.plot(ep, [float(r["train_loss"]) for r in rows], ls="--", color=_color(k))
        ax.plot(ep, [float(r["val_loss"]) for r in rows], color=_color(k), label=v)
    ax.set_xlabel("epoch")
    ax.set_ylabel("L1 loss (standardised log10 mass per pixel)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_mass_maps(predictions_file, metrics_file, histories: Mapping[str, str | os.PathLike],
                   paths: Mapping[str, str | os.PathLike], n_examples: int = 4) -> None:
    """Every figure of the stage; ``paths``: examples, pixel_differences, profile_bias,
    power_ratio, mmd, training -> output file."""
    plot_examples(predictions_file, paths["examples"], n_examples)
    plot_pixel_differences(predictions_file, paths["pixel_differences"])
    plot_profile_bias(metrics_file, paths["profile_bias"])
    plot_power_ratio(metrics_file, paths["power_ratio"])
    plot_mmd(metrics_file, paths["mmd"])
    plot_training(histories, paths["training"])
