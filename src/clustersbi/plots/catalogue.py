"""Figures of the catalogue stage: the catalogue encoder's interpretation (Ntampaka et al.
Figs. 9, 11, 15, 16).

:func:`plot_interpretation` writes the four of them from the interpretation's files
(``clusters.h5``, the per-cluster arrays, and ``interpretation.json``):

- ``leave_one_out``: per parameter, the change of its estimate when a cluster is removed
  against the cluster's mass proxy (points and running median), and the CDF of that change for
  the clusters above each mass threshold (Fig. 9);
- ``saliency``: the mean |d terse / d feature| per feature, one line per mass-proxy bin (Fig. 11);
- ``terse``: 2D histograms of the terse value against the true mass (when known), each feature,
  the number of clusters and each parameter, each with its Pearson coefficient (Fig. 15; clusters
  per bin on a logarithmic grey scale);
- ``mass_proxy``: the terse value against log M with the linear fit, and the error PDFs of the
  terse mass proxy and of each feature's, after removing each catalogue's mean offset (Fig. 16);
  without true masses a panel says so.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.colors import LogNorm

from . import plt, save_figure

__all__ = ["read_interpretation", "plot_interpretation", "plot_leave_one_out", "plot_saliency", "plot_terse_correlations", "plot_mass_proxy"]


def _running_median(x: np.ndarray, y: np.ndarray, n_bins: int = 10):
    if x.size < 2:
        return np.zeros(0), np.zeros(0)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.digitize(x, edges[1:-1]), 0, len(edges) - 2)
    centres = [np.median(x[idx == b]) for b in range(len(edges) - 1) if np.any(idx == b)]
    medians = [np.median(y[idx == b]) for b in range(len(edges) - 1) if np.any(idx == b)]
    return np.array(centres), np.array(medians)


def plot_leave_one_out(arrays: Mapping[str, Any], path) -> None:
    # the compressor estimates inference.parameters (all the design's when null)
    params, delta, proxy = arrays.get("estimated_names") or arrays["param_names"], arrays["delta"], arrays["proxy"]
    fig, axes = plt.subplots(2, len(params), figsize=(3.4 * len(params), 6.2), squeeze=False)
    for j, p in enumerate(params):
        ax = axes[0, j]
        if delta.size:
            ax.scatter(proxy, delta[:, j], s=4, alpha=0.4, color="tab:blue", rasterized=True)
            cx, my = _running_median(proxy, delta[:, j])
            ax.plot(cx, my, color="k", lw=1.5, label="running median")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set(xlabel=arrays["proxy_name"], ylabel=f"$\\Delta$ {p} (cluster removed)")
        ax = axes[1, j]
        for thr in arrays["thresholds"]:
            d = np.sort(delta[proxy >= thr, j]) if delta.size else np.zeros(0)
            if d.size:
                ax.step(d, np.arange(1, d.size + 1) / d.size, where="post", label=f"{arrays['proxy_name']} >= {thr:g} ({d.size})")
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set(xlabel=f"$\\Delta$ {p}", ylabel="CDF")
        ax.legend(fontsize=6)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Leave one out: change of the estimate when one cluster is removed")
    fig.tight_layout()
    save_figure(fig, path)


def plot_saliency(arrays: Mapping[str, Any], path) -> None:
    names, binned, edges = arrays["feature_names"], np.asarray(arrays["binned_saliency"]), np.asarray(arrays["edges"])
    used = [i for i, n in enumerate(names) if n not in arrays["supplementary"]]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(used) + 2), 3.8))
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(binned), 1)))
    for b, row in enumerate(binned):
        ax.plot(range(len(used)), row[used], "o-", color=colours[b], label=f"{edges[b]:.2f}-{edges[b + 1]:.2f}")
    ax.set_xticks(range(len(used)), [names[i] for i in used], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=r"mean $|\partial\,\mathrm{terse} / \partial\,\mathrm{feature}|$", title="Encoder saliency per mass-proxy bin")
    ax.legend(title=arrays["proxy_name"], fontsize=7, title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _terse_panels(arrays: Mapping[str, Any]) -> list[tuple[str, np.ndarray]]:
    panels = [("log_mass (true)", arrays["log_mass"])] if arrays["log_mass"] is not None else []
    panels += [(n, arrays["features"][:, i]) for i, n in enumerate(arrays["feature_names"])]
    panels += [("n_clusters", arrays["n_clusters"])]
    panels += [(p, arrays["theta"][:, j]) for j, p in enumerate(arrays["param_names"])]
    return panels


def plot_terse_correlations(arrays: Mapping[str, Any], path) -> None:
    panels = _terse_panels(arrays)
    n_col = min(4, len(panels))
    n_row = -(-len(panels) // n_col)
    fig, axes = plt.subplots(n_row, n_col, figsize=(3.2 * n_col, 2.9 * n_row), squeeze=False)
    terse = arrays["terse"]
    for ax, (name, values) in zip(axes.flat, panels):
        ok = np.isfinite(values) & np.isfinite(terse)
        if ok.sum() > 1 and np.ptp(values[ok]) > 0 and np.ptp(terse[ok]) > 0:
            ax.hist2d(values[ok], terse[ok], bins=30, cmap="Greys", cmin=1, norm=LogNorm())
            rho = np.corrcoef(values[ok], terse[ok])[0, 1]
            ax.set_title(f"rho = {rho:.2f}", fontsize=9)
        ax.set(xlabel=name, ylabel="terse value")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Terse layer: one value per cluster against cluster and catalogue quantities")
    fig.tight_layout()
    save_figure(fig, path)


def plot_mass_proxy(arrays: Mapping[str, Any], summary: Mapping[str, Any], path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    log_mass = arrays["log_mass"]
    if log_mass is None or "terse_mass_proxy" not in summary:
        for ax in axes:
            ax.text(0.5, 0.5, "no true masses: the detections are not matched to halos", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            ax.axis("off")
        save_figure(fig, path)
        return
    fit = summary["terse_mass_proxy"]
    t = arrays["terse"]
    axes[0].hist2d(t, log_mass, bins=30, cmap="Greys", cmin=1, norm=LogNorm())
    grid = np.linspace(t.min(), t.max(), 10)
    axes[0].plot(grid, fit["intercept"] + fit["slope"] * grid, color="tab:purple",
                 label=f"log M = {fit['intercept']:.2f} + {fit['slope']:.3f} terse")
    axes[0].set(xlabel="terse value", ylabel="log10 M (true)")
    axes[0].legend(fontsize=7)
    mock = arrays["mock"]

    def centred_errors(values, f):
        err = f["intercept"] + f["slope"] * values - log_mass
        ok = np.isfinite(err)
        out = err[ok].copy()
        for m in np.unique(mock[ok]):
            sel = mock[ok] == m
            out[sel] -= out[sel].mean()
        return out

    axes[1].hist(centred_errors(t, fit), bins=40, histtype="step", density=True, color="tab:purple", lw=1.5,
                 label=f"terse ({fit['scatter_within_fraction']:.1%})")
    for i, name in enumerate(arrays["feature_names"]):
        f = summary.get("feature_mass_proxies", {}).get(name)
        if f is not None:
            axes[1].hist(centred_errors(arrays["features"][:, i], f), bins=40, histtype="step", density=True,
                         label=f"{name} ({f['scatter_within_fraction']:.1%})")
    axes[1].set(xlabel="log M_predicted - log M_true (catalogue offset removed)", ylabel="PDF")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def read_interpretation(clusters_file, summary_file) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-cluster arrays, summary) of the interpretation files."""
    import json

    import h5py

    from ..io import h5_read_attrs

    with h5py.File(clusters_file, "r") as f:
        arrays: dict[str, Any] = {k: f[k][()] for k in f}
        arrays.update(h5_read_attrs(f))
    arrays.setdefault("log_mass", None)
    for key in ("feature_names", "param_names", "estimated_names", "supplementary"):
        arrays[key] = [str(n) for n in np.atleast_1d(arrays.get(key, []))]
    arrays["thresholds"] = [float(t) for t in np.atleast_1d(arrays.get("thresholds", []))]
    with open(summary_file) as fh:
        return arrays, json.load(fh)


def plot_interpretation(clusters_file, summary_file, paths: Mapping[str, Any]) -> None:
    """The four figures from the interpretation's files; ``paths`` by name: leave_one_out,
    saliency, terse, mass_proxy."""
    arrays, summary = read_interpretation(clusters_file, summary_file)
    plot_leave_one_out(arrays, paths["leave_one_out"])
    plot_saliency(arrays, paths["saliency"])
    plot_terse_correlations(arrays, paths["terse"])
    plot_mass_proxy(arrays, summary, paths["mass_proxy"])
