"""Dark-matter particle-mesh simulations with JaxPM: 2LPT, kick-drift-kick, PM forces.

Contract: a cosmology, a tabulated linear P(k) at z = 0 (CAMB, :func:`clustersbi.cosmology.camb_power`)
and an integer seed in; particles (positions, velocities) and CIC density meshes at the
requested scale factors out, as numpy arrays.

Physics (jaxpm 0.1.6 does the force computation, the LPT and the Gaussian field; this module
adds the time integrator, general-purpose painting and the geometry):

- Initial conditions: Gaussian field with the linear P(k) at z = 0 (``jaxpm.pm.linear_field``,
  white noise from ``jax.random.PRNGKey(seed)``), 2LPT displacements and momenta at ``a_init``
  (:func:`lpt_on_grid`: ``jaxpm.pm.lpt(order=2)``, Jenkins 2010 eqs. 2-3, forces on the mesh,
  real FFTs; run as three programs, :func:`lpt_potentials`, then :func:`lpt_gradient` of the
  momentum potential, then of the displacement potential).
- Time integration: kick-drift-kick leapfrog in the scale factor with the FastPM kick and drift
  factors (Feng et al. 2016, MNRAS 463, 2273, eqs. 21-23 in the normalisation of
  ``jaxpm.pm.make_ode_fn``: dx/da = p / (a^3 E), dp/da = F / (a^2 E),
  F = 1.5 Omega_m * PM force). With ``Gf = a^3 E dD/da`` (``jaxpm.growth.Gf``):

      drift  x += p * [D(a1) - D(a0)] / Gf(a_half)
      kick   p += F(a_f) * [Gf(a1) - Gf(a0)] / [a_f^2 E(a_f) dGf/da(a_f)]

  These reduce to the plain leapfrog for many steps, and reproduce linear growth exactly on
  large scales for any number of steps (a plain leapfrog with 40 steps from a = 0.1 undershoots
  it by several per cent, which is why jaxpm's diffrax/odeint paths are not used here: they are
  either slower (adaptive odeint, ~3x at 128^3) or inexact (fixed-step)).
  One force evaluation per step (:func:`pm_forces_compensated`, ``jaxpm.pm.pm_forces`` with
  jaxpm's kernels): one CIC paint, one forward and three inverse real FFTs, one CIC read of
  the force vector, on a force mesh that may be finer than the particle grid
  (``force_mesh_factor``, FastPM's boost factor: 2 resolves halos of >= 100 particles to
  within the mass-function fit's accuracy, see tests/test_simulate_validation.py).
  The second half-kick of a step and the first of the next share that force and are applied
  as one kick (:func:`_make_advance`), one force component at a time (:func:`pm_kick`).
- Device memory (benchmarks/xod_forward.py, XLA's compiled memory analysis, bytes per
  particle at force_mesh_factor 1): the loop state is (x, p), 24 bytes, donated and updated in
  place; with ``cic_chunk_size`` the CIC intermediates exist for one chunk at a time, and a
  KDK step peaks at ~44 bytes per particle (122 with the previous (x, p, F) state and
  unchunked CIC), the 2LPT at ~44 (108 before).
- Density: CIC mass assignment (:func:`clustersbi.mesh.cic_paint`, cell convention "centre",
  any number of particles, any mesh; jaxpm's ``cic_paint`` needs one particle per mesh cell).

Units: positions Mpc/h in [0, L); velocities are peculiar velocities in km/s,
v = a dx/dt = 100 p (L/N) / a km/s for jaxpm's momentum p in mesh units; density meshes are in
units of the mean (1 + delta).

Lightcone slabs (geometry and slab runs) are :mod:`clustersbi.lightcone`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .cosmology import Cosmology
from .constants import H0_KM_S_MPC_H
from .mesh import cic_gather, cic_gather_add, cic_paint, cic_scatter

__all__ = [
    "NonFiniteSimulationError",
    "Snapshot",
    "PMRun",
    "jax_cosmology",
    "power_interpolator",
    "pm_step_factors",
    "rfft_wavevectors",
    "pm_forces_compensated",
    "pm_kick",
    "check_finite",
    "run_pm",
    "lpt_on_grid",
    "lpt_potentials",
    "lpt_from_potentials",
    "lpt_gradient",
    "simulate_box",
    "density_power_spectrum",
]

logger = logging.getLogger(__name__)



class NonFiniteSimulationError(FloatingPointError):
    """A simulation produced NaN or inf; the message names the seed and parameters."""


@dataclass
class Snapshot:
    """Particles and density at one scale factor.

    Attributes:
        a: scale factor.
        positions_mpc_h: (n_particles, 3) float32 comoving positions in [0, L) [Mpc/h], or None.
        velocities_km_s: (n_particles, 3) float32 peculiar velocities [km/s], or None.
        density: mesh_shape float32 CIC density in units of the mean (1 + delta), or None
            (``run_pm(density=False)``: lightcone slabs, whose painters read the particles).
    """

    a: float
    positions_mpc_h: np.ndarray | None
    velocities_km_s: np.ndarray | None
    density: np.ndarray | None


@dataclass
class PMRun:
    """One particle-mesh run.

    Attributes:
        mesh_shape: cells per axis (also particles per axis).
        box_mpc_h: box side per axis [Mpc/h].
        seed: the integer seed of the Gaussian field.
        linear_delta_z0: mesh_shape float32 linear overdensity at z = 0 (the initial field).
        initial: snapshot at a_init (2LPT), or None (``run_pm(initial_snapshot=False)``).
        snapshots: snapshots at the requested scale factors, in increasing a.
        metadata: parameters of the run (cosmology, a_init, n_steps, jaxpm version).
    """

    mesh_shape: tuple[int, int, int]
    box_mpc_h: tuple[float, float, float]
    seed: int
    linear_delta_z0: np.ndarray
    initial: Snapshot | None
    snapshots: list[Snapshot]
    metadata: dict = field(default_factory=dict)


def jax_cosmology(cosmo: Cosmology):
    """jax_cosmo cosmology for ``cosmo``: Omega_c = Omega_m - Omega_b, flat, w0 = -1, wa = 0."""
    import jax_cosmo as jc

    return jc.Cosmology(
        Omega_c=cosmo.Omega_m - cosmo.Omega_b,
        Omega_b=cosmo.Omega_b,
        h=cosmo.h,
        n_s=cosmo.n_s,
        sigma8=cosmo.sigma_8,
        Omega_k=0.0,
        w0=-1.0,
        wa=0.0,
    )


def power_interpolator(k_h_mpc: np.ndarray, pk_mpc3_h3: np.ndarray) -> Callable:
    """P(k) callable for ``jaxpm.pm.linear_field``: log-log interpolation of a table.

    Args:
        k_h_mpc: (n,) increasing wavenumbers [h/Mpc].
        pk_mpc3_h3: (n,) P(k) [(Mpc/h)^3], positive.

    Returns:
        function of a jax array of |k| [h/Mpc] returning P [(Mpc/h)^3]; 0 at k = 0, the end
        values' power-law extension outside the table (clipped to the table ends).
    """
    import jax.numpy as jnp

    k = np.asarray(k_h_mpc, dtype=np.float64)
    pk = np.asarray(pk_mpc3_h3, dtype=np.float64)
    if k.ndim != 1 or k.shape != pk.shape or len(k) < 2:
        raise ValueError(f"k_h_mpc {k.shape} and pk_mpc3_h3 {pk.shape} must be equal-length 1D tables")
    if np.any(np.diff(k) <= 0) or np.any(k <= 0):
        raise ValueError("k_h_mpc must be positive and increasing")
    logk, logp = jnp.asarray(np.log(k)), jnp.asarray(np.log(np.abs(pk) + (pk == 0) * 1e-300))
    sign = jnp.asarray(np.sign(pk))  # keeps NaN/negative input visible instead of hiding it

    def pk_fn(kk):
        kk = jnp.asarray(kk)
        safe = jnp.where(kk > 0, kk, k[0])
        logkk = jnp.log(safe)
        value = jnp.exp(jnp.interp(logkk, logk, logp)) * jnp.interp(logkk, logk, sign)
        return jnp.where(kk > 0, value, 0.0)

    return pk_fn


def _scale_factor_grid(a_init: float, snapshot_a: Sequence[float], n_steps: int) -> tuple[np.ndarray, list[int]]:
    """Steps uniform in a from a_init to max(snapshot_a), with every snapshot a on the grid.

    Returns (a_edges (n+1,), step index at which each sorted snapshot is reached).
    """
    targets = np.sort(np.asarray(snapshot_a, dtype=np.float64))
    if targets.size == 0 or targets[0] <= a_init or targets[-1] > 1.0 + 1e-12:
        raise ValueError(f"snapshot_a must lie in (a_init={a_init}, 1], got {list(snapshot_a)}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    # split the steps between the segments in proportion to their length in a (>= 1 each)
    bounds = np.concatenate([[a_init], targets])
    lengths = np.diff(bounds)
    per_segment = np.maximum(1, np.round(n_steps * lengths / lengths.sum()).astype(int))
    edges = [np.array([a_init])]
    reached = []
    for a0, a1, n in zip(bounds[:-1], bounds[1:], per_segment):
        edges.append(np.linspace(a0, a1, n + 1)[1:])
        reached.append(sum(len(e) for e in edges) - 1)
    return np.concatenate(edges), reached


def pm_step_factors(cosmo_jc, a_edges: np.ndarray) -> np.ndarray:
    """FastPM kick-drift-kick factors for the steps a_edges[i] -> a_edges[i+1].

    Returns:
        (n_steps, 3) float array: first half-kick factor (force at a0), drift factor
        (momentum at the half step), second half-kick factor (force at a1); see the module
        docstring. The half step is the arithmetic mean of a0 and a1.
    """
    import jax.numpy as jnp

    a0 = np.asarray(a_edges[:-1], dtype=np.float64)
    a1 = np.asarray(a_edges[1:], dtype=np.float64)
    ah = 0.5 * (a0 + a1)
    factors = _jitted_step_factors()(cosmo_jc, *(jnp.asarray(a) for a in (a0, ah, a1)))
    return np.asarray(factors, dtype=np.float64).reshape(len(a0), 3)


@functools.lru_cache(maxsize=1)
def _jitted_step_factors():
    """The factors of :func:`pm_step_factors` under jit: jaxpm's growth functions solve an ODE
    (a lax.scan) that, run eagerly, is recompiled at every call (~0.3 s per simulation)."""
    import jax
    import jax.numpy as jnp
    import jax_cosmo as jc
    from jaxpm.growth import Gf, dGfa, growth_factor

    def factors(cosmo_jc, a0, ah, a1):
        def ev(fn, a):
            return jnp.reshape(fn(cosmo_jc, a), a.shape)

        def kick_denominator(a):
            return a**2 * jnp.sqrt(jc.background.Esqr(cosmo_jc, a)) * ev(dGfa, a)

        kick1 = (ev(Gf, ah) - ev(Gf, a0)) / kick_denominator(a0)
        drift = (ev(growth_factor, a1) - ev(growth_factor, a0)) / ev(Gf, ah)
        kick2 = (ev(Gf, a1) - ev(Gf, ah)) / kick_denominator(a1)
        return jnp.stack([kick1, drift, kick2], axis=1)

    return jax.jit(factors)


def check_finite(name: str, array, context: str) -> None:
    """Raise :class:`NonFiniteSimulationError` if ``array`` holds NaN or inf.

    A device (JAX) array is checked on the device: it comes to the host only to name the
    first bad element.

    The message names the array, the flat index of the first bad element, and ``context``
    (seed and parameters).
    """
    if not isinstance(array, np.ndarray):  # a device array: reduce there, copy only when it fails
        import jax.numpy as jnp

        if bool(jnp.all(jnp.isfinite(array))):
            return
    values = np.asarray(array)
    bad = ~np.isfinite(values)
    if np.any(bad):
        first = int(np.flatnonzero(bad.ravel())[0])
        raise NonFiniteSimulationError(
            f"{name} has {int(bad.sum())} non-finite values (first at flat index {first}) in simulation {context}"
        )


def rfft_wavevectors(shape: tuple[int, int, int]):
    """Wavevectors of ``jnp.fft.rfftn`` on a mesh, in radians per cell, broadcastable (3 arrays)."""
    import jax.numpy as jnp

    kx = 2 * np.pi * np.fft.fftfreq(shape[0]).reshape(-1, 1, 1)
    ky = 2 * np.pi * np.fft.fftfreq(shape[1]).reshape(1, -1, 1)
    kz = 2 * np.pi * np.fft.rfftfreq(shape[2]).reshape(1, 1, -1)
    return [jnp.asarray(k, jnp.float32) for k in (kx, ky, kz)]


def pm_forces_compensated(
    positions,
    mesh_shape: tuple[int, int, int],
    compensation: int | None = None,
    force_mesh_factor: int = 1,
    cic_chunk_size: int | None = None,
):
    """PM force in jaxpm's normalisation, on a force mesh ``force_mesh_factor`` times finer.

    ``jaxpm.pm.pm_forces`` (paint with CIC, FFT, potential -1/k^2, 4th-order finite-difference
    gradient, three inverse FFTs, read with CIC; jaxpm's own kernels are used) with two
    additions jaxpm 0.1.6 lacks:

    - the CIC windows of painting and reading are divided out: the potential is multiplied by
      ``W(k)^-compensation`` with W = prod_i sinc^2(k_i H / 2) (``jaxpm.kernels.cic_compensation``;
      Hockney & Eastwood 1988, Sect. 8-3). Uncompensated, painting and reading each damp the
      force by W(k), which lowers linear growth by ~6% at k H = 0.4 (measured: 64^3 in
      1 Gpc/h, 3rd k bin); with compensation 2 linear growth is exact to < 1% up to k H ~ 1.
    - the force mesh may be finer than the particle grid (FastPM's boost factor B, Feng et al.
      2016): jaxpm's ``cic_paint``/``cic_read`` need exactly one particle per mesh cell, so
      painting and reading here use :func:`cic_scatter` / :func:`cic_gather`. With B = f the
      mesh density has mean 1/f^3 and distances are f times larger in force-mesh units, so the
      force in particle-grid units is f^2 grad_f(lap_f^-1 rho_f).

    Real FFTs (``jnp.fft.rfftn``) are used: half the work of jaxpm's complex ``fft3d``. The
    finite-difference gradient kernel vanishes at the Nyquist planes, so the Hermitian
    symmetry that ``irfftn`` assumes holds.

    Args:
        positions: (..., 3) particle positions in particle-grid mesh units (mesh points at
            integers).
        mesh_shape: particle-grid cells per axis.
        compensation: number of CIC windows to divide out (0 reproduces ``pm_forces``); None:
            2 for ``force_mesh_factor`` 1, 0 otherwise. Measured on a plane-wave displacement
            of 0.3 particle cells (32^3, force vs the exact 1D Zel'dovich force, amplitude
            ratio at k = 2, 5, 8 k_f): B = 1: 0.974, 0.824, 0.540 uncompensated and 0.999,
            0.968, 0.823 with 2 windows; B = 2: 1.001, 1.005, 0.953 uncompensated, 1.033,
            1.153, 1.197 with 2 windows (the particle lattice is then coarser than the mesh,
            so the painted field is already smooth on the mesh scale and deconvolution
            overshoots).
        force_mesh_factor: force mesh cells per particle-grid cell per axis (1 or 2 usually).
        cic_chunk_size: particles per chunk of the CIC paint and read (:func:`cic_scatter`,
            :func:`cic_gather`; None: all at once): bounds their per-particle intermediates.

    Returns:
        positions.shape force per particle (multiply by 1.5 Omega_m for dp/da (a^2 E)).
    """
    xf, pot_k, kvec, force_shape = _force_potential(positions, mesh_shape, compensation, force_mesh_factor,
                                                    cic_chunk_size)
    # the three components stay separate meshes: cic_gather reads each with the same 8 indices
    grad = [_force_component(pot_k, kvec, i, force_shape) for i in range(3)]
    return cic_gather(grad, xf, chunk_size=cic_chunk_size).reshape(positions.shape)


def pm_kick(
    momenta,
    positions,
    kick,
    mesh_shape: tuple[int, int, int],
    compensation: int | None = None,
    force_mesh_factor: int = 1,
    cic_chunk_size: int | None = None,
):
    """``momenta + kick * pm_forces_compensated(positions, ...)``, chunked: one force component at a time.

    The same force (same paint, potential and read, to float32 round-off). With
    ``cic_chunk_size`` only one component's mesh and one chunk's values exist at once besides
    the potential, instead of the three meshes and the (n, 3) force: the kick of the KDK
    integrator (:func:`_make_advance`) needs ~20 bytes per particle less device memory.
    Unchunked, the three components are read together (faster, more memory).

    Args:
        momenta, positions: (..., 3) arrays of one shape (positions in particle-grid mesh units).
        kick: scalar factor of the force (the kick factor times 1.5 Omega_m).
        mesh_shape, compensation, force_mesh_factor, cic_chunk_size: as :func:`pm_forces_compensated`.

    Returns:
        the kicked momenta, ``momenta.shape``.
    """
    xf, pot_k, kvec, force_shape = _force_potential(positions, mesh_shape, compensation, force_mesh_factor,
                                                    cic_chunk_size)
    p = momenta.reshape(-1, 3)
    if cic_chunk_size is None:
        # unchunked (the CPU default, where time counts, not memory): the three components in
        # one read that shares each particle's indices and weights; one at a time costs ~40%
        # more per step at 128^3 on a CPU (benchmarks/pm_step.py)
        components = [_force_component(pot_k, kvec, i, force_shape) for i in range(3)]
        return cic_gather_add(p, components, xf, kick).reshape(momenta.shape)
    for i in range(3):
        p = cic_gather_add(p, [_force_component(pot_k, kvec, i, force_shape)], xf, kick, cic_chunk_size, columns=(i,))
    return p.reshape(momenta.shape)


def _force_potential(positions, mesh_shape, compensation, force_mesh_factor, cic_chunk_size):
    """The force-mesh positions, potential and wavevectors of :func:`pm_forces_compensated`.

    Returns:
        (xf (n, 3) positions in force-mesh units, pot_k rfft of the potential, kvec, force mesh shape).
    """
    import jax.numpy as jnp
    from jax import lax
    from jaxpm.kernels import cic_compensation, invlaplace_kernel

    f = int(force_mesh_factor)
    if compensation is None:
        compensation = 2 if f == 1 else 0
    force_shape = tuple(int(n) * f for n in mesh_shape)
    # Shift the force mesh so that the unperturbed particles (at i + 1/2 of the particle grid)
    # sit half-way between force-mesh points, where CIC weights are linear in the displacement
    # and the lattice paints to a uniform field (see run_pm); a translation, nothing else.
    # With f = 1 the shift is the identity: the positions are used as they are, so that no
    # shifted copy of them (12 bytes per particle) is made.
    xf = positions.reshape(-1, 3)
    if f != 1:
        xf = (xf - 0.5) * jnp.float32(f) + 0.5
    rho_k = jnp.fft.rfftn(cic_scatter(xf, force_shape, chunk_size=cic_chunk_size))
    # The kernels below are products of small per-axis arrays, computed inside the fusions that
    # apply them. Inside the time loop they are loop-invariant, and XLA would hoist them out of
    # it as full meshes kept alive for the whole run (~12 bytes per cell: the Green's function,
    # the CIC window and two gradient kernels, measured with benchmarks/xod_forward.py). Tying
    # the wavevectors to this step's density (an optimisation barrier) keeps them in the step.
    kvec, rho_k = lax.optimization_barrier((rfft_wavevectors(force_shape), rho_k))
    pot_k = rho_k * (invlaplace_kernel(kvec) * jnp.float32(f * f))
    if compensation:
        window = cic_compensation(kvec) ** compensation
        pot_k = pot_k * window
    return xf, pot_k, kvec, force_shape


def _force_component(pot_k, kvec, axis: int, force_shape):
    """Component ``axis`` of the force on the force mesh: irfft of -i k_axis (4th-order) pot_k."""
    import jax.numpy as jnp
    from jaxpm.kernels import gradient_kernel

    return jnp.fft.irfftn(-gradient_kernel(kvec, axis) * pot_k, force_shape).astype(jnp.float32)


def lpt_on_grid(cosmo_jc, delta_lin, a: float):
    """2LPT displacement and momentum of the particles on the mesh points (Jenkins 2010 eqs.
    2-3): ``jaxpm.pm.lpt(order=2)`` with the first- and second-order forces taken on the mesh
    itself instead of read back by CIC at zero displacement, which returns the same mesh values.
    jaxpm's read splits more than 2^24 particles into chunks and fails on the remainder chunk
    (an integer offset meets ``.astype``), so paper-scale slabs (~2e7 particles) cannot use it.
    Agrees with jaxpm's lpt to float32 rounding where both run.

    Two stages, lean in device memory (benchmarks/xod_forward.py): :func:`lpt_potentials`
    (the displacement and momentum potentials, from the density and the second-order source)
    and :func:`lpt_from_potentials` (their gradients, one component at a time). Run as separate
    programs (as :func:`run_pm` does), the source's scratch meshes never coexist with the
    particles. The force (jaxpm's third output) is not made: the KDK integrator computes its
    own from the particles (:func:`_make_advance`).

    Args:
        cosmo_jc: jax_cosmo cosmology.
        delta_lin: mesh_shape linear overdensity at z = 0 (mesh units: one particle per cell).
        a: scale factor of the initial conditions.

    Returns:
        (dx, p): mesh_shape + (3,) float32 displacements [mesh cells] and momenta in jaxpm's
        normalisation (p = a^2 f E dx per order).
    """
    return lpt_from_potentials(*lpt_potentials(cosmo_jc, delta_lin, a), tuple(delta_lin.shape))


def lpt_potentials(cosmo_jc, delta_lin, a: float):
    """The potentials whose gradients are the 2LPT displacement and momentum at ``a``.

    dx = -grad(D1 phi1 + D2 phi2) and p = -grad(V1 phi1 + V2 phi2) (jaxpm's normalisation,
    V = a^2 f E D per order; the gradient is linear), phi1 = lap^-1 delta and phi2 = lap^-1 of
    the second-order source sum_{i<j} (phi_ii phi_jj - phi_ij^2) (as jaxpm). Real FFTs (half
    the complex mesh of jaxpm's ``fft3d``); the six terms phi_ij are made and summed one per
    iteration of a loop: in straight-line code XLA schedules their inverse FFTs side by side
    and fuses the sum into one pass over all six (on the CPU, 67 instead of 50 bytes per
    particle for the 2LPT program, benchmarks/xod_forward.py).

    Args:
        cosmo_jc, delta_lin, a: as :func:`lpt_on_grid`.

    Returns:
        (pot_dx_k, pot_p_k): rfftn-shaped complex64 potentials (mesh units).
    """
    import jax.numpy as jnp
    import jax_cosmo as jc
    from jax import lax
    from jaxpm.growth import growth_factor, growth_factor_second, growth_rate, growth_rate_second
    from jaxpm.kernels import gradient_kernel, invlaplace_kernel

    shape = tuple(delta_lin.shape)
    kvec = rfft_wavevectors(shape)
    a = jnp.atleast_1d(a)
    e = jnp.sqrt(jc.background.Esqr(cosmo_jc, a))
    pot_k = jnp.fft.rfftn(delta_lin) * invlaplace_kernel(kvec)
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]  # jaxpm's order of the sum
    is_diagonal = jnp.asarray([i == j for i, j in pairs])
    shear_terms = [
        functools.partial(
            lambda pk, i, j: jnp.fft.irfftn(gradient_kernel(kvec, i) * gradient_kernel(kvec, j) * pk, shape), i=i, j=j
        )
        for i, j in pairs
    ]

    def add_shear_term(t, sums):
        # diagonal terms: source += phi_ii * (sum of the previous phi_jj); off-diagonal: -= phi_ij^2
        delta2, shear_acc = sums
        term = lax.switch(t, shear_terms, pot_k).astype(jnp.float32)
        diagonal = is_diagonal[t]
        return (jnp.where(diagonal, delta2 + term * shear_acc, delta2 - term**2),
                jnp.where(diagonal, shear_acc + term, shear_acc))

    zero = jnp.zeros(shape, jnp.float32)
    delta2, _ = lax.fori_loop(0, len(pairs), add_shear_term, (zero, zero))
    pot2_k = jnp.fft.rfftn(delta2) * invlaplace_kernel(kvec)
    d1 = growth_factor(cosmo_jc, a)
    d2 = 3.0 / 7.0 * growth_factor_second(cosmo_jc, a)  # jaxpm's renormalised D2
    v1 = a**2 * growth_rate(cosmo_jc, a) * e * d1
    v2 = a**2 * growth_rate_second(cosmo_jc, a) * e * d2
    return d1 * pot_k + d2 * pot2_k, v1 * pot_k + v2 * pot2_k


def lpt_gradient(pot_k, mesh_shape: tuple[int, int, int], lattice_offset: float | None = None):
    """-grad of one potential of :func:`lpt_potentials` (mesh_shape + (3,) float32), one
    component per loop iteration (the potential, one inverse FFT and the output alive at once).

    Args:
        pot_k: the potential (rfft layout).
        mesh_shape: the real mesh's shape.
        lattice_offset: if given, the output is the particle positions q + lattice_offset + dx
            in mesh units (q: the integer lattice), written in place of dx.
    """
    import jax.numpy as jnp
    from jax import lax
    from jaxpm.kernels import gradient_kernel

    shape = tuple(int(n) for n in mesh_shape)
    kvec = rfft_wavevectors(shape)
    gradients = [
        functools.partial(lambda pk, i: jnp.fft.irfftn(-gradient_kernel(kvec, i) * pk, shape).astype(jnp.float32), i=i)
        for i in range(3)
    ]

    def add_component(i, out):
        out_i = lax.switch(i, gradients, pot_k)
        if lattice_offset is not None:
            # the lattice coordinate along axis i (iotas, fused into the addition)
            out_i = out_i + (lax.convert_element_type(lax.broadcasted_iota(jnp.int32, shape, 0) * (i == 0)
                                                      + lax.broadcasted_iota(jnp.int32, shape, 1) * (i == 1)
                                                      + lax.broadcasted_iota(jnp.int32, shape, 2) * (i == 2), jnp.float32)
                             + jnp.float32(lattice_offset))
        return lax.dynamic_update_slice(out, out_i[..., None], (0, 0, 0, i))

    return lax.fori_loop(0, 3, add_component, jnp.zeros(shape + (3,), jnp.float32))


def lpt_from_potentials(pot_dx_k, pot_p_k, mesh_shape: tuple[int, int, int], lattice_offset: float | None = None):
    """Displacements (or, with ``lattice_offset``, positions) and momenta, mesh_shape + (3,)
    float32 each: :func:`lpt_gradient` of the two potentials of :func:`lpt_potentials`, the
    momenta first (run as separate programs, as :func:`_jitted_lpt` does, the momentum
    potential is freed before the positions are made)."""
    p = lpt_gradient(pot_p_k, mesh_shape)
    return lpt_gradient(pot_dx_k, mesh_shape, lattice_offset), p


@functools.lru_cache(maxsize=8)
def _jitted_lpt(mesh_shape: tuple[int, int, int]):
    """The two stages of :func:`lpt_on_grid` as two jitted programs, for particles that start
    half a cell off the mesh points (see :func:`run_pm`): (cosmo_jc, delta_lin, a) -> (x, p),
    x = q + 1/2 + dx in mesh units.

    Run eagerly, the growth-function evaluations dispatch op by op (~0.6 s per 3e5-particle
    slab on a CPU core); compiled once per mesh shape, ~0.15 s. Three programs: the first's
    scratch meshes (the source and its terms) are freed before the particles exist, and each
    potential is freed as its gradient is made (benchmarks/xod_forward.py). With
    ``consume_field=True`` the linear field (a device array) is freed after the first program.
    """
    import jax

    potentials = jax.jit(lpt_potentials)
    # three programs, each potential freed once its gradient is made: the momenta first, so
    # that the positions are made with only the momenta and one potential held. (Donation
    # cannot free them: a half-complex potential aliases no (mesh, 3) output.)
    momenta = jax.jit(functools.partial(lpt_gradient, mesh_shape=mesh_shape))
    positions = jax.jit(functools.partial(lpt_gradient, mesh_shape=mesh_shape, lattice_offset=0.5))

    def run(cosmo_jc, delta_lin, a, consume_field: bool = False):
        pot_dx_k, pot_p_k = potentials(cosmo_jc, delta_lin, a)
        if consume_field:  # the caller's linear field is not needed any more: free it now
            delta_lin.delete()
        p = momenta(pot_p_k)
        pot_p_k.delete()
        x = positions(pot_dx_k)
        pot_dx_k.delete()
        return x, p

    return run


@functools.lru_cache(maxsize=8)
def _make_advance(
    mesh_shape: tuple[int, int, int],
    compensation: int | None = None,
    force_mesh_factor: int = 1,
    cic_chunk_size: int | None = None,
    carry_force: bool = False,
):
    """Jitted KDK integrator: advance(state, factors, omega_m, i0, i1) runs steps i0..i1-1.

    The state is (x, p), momenta synchronised with the positions at a_edges[i0] on entry and
    at a_edges[i1] on return (a snapshot). The second half-kick of step i and the first of
    step i + 1 use the same force F(x_{i+1}), so they are applied as one kick,
    p += (kick2_i + kick1_{i+1}) F(x_{i+1}), except after the last step of the call (only
    kick2: the momenta are then synchronised). The force is thus a transient of one step,
    not part of the loop state (12 bytes per particle less), at the price of one more force
    evaluation per call (at its first step) than a carried force; the state's buffers are
    donated, so XLA updates them in place. ``carry_force=True`` is the previous program,
    state (x, p, F(x)) with the force of the last step carried (kept as the reference of
    tests/test_simulate.py and benchmarks/xod_forward.py; its state is not donated).

    Cached per (mesh, compensation, force mesh, CIC chunk, integrator): the simulations of a
    chunk share one compilation instead of tracing and compiling a new closure each.

    Returns:
        (advance, force): the jitted integrator and the jitted force ``force(x, omega_m)``
        (1.5 Omega_m times :func:`pm_forces_compensated`, the ``F`` above).
    """
    import jax
    import jax.numpy as jnp

    def force(x, omega_m):
        return pm_forces_compensated(x, mesh_shape, compensation, force_mesh_factor, cic_chunk_size) * 1.5 * omega_m

    if carry_force:
        def advance_carried(state, factors, omega_m, i0, i1):
            def body(i, st):
                x, p, f = st
                kick1, drift, kick2 = factors[i, 0], factors[i, 1], factors[i, 2]
                p = p + kick1 * f
                x = x + drift * p
                f = force(x, omega_m)
                p = p + kick2 * f
                return x, p, f

            return jax.lax.fori_loop(i0, i1, body, state)

        return jax.jit(advance_carried), jax.jit(force)

    def kick(p, x, factor, omega_m):
        return pm_kick(p, x, factor * 1.5 * omega_m, mesh_shape, compensation, force_mesh_factor, cic_chunk_size)

    def advance(state, factors, omega_m, i0, i1):
        x, p = state
        last_step = factors.shape[0] - 1
        p = kick(p, x, factors[i0, 0], omega_m)

        def body(i, st):
            x, p = st
            x = x + factors[i, 1] * p
            # first half-kick of the next step, unless this is the call's last step (snapshot)
            next_kick1 = jnp.where(i + 1 < i1, factors[jnp.minimum(i + 1, last_step), 0], 0.0)
            return x, kick(p, x, factors[i, 2] + next_kick1, omega_m)

        return jax.lax.fori_loop(i0, i1, body, (x, p))

    return jax.jit(advance, donate_argnums=(0,)), jax.jit(force)


def run_pm(
    cosmo: Cosmology,
    k_h_mpc: np.ndarray,
    pk_linear_z0: np.ndarray,
    *,
    mesh_shape: int | Sequence[int],
    box_mpc_h: float | Sequence[float],
    seed: int,
    snapshot_a: Sequence[float] = (1.0,),
    a_init: float = 0.1,
    n_steps: int = 40,
    keep_particles: bool = True,
    compensation: int | None = None,
    force_mesh_factor: int = 1,
    context: str | None = None,
    initial_snapshot: bool = True,
    density: bool = True,
    cic_chunk_size: int | None = None,
    carry_force: bool = False,
) -> PMRun:
    """Run one particle-mesh simulation (one particle per mesh cell of the particle grid).

    Args:
        cosmo: cosmology (``Omega_m`` enters the forces; the growth functions are jaxpm's).
        k_h_mpc, pk_linear_z0: (n_k,) linear P(k) table at z = 0 [h/Mpc, (Mpc/h)^3] (the
            Gaussian field is drawn at z = 0 and scaled by the growth factor).
        mesh_shape: cells (= particles) per axis, int or (3,).
        box_mpc_h: box side(s) [Mpc/h], scalar or (3,); cells must be cubic (L_i / N_i equal).
        seed: integer seed of ``jax.random.PRNGKey``.
        snapshot_a: scale factors at which to return snapshots, in (a_init, 1].
        a_init: scale factor of the 2LPT initial conditions.
        n_steps: total number of KDK steps from a_init to max(snapshot_a).
        keep_particles: return particle positions/velocities (else only density meshes).
        compensation: CIC windows divided out of the PM force (see :func:`pm_forces_compensated`;
            None: 2 for force_mesh_factor 1, else 0).
        force_mesh_factor: force mesh cells per particle-grid cell per axis (FastPM's boost
            factor B). B = 1 underresolves halo cores (FoF masses of halos with ~100 particles
            come out low); B = 2 costs ~8x the FFT time. Density snapshots stay on the
            particle grid.
        context: text naming the simulation in error messages (default: seed and cosmology).
        initial_snapshot: return the 2LPT snapshot at a_init (``PMRun.initial``; None
            otherwise: its particles are then never copied to the host nor painted). The box
            runs' validation spectra need it; lightcone slabs do not.
        density: paint the CIC density of every snapshot (``Snapshot.density``; None
            otherwise). Lightcone slabs keep only their particles (the LDL paints them).
        cic_chunk_size: particles per chunk of the PM force's CIC paint and read (None: all
            at once; :func:`pm_forces_compensated`): less device memory, the same particles to
            float32 round-off.
        carry_force: integrate with the previous program, whose state carries the force
            (:func:`_make_advance`; the reference of the fused kicks, equal to float32 round-off).

    Returns:
        :class:`PMRun`.

    Raises:
        NonFiniteSimulationError: NaN/inf in the initial field, the LPT or any snapshot.
    """
    import jax
    import jax.numpy as jnp
    import jaxpm
    from jaxpm.pm import linear_field

    shape = tuple(int(n) for n in np.broadcast_to(np.asarray(mesh_shape), (3,)))
    box = tuple(float(b) for b in np.broadcast_to(np.asarray(box_mpc_h, dtype=np.float64), (3,)))
    cells = np.asarray(box) / np.asarray(shape)
    if min(shape) < 2:
        raise ValueError(f"mesh_shape must be >= 2 per axis, got {shape}")
    if not np.allclose(cells, cells[0], rtol=1e-6):
        raise ValueError(f"cells must be cubic: box_mpc_h {box} / mesh_shape {shape} = {cells.tolist()}")
    if not 0 < a_init < 1:
        raise ValueError(f"a_init must be in (0, 1), got {a_init}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2^32), got {seed}")
    if int(force_mesh_factor) != force_mesh_factor or force_mesh_factor < 1:
        raise ValueError(f"force_mesh_factor must be a positive integer, got {force_mesh_factor}")
    if not keep_particles and not density:
        raise ValueError("keep_particles=False with density=False leaves a run with no output")
    cell = float(cells[0])
    context = context or f"seed={seed}, {cosmo}, box={box}, mesh={shape}"
    a_edges, reached = _scale_factor_grid(a_init, snapshot_a, n_steps)
    cosmo_jc = jax_cosmology(cosmo)

    delta_lin = linear_field(shape, box, power_interpolator(k_h_mpc, pk_linear_z0), jax.random.PRNGKey(seed))
    check_finite("initial linear field", delta_lin, context)
    linear_delta_z0 = np.array(delta_lin, dtype=np.float32)  # a host copy: the device mesh is donated
    # Particles start half a cell off the mesh points (at cell centres of jaxpm's mesh, whose
    # points sit at integer coordinates). On the mesh points themselves, CIC painting is not
    # linear in small displacements (the kernel's kink at zero distance): a 3 k_f sine wave
    # on a 16^3 mesh paints with 17% too little amplitude, which slows early growth and
    # scatters the large-scale modes. Half a cell off, weights are linear in the displacement.
    # The offset translates the whole realisation by half a cell; nothing else changes.
    x, p = _jitted_lpt(shape)(cosmo_jc, delta_lin, a_init, consume_field=True)
    del delta_lin
    check_finite("2LPT displacements", x, context)
    factors = jnp.asarray(pm_step_factors(cosmo_jc, a_edges), dtype=jnp.float32)
    check_finite("KDK step factors", factors, context)
    advance, force = _make_advance(shape, compensation, int(force_mesh_factor), cic_chunk_size, bool(carry_force))
    omega_m = jnp.float32(cosmo.Omega_m)

    def snapshot(a, xs, ps):
        # jaxpm's mesh points sit at integer mesh coordinates; ours at cell centres (i + 1/2) H
        # (clustersbi.mesh convention "centre")
        flat = jnp.mod(xs.reshape(-1, 3) + 0.5, jnp.asarray(shape, jnp.float32))
        pos = np.asarray(flat * cell, dtype=np.float32)
        vel = np.asarray(ps.reshape(-1, 3) * (H0_KM_S_MPC_H * cell / a), dtype=np.float32)
        check_finite(f"positions at a={a:.4f}", pos, context)
        check_finite(f"velocities at a={a:.4f}", vel, context)
        pos_box = np.mod(pos, np.asarray(box, dtype=np.float32))
        pos_box[pos_box >= np.asarray(box, dtype=np.float32)] = 0.0
        dens = np.asarray(cic_paint(pos_box, shape, box, convention="centre")) if density else None
        return Snapshot(float(a), pos_box if keep_particles else None, vel if keep_particles else None, dens)

    initial = snapshot(a_init, x, p) if initial_snapshot else None
    state = (x, p, force(x, omega_m)) if carry_force else (x, p)
    del x, p  # the state's buffers are donated to advance (updated in place)
    snaps = []
    start = 0
    for a_target, stop in zip(np.sort(np.asarray(snapshot_a, dtype=np.float64)), reached):
        logger.info("PM %s: steps %d-%d to a=%.4f", shape, start, stop, a_target)
        state = advance(state, factors, omega_m, start, stop)
        snaps.append(snapshot(a_target, state[0], state[1]))
        start = stop
    metadata = {
        "cosmology": cosmo.__dict__.copy(), "a_init": a_init, "n_steps": len(a_edges) - 1,
        "integrator": "FastPM KDK", "lpt_order": 2,
        "force_mesh_factor": int(force_mesh_factor),
        "compensation": compensation if compensation is not None else (2 if int(force_mesh_factor) == 1 else 0), "jaxpm_version": getattr(jaxpm, "__version__", "unknown"),
    }
    return PMRun(shape, box, int(seed), linear_delta_z0, initial, snaps, metadata)


def simulate_box(
    cosmo: Cosmology,
    k_h_mpc: np.ndarray,
    pk_linear_z0: np.ndarray,
    *,
    box_mpc_h: float,
    n_mesh: int,
    z_snapshot: float | Sequence[float],
    seed: int,
    a_init: float = 0.1,
    n_steps: int = 40,
    keep_particles: bool = True,
    force_mesh_factor: int = 1,
) -> PMRun:
    """Cubic box of side ``box_mpc_h`` [Mpc/h] with ``n_mesh``^3 particles and cells, at ``z_snapshot``."""
    z = np.atleast_1d(np.asarray(z_snapshot, dtype=np.float64))
    if np.any(z < 0):
        raise ValueError(f"z_snapshot must be >= 0, got {z.tolist()}")
    return run_pm(
        cosmo, k_h_mpc, pk_linear_z0, mesh_shape=n_mesh, box_mpc_h=box_mpc_h, seed=seed,
        snapshot_a=tuple(1.0 / (1.0 + z)), a_init=a_init, n_steps=n_steps, keep_particles=keep_particles,
        force_mesh_factor=force_mesh_factor,
    )


def density_power_spectrum(density: np.ndarray, box_mpc_h: float, deconvolve_cic: bool = True, **binning):
    """P(k) of a cubic CIC density mesh (units of the mean), via :mod:`clustersbi.power`.

    Args:
        density: (N, N, N) density in units of the mean (1 + delta).
        box_mpc_h: box side [Mpc/h].
        deconvolve_cic: divide by the CIC window (W^2, sinc^4 per axis).
        binning: forwarded to :func:`clustersbi.power.power_spectrum_from_mesh`
            (``k_edges_h_mpc``, ``dk_in_kf``, ``k_min_in_kf``, ``k_max_h_mpc``).

    Returns:
        :class:`clustersbi.power.PowerSpectrum` (k [h/Mpc], P [(Mpc/h)^3], shot noise included).
    """
    from .power import power_spectrum_from_mesh

    dens = np.asarray(density, dtype=np.float64)
    mean = dens.mean()
    if not mean > 0:
        raise ValueError(f"density mesh has non-positive mean {mean}")
    return power_spectrum_from_mesh(dens / mean - 1.0, box_mpc_h, window_order="cic" if deconvolve_cic else None, **binning)
