"""Instrument response: OGIP ARF/RMF readers, a built-in approximate XMM-Newton EPIC curve,
and optional Galactic photoelectric absorption.

A :class:`Response` holds the effective area A(E) [cm^2] on true-energy bins and, optionally,
a redistribution matrix M[i, c] (probability that a photon in true bin i lands in channel c)
with channel energy bounds. A band's effective area per true-energy bin is

    A_b(E_i) = A(E_i) sum_{c in b} M[i, c]     (with an RMF; channels whose nominal centre
                                                lies in the band)
    A_b(E_i) = A(E_i) |[E_lo,i, E_hi,i] ∩ b| / (E_hi,i - E_lo,i)   (without: perfect resolution)

so that the count rate in the band is sum_i (photon flux in bin i) A_b(E_i).

Formats (OGIP memo CAL/GEN/92-002): ARF extension ``SPECRESP`` with columns ENERG_LO,
ENERG_HI [keV], SPECRESP [cm^2]; RMF extension ``MATRIX`` or ``SPECRESP MATRIX`` with ENERG_LO,
ENERG_HI, N_GRP, F_CHAN, N_CHAN, MATRIX (variable-length rows) and ``EBOUNDS`` (CHANNEL,
E_MIN, E_MAX). An RMF of type ``SPECRESP MATRIX`` already includes the effective area.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

__all__ = [
    "Response",
    "XMM_EPIC_APPROX_TABLE",
    "builtin_xmm_epic",
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
#: Approximate on-axis effective area of XMM-Newton EPIC [cm^2], columns: energy [keV], pn,
#: one MOS (medium filter). Read by eye from the effective-area curves of the XMM-Newton
#: Users Handbook (section 3.2.2, "EPIC effective areas") and anchored to its Table 1 values at
#: 1.5 keV (pn 1227 cm^2, MOS 922 cm^2); edges (O K 0.53, Si K 1.84, Au M 2.2 keV) are smoothed.
#: APPROXIMATE (~10-20%): use the real ARF/RMF files (xray.response.arf / rmf) for science.
XMM_EPIC_APPROX_TABLE = np.array(
    [
        # E_keV   pn     MOS
        [0.15, 80.0, 15.0],
        [0.20, 150.0, 30.0],
        [0.30, 330.0, 100.0],
        [0.40, 480.0, 200.0],
        [0.50, 580.0, 300.0],
        [0.60, 750.0, 420.0],
        [0.80, 950.0, 600.0],
        [1.00, 1150.0, 750.0],
        [1.25, 1250.0, 880.0],
        [1.50, 1227.0, 922.0],
        [1.75, 1200.0, 850.0],
        [1.84, 1180.0, 620.0],
        [2.00, 1100.0, 680.0],
        [2.20, 800.0, 500.0],
        [2.50, 900.0, 560.0],
        [3.00, 950.0, 550.0],
        [4.00, 900.0, 480.0],
        [5.00, 850.0, 400.0],
        [6.00, 800.0, 330.0],
        [7.00, 700.0, 250.0],
        [8.00, 520.0, 170.0],
        [10.0, 250.0, 70.0],
        [12.0, 100.0, 25.0],
    ]
)


def builtin_xmm_epic(
    e_min_kev: float = 0.15, e_max_kev: float = 12.0, bin_kev: float = 0.005, n_mos: int = 2
) -> Response:
    """Approximate XMM-Newton EPIC pn + ``n_mos`` MOS effective area (no redistribution).

    Log-log interpolation of :data:`XMM_EPIC_APPROX_TABLE` at bin centres, on uniform
    ``bin_kev`` true-energy bins in [e_min_kev, e_max_kev].
    """
    if not 0.15 <= e_min_kev < e_max_kev <= 12.0:
        raise ValueError(f"builtin XMM response covers 0.15-12 keV, got [{e_min_kev}, {e_max_kev}]")
    edges = np.arange(e_min_kev, e_max_kev + 0.5 * bin_kev, bin_kev)
    centre = 0.5 * (edges[1:] + edges[:-1])
    table = XMM_EPIC_APPROX_TABLE
    total = table[:, 1] + n_mos * table[:, 2]
    area = np.exp(np.interp(np.log(centre), np.log(table[:, 0]), np.log(total)))
    return Response(edges[:-1], edges[1:], area, name=f"builtin-xmm-epic-pn+{n_mos}mos-approx")


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


def load_response(
    arf: str | os.PathLike | None = None,
    rmf: str | os.PathLike | None = None,
    builtin: str = "xmm-epic-pn+2mos",
) -> Response:
    """The response the config asks for: ARF (+ RMF) files when given, else the built-in curve.

    With both files the ARF's area multiplies the RMF's redistribution; they must share the
    true-energy grid. ``builtin`` is ``xmm-epic-pn+2mos`` or ``xmm-epic-pn``.
    """
    if arf is None and rmf is None:
        if builtin == "xmm-epic-pn+2mos":
            return builtin_xmm_epic(n_mos=2)
        if builtin == "xmm-epic-pn":
            return builtin_xmm_epic(n_mos=0)
        raise ValueError(f"xray.response.builtin must be 'xmm-epic-pn+2mos' or 'xmm-epic-pn', got {builtin!r}")
    if rmf is None:
        return read_arf(arf)
    r = read_rmf(rmf)
    if arf is None:
        return r
    a = read_arf(arf)
    if a.energ_lo_kev.shape != r.energ_lo_kev.shape or not np.allclose(a.energ_lo_kev, r.energ_lo_kev, rtol=1e-5):
        raise ValueError(f"xray.response: ARF {arf} and RMF {rmf} have different true-energy grids")
    return replace(r, area_cm2=a.area_cm2 * r.area_cm2, name=f"{a.name}+{r.name}")


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
