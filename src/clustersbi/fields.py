"""Mass assignment of point sets onto periodic 3D meshes, and cluster overdensity fields.

Implements the field-level inputs of ``mls-pinocchio-cnn-field-level`` (Sect. 2.3, eq. 9):
``delta(x) = rho(x) / rho_bar - 1`` on a 64^3 Cartesian grid with piecewise cubic spline (PCS)
assignment, in three variants: all clusters (CNN), clusters weighted by ``w = L_X / <L_X>``
(CNNwX), and several luminosity cuts stacked as channels (CNN2x: L_X >= 3e43 and >= 1.08e44).

Assignment kernels are the B-splines of order p (Hockney & Eastwood 1981; Sefusatti et al.
2016): p = 1 NGP, 2 CIC, 3 TSC, 4 PCS. Mesh nodes sit at ``x_i = i H`` with ``H = L / n_mesh``,
``i = 0..n_mesh-1``, and the mesh is periodic. Coordinates are comoving, h^-1 Mpc, in [0, L)
(values outside are wrapped).

The implementation is vectorised numpy: per axis, the p weights and node indices of each point,
then an outer product over the p^3 stencil and one ``np.bincount``, in chunks of points so that
memory stays bounded (a few times ``max(n_mesh^3, 2^15 p^3)`` numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from typing import Literal

import numpy as np

__all__ = [
    "ASSIGNMENT_ORDERS",
    "assignment_order",
    "kernel_weights",
    "assign_to_mesh",
    "overdensity",
    "overdensity_field",
    "luminosity_weights",
    "FIELD_VARIANTS",
    "overdensity_variants",
]

#: Assignment scheme names and their B-spline orders.
ASSIGNMENT_ORDERS = {"ngp": 1, "cic": 2, "tsc": 3, "pcs": 4}

#: Field variants understood by :func:`overdensity_variants`.
logger = logging.getLogger(__name__)

FIELD_VARIANTS = ("number", "luminosity_weighted", "luminosity_cuts")


def assignment_order(scheme: int | str) -> int:
    """B-spline order (1-4) of an assignment scheme given by name ("ngp", "cic", "tsc", "pcs") or order."""
    if isinstance(scheme, str):
        key = scheme.lower()
        if key not in ASSIGNMENT_ORDERS:
            raise ValueError(f"assignment scheme must be one of {sorted(ASSIGNMENT_ORDERS)}, got {scheme!r}")
        return ASSIGNMENT_ORDERS[key]
    order = int(scheme)
    if order not in (1, 2, 3, 4) or order != scheme:
        raise ValueError(f"assignment order must be 1, 2, 3 or 4, got {scheme!r}")
    return order


def kernel_weights(x_cells: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """One-dimensional B-spline assignment weights of order ``order`` on a unit-spaced grid.

    Args:
        x_cells: coordinates in units of the cell size (nodes at integers), shape (N,).
        order: 1 (NGP), 2 (CIC), 3 (TSC) or 4 (PCS).

    Returns:
        (first_node, weights): the integer index of the leftmost node of each point's stencil,
        shape (N,) int64 (not wrapped), and the weights of nodes ``first_node + j``,
        shape (N, order), which sum to 1 for each point.
    """
    x = np.asarray(x_cells, dtype=np.float64)
    if order in (1, 3):
        nearest = np.floor(x + 0.5)
        first = nearest - (order - 1) // 2
        s = x - nearest  # in [-1/2, 1/2)
        if order == 1:
            w = np.ones((x.size, 1))
        else:  # TSC
            w = np.stack([0.5 * (0.5 - s) ** 2, 0.75 - s**2, 0.5 * (0.5 + s) ** 2], axis=1)
    elif order in (2, 4):
        left = np.floor(x)
        first = left - (order // 2 - 1)
        t = x - left  # in [0, 1)
        if order == 2:
            w = np.stack([1.0 - t, t], axis=1)
        else:  # PCS: cubic B-spline, distances 1+t, t, 1-t, 2-t to the four nodes
            u = 1.0 - t
            w = np.stack(
                [u**3 / 6.0, (4.0 - 6.0 * t**2 + 3.0 * t**3) / 6.0, (4.0 - 6.0 * u**2 + 3.0 * u**3) / 6.0, t**3 / 6.0],
                axis=1,
            )
    else:
        raise ValueError(f"order must be 1, 2, 3 or 4, got {order!r}")
    return first.astype(np.int64), w


def assign_to_mesh(
    positions_mpc_h: np.ndarray,
    n_mesh: int,
    box_mpc_h: float,
    scheme: int | str = "pcs",
    weights: np.ndarray | None = None,
    shift_cells: float = 0.0,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Assign (weighted) points to a periodic mesh with an order-p B-spline kernel.

    Args:
        positions_mpc_h: comoving positions, h^-1 Mpc, shape (N, 3); wrapped into [0, L).
        n_mesh: cells per side.
        box_mpc_h: box side L, h^-1 Mpc.
        scheme: "ngp", "cic", "tsc", "pcs" or the order 1-4.
        weights: per-point weights, shape (N,); default 1 (number counts).
        shift_cells: shift added to every coordinate, in cells (0.5 gives the interlaced mesh).
        chunk_size: points per vectorised chunk (default chosen from n_mesh and the order).

    Returns:
        mesh of summed weights per node, shape (n_mesh, n_mesh, n_mesh), float64; its sum is the
        sum of the weights (exactly, up to rounding).
    """
    order = assignment_order(scheme)
    pos = np.asarray(positions_mpc_h, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions_mpc_h must have shape (N, 3), got {pos.shape}")
    if int(n_mesh) != n_mesh or n_mesh < 1:
        raise ValueError(f"n_mesh must be a positive integer, got {n_mesh}")
    if not box_mpc_h > 0:
        raise ValueError(f"box_mpc_h must be > 0, got {box_mpc_h}")
    n_mesh = int(n_mesh)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (pos.shape[0],):
            raise ValueError(f"weights must have shape ({pos.shape[0]},), got {weights.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions_mpc_h contains non-finite values")
    n_cells = n_mesh**3
    if chunk_size is None:
        # small chunks stay in cache; for large meshes, chunks big enough that the per-chunk
        # bincount over all n_mesh^3 cells is not the dominant cost
        chunk_size = max(1 << 15, n_cells // order**3)
    cell = box_mpc_h / n_mesh
    stencil = np.arange(order)
    mesh = np.zeros(n_cells, dtype=np.float64)
    for start in range(0, pos.shape[0], chunk_size):
        stop = min(start + chunk_size, pos.shape[0])
        x = np.mod(pos[start:stop] / cell + shift_cells, n_mesh)
        index, kernel = [], []
        for axis in range(3):
            first, w = kernel_weights(x[:, axis], order)
            index.append(np.mod(first[:, None] + stencil[None, :], n_mesh))  # (n, p)
            kernel.append(w)
        # flat cell index and weight of each of the p^3 stencil nodes, shape (n, p, p, p)
        flat = np.empty((stop - start, order, order, order), dtype=np.intp)
        np.add((index[0] * n_mesh**2)[:, :, None, None], (index[1] * n_mesh)[:, None, :, None], out=flat)
        flat += index[2][:, None, None, :]
        wprod = np.empty((stop - start, order, order, order), dtype=np.float64)
        np.multiply(kernel[0][:, :, None, None], kernel[1][:, None, :, None], out=wprod)
        wprod *= kernel[2][:, None, None, :]
        if weights is not None:
            wprod *= weights[start:stop, None, None, None]
        mesh += np.bincount(flat.ravel(), weights=wprod.ravel(), minlength=n_cells)
    return mesh.reshape(n_mesh, n_mesh, n_mesh)


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
    return overdensity(assign_to_mesh(positions_mpc_h, n_mesh, box_mpc_h, scheme, weights))


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
