"""Figures of the cluster-images stage: example cutouts, mass residuals (Ho et al. Fig. 4) and
the CNN saliency against radius and around AGN (Ho et al. Fig. 7, eq. 14)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..cutouts import read_cutouts
from . import plt, save_figure

__all__ = ["plot_examples", "plot_residuals", "plot_saliency"]


def plot_examples(cutouts_file: str | os.PathLike, path: str | os.PathLike, n_examples: int = 4) -> None:
    """One row per cluster (view 0 of clusters spread in mass), one column per channel, R500c circle."""
    cut = read_cutouts(cutouts_file)
    first_views = np.flatnonzero(cut.view == cut.view.min())
    order = first_views[np.argsort(cut.M500c[first_views])]
    rows = order[np.linspace(0, len(order) - 1, min(n_examples, len(order))).round().astype(int)]
    channels = cut.channels
    fig, axes = plt.subplots(len(rows), len(channels), figsize=(2.3 * len(channels), 2.3 * len(rows)), squeeze=False)
    half = cut.npix / 2.0
    for i, idx in enumerate(rows):
        extent_mpc = np.array([-half, half, -half, half]) * cut.pixel_kpc_array()[idx] / 1e3
        for j, ch in enumerate(channels):
            ax = axes[i, j]
            img = cut.images[ch][idx].astype(float)
            shown = np.log10(img + 1.0) if ch.startswith("xray_") else np.log10(np.maximum(img, img[img > 0].min() if np.any(img > 0) else 1.0))
            ax.imshow(shown, origin="lower", extent=extent_mpc, cmap="magma")
            r500 = cut.R500c_kpc[idx] / 1e3
            ax.add_patch(plt.Circle((0, 0), r500, fill=False, color="c", lw=0.8))
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                label = {"y": "Compton-y (log)", "mass": "projected mass (log)"}.get(ch, f"{ch[5:]} keV counts (log 1+n)")
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"M500c={cut.M500c[idx]:.2g}\nz={cut.redshift[idx]:.2f}", fontsize=8)
    fig.suptitle(f"{cut.n} cutouts ({cut.source}), {cut.npix}^2 pixels; circle: R500c; axes in physical Mpc", fontsize=9)
    save_figure(fig, path)


def plot_residuals(predictions_csv: str | os.PathLike, table_csv: str | os.PathLike, path: str | os.PathLike) -> None:
    """log10(M_pred / M500c) against M500c per estimator, running median and 16-84% band."""
    import pandas as pd

    pred = pd.read_csv(predictions_csv)
    table = pd.read_csv(table_csv).set_index("model")
    models = list(table.index)
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2), sharey=True, squeeze=False)
    log_m = pred["ln_m500c_true"].to_numpy() / np.log(10.0)
    edges = np.quantile(log_m, np.linspace(0, 1, 9))
    centres = 0.5 * (edges[1:] + edges[:-1])
    for ax, name in zip(axes[0], models):
        eps = (pred[f"ln_m500c_{name}"].to_numpy() / np.log(10.0)) - log_m
        ax.scatter(log_m, eps, s=3, alpha=0.4, color="C0" if name.startswith("CNN") else "C1")
        idx = np.clip(np.digitize(log_m, edges) - 1, 0, len(centres) - 1)
        q = np.array([np.percentile(eps[idx == k], [16, 50, 84]) if np.any(idx == k) else [np.nan] * 3 for k in range(len(centres))])
        ax.fill_between(centres, q[:, 0], q[:, 2], color="k", alpha=0.15)
        ax.plot(centres, q[:, 1], "k-")
        ax.axhline(0.0, color="0.5", lw=0.8)
        row = table.loc[name]
        ax.set_title(f"{name}\nscatter {row.scatter_dex:.3f} dex ({row.scatter_pct:.1f}%), bias {row.bias_dex:+.3f}", fontsize=8)
        ax.set_xlabel(r"$\log_{10} M_{500c}$ [$h^{-1} M_\odot$]")
    axes[0, 0].set_ylabel(r"$\log_{10}(M_{\rm pred}/M_{500c})$")
    save_figure(fig, path)


def plot_saliency(saliency_files: Sequence[str | os.PathLike], path: str | os.PathLike) -> None:
    """Median radial saliency (normalised at R500c) of each CNN and of the N_phot proxy; AGN vs ICM."""
    import h5py

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    proxy_drawn = False
    agn_icm = []
    for k, f in enumerate(saliency_files):
        with h5py.File(f) as h5:
            edges = h5["edges_r500"][...]
            centres = 0.5 * (edges[1:] + edges[:-1])
            model = str(h5.attrs["model"])
            curves = [("CNN " + model, h5["radial"][...], f"C{k}")]
            if not proxy_drawn:
                curves.append(("N_phot proxy", h5["radial_nphot"][...], "k"))
                proxy_drawn = True
            for label, radial, color in curves:
                at_r500 = np.nanmedian(radial[:, np.searchsorted(centres, 1.0) - 1 if np.searchsorted(centres, 1.0) > 0 else 0])
                q = np.nanpercentile(radial / at_r500, [16, 50, 84], axis=0)
                ax.plot(centres, q[1], color=color, label=label)
                ax.fill_between(centres, q[0], q[2], color=color, alpha=0.15)
            agn_icm.append((model, h5["s_agn"][...], h5["s_icm"][...]))
    ax.set_yscale("log")
    ax.set_xlabel(r"$r / R_{500c}$")
    ax.set_ylabel("saliency / median at R500c")
    ax.legend(fontsize=8)
    for k, (model, s_agn, s_icm) in enumerate(agn_icm):
        ok = np.isfinite(s_agn) & np.isfinite(s_icm) & (s_icm > 0) & (s_agn > 0)
        if ok.any():
            ratio = np.log10(s_agn[ok] / s_icm[ok])
            ax2.hist(ratio, bins=30, histtype="step", color=f"C{k}", label=f"CNN {model}: median {np.median(ratio):+.2f}")
    ax2.axvline(0.0, color="0.5", lw=0.8)
    ax2.set_xlabel(r"$\log_{10}(S_{\rm AGN} / S_{\rm ICM})$ per cutout")
    ax2.legend(fontsize=8)
    save_figure(fig, path)
