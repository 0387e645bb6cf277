"""Plots of the xod stage: slices of the mean XOD over every simulation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import ChunkFile
from ..xod import XodBins
from . import plt, save_figure

__all__ = ["plot_mean_xod", "plot_xod_slices"]


def plot_xod_slices(xod: np.ndarray, bins, path: str | os.PathLike) -> None:
    """One (log CR, HR) panel per redshift bin of a 3D XOD (n_cr, n_hr, n_z)."""
    n_z = xod.shape[2]
    ncol = min(n_z, 4)
    nrow = int(np.ceil(n_z / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.8 * nrow), squeeze=False)
    vmax = max(xod.max(), 1)
    for k in range(nrow * ncol):
        ax = axes.flat[k]
        if k >= n_z:
            ax.axis("off")
            continue
        ax.pcolormesh(bins.log_cr, bins.hr, xod[:, :, k].T, vmin=0, vmax=vmax, cmap="Blues")
        ax.set_title(f"{bins.z[k]:.2f} < z < {bins.z[k + 1]:.2f}", fontsize=9)
        ax.set_xlabel("log10 CR")
        ax.set_ylabel("HR")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_mean_xod(xod_files: Sequence[str | Path], path: str | Path) -> None:
    """XOD slices (one (log CR, HR) panel per z bin) of the mean XOD over every simulation."""
    total, n, bins = None, 0, None
    for p in xod_files:
        with ChunkFile.open(p) as f:
            bins = XodBins.from_attrs(f.attrs)
            for _, group in f.simulations():
                x = group["xod"][()]
                total = x if total is None else total + x
                n += 1
    if not n:
        raise ValueError(f"no simulations in {len(xod_files)} XOD files")
    plot_xod_slices(total / n, bins, path)
