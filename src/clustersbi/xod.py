"""X-ray Observable Diagram (XOD): counts of clusters in (log10 CR, HR, z) bins.

Cerardi et al. (section 2.3; Clerc et al. 2012): the detected clusters of ``n_lightcones``
lightcones (10 x 20 deg^2 = 200 deg^2 in the paper) are binned in a 3D histogram over
(log10 CR_[0.5-2] [cts/s], HR = CR_[1-2]/CR_[0.5-1], z). The paper's Table 3 also uses the
marginals (CR, HR), (z, CR) and z alone. A user catalogue (CSV, :func:`load_catalogue_csv`)
goes through the same binning, so a real survey can be analysed with the trained posterior.

Catalogue CSV format: one row per cluster, a header line, comma-separated, any extra columns
ignored. Columns ``z`` (redshift) and either ``CR`` [cts/s, all bands summed: 0.5-2 keV by
default] and ``HR`` (CR[1-2] / CR[0.5-1] by default), or one count-rate column per band named
``CR_<lo>-<hi>`` in keV as the detection catalogues write them (``CR_0.5-1``, ``CR_1-2``), from
which CR (their sum) and HR (``detection.hr_bands``) are formed. Given CR and HR win over band
columns. The detection catalogues of the simulations (:mod:`clustersbi.detect`) have all of
these columns, so a mock's catalogue written with ``DataFrame.to_csv`` is a valid input.

Bin edges are inclusive on the left, exclusive on the right, except the last bin of each axis
which includes its right edge (numpy.histogramdd); sources outside the edges are not counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from .detect import band_column

__all__ = [
    "XodBins",
    "xod_histogram",
    "xod_marginal",
    "XOD_STATISTICS",
    "statistic_marginal",
    "load_catalogue_csv",
    "xod_from_csv",
    "REQUIRED_COLUMNS",
]

REQUIRED_COLUMNS = ("CR", "HR", "z")

Marginal = Literal["none", "cr_hr", "z_cr", "z"]

#: The XOD statistics of cerardi Table 3, as training-set (summary) names, and the marginal each
#: one takes: ``xod`` is the configured ``xod.marginal`` (the 3D XOD by default); the others are
#: fixed, so one run can train and compare all four (inference.summaries).
XOD_STATISTICS: dict[str, Marginal | None] = {"xod": None, "xod_cr_hr": "cr_hr", "xod_z_cr": "z_cr", "xod_z": "z"}


@dataclass(frozen=True)
class XodBins:
    """Bin edges of the XOD (config section ``xod``).

    Attributes:
        log_cr: (n_cr + 1,) edges in log10(CR / [cts/s]).
        hr: (n_hr + 1,) edges in HR.
        z: (n_z + 1,) edges in redshift.
    """

    log_cr: np.ndarray
    hr: np.ndarray
    z: np.ndarray

    @classmethod
    def linear(
        cls,
        log_cr: tuple[float, float, int] = (np.log10(0.02), 0.0, 8),
        hr: tuple[float, float, int] = (0.2, 1.6, 8),
        z: tuple[float, float, int] = (0.1, 0.5, 8),
    ) -> "XodBins":
        """Evenly spaced edges from (low, high, n_bins) per axis."""
        edges = []
        for name, (lo, hi, n) in (("log_cr", log_cr), ("hr", hr), ("z", z)):
            if not hi > lo or int(n) < 1:
                raise ValueError(f"xod.bins.{name} needs low < high and n >= 1, got {(lo, hi, n)}")
            edges.append(np.linspace(lo, hi, int(n) + 1))
        return cls(*edges)

    @classmethod
    def from_spec(cls, bins: Mapping[str, Mapping[str, float]]) -> "XodBins":
        """From ``{axis: {low, high, n}}`` for the axes log_cr, hr, z (config ``xod.bins``)."""
        return cls.linear(**{axis: (bins[axis]["low"], bins[axis]["high"], bins[axis]["n"]) for axis in ("log_cr", "hr", "z")})

    def to_attrs(self) -> dict[str, np.ndarray]:
        """The edges as HDF5 attributes (``log_cr_edges``, ``hr_edges``, ``z_edges``)."""
        return {"log_cr_edges": self.log_cr, "hr_edges": self.hr, "z_edges": self.z}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object]) -> "XodBins":
        """Inverse of :meth:`to_attrs`."""
        return cls(*(np.asarray(attrs[k], dtype=float) for k in ("log_cr_edges", "hr_edges", "z_edges")))


def xod_histogram(catalogues: pd.DataFrame | Iterable[pd.DataFrame], bins: XodBins) -> np.ndarray:
    """3D XOD: counts of sources per (log10 CR, HR, z) bin, summed over catalogues.

    Args:
        catalogues: one DataFrame or several (e.g. one per lightcone), each with columns
            CR [cts/s], HR, z. Rows with non-finite values or CR <= 0 are not counted.
        bins: :class:`XodBins`.

    Returns:
        (n_cr, n_hr, n_z) float array of counts.
    """
    cats = [catalogues] if isinstance(catalogues, pd.DataFrame) else list(catalogues)
    shape = (bins.log_cr.size - 1, bins.hr.size - 1, bins.z.size - 1)
    total = np.zeros(shape)
    for cat in cats:
        _check_columns(cat, "catalogue")
        cr = cat["CR"].to_numpy(float)
        hr = cat["HR"].to_numpy(float)
        z = cat["z"].to_numpy(float)
        ok = np.isfinite(cr) & np.isfinite(hr) & np.isfinite(z) & (cr > 0)
        sample = np.stack([np.log10(cr[ok]), hr[ok], z[ok]], axis=1)
        h, _ = np.histogramdd(sample, bins=(bins.log_cr, bins.hr, bins.z))
        total += h
    return total


def xod_marginal(xod: np.ndarray, marginal: Marginal = "none") -> np.ndarray:
    """The statistic used for inference: the full XOD or one of its marginals.

    ``none``: (n_cr, n_hr, n_z); ``cr_hr``: (n_cr, n_hr); ``z_cr``: (n_z, n_cr); ``z``: (n_z,).
    """
    if xod.ndim != 3:
        raise ValueError(f"xod must be 3D (n_cr, n_hr, n_z), got shape {xod.shape}")
    if marginal == "none":
        return xod
    if marginal == "cr_hr":
        return xod.sum(axis=2)
    if marginal == "z_cr":
        return xod.sum(axis=1).T
    if marginal == "z":
        return xod.sum(axis=(0, 1))
    raise ValueError(f"xod.marginal must be one of none, cr_hr, z_cr, z; got {marginal!r}")


def statistic_marginal(statistic: str, configured: Marginal = "none") -> Marginal:
    """The marginal of an XOD statistic named as in :data:`XOD_STATISTICS` (``xod``: ``configured``)."""
    if statistic not in XOD_STATISTICS:
        raise ValueError(f"unknown XOD statistic {statistic!r}; one of {', '.join(XOD_STATISTICS)}")
    return XOD_STATISTICS[statistic] or configured


def _check_columns(df: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {', '.join(missing)} (needs {', '.join(REQUIRED_COLUMNS)}; has {', '.join(map(str, df.columns))})")


def load_catalogue_csv(
    path: str | os.PathLike,
    bands_kev: Sequence[Sequence[float]] = ((0.5, 1.0), (1.0, 2.0)),
    hr_bands: tuple[int, int] = (1, 0),
) -> pd.DataFrame:
    """Read a user catalogue (CSV format in the module docstring).

    Args:
        path: the CSV file.
        bands_kev: the bands of the per-band columns (config ``xray.bands_kev``).
        hr_bands: (numerator, denominator) band indices of HR (config ``detection.hr_bands``).

    Returns:
        The catalogue with columns CR [cts/s], HR and z (formed from the band columns if
        CR or HR is absent) and any others it had.
    """
    # round_trip: values written from float64 catalogues come back bit for bit
    df = pd.read_csv(path, float_precision="round_trip")
    what = f"catalogue {os.fspath(path)}"
    if not {"CR", "HR"} <= set(df.columns):
        cols = [band_column(b) for b in bands_kev]
        if set(cols) <= set(df.columns):
            rates = df[cols].to_numpy(float)
            num, den = hr_bands
            with np.errstate(divide="ignore", invalid="ignore"):
                df = df.assign(**({} if "CR" in df.columns else {"CR": rates.sum(axis=1)}),
                               **({} if "HR" in df.columns else {"HR": rates[:, num] / rates[:, den]}))
        else:
            missing = [c for c in ("CR", "HR") if c not in df.columns]
            raise ValueError(
                f"{what} has no column(s) {', '.join(missing)} and not every band column "
                f"({', '.join(cols)}) to form them from; has {', '.join(map(str, df.columns))}"
            )
    _check_columns(df, what)
    return df


def xod_from_csv(
    path: str | os.PathLike,
    bins: XodBins,
    marginal: Marginal = "none",
    bands_kev: Sequence[Sequence[float]] = ((0.5, 1.0), (1.0, 2.0)),
    hr_bands: tuple[int, int] = (1, 0),
) -> np.ndarray:
    """XOD (or marginal) of an observed catalogue, binned exactly as the simulations."""
    return xod_marginal(xod_histogram(load_catalogue_csv(path, bands_kev, hr_bands), bins), marginal)
