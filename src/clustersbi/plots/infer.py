"""Figures of the compress and infer stages (matplotlib, Agg backend): data in, file out.

- :func:`plot_predicted_vs_true`: compressor or posterior-mean predictions per parameter
  against the truth, with the 1:1 line (cerardi Fig. 8);
- :func:`plot_corner`: 1D and 2D marginals of the observations' posteriors with their truths
  (smoothed 68% and 95% contours from the corner package, prior box as axis ranges; cerardi
  Figs. 9-10);
- :func:`plot_sbc_ranks`: SBC rank histograms with the 99% band of a uniform histogram
  (cerardi Fig. A.1);
- :func:`plot_tarp`: TARP expected coverage against credibility level;
- :func:`plot_expected_coverage`: coverage of the highest-posterior-density regions against
  credibility level;
- :func:`plot_lc2st`: the local C2ST statistic at each tested observation against its null
  distribution;
- :func:`plot_training_curves`: train and validation losses per epoch;
- :func:`plot_xod_statistics`: FoM and 68% widths per XOD statistic (cerardi Table 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from ..design import priors_by_name
from . import inference_axes, plt, posterior_corner, save_figure

__all__ = [
    "plot_inference_products",
    "plot_predicted_vs_true",
    "plot_corner",
    "plot_sbc_ranks",
    "plot_tarp",
    "plot_expected_coverage",
    "plot_lc2st",
    "plot_training_curves",
    "plot_xod_statistics",
]


def _grid(n: int) -> tuple[int, int]:
    ncol = min(n, 3)
    return int(np.ceil(n / ncol)), ncol


def plot_predicted_vs_true(
    pred: np.ndarray,
    true: np.ndarray,
    param_names: Sequence[str],
    path: str | os.PathLike,
    *,
    pred_err: np.ndarray | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Scatter of pred (N, n_params) against true (N, n_params), one panel per parameter.

    ``pred_err`` (N, n_params) adds error bars; ``metrics`` (name -> {r2, mare, ...}) is printed.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    nr, nc = _grid(len(param_names))
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, 3.4 * nr), squeeze=False)
    for j, name in enumerate(param_names):
        ax = axes.flat[j]
        if pred_err is not None:
            ax.errorbar(true[:, j], pred[:, j], yerr=np.asarray(pred_err)[:, j], fmt=".", ms=2, lw=0.5, alpha=0.5)
        else:
            ax.plot(true[:, j], pred[:, j], ".", ms=2, alpha=0.5)
        lo, hi = float(np.min(true[:, j])), float(np.max(true[:, j]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        if metrics and name in metrics:
            m = metrics[name]
            ax.set_title(f"R$^2$={m.get('r2', np.nan):.3f}  $\\epsilon$={m.get('mare', np.nan):.3f}", fontsize=9)
    for ax in list(axes.flat)[len(param_names):]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)


#: observations overlaid on one corner plot at most (the rest would hide each other)
MAX_OVERLAID = 4


def plot_corner(
    samples: np.ndarray | Sequence[np.ndarray],
    param_names: Sequence[str],
    path: str | os.PathLike,
    *,
    truth: np.ndarray | Sequence[np.ndarray | None] | None = None,
    bins: int = 30,
    labels: Sequence[str] | None = None,
    ranges: Sequence[tuple[float, float]] | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """Corner plot of posterior samples with smoothed 68/95% contours and the truth (corner package).

    Args:
        samples: one posterior (S, n_params), or several ((K, S, n_params) or K arrays), overlaid.
        param_names: parameter names (axis labels unless ``labels``).
        truth: (n_params,) the truth of every posterior, or K truths (or None), one per posterior.
        ranges: axis ranges per parameter (the prior box); default the samples' range.
        names: legend entries of the K posteriors (default ``posterior k`` when K > 1).
    """
    arr = [np.asarray(samples)] if np.ndim(samples[0]) == 1 else [np.asarray(s) for s in samples]
    common, own = None, None
    if truth is not None:
        if len(arr) > 1 and len(truth) == len(arr) and (truth[0] is None or np.ndim(truth[0]) == 1):
            own = [None if t is None else np.asarray(t, float) for t in truth]
        else:
            common = np.asarray(truth, dtype=float)
    if names is None and len(arr) > 1:
        names = [f"posterior {k}" for k in range(len(arr))]
    fig = posterior_corner(arr, list(labels or param_names), names=names, truth=common, truths=own, ranges=ranges, bins=bins)
    save_figure(fig, path)
    return Path(path)


def plot_sbc_ranks(
    ranks: np.ndarray, n_samples: int, param_names: Sequence[str], path: str | os.PathLike, *, n_bins: int = 20
) -> Path:
    """Histograms of SBC ranks (B, n_params) in [0, n_samples], with the uniform 99% band."""
    ranks = np.asarray(ranks)
    b = ranks.shape[0]
    nr, nc = _grid(len(param_names))
    fig, axes = plt.subplots(nr, nc, figsize=(3.6 * nc, 3.0 * nr), squeeze=False)
    edges = np.linspace(0, n_samples + 1, n_bins + 1)
    lo, hi = stats.binom.ppf([0.005, 0.995], b, 1.0 / n_bins)
    for j, name in enumerate(param_names):
        ax = axes.flat[j]
        ax.axhspan(lo, hi, color="0.85")
        ax.axhline(b / n_bins, color="k", ls="--", lw=1)
        ax.hist(ranks[:, j], bins=edges, histtype="step", color="C0")
        ax.set_xlabel(f"rank of {name}")
        ax.set_ylabel("count")
    for ax in list(axes.flat)[len(param_names):]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)


def plot_tarp(ecp: Sequence[float], alpha: Sequence[float], path: str | os.PathLike, *, atc: float | None = None) -> Path:
    """TARP expected coverage probability against credibility level (diagonal = calibrated)."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(np.asarray(alpha), np.asarray(ecp), color="C0")
    ax.set_xlabel("credibility level")
    ax.set_ylabel("expected coverage")
    if atc is not None:
        ax.set_title(f"TARP, ATC = {atc:.3f}", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    save_figure(fig, path)
    return Path(path)


def _disabled(path: str | os.PathLike, what: str) -> Path:
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{what}: disabled in the config", ha="center", va="center")
    save_figure(fig, path)
    return Path(path)


def plot_expected_coverage(coverage: Mapping | None, path: str | os.PathLike) -> Path:
    """Expected coverage of HPD regions (:func:`clustersbi.calibration.expected_coverage`)
    against credibility level, with the binomial 95% band of a calibrated posterior."""
    if coverage is None:
        return _disabled(path, "expected coverage")
    levels, cov = np.asarray(coverage["levels"]), np.asarray(coverage["coverage"])
    n = int(coverage["n_test"])
    lo, hi = stats.binom.ppf([[0.025], [0.975]], n, levels[None, :]) / n
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.fill_between(levels, lo, hi, color="0.85", label="95% band, calibrated")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(levels, cov, color="C1", label="NPE")
    ax.set_xlabel("credibility level of the HPD region")
    ax.set_ylabel("expected coverage")
    ax.set_title(f"{n} test simulations, ATC = {coverage['atc']:.3f}", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)
    return Path(path)


def plot_lc2st(lc2st: Mapping | None, path: str | os.PathLike) -> Path:
    """L-C2ST (:func:`clustersbi.calibration.local_c2st`): per tested observation, the statistic
    (marker) against the statistics of the permutation null (box), with its p-value."""
    if lc2st is None:
        return _disabled(path, "local C2ST")
    stat, nulls, pvals = lc2st["statistic"], lc2st["null_statistics"], lc2st["p_value"]
    labels = lc2st.get("observations", [str(k) for k in range(len(stat))])
    fig, ax = plt.subplots(figsize=(1.4 * len(stat) + 2.5, 3.6))
    pos = np.arange(len(stat))
    ax.boxplot([np.asarray(nv) for nv in nulls], positions=pos, widths=0.5, showfliers=False)
    for k, (t, p, rej) in enumerate(zip(stat, pvals, lc2st["rejected"])):
        ax.plot(k, t, "o", color="C3" if rej else "C2", ms=7)
        ax.annotate(f"p = {p:.2f}", (k, t), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xticks(pos, labels, rotation=20, fontsize=8)
    ax.set_ylabel("L-C2ST statistic")
    ax.set_title(f"L-C2ST: {lc2st['n_cal']} calibration simulations, {lc2st['n_null']} null fits "
                 f"(red: rejected at {lc2st['alpha']:g})", fontsize=9)
    save_figure(fig, path)
    return Path(path)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike, *, title: str = "") -> Path:
    """Train and validation loss per epoch from a history (list of {epoch, train_loss, val_loss})."""
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ep, [h["train_loss"] for h in history], label="train")
    ax.plot(ep, [h["val_loss"] for h in history], label="validation")
    best = int(np.argmin([h["val_loss"] for h in history]))
    ax.axvline(ep[best], color="k", ls=":", lw=1, label="best")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend()
    save_figure(fig, path)
    return Path(path)


