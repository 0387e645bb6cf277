"""Figures of the analytic stage: the Fisher ellipses (cerardi Fig. 11), the simulated XODs' dN/dz
against the analytic model (cerardi Fig. 7) and the NPE against the exact posterior of test XODs
(corner plots from the corner package: smoothed 2D histograms, 68% and 95% of the mass,
:func:`clustersbi.plots.posterior_corner`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..design import priors_by_name
from ..products import read_exact_posteriors, read_npe_posteriors
from . import plt, posterior_corner, save_figure

__all__ = ["plot_fisher_ellipses", "plot_npe_vs_exact", "plot_simulated_vs_analytic", "DELTA_CHI2_2D"]

#: Delta chi^2 of the 68.3% and 95.4% regions of a 2D Gaussian
DELTA_CHI2_2D = (2.30, 6.18)
_EXACT_COLOR, _NPE_COLOR = "k", "C1"


def _ellipse(ax, centre, cov2, delta_chi2, **kwargs) -> None:
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov2)
    vals = np.clip(vals, 0.0, None)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    w, h = 2.0 * np.sqrt(delta_chi2 * vals[1]), 2.0 * np.sqrt(delta_chi2 * vals[0])
    ax.add_patch(Ellipse(centre, w, h, angle=angle, **kwargs))


def plot_fisher_ellipses(fisher_file: str | os.PathLike, path: str | os.PathLike) -> None:
    """Triangle of the Fisher forecast: 1D Gaussians on the diagonal, 1- and 2-sigma ellipses below.

    Filled: the prior box as Gaussian priors; dashed: no prior (when the matrix is invertible).
    Axis ranges: 3.5 sigma (with the prior) around the Fisher point.
    """
    data = json.loads(Path(fisher_file).read_text())
    names, labels = data["names"], data["labels"]
    point = np.array([data["point"][n] for n in names])
    forecasts = [(data["with_prior"], "C0", "-", "prior box as Gaussian"), (data["no_prior"], "C3", "--", "no prior")]
    forecasts = [(np.asarray(f["covariance"]), c, ls, lab) for f, c, ls, lab in forecasts if f is not None]
    n = len(names)
    fig, axes = plt.subplots(n, n, figsize=(1.9 * n + 1, 1.9 * n + 1), squeeze=False)
    ref = forecasts[0][0] if forecasts else np.diag(np.square(point * 0.1 + 1e-3))
    half = 3.5 * np.sqrt(np.diag(ref))
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                x = np.linspace(point[i] - half[i], point[i] + half[i], 200)
                for cov, color, ls, _ in forecasts:
                    s = np.sqrt(cov[i, i])
                    ax.plot(x, np.exp(-0.5 * ((x - point[i]) / s) ** 2), color=color, ls=ls, lw=1.2)
                ax.set_yticks([])
                ax.set_xlim(x[0], x[-1])
            else:
                for k, (cov, color, ls, _) in enumerate(forecasts):
                    sub = cov[np.ix_([j, i], [j, i])]
                    for d2, alpha in zip(DELTA_CHI2_2D, (0.45, 0.2)):
                        if k == 0:
                            _ellipse(ax, (point[j], point[i]), sub, d2, facecolor=color, alpha=alpha, edgecolor=color)
                        else:
                            _ellipse(ax, (point[j], point[i]), sub, d2, facecolor="none", edgecolor=color, ls=ls, lw=1.0)
                ax.plot(point[j], point[i], "+", color="k", ms=6)
                ax.set_xlim(point[j] - half[j], point[j] + half[j])
                ax.set_ylim(point[i] - half[i], point[i] + half[i])
                if j == 0:
                    ax.set_ylabel(f"${labels[i]}$")
            if i == n - 1:
                ax.set_xlabel(f"${labels[j]}$")
            else:
                ax.set_xticklabels([])
            if j > 0 and i != j:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=7)
            for label in ax.get_xticklabels():
                label.set_rotation(45)
    handles = [plt.Line2D([], [], color=c, ls=ls, label=lab) for _, c, ls, lab in forecasts]
    with_prior = data["with_prior"]
    fom = f", FoM(Omega_m, sigma_8) {with_prior['fom']:.4g} (with prior)" if with_prior else ""
    fig.legend(handles=handles, loc="upper right", fontsize=9, frameon=False,
               title=f"{data['area_deg2']:g} deg$^2$, {data['expected_total']:.0f} clusters{fom}", title_fontsize=8)
    fig.subplots_adjust(hspace=0.08, wspace=0.08)
    save_figure(fig, path, dpi=110)


def _s8_range(om_range: Sequence[float], s8_range: Sequence[float]) -> tuple[float, float]:
    """S8 = sigma_8 (Omega_m / 0.3)^0.5 over the (Omega_m, sigma_8) prior box (monotonic in both)."""
    return (float(s8_range[0] * np.sqrt(om_range[0] / 0.3)), float(s8_range[1] * np.sqrt(om_range[1] / 0.3)))


def plot_npe_vs_exact(exact_file: str | os.PathLike, npe_file: str | os.PathLike, priors: Mapping[str, Sequence[Mapping]],
                      path: str | os.PathLike, n_show: int = 4) -> None:
    """Corner plots of the exact (black) and NPE (orange) posteriors of the first ``n_show`` XODs.

    One corner (corner package: smoothed 68% and 95% contours, smoothed 1D marginals) per XOD
    over Omega_m, sigma_8 and S8 = sigma_8 (Omega_m / 0.3)^0.5, the two posteriors overlaid, the
    truth marked; the axes span the prior box (S8: its range over the box).
    """
    exact = read_exact_posteriors(exact_file)
    npe = read_npe_posteriors(npe_file)
    by_name = priors_by_name(priors)
    names = list(exact["names"])
    om_name = next(n for n in names if n in ("Omega_m", "omega_m"))
    s8_name = "sigma_8"

    def physical(samples: np.ndarray) -> np.ndarray:
        cols = {n: by_name[n].from_inference(samples[..., j]) for j, n in enumerate(names)}
        om, s8 = cols[om_name], cols[s8_name]
        return np.stack([om, s8, s8 * np.sqrt(om / 0.3)], axis=-1)

    om_box = (by_name[om_name].low, by_name[om_name].high)
    s8_box = (by_name[s8_name].low, by_name[s8_name].high)
    ranges = [om_box, s8_box, _s8_range(om_box, s8_box)]
    labels = [f"${by_name[om_name].label}$", f"${by_name[s8_name].label}$", "$S_8$"]
    n_show = min(n_show, len(exact["samples"]))
    truth = physical(exact["theta"])
    fig = plt.figure(figsize=(5.4 * n_show, 5.4))
    subfigs = np.atleast_1d(fig.subfigures(1, n_show))
    for k in range(n_show):
        posterior_corner([physical(exact["samples"][k]), physical(npe["samples"][k])], labels,
                         names=["exact (emcee)", "NPE"], truth=truth[k], ranges=ranges,
                         colors=[_EXACT_COLOR, _NPE_COLOR], fig=subfigs[k],
                         legend_title=f"test XOD {int(exact['index'][k])}")
    save_figure(fig, path, dpi=110)


def plot_simulated_vs_analytic(comparison_file: str | os.PathLike, path: str | os.PathLike) -> None:
    """dN/dz of the simulated XODs against the analytic model, and their ratio (cerardi Fig. 7).

    Top: counts per unit redshift summed over the simulated XODs (blue) and the analytic
    expectation at each XOD's own cosmology (orange), each with its 1-sigma Poisson band (sqrt
    of the counts), and the analytic expectation at the fiducial point for the same area
    (dashed). Bottom: simulated / analytic per z bin with Poisson errors, the ratio of totals.
    """
    data = json.loads(Path(comparison_file).read_text())
    edges = np.asarray(data["z_edges"])
    dz, mid = np.diff(edges), 0.5 * (edges[1:] + edges[:-1])
    sim, ana = np.asarray(data["simulated_per_z"]), np.asarray(data["analytic_per_z"])
    fid = np.asarray(data["fiducial"]["analytic_per_z"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.6, 5.6), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    for counts, color, label in ((sim, "C0", "simulations (LDL)"), (ana, "C1", "analytic, at each XOD's cosmology")):
        top.stairs(counts / dz, edges, color=color, lw=1.6, label=label)
        top.stairs((counts + np.sqrt(counts)) / dz, edges, baseline=(counts - np.sqrt(counts)) / dz, fill=True,
                   color=color, alpha=0.25, lw=0)
    top.stairs(fid / dz, edges, color="C1", ls="--", lw=1.2, label="analytic, fiducial cosmology")
    top.set_ylabel("dN/dz")
    top.set_ylim(bottom=0)
    top.legend(fontsize=8, frameon=False,
               title=f"{data['n_xods']} XODs x {data['area_deg2']:g} deg$^2$, CR > {data['cr_cut_cts_s']:g} c/s",
               title_fontsize=8)
    ratio, err = np.asarray(data["ratio_per_z"], float), np.asarray(data["ratio_error_per_z"], float)
    bottom.errorbar(mid, ratio, yerr=err, xerr=0.5 * dz, fmt="o", color="C0", ms=4, lw=1)
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.axhline(data["ratio_of_totals"], color="C0", ls=":", lw=1,
                   label=f"totals: {data['ratio_of_totals']:.2f} $\\pm$ {data['ratio_of_totals_error']:.2f}")
    bottom.set_xlabel("z")
    bottom.set_ylabel("simulated / analytic")
    bottom.legend(fontsize=8, frameon=False)
    bottom.set_xlim(edges[0], edges[-1])
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
