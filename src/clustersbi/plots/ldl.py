"""Diagnostic plots of LDL baryon painting (matplotlib, Agg backend; no display needed).

- :func:`plot_ne_vs_rho`: voxel n_e against rho_DM / mean, target and LDL as 2D histograms,
  with their power-law fits (cf. Cerardi et al., Fig. 5).
- :func:`plot_slices`: one slice of n_e, T and the emissivity proxy n_e^2 T^(1/2), target vs LDL.
- :func:`plot_training_stages`: train / validation loss of every training stage.
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
    "plot_ldl_outputs","plot_ne_vs_rho", "plot_slices", "plot_training_stages"]


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
