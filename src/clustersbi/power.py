"""FFT power-spectrum estimator for point sets and meshes in a periodic box.

Implements the power-spectrum summary of ``mls-pinocchio-cnn-field-level`` (Sect. 2.3 and
Appendix A): the clusters are assigned to a 64^3 mesh with the piecewise cubic spline (PCS)
kernel, aliasing is reduced by second-order interlacing (Sefusatti et al. 2016, MNRAS 460,
3624), the assignment window is deconvolved, and the power is averaged in linear k bins of width
``dk = 0.33 k_f`` from the fundamental frequency ``k_f = 2 pi / L`` to the Nyquist frequency
``k_N = pi n_mesh / L``. As in the paper the shot noise is *not* subtracted; it is reported.

Estimator. With ``delta_k = sum_x delta(x) exp(-i k.x)`` the discrete Fourier transform of the
overdensity on an ``N^3`` mesh of a box of volume V,

    P(k) = < |delta_k|^2 / W^2(k) > V / N^6,   W(k) = prod_i sinc(k_i H / 2)^p,

averaged over the modes of each |k| bin (sinc(x) = sin x / x, H = L/N, p the kernel order).
With interlacing, ``delta_k = [delta_k^(1) + exp(i k.(H/2)(1,1,1)) delta_k^(2)] / 2`` where mesh
(2) holds the points shifted by +H/2 along each axis; this cancels the aliased images with odd
``n_x + n_y + n_z`` (Sefusatti et al. 2016, eq. 36 and Sect. 3.2).

Mode counting: ``n_modes`` counts every wavevector of the full (not half) Fourier space whose
|k| falls in the bin (k and -k both counted), so for a Gaussian field the variance of the bin
estimate is ``2 P^2 / n_modes``. The k = 0 mode is excluded. ``k`` is the mean |k| of the modes.

Units: lengths h^-1 Mpc, wavenumbers h Mpc^-1, power (h^-1 Mpc)^3.
FFTs use ``scipy.fft`` with ``workers`` threads (about 2-3x faster than numpy's rfftn on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from clustersbi.mesh import assign_to_mesh, assignment_order

__all__ = [
    "PowerSpectrum",
    "fundamental_frequency",
    "nyquist_frequency",
    "linear_k_edges",
    "assignment_window",
    "spherical_average",
    "power_spectrum_from_mesh",
    "power_spectrum",
    "gaussian_random_field",
]


@dataclass(frozen=True)
class PowerSpectrum:
    """A binned power spectrum.

    Attributes:
        k_h_mpc: mean |k| of the modes in each bin, h Mpc^-1, shape (B,) (nan for empty bins).
        pk_mpc_h3: P(k), (h^-1 Mpc)^3, shape (B,), shot noise included (nan for empty bins).
        n_modes: number of Fourier modes per bin (full k-space count), shape (B,), int64.
        k_edges_h_mpc: bin edges, h Mpc^-1, shape (B+1,).
        shot_noise_mpc_h3: Poisson shot noise ``V sum(w^2) / (sum w)^2`` (= 1/n unweighted),
            (h^-1 Mpc)^3; nan when the spectrum was measured on a mesh.
    """

    k_h_mpc: np.ndarray
    pk_mpc_h3: np.ndarray
    n_modes: np.ndarray
    k_edges_h_mpc: np.ndarray
    shot_noise_mpc_h3: float = float("nan")


def fundamental_frequency(box_mpc_h: float) -> float:
    """Fundamental frequency ``k_f = 2 pi / L`` of a box of side L (h^-1 Mpc), in h Mpc^-1."""
    if not box_mpc_h > 0:
        raise ValueError(f"box_mpc_h must be > 0, got {box_mpc_h}")
    return 2.0 * np.pi / box_mpc_h


def nyquist_frequency(n_mesh: int, box_mpc_h: float) -> float:
    """Nyquist frequency ``k_N = pi n_mesh / L`` of a mesh, in h Mpc^-1."""
    if n_mesh < 1:
        raise ValueError(f"n_mesh must be >= 1, got {n_mesh}")
    return np.pi * n_mesh / box_mpc_h


def linear_k_edges(
    box_mpc_h: float,
    n_mesh: int,
    dk_in_kf: float = 0.33,
    k_min_in_kf: float = 1.0,
    k_max_h_mpc: float | None = None,
) -> np.ndarray:
    """Linear k-bin edges of width ``dk_in_kf * k_f`` from ``k_min_in_kf * k_f`` up to k_max.

    Only whole bins are kept: the last upper edge is <= k_max (default: the Nyquist frequency).
    For L = 1500 h^-1 Mpc, n_mesh = 64, dk = 0.33 k_f this gives 93 bins from 4.19e-3 to
    1.31e-1 h Mpc^-1 (the paper quotes 92 bins over the same range).

    Returns:
        edges, h Mpc^-1, shape (B+1,).
    """
    kf = fundamental_frequency(box_mpc_h)
    if not dk_in_kf > 0:
        raise ValueError(f"dk_in_kf must be > 0, got {dk_in_kf}")
    if not k_min_in_kf >= 0:
        raise ValueError(f"k_min_in_kf must be >= 0, got {k_min_in_kf}")
    k_max = nyquist_frequency(n_mesh, box_mpc_h) if k_max_h_mpc is None else float(k_max_h_mpc)
    n_bins = int(np.floor((k_max / kf - k_min_in_kf) / dk_in_kf + 1e-9))
    if n_bins < 1:
        raise ValueError(
            f"no k bin fits between k_min_in_kf={k_min_in_kf} and k_max={k_max:g} h/Mpc with dk_in_kf={dk_in_kf}"
        )
    return kf * (k_min_in_kf + dk_in_kf * np.arange(n_bins + 1))


def _k_axes(n_mesh: int, box_mpc_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Wavenumbers along a full axis (n_mesh,) and along the rfft axis (n_mesh//2+1,), h Mpc^-1."""
    kf = fundamental_frequency(box_mpc_h)
    return kf * np.fft.fftfreq(n_mesh, 1.0 / n_mesh), kf * np.fft.rfftfreq(n_mesh, 1.0 / n_mesh)


