"""Plots of the design stage: the design, pairwise, coloured by split."""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import pandas as pd

from ..design import SPLITS
from . import plt, save_figure

__all__ = ["plot_design"]

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green", "holdout": "tab:red",
                 "npe": "tab:purple", "npe_val": "tab:pink"}


def plot_design(table_csv, priors: Mapping[str, Sequence[Mapping]], path) -> None:
    """Lower-triangle pairwise scatter of the design parameters, coloured by split.

    Args:
        table_csv: the design table (CSV; columns: split and one per parameter).
        priors: the config's ``priors`` section (names, labels and bounds for the axes).
        path: output image path.
    """
    table = pd.read_csv(table_csv)
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
