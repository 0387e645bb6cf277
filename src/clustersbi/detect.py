"""Source detection on X-ray count-rate maps with sep (Cerardi et al., section 2.3).

Per slab map: sep (Barbary 2016; SExtractor, Bertin & Arnouts 1996) runs on the total-band
map (sum of the bands): background (optional), extraction above a threshold, deblending,
segmentation map. Each source's count rate per band is the sum of the (background-subtracted)
band maps over its segmentation mask; CR = sum over bands, HR = CR[band 1] / CR[band 0]
(CR[1-2] / CR[0.5-1] by default); sources with CR < ``cr_cut_cts_s`` (0.02 c/s) are dropped.
Redshift (``z_mode``): by default continuous, the emission-weighted redshift of the source,
sum(z x rate) / sum(rate) over its segmentation mask, from the per-pixel sums over the cell
layers of the slab along the line of sight that the X-ray maps carry (``z_rate_sum``, and the
noise-free all-band rate when the maps are noisy): exact for the flux-weighted mean z of the
cells in the footprint, as a spectroscopic redshift of the cluster. ``slab`` gives every
source its slab's mid redshift instead (12 values per lightcone: binned in z, some bins
collect two slabs and some one, and which ones changes with Omega_m; a geometric feature no
survey catalogue has).
Sky position: offsets from the field centre in the tangent plane, converted to (RA, Dec)
around ``centre_deg``.

Threshold modes: ``absolute`` (cts/s per pixel above the background; the noise-free maps of
the paper have no noise to scale to) or ``sigma`` (multiples of sep's global background RMS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd

__all__ = ["DetectionConfig", "detect_sources", "detect_lightcone", "band_column", "catalogue_to_h5", "catalogue_from_h5",
           "CATALOGUE_COLUMNS"]

#: Columns of a catalogue (band columns ``CR_<lo>-<hi>`` are added per band).
CATALOGUE_COLUMNS = ("slab", "x_pix", "y_pix", "ra_deg", "dec_deg", "npix", "CR", "HR", "z")


@dataclass(frozen=True)
class DetectionConfig:
    """Detection settings (config section ``detection``).

    The defaults are the config schema's (workflow/schemas/sections/xray.yaml, the one source
    of truth; tests/test_config.py checks they agree).

    Attributes:
        threshold: extraction threshold (see ``threshold_mode``).
        threshold_mode: ``absolute`` [cts/s per pixel] or ``sigma`` (x global background RMS).
        min_area_pix: minimum number of pixels above threshold.
        cr_cut_cts_s: keep sources with total-band CR above this [cts/s].
        deblend_nthresh, deblend_cont: sep deblending (``deblend_cont = 1`` disables it).
        subtract_background: estimate and subtract sep's background (off for noise-free,
            background-free maps as in the paper).
        background_box_pix: background mesh size [pixels].
        filter: convolve with sep's default 3x3 kernel before thresholding.
        z_mode: ``emission_weighted`` (continuous, module docstring) or ``slab`` (slab mid redshift).
        hr_bands: (numerator, denominator) band indices of HR.
    """

    threshold: float = 1e-4
    threshold_mode: Literal["absolute", "sigma"] = "absolute"
    min_area_pix: int = 5
    cr_cut_cts_s: float = 0.02
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005
    subtract_background: bool = False
    background_box_pix: int = 32
    filter: bool = True
    z_mode: Literal["slab", "emission_weighted"] = "emission_weighted"
    hr_bands: tuple[int, int] = (1, 0)


def band_column(band_kev: Sequence[float]) -> str:
    """Name of a band's count-rate column in a catalogue, ``CR_<lo>-<hi>`` [keV], e.g. ``CR_0.5-1``."""
    return f"CR_{band_kev[0]:g}-{band_kev[1]:g}"


