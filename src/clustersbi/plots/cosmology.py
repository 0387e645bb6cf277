"""Plots of the cosmology stage: the linear P(k) of the first design points against Eisenstein & Hu."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..cosmology import Cosmology, eisenstein_hu_power
from ..products import read_linear_power
from . import plt, save_figure

__all__ = ["plot_linear_power"]


def plot_linear_power(chunk_file, n_plot: int, fiducial: Mapping[str, float], path) -> None:
    """P(k, z=0) of the first ``n_plot`` simulations of a chunk file, and their ratio to the
    fiducial cosmology's Eisenstein & Hu spectrum (colossus)."""
    import h5py


    with h5py.File(chunk_file, "r") as f:
        names = sorted(n for n in f if n.startswith("sim_"))[:n_plot]
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fid = Cosmology.from_mapping(fiducial)
    for name in names:
        cosmo, spec = read_linear_power(chunk_file, int(name[4:]))
        z0 = int(np.argmin(np.abs(spec.redshifts)))
        label = rf"$\Omega_m$={cosmo.Omega_m:.3f}, $\sigma_8$={cosmo.sigma_8:.3f}"
        ax.loglog(spec.k_h_mpc, spec.pk_mpc3_h3[z0], lw=1, label=label)
        rax.semilogx(spec.k_h_mpc, spec.pk_mpc3_h3[z0] / eisenstein_hu_power(cosmo, spec.k_h_mpc), lw=1)
    ax.loglog(spec.k_h_mpc, eisenstein_hu_power(fid, spec.k_h_mpc), "k--", lw=1, label="fiducial, Eisenstein & Hu")
    ax.set_ylabel(r"$P_{\rm lin}(k, z=0)$ [$(h^{-1}{\rm Mpc})^3$]")
    ax.legend(fontsize=7)
    rax.axhline(1, color="k", lw=0.5)
    rax.set_ylim(0.8, 1.2)
    rax.set_xlabel(r"$k$ [$h\,{\rm Mpc}^{-1}$]")
    rax.set_ylabel("CAMB / EH98")
    save_figure(fig, path)
