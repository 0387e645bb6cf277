"""Figures of the workflow, one module per rules file (``workflow/rules/NAME.smk``).

Plots read files (through :mod:`clustersbi.products`) and the physics modules; they never
import :mod:`clustersbi.stages`. Every figure is written by :func:`save_figure`, atomically.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402

__all__ = ["save_figure", "plt"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save ``fig`` to ``path`` atomically (a killed job leaves no truncated image) and close it.

    The format follows the file's extension.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
