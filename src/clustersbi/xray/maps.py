"""Lightcone count-rate maps: paint per-voxel X-ray count rates and project them on the sky.

Geometry (Cerardi et al., section 2.3): a lightcone is a stack of slabs (periodic boxes) along
the line of sight; a slab covers comoving distances [chi_lo, chi_hi] (Mpc/h) and a transverse
width W (Mpc/h), with the line of sight through the middle of its transverse face. Each slab's
grid is cut into layers of constant chi; a layer's cells lie in a plane at distance chi, so a
cell at transverse offset x is seen at angle atan(x / chi) (gnomonic projection, exact for
the plane; the distance to off-axis cells, sqrt(chi^2 + x^2), is taken as chi: < 0.1% at
1.6 deg, 0.15% at 2.2 deg). Its redshift is z(chi) (Omega_m flat LCDM).

Voxel count rate per band b (see :mod:`clustersbi.xray.emission`):

    CR_b = EM r_b(T, z) / (4 pi D_M^2),  EM = n_e n_H V = n_e,com^2 (1+z)^3 V_com / (n_e/n_H)

for comoving densities n_e,com (physical n_e = n_e,com (1+z)^3, physical V = V_com/(1+z)^3),
D_M = chi (flat), n_e/n_H the chain's gas composition (:data:`clustersbi.constants.NE_OVER_NH`,
1.158). Projection: each cell's square footprint is split among the pixels it overlaps, in
proportion to the overlapping area (separable per axis, so a layer maps to the sky as
``Wy^T R^T Wx`` with small overlap matrices). Flux is conserved exactly for the part of
a cell inside the field. If the field at a layer is wider than the box, the box is tiled
periodically (``periodic=True``).

Maps are indexed [y, x] (row = y), pixel (0, 0) at the lower-left corner of the field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

from scipy import sparse

from ..constants import MPC_CM, NE_OVER_NH

from ..cosmology import redshift_at_comoving_distance
from .emission import K_B_KEV_PER_K, EmissionTable

__all__ = [
    "SkyGrid",
    "make_sky_grid",
    "periodic_images",
    "overlap_matrix",
    "voxel_count_rates",
    "SlabMap",
    "paint_slab",
    "paint_lightcone",
    "observe",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SkyGrid:
    """A square field of n_pix x n_pix pixels centred on the line of sight.

    Attributes:
        n_pix: pixels per side.
        pixel_arcmin: pixel size [arcmin].
        edges_rad: (n_pix + 1,) pixel edges [rad] along each axis, centred on 0.
    """

    n_pix: int
    pixel_arcmin: float

    @property
    def edges_rad(self) -> np.ndarray:
        pix = np.deg2rad(self.pixel_arcmin / 60.0)
        return (np.arange(self.n_pix + 1) - 0.5 * self.n_pix) * pix

    @property
    def side_deg(self) -> float:
        return self.n_pix * self.pixel_arcmin / 60.0

    def pixel_to_deg(self, pix: np.ndarray) -> np.ndarray:
        """Offset [deg] from the field centre of a (fractional) pixel coordinate (0 = first centre)."""
        return (np.asarray(pix, dtype=float) + 0.5 - 0.5 * self.n_pix) * self.pixel_arcmin / 60.0


def make_sky_grid(fov_deg2: float, pixel_arcmin: float = 1.0) -> SkyGrid:
    """Square field of area ~``fov_deg2`` (side rounded to whole pixels)."""
    if fov_deg2 <= 0 or pixel_arcmin <= 0:
        raise ValueError(f"fov_deg2 and pixel_arcmin must be positive, got {fov_deg2}, {pixel_arcmin}")
    n = int(round(np.sqrt(fov_deg2) * 60.0 / pixel_arcmin))
    return SkyGrid(n_pix=max(n, 1), pixel_arcmin=pixel_arcmin)


def periodic_images(width_mpc_h: float, reach_mpc_h: float) -> int:
    """Periodic images per side of a box of width ``width_mpc_h`` [Mpc/h] that a field reaching
    ``reach_mpc_h`` from the axis overlaps (the images :func:`overlap_matrix` adds)."""
    return int(np.ceil(reach_mpc_h / width_mpc_h + 0.5))


def overlap_matrix(n_cells: int, width_mpc_h: float, pix_edges_mpc_h: np.ndarray, periodic: bool = True) -> np.ndarray:
    """Fraction of each cell (centred box, periodic images if asked) inside each pixel.

    Args:
        n_cells: cells along the axis; cell i spans [-W/2 + i d, -W/2 + (i+1) d], d = W/n.
        width_mpc_h: box width W [Mpc/h].
        pix_edges_mpc_h: (n_pix + 1,) increasing pixel edges in the same plane [Mpc/h].
        periodic: add the images shifted by multiples of W.

    Returns:
        (n_cells, n_pix) array; each row sums to the fraction of the cell (and its images)
        inside the field.
    """
    d = width_mpc_h / n_cells
    lo = -0.5 * width_mpc_h + d * np.arange(n_cells)
    reach = max(abs(pix_edges_mpc_h[0]), abs(pix_edges_mpc_h[-1]))
    n_img = periodic_images(width_mpc_h, reach) if periodic else 0
    out = np.zeros((n_cells, pix_edges_mpc_h.size - 1))
    for k in range(-n_img, n_img + 1):
        a = lo[:, None] + k * width_mpc_h
        ov = np.minimum(a + d, pix_edges_mpc_h[None, 1:]) - np.maximum(a, pix_edges_mpc_h[None, :-1])
        out += np.clip(ov, 0.0, None)
    return out / d


def voxel_count_rates(
    ne_cm3: np.ndarray,
    t_k: np.ndarray,
    z: float,
    chi_mpc_h: float,
    cell_volume_mpc3_h3: float,
    h: float,
    table: EmissionTable,
    ne_frame: Literal["comoving", "physical"] = "comoving",
    ne_over_nh: float = NE_OVER_NH,
) -> np.ndarray:
    """Count rate of each cell at one redshift [cts/s], shape (n_b, *ne.shape).

    Args:
        ne_cm3: electron densities [cm^-3], comoving (``ne_frame="comoving"``: physical
            n_e = value (1+z)^3) or physical.
        t_k: gas temperatures [K], same shape.
        z: redshift of the cells; chi_mpc_h: their comoving distance (= D_M) [Mpc/h].
        cell_volume_mpc3_h3: comoving cell volume [(Mpc/h)^3].
        h: H0 / (100 km/s/Mpc), converts Mpc/h to cm.
        table: band rates r_b(T, z).
        ne_over_nh: n_e / n_H of the plasma: the chain's one gas composition by default
            (:data:`clustersbi.constants.NE_OVER_NH` = 1.158, fully ionised primordial H + He,
            the gas model's), so EM = n_e n_H V is computed with the n_H the gas was painted with.
    """
    ne = np.asarray(ne_cm3, dtype=float)
    v_com_cm3 = cell_volume_mpc3_h3 * (MPC_CM / h) ** 3
    if ne_frame == "comoving":
        em = ne**2 * (1.0 + z) ** 3 * v_com_cm3 / ne_over_nh
    elif ne_frame == "physical":
        em = ne**2 * v_com_cm3 / (1.0 + z) ** 3 / ne_over_nh
    else:
        raise ValueError(f"ne_frame must be 'comoving' or 'physical', got {ne_frame!r}")
    d_cm = chi_mpc_h * MPC_CM / h
    rate = table(np.asarray(t_k, dtype=float) * K_B_KEV_PER_K, z)
    return em[None] * rate / (4.0 * np.pi * d_cm**2)


@dataclass(frozen=True)
class SlabMap:
    """Projected count-rate maps of one slab.

    Attributes:
        rate_cts_s: (n_b, n_pix, n_pix) count rate per pixel and band [cts/s].
        z_rate_sum: (n_pix, n_pix) sum over cells of (all-band rate x z); divided by the
            all-band map it gives the emission-weighted redshift per pixel.
        z_lo, z_hi: redshifts of the slab's near and far faces.
        total_cells_cts_s: (n_b,) sum of all cells' count rates (in or out of the field).
    """

    rate_cts_s: np.ndarray
    z_rate_sum: np.ndarray
    z_lo: float
    z_hi: float
    total_cells_cts_s: np.ndarray


def paint_slab(
    ne_cm3: np.ndarray,
    t_k: np.ndarray,
    chi_lo_mpc_h: float,
    chi_hi_mpc_h: float,
    width_mpc_h: float,
    table: EmissionTable,
    grid: SkyGrid,
    omega_m: float,
    h: float,
    los_axis: int = 0,
    ne_frame: Literal["comoving", "physical"] = "comoving",
    ne_over_nh: float = NE_OVER_NH,
    periodic: bool = True,
) -> SlabMap:
    """Paint one slab's cells in X-rays and project them on the sky grid (module docstring).

    Args:
        ne_cm3, t_k: (n0, n1, n2) electron density [cm^-3] and temperature [K] grids.
        chi_lo_mpc_h, chi_hi_mpc_h: comoving range of the slab along the line of sight [Mpc/h].
        width_mpc_h: transverse comoving width of the box [Mpc/h].
        table: band rates r_b(T, z) covering the slab's redshifts.
        grid: the sky grid.
        omega_m, h: cosmology (flat LCDM distances; h converts Mpc/h to cm).
        los_axis: grid axis along the line of sight; the other two are (x, y) in order.
    """
    ne = np.moveaxis(np.asarray(ne_cm3), los_axis, 0)
    t = np.moveaxis(np.asarray(t_k), los_axis, 0)
    if ne.shape != t.shape or ne.ndim != 3:
        raise ValueError(f"ne_cm3 and t_k must be 3D grids of equal shape, got {ne.shape} and {t.shape}")
    if not 0 < chi_lo_mpc_h < chi_hi_mpc_h:
        raise ValueError(f"need 0 < chi_lo_mpc_h < chi_hi_mpc_h, got {chi_lo_mpc_h}, {chi_hi_mpc_h}")
    n_los, nx, ny = ne.shape
    dchi = (chi_hi_mpc_h - chi_lo_mpc_h) / n_los
    cell_volume = dchi * (width_mpc_h / nx) * (width_mpc_h / ny)
    chi = chi_lo_mpc_h + dchi * (np.arange(n_los) + 0.5)
    z = redshift_at_comoving_distance(chi, omega_m)
    tan_edges = np.tan(grid.edges_rad)
    n_b = table.bands_kev.shape[0]
    out = np.zeros((n_b, grid.n_pix, grid.n_pix))
    zsum = np.zeros((grid.n_pix, grid.n_pix))
    total = np.zeros(n_b)
    for k in range(n_los):
        rates = voxel_count_rates(ne[k], t[k], float(z[k]), float(chi[k]), cell_volume, h, table, ne_frame, ne_over_nh)
        total += rates.reshape(n_b, -1).sum(axis=1)
        # overlap matrices are sparse (a cell touches a few pixels): contract with sparse products
        wx_t = sparse.csr_matrix(overlap_matrix(nx, width_mpc_h, tan_edges * chi[k], periodic).T)
        wy_t = sparse.csr_matrix(overlap_matrix(ny, width_mpc_h, tan_edges * chi[k], periodic).T)
        layer = np.stack([wy_t @ (wx_t @ rates[b]).T for b in range(n_b)])  # (n_b, n_pix_y, n_pix_x)
        out += layer
        zsum += layer.sum(axis=0) * z[k]
    z_lo, z_hi = redshift_at_comoving_distance(np.array([chi_lo_mpc_h, chi_hi_mpc_h]), omega_m)
    return SlabMap(out, zsum, float(z_lo), float(z_hi), total)


def paint_lightcone(
    slabs: Iterable[tuple[np.ndarray, np.ndarray, float, float, float]],
    table: EmissionTable,
    grid: SkyGrid,
    omega_m: float,
    h: float,
    **kwargs,
) -> list[SlabMap]:
    """Paint each slab (ne_cm3, t_k, chi_lo_mpc_h, chi_hi_mpc_h, width_mpc_h) of a lightcone.

    Returns the per-slab maps (detection runs per slab); the summed lightcone map is
    ``sum(m.rate_cts_s for m in maps)``. Keyword arguments go to :func:`paint_slab`.
    """
    maps = []
    for i, (ne, t, chi_lo, chi_hi, width) in enumerate(slabs):
        maps.append(paint_slab(ne, t, chi_lo, chi_hi, width, table, grid, omega_m, h, **kwargs))
        log.info("painted slab %d (z %.3f-%.3f): %.4g cts/s in band 0", i, maps[-1].z_lo, maps[-1].z_hi, maps[-1].rate_cts_s[0].sum())
    return maps


def observe(
    rate_cts_s: np.ndarray,
    pixel_arcmin: float,
    seed: int | np.random.SeedSequence | None = None,
    poisson: bool = False,
    exposure_s: float = 1e4,
    background_cts_s_arcmin2: float | Sequence[float] = 0.0,
    psf_fwhm_arcsec: float = 0.0,
) -> np.ndarray:
    """Optional observational effects on count-rate maps (beyond the paper; all off by default).

    In order: Gaussian PSF of FWHM ``psf_fwhm_arcsec`` (flux-conserving convolution, zero
    outside the field), a flat background [cts s^-1 arcmin^-2] per band (scalar: same in
    every band), Poisson photon counts for ``exposure_s`` seconds converted back to cts/s.

    Args:
        rate_cts_s: (n_b, ny, nx) or (ny, nx) maps [cts/s per pixel].
        seed: seed of the Poisson draw (required when ``poisson``).

    Returns:
        Maps of the same shape [cts/s per pixel].
    """
    from scipy import ndimage

    maps = np.array(rate_cts_s, dtype=float, copy=True)
    squeeze = maps.ndim == 2
    if squeeze:
        maps = maps[None]
    if psf_fwhm_arcsec < 0 or exposure_s <= 0:
        raise ValueError(f"psf_fwhm_arcsec must be >= 0 and exposure_s > 0, got {psf_fwhm_arcsec}, {exposure_s}")
    if psf_fwhm_arcsec > 0:
        sigma_pix = psf_fwhm_arcsec / 60.0 / pixel_arcmin / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        maps = np.stack([ndimage.gaussian_filter(m, sigma_pix, mode="constant", truncate=5.0) for m in maps])
    bkg = np.broadcast_to(np.asarray(background_cts_s_arcmin2, dtype=float), (maps.shape[0],))
    if np.any(bkg < 0):
        raise ValueError("background_cts_s_arcmin2 must be >= 0")
    maps = maps + bkg[:, None, None] * pixel_arcmin**2
    if poisson:
        if seed is None:
            raise ValueError("observe(poisson=True) needs an explicit seed")
        rng = np.random.default_rng(seed)
        maps = rng.poisson(np.clip(maps, 0.0, None) * exposure_s) / exposure_s
    return maps[0] if squeeze else maps
