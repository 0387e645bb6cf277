"""Cluster overdensity fields on periodic 3D meshes.

Implements the field-level inputs of ``mls-pinocchio-cnn-field-level`` (Sect. 2.3, eq. 9):
``delta(x) = rho(x) / rho_bar - 1`` on a 64^3 Cartesian grid with piecewise cubic spline (PCS)
assignment, in three variants: all clusters (CNN), clusters weighted by ``w = L_X / <L_X>``
(CNNwX), and several luminosity cuts stacked as channels (CNN2x: L_X >= 3e43 and >= 1.08e44).

Assignment is :func:`clustersbi.mesh.assign_to_mesh` with the B-spline of order p
(Hockney & Eastwood 1981; Sefusatti et al. 2016; p = 4 PCS by default) and the cell
convention "node" (mesh point i at i H, H = L / n_mesh), the convention of the P(k) estimator.
Coordinates are comoving, h^-1 Mpc, in [0, L) (values outside are wrapped).
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from typing import Literal

import numpy as np

from .mesh import assign_to_mesh

__all__ = [
    "overdensity",
    "overdensity_field",
    "luminosity_weights",
    "FIELD_VARIANTS",
    "overdensity_variants",
]

logger = logging.getLogger(__name__)

#: Field variants understood by :func:`overdensity_variants`.
FIELD_VARIANTS = ("number", "luminosity_weighted", "luminosity_cuts")


def overdensity(mesh: np.ndarray) -> np.ndarray:
    """Overdensity ``delta = rho / rho_bar - 1`` of a density (or count) mesh (paper eq. 9).

    ``rho_bar`` is the mean of the mesh over the whole volume. Raises ValueError for an empty
    (all-zero) mesh, for which the overdensity is undefined.
    """
    mesh = np.asarray(mesh)
    mean = float(mesh.mean(dtype=np.float64))
    if not np.isfinite(mean) or mean == 0.0:
        raise ValueError(f"mesh mean is {mean}: the overdensity of an empty or invalid mesh is undefined")
    return mesh / mean - 1.0


def overdensity_field(
    positions_mpc_h: np.ndarray,
    n_mesh: int,
    box_mpc_h: float,
    scheme: int | str = "pcs",
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Overdensity of a (weighted) point set on a periodic mesh, shape (n_mesh,)*3, float64 (eq. 9)."""
    if np.asarray(positions_mpc_h).shape[0] == 0:
        raise ValueError("positions_mpc_h is empty: no overdensity field can be built from no objects")
    return overdensity(assign_to_mesh(positions_mpc_h, n_mesh, box_mpc_h, scheme, weights, convention="node"))


def luminosity_weights(l_x_erg_s: np.ndarray) -> np.ndarray:
    """Luminosity weights ``w_i = L_i / <L>`` over the catalogue (paper Sect. 2.3), shape (N,)."""
    lum = np.asarray(l_x_erg_s, dtype=np.float64)
    if lum.size == 0 or not np.all(lum > 0):
        raise ValueError("l_x_erg_s must be non-empty and strictly positive")
    return lum / lum.mean()


def overdensity_variants(
    positions_mpc_h: np.ndarray,
    l_x_erg_s: np.ndarray,
    n_mesh: int,
    box_mpc_h: float,
    variants: Sequence[Literal["number", "luminosity_weighted", "luminosity_cuts"]] = FIELD_VARIANTS,
    luminosity_cuts_erg_s: Sequence[float] = (3.0e43, 1.08e44),
    scheme: int | str = "pcs",
    dtype: type = np.float32,
) -> tuple[np.ndarray, list[str]]:
    """Overdensity fields of a cluster catalogue in several variants, stacked as channels.

    Variants (paper Sect. 2.3):
      * "number": unweighted overdensity of all clusters given (CNN input);
      * "luminosity_weighted": each cluster weighted by ``L_X / <L_X>`` (CNNwX);
      * "luminosity_cuts": one unweighted channel per cut ``L_X >= cut`` (CNN2x with the
        default cuts 3e43 and 1.08e44 h^-2 erg/s).

    Args:
        positions_mpc_h: comoving positions, h^-1 Mpc, shape (N, 3).
        l_x_erg_s: luminosities, h^-2 erg/s, shape (N,).
        n_mesh: cells per side; box_mpc_h: box side, h^-1 Mpc.
        variants: which variants, in channel order.
        luminosity_cuts_erg_s: thresholds of the "luminosity_cuts" variant, h^-2 erg/s.
        scheme: assignment scheme (default PCS as in the paper).
        dtype: dtype of the returned stack.

    Returns:
        (fields, names): fields of shape (C, n_mesh, n_mesh, n_mesh) and the C channel names
        (e.g. "number", "luminosity_weighted", "cut_3e+43").
    """
    pos = np.asarray(positions_mpc_h, dtype=np.float64)
    lum = np.asarray(l_x_erg_s, dtype=np.float64)
    if lum.shape != (pos.shape[0],):
        raise ValueError(f"l_x_erg_s must have shape ({pos.shape[0]},), got {lum.shape}")
    unknown = [v for v in variants if v not in FIELD_VARIANTS]
    if unknown or len(variants) == 0:
        raise ValueError(f"variants must be a non-empty subset of {FIELD_VARIANTS}, got {list(variants)}")
    fields: list[np.ndarray] = []
    names: list[str] = []
    for variant in variants:
        if variant == "number":
            fields.append(overdensity_field(pos, n_mesh, box_mpc_h, scheme))
            names.append("number")
        elif variant == "luminosity_weighted":
            fields.append(overdensity_field(pos, n_mesh, box_mpc_h, scheme, luminosity_weights(lum)))
            names.append("luminosity_weighted")
        else:
            if len(luminosity_cuts_erg_s) == 0:
                raise ValueError("luminosity_cuts_erg_s must not be empty for the 'luminosity_cuts' variant")
            for cut in luminosity_cuts_erg_s:
                keep = lum >= cut
                if np.any(keep):
                    fields.append(overdensity_field(pos[keep], n_mesh, box_mpc_h, scheme))
                else:
                    # A small box (or a low-sigma_8 cosmology) can have no cluster above a high
                    # cut. The overdensity of nothing is undefined; a zero channel carries "no
                    # clustering information", and the abundance summary carries the count.
                    logger.warning("no cluster has L_X >= %g h^-2 erg/s: channel set to zero", cut)
                    fields.append(np.zeros((n_mesh,) * 3))
                names.append(f"cut_{cut:.3g}")
    return np.stack(fields).astype(dtype, copy=False), names
