"""Plots of the scaling-relation mocks and their summaries (mls paper, Figs. 1-3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.ticker
import numpy as np

from ..io import h5_read_attrs
from . import plt, save_figure
from ..scaling import REFLEX2_SCHECHTER, abundance_thresholds, luminosity_function, schechter_dn_dlog10l

__all__ = [
    "plot_summary_products",
    "read_mock_catalogues",
    "plot_luminosity_functions",
    "plot_abundance",
    "plot_power_spectra",
    "plot_field_slices",
]


def read_mock_catalogues(catalog_files: Sequence[str | Path]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """(L_X [h^-2 erg/s], attributes) of every mock in the catalogue files."""
    import h5py

    out = []
    for path in catalog_files:
        with h5py.File(path, "r") as f:
            for name in sorted(n for n in f if n.startswith("mock_")):
                out.append((f[name]["l_x_erg_s"][()], h5_read_attrs(f[name])))
    return out


def _bands(ax, x, curves: np.ndarray, colour: str, label: str) -> None:
    """68% and 95% bands and the median of ``curves`` (n_mocks, n_x)."""
    lo95, lo68, med, hi68, hi95 = np.percentile(curves, [2.3, 16, 50, 84, 97.7], axis=0)
    ax.fill_between(x, lo95, hi95, color=colour, alpha=0.2, lw=0, label=f"{label} 95%")
    ax.fill_between(x, lo68, hi68, color=colour, alpha=0.4, lw=0, label=f"{label} 68%")
    ax.plot(x, med, color=colour, lw=1)


def plot_luminosity_functions(catalog_files, box_mpc_h: float, threshold_erg_s: float, path) -> None:
    """Luminosity functions of every mock (bands) with the REFLEX-II extended Schechter fit."""
    edges = np.logspace(np.log10(threshold_erg_s), 45.0, 13)
    curves = []
    for l_x, _ in read_mock_catalogues(catalog_files):
        centres, dn, _, _ = luminosity_function(l_x, box_mpc_h**3, edges)
        curves.append(dn)
    curves = np.array(curves)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    # zero counts are real (small boxes); on the log axis they simply fall off the bottom
    _bands(ax, centres, curves, "tab:blue", "mocks")
    fine = np.logspace(np.log10(threshold_erg_s), 45.0, 200)
    ax.plot(fine, schechter_dn_dlog10l(fine, REFLEX2_SCHECHTER), "g--", label="REFLEX-II fit (eq. 6)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$L_X$ [$h^{-2}$ erg s$^{-1}$, 0.1-2.4 keV]")
    ax.set_ylabel(r"$dn/d\log_{10}L_X$ [$h^3$ Mpc$^{-3}$]")
    ax.set_title(f"{len(curves)} mocks, box {box_mpc_h:g} Mpc/h")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_abundance(summary_files, thresholds: Mapping[str, float], path) -> None:
    """Cumulative counts above each threshold: 68% and 95% bands over the mocks."""
    import h5py

    counts = []
    for p in summary_files:
        with h5py.File(p, "r") as f:
            counts += [f[n]["abundance"][()] for n in sorted(f) if n.startswith("mock_") and "abundance" in f[n]]
    thr = abundance_thresholds(thresholds["low"], thresholds["high"], thresholds["n"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    _bands(ax, thr, np.array(counts, dtype=float), "tab:purple", "mocks")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$L_{X,\rm th}$ [$h^{-2}$ erg s$^{-1}$]")
    ax.set_ylabel(r"$N(L_X \geq L_{X,\rm th})$")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_power_spectra(summary_files, path) -> None:
    """Cluster P(k) of every mock (bands) and the median shot-noise level 1/n."""
    import h5py

    spectra, shot = [], []
    for p in summary_files:
        with h5py.File(p, "r") as f:
            if "k_h_mpc" not in f:  # every mock of the chunk had an empty catalogue
                continue
            k = f["k_h_mpc"][()]
            for n in sorted(f):
                if n.startswith("mock_") and "power_spectrum" in f[n]:
                    spectra.append(f[n]["power_spectrum"][()])
                    shot.append(f[n].attrs["shot_noise_mpc_h3"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    _bands(ax, k, np.array(spectra), "tab:red", "mocks")
    ax.axhline(np.median(shot), color="k", ls=":", label="median shot noise $1/\\bar n$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide
    ax.set_xlabel(r"$k$ [$h$ Mpc$^{-1}$]")
    ax.set_ylabel(r"$P(k)$ [$(h^{-1}$Mpc$)^3$], shot noise included")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_field_slices(summary_files, path) -> None:
    """A slice (a few cells thick) through each channel of the first non-empty mock's fields."""
    import h5py

    for summary_file in summary_files:
        with h5py.File(summary_file, "r") as f:
            names = sorted(n for n in f if n.startswith("mock_") and "fields" in f[n])
        if names:
            break
    with h5py.File(summary_file, "r") as f:
        name = names[0]
        fields = f[name]["fields"][()]
        channels = h5_read_attrs(f[name])["field_channels"]
    n_ch = len(channels)
    fig, axes = plt.subplots(1, n_ch, figsize=(3.2 * n_ch, 3.4), squeeze=False)
    depth = max(1, fields.shape[-1] // 8)
    for ax, field, channel in zip(axes[0], fields, channels):
        image = field[:, :, :depth].mean(axis=-1)
        ax.imshow(np.log10(2.0 + image).T, origin="lower", cmap="magma")
        ax.set_title(channel, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(rf"{name}: $\log_{{10}}(2 + \delta)$, {depth}-cell slab")
    save_figure(fig, path)


def plot_summary_products(catalog_files, summary_files, box_mpc_h: float, threshold_erg_s: float,
                          thresholds: Mapping[str, float], paths: Mapping[str, str]) -> None:
    """The summaries stage's figures: ``paths`` by role (luminosity, abundance, power, fields)."""
    plot_luminosity_functions(catalog_files, box_mpc_h, threshold_erg_s, paths["luminosity"])
    plot_abundance(summary_files, thresholds, paths["abundance"])
    plot_power_spectra(summary_files, paths["power"])
    plot_field_slices(summary_files, paths["fields"])