def plot_xod_statistics(table_csv: str | os.PathLike, path: str | os.PathLike) -> Path:
    """cerardi Table 3 as a figure: per XOD statistic, the (Omega_m, sigma_8) FoM and the 68%
    half-widths of Omega_m and sigma_8 relative to the prior's (test-split mean; the
    observation's as open markers). Input: the ``compare_xod_statistics`` CSV."""
    import pandas as pd

    table = pd.read_csv(table_csv)
    labels = [f"{s}\n({m})" for s, m in zip(table["statistic"], table["marginal"])]
    x = np.arange(len(table))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].bar(x, table["fom_test_median"], color="C0", label="test median")
    axes[0].plot(x, table["fom_observation"], "ko", mfc="none", label="observation")
    axes[0].set_ylabel(r"FoM $(\Omega_m, \sigma_8)$")
    for offset, (name, color) in zip((-0.2, 0.2), (("Omega_m", "C1"), ("sigma_8", "C2"))):
        axes[1].bar(x + offset, table[f"{name}_sigma68_test_over_prior"], width=0.4, color=color, label=f"{name} (test mean)")
        axes[1].plot(x + offset, table[f"{name}_sigma68_observation"] / table[f"{name}_sigma68_prior"], "ko", mfc="none")
    axes[1].axhline(1.0, color="k", ls="--", lw=1)
    axes[1].set_ylabel("68% half-width / prior's")
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)