def detect_sources(
    band_maps_cts_s: np.ndarray,
    pixel_arcmin: float,
    config: DetectionConfig = DetectionConfig(),
    bands_kev: Sequence[Sequence[float]] = ((0.5, 1.0), (1.0, 2.0)),
    z_slab: float = float("nan"),
    z_rate_sum: np.ndarray | None = None,
    centre_deg: tuple[float, float] = (0.0, 0.0),
    slab: int = 0,
    return_segmentation: bool = False,
    z_weight_cts_s: np.ndarray | None = None,
):
    """Detect sources on one slab's maps and measure CR per band, HR, z and position.

    Args:
        band_maps_cts_s: (n_b, ny, nx) count-rate maps [cts/s per pixel], indexed [y, x].
        pixel_arcmin: pixel size [arcmin].
        config: :class:`DetectionConfig`.
        bands_kev: (n_b, 2) bands, for column names.
        z_slab: the slab's redshift (``z_mode="slab"``).
        z_rate_sum: (ny, nx) per pixel, the sum over the slab's cells of all-band rate x z
            [cts/s] (``z_mode="emission_weighted"``).
        z_weight_cts_s: (ny, nx) the all-band rate that ``z_rate_sum`` is weighted with
            (noise-free); default the sum of ``band_maps_cts_s`` (right for noise-free maps).
        centre_deg: (RA, Dec) of the field centre [deg].
        slab: slab index recorded in the catalogue.
        return_segmentation: also return sep's segmentation map (ny, nx), 0 = no source.

    Returns:
        pandas DataFrame, one row per source above the CR cut (columns
        :data:`CATALOGUE_COLUMNS` + one per band), and the segmentation map if asked.
    """
    import sep

    maps = np.ascontiguousarray(np.asarray(band_maps_cts_s, dtype=np.float64))
    if maps.ndim != 3:
        raise ValueError(f"band_maps_cts_s must be (n_bands, ny, nx), got shape {maps.shape}")
    n_b, ny, nx = maps.shape
    if len(bands_kev) != n_b:
        raise ValueError(f"bands_kev has {len(bands_kev)} bands, maps have {n_b}")
    total = np.ascontiguousarray(maps.sum(axis=0))
    if config.subtract_background:
        bw = min(config.background_box_pix, nx, ny)
        backs = [sep.Background(np.ascontiguousarray(m), bw=bw, bh=bw) for m in maps]
        maps = np.stack([m - b.back() for m, b in zip(maps, backs)])
        bkg_total = sep.Background(total, bw=bw, bh=bw)
        data = np.ascontiguousarray(total - bkg_total.back())
        rms = float(bkg_total.globalrms)
    else:
        data = total
        rms = float("nan")
    if config.threshold_mode == "sigma":
        if not config.subtract_background:
            raise ValueError("detection.threshold_mode 'sigma' needs detection.subtract_background: true")
        err, thresh = rms, config.threshold
    elif config.threshold_mode == "absolute":
        err, thresh = None, config.threshold
    else:
        raise ValueError(f"detection.threshold_mode must be 'absolute' or 'sigma', got {config.threshold_mode!r}")
    kernel = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) if config.filter else None
    objects, segmap = sep.extract(
        data,
        thresh,
        err=err,
        minarea=config.min_area_pix,
        filter_kernel=kernel,
        filter_type="conv",
        deblend_nthresh=config.deblend_nthresh,
        deblend_cont=config.deblend_cont,
        clean=False,
        segmentation_map=True,
    )
    n = len(objects)
    labels = segmap.ravel()
    cr_band = np.stack([np.bincount(labels, weights=m.ravel(), minlength=n + 1)[1:] for m in maps]) if n else np.zeros((n_b, 0))
    npix = np.bincount(labels, minlength=n + 1)[1:] if n else np.zeros(0, int)
    cr = cr_band.sum(axis=0)
    num, den = config.hr_bands
    with np.errstate(divide="ignore", invalid="ignore"):
        hr = cr_band[num] / cr_band[den]
    if config.z_mode == "slab":
        z = np.full(n, z_slab)
    elif config.z_mode == "emission_weighted":
        if z_rate_sum is None:
            raise ValueError("z_mode 'emission_weighted' needs z_rate_sum")
        weight = np.asarray(band_maps_cts_s).sum(axis=0) if z_weight_cts_s is None else np.asarray(z_weight_cts_s)
        if weight.shape != (ny, nx) or np.shape(z_rate_sum) != (ny, nx):
            raise ValueError(f"z_rate_sum {np.shape(z_rate_sum)} and the z weights {weight.shape} must be (ny, nx) = {(ny, nx)}")
        # float64 sums: the stored maps are float32
        all_band = np.bincount(labels, weights=weight.ravel().astype(np.float64), minlength=n + 1)[1:]
        zs = np.bincount(labels, weights=np.asarray(z_rate_sum, dtype=np.float64).ravel(), minlength=n + 1)[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = zs / all_band
    else:
        raise ValueError(f"detection.z_mode must be 'slab' or 'emission_weighted', got {config.z_mode!r}")
    x = np.asarray(objects["x"], float) if n else np.zeros(0)
    y = np.asarray(objects["y"], float) if n else np.zeros(0)
    dx_deg = (x + 0.5 - 0.5 * nx) * pixel_arcmin / 60.0
    dy_deg = (y + 0.5 - 0.5 * ny) * pixel_arcmin / 60.0
    ra0, dec0 = centre_deg
    df = pd.DataFrame(
        {
            "slab": np.full(n, slab, dtype=int),
            "x_pix": x,
            "y_pix": y,
            "ra_deg": ra0 + dx_deg / np.cos(np.deg2rad(dec0)),
            "dec_deg": dec0 + dy_deg,
            "npix": npix.astype(int),
            "CR": cr,
            "HR": hr,
            "z": z,
            **{band_column(b): cr_band[i] for i, b in enumerate(bands_kev)},
        }
    )
    keep = df["CR"] > config.cr_cut_cts_s
    df = df[keep].reset_index(drop=True)
    return (df, segmap) if return_segmentation else df


def detect_lightcone(slab_maps, pixel_arcmin: float, config: DetectionConfig = DetectionConfig(), bands_kev=((0.5, 1.0), (1.0, 2.0)), centre_deg=(0.0, 0.0)) -> pd.DataFrame:
    """Run :func:`detect_sources` on each slab map of a lightcone (:class:`~clustersbi.xray.SlabMap`
    or any object with ``rate_cts_s``, ``z_lo``, ``z_hi``, ``z_rate_sum`` and optionally
    ``z_weight_cts_s``, the noise-free all-band rate of noisy maps); concatenated catalogue."""
    cats = []
    for i, m in enumerate(slab_maps):
        z_mid = 0.5 * (m.z_lo + m.z_hi)
        cats.append(detect_sources(m.rate_cts_s, pixel_arcmin, config, bands_kev, z_mid, m.z_rate_sum, centre_deg, slab=i,
                                   z_weight_cts_s=getattr(m, "z_weight_cts_s", None)))
    return pd.concat(cats, ignore_index=True) if cats else pd.DataFrame(columns=list(CATALOGUE_COLUMNS))


def catalogue_to_h5(group, df: pd.DataFrame) -> None:
    """Store a catalogue in an open h5py group, one dataset per column."""
    for col in df.columns:
        group.create_dataset(col, data=df[col].to_numpy())
    group.attrs["columns"] = list(df.columns)


def catalogue_from_h5(group) -> pd.DataFrame:
    """Inverse of :func:`catalogue_to_h5`."""
    cols = [c.decode() if isinstance(c, bytes) else str(c) for c in group.attrs["columns"]]
    return pd.DataFrame({c: np.asarray(group[c]) for c in cols})
