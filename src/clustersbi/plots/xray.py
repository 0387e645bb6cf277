"""Plots of the xray stage: count-rate maps with detections (cf. Cerardi et al. Fig. 3),
CR-HR and dN/dz of detections. matplotlib with the Agg backend; each function
writes one figure file and returns nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import ChunkFile, sorted_groups
from ..products import read_lightcone_catalogues
from ..xod import XodBins
from . import plt, save_figure

__all__ = ["plot_xray_chunk", "plot_cr_map", "plot_cr_hr_dndz"]


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
    save_figure(fig, path)


def plot_cr_hr_dndz(catalogue: pd.DataFrame, path: str | os.PathLike, z_edges: Sequence[float] = np.linspace(0.1, 0.5, 9)) -> None:
    """CR-HR scatter coloured by z, and dN/dz of the detections."""
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
    save_figure(fig, path)


def plot_xray_chunk(
    map_file: str | Path,
    catalog_files: Sequence[str | Path],
    slab_png: str | Path,
    lightcone_png: str | Path,
    cr_hr_png: str | Path,
    xod_bins: Mapping[str, Any],
) -> None:
    """The X-ray stage's figures (cf. Cerardi et al. Fig. 3).

    ``slab_png``: the count-rate map of the slab with the most detections in the first
    lightcone of the first simulation of ``map_file``, its detections circled;
    ``lightcone_png``: that lightcone's summed map with all its detections circled;
    ``cr_hr_png``: CR-HR and dN/dz (in the XOD's z bins) of the
    detections of every lightcone in ``catalog_files``; ``xod_bins``: config ``xod.bins``.
    """
    with ChunkFile.open(map_file) as f:
        pixel = float(f.h5.attrs["pixel_arcmin"])
        sim = sorted_groups(f.h5, "sim_")[0]
        lc = sorted_groups(f.h5[sim], "lc_")[0]
        g = f.h5[sim][lc]
        rates, summed = g["rate_cts_s"][()], g["summed_cts_s"][()]
        z_lo, z_hi = g["z_lo"][()], g["z_hi"][()]
    catalogues = []
    first = None
    for path in catalog_files:
        for (s, name), cat in read_lightcone_catalogues(path).items():
            catalogues.append(cat)
            if (s, name) == (sim, lc) and Path(path).name == Path(map_file).name:
                first = cat
    if first is None:
        raise ValueError(f"no catalogue of {sim}/{lc} of {map_file} among {len(catalog_files)} catalogue files")
    counts = np.bincount(first["slab"].to_numpy(int), minlength=rates.shape[0]) if len(first) else np.zeros(rates.shape[0], int)
    slab = int(np.argmax(counts))
    plot_cr_map(rates[slab], pixel, slab_png, first[first["slab"] == slab],
                title=f"{sim} {lc} slab {slab}: {z_lo[slab]:.3f} < z < {z_hi[slab]:.3f}, {counts[slab]} detections")
    plot_cr_map(summed, pixel, lightcone_png, first, title=f"{sim} {lc}: all slabs, {len(first)} detections")
    plot_cr_hr_dndz(pd.concat(catalogues, ignore_index=True), cr_hr_png, z_edges=XodBins.from_spec(xod_bins).z)
