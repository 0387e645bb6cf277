"""Diagnostic plots of LDL baryon painting (matplotlib, Agg backend; no display needed).

- :func:`plot_ne_vs_rho`: voxel n_e against rho_DM / mean, target and LDL as 2D histograms,
  with their power-law fits (cf. Cerardi et al., Fig. 5).
- :func:`plot_slices`: one slice of n_e, T and the emissivity proxy n_e^2 T^(1/2), target vs LDL.
- :func:`plot_training_stages`: train / validation loss of every training stage.
- :func:`plot_cluster_fidelity`: CR-M relations, deviations and prediction error of the
  held-out clusters, target vs LDL (cf. Cerardi et al., Fig. 6).
Each function writes one PNG and returns nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import matplotlib.colors
import numpy as np
import pandas as pd

from . import plt, save_figure

__all__ = [
    "plot_ldl_outputs", "plot_ne_vs_rho", "plot_slices", "plot_training_stages", "plot_cluster_fidelity"]


def plot_ne_vs_rho(
    rho_over_mean: np.ndarray, ne_true_cm3: np.ndarray, ne_ldl_cm3: np.ndarray, path: str | os.PathLike, bins: int = 60
) -> None:
    """2D histograms of log n_e [cm^-3] vs log rho_DM/mean for target and LDL, with power-law fits."""
    rho = np.asarray(rho_over_mean, float).ravel()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
    for ax, ne, title in zip(axes, (ne_true_cm3, ne_ldl_cm3), ("target", "LDL")):
        ne = np.asarray(ne, float).ravel()
        ok = (rho > 0) & (ne > 0)
        lx, ly = np.log10(rho[ok]), np.log10(ne[ok])
        ax.hist2d(lx, ly, bins=bins, cmap="viridis", norm=matplotlib.colors.LogNorm())
        if ok.sum() > 2:
            slope, icpt = np.polyfit(lx, ly, 1)
            xs = np.linspace(lx.min(), lx.max(), 10)
            ax.plot(xs, icpt + slope * xs, "r-", label=f"slope {slope:.2f}")
            ax.legend(loc="lower right")
        ax.set_title(title)
        ax.set_xlabel(r"$\log_{10}\,\rho_{\rm DM}/\bar\rho_{\rm DM}$")
    axes[0].set_ylabel(r"$\log_{10}\, n_e$ [cm$^{-3}$, comoving]")
    save_figure(fig, path)


def plot_slices(
    fields_true: Mapping[str, np.ndarray],
    fields_ldl: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    index: int | None = None,
) -> None:
    """Slices (axis 0 at ``index``, default the middle) of ``ne`` [cm^-3] and ``t`` [K] and of
    n_e^2 T^(1/2); rows target / LDL, log colour scale shared per column."""
    def emis(f):
        return np.asarray(f["ne"], float) ** 2 * np.sqrt(np.asarray(f["t"], float))

    cols = [("ne", r"$n_e$"), ("t", r"$T$ [K]"), ("eps", r"$n_e^2 T^{1/2}$")]
    i = np.asarray(fields_true["ne"]).shape[0] // 2 if index is None else int(index)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    for c, (key, label) in enumerate(cols):
        maps = []
        for f in (fields_true, fields_ldl):
            arr = emis(f) if key == "eps" else np.asarray(f[key], float)
            maps.append(np.log10(np.maximum(arr[i], 1e-300)))
        finite = np.concatenate([m[np.isfinite(m) & (m > -299)] for m in maps])
        vmin, vmax = (np.percentile(finite, [1, 99.9]) if finite.size else (0, 1))
        for r, (m, who) in enumerate(zip(maps, ("target", "LDL"))):
            im = axes[r, c].imshow(m, origin="lower", vmin=vmin, vmax=vmax, cmap="magma")
            axes[r, c].set_title(f"{who}: log10 {label}")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            fig.colorbar(im, ax=axes[r, c], fraction=0.046)
    save_figure(fig, path)


def plot_training_stages(history, path: str | os.PathLike) -> None:
    """Train and validation loss of every stage of the staged LDL training, one panel each.

    ``history``: the rows of ``history.csv`` (a DataFrame with stage, iteration, loss_train,
    loss_val), as :func:`clustersbi.ldl_training.train_ldl_models` writes them.
    """
    stages = list(dict.fromkeys(history["stage"]))
    n_col = min(3, len(stages))
    n_row = -(-len(stages) // n_col)
    fig, axes = plt.subplots(n_row, n_col, figsize=(4.2 * n_col, 3.2 * n_row), squeeze=False)
    for ax, stage in zip(axes.ravel(), stages):
        h = history[history["stage"] == stage]
        ax.plot(h["iteration"], h["loss_train"], label="train")
        ax.plot(h["iteration"], h["loss_val"], label="validation")
        ax.set_yscale("log")
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("L-BFGS-B evaluation" if stage.startswith("base") else "Adam step")
    for ax in axes.ravel()[len(stages):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("loss (eqs. 5-6)")
    axes[0, 0].legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_ldl_outputs(
    heldout_file: str | Path,
    history_file: str | Path,
    ne_rho_png: str | Path,
    slices_png: str | Path,
    training_png: str | Path,
) -> None:
    """The LDL plots of rule ``plot_ldl``: voxel n_e vs rho_DM (target vs LDL, paper Fig. 5) and
    slices of n_e, T, n_e^2 T^(1/2) on the held-out box , and the
    training curves of every stage (one panel per stage, train and validation loss)."""
    with np.load(heldout_file) as h:
        rho, ne_t, t_t, ne_l, t_l = (h[k] for k in ("rho_over_mean", "ne_true_cm3", "t_true_k", "ne_ldl_cm3", "t_ldl_k"))
    plot_ne_vs_rho(rho, ne_t, ne_l, ne_rho_png, bins=40)
    plot_slices({"ne": ne_t, "t": t_t}, {"ne": ne_l, "t": t_l}, slices_png)
    plot_training_stages(pd.read_csv(history_file), training_png)


def _fmt(value, spec: str = ".2f") -> str:
    """A statistic for a label; None (too few clusters) as 'n/a'."""
    return "n/a" if value is None else format(value, spec)


def plot_cluster_fidelity(clusters_csv: str | Path, summary_json: str | Path, path: str | os.PathLike) -> None:
    """Cluster-level LDL fidelity (cf. Cerardi et al., Fig. 6), three panels, from the files of
    rule ``ldl_fidelity``: the CR-M relation of the target and the LDL clusters with their
    power-law fits and the count-rate cuts; the deviations of the LDL against those of the
    target from the target's relation, with their correlation; histograms of the LDL prediction
    error log CR_LDL - log CR_target and of the target's deviations (the natural scatter)."""
    import json

    clusters = pd.read_csv(clusters_csv)
    with open(summary_json) as fh:
        fid = json.load(fh)["cluster_fidelity"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))
    m, cr_t, cr_l = (clusters[c].to_numpy(float) for c in ("mass_msun_h", "cr_target_cts_s", "cr_ldl_cts_s"))
    ok = (m > 0) & (cr_t > 0) & (cr_l > 0)
    lm, lt, ll = np.log10(m[ok]), np.log10(cr_t[ok]), np.log10(cr_l[ok])
    ax = axes[0]
    ax.scatter(lm, lt, s=12, c="C0", alpha=0.7, label="target")
    ax.scatter(lm, ll, s=12, c="C3", marker="x", alpha=0.7, label="LDL")
    fits = {who: fid[f"fit_{who}"] for who in ("target", "ldl")}
    if lm.size and all(fits.values()):
        xs = np.linspace(lm.min(), lm.max(), 10)
        for who, colour in (("target", "C0"), ("ldl", "C3")):
            f = fits[who]
            ax.plot(xs, f["norm"] + f["slope"] * (xs - f["pivot"]), color=colour,
                    label=f"{who}: slope {f['slope']:.2f}, scatter {f['scatter_dex']:.2f} dex")
    for c in fid["counts_above"]:
        ax.axhline(np.log10(c["cr_cut_cts_s"]), color="0.6", lw=0.7, ls=":")
    ax.set_xlabel(r"$\log_{10} M$ [$M_\odot/h$] (cells above " + f"{fid['overdensity_crit']:g}" + r" $\rho_c$)")
    ax.set_ylabel(r"$\log_{10}$ CR [cts/s]")
    ax.set_title(f"{fid['n_clusters']} clusters in {fid['n_boxes']} held-out boxes", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[1]
    ft = fits["target"]
    if lm.size and ft:
        mean_t = ft["norm"] + ft["slope"] * (lm - ft["pivot"])
        dt, dl = lt - mean_t, ll - mean_t
        ax.scatter(dt, dl, s=12, c="C2")
        lim = [min(dt.min(), dl.min()), max(dt.max(), dl.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_title(f"deviation correlation {_fmt(fid['deviation_correlation'])} (paper 0.88)", fontsize=10)
    ax.set_xlabel(r"target $\Delta\log_{10}$ CR [dex]")
    ax.set_ylabel(r"LDL $\Delta\log_{10}$ CR [dex]")
    ax = axes[2]
    if lm.size and ft:
        err = ll - lt
        bins = np.linspace(min(err.min(), dt.min()), max(err.max(), dt.max()), 25)
        ax.hist(dt, bins=bins, histtype="step", color="C0", label=f"natural scatter {_fmt(fid['natural_scatter_dex'])} dex")
        ax.hist(err, bins=bins, histtype="step", color="C3",
                label=f"LDL error {_fmt(fid['prediction_error_dex'])} dex (bias {_fmt(fid['prediction_bias_dex'], '+.2f')})")
        ax.set_title(f"error / scatter {_fmt(fid['error_over_scatter'])} (paper ~0.5)", fontsize=10)
        ax.legend(fontsize=7)
    ax.set_xlabel(r"$\log_{10}$ CR$_{\rm LDL}$ - $\log_{10}$ CR$_{\rm target}$, or target deviation [dex]")
    ax.set_ylabel("clusters")
    fig.tight_layout()
    save_figure(fig, path)
