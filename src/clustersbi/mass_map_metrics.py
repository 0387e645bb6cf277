"""Fidelity metrics of predicted projected-mass maps (de Andres et al., ``deandres-unet-mass-maps.txt``,
section 4): pixel-wise relative differences in apertures, cylindrical mass-profile bias,
ratio of map power spectra and the maximum mean discrepancy of the pixel distributions.

Maps are (N, H, W) arrays of mass per pixel (any unit, the same for predicted and true maps;
the cutout format's ``mass`` is Msun/h per pixel), centred on the cluster: the centre is the
map's middle, ((H - 1) / 2, (W - 1) / 2) in pixel-index coordinates, unless given. Radii are
in pixels (R / pixel scale).

- Pixel-wise (paper Eq. 7): D = (pred - true) / true for the pixels whose centres lie inside an
  aperture (whole map, R500, R500/2); pixels with true = 0 are dropped unless pred = true (D = 0).
  Summaries (Eq. 8): median, +|p84 - median|, -|median - p16|.
- Cylindrical profiles (Eqs. 9-10): M(<rho) = the mass of the map inside a circle of radius
  rho (pixels weighted by the fraction of their area inside the circle, from a sub-pixel grid;
  the paper sums whole pixels), for rho = R200 / 10, 2 R200 / 10, ..., R200 (the paper's "ten
  equally-spaced circular regions"), and the bias b(rho) = (M_pred - M_true) / M_true; in
  three bins of M200 (the paper's tertiles of its sample, Fig. 1).
- Power spectrum (Eqs. 11-13): P(k) = <|FFT(map)_k|^2> / (H W) averaged over the modes of the
  ring |k| in [b - 1/2, b + 1/2), b = 1, 2, ... in cycles per map side (k = 2 pi b / L); with this
  normalisation white noise of variance s^2 per pixel has P = s^2. Ratios P_pred / P_true are
  per map (the paper's Fig. 8 shows (P_pred - P_true) / P_true, the same ratio minus one).
- MMD (Eq. 14, Gretton et al. 2008): the unbiased estimate of MMD^2 between the pixel values of
  the true map (x_i) and of the predicted map (y_j), both divided by the true map's maximum, with
  the kernel K(x, y) = sum_s exp(-(x - y)^2 / (2 s^2)) over the bandwidths s (a sum of
  Gaussian kernels is a kernel; the paper's Eq. 15 writes |x - y| where the Gaussian kernel has
  the square, and "a range of values of sigma"). Calibration (Eq. 16): the MMD between the true
  map and the true map plus Gaussian noise of standard deviation alpha max(true).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "map_centre",
    "aperture_fraction",
    "pixel_relative_differences",
    "percentile_summary",
    "cylinder_mass",
    "profile_radii",
    "profile_bias",
    "mass_bin_edges",
    "assign_mass_bins",
    "power_spectrum_2d",
    "power_ratio",
    "mmd2",
    "map_mmd2",
    "noise_calibration_mmd2",
    "PROFILE_FRACTIONS",
]

#: rho / R200 of the cylindrical profiles (paper sect. 4.2)
PROFILE_FRACTIONS = np.arange(1, 11) / 10.0


def map_centre(shape: Sequence[int]) -> tuple[float, float]:
    """The middle of an (H, W) map in pixel-index coordinates: ((H - 1) / 2, (W - 1) / 2)."""
    return ((shape[-2] - 1) / 2.0, (shape[-1] - 1) / 2.0)


def _radius_grid(shape: Sequence[int], centre: tuple[float, float] | None, supersample: int = 1) -> np.ndarray:
    """Distance [pixels] of each (sub-)pixel centre from ``centre``: (H, W) or (H, W, s*s)."""
    cy, cx = map_centre(shape) if centre is None else centre
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    yy = np.arange(shape[-2])[:, None, None, None] + offs[None, None, :, None]
    xx = np.arange(shape[-1])[None, :, None, None] + offs[None, None, None, :]
    r = np.hypot(yy - cy, xx - cx).reshape(shape[-2], shape[-1], supersample * supersample)
    return r[..., 0] if supersample == 1 else r


def aperture_fraction(shape: Sequence[int], radius_pix: float, centre: tuple[float, float] | None = None,
                      supersample: int = 8) -> np.ndarray:
    """Fraction (H, W) of each pixel's area inside the circle of ``radius_pix`` about ``centre``,
    estimated on a ``supersample`` x ``supersample`` sub-pixel grid."""
    r = _radius_grid(shape, centre, supersample)
    return (r < radius_pix).mean(axis=-1) if supersample > 1 else (r < radius_pix).astype(float)


def pixel_relative_differences(pred: np.ndarray, true: np.ndarray, radius_pix: np.ndarray | float | None = None,
                               centre: tuple[float, float] | None = None) -> np.ndarray:
    """Flattened D = (pred - true) / true of the pixels inside an aperture (paper Eq. 7).

    Args:
        pred, true: (N, H, W) maps.
        radius_pix: aperture radius per map (N,) or one value [pixels]; None: the whole map.
        centre: aperture centre; None: the map's middle.

    Returns:
        (n_pixels,) D of every map's pixels whose centre is inside its aperture, true = 0 pixels
        dropped unless pred = true there (then D = 0).
    """
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(f"pred and true must be (N, H, W) of one shape, got {pred.shape} and {true.shape}")
    if radius_pix is None:
        inside = np.ones(true.shape, dtype=bool)
    else:
        r = _radius_grid(true.shape, centre)
        radius = np.broadcast_to(np.asarray(radius_pix, dtype=float), (true.shape[0],))
        inside = r[None] < radius[:, None, None]
    zero = true == 0
    keep = inside & (~zero | (pred == true))
    d = np.zeros(true.shape)
    np.divide(pred - true, true, out=d, where=~zero)
    return d[keep]


def percentile_summary(values: np.ndarray) -> dict[str, float]:
    """Paper Eq. 8: ``median``, ``plus`` = |p84 - median|, ``minus`` = |median - p16|, and ``n``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": float("nan"), "plus": float("nan"), "minus": float("nan"), "n": 0}
    p16, p50, p84 = np.percentile(v, [16, 50, 84])
    return {"median": float(p50), "plus": float(abs(p84 - p50)), "minus": float(abs(p50 - p16)), "n": int(v.size)}


