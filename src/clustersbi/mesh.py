"""Mass assignment on periodic meshes: the one painter of the package.

Every grid of the project (PM density, LDL input and output, synthetic and CAMELS gas, the
X-ray painter's cells, the catalogue fields and P(k) meshes) is made here, so that they line up.

Cell convention (:data:`CellConvention`, an explicit argument of every function), for cells of
size H = L / N along an axis:

- ``"centre"``: cell i spans [i H, (i + 1) H) and its value is centred at (i + 1/2) H: a
  particle at a cell centre puts all its weight into that cell. The PM density is painted in
  it (the PM force mesh's points are these cell centres; the particles start half a cell off
  them, where CIC weights are linear in the displacement, see :func:`clustersbi.pm.run_pm`), and
  the X-ray painter integrates cell k of a slab over [chi_lo + k H, chi_lo + (k + 1) H): the
  grids of the simulation chain use this convention.
- ``"node"``: mesh point i sits at i H (pmesh, JaxPM, Pylians): the convention of the
  catalogue P(k) estimator (interlacing shifts of half a cell are defined from it).

The two differ by a translation of half a cell; a P(k) does not see it, a map does.

Kernels: B-splines of order 1-4 (NGP, CIC, TSC, PCS; Hockney & Eastwood 1988, Sect. 5-3) in
numpy or, compiled, in XLA (:func:`assign_to_mesh`, ``engine``), and a jit-able, differentiable
CIC pair in JAX (:func:`cic_paint` / :func:`cic_read`, in Mpc/h; :func:`cic_scatter` /
:func:`cic_gather`, in mesh units, for the PM force) for any number of particles on any
rectangular mesh.

Speed on a CPU (benchmarks/pm_step.py, benchmarks/RESULTS.md): XLA's CPU scatter and gather
cost a few ns per element, so what matters is how many elements a kernel moves and how much
index arithmetic each one repeats. The CIC read gathers from the field padded by one periodic
layer, so that the 8 neighbours of a particle are one flat index plus 8 constants (no
wrap-around per neighbour); the paint scatters one 2x2x2 window per particle into a padded
mesh folded back afterwards. Neither needs the particles sorted; a sort (XLA's CPU sort takes
~1 s for 2e6 keys) or ``segment_sum`` over 8 flat indices per particle (~2x slower than the
window) costs more than it saves.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "CellConvention",
    "ASSIGNMENT_ORDERS",
    "assignment_order",
    "kernel_weights",
    "assign_to_mesh",
    "to_mesh_units",
    "cic_scatter",
    "cic_gather",
    "cic_gather_add",
    "cic_paint",
    "cic_read",
    "particle_density",
]

#: Where cell i of a mesh sits (module docstring).
CellConvention = Literal["centre", "node"]
#: Mesh-unit coordinate of the centre of cell 0 per convention (x_mesh = x / H - offset).
_CENTRE_OFFSET = {"centre": 0.5, "node": 0.0}

#: B-spline order of each assignment scheme.
ASSIGNMENT_ORDERS = {"ngp": 1, "cic": 2, "tsc": 3, "pcs": 4}


def _mesh_shape(mesh_shape: int | Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in np.broadcast_to(np.asarray(mesh_shape), (3,)))
    if min(shape) < 1 or np.any(np.asarray(mesh_shape) != np.round(np.asarray(mesh_shape))):
        raise ValueError(f"mesh_shape must be positive integers (one or three), got {mesh_shape!r}")
    return shape


def _box_sides(box_mpc_h: float | Sequence[float]) -> np.ndarray:
    box = np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,)).copy()
    if not np.all(box > 0):
        raise ValueError(f"box_mpc_h must be positive, got {box_mpc_h!r}")
    return box


def _check_convention(convention: str) -> float:
    if convention not in _CENTRE_OFFSET:
        raise ValueError(f"convention must be one of {sorted(_CENTRE_OFFSET)}, got {convention!r}")
    return _CENTRE_OFFSET[convention]


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
    mesh_shape: int | Sequence[int],
    box_mpc_h: float | Sequence[float],
    scheme: int | str = "pcs",
    weights: np.ndarray | None = None,
    *,
    convention: CellConvention,
    shift_cells: float = 0.0,
    chunk_size: int | None = None,
    engine: Literal["numpy", "jax"] = "numpy",
) -> np.ndarray:
    """Assign (weighted) points to a periodic mesh with an order-p B-spline kernel.

    Args:
        positions_mpc_h: comoving positions [Mpc/h], shape (N, 3); wrapped into the box.
        mesh_shape: cells per axis, an int (cube) or (3,).
        box_mpc_h: box side(s) [Mpc/h], scalar or (3,).
        scheme: "ngp", "cic", "tsc", "pcs" or the order 1-4.
        weights: per-point weights, shape (N,); default 1 (number counts).
        convention: where cell i sits (:data:`CellConvention`; see the module docstring).
        shift_cells: shift added to every coordinate, in cells (0.5 gives the interlaced mesh).
        chunk_size: points per vectorised chunk (default chosen from the mesh and the order).
        engine: "numpy" (float64 throughout) or "jax": the same stencils (indices and 1D
            weights from float64 positions) deposited by a compiled XLA scatter and summed in
            float32, several times faster on a CPU (e.g. PCS, 2e5 points, 128^3: 0.09 s vs
            0.25 s; benchmarks/power_spectrum.py); cells agree to float32 round-off
            (~1e-7 of the largest cell). Compiles once per (chunk, order, mesh) in a process.

    Returns:
        mesh of summed weights per cell, shape ``mesh_shape`` (3,), float64 ("numpy") or
        float32 ("jax"); its sum is the sum of the weights (up to rounding).
    """
    order = assignment_order(scheme)
    shape = _mesh_shape(mesh_shape)
    box = _box_sides(box_mpc_h)
    pos = np.asarray(positions_mpc_h, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions_mpc_h must have shape (N, 3), got {pos.shape}")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (pos.shape[0],):
            raise ValueError(f"weights must have shape ({pos.shape[0]},), got {weights.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions_mpc_h contains non-finite values")
    if engine == "jax":
        return _assign_to_mesh_jax(pos, shape, box, order, weights, _check_convention(convention), shift_cells)
    if engine != "numpy":
        raise ValueError(f"engine must be 'numpy' or 'jax', got {engine!r}")
    n_cells = int(np.prod(shape))
    if chunk_size is None:
        # small chunks stay in cache; for large meshes, chunks big enough that the per-chunk
        # bincount over all cells is not the dominant cost
        chunk_size = max(1 << 15, n_cells // order**3)
    shape_arr = np.asarray(shape)
    cells_per_mpc_h = shape_arr / box
    offset = shift_cells - _check_convention(convention)
    stencil = np.arange(order)
    mesh = np.zeros(n_cells, dtype=np.float64)
    for start in range(0, pos.shape[0], chunk_size):
        stop = min(start + chunk_size, pos.shape[0])
        x = np.mod(pos[start:stop] * cells_per_mpc_h + offset, shape_arr)
        index, kernel = [], []
        for axis in range(3):
            first, w = kernel_weights(x[:, axis], order)
            index.append(np.mod(first[:, None] + stencil[None, :], shape[axis]))  # (n, p)
            kernel.append(w)
        # flat cell index and weight of each of the p^3 stencil nodes, shape (n, p, p, p)
        flat = np.empty((stop - start, order, order, order), dtype=np.intp)
        np.add((index[0] * (shape[1] * shape[2]))[:, :, None, None], (index[1] * shape[2])[:, None, :, None], out=flat)
        flat += index[2][:, None, None, :]
        wprod = np.empty((stop - start, order, order, order), dtype=np.float64)
        np.multiply(kernel[0][:, :, None, None], kernel[1][:, None, :, None], out=wprod)
        wprod *= kernel[2][:, None, None, :]
        if weights is not None:
            wprod *= weights[start:stop, None, None, None]
        mesh += np.bincount(flat.ravel(), weights=wprod.ravel(), minlength=n_cells)
    return mesh.reshape(shape)


#: Points per compiled deposit call of the "jax" engine (powers of two from 2^8: few compilations).
_JAX_ASSIGN_CHUNK = 1 << 13


def _bspline_weights_jnp(s, order: int):
    """(n, order) B-spline weights on a unit grid from the offset ``s`` of :func:`kernel_weights`
    (distance to the nearest node for orders 1 and 3, to the left node for 2 and 4)."""

    if order == 1:
        return jnp.ones_like(s)[:, None]
    if order == 2:
        return jnp.stack([1.0 - s, s], axis=1)
    if order == 3:
        return jnp.stack([0.5 * (0.5 - s) ** 2, 0.75 - s**2, 0.5 * (0.5 + s) ** 2], axis=1)
    u = 1.0 - s
    return jnp.stack(
        [u**3 / 6.0, (4.0 - 6.0 * s**2 + 3.0 * s**3) / 6.0, (4.0 - 6.0 * u**2 + 3.0 * u**3) / 6.0, s**3 / 6.0], axis=1
    )


@partial(jax.jit, static_argnames=("order",), donate_argnums=(0,))
def _deposit_bspline(padded, first, offset, point_weight, order: int):
    """Add one chunk of order-p stencils to a mesh padded by p - 1 cells on the high side of
    each axis (first: (n, 3) int32 in [0, n_i); offset: (n, 3); point_weight: (n,))."""

    wx, wy, wz = (_bspline_weights_jnp(offset[:, a], order) for a in range(3))
    window = (wx * point_weight[:, None])[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]
    dnums = lax.ScatterDimensionNumbers(
        update_window_dims=(1, 2, 3), inserted_window_dims=(), scatter_dims_to_operand_dims=(0, 1, 2)
    )
    return lax.scatter_add(padded, first, window, dnums, mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)


@partial(jax.jit, static_argnames=("shape",))
def _fold_periodic_padding(padded, shape: tuple[int, int, int]):
    """Add the high-side padding of a mesh back onto its first cells (periodic) -> ``shape``.

    One pass: the mesh plus its up to 7 wrapped images (padding along one, two or three axes),
    each zero-padded to ``shape`` (XLA fuses the sum into one loop over the output).
    """

    pads = [padded.shape[a] - shape[a] for a in range(3)]
    out = None
    for images in np.ndindex(2, 2, 2):
        if any(img and not pads[a] for a, img in enumerate(images)):
            continue
        part = padded[tuple(slice(shape[a], None) if img else slice(0, shape[a]) for a, img in enumerate(images))]
        part = jnp.pad(part, [(0, shape[a] - pads[a]) if img else (0, 0) for a, img in enumerate(images)])
        out = part if out is None else out + part
    return out


def _assign_to_mesh_jax(pos, shape, box, order, weights, centre_offset, shift_cells):
    """The "jax" engine of :func:`assign_to_mesh` (validated arguments; float32 mesh out)."""

    shape_arr = np.asarray(shape)
    x = pos * (shape_arr / box) + (shift_cells - centre_offset)
    x -= shape_arr * np.floor(x / shape_arr)  # into [0, n] (np.mod's float path is ~10x slower)
    if order in (1, 3):
        node = np.floor(x + 0.5)
        first = node - (order - 1) // 2
    else:
        node = np.floor(x)
        first = node - (order // 2 - 1)
    offset = (x - node).astype(np.float32)
    first = np.mod(first, shape_arr).astype(np.int32)
    # Deposit plane by plane: points ordered by the first x node (a linear-time radix sort of
    # 16-bit keys) touch a few planes of the mesh at a time instead of all of it at random,
    # which halves the scatter's time once the mesh outgrows the cache (PCS, 256^3, 2e5 points).
    order_x = np.argsort(first[:, 0].astype(np.uint16), kind="stable") if shape[0] < (1 << 16) else slice(None)
    first, offset = first[order_x], offset[order_x]
    n = pos.shape[0]
    chunk = min(_JAX_ASSIGN_CHUNK, max(256, 1 << int(np.ceil(np.log2(max(n, 1))))))
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    point_weight = np.ones(n, np.float32) if weights is None else weights[order_x].astype(np.float32)
    if pad:
        first = np.concatenate([first, np.zeros((pad, 3), np.int32)])
        offset = np.concatenate([offset, np.zeros((pad, 3), np.float32)])
        point_weight = np.concatenate([point_weight, np.zeros(pad, np.float32)])
    padded = jnp.zeros(tuple(int(s) + order - 1 for s in shape), jnp.float32)
    for c in range(n_chunks):
        part = slice(c * chunk, (c + 1) * chunk)
        padded = _deposit_bspline(padded, first[part], offset[part], point_weight[part], order=order)
    return np.array(_fold_periodic_padding(padded, tuple(int(s) for s in shape)))  # writable


def _cic_window_weights(frac):
    """(n, 2, 2, 2) CIC weights of the 8 mesh points around each particle; frac (n, 3) in [0, 1)."""

    wx, wy, wz = (jnp.stack([1.0 - frac[:, i], frac[:, i]], axis=1) for i in range(3))
    return wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]


def _cic_base(x, shape):
    """Lower mesh point (wrapped into the mesh) and fractional offset of (n, 3) mesh-unit positions."""

    base = jnp.floor(x)
    frac = x - base
    base = jnp.mod(base.astype(jnp.int32), jnp.asarray(shape, jnp.int32))
    return base, frac


#: Fewest particles per independent scatter when :func:`cic_scatter` splits its work.
_MIN_PARTICLES_PER_SCATTER = 1 << 16


def _scatter_parts(n_particles: int) -> int:
    """Independent scatters for ``n_particles`` (traced once per shape).

    XLA's CPU scatter is a serial loop, but the CPU runtime runs independent operations
    concurrently: one scatter per core into its own mesh, summed after, uses every core
    (measured on 2 cores: 46 vs 61 ms wall for 2e6 particles, 7% more CPU time). On a GPU a
    scatter is already parallel: one.
    """
    if jax.default_backend() != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return int(max(1, min(cores, 4, n_particles // _MIN_PARTICLES_PER_SCATTER)))


def _chunked(n: int, chunk_size: int | None) -> tuple[int, int]:
    """(particles per chunk, number of chunks) of ``n`` particles; (n, 1) unchunked."""
    if chunk_size is None or int(chunk_size) >= n:
        return n, 1
    if int(chunk_size) < 1 or int(chunk_size) != chunk_size:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return int(chunk_size), -(-n // int(chunk_size))


def _over_chunks(n: int, chunk_size: int | None, step, carry):
    """Fold ``step(carry, start, size, new)`` over the particles [0, n) in chunks of ``chunk_size``.

    All chunks run in one ``lax.fori_loop`` (traced once: the per-particle intermediates of
    ``step`` exist for one chunk at a time). When ``chunk_size`` does not divide n, the last
    chunk is the last ``chunk_size`` particles, overlapping the one before: ``new`` (a (size,)
    bool mask) marks the particles a chunk sees for the first time, and ``step`` must give the
    others no weight when it accumulates. (A separate remainder chunk after the loop would
    make XLA copy the carried arrays: ~18 bytes per particle more for a PM kick, measured.)
    Unchunked, ``step(carry, 0, n, None)``.
    """
    size, n_chunks = _chunked(n, chunk_size)
    if n_chunks == 1:
        return step(carry, 0, n, None)

    def body(i, c):
        first_new = i * size
        start = jnp.minimum(first_new, n - size)
        return step(c, start, size, start + jnp.arange(size) >= first_new)

    return lax.fori_loop(0, n_chunks, body, carry)


def _rows(a, start, size: int):
    """Rows [start, start + size) of ``a`` (a static slice, or a dynamic one for a traced start)."""
    if isinstance(start, int):
        return a[start : start + size]
    return lax.dynamic_slice_in_dim(a, start, size, axis=0)


#: 2x2x2 windows scattered at their lower corner (the padded mesh needs no wrap-around).
_WINDOW_SCATTER = lax.ScatterDimensionNumbers(
    update_window_dims=(1, 2, 3), inserted_window_dims=(), scatter_dims_to_operand_dims=(0, 1, 2)
)


def _scatter_windows(padded, x, shape, weights):
    """Add the CIC windows of (n, 3) mesh-unit positions (times (n,) weights or None) to a mesh
    padded by one layer on the high side of each axis."""
    base, frac = _cic_base(x, shape)
    w = _cic_window_weights(frac).astype(padded.dtype)
    if weights is not None:
        w = w * weights.reshape(-1, 1, 1, 1)
    return lax.scatter_add(padded, base, w, _WINDOW_SCATTER, mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _fold_high_layer(mesh):
    """(n0 + 1, n1 + 1, n2 + 1) mesh -> (n0, n1, n2), the high layer added onto index 0 (periodic)."""
    mesh = mesh.at[0].add(mesh[-1])[:-1]
    mesh = mesh.at[:, 0].add(mesh[:, -1])[:, :-1]
    return mesh.at[:, :, 0].add(mesh[:, :, -1])[:, :, :-1]


def cic_scatter(x, shape: tuple[int, int, int], weights=None, chunk_size: int | None = None):
    """CIC painting in mesh units (jit-able): mesh points at integer coordinates, periodic.

    Equivalent to ``jaxpm.painting.cic_paint`` (same kernel, 1 - |x - x_i| per axis) for any
    number of particles and any mesh. Each particle scatters one 2x2x2 window (a single XLA
    scatter with a window, into a mesh padded by one layer that is then folded back
    periodically): on the CPU this is 2-5x faster than eight point scatters per particle, and
    faster than ``segment_sum`` over 8 flat indices, 1-d windows of 2 or chunked scatters
    (benchmarks/RESULTS.md). On a multi-core CPU the particles are split into one independent
    scatter per core (:func:`_scatter_parts`).

    Device memory: unchunked, the scatter's per-particle intermediates (lower mesh points,
    int32 (n, 3); fractional offsets, (n, 3); windows, (n, 2, 2, 2)) are ~56 bytes per particle
    besides the positions. With ``chunk_size`` they exist for one chunk at a time (one scatter
    per chunk into one mesh, in a ``lax.fori_loop``; a paper-scale slab of 2e7 particles then
    needs ~1 GB less), at the cost of summing in another order (float32 round-off).

    Args:
        x: (n, 3) positions in mesh units (float32; float64 with ``jax_enable_x64``).
        shape: mesh cells per axis.
        weights: (n,) weights (default 1).
        chunk_size: particles per scatter (None: all at once); any n (the last chunk overlaps
            the one before, its repeated particles with weight 0).

    Returns:
        ``shape`` jax array, float32 (float64 for float64 positions or weights with ``jax_enable_x64``).
    """

    x = x.reshape(-1, 3)
    w_all = None if weights is None else weights.reshape(-1)
    dtype = x.dtype if w_all is None else jnp.result_type(x.dtype, w_all.dtype)
    n = x.shape[0]
    padded_shape = tuple(s + 1 for s in shape)
    if chunk_size is not None and int(chunk_size) < n:
        def deposit(padded, start, size, new):
            w = None if w_all is None else _rows(w_all, start, size)
            if new is not None:  # particles of an overlapping last chunk already deposited: weight 0
                w = jnp.where(new, jnp.asarray(1, dtype) if w is None else w, jnp.asarray(0, dtype))
            return _scatter_windows(padded, _rows(x, start, size), shape, w)

        return _fold_high_layer(_over_chunks(n, chunk_size, deposit, jnp.zeros(padded_shape, dtype)))
    parts = _scatter_parts(n)
    mesh = None
    for part in range(parts):
        lo, hi = n * part // parts, n * (part + 1) // parts
        w = None if w_all is None else w_all[lo:hi]
        one = _scatter_windows(jnp.zeros(padded_shape, dtype), x[lo:hi], shape, w)
        mesh = one if mesh is None else mesh + one
    return _fold_high_layer(mesh)


#: One scalar per index of a flat operand: ``flat[idx]`` without jnp's negative-index fix-up.
_GATHER_SCALAR = lax.GatherDimensionNumbers(offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,))


def _pad_periodic_high(field):
    """(n0, n1, n2) periodic field -> (n0 + 1, n1 + 1, n2 + 1), index n_i holding index 0."""

    return jnp.pad(field, ((0, 1), (0, 1), (0, 1)), mode="wrap")


def _interpolate_padded(padded, shape: tuple[int, int, int], x):
    """CIC values at (n, 3) mesh-unit positions of flat fields padded by :func:`_pad_periodic_high`
    -> list of (n,), one per field."""

    base, frac = _cic_base(x.reshape(-1, 3), shape)
    s0, s1 = (shape[1] + 1) * (shape[2] + 1), shape[2] + 1
    flat = base[:, 0] * s0 + base[:, 1] * s1 + base[:, 2]
    outs = [None] * len(padded)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                kern = (
                    (frac[:, 0] if dx else 1.0 - frac[:, 0])
                    * (frac[:, 1] if dy else 1.0 - frac[:, 1])
                    * (frac[:, 2] if dz else 1.0 - frac[:, 2])
                )
                idx = (flat + (dx * s0 + dy * s1 + dz))[:, None]
                for c, field in enumerate(padded):
                    value = lax.gather(field, idx, _GATHER_SCALAR, (1,), mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
                    term = value * kern
                    outs[c] = term if outs[c] is None else outs[c] + term
    return outs


def _interpolate_wrapped(flat_fields, shape: tuple[int, int, int], x):
    """CIC values at (n, 3) mesh-unit positions of flat, unpadded periodic fields -> list of (n,).

    The neighbour indices wrap per axis (more index arithmetic than :func:`_interpolate_padded`)
    so that no padded copy of a field (one mesh more) is made: for chunked reads, where device
    memory is what counts. Same weights and order of the sum as the padded read.
    """

    base, frac = _cic_base(x.reshape(-1, 3), shape)
    upper = [jnp.where(base[:, a] + 1 == shape[a], 0, base[:, a] + 1) for a in range(3)]
    outs = [None] * len(flat_fields)
    for dx in (0, 1):
        i = upper[0] if dx else base[:, 0]
        for dy in (0, 1):
            j = upper[1] if dy else base[:, 1]
            for dz in (0, 1):
                k = upper[2] if dz else base[:, 2]
                kern = (
                    (frac[:, 0] if dx else 1.0 - frac[:, 0])
                    * (frac[:, 1] if dy else 1.0 - frac[:, 1])
                    * (frac[:, 2] if dz else 1.0 - frac[:, 2])
                )
                idx = ((i * shape[1] + j) * shape[2] + k)[:, None]
                for c, field in enumerate(flat_fields):
                    value = lax.gather(field, idx, _GATHER_SCALAR, (1,), mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
                    term = value * kern
                    outs[c] = term if outs[c] is None else outs[c] + term
    return outs


def _cic_interpolate(fields, x, chunk_size: int | None = None):
    """CIC interpolation of scalar fields (one mesh shape) at (n, 3) mesh-unit positions -> list of (n,).

    Each field is padded by one periodic layer on the high side of every axis, so the 8
    neighbours of a particle sit at one flat index plus 8 constant offsets: each neighbour is a
    plain one-element gather, with no wrap-around arithmetic repeated per neighbour and field.
    Weights and the order of the sum are those of :func:`cic_scatter` and the previous
    implementation (bit-identical values). With ``chunk_size``, the particles are read in
    chunks (:func:`cic_gather`), each value by the same formula (equal to float32 round-off:
    XLA may fuse the arithmetic differently inside the loop).
    """

    shape = tuple(fields[0].shape)
    x = x.reshape(-1, 3)
    padded = [_pad_periodic_high(f).reshape(-1) for f in fields]
    n = x.shape[0]
    if chunk_size is None or int(chunk_size) >= n:
        return _interpolate_padded(padded, shape, x)
    dtype = jnp.result_type(fields[0].dtype, x.dtype)

    def read(outs, start, size, new):
        # rows of an overlapping last chunk are written twice with the same values
        values = _interpolate_padded(padded, shape, _rows(x, start, size))
        return [lax.dynamic_update_slice_in_dim(o, v.astype(dtype), start, axis=0) for o, v in zip(outs, values)]

    return _over_chunks(n, chunk_size, read, [jnp.zeros(n, dtype) for _ in fields])


def cic_gather(mesh_vec, x, chunk_size: int | None = None):
    """CIC interpolation in mesh units (jit-able) of a vector field at (n, 3) positions.

    Equivalent to ``jaxpm.painting.cic_read`` applied per component, for any number of
    particles (values identical to float32 round-off).

    Device memory: unchunked, the read's per-particle intermediates (flat indices, fractional
    offsets, the 8 weights and gathered values) are tens of bytes per particle besides the
    output; with ``chunk_size`` they exist for one chunk at a time (a ``lax.fori_loop`` over
    equal chunks writing into the (n,) outputs; the last one overlaps the one before when
    ``chunk_size`` does not divide n). Values are the same to float32 round-off.

    Args:
        mesh_vec: shape + (c,) field on a periodic mesh (mesh points at integer coordinates),
            or a sequence of c scalar fields of one shape (e.g. the three inverse FFTs of a PM
            force, which then need not be stacked).
        x: (n, 3) positions in mesh units.
        chunk_size: particles per chunk (None: all at once).

    Returns:
        (n, c) interpolated values.
    """

    if isinstance(mesh_vec, (list, tuple)):
        fields = list(mesh_vec)
    else:
        fields = [mesh_vec[..., c] for c in range(mesh_vec.shape[-1])]
    for f in fields:
        if f.shape != fields[0].shape or f.ndim != 3:
            raise ValueError(f"cic_gather needs fields of one 3-d shape, got {[tuple(f.shape) for f in fields]}")
    return jnp.stack(_cic_interpolate(fields, x, chunk_size), axis=-1)


def cic_gather_add(out, mesh_vec, x, scale, chunk_size: int | None = None, columns: Sequence[int] | None = None):
    """``out[:, columns] += scale * cic_gather(mesh_vec, x)``, chunk by chunk, with no (n, c) values array.

    The kick of a PM integrator (momenta += kick factor * force read at the particles): each
    chunk's values are added to its rows of ``out`` inside the loop, so besides ``out`` (updated
    in place when it is a donated or loop-carried buffer) only one chunk's intermediates exist.

    Args:
        out: (n, c_out) array.
        mesh_vec: fields as :func:`cic_gather` (c of them).
        x: (n, 3) positions in mesh units.
        scale: scalar factor of the values.
        chunk_size: particles per chunk (None: all at once).
        columns: the c columns of ``out`` that receive the c fields (default 0..c-1).

    Returns:
        the updated ``out`` (same shape and dtype).
    """

    fields = list(mesh_vec) if isinstance(mesh_vec, (list, tuple)) else [mesh_vec[..., c] for c in range(mesh_vec.shape[-1])]
    shape = tuple(fields[0].shape)
    if any(f.shape != shape or f.ndim != 3 for f in fields):
        raise ValueError(f"cic_gather_add needs fields of one 3-d shape, got {[tuple(f.shape) for f in fields]}")
    columns = tuple(range(len(fields))) if columns is None else tuple(int(c) for c in columns)
    x = x.reshape(-1, 3)
    if len(columns) != len(fields) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"out {tuple(out.shape)}, columns {columns} do not match {len(fields)} fields at {x.shape[0]} positions")
    if _chunked(x.shape[0], chunk_size)[1] == 1:
        padded = [_pad_periodic_high(f).reshape(-1) for f in fields]
        interpolate = partial(_interpolate_padded, padded, shape)
    else:  # chunked for device memory: read the fields in place, without a padded copy
        flat_fields = [f.reshape(-1) for f in fields]
        interpolate = partial(_interpolate_wrapped, flat_fields, shape)

    def add(acc, start, size, new):
        values = interpolate(_rows(x, start, size))
        if isinstance(start, int):  # unchunked
            if columns == tuple(range(acc.shape[1])):  # every column: a plain addition, not a scatter
                return acc + jnp.stack([scale * v for v in values], axis=-1).astype(acc.dtype)
            return acc.at[:, columns].add(jnp.stack([scale * v for v in values], axis=-1).astype(acc.dtype))
        rows = _rows(acc, start, size)
        for c, v in zip(columns, values):
            # rows of an overlapping last chunk already updated get nothing
            rows = rows.at[:, c].add(jnp.where(new, scale * v, 0).astype(acc.dtype))
        return lax.dynamic_update_slice_in_dim(acc, rows, start, axis=0)

    return _over_chunks(x.shape[0], chunk_size, add, out)


def to_mesh_units(pos_mpc_h, mesh_shape: Sequence[int], box_mpc_h, convention: CellConvention):
    """(N, 3) positions [Mpc/h] -> mesh units in which mesh point i (integer) is cell i's centre.

    float32 (float64 for float64 positions with ``jax_enable_x64``, e.g. finite-difference checks).
    """
    offset = _check_convention(convention)
    pos = jnp.asarray(pos_mpc_h)
    dtype = jnp.promote_types(pos.dtype, jnp.float32)
    scale = jnp.asarray(np.asarray(mesh_shape, np.float64) / _box_sides(box_mpc_h), dtype=dtype)
    return pos.astype(dtype).reshape(-1, 3) * scale - jnp.asarray(offset, dtype)


@partial(jax.jit, static_argnames=("mesh_shape", "box_mpc_h", "convention"))
def cic_paint(
    pos_mpc_h,
    mesh_shape: tuple[int, int, int],
    box_mpc_h: float | tuple[float, float, float],
    weights=None,
    *,
    convention: CellConvention,
):
    """CIC deposit of any number of particles onto a periodic mesh (jit-able, differentiable).

    Args:
        pos_mpc_h: (N, 3) positions [Mpc/h]; any real values (wrapped periodically).
        mesh_shape: static (n0, n1, n2).
        box_mpc_h: static box side [Mpc/h] or the three sides of a rectangular box.
        weights: (N,) particle weights (default 1).
        convention: static cell convention (module docstring).

    Returns:
        ``mesh_shape`` jax array of summed weights (total = sum of the weights), float32
        (float64 for float64 positions with ``jax_enable_x64``).
    """
    w = None if weights is None else jnp.asarray(weights).reshape(-1)
    return cic_scatter(to_mesh_units(pos_mpc_h, mesh_shape, box_mpc_h, convention), tuple(mesh_shape), w)


@partial(jax.jit, static_argnames=("box_mpc_h", "convention"))
def cic_read(mesh, pos_mpc_h, box_mpc_h: float | tuple[float, float, float], *, convention: CellConvention):
    """CIC interpolation of a periodic scalar mesh at (N, 3) positions [Mpc/h] -> (N,).

    Differentiable in the mesh and the positions (the LDL's gradient reads). Eight one-element
    gathers from the mesh padded by one periodic layer (see :func:`cic_gather`): on the 2-core
    CPU, value and gradient of a read of 2e6 positions from a 64^3 mesh take 0.32 s (1.25 s
    with the previous (N, 8) gather).
    """
    x = to_mesh_units(pos_mpc_h, mesh.shape, box_mpc_h, convention)
    return _cic_interpolate([mesh], x)[0]


def particle_density(pos_mpc_h, mesh_shape: tuple[int, int, int], box_mpc_h, *, convention: CellConvention):
    """``1 + delta`` of equal-mass particles on the mesh (CIC, mean exactly 1)."""
    n_cells = mesh_shape[0] * mesh_shape[1] * mesh_shape[2]
    return cic_paint(pos_mpc_h, tuple(mesh_shape), box_mpc_h, convention=convention) * (n_cells / pos_mpc_h.shape[0])
