"""Plots of the X-ray stage: count-rate maps with detections (cf. Cerardi et al. Fig. 3),
CR-HR and dN/dz of detections, XOD slices. matplotlib with the Agg backend; each function
writes one figure file and returns nothing."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["plot_cr_map", "plot_cr_hr_dndz", "plot_xod_slices"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cr_map(
    rate_cts_s: np.ndarray,
    pixel_arcmin: float,
    path: str | os.PathLike,
    catalogue: pd.DataFrame | None = None,
    title: str = "",
    floor_cts_s: float = 1e-6,
) -> None:
    """Total-band count-rate map [cts/s per pixel] (log scale) with detections circled.

    Args:
        rate_cts_s: (n_b, ny, nx) or (ny, nx) map(s); bands are summed.
        catalogue: detections (columns x_pix, y_pix, npix) to circle, radius sqrt(npix/pi).
    """
    plt = _plt()
    img = np.asarray(rate_cts_s)
    img = img.sum(axis=0) if img.ndim == 3 else img
    side = img.shape[0] * pixel_arcmin / 60.0
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(np.log10(np.maximum(img, floor_cts_s)), origin="lower", cmap="magma", extent=[0, side, 0, side])
    fig.colorbar(im, ax=ax, label="log10 CR [cts/s/pixel]")
    if catalogue is not None and len(catalogue):
        scale = pixel_arcmin / 60.0
        for _, row in catalogue.iterrows():
            r = max(np.sqrt(row["npix"] / np.pi), 1.5) * scale
            ax.add_patch(plt.Circle(((row["x_pix"] + 0.5) * scale, (row["y_pix"] + 0.5) * scale), r, fill=False, color="cyan", lw=0.8))
    ax.set_xlabel("deg")
    ax.set_ylabel("deg")
    ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_cr_hr_dndz(catalogue: pd.DataFrame, path: str | os.PathLike, z_edges: Sequence[float] = np.linspace(0.1, 0.5, 9)) -> None:
    """CR-HR scatter coloured by z, and dN/dz of the detections."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    sc = a.scatter(catalogue["CR"], catalogue["HR"], c=catalogue["z"], s=8, cmap="viridis")
    a.set_xscale("log")
    # plain 1-2-5 labels: the default log labels of a less-than-two-decade axis overlap
    a.xaxis.set_minor_formatter(plt.NullFormatter())
    a.xaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
    a.set_xticks([t * 10.0**e for e in range(-4, 2) for t in (1, 2, 5)])
    if len(catalogue):
        a.set_xlim(0.8 * float(np.min(catalogue["CR"])), 1.25 * float(np.max(catalogue["CR"])))
    a.set_xlabel("CR [0.5-2] keV [cts/s]")
    a.set_ylabel("HR = CR[1-2]/CR[0.5-1]")
    fig.colorbar(sc, ax=a, label="z")
    b.hist(catalogue["z"], bins=np.asarray(z_edges), histtype="step", color="k")
    b.set_xlabel("z")
    b.set_ylabel("detections per bin")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_xod_slices(xod: np.ndarray, bins, path: str | os.PathLike) -> None:
    """One (log CR, HR) panel per redshift bin of a 3D XOD (n_cr, n_hr, n_z)."""
    plt = _plt()
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