def cylinder_mass(maps: np.ndarray, radius_pix: np.ndarray, centre: tuple[float, float] | None = None,
                  supersample: int = 8) -> np.ndarray:
    """Mass inside circles (paper Eq. 9) of maps of mass per pixel.

    Args:
        maps: (N, H, W) mass per pixel.
        radius_pix: (N, R) radii per map [pixels] (or (R,) for all maps).
        centre: circle centre; None: the map's middle.
        supersample: sub-pixels per side for the area fraction of edge pixels.

    Returns:
        (N, R) sum of pixel mass x fraction of pixel area inside each circle.
    """
    maps = np.asarray(maps, dtype=np.float64)
    radius = np.broadcast_to(np.asarray(radius_pix, dtype=float), (maps.shape[0], np.shape(radius_pix)[-1]))
    sub = _radius_grid(maps.shape, centre, supersample)  # (H, W, s^2)
    out = np.empty(radius.shape)
    for i in range(maps.shape[0]):
        # fraction of each pixel inside each radius: (R, H, W)
        frac = (sub[None] < radius[i][:, None, None, None]).mean(axis=-1)
        out[i] = np.tensordot(frac, maps[i], axes=([1, 2], [0, 1]))
    return out


def profile_radii(r200_pix: np.ndarray, fractions: Sequence[float] = PROFILE_FRACTIONS) -> np.ndarray:
    """(N, R) radii rho = fraction x R200 [pixels] of the cylindrical profiles."""
    return np.asarray(r200_pix, dtype=float)[:, None] * np.asarray(fractions, dtype=float)[None, :]


def profile_bias(pred: np.ndarray, true: np.ndarray, r200_pix: np.ndarray,
                 fractions: Sequence[float] = PROFILE_FRACTIONS, centre: tuple[float, float] | None = None) -> np.ndarray:
    """(N, R) mass-profile bias b(rho) = (M_pred(<rho) - M_true(<rho)) / M_true(<rho) (paper Eq. 10)."""
    radii = profile_radii(r200_pix, fractions)
    m_true = cylinder_mass(true, radii, centre)
    m_pred = cylinder_mass(pred, radii, centre)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m_true > 0, (m_pred - m_true) / m_true, np.nan)


def mass_bin_edges(log10_mass: np.ndarray, edges: Sequence[float] | None = None, n_bins: int = 3) -> np.ndarray:
    """Edges of the mass bins: the given ``edges``, or quantiles giving ``n_bins`` bins of equal
    counts (the paper's three intervals of its sample, Fig. 1), from min to max."""
    if edges is not None:
        e = np.asarray(edges, dtype=float)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
            raise ValueError(f"mass bin edges must increase, got {list(edges)}")
        return e
    return np.quantile(np.asarray(log10_mass, dtype=float), np.linspace(0.0, 1.0, n_bins + 1))