def assignment_window(k_h_mpc: np.ndarray, n_mesh: int, box_mpc_h: float, order: int) -> np.ndarray:
    """One-axis Fourier window of the order-p B-spline kernel, ``sinc(k H / 2)^p`` (H = L / n_mesh)."""
    cell = box_mpc_h / n_mesh
    return np.sinc(np.asarray(k_h_mpc) * cell / (2.0 * np.pi)) ** order


@lru_cache(maxsize=4)
def _mode_weights(
    n_mesh: int, box_mpc_h: float, edges: tuple[float, ...], window_order: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-mode bin index and weight on the rfft half-grid (read-only arrays, cached).

    Returns (bin_index, weight, n_modes, k_mean): bin_index (n, n, n//2+1) int32 with B for modes
    outside the bins (and k = 0), weight = multiplicity / W^2 * V / N^6 as float32 (W = 1 when
    window_order is 0), and per-bin mode counts (B,) and mean |k| (B,).
    """
    kx, kz = _k_axes(n_mesh, box_mpc_h)
    kf = fundamental_frequency(box_mpc_h)
    edges_arr = np.asarray(edges)
    n_bins = edges_arr.size - 1
    # |k| in units of k_f from integer frequencies (exact for perfect squares), nudged up by a
    # relative 1e-10 so that a mode lying on an edge goes to the upper bin despite round-off.
    ix = np.fft.fftfreq(n_mesh, 1.0 / n_mesh)
    iz = np.fft.rfftfreq(n_mesh, 1.0 / n_mesh)
    kmag_kf = np.sqrt(ix[:, None, None] ** 2 + ix[None, :, None] ** 2 + iz[None, None, :] ** 2)
    kmag = kf * kmag_kf
    index = np.searchsorted(edges_arr / kf, kmag_kf * (1.0 + 1e-10), side="right") - 1
    index[(index < 0) | (index >= n_bins) | (kmag == 0.0)] = n_bins
    index = index.astype(np.int32)
    multiplicity = np.full(kz.size, 2.0)
    multiplicity[0] = 1.0
    if n_mesh % 2 == 0:
        multiplicity[-1] = 1.0
    weight = np.broadcast_to(multiplicity[None, None, :], kmag.shape).astype(np.float64)
    if window_order > 0:
        wx = assignment_window(kx, n_mesh, box_mpc_h, window_order) ** 2
        wz = assignment_window(kz, n_mesh, box_mpc_h, window_order) ** 2
        n_modes_w = weight.copy()
        weight = weight / (wx[:, None, None] * wx[None, :, None] * wz[None, None, :])
    else:
        n_modes_w = weight
    flat_index = index.ravel()
    n_modes = np.bincount(flat_index, weights=n_modes_w.ravel(), minlength=n_bins + 1)[:n_bins]
    k_sum = np.bincount(flat_index, weights=(n_modes_w * kmag).ravel(), minlength=n_bins + 1)[:n_bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        k_mean = np.where(n_modes > 0, k_sum / n_modes, np.nan)
    volume = box_mpc_h**3
    weight = (weight * (volume / float(n_mesh) ** 6)).astype(np.float32)
    for arr in (flat_index, weight, n_modes, k_mean):
        arr.setflags(write=False)
    return flat_index, weight.ravel(), np.rint(n_modes).astype(np.int64), k_mean


def _edges_tuple(
    box_mpc_h: float, n_mesh: int, k_edges_h_mpc, dk_in_kf: float, k_min_in_kf: float, k_max_h_mpc
) -> tuple[float, ...]:
    if k_edges_h_mpc is None:
        edges = linear_k_edges(box_mpc_h, n_mesh, dk_in_kf, k_min_in_kf, k_max_h_mpc)
    else:
        edges = np.asarray(k_edges_h_mpc, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("k_edges_h_mpc must be a 1-d strictly increasing array of >= 2 edges")
    return tuple(float(e) for e in edges)


def _binned_power(delta_k: np.ndarray, n_mesh: int, box_mpc_h: float, edges: tuple[float, ...], window_order: int):
    """Bin |delta_k|^2 (rfft half-grid, unnormalised DFT) into P(k); returns (k, P, n_modes)."""
    index, weight, n_modes, k_mean = _mode_weights(int(n_mesh), float(box_mpc_h), edges, int(window_order))
    power = np.square(delta_k.real)
    power += np.square(delta_k.imag)
    power = power.ravel()
    power *= weight
    n_bins = len(edges) - 1
    pk_sum = np.bincount(index, weights=power, minlength=n_bins + 1)[:n_bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        pk = np.where(n_modes > 0, pk_sum / n_modes, np.nan)
    return k_mean.copy(), pk, n_modes.copy()


def spherical_average(
    function_of_k: Callable[[np.ndarray], np.ndarray], n_mesh: int, box_mpc_h: float, k_edges_h_mpc: np.ndarray
) -> np.ndarray:
    """Mode-weighted average of ``function_of_k(|k|)`` over the mesh modes of each k bin, shape (B,).

    This is the expectation of a binned power spectrum whose per-mode expectation is
    ``function_of_k`` (e.g. an input P(k)), with the same mode counting as the estimator.
    """
    edges = _edges_tuple(box_mpc_h, n_mesh, k_edges_h_mpc, 1.0, 1.0, None)
    kx, kz = _k_axes(n_mesh, box_mpc_h)
    kmag = np.sqrt(kx[:, None, None] ** 2 + kx[None, :, None] ** 2 + kz[None, None, :] ** 2)
    values = np.zeros_like(kmag)
    nonzero = kmag > 0
    values[nonzero] = function_of_k(kmag[nonzero])
    index, _, n_modes, _ = _mode_weights(int(n_mesh), float(box_mpc_h), edges, 0)
    multiplicity = np.full(kz.size, 2.0)
    multiplicity[0] = 1.0
    if n_mesh % 2 == 0:
        multiplicity[-1] = 1.0
    n_bins = len(edges) - 1
    sums = np.bincount(index, weights=(values * multiplicity[None, None, :]).ravel(), minlength=n_bins + 1)[:n_bins]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_modes > 0, sums / n_modes, np.nan)


def power_spectrum_from_mesh(
    delta: np.ndarray,
    box_mpc_h: float,
    *,
    window_order: int | str | None = None,
    k_edges_h_mpc: np.ndarray | None = None,
    dk_in_kf: float = 0.33,
    k_min_in_kf: float = 1.0,
    k_max_h_mpc: float | None = None,
    workers: int = 2,
) -> PowerSpectrum:
    """Power spectrum of an overdensity mesh (e.g. a dark-matter field of a simulation).

    Args:
        delta: overdensity ``rho/rho_bar - 1`` on a periodic cubic mesh, shape (N, N, N), real.
            (For a density mesh, convert first with :func:`clustersbi.fields.overdensity`.)
        box_mpc_h: box side, h^-1 Mpc.
        window_order: assignment kernel to deconvolve ("ngp", "cic", "tsc", "pcs" or 1-4);
            None for no deconvolution (a field defined on the mesh, e.g. a Gaussian field).
        k_edges_h_mpc: explicit bin edges, h Mpc^-1, shape (B+1,); default linear bins.
        dk_in_kf, k_min_in_kf, k_max_h_mpc: default linear binning (see :func:`linear_k_edges`).
        workers: FFT threads.

    Returns:
        PowerSpectrum (shot_noise_mpc_h3 = nan).
    """
    delta = np.asarray(delta)
    if delta.ndim != 3 or len(set(delta.shape)) != 1:
        raise ValueError(f"delta must be a cubic 3-d mesh, got shape {delta.shape}")
    if np.iscomplexobj(delta):
        raise ValueError("delta must be real")
    n_mesh = delta.shape[0]
    order = 0 if window_order is None else assignment_order(window_order)
    edges = _edges_tuple(box_mpc_h, n_mesh, k_edges_h_mpc, dk_in_kf, k_min_in_kf, k_max_h_mpc)
    if delta.dtype not in (np.float32, np.float64):
        delta = delta.astype(np.float64)
    delta_k = scipy.fft.rfftn(delta, workers=workers)
    k, pk, n_modes = _binned_power(delta_k, n_mesh, box_mpc_h, edges, order)
    return PowerSpectrum(k, pk, n_modes, np.asarray(edges))


def power_spectrum(
    positions_mpc_h: np.ndarray,
    box_mpc_h: float,
    n_mesh: int = 64,
    *,
    scheme: int | str = "pcs",
    interlacing: bool = True,
    weights: np.ndarray | None = None,
    k_edges_h_mpc: np.ndarray | None = None,
    dk_in_kf: float = 0.33,
    k_min_in_kf: float = 1.0,
    k_max_h_mpc: float | None = None,
    workers: int = 2,
    fft_dtype: type = np.float32,
) -> PowerSpectrum:
    """Power spectrum of a (weighted) point set in a periodic box, shot noise not subtracted.

    Assigns the points with the order-p kernel (default PCS), optionally interlaces a second
    mesh shifted by half a cell, deconvolves the window, and bins as described in the module
    docstring (paper Sect. 2.3: 64^3, PCS, second-order interlacing, dk = 0.33 k_f, k_f to k_N).

    Args:
        positions_mpc_h: comoving positions, h^-1 Mpc, shape (N, 3).
        box_mpc_h: box side, h^-1 Mpc.
        n_mesh: cells per side.
        scheme: assignment kernel ("ngp", "cic", "tsc", "pcs" or 1-4).
        interlacing: use second-order interlacing.
        weights: per-point weights, shape (N,) (e.g. L/<L> for a marked spectrum); default 1.
        k_edges_h_mpc, dk_in_kf, k_min_in_kf, k_max_h_mpc: binning (see :func:`linear_k_edges`).
        workers: FFT threads.
        fft_dtype: float32 (default: points assigned by the compiled engine of
            :func:`clustersbi.mesh.assign_to_mesh` and summed in float32, single-precision FFT;
            relative error ~1e-6) or float64 (numpy assignment and FFT in float64).

    Returns:
        PowerSpectrum with ``shot_noise_mpc_h3 = V sum(w^2) / (sum w)^2`` (1/n unweighted).
    """
    pos = np.asarray(positions_mpc_h, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] == 0:
        raise ValueError(f"positions_mpc_h must have shape (N, 3) with N >= 1, got {pos.shape}")
    order = assignment_order(scheme)
    edges = _edges_tuple(box_mpc_h, n_mesh, k_edges_h_mpc, dk_in_kf, k_min_in_kf, k_max_h_mpc)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(pos.shape[0]) if w is None else float(w.sum())
    if not total > 0:
        raise ValueError(f"the sum of the weights must be > 0, got {total}")
    sum_w2 = float(pos.shape[0]) if w is None else float(np.sum(w * w))
    shot_noise = box_mpc_h**3 * sum_w2 / total**2
    mean = total / float(n_mesh) ** 3

    # float32: the compiled assignment (summed in float32, like the FFT); float64: numpy's, in float64
    engine = "jax" if np.dtype(fft_dtype) == np.float32 else "numpy"

    def transformed(shift: float) -> np.ndarray:
        mesh = assign_to_mesh(pos, n_mesh, box_mpc_h, order, w, convention="node", shift_cells=shift, engine=engine)
        mesh *= mesh.dtype.type(1.0 / mean)
        mesh -= 1.0
        return scipy.fft.rfftn(mesh.astype(fft_dtype, copy=False), workers=workers)

    delta_k = transformed(0.0)
    if interlacing:
        kx, kz = _k_axes(n_mesh, box_mpc_h)
        half_cell = 0.5 * box_mpc_h / n_mesh
        phase_x = np.exp(1j * kx * half_cell).astype(delta_k.dtype)
        phase_z = np.exp(1j * kz * half_cell).astype(delta_k.dtype)
        shifted = transformed(0.5)
        shifted *= phase_x[:, None, None]
        shifted *= phase_x[None, :, None]
        shifted *= phase_z[None, None, :]
        delta_k += shifted
        delta_k *= 0.5
    k, pk, n_modes = _binned_power(delta_k, n_mesh, box_mpc_h, edges, order)
    return PowerSpectrum(k, pk, n_modes, np.asarray(edges), float(shot_noise))


def gaussian_random_field(
    n_mesh: int,
    box_mpc_h: float,
    pk_mpc_h3: Callable[[np.ndarray], np.ndarray],
    rng: np.random.Generator | int,
) -> np.ndarray:
    """Gaussian random field on a periodic mesh with a given power spectrum (for tests).

    Colours real-space white noise in Fourier space: ``delta_k = w_k sqrt(P(|k|) N^3 / V)``, so
    that ``<|delta_k|^2> V / N^6 = P(|k|)``; the k = 0 mode is set to 0.

    Args:
        n_mesh: cells per side N.
        box_mpc_h: box side, h^-1 Mpc.
        pk_mpc_h3: callable P(k) with k in h Mpc^-1, returning (h^-1 Mpc)^3 (>= 0).
        rng: numpy Generator or integer seed.

    Returns:
        delta, shape (N, N, N), float64, mean 0.
    """
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    noise = generator.standard_normal((n_mesh, n_mesh, n_mesh))
    noise_k = scipy.fft.rfftn(noise)
    kx, kz = _k_axes(n_mesh, box_mpc_h)
    kmag = np.sqrt(kx[:, None, None] ** 2 + kx[None, :, None] ** 2 + kz[None, None, :] ** 2)
    amplitude = np.zeros_like(kmag)
    nonzero = kmag > 0
    pk = np.asarray(pk_mpc_h3(kmag[nonzero]), dtype=np.float64)
    if np.any(pk < 0) or not np.all(np.isfinite(pk)):
        raise ValueError("pk_mpc_h3 must return finite, non-negative values")
    amplitude[nonzero] = np.sqrt(pk * n_mesh**3 / box_mpc_h**3)
    return scipy.fft.irfftn(noise_k * amplitude, s=(n_mesh,) * 3)