def _observations(f) -> tuple[list[np.ndarray], list[np.ndarray | None], list[str]]:
    """The observation posteriors of ``samples.h5``: one ((S, P) samples, (P,) truth) or several
    ((n_obs, S, P), (n_obs, P)), with their descriptions (attribute ``observation``)."""
    obs = f["observation_samples"][()]
    truth = f["observation_theta"][()] if "observation_theta" in f else None
    described = f.attrs.get("observation", "observation")
    if obs.ndim == 2:
        return [obs], [truth], [str(described)]
    n = min(len(obs), MAX_OVERLAID)
    if isinstance(described, (str, bytes)) or np.ndim(described) == 0:
        described = [f"{described} {k}" for k in range(len(obs))]
    truths = [None] * n if truth is None else [np.asarray(t) if np.all(np.isfinite(t)) else None for t in truth[:n]]
    return list(obs[:n]), truths, [str(d.decode() if isinstance(d, bytes) else d) for d in described[:n]]


def plot_inference_products(samples_file, calibration_file, compressor_history, npe_history, paths: Mapping[str, str],
                            priors: Mapping[str, Sequence[Mapping]] | None = None) -> None:
    """Every inference plot of one training set from the evaluate stage's files.

    Args:
        samples_file: ``samples.h5`` (test samples, truths, compressed summaries, observation(s)).
        calibration_file: ``calibration.json`` (SBC ranks, TARP curve).
        compressor_history, npe_history: training histories (CSV).
        paths: output paths keyed ``predicted``, ``corner``, ``ranks``, ``tarp``, ``training``,
            and optionally ``coverage`` and ``lc2st``.
        priors: config ``priors``: the corner plot's axis labels and ranges (the prior box in
            inference coordinates); without it, the parameter names and the samples' range.
    """
    import json

    import h5py
    import pandas as pd

    with h5py.File(samples_file, "r") as f:
        names = [str(n) for n in f.attrs["param_names"]]
        theta, compressed = f["test_theta"][()], f["test_compressed"][()]
        obs, truths, described = _observations(f)
    calibration = json.loads(Path(calibration_file).read_text())
    plot_predicted_vs_true(compressed, theta, names, paths["predicted"])
    labels, ranges = inference_axes(names, priors_by_name(priors)) if priors is not None else (names, None)
    if len(obs) == 1:
        plot_corner(obs[0], names, paths["corner"], truth=truths[0], labels=labels, ranges=ranges, names=described)
    else:
        plot_corner(obs, names, paths["corner"], truth=truths, labels=labels, ranges=ranges, names=described)
    plot_sbc_ranks(np.asarray(calibration["sbc_ranks"]), calibration["n_samples"], names, paths["ranks"])
    plot_tarp(calibration["tarp_ecp"], calibration["tarp_alpha"], paths["tarp"], atc=calibration["tarp_atc"])
    if "coverage" in paths:
        plot_expected_coverage(calibration.get("expected_coverage"), paths["coverage"])
    if "lc2st" in paths:
        plot_lc2st(calibration.get("lc2st"), paths["lc2st"])
    npe = pd.read_csv(npe_history)
    # an ensemble's history has one block of epochs per member
    several = "member" in npe and npe["member"].nunique() > 1
    members = {f" (member {m})": g for m, g in npe.groupby("member")} if several else {"": npe}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, histories, title in ((axes[0], {"": pd.read_csv(compressor_history)}, "compressor"), (axes[1], members, "NPE")):
        for suffix, history in histories.items():
            for key in [k for k in ("train_loss", "val_loss") if k in history]:
                ax.plot(history["epoch"], history[key], label=key.replace("_loss", "") + suffix)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.legend()
    save_figure(fig, paths["training"])
