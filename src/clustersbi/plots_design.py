"""Plots of the design and of the linear power spectra (matplotlib, no display needed)."""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .design import SPLITS
from .io import atomic_path

__all__ = ["plot_design", "plot_linear_power", "save_figure"]

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green", "holdout": "tab:red"}


def save_figure(fig, path) -> None:
    """Save atomically (a killed job leaves no truncated PNG) and close the figure."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)


def plot_design(table: pd.DataFrame, priors: Mapping[str, Sequence[Mapping]], path) -> None:
    """Lower-triangle pairwise scatter of the design parameters, coloured by split.

    Args:
        table: the design table (columns: split and one per parameter).
        priors: the config's ``priors`` section (names, labels and bounds for the axes).
        path: output image path.
    """
    entries = [p for section in priors.values() for p in section]
    n = len(entries)
    fig, axes = plt.subplots(n, n, figsize=(1.8 * n + 1, 1.8 * n + 1), squeeze=False)
    for (i, pi), (j, pj) in itertools.product(enumerate(entries), repeat=2):
        ax = axes[i, j]
        if j > i:
            ax.set_visible(False)
            continue
        if i == j:
            ax.hist(table[pi["name"]], bins=20, range=(pi["low"], pi["high"]), color="0.6")
            if pi["distribution"] == "loguniform":
                ax.set_xscale("log")
        else:
            for split in SPLITS:
                sel = table["split"] == split
                ax.scatter(table.loc[sel, pj["name"]], table.loc[sel, pi["name"]], s=4,
                           color=SPLIT_COLOURS[split], label=split)
            ax.set_xlim(pj["low"], pj["high"])
            ax.set_ylim(pi["low"], pi["high"])
        if i == n - 1:
            ax.set_xlabel(f"${pj['label']}$")
        else:
            ax.set_xticklabels([])
        if j == 0 and i > 0:
            ax.set_ylabel(f"${pi['label']}$")
        elif j > 0:
            ax.set_yticklabels([])
    handles, labels = axes[min(1, n - 1), 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", markerscale=3, frameon=False)
    fig.suptitle(f"Sobol design: {len(table)} points")
    save_figure(fig, path)


def plot_linear_power(chunk_file, n_plot: int, fiducial: Mapping[str, float], path) -> None:
    """P(k, z=0) of the first ``n_plot`` simulations of a chunk file, and their ratio to the
    fiducial cosmology's Eisenstein & Hu spectrum (colossus)."""
    import h5py

    from .cosmology import Cosmology, eisenstein_hu_power, read_linear_power

    with h5py.File(chunk_file, "r") as f:
        names = sorted(n for n in f if n.startswith("sim_"))[:n_plot]
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fid = Cosmology.from_mapping(fiducial)
    for name in names:
        cosmo, spec = read_linear_power(chunk_file, int(name[4:]))
        z0 = int(np.argmin(np.abs(spec.redshifts)))
        label = rf"$\Omega_m$={cosmo.Omega_m:.3f}, $\sigma_8$={cosmo.sigma_8:.3f}"
        ax.loglog(spec.k_h_mpc, spec.pk_mpc3_h3[z0], lw=1, label=label)
        rax.semilogx(spec.k_h_mpc, spec.pk_mpc3_h3[z0] / eisenstein_hu_power(cosmo, spec.k_h_mpc), lw=1)
    ax.loglog(spec.k_h_mpc, eisenstein_hu_power(fid, spec.k_h_mpc), "k--", lw=1, label="fiducial, Eisenstein & Hu")
    ax.set_ylabel(r"$P_{\rm lin}(k, z=0)$ [$(h^{-1}{\rm Mpc})^3$]")
    ax.legend(fontsize=7)
    rax.axhline(1, color="k", lw=0.5)
    rax.set_ylim(0.8, 1.2)
    rax.set_xlabel(r"$k$ [$h\,{\rm Mpc}^{-1}$]")
    rax.set_ylabel("CAMB / EH98")
    save_figure(fig, path)
