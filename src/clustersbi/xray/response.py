"""Instrument response: OGIP ARF/RMF readers, built-in approximate XMM-Newton EPIC curves per
camera (pn, MOS1, MOS2), sums of several cameras' responses, and optional Galactic
photoelectric absorption.

A :class:`Response` holds the effective area A(E) [cm^2] on true-energy bins and, optionally,
a redistribution matrix M[i, c] (probability that a photon in true bin i lands in channel c)
with channel energy bounds. A band's effective area per true-energy bin is

    A_b(E_i) = A(E_i) sum_{c in b} M[i, c]     (with an RMF; channels whose nominal centre
                                                lies in the band)
    A_b(E_i) = A(E_i) |[E_lo,i, E_hi,i] ∩ b| / (E_hi,i - E_lo,i)   (without: perfect resolution)

so that the count rate in the band is sum_i (photon flux in bin i) A_b(E_i). Cameras observing
the same sky add: the count rate of pn + MOS1 + MOS2 is the sum of theirs, so their band
effective areas add (:func:`sum_responses`).

Formats (OGIP memo CAL/GEN/92-002): ARF extension ``SPECRESP`` with columns ENERG_LO,
ENERG_HI [keV], SPECRESP [cm^2]; RMF extension ``MATRIX`` or ``SPECRESP MATRIX`` with ENERG_LO,
ENERG_HI, N_GRP, F_CHAN, N_CHAN, MATRIX (variable-length rows) and ``EBOUNDS`` (CHANNEL,
E_MIN, E_MAX). An RMF of type ``SPECRESP MATRIX`` already includes the effective area.

The built-in XMM-Newton EPIC curves (:data:`XMM_EPIC_APPROX_TABLE`, per camera) are on-axis
effective areas of a point source with the medium filter, approximate to ~10-20% per energy.
They leave out, and a survey simulation using them therefore ignores:

- vignetting: the area falls with off-axis angle (to roughly half at 12-15 arcmin, more at
  high energy), so sources away from the pointing centre are brighter here than observed;
- the off-axis PSF and extraction apertures: all of a source's photons are counted
  (encircled-energy fraction 1), whereas the PSF broadens off-axis;
- the filter choice: medium filter only (thin gives more area below ~1 keV, thick less);
- event pattern selection: the curves stand for the usual selections (pn single + double
  events, MOS single to quadruple), not for single events only;
- CCD gaps, bad pixels and lost MOS1 CCDs, out-of-time events, the slow decline of the MOS
  low-energy response with time, energy redistribution (no RMF) and pile-up.

Use real ARF/RMF files (one per camera, summed) for anything quantitative.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Literal, Sequence, Union

import numpy as np

__all__ = [
    "Response",
    "XMM_EPIC_CAMERAS",
    "XMM_EPIC_APPROX_TABLE",
    "BUILTIN_RESPONSES",
    "builtin_xmm_epic_cameras",
    "builtin_xmm_epic",
    "sum_responses",
    "read_arf",
    "read_rmf",
    "load_response",
    "band_effective_area_cm2",
    "morrison_mccammon_cross_section_cm2",
    "apply_absorption",
]


@dataclass(frozen=True)
class Response:
    """Effective area and optional redistribution on true-energy bins.

    Attributes:
        energ_lo_kev, energ_hi_kev: (n_e,) true-energy bin edges [keV], contiguous.
        area_cm2: (n_e,) effective area [cm^2] (1 for an RMF that already includes it).
        matrix: (n_e, n_chan) redistribution probabilities, or None (perfect resolution).
        chan_lo_kev, chan_hi_kev: (n_chan,) nominal channel bounds [keV] (EBOUNDS), or None.
        name: a label recorded in tables' metadata.
    """

    energ_lo_kev: np.ndarray
    energ_hi_kev: np.ndarray
    area_cm2: np.ndarray
    matrix: np.ndarray | None = None
    chan_lo_kev: np.ndarray | None = None
    chan_hi_kev: np.ndarray | None = None
    name: str = "response"

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.energ_lo_kev), np.asarray(self.energ_hi_kev)
        if lo.shape != hi.shape or lo.shape != np.shape(self.area_cm2):
            raise ValueError("energ_lo_kev, energ_hi_kev and area_cm2 must have the same shape")
        if np.any(hi <= lo) or not np.allclose(lo[1:], hi[:-1], rtol=1e-6):
            raise ValueError(f"response {self.name}: energy bins must be increasing and contiguous")
        if self.matrix is not None and (self.chan_lo_kev is None or np.shape(self.matrix) != (lo.size, np.size(self.chan_lo_kev))):
            raise ValueError(f"response {self.name}: matrix must be (n_energies, n_channels) with EBOUNDS")

    @property
    def energy_edges_kev(self) -> np.ndarray:
        """(n_e + 1,) true-energy bin edges [keV]."""
        return np.concatenate([self.energ_lo_kev, self.energ_hi_kev[-1:]])

    @property
    def energy_centres_kev(self) -> np.ndarray:
        return 0.5 * (self.energ_lo_kev + self.energ_hi_kev)


def band_effective_area_cm2(response: Response, band_kev: Sequence[float]) -> np.ndarray:
    """Effective area of an observed band per true-energy bin, A_b(E_i) [cm^2], shape (n_e,).

    See the module docstring for the two cases (with or without a redistribution matrix).
    """
    e1, e2 = float(band_kev[0]), float(band_kev[1])
    if not 0 < e1 < e2:
        raise ValueError(f"band_kev must be an increasing pair of positive energies, got {band_kev}")
    if response.matrix is None:
        lo, hi = response.energ_lo_kev, response.energ_hi_kev
        overlap = np.clip(np.minimum(hi, e2) - np.maximum(lo, e1), 0.0, None) / (hi - lo)
        return response.area_cm2 * overlap
    centre = 0.5 * (response.chan_lo_kev + response.chan_hi_kev)
    in_band = (centre >= e1) & (centre < e2)
    return response.area_cm2 * response.matrix[:, in_band].sum(axis=1)


# ----------------------------------------------------------------------------- built-in XMM
Camera = Literal["pn", "mos1", "mos2"]

#: The built-in cameras, in the order of the area columns of :data:`XMM_EPIC_APPROX_TABLE`.
XMM_EPIC_CAMERAS: tuple[Camera, ...] = ("pn", "mos1", "mos2")

#: Approximate on-axis effective area [cm^2] of each XMM-Newton EPIC camera with the medium
#: filter; columns: energy [keV], pn, MOS1, MOS2. Interpolated log-log between the rows.
#:
#: pn: read by eye from the on-axis effective-area curves of the XMM-Newton Users Handbook
#: (section 3.2.2, "EPIC effective areas") and anchored to its value at 1.5 keV, 1227 cm^2; the
#: Au M edge of the mirrors (2.2 keV) is smoothed over 2.0-2.5 keV.
#:
#: MOS (one camera): the Users Handbook's 922 cm^2 at 1.5 keV is the two MOS cameras together
#: (461 cm^2 each; one MOS collecting 0.75 of the pn, as 922 cm^2 per camera would mean, is
#: excluded by the per-camera conversion factors of Mateos et al. 2009, below). The shape is
#: pn x 0.44 x QE_MOS / QE_pn: 0.44 is the share of a mirror's light that its Reflection
#: Grating Assembly passes to the MOS camera behind it (Users Handbook; the pn telescope has no
#: RGA), and QE_MOS / QE_pn the quantum-efficiency ratio of the front-illuminated MOS CCDs
#: (Turner et al. 2001, A&A 365, L27) and the back-illuminated pn CCD (Strueder et al. 2001,
#: A&A 365, L18), taken approximately from their published curves (both cameras sit behind the
#: same kind of medium filter, which cancels): ~0.4 at 0.5 keV, a drop at the O K edge of the
#: MOS gate oxide (0.53 keV), 0.71 at 1 keV, 0.85 at 1.5 keV, a drop at the Si K edge of the
#: MOS electrodes (1.84 keV), ~0.9 at 3-5 keV and a fall above 6 keV (thinner depletion).
#: MOS1 and MOS2 share one curve: on axis they differ by < 1% below 2 keV (the conversion
#: factors below: MOS2 / MOS1 = 1.002 in 0.5-1 keV, 1.003 in 1-2 keV).
#:
#: Check (tests): for a Gamma = 1.7 power law absorbed by N_H = 3e20 cm^-2, the band count
#: rates give MOS/pn = 0.223 (0.5-1 keV) and 0.353 (1-2 keV) per camera; the count-rate to flux
#: conversion factors of Mateos et al. (2009, A&A 496, 879, Table 1; same spectrum, medium
#: filter, from the calibrated responses) give 1.756 / 7.995 = 0.220 and 1.993 / 5.779 = 0.345.
#: APPROXIMATE (~10-20% per energy): use real ARF/RMF files (xray.response.arf / rmf, one per
#: camera) for science, and see the module docstring for what the curves leave out.
XMM_EPIC_APPROX_TABLE = np.array(
    [
        # E_keV    pn      MOS1    MOS2
        [0.15, 80.0, 8.8, 8.8],
        [0.20, 150.0, 17.8, 17.8],
        [0.30, 330.0, 43.6, 43.6],
        [0.40, 480.0, 76.0, 76.0],
        [0.50, 580.0, 102.0, 102.0],
        [0.53, 630.0, 116.0, 116.0],
        [0.55, 663.0, 96.3, 96.3],
        [0.60, 750.0, 125.0, 125.0],
        [0.70, 851.0, 176.0, 176.0],
        [0.80, 950.0, 234.0, 234.0],
        [0.90, 1051.0, 296.0, 296.0],
        [1.00, 1150.0, 359.0, 359.0],
        [1.25, 1250.0, 440.0, 440.0],
        [1.50, 1227.0, 461.0, 461.0],
        [1.75, 1200.0, 465.0, 465.0],
        [1.83, 1182.0, 463.0, 463.0],
        [1.85, 1175.0, 362.0, 362.0],
        [2.00, 1100.0, 363.0, 363.0],
        [2.20, 800.0, 275.0, 275.0],
        [2.50, 900.0, 325.0, 325.0],
        [3.00, 950.0, 368.0, 368.0],
        [4.00, 900.0, 364.0, 364.0],
        [5.00, 850.0, 337.0, 337.0],
        [6.00, 800.0, 296.0, 296.0],
        [7.00, 700.0, 228.0, 228.0],
        [8.00, 520.0, 142.0, 142.0],
        [10.0, 250.0, 49.5, 49.5],
        [12.0, 100.0, 15.4, 15.4],
    ]
)

#: The names ``xray.response.builtin`` accepts, and the cameras each one sums.
BUILTIN_RESPONSES: dict[str, tuple[Camera, ...]] = {
    "xmm-epic-pn+2mos": ("pn", "mos1", "mos2"),
    "xmm-epic-pn": ("pn",),
    "xmm-epic-mos1": ("mos1",),
    "xmm-epic-mos2": ("mos2",),
}


def builtin_xmm_epic_cameras(
    e_min_kev: float = 0.15, e_max_kev: float = 12.0, bin_kev: float = 0.005
) -> dict[Camera, Response]:
    """Approximate on-axis XMM-Newton EPIC effective area of each camera (no redistribution).

    Log-log interpolation of :data:`XMM_EPIC_APPROX_TABLE` at bin centres, on uniform
    ``bin_kev`` true-energy bins [keV] in [e_min_kev, e_max_kev]; all cameras share the grid.

    Returns:
        {"pn": ..., "mos1": ..., "mos2": ...}, one :class:`Response` per camera [cm^2].
    """
    if not 0.15 <= e_min_kev < e_max_kev <= 12.0:
        raise ValueError(f"builtin XMM response covers 0.15-12 keV, got [{e_min_kev}, {e_max_kev}]")
    edges = np.arange(e_min_kev, e_max_kev + 0.5 * bin_kev, bin_kev)
    log_centre = np.log(0.5 * (edges[1:] + edges[:-1]))
    table = XMM_EPIC_APPROX_TABLE
    out = {}
    for k, camera in enumerate(XMM_EPIC_CAMERAS):
        area = np.exp(np.interp(log_centre, np.log(table[:, 0]), np.log(table[:, 1 + k])))
        out[camera] = Response(edges[:-1], edges[1:], area, name=f"builtin-xmm-epic-{camera}-approx")
    return out


def builtin_xmm_epic(
    e_min_kev: float = 0.15,
    e_max_kev: float = 12.0,
    bin_kev: float = 0.005,
    cameras: Sequence[Camera] = XMM_EPIC_CAMERAS,
) -> Response:
    """Approximate on-axis XMM-Newton EPIC effective area summed over ``cameras`` [cm^2].

    The default is pn + MOS1 + MOS2, the sum of :func:`builtin_xmm_epic_cameras` (no
    redistribution); see :data:`XMM_EPIC_APPROX_TABLE` for the sources of the curves.
    """
    per_camera = builtin_xmm_epic_cameras(e_min_kev, e_max_kev, bin_kev)
    unknown = sorted(set(cameras) - set(per_camera))
    if unknown or not cameras:
        raise ValueError(f"cameras must be a non-empty subset of {list(XMM_EPIC_CAMERAS)}, got {list(cameras)}")
    name = f"builtin-xmm-epic-{'+'.join(cameras)}-approx"
    return sum_responses([per_camera[c] for c in cameras], name=name)


# ----------------------------------------------------------------------------- sums of cameras
def _common_edges(responses: Sequence[Response]) -> np.ndarray:
    """The true-energy edges [keV] on which ``responses`` are summed (see :func:`sum_responses`)."""
    first = responses[0].energy_edges_kev
    if all(r.energy_edges_kev.shape == first.shape and np.allclose(r.energy_edges_kev, first, rtol=1e-6) for r in responses):
        return first
    e_lo = max(r.energy_edges_kev[0] for r in responses)
    e_hi = min(r.energy_edges_kev[-1] for r in responses)
    if not e_lo < e_hi:
        raise ValueError(
            "responses to sum cover no common energy range: "
            + ", ".join(f"{r.name} [{r.energy_edges_kev[0]:g}, {r.energy_edges_kev[-1]:g}] keV" for r in responses)
        )
    edges = np.unique(np.concatenate([r.energy_edges_kev for r in responses]))
    edges = edges[(edges >= e_lo * (1 - 1e-9)) & (edges <= e_hi * (1 + 1e-9))]
    # merge edges that differ only by rounding (FITS files store float32 energies)
    keep = np.concatenate([[True], np.diff(edges) > 1e-6 * edges[1:]])
    return edges[keep]


def sum_responses(responses: Sequence[Response], name: str | None = None) -> Response:
    """The response of several cameras observing together (e.g. pn + MOS1 + MOS2).

    Count rates add, so band effective areas add:
    ``band_effective_area_cm2(sum, b) = sum_k band_effective_area_cm2(responses[k], b)``.

    Energy grid: the common true-energy grid of the responses if they share one; otherwise the
    union of all their bin edges over the range every response covers (energies outside it
    are dropped). Each response is constant over each of its own bins, so the sum on the union
    grid is exact.

    Redistribution: either every response has a matrix or none has. With matrices, the summed
    response's channels are every camera's channels side by side (camera 0's EBOUNDS, then
    camera 1's, ...), and its matrix row i is sum_k A_k(E_i) M_k[i, :] / A(E_i) on them, with
    A = sum_k A_k. Band areas (channels whose centres lie in a band) are then exactly the sums
    of the cameras' band areas; the stacked channels are not one detector's, so the result is
    for band count rates, not for folding a spectrum to fit. The dense matrix has
    n_energies x (sum of channels) entries.

    Args:
        responses: one :class:`Response` per camera, at least one.
        name: label of the sum (default: the cameras' names joined by ``+``).

    Returns:
        :class:`Response` with ``area_cm2`` the summed effective area [cm^2].
    """
    rs = list(responses)
    if not rs:
        raise ValueError("sum_responses needs at least one response")
    name = name if name is not None else "+".join(r.name for r in rs)
    has_matrix = [r.matrix is not None for r in rs]
    if any(has_matrix) and not all(has_matrix):
        raise ValueError(
            "cannot sum responses with and without an RMF ("
            + ", ".join(f"{r.name}: {'RMF' if m else 'no RMF'}" for r, m in zip(rs, has_matrix))
            + "): give an RMF for every camera or for none"
        )
    edges = _common_edges(rs)
    lo, hi = edges[:-1], edges[1:]
    centre = 0.5 * (lo + hi)
    # the bin of each response that contains each common bin
    parent = [np.clip(np.searchsorted(r.energy_edges_kev, centre, side="right") - 1, 0, r.area_cm2.size - 1) for r in rs]
    areas = [np.asarray(r.area_cm2, dtype=float)[i] for r, i in zip(rs, parent)]
    total = np.sum(areas, axis=0)
    if not all(has_matrix):
        return Response(lo, hi, total, name=name)
    weighted = np.concatenate([a[:, None] * np.asarray(r.matrix)[i] for a, r, i in zip(areas, rs, parent)], axis=1)
    matrix = np.divide(weighted, total[:, None], out=np.zeros_like(weighted), where=total[:, None] > 0)
    chan_lo = np.concatenate([np.asarray(r.chan_lo_kev, dtype=float) for r in rs])
    chan_hi = np.concatenate([np.asarray(r.chan_hi_kev, dtype=float) for r in rs])
    return Response(lo, hi, total, matrix, chan_lo, chan_hi, name=name)


# ----------------------------------------------------------------------------- OGIP readers
def _find_hdu(hdul, names: Sequence[str], path) -> object:
    for hdu in hdul[1:]:
        if hdu.name.upper() in names or str(hdu.header.get("HDUCLAS1", "")).upper() in names:
            return hdu
    raise ValueError(f"{path}: no extension named {' or '.join(names)}")


def read_arf(path: str | os.PathLike) -> Response:
    """Read an OGIP ARF (extension SPECRESP: ENERG_LO, ENERG_HI [keV], SPECRESP [cm^2])."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        data = _find_hdu(hdul, ("SPECRESP",), path).data
        lo = np.asarray(data["ENERG_LO"], dtype=float)
        hi = np.asarray(data["ENERG_HI"], dtype=float)
        area = np.asarray(data["SPECRESP"], dtype=float)
    return Response(lo, hi, area, name=f"arf:{os.path.basename(path)}")


def read_rmf(path: str | os.PathLike) -> Response:
    """Read an OGIP RMF: dense (n_e, n_chan) matrix from its compressed rows, and EBOUNDS.

    Handles scalar or vector N_GRP / F_CHAN / N_CHAN columns and the TLMIN of F_CHAN
    (first channel number, 0 or 1). Returns a :class:`Response` with unit area (or the
    matrix's own area if its extension is ``SPECRESP MATRIX``, the matrix then being
    normalised to probabilities).
    """
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = _find_hdu(hdul, ("MATRIX", "SPECRESP MATRIX", "RSP_MATRIX"), path)
        eb = _find_hdu(hdul, ("EBOUNDS",), path).data
        data = hdu.data
        lo = np.asarray(data["ENERG_LO"], dtype=float)
        hi = np.asarray(data["ENERG_HI"], dtype=float)
        col = hdu.columns.names.index("F_CHAN") + 1
        first_chan = int(hdu.header.get(f"TLMIN{col}", 1))
        chan_lo = np.asarray(eb["E_MIN"], dtype=float)
        chan_hi = np.asarray(eb["E_MAX"], dtype=float)
        n_chan = chan_lo.size
        matrix = np.zeros((lo.size, n_chan))
        for i in range(lo.size):
            f_chan = np.atleast_1d(data["F_CHAN"][i]).astype(int)
            n_ch = np.atleast_1d(data["N_CHAN"][i]).astype(int)
            n_grp = int(np.atleast_1d(data["N_GRP"][i])[0])
            row = np.atleast_1d(np.asarray(data["MATRIX"][i], dtype=float))
            k = 0
            for g in range(n_grp):
                start = f_chan[g] - first_chan
                matrix[i, start : start + n_ch[g]] = row[k : k + n_ch[g]]
                k += n_ch[g]
        with_area = hdu.name.upper() == "SPECRESP MATRIX"
    if with_area:
        area = matrix.sum(axis=1)
        matrix = np.divide(matrix, area[:, None], out=np.zeros_like(matrix), where=area[:, None] > 0)
    else:
        area = np.ones(lo.size)
    return Response(lo, hi, area, matrix, chan_lo, chan_hi, name=f"rmf:{os.path.basename(path)}")


PathLike = Union[str, os.PathLike]


def _as_paths(value: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)


def _arf_times_rmf(a: Response | None, r: Response | None) -> Response:
    """One camera's response: the ARF's area times the RMF's redistribution (same energy grid)."""
    if r is None:
        return a
    if a is None:
        return r
    if a.energ_lo_kev.shape != r.energ_lo_kev.shape or not np.allclose(a.energ_lo_kev, r.energ_lo_kev, rtol=1e-5):
        raise ValueError(f"xray.response: ARF {a.name} and RMF {r.name} have different true-energy grids")
    return replace(r, area_cm2=a.area_cm2 * r.area_cm2, name=f"{a.name}+{r.name}")


def load_response(
    arf: PathLike | Sequence[PathLike] | None = None,
    rmf: PathLike | Sequence[PathLike] | None = None,
    builtin: str = "xmm-epic-pn+2mos",
) -> Response:
    """The response the config asks for: ARF (+ RMF) files when given, else a built-in curve.

    ``arf`` and ``rmf`` are each one path, a list of paths (one per camera), or None. The
    k-th ARF goes with the k-th RMF (one camera: the ARF's area times the RMF's
    redistribution, on a shared true-energy grid); a single RMF is shared by every ARF;
    ARFs alone give perfect resolution, RMFs alone (``SPECRESP MATRIX``) carry their own area.
    Several cameras are summed (:func:`sum_responses`). ``builtin`` is a key of
    :data:`BUILTIN_RESPONSES` (``xmm-epic-pn+2mos``, ``xmm-epic-pn``, ``xmm-epic-mos1``,
    ``xmm-epic-mos2``), used when no file is given.
    """
    arfs, rmfs = _as_paths(arf), _as_paths(rmf)
    if not arfs and not rmfs:
        if builtin not in BUILTIN_RESPONSES:
            raise ValueError(f"xray.response.builtin must be one of {list(BUILTIN_RESPONSES)}, got {builtin!r}")
        return builtin_xmm_epic(cameras=BUILTIN_RESPONSES[builtin])
    n = max(len(arfs), len(rmfs))
    if len(arfs) not in (0, n) or len(rmfs) not in (0, 1, n):
        raise ValueError(
            f"xray.response: give one ARF per RMF, or one RMF shared by every ARF; got {len(arfs)} ARF(s) and {len(rmfs)} RMF(s)"
        )
    read_rmfs = {os.fspath(p): read_rmf(p) for p in rmfs}  # a shared RMF is read once
    cameras = [
        _arf_times_rmf(read_arf(arfs[k]) if arfs else None, read_rmfs[os.fspath(rmfs[k if len(rmfs) > 1 else 0])] if rmfs else None)
        for k in range(n)
    ]
    return cameras[0] if n == 1 else sum_responses(cameras)


# ----------------------------------------------------------------------------- absorption
# Morrison & McCammon (1983, ApJ 270, 119), Table 2: sigma(E) = (c0 + c1 E + c2 E^2) E^-3
# 1e-24 cm^2 per H atom (solar abundances, neutral gas), E in keV, 0.03-10 keV.
_MM83_EDGES_KEV = np.array([0.030, 0.100, 0.284, 0.400, 0.532, 0.707, 0.867, 1.303, 1.840, 2.471, 3.210, 4.038, 7.111, 8.331, 10.0])
_MM83_COEFFS = np.array(
    [
        [17.3, 608.1, -2150.0],
        [34.6, 267.9, -476.1],
        [78.1, 18.8, 4.3],
        [71.4, 66.8, -51.4],
        [95.5, 145.8, -61.1],
        [308.9, -380.6, 294.0],
        [120.6, 169.3, -47.7],
        [141.3, 146.8, -31.5],
        [202.7, 104.7, -17.0],
        [342.7, 18.7, 0.0],
        [352.2, 18.7, 0.0],
        [433.9, -2.4, 0.75],
        [629.0, 30.9, 0.0],
        [701.2, 25.2, 0.0],
    ]
)


def morrison_mccammon_cross_section_cm2(e_kev: np.ndarray) -> np.ndarray:
    """Effective photoelectric cross-section per H atom [cm^2] (Morrison & McCammon 1983).

    Valid 0.03-10 keV; above 10 keV the last segment is extrapolated (absorption there is
    negligible for Galactic columns).
    """
    e = np.asarray(e_kev, dtype=float)
    if np.any(e < _MM83_EDGES_KEV[0]):
        raise ValueError("Morrison & McCammon cross-sections start at 0.03 keV")
    k = np.clip(np.searchsorted(_MM83_EDGES_KEV, e, side="right") - 1, 0, len(_MM83_COEFFS) - 1)
    c = _MM83_COEFFS[k]
    return (c[..., 0] + c[..., 1] * e + c[..., 2] * e**2) / e**3 * 1e-24


def apply_absorption(response: Response, nh_1e22_cm2: float) -> Response:
    """Multiply the effective area by exp(-N_H sigma(E)) at bin centres (photoelectric, wabs-like)."""
    if nh_1e22_cm2 < 0:
        raise ValueError(f"xray.absorption.nh_1e22 must be >= 0, got {nh_1e22_cm2}")
    trans = np.exp(-nh_1e22_cm2 * 1e22 * morrison_mccammon_cross_section_cm2(response.energy_centres_kev))
    return replace(response, area_cm2=response.area_cm2 * trans, name=f"{response.name}+wabs({nh_1e22_cm2}e22)")
