"""The fused slab forward model: 2LPT -> KDK -> LDL n_e and T -> X-ray maps as device programs.

Contract: a cosmology, its linear P(k) at z = 0, a slab's seed and geometry, the conditioned
LDL parameters of n_e and T, and the emission table in; the slab's projected count-rate maps
per band (and what the detection and the maps file need beside them) out, as numpy arrays.
Nothing else leaves the device: particles, densities and the n_e and T grids stay there.

The staged chain of the workflow computes the same thing across three rules with files and
numpy in between: ``simulate_lightcone`` (:func:`clustersbi.pm.run_pm` per slab; positions to
the host, two CIC densities painted that nothing uses, HDF5), ``paint_gas`` (the LDL painter
of :mod:`clustersbi.stages.ldl`: positions back to the device, n_e and T back to the host in
float64, HDF5) and ``xray_maps`` (:func:`clustersbi.xray.paint_slab`: numpy and scipy.sparse,
layer by layer). Here the pieces are the same functions, run as device programs one after the
other with nothing brought back between them (:func:`slab_program`):

- the PM: the 2LPT of ``run_pm`` (``pm._jitted_lpt``) and the KDK integrator of
  :func:`clustersbi.pm.run_pm` (``pm._make_advance``: :func:`clustersbi.pm.pm_forces_compensated`
  with the FastPM factors of :func:`clustersbi.pm.pm_step_factors`), with the particles'
  half-cell offset and the wrap into the box of ``run_pm``'s snapshot;
- the gas: :func:`clustersbi.ldl.ldl_forward` for n_e and T, in the painter's units and with
  its temperature floor (``LDLPainter.paint``);
- the X-ray maps: :func:`project_slab`, the arithmetic of :func:`clustersbi.xray.paint_slab`
  in JAX (below).

Only small host work remains per slab, all of it O(steps + layers + pixels): the step factors
(an ODE solve per cosmology and slab redshift), the layers' distances and redshifts, and the
linear field's draw (jaxpm's ``linear_field`` with ``run_pm``'s P(k) interpolator, a few
eager device operations whose result stays on the device). The programs are compiled once per
:class:`SlabProgram` (mesh shape, cell, force settings) and input shapes, and kept in an
``functools.lru_cache`` as ``pm._make_advance`` is: the slabs and simulations of a job, which
share one fixed mesh (``simulation.lightcone.fixed_mesh``), reuse one compilation.

X-ray projection (:func:`project_slab`; Cerardi et al. section 2.3, the geometry of
:mod:`clustersbi.xray.maps`). The slab's cells are layers of constant comoving distance chi_k
along the line of sight (the grid's last axis, :data:`clustersbi.lightcone.LOS_AXIS`). Each
cell's count rate per band is ``n_e,com^2 f_k r_b(T, z_k)`` with the per-layer factor
``f_k = (1+z_k)^3 V_com / (n_e/n_H) / (4 pi D_M^2)`` (computed on the host in float64: V_com
in cm^3 overflows float32) and ``r_b`` the table's bilinear interpolation in (log kT, z) of
log r (:meth:`clustersbi.xray.EmissionTable.__call__`, same indices and weights). The
projection on the sky is the same separable area overlap: per layer an (n_x, n_pix) and an
(n_y, n_pix) overlap matrix (computed on the device from chi_k and the pixel edges, periodic
images included), contracted as two dense batched matrix products over all layers at once
(``maps[b, y_pix, x_pix] = sum_k Wy_k^T R_kb^T Wx_k``). Dense, because a matrix product is
what accelerators do fastest: at paper scale (287 x 287 x 242 cells, 268^2 pixels) the two
products are ~60 GFLOP, a few ms at an H100's float32 rate (an estimate, not measured yet), in
full float32 precision (``Precision.HIGHEST``: the TF32 default of GPU matrix units would cost
three digits). On the 2-core CPU the projection takes 13 ms against ``paint_slab``'s 90 ms
(benchmarks/slab_forward.py). Layers beyond the slab's depth (a fixed mesh deeper than the
slab) carry a zero factor instead of being sliced off, so the program does not depend on how
many layers are kept.

Precision: float32 throughout (the staged chain paints in float64 after a float32 PM). On
16 x 16 x 8 slabs the fused maps equal the staged ones to 1e-7-5e-7 relative in the summed map
and 3e-6 in the worst pixel (tests/test_forward.py, tolerances there).

Memory: the 2LPT, the KDK and the gas + projection are separate programs (the PM state is
donated from one to the next), so their scratch meshes never coexist: the PM's peak is ~40
bytes per particle with ``cic_chunk_size`` (XLA's memory analysis, benchmarks/xod_forward.py;
~62 when 2LPT and KDK are compiled as one program). The projection is not chunked over layers;
its transients (n_e and T, the band rates and the interpolation's gathers, the projected
channels) are of the order of 50 bytes per cell (an estimate, not measured), taken after the PM
state is dead: only the positions and two scalar finiteness checks outlive the KDK.

How a job uses it (rule ``fused_xray_maps`` with ``simulation.lightcone.forward: fused``,
:func:`clustersbi.stages.xray.fused_xray_maps_chunk`): one job takes a chunk of simulations;
per simulation it conditions the LDL parameters (``LDLPainter.params_ne`` /
``params_t`` per slab redshift), converts the emission table once (:func:`emission_arrays`),
and calls :func:`slab_maps` for every slab of every lightcone with the fixed slab mesh. The
device holds one slab's particles, gas grids and overlap matrices at a time; per slab the
host receives the (n_b, n_pix, n_pix) maps, the emission-weighted redshift sums, the per-band
cell totals and one finiteness flag (under 1 MB at paper scale, instead of ~0.6 GB of
particles, velocities and gas grids). Those are exactly the inputs of the maps file
(written by the staged stage's writer, :func:`clustersbi.stages.xray.write_lightcone_maps`:
observational effects and detection run on them on the host as in the staged chain).

What it does not cover: detection (sep, on the host, from the maps), the observational effects
(PSF, background, Poisson noise: :func:`clustersbi.xray.observe`, applied to the returned
maps), and the intermediate products that the staged chain writes and that validation and
other stages read: the particle file (``results/particles``, read by the simulation cutouts of
``images``), the gas file (``results/gas``, read by the plots and the cutouts), the PM's
snapshot densities. A job that needs those runs the staged chain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal, Mapping, NamedTuple, Sequence

import numpy as np

from . import ldl, pm
from .constants import MPC_CM, NE_OVER_NH
from .cosmology import Cosmology, redshift_at_comoving_distance
from .xray.emission import K_B_KEV_PER_K, EmissionTable
from .xray.maps import SkyGrid, SlabMap, periodic_images

__all__ = [
    "EmissionArrays",
    "emission_arrays",
    "band_rates",
    "LayerGeometry",
    "periodic_images",
    "slab_extent",
    "slab_periodic_images",
    "slab_layers",
    "overlap_matrices",
    "project_slab",
    "SlabProgram",
    "SlabInputs",
    "SlabOutputs",
    "slab_program",
    "slab_linear_field",
    "slab_inputs",
    "slab_maps",
]


# ----------------------------------------------------------------------------- emission table


class EmissionArrays(NamedTuple):
    """An :class:`~clustersbi.xray.EmissionTable` as float32 device arrays (a pytree).

    Attributes:
        kt_kev: (n_T,) temperatures [keV], increasing.
        log_kt: (n_T,) their natural logs (taken in float64).
        z: (n_z,) redshifts, increasing.
        log_rate: (n_b, n_T, n_z) ln r_b(T, z) [ln(cts s^-1 cm^5)], rates floored at 1e-300
            before the log as the table does.
    """

    kt_kev: Any
    log_kt: Any
    z: Any
    log_rate: Any


def emission_arrays(table: EmissionTable) -> EmissionArrays:
    """Device copy of ``table`` for :func:`band_rates` (once per job)."""
    import jax.numpy as jnp

    kt = np.asarray(table.kt_kev, np.float64)
    log_rate = np.log(np.maximum(np.asarray(table.rate, np.float64), 1e-300))
    arrays = (kt, np.log(kt), np.asarray(table.z, np.float64), log_rate)
    return EmissionArrays(*(jnp.asarray(a, jnp.float32) for a in arrays))


def band_rates(emission: EmissionArrays, kt_kev, z):
    """r_b(kT, z) [cts s^-1 cm^5], shape (n_b, *kt_kev.shape): :meth:`EmissionTable.__call__` in JAX.

    Bilinear in (log kT, z) of log r with the table's indices and weights; 0 below the lowest
    kT, the highest kT's value above it. ``z`` (broadcastable to ``kt_kev``) is clipped to the
    table's range instead of raising (a traced value cannot raise): :func:`slab_inputs` checks
    the range of the layers on the host.
    """
    import jax.numpy as jnp

    kt = jnp.asarray(kt_kev, jnp.float32)
    # z keeps its own shape (one value per layer of a slab): its indices and weights broadcast
    zz = jnp.clip(jnp.asarray(z, jnp.float32), emission.z[0], emission.z[-1])
    lgrid = emission.log_kt
    lt = jnp.log(jnp.clip(kt, emission.kt_kev[0], emission.kt_kev[-1]))
    i = jnp.clip(jnp.searchsorted(lgrid, lt, side="right") - 1, 0, lgrid.shape[0] - 2)
    ft = (lt - lgrid[i]) / (lgrid[i + 1] - lgrid[i])
    n_z = emission.z.shape[0]
    if n_z > 1:
        j = jnp.clip(jnp.searchsorted(emission.z, zz, side="right") - 1, 0, n_z - 2)
        fz = (zz - emission.z[j]) / (emission.z[j + 1] - emission.z[j])
    else:
        j = jnp.zeros(zz.shape, jnp.int32)
        fz = jnp.zeros(zz.shape, jnp.float32)
    jp = jnp.minimum(j + 1, n_z - 1)
    logr = emission.log_rate
    val = (
        (1 - ft) * (1 - fz) * logr[:, i, j]
        + ft * (1 - fz) * logr[:, i + 1, j]
        + (1 - ft) * fz * logr[:, i, jp]
        + ft * fz * logr[:, i + 1, jp]
    )
    return jnp.where(kt >= emission.kt_kev[0], jnp.exp(val), 0.0)


# ----------------------------------------------------------------------------- slab geometry


class LayerGeometry(NamedTuple):
    """The line-of-sight layers of a slab and the sky grid, as float32 device arrays (a pytree).

    Attributes:
        chi_mpc_h: (n_los,) comoving distance of each layer's centre [Mpc/h].
        z: (n_los,) its redshift.
        rate_factor: (n_los,) ``(1+z)^3 V_com / (n_e/n_H) / (4 pi D_M^2)`` [cm] for comoving
            n_e (count rate = n_e^2 rate_factor r_b); 0 for layers beyond the slab's depth.
        tan_edges: (n_pix + 1,) tangents of the pixel edges (gnomonic plane).
        width_mpc_h: () transverse box width [Mpc/h].
    """

    chi_mpc_h: Any
    z: Any
    rate_factor: Any
    tan_edges: Any
    width_mpc_h: Any


def slab_extent(chi_lo_mpc_h: float, chi_hi_mpc_h: float, n_los: int, box_los_mpc_h: float) -> tuple[int, float]:
    """(layers kept, comoving distance of the far face of the kept layers [Mpc/h]).

    The rule of both chains (the staged ``xray_maps`` stage calls it too): a box may be deeper
    than its slab; the cells whose centres lie within the slab's depth are kept (at least one).
    """
    cell_los = box_los_mpc_h / n_los
    n_keep = int(min(n_los, max(1, round((chi_hi_mpc_h - chi_lo_mpc_h) / cell_los))))
    return n_keep, chi_lo_mpc_h + n_keep * cell_los


def slab_periodic_images(slab, mesh_shape: Sequence[int], cell_mpc_h: float, grid: SkyGrid) -> int:
    """Periodic images per side that the sky projection of ``slab`` (a :class:`~clustersbi.lightcone.Slab`)
    painted on ``mesh_shape`` cells of ``cell_mpc_h`` needs: the field's reach at the far face of
    the painted layers (:func:`slab_extent`) over the box width (:func:`periodic_images`)."""
    _, chi_far = slab_extent(float(slab.chi_lo), float(slab.chi_hi), int(mesh_shape[2]), mesh_shape[2] * cell_mpc_h)
    reach = max(abs(grid.edges_rad[0]), abs(grid.edges_rad[-1]))
    return periodic_images(mesh_shape[0] * cell_mpc_h, float(np.tan(reach)) * chi_far)


def slab_layers(
    chi_lo_mpc_h: float,
    chi_hi_mpc_h: float,
    width_mpc_h: float,
    mesh_shape: Sequence[int],
    omega_m: float,
    h: float,
    grid: SkyGrid,
    n_keep: int | None = None,
    ne_frame: Literal["comoving", "physical"] = "comoving",
    ne_over_nh: float = NE_OVER_NH,
) -> LayerGeometry:
    """Layers of a slab painted over [chi_lo, chi_hi] in ``n_keep`` layers, as :func:`paint_slab` does.

    Args:
        chi_lo_mpc_h, chi_hi_mpc_h: comoving range of the painted layers [Mpc/h] (for a box
            deeper than its slab, :func:`slab_extent`'s far face).
        width_mpc_h: transverse width of the box [Mpc/h].
        mesh_shape: (n_x, n_y, n_los) cells of the gas grid, line of sight last.
        omega_m, h: cosmology (flat LCDM distances; h converts Mpc/h to cm).
        grid: the sky grid.
        n_keep: layers painted (the first ``n_keep`` of ``n_los``; default all); the others
            get a zero rate factor and the distance and redshift of the last painted layer.
        ne_frame, ne_over_nh: as :func:`clustersbi.xray.voxel_count_rates`.
    """
    import jax.numpy as jnp

    nx, ny, n_los = (int(n) for n in mesh_shape)
    n_keep = n_los if n_keep is None else int(n_keep)
    if not 1 <= n_keep <= n_los:
        raise ValueError(f"n_keep must be in [1, {n_los}], got {n_keep}")
    if not 0 < chi_lo_mpc_h < chi_hi_mpc_h:
        raise ValueError(f"need 0 < chi_lo_mpc_h < chi_hi_mpc_h, got {chi_lo_mpc_h}, {chi_hi_mpc_h}")
    dchi = (chi_hi_mpc_h - chi_lo_mpc_h) / n_keep
    cell_volume_cm3 = dchi * (width_mpc_h / nx) * (width_mpc_h / ny) * (MPC_CM / h) ** 3
    chi = chi_lo_mpc_h + dchi * (np.minimum(np.arange(n_los), n_keep - 1) + 0.5)
    z = redshift_at_comoving_distance(chi, omega_m)
    if ne_frame == "comoving":
        volume_term = (1.0 + z) ** 3 * cell_volume_cm3
    elif ne_frame == "physical":
        volume_term = cell_volume_cm3 / (1.0 + z) ** 3
    else:
        raise ValueError(f"ne_frame must be 'comoving' or 'physical', got {ne_frame!r}")
    d_cm = chi * MPC_CM / h
    factor = volume_term / ne_over_nh / (4.0 * np.pi * d_cm**2) * (np.arange(n_los) < n_keep)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return LayerGeometry(f32(chi), f32(z), f32(factor), f32(np.tan(grid.edges_rad)), f32(width_mpc_h))


def overlap_matrices(n_cells: int, width_mpc_h, pix_edges_mpc_h, n_images: int):
    """:func:`clustersbi.xray.maps.overlap_matrix` for many layers at once, in JAX.

    Args:
        n_cells: cells along the axis (cell i spans [-W/2 + i d, -W/2 + (i+1) d], d = W/n).
        width_mpc_h: box width W [Mpc/h] (traced scalar).
        pix_edges_mpc_h: (n_layers, n_pix + 1) increasing pixel edges in each layer's plane [Mpc/h].
        n_images: periodic images per side (static; :func:`periodic_images`; more than a layer
            needs add zeros).

    Returns:
        (n_layers, n_cells, n_pix) fraction of each cell (and its images) inside each pixel.
    """
    import jax.numpy as jnp

    d = width_mpc_h / n_cells
    lo = -0.5 * width_mpc_h + d * jnp.arange(n_cells, dtype=jnp.float32)
    upper, lower = pix_edges_mpc_h[:, None, 1:], pix_edges_mpc_h[:, None, :-1]
    out = 0.0
    for k in range(-n_images, n_images + 1):
        a = (lo + k * width_mpc_h)[None, :, None]
        out = out + jnp.clip(jnp.minimum(a + d, upper) - jnp.maximum(a, lower), 0.0, None)
    return out / d


def project_slab(ne_cm3, t_k, layers: LayerGeometry, emission: EmissionArrays, n_images: int = 1):
    """A slab's X-ray maps from its n_e and T grids: :func:`clustersbi.xray.paint_slab` in JAX (jit-able).

    Args:
        ne_cm3: (n_x, n_y, n_los) comoving electron density [cm^-3] (or physical, as
            ``layers`` was built), line of sight last.
        t_k: same shape, temperature [K].
        layers: :func:`slab_layers` of the slab.
        emission: :func:`emission_arrays` of the table.
        n_images: static number of periodic images per side (:func:`periodic_images` of the
            farthest layer; 1 whenever the field is narrower than the box).

    Returns:
        (rate_cts_s (n_b, n_pix, n_pix) [cts/s per pixel, indexed [y, x]], z_rate_sum
        (n_pix, n_pix) sum of all-band rate x z, total_cells_cts_s (n_b,) the painted
        cells' total before projection), float32: the fields of :class:`~clustersbi.xray.SlabMap`.
    """
    import jax
    import jax.numpy as jnp

    nx, ny, _ = ne_cm3.shape
    ne = jnp.asarray(ne_cm3, jnp.float32)
    rates = band_rates(emission, jnp.asarray(t_k, jnp.float32) * jnp.float32(K_B_KEV_PER_K), layers.z)
    counts = ne**2 * layers.rate_factor * rates  # (n_b, nx, ny, n_los) [cts/s]
    total = counts.sum(axis=(1, 2, 3))
    # the emission-weighted redshift sum is one more channel of the same linear projection
    channels = jnp.concatenate([counts, (counts.sum(axis=0) * layers.z)[None]], axis=0)
    edges = layers.chi_mpc_h[:, None] * layers.tan_edges[None, :]
    wx = overlap_matrices(nx, layers.width_mpc_h, edges, n_images)
    wy = overlap_matrices(ny, layers.width_mpc_h, edges, n_images)
    exact = jax.lax.Precision.HIGHEST
    half = jnp.einsum("kxp,cxyk->kcyp", wx, channels, precision=exact)
    maps = jnp.einsum("kyq,kcyp->cqp", wy, half, precision=exact)
    return maps[:-1], maps[-1], total


# ----------------------------------------------------------------------------- the fused program


@dataclass(frozen=True)
class SlabProgram:
    """Static settings of the fused slab program: one compilation per distinct value (and input shapes).

    Attributes:
        mesh_shape: (n_w, n_w, n_d) particles and cells of the slab box, line of sight last.
        cell_mpc_h: cell size [Mpc/h] (box = mesh_shape x cell).
        n_images: periodic images per side of the sky projection (:func:`periodic_images`).
        compensation, force_mesh_factor, cic_chunk_size: PM force settings
            (:func:`clustersbi.pm.run_pm`; a chunk of ~1e6 particles keeps the PM at ~40 bytes per
            particle of device memory, benchmarks/xod_forward.py).
    """

    mesh_shape: tuple[int, int, int]
    cell_mpc_h: float
    n_images: int = 1
    compensation: int | None = None
    force_mesh_factor: int = 1
    cic_chunk_size: int | None = None

    @property
    def box_mpc_h(self) -> tuple[float, float, float]:
        return tuple(float(n * self.cell_mpc_h) for n in self.mesh_shape)


class SlabInputs(NamedTuple):
    """Traced inputs of the fused program (a pytree; every array float32 except ``cosmo_jc``).

    Attributes:
        cosmo_jc: :func:`clustersbi.pm.jax_cosmology` of the simulation.
        factors: (n_steps, 3) KDK factors (:func:`clustersbi.pm.pm_step_factors`).
        omega_m: () Omega_m (the PM force's 1.5 Omega_m).
        a_init: () scale factor of the 2LPT initial conditions.
        delta_lin: mesh_shape linear overdensity at z = 0 (:func:`slab_linear_field`).
        ne_params, t_params: conditioned LDL parameters of n_e and T (``LDLPainter.params_ne``,
            ``params_t`` at the slab's redshift).
        t_floor_k: () temperature floor [K] of the painter.
        emission: :func:`emission_arrays`.
        layers: :func:`slab_layers`.
    """

    cosmo_jc: Any
    factors: Any
    omega_m: Any
    a_init: Any
    delta_lin: Any
    ne_params: Any
    t_params: Any
    t_floor_k: Any
    emission: EmissionArrays
    layers: LayerGeometry


class SlabOutputs(NamedTuple):
    """What the fused program returns (device arrays; :func:`slab_maps` brings them to the host).

    ``rate_cts_s`` (n_b, n_pix, n_pix), ``z_rate_sum`` (n_pix, n_pix), ``total_cells_cts_s``
    (n_b,) as :class:`~clustersbi.xray.SlabMap`, and ``finite``: () bool, every particle
    position, momentum, n_e and T finite (the checks of ``run_pm`` and ``paint_gas``).
    """

    rate_cts_s: Any
    z_rate_sum: Any
    total_cells_cts_s: Any
    finite: Any


def _slab_positions(settings: SlabProgram, x, p):
    """The PM's final (x, p) in mesh units -> (positions [Mpc/h] in [0, box), shaped as x (so that
    they can take x's buffer), () all x and p finite): ``run_pm``'s snapshot (mesh points at
    integers -> cell centres (i + 1/2) H, wrapped into the box)."""
    import jax.numpy as jnp

    shape = settings.mesh_shape
    pos = jnp.mod(x + 0.5, jnp.asarray(shape, jnp.float32)) * settings.cell_mpc_h
    box = jnp.asarray(settings.box_mpc_h, jnp.float32)
    pos = jnp.mod(pos, box)
    pos = jnp.where(pos >= box, 0.0, pos)
    return pos, jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(p))


def _slab_gas(settings: SlabProgram, inputs: SlabInputs, pos):
    """n_e [comoving cm^-3] and T [K] of the slab: ``LDLPainter.paint`` on the device."""
    import jax.numpy as jnp

    shape, box = settings.mesh_shape, settings.box_mpc_h
    ne = ldl.ldl_forward(inputs.ne_params, pos, shape, box) * jnp.float32(ldl.NE_UNIT_CM3)
    t = ldl.ldl_forward(inputs.t_params, pos, shape, box) * jnp.float32(ldl.T_UNIT_K)
    return ne, jnp.maximum(t, inputs.t_floor_k)


def _slab_gas_maps(settings: SlabProgram, pos, finite_pm, inputs: SlabInputs) -> SlabOutputs:
    """The slab's positions -> its gas -> its maps (the last of the slab's device programs)."""
    import jax.numpy as jnp

    ne, t = _slab_gas(settings, inputs, pos.reshape(-1, 3))
    rate, zsum, total = project_slab(ne, t, inputs.layers, inputs.emission, settings.n_images)
    finite = finite_pm & jnp.all(jnp.isfinite(ne)) & jnp.all(jnp.isfinite(t))
    return SlabOutputs(rate, zsum, total, finite)


class _SlabPrograms:
    """The slab's device programs, run one after the other with every array kept on the device:
    the 2LPT (``pm._jitted_lpt``: three programs), the KDK integrator (``pm._make_advance``, the
    (x, p) state donated and updated in place), the positions in Mpc/h (in x's buffer) and the
    gas with its X-ray projection. Separate programs rather than one: each program's scratch
    meshes are freed before the next one's exist, so the PM's peak is ~40 bytes per particle
    (with ``cic_chunk_size``) instead of ~62 for 2LPT and KDK compiled together
    (benchmarks/xod_forward.py). Call with :class:`SlabInputs` -> :class:`SlabOutputs`.
    """

    def __init__(self, settings: SlabProgram):
        import jax

        shape = settings.mesh_shape
        self.lpt = pm._jitted_lpt(shape)
        self.advance = pm._make_advance(shape, settings.compensation, int(settings.force_mesh_factor),
                                        settings.cic_chunk_size)[0]
        self.positions = jax.jit(functools.partial(_slab_positions, settings), donate_argnums=0)
        self.gas_maps = jax.jit(functools.partial(_slab_gas_maps, settings))

    def __call__(self, inputs: SlabInputs) -> SlabOutputs:
        x, p = self.lpt(inputs.cosmo_jc, inputs.delta_lin, inputs.a_init)
        x, p = self.advance((x, p), inputs.factors, inputs.omega_m, 0, int(inputs.factors.shape[0]))
        pos, finite_pm = self.positions(x, p)
        p.delete()  # the momenta are not needed past the finiteness check
        return self.gas_maps(pos, finite_pm, inputs)

    def _cache_size(self) -> int:
        """Compilations of the last program (one per input shapes, as ``jax.jit``'s)."""
        return self.gas_maps._cache_size()


@functools.lru_cache(maxsize=8)
def slab_program(settings: SlabProgram) -> _SlabPrograms:
    """The fused slab programs ``program(inputs: SlabInputs) -> SlabOutputs`` for ``settings``.

    Cached per settings (as ``pm._make_advance``), so every slab and simulation of a job with
    the same fixed mesh reuses one compilation (jit recompiles only for new input shapes,
    e.g. another sky grid or number of steps).
    """
    return _SlabPrograms(settings)


def slab_linear_field(k_h_mpc: np.ndarray, pk_linear_z0: np.ndarray, mesh_shape: Sequence[int], box_mpc_h, seed: int):
    """The slab's linear overdensity at z = 0 on the device, the same field as ``run_pm``'s.

    ``jaxpm.pm.linear_field`` with :func:`clustersbi.pm.power_interpolator` and
    ``jax.random.PRNGKey(seed)``, as in :func:`clustersbi.pm.run_pm` (eager: the interpolator
    closes over the P(k) table, so compiling it would compile once per cosmology).
    """
    import jax
    from jaxpm.pm import linear_field

    shape = tuple(int(n) for n in mesh_shape)
    box = tuple(float(b) for b in np.broadcast_to(np.asarray(box_mpc_h, np.float64), (3,)))
    return linear_field(shape, box, pm.power_interpolator(k_h_mpc, pk_linear_z0), jax.random.PRNGKey(int(seed)))


def slab_inputs(
    cosmo: Cosmology,
    delta_lin,
    z_snapshot: float,
    layers: LayerGeometry,
    emission: EmissionArrays,
    ne_params: Mapping[str, Any],
    t_params: Mapping[str, Any],
    t_floor_k: float,
    *,
    a_init: float = 0.1,
    n_steps: int = 10,
) -> SlabInputs:
    """:class:`SlabInputs` of one slab: the step factors from a_init to 1 / (1 + z_snapshot) (host,
    O(n_steps)) and the other inputs as float32 device arrays."""
    import jax.numpy as jnp

    cosmo_jc = pm.jax_cosmology(cosmo)
    a_edges, _ = pm._scale_factor_grid(a_init, (1.0 / (1.0 + z_snapshot),), n_steps)
    factors = pm.pm_step_factors(cosmo_jc, a_edges)
    pm.check_finite("KDK step factors", factors, f"{cosmo}, z={z_snapshot}")
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return SlabInputs(cosmo_jc, f32(factors), f32(cosmo.Omega_m), f32(a_init), delta_lin, ne_params, t_params,
                      f32(t_floor_k), emission, layers)


def slab_maps(
    cosmo: Cosmology,
    k_h_mpc: np.ndarray,
    pk_linear_z0: np.ndarray,
    slab,
    *,
    mesh_shape: Sequence[int],
    cell_mpc_h: float,
    seed: int,
    ne_params: Mapping[str, Any],
    t_params: Mapping[str, Any],
    t_floor_k: float,
    table: EmissionTable,
    grid: SkyGrid,
    emission: EmissionArrays | None = None,
    a_init: float = 0.1,
    n_steps: int = 10,
    compensation: int | None = None,
    force_mesh_factor: int = 1,
    cic_chunk_size: int | None = None,
    n_images: int | None = None,
    delta_lin=None,
) -> SlabMap:
    """The X-ray maps of one lightcone slab by the fused device program (module docstring).

    Equal, to float32 round-off, to the staged chain: ``run_pm`` of the slab (as
    :func:`clustersbi.lightcone.simulate_lightcone_slabs` with ``mesh_shape``), the LDL
    painter, and :func:`clustersbi.xray.paint_slab` of the layers within the slab's depth
    (``stages.xray.paint_gas_lightcone``).

    Args:
        cosmo: the simulation's cosmology.
        k_h_mpc, pk_linear_z0: linear P(k) table at z = 0 [h/Mpc, (Mpc/h)^3].
        slab: :class:`clustersbi.lightcone.Slab` (chi_lo, chi_hi, z_centre).
        mesh_shape: (n_w, n_w, n_d) slab mesh covering the slab (a job's fixed mesh).
        cell_mpc_h: cell size [Mpc/h].
        seed: the slab's initial-condition seed (``stages.simulate.slab_seed``).
        ne_params, t_params, t_floor_k: the painter's conditioned parameters for this
            simulation (T at ``slab.z_centre``) and its floor [K].
        table: the emission table (range checks); emission: its :func:`emission_arrays`
            (pass it to convert the table once per job).
        grid: the sky grid.
        a_init, n_steps, compensation, force_mesh_factor, cic_chunk_size: PM settings
            (:func:`clustersbi.pm.run_pm`).
        n_images: periodic images of the projection (default: what this slab needs,
            :func:`periodic_images`); a job whose farther slabs need more passes their count
            to every slab, so that one compilation serves all (more images add zeros).
        delta_lin: the slab's linear field on the device (default :func:`slab_linear_field`).

    Returns:
        :class:`~clustersbi.xray.SlabMap` (numpy): the only device-to-host transfer of the slab.

    Raises:
        NonFiniteSimulationError: a NaN or inf in the particles or the gas grids.
        ValueError: the slab's redshifts outside the emission table.
    """
    shape = tuple(int(n) for n in mesh_shape)
    box = tuple(float(n * cell_mpc_h) for n in shape)
    n_keep, chi_far = slab_extent(float(slab.chi_lo), float(slab.chi_hi), shape[2], box[2])
    z_lo, z_hi = (float(z) for z in redshift_at_comoving_distance(np.array([slab.chi_lo, chi_far]), cosmo.Omega_m))
    if z_lo < table.z[0] - 1e-9 or z_hi > table.z[-1] + 1e-9:
        raise ValueError(f"z outside the emission table range [{table.z[0]}, {table.z[-1]}]: extend xray.table.z")
    needed = slab_periodic_images(slab, shape, float(cell_mpc_h), grid)
    if n_images is None:
        n_images = needed
    elif n_images < needed:
        raise ValueError(f"slab {slab.index} needs {needed} periodic images of its box, got n_images={n_images}")
    settings = SlabProgram(shape, float(cell_mpc_h), n_images, compensation, int(force_mesh_factor),
                           None if cic_chunk_size is None else int(cic_chunk_size))
    if delta_lin is None:
        delta_lin = slab_linear_field(k_h_mpc, pk_linear_z0, shape, box, seed)
    layers = slab_layers(float(slab.chi_lo), chi_far, box[0], shape, cosmo.Omega_m, cosmo.h, grid, n_keep)
    inputs = slab_inputs(cosmo, delta_lin, float(slab.z_centre), layers,
                         emission if emission is not None else emission_arrays(table),
                         ne_params, t_params, t_floor_k, a_init=a_init, n_steps=n_steps)
    import jax

    out = jax.device_get(slab_program(settings)(inputs))  # the slab's one transfer to the host
    if not bool(out.finite):
        raise pm.NonFiniteSimulationError(f"non-finite particles or gas in slab {slab.index} (seed {seed}), {cosmo}")
    return SlabMap(np.asarray(out.rate_cts_s, np.float64), np.asarray(out.z_rate_sum, np.float64), z_lo, z_hi,
                   np.asarray(out.total_cells_cts_s, np.float64))
