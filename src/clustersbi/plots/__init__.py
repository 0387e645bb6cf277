"""Figures of the workflow, one module per rules file (``workflow/rules/NAME.smk``).

Plots read files (through :mod:`clustersbi.products`) and the physics modules; they never
import :mod:`clustersbi.stages`. Every figure is written by :func:`save_figure`, atomically.
Posterior corner plots of every stage are drawn by :func:`posterior_corner` (the corner package,
Foreman-Mackey 2016): smoothed 68% and 95% contours, several posteriors overlaid.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..design import Prior  # noqa: E402
from ..io import atomic_path  # noqa: E402

__all__ = ["save_figure", "plt", "posterior_corner", "inference_axes", "CONTOUR_LEVELS"]

#: probability mass inside the 2D contours of :func:`posterior_corner`
CONTOUR_LEVELS = (0.68, 0.95)
#: fewest histogram bins per axis of :func:`posterior_corner`
MIN_BINS = 10


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save ``fig`` to ``path`` atomically (a killed job leaves no truncated image) and close it.

    The format follows the file's extension.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)


def inference_axes(names: Sequence[str], priors: Mapping[str, Prior]) -> tuple[list[str], list[tuple[float, float]]]:
    """Axis labels (LaTeX) and prior ranges of parameters in inference coordinates.

    ``names`` are prior names or their inference names (``ln_A`` for a log-uniform ``A``,
    :func:`clustersbi.design.inference_names`); a log-uniform prior's axis is ln x on
    [ln low, ln high].
    """
    labels, ranges = [], []
    for name in names:
        prior = priors.get(name) or (priors.get(name[3:]) if name.startswith("ln_") else None)
        if prior is None:
            raise ValueError(f"parameter {name!r} has no prior among {sorted(priors)}")
        log = prior.distribution == "loguniform"
        labels.append(f"$\\ln {prior.label}$" if log else f"${prior.label}$")
        ranges.append(prior.inference_bounds)
    return labels, ranges


def _binning_ranges(posteriors: Sequence[np.ndarray], ranges) -> list[tuple[float, float]]:
    """Histogram ranges: the samples' central 99.8% (all posteriors), padded, inside the axis ranges."""
    joined = np.concatenate(posteriors, axis=0)
    lo, hi = np.percentile(joined, [0.1, 99.9], axis=0)
    pad = 0.08 * np.maximum(hi - lo, 1e-12 * np.maximum(np.abs(lo), 1.0))
    lo, hi = lo - pad, hi + pad
    if ranges is not None:
        r = np.asarray(ranges, dtype=float)
        lo, hi = np.maximum(lo, r[:, 0]), np.minimum(hi, r[:, 1])
        hi = np.where(hi > lo, hi, r[:, 1])
        lo = np.where(hi > lo, lo, r[:, 0])
    return [(float(a), float(b)) for a, b in zip(lo, hi)]


def posterior_corner(
    posteriors: Sequence[np.ndarray],
    labels: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    truth: Sequence[float] | None = None,
    truths: Sequence[Sequence[float] | None] | None = None,
    ranges: Sequence[tuple[float, float]] | None = None,
    colors: Sequence[str] | None = None,
    fig=None,
    bins: int = 30,
    smooth: float = 1.0,
    levels: Sequence[float] = CONTOUR_LEVELS,
    legend_title: str | None = None,
):
    """Corner plot of several posteriors' samples overlaid (corner.corner); returns the figure.

    The 2D panels show the contours holding ``levels`` of each posterior's mass (histograms
    Gaussian-smoothed by ``smooth`` bins), the diagonal the smoothed 1D marginals, normalised
    alike so that posteriors of different sample sizes compare. A posterior of S samples gets
    sqrt(S) / 2 bins per axis, at least 10 and at most ``bins`` (a 30 x 30 histogram of 200
    samples is noise). Histograms span the samples' own range; the axes span ``ranges``.

    Args:
        posteriors: K sample arrays (S_k, P), in the units of the axes.
        labels: P axis labels.
        names: K legend entries (no legend without them).
        truth: (P,) one truth of every posterior, in black.
        truths: K truths (P,) or None, each in its posterior's colour (several observations).
        ranges: P axis ranges (the prior box); default the binning ranges.
        colors: K colours; default the matplotlib cycle.
        fig: a figure or subfigure to draw in (empty, or holding P x P axes).
    """
    import corner

    posteriors = [np.asarray(s, dtype=float) for s in posteriors]
    if not posteriors or any(s.ndim != 2 or s.shape[1] != len(labels) for s in posteriors):
        raise ValueError(f"posterior samples must be (S, {len(labels)}) arrays, got {[s.shape for s in posteriors]}")
    n_par = len(labels)
    colors = list(colors) if colors is not None else [f"C{k % 10}" for k in range(len(posteriors))]
    bin_ranges = _binning_ranges(posteriors, ranges)
    axis_ranges = [tuple(map(float, r)) for r in ranges] if ranges is not None else bin_ranges
    if fig is None:
        size = 2.0 * n_par + 1.0
        fig = plt.figure(figsize=(size, size))
    diag_max = np.zeros(n_par)
    for k, s in enumerate(posteriors):
        own = truths[k] if truths is not None else None
        n_bins = int(np.clip(round(np.sqrt(len(s)) / 2), MIN_BINS, max(bins, MIN_BINS)))
        # weights n_bins / S: every posterior's 1D marginal in the same units (density x axis range)
        corner.corner(
            s, bins=n_bins, range=bin_ranges, weights=np.full(len(s), n_bins / len(s)), color=colors[k], smooth=smooth,
            smooth1d=smooth, levels=tuple(levels), labels=list(labels), truths=None if own is None else list(own),
            truth_color=colors[k], plot_datapoints=False, plot_density=False, fill_contours=False, no_fill_contours=True,
            contour_kwargs={"linewidths": 1.2}, hist_kwargs={"lw": 1.2}, max_n_ticks=4, fig=fig,
        )
        axes = np.array(fig.axes).reshape(n_par, n_par)
        diag_max = np.maximum(diag_max, [axes[i, i].get_ylim()[1] for i in range(n_par)])
    axes = np.array(fig.axes).reshape(n_par, n_par)
    if truth is not None:
        corner.overplot_lines(fig, list(truth), color="k", lw=1.0, ls="--")
        corner.overplot_points(fig, [list(truth)], marker="*", color="k", ms=8)
    for i in range(n_par):
        axes[i, i].set_ylim(0.0, diag_max[i])
        axes[i, i].set_xlim(*axis_ranges[i])
        for j in range(i):
            axes[i, j].set_xlim(*axis_ranges[j])
            axes[i, j].set_ylim(*axis_ranges[i])
    if names is not None:
        handles = [plt.Line2D([], [], color=c, lw=1.5, label=n) for c, n in zip(colors, names)]
        if truth is not None:
            handles.append(plt.Line2D([], [], color="k", ls="--", marker="*", label="truth"))
        elif truths is not None:
            handles.append(plt.Line2D([], [], color="0.4", marker="s", ms=4, label="truths (colour of each)"))
        fig.legend(handles=handles, loc="upper right", frameon=False, fontsize=9, title=legend_title, title_fontsize=9)
    return fig