def assign_mass_bins(log10_mass: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index (N,) of each mass in [edges[b], edges[b+1]) (the top edge included); -1 outside."""
    m = np.asarray(log10_mass, dtype=float)
    b = np.searchsorted(edges, m, side="right") - 1
    b = np.where(m == edges[-1], len(edges) - 2, b)
    return np.where((b < 0) | (b > len(edges) - 2), -1, b)


def power_spectrum_2d(maps: np.ndarray, k_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power spectra of square maps (paper Eqs. 11-12).

    Args:
        maps: (N, n, n) maps (or one (n, n) map).
        k_max: largest ring [cycles per map side]; None: n // 2 (the last complete ring).

    Returns:
        (k, P): k (K,) ring centres 1, 2, ..., k_max [cycles per map side; physical
        wavenumber 2 pi k / L, wavelength L / k for a map of side L]; P (N, K) the mean of
        |FFT|^2 / n^2 over the modes with |k| in [k - 1/2, k + 1/2).
    """
    maps = np.asarray(maps, dtype=np.float64)
    single = maps.ndim == 2
    maps = maps[None] if single else maps
    n = maps.shape[-1]
    if maps.shape[-2] != n:
        raise ValueError(f"power spectra need square maps, got {maps.shape[-2:]}")
    k_max = n // 2 if k_max is None else int(k_max)
    freq = np.fft.fftfreq(n) * n
    kk = np.hypot(freq[:, None], freq[None, :])
    ring = np.floor(kk + 0.5).astype(int).ravel()
    power = (np.abs(np.fft.fft2(maps)) ** 2 / n**2).reshape(maps.shape[0], -1)
    counts = np.bincount(ring, minlength=k_max + 1)[1 : k_max + 1]
    sums = np.stack([np.bincount(ring, weights=p, minlength=k_max + 1)[1 : k_max + 1] for p in power])
    spectra = sums / counts[None, :]
    return np.arange(1, k_max + 1), (spectra[0] if single else spectra)


def power_ratio(pred: np.ndarray, true: np.ndarray, k_max: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(k, P_pred / P_true) per map (N, K) (:func:`power_spectrum_2d`)."""
    k, p_pred = power_spectrum_2d(pred, k_max)
    _, p_true = power_spectrum_2d(true, k_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        return k, np.where(p_true > 0, p_pred / p_true, np.nan)


def mmd2(x: np.ndarray, y: np.ndarray, bandwidths: Sequence[float]) -> float:
    """Unbiased MMD^2 between samples x (m,) or (m, d) and y (n,) or (n, d) (paper Eq. 14).

    Kernel K(a, b) = sum over ``bandwidths`` s of exp(-|a - b|^2 / (2 s^2)):
    MMD^2 = sum_{i != j} K(x_i, x_j) / (m (m - 1)) + sum_{i != j} K(y_i, y_j) / (n (n - 1))
    - 2 sum_{i, j} K(x_i, y_j) / (m n).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs >= 2 samples on each side, got {m} and {n}")
    s2 = np.square(np.asarray(bandwidths, dtype=np.float64))
    if s2.size == 0 or np.any(s2 <= 0):
        raise ValueError(f"MMD bandwidths must be positive, got {list(bandwidths)}")

    def ksum(a, b, same):
        d2 = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
        k = sum(np.exp(-d2 / (2.0 * v)) for v in s2)
        if same:
            return (k.sum() - np.trace(k)) / (a.shape[0] * (a.shape[0] - 1))
        return k.mean()

    return float(ksum(x, x, True) + ksum(y, y, True) - 2.0 * ksum(x, y, False))


def _normalised_pixels(maps: np.ndarray, scale: np.ndarray, pick: np.ndarray) -> np.ndarray:
    flat = np.asarray(maps, dtype=np.float64).reshape(maps.shape[0], -1)
    return flat[:, pick] / scale[:, None]


def _pixel_pick(n_total: int, n_pixels: int | None, seed: int) -> np.ndarray:
    if n_pixels is None or n_pixels >= n_total:
        return np.arange(n_total)
    return np.random.default_rng(seed).choice(n_total, size=int(n_pixels), replace=False)


def map_mmd2(pred: np.ndarray, true: np.ndarray, bandwidths: Sequence[float], n_pixels: int | None = 512,
             seed: int = 0) -> np.ndarray:
    """(N,) MMD^2 between the pixel values of each true map and its predicted map, both divided
    by the true map's maximum; ``n_pixels`` pixel positions drawn once (``seed``) and used for
    every map (None: all pixels)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or true.ndim != 3:
        raise ValueError(f"pred and true must be (N, H, W) of one shape, got {pred.shape} and {true.shape}")
    scale = true.reshape(true.shape[0], -1).max(axis=1).astype(np.float64)
    scale = np.where(scale > 0, scale, 1.0)
    pick = _pixel_pick(true[0].size, n_pixels, seed)
    xs, ys = _normalised_pixels(true, scale, pick), _normalised_pixels(pred, scale, pick)
    return np.array([mmd2(a, b, bandwidths) for a, b in zip(xs, ys)])


def noise_calibration_mmd2(true: np.ndarray, alphas: Sequence[float], bandwidths: Sequence[float],
                           n_pixels: int | None = 512, seed: int = 0) -> np.ndarray:
    """(N, A) MMD^2 of each true map against itself plus Gaussian noise of standard deviation
    alpha x max(map) (paper Eq. 16), for each alpha; the noise drawn with ``seed``."""
    true = np.asarray(true, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    peak = true.reshape(true.shape[0], -1).max(axis=1)
    out = np.empty((true.shape[0], len(alphas)))
    for a, alpha in enumerate(alphas):
        noisy = true + rng.standard_normal(true.shape) * (alpha * peak)[:, None, None]
        out[:, a] = map_mmd2(noisy, true, bandwidths, n_pixels, seed)
    return out
