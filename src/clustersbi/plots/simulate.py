"""Validation plots of the dark-matter simulation stage (matplotlib, Agg backend).

Each function takes arrays (or slab geometry) and writes one image file via
:func:`clustersbi.plots.save_figure` (atomic write):

- :func:`plot_power_spectrum`: P(k) of a run next to CAMB (linear and halofit), with a panel
  for the linear-growth ratio P(a)/P(a_init)/(D/D_init)^2 and one for P(k)/halofit.
- :func:`plot_mass_function`: halo mass function (dn/dlnM) with Poisson error bars vs a model
  (colossus), and the ratio.
- :func:`plot_simulation_validation`: the plots of the first simulation of a halo file that its
  backend has data for (:data:`PLOTS_BY_BACKEND`).
- :func:`plot_density_slice`: projected density of a slab of the box (log10 of 1 + delta).
- :func:`plot_lightcone_slabs`: side view of lightcone slabs in (comoving distance,
  transverse distance) with redshift labels (Cerardi et al., Fig. 4).

Units: k [h/Mpc], P [(Mpc/h)^3], masses [Msun/h], distances [Mpc/h].
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.ticker
import numpy as np

from . import plt, save_figure

__all__ = [
    "PLOTS_BY_BACKEND",
    "HALO_LABELS",
    "plot_simulation_validation",
    "plot_power_spectrum",
    "plot_mass_function",
    "plot_density_slice",
    "plot_lightcone_slabs",
]


def plot_power_spectrum(
    k_h_mpc: np.ndarray,
    pk_sim_mpc3_h3: np.ndarray,
    pk_camb_linear_mpc3_h3: np.ndarray,
    pk_camb_halofit_mpc3_h3: np.ndarray,
    path,
    *,
    growth_ratio: np.ndarray | None = None,
    halofit_ratio: np.ndarray | None = None,
    k_nyquist_h_mpc: float | None = None,
    title: str = "",
) -> None:
    """P(k) of a simulation vs CAMB, with growth and halofit ratio panels.

    Args:
        k_h_mpc: (B,) bin wavenumbers [h/Mpc].
        pk_sim_mpc3_h3: (B,) measured P(k) of the final snapshot [(Mpc/h)^3].
        pk_camb_linear_mpc3_h3: (B,) CAMB linear P(k) at the snapshot redshift.
        pk_camb_halofit_mpc3_h3: (B,) CAMB halofit P(k) at the snapshot redshift.
        path: output image path.
        growth_ratio: (B,) P_final / P_init / (D/D_init)^2 (same seed), or None (panel skipped).
        halofit_ratio: (B,) P_sim / halofit (e.g. cosmic-variance-cancelled), default the raw
            ratio ``pk_sim / pk_camb_halofit``.
        k_nyquist_h_mpc: mesh Nyquist frequency; k_N/2 and k_N are marked when given.
        title: figure title.
    """
    k = np.asarray(k_h_mpc, dtype=float)
    ratio_hf = np.asarray(pk_sim_mpc3_h3) / np.asarray(pk_camb_halofit_mpc3_h3) if halofit_ratio is None else halofit_ratio
    n_rows = 3 if growth_ratio is not None else 2
    fig, axes = plt.subplots(
        n_rows, 1, figsize=(6, 2.2 + 1.8 * n_rows), sharex=True,
        gridspec_kw={"height_ratios": [2] + [1] * (n_rows - 1)},
    )
    ax = axes[0]
    ax.loglog(k, pk_sim_mpc3_h3, "o", ms=3, color="C0", label="simulation")
    ax.loglog(k, pk_camb_halofit_mpc3_h3, "-", color="C1", label="CAMB halofit")
    ax.loglog(k, pk_camb_linear_mpc3_h3, "--", color="0.5", label="CAMB linear")
    ax.set_ylabel(r"$P(k)$ [$(h^{-1}\,\mathrm{Mpc})^3$]")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    panels = [(axes[-1], ratio_hf, r"$P/P_\mathrm{halofit}$")]
    if growth_ratio is not None:
        panels.insert(0, (axes[1], growth_ratio, r"$\frac{P(a)}{P(a_i)}\,\frac{D_i^2}{D^2}$"))
    for ax, ratio, label in panels:
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhspan(0.95, 1.05, color="0.9", zorder=0)
        ax.semilogx(k, ratio, "o-", ms=3, color="C0")
        ax.set_ylabel(label)
        ax.set_ylim(0.8, 1.2)
    for ax in axes:
        if k_nyquist_h_mpc:
            for frac, style in ((0.5, ":"), (1.0, "--")):
                if k.min() < frac * k_nyquist_h_mpc < 2 * k.max():
                    ax.axvline(frac * k_nyquist_h_mpc, color="0.4", ls=style, lw=0.8)
    axes[-1].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[-1].set_xlabel(r"$k$ [$h\,\mathrm{Mpc}^{-1}$]")
    save_figure(fig, path)


def plot_mass_function(
    mass_edges_msun_h: np.ndarray,
    counts: np.ndarray,
    predicted_counts: np.ndarray,
    volume_mpc3_h3: float,
    path,
    *,
    model_label: str = "model",
    halo_label: str = "FoF halos",
    mass_label: str = r"$M_\mathrm{FoF}$",
    particle_mass_msun_h: float | None = None,
    title: str = "",
) -> None:
    """Halo mass function dn/dlnM with Poisson error bars vs a model, and their ratio.

    Args:
        mass_edges_msun_h: (B+1,) mass bin edges [Msun/h], increasing.
        counts: (B,) halos per bin.
        predicted_counts: (B,) model halos per bin (the model's dn/dlnM integrated over the bin
            times the volume).
        volume_mpc3_h3: simulation volume [(Mpc/h)^3].
        path: output image path.
        model_label: legend label of the model (e.g. "Watson13 FoF (colossus)").
        halo_label: legend label of the halos (their finder: "FoF halos", "Pinocchio halos").
        mass_label: the mass axis label (without units).
        particle_mass_msun_h: when given, a top axis shows particles per halo.
        title: figure title.
    """
    edges = np.asarray(mass_edges_msun_h, dtype=float)
    n = np.asarray(counts, dtype=float)
    pred = np.asarray(predicted_counts, dtype=float)
    if edges.shape != (len(n) + 1,) or pred.shape != n.shape:
        raise ValueError(f"mass_edges_msun_h {edges.shape}, counts {n.shape}, predicted_counts {pred.shape} disagree")
    dlnm = np.diff(np.log(edges))
    centre = np.sqrt(edges[1:] * edges[:-1])
    scale = 1.0 / (volume_mpc3_h3 * dlnm)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ok = n > 0
    ax.errorbar(centre[ok], (n * scale)[ok], yerr=(np.sqrt(n) * scale)[ok], fmt="o", ms=4, label=halo_label)
    ax.step(edges, np.append(pred * scale, pred[-1] * scale[-1]), where="post", color="C1", label=model_label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(r"$dn/d\ln M$ [$h^3\,\mathrm{Mpc}^{-3}$]")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    axr.axhline(1.0, color="k", lw=0.8)
    axr.axhspan(0.8, 1.2, color="0.9", zorder=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        axr.errorbar(centre, n / pred, yerr=np.sqrt(pred) / pred, fmt="o", ms=4)
    axr.set_ylim(0.0, 2.0)
    axr.set_ylabel("halos / model")
    axr.set_xlabel(mass_label + r" [$h^{-1}\,M_\odot$]")
    if particle_mass_msun_h:
        top = ax.secondary_xaxis("top", functions=(lambda m: m / particle_mass_msun_h, lambda p: p * particle_mass_msun_h))
        top.set_xlabel("particles per halo")
    save_figure(fig, path)


def plot_density_slice(
    density: np.ndarray,
    box_mpc_h: float,
    path,
    *,
    axis: int = 2,
    thickness_cells: int | None = None,
    title: str = "",
) -> None:
    """Projected density of a slab of a cubic mesh, log10(1 + delta) averaged over the slab.

    Args:
        density: (N, N, N) density in units of the mean.
        box_mpc_h: box side [Mpc/h].
        path: output image path.
        axis: projection axis (0, 1, 2).
        thickness_cells: slab thickness in cells from index 0 (default N // 8, at least 1).
        title: figure title.
    """
    dens = np.asarray(density, dtype=float)
    if dens.ndim != 3:
        raise ValueError(f"density must be 3D, got shape {dens.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    n = dens.shape[axis]
    depth = max(1, n // 8) if thickness_cells is None else int(thickness_cells)
    if not 1 <= depth <= n:
        raise ValueError(f"thickness_cells must be in [1, {n}], got {thickness_cells}")
    proj = np.take(dens, np.arange(depth), axis=axis).mean(axis=axis) / dens.mean()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    image = ax.imshow(
        np.log10(np.maximum(proj, 1e-3)).T, origin="lower", extent=(0, box_mpc_h, 0, box_mpc_h), cmap="magma",
    )
    fig.colorbar(image, ax=ax, label=r"$\log_{10}(1+\delta)$")
    names = [a for a in "xyz" if a != "xyz"[axis]]
    ax.set_xlabel(f"{names[0]} [$h^{{-1}}$ Mpc]")
    ax.set_ylabel(f"{names[1]} [$h^{{-1}}$ Mpc]")
    ax.set_title(title or f"slab of {depth * box_mpc_h / n:.1f} $h^{{-1}}$ Mpc along {'xyz'[axis]}", fontsize=9)
    save_figure(fig, path)


def plot_lightcone_slabs(slabs: Sequence, path, *, fov_deg2: float | None = None, title: str = "") -> None:
    """Side view of lightcone slabs: each slab a box in (comoving distance, transverse distance).

    Args:
        slabs: :class:`clustersbi.simulate.Slab` objects (chi_lo, chi_hi, z_lo, z_hi,
            z_centre, width_mpc_h).
        path: output image path.
        fov_deg2: square field of view [deg^2]; its edges are drawn from the observer.
        title: figure title.
    """
    if len(slabs) == 0:
        raise ValueError("slabs is empty")
    chi_max = max(s.chi_hi for s in slabs)
    half_width = max(s.width_mpc_h for s in slabs) / 2
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for s in slabs:
        colour = f"C{s.index % 10}"
        ax.add_patch(plt.Rectangle((s.chi_lo, -s.width_mpc_h / 2), s.chi_hi - s.chi_lo, s.width_mpc_h,
                                   facecolor=colour, alpha=0.25, edgecolor=colour))
        ax.text(0.5 * (s.chi_lo + s.chi_hi), 0.0, f"z={s.z_centre:.3f}", rotation=90, ha="center", va="center",
                fontsize=7)
    edges = [(slabs[0].chi_lo, slabs[0].z_lo)] + [(s.chi_hi, s.z_hi) for s in slabs]
    for chi, z in edges:
        ax.text(chi, -half_width * 1.08, f"{z:.2f}", ha="center", va="top", fontsize=6)
    if fov_deg2:
        slope = np.tan(0.5 * np.deg2rad(np.sqrt(fov_deg2)))
        for sign in (-1, 1):
            ax.plot([0, chi_max], [0, sign * slope * chi_max], color="k", lw=0.8)
    ax.plot([0], [0], "k*", ms=8)
    ax.set_xlim(-0.02 * chi_max, chi_max * 1.02)
    ax.set_ylim(-half_width * 1.3, half_width * 1.15)
    ax.set_xlabel(r"comoving distance $\chi$ [$h^{-1}$ Mpc] (edge redshifts below)")
    ax.set_ylabel(r"transverse [$h^{-1}$ Mpc]")
    ax.set_title(title or f"{len(slabs)} lightcone slabs", fontsize=9)
    save_figure(fig, path)


#: What each simulation backend stores, and so which validation plots it can have: the halo
#: mass function always; P(k) and a density slice only for particle-mesh runs.
PLOTS_BY_BACKEND = {"jaxpm": ("power", "mass_function", "slice"), "pinocchio": ("mass_function",)}
#: How the halos of each backend are labelled: (legend, mass-axis label).
HALO_LABELS = {
    "jaxpm": ("FoF halos", r"$M_\mathrm{FoF}$"),
    "pinocchio": ("Pinocchio halos", r"$M_\mathrm{Pinocchio}$"),
}


def plot_simulation_validation(halo_file, linear_power_file, paths) -> None:
    """Validation plots of the first simulation of a chunk's halo file, by backend.

    Args:
        halo_file: the chunk's halo file (:mod:`clustersbi.stages.simulate`); its ``backend``
            attribute says what it holds.
        linear_power_file: the chunk's CAMB file (linear P at z = 0 and the cosmology).
        paths: output paths keyed ``mass_function`` (halos vs Watson13 FoF, labelled by
            backend) and, for JaxPM runs only, ``power`` (P(k) vs CAMB linear and halofit with
            the growth-ratio panel) and ``slice`` (:data:`PLOTS_BY_BACKEND`).

    Raises:
        ValueError: a plot the backend has no data for (Pinocchio runs store no P(k) or
            density), or an unknown backend.
    """
    import h5py

    from ..cosmology import camb_power, predicted_halo_counts
    from ..power import nyquist_frequency
    from ..products import read_halo_file, read_linear_power

    index, (halos, attrs) = next(iter(read_halo_file(halo_file).items()))
    backend = str(attrs["backend"])
    if backend not in PLOTS_BY_BACKEND:
        raise ValueError(f"{halo_file}: unknown simulation backend {backend!r}")
    extra = sorted(set(paths) - set(PLOTS_BY_BACKEND[backend]))
    if extra:
        raise ValueError(
            f"{halo_file}: {backend} runs have no data for the plots {extra} (they have {list(PLOTS_BY_BACKEND[backend])})"
        )
    cosmo, _ = read_linear_power(linear_power_file, index)
    box, z, n_mesh = float(attrs["box_mpc_h"]), float(attrs["z"]), int(attrs["n_mesh"])
    title = rf"simulation {index} ({backend}): $\Omega_m$={cosmo.Omega_m:.3f}, $\sigma_8$={cosmo.sigma_8:.3f}, z={z:g}"
    if "power" in paths or "slice" in paths:
        with h5py.File(halo_file, "r") as f:
            g = f[f"sim_{index:06d}"]
            k, pk, ratio, density = (g[n][()] for n in ("pk_k", "pk_final", "growth_ratio", "density_slice"))
    if "power" in paths:
        linear = camb_power(cosmo, [z], k).pk_mpc3_h3[0]
        halofit = camb_power(cosmo, [z], k, nonlinear=True).pk_mpc3_h3[0]
        plot_power_spectrum(k, pk, linear, halofit, paths["power"], growth_ratio=ratio, halofit_ratio=pk / halofit,
                            k_nyquist_h_mpc=nyquist_frequency(n_mesh, box), title=title)
    if "mass_function" in paths:
        mass = halos["mass_msun_h"].to_numpy()
        m_particle = float(attrs["particle_mass_msun_h"])
        edges = np.geomspace(mass.min() if mass.size else 20 * m_particle,
                             1.01 * (mass.max() if mass.size else 1e3 * m_particle), 9)
        counts, _ = np.histogram(mass, edges)
        predicted = predicted_halo_counts(cosmo, edges, z, box**3)
        halo_label, mass_label = HALO_LABELS[backend]
        plot_mass_function(edges, counts, predicted, box**3, paths["mass_function"],
                           model_label="Watson et al. (2013) FoF", halo_label=halo_label, mass_label=mass_label,
                           particle_mass_msun_h=m_particle, title=title)
    if "slice" in paths:
        # the stored slice is already projected; a 3D array of depth one keeps the plotting code shared
        plot_density_slice(density[:, :, None], box, paths["slice"], axis=2, thickness_cells=1, title=title)
