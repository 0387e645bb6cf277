"""Device memory per particle of the PM forward model (2LPT, one KDK step, a whole run), and
the time per lightcone slab, before and after the lean PM (issue 14, points 1 and 2).

Usage: python benchmarks/xod_forward.py [--sizes 32 64 96x96x48 287x287x242] [--chunk 65536]
       [--steps 10] [--slabs 3] [--no-time]

Memory: XLA's compiled memory analysis of each jitted program (``jax.jit(f).lower(...).compile()
.memory_analysis()``): peak = arguments + outputs + temporaries - outputs aliased to donated
arguments, in bytes per particle (one particle per cell). Programs are compiled for abstract
shapes, nothing is allocated, so the paper's slab mesh (287 x 287 x 242 = 2e7 particles, fov
20 deg^2 at 0.39 Mpc/h cells, sized for Omega_m = 0.1) is compiled even on a small CPU. Each
buffer is a mesh or a per-particle array, so the numbers are per particle and scale; the
CPU's analysis is an estimate of a GPU's (a GPU compiler fuses and schedules differently, and
cuFFT adds a workspace).

- "before": the programs as they were before issue 14's lean PM: the 2LPT with complex FFTs
  returning (dx, p, F) (``_previous_lpt_on_grid`` below, jaxpm's ``fft3d``), then x = q + 1/2 + dx and the initial force; the KDK state
  (x, p, F), not donated (``_make_advance(carry_force=True)``), unchunked CIC.
- "after": ``lpt_potentials``, then ``lpt_gradient`` of each potential (three programs, as
  ``pm._jitted_lpt`` runs them: the peak is the largest, plus what the later ones find held),
  the (x, p) state donated, kicks one force component at a time, CIC in chunks of ``--chunk``.
- "run": 2LPT and ``--steps`` KDK steps as one jitted program (the peak a device-resident slab
  pipeline would see); "run_pm" runs them as separate programs: its peak is the largest of them.

Time: seconds per lightcone slab of the CPU preset (config/config.yaml: 4 deg^2, 1 Mpc/h cells,
10 steps, the fixed slab mesh of Omega_m = 0.1 as benchmarks/lightcone_slab.py), wall and process
CPU, after compilation (the first slab is not counted): "before" is run_pm with the previous
2LPT, the carried force, unchunked CIC, the a_init snapshot and the final density; "after" is
``simulate_lightcone_slabs`` (no a_init snapshot, no density), unchunked and chunked.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from clustersbi import pm
from clustersbi.cosmology import Cosmology, camb_power
from clustersbi.lightcone import lightcone_slab_geometry, lightcone_slab_mesh, simulate_lightcone_slabs


def _previous_lpt_on_grid(cosmo_jc, delta_lin, a):
    """clustersbi.pm.lpt_on_grid before the lean 2LPT (complex FFTs, all meshes at once, (dx, p, f))."""
    import jax_cosmo as jc
    from jaxpm.growth import dGf2a, dGfa, growth_factor, growth_factor_second, growth_rate, growth_rate_second
    from jaxpm.distributed import fft3d, ifft3d  # as the previous code: fftk's wavevectors follow their layout
    from jaxpm.kernels import fftk, gradient_kernel, invlaplace_kernel

    def grid_forces(pot_k):
        return jnp.stack([ifft3d(-gradient_kernel(kvec, i) * pot_k) for i in range(3)], axis=-1)

    a = jnp.atleast_1d(a)
    e = jnp.sqrt(jc.background.Esqr(cosmo_jc, a))
    delta_k = fft3d(delta_lin)
    kvec = fftk(delta_k)
    pot_k = delta_k * invlaplace_kernel(kvec)
    force1 = grid_forces(pot_k)
    dx = growth_factor(cosmo_jc, a) * force1
    p = a**2 * growth_rate(cosmo_jc, a) * e * dx
    f = a**2 * e * dGfa(cosmo_jc, a) * force1
    delta2, shear_acc = 0.0, 0.0
    for i in range(3):
        shear_ii = ifft3d(gradient_kernel(kvec, i) ** 2 * pot_k)
        delta2 = delta2 + shear_ii * shear_acc
        shear_acc = shear_acc + shear_ii
        for j in range(i + 1, 3):
            delta2 = delta2 - ifft3d(gradient_kernel(kvec, i) * gradient_kernel(kvec, j) * pot_k) ** 2
    force2 = grid_forces(fft3d(delta2) * invlaplace_kernel(kvec))
    dx2 = 3.0 / 7.0 * growth_factor_second(cosmo_jc, a) * force2
    p2 = a**2 * growth_rate_second(cosmo_jc, a) * e * dx2
    f2 = a**2 * e * dGf2a(cosmo_jc, a) * force2
    return dx + dx2, p + p2, f + f2


def _lattice(shape):
    return jnp.stack(jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in shape], indexing="ij"), axis=-1)


@functools.lru_cache(maxsize=4)
def _previous_lpt_runner(shape):
    """(cosmo_jc, delta, a) -> (x, p) as run_pm did before (the 2LPT program, then x = q + 1/2 + dx)."""
    lpt = jax.jit(_previous_lpt_on_grid)
    to_x = jax.jit(lambda dx: _lattice(shape) + 0.5 + dx)

    def run(cosmo_jc, delta_lin, a, consume_field=False):  # (run_pm's keyword; the field is kept)
        dx, p, _ = lpt(cosmo_jc, delta_lin, a)
        return to_x(dx), p

    return run


def _peak_bytes(fn, *args, donate=()):
    m = jax.jit(fn, donate_argnums=donate).lower(*args).compile().memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def _parse_size(text: str) -> tuple[int, int, int]:
    parts = [int(t) for t in text.lower().split("x")]
    return tuple(parts * 3 if len(parts) == 1 else parts)


def memory_rows(shape, chunk: int, steps: int, cosmo_jc) -> dict[str, float]:
    """Bytes per particle of each program (module docstring) on an abstract mesh of ``shape``."""
    n = float(np.prod(shape))
    real = jax.ShapeDtypeStruct(shape, jnp.float32)
    vec = jax.ShapeDtypeStruct(shape + (3,), jnp.float32)
    half = jax.ShapeDtypeStruct(shape[:2] + (shape[2] // 2 + 1,), jnp.complex64)
    half_cells = float(np.prod(half.shape))
    factors = jax.ShapeDtypeStruct((steps, 3), jnp.float32)
    om = jnp.float32(0.3)
    a = 0.1
    rows = {}
    # 2LPT: before, the 2LPT program, x = q + 1/2 + dx, and the initial force, each a program
    old_force = pm._make_advance(shape, None, 1, None, True)[1]
    rows["2LPT before"] = max(
        _peak_bytes(_previous_lpt_on_grid, cosmo_jc, real, a),
        _peak_bytes(lambda dx, p, f: (_lattice(shape) + 0.5 + dx, p, f), vec, vec, vec),
        _peak_bytes(old_force, vec, om) + 12 * n,  # + the momenta held meanwhile
    ) / n
    potentials = _peak_bytes(pm.lpt_potentials, cosmo_jc, real, a)
    # then the momenta (the displacement potential held meanwhile), then the positions (the
    # momenta held), each potential freed once its gradient is made, as pm._jitted_lpt runs them
    momenta = _peak_bytes(functools.partial(pm.lpt_gradient, mesh_shape=shape), half) + 8 * half_cells
    positions = _peak_bytes(functools.partial(pm.lpt_gradient, mesh_shape=shape, lattice_offset=0.5), half) + 12 * n
    rows["2LPT after"] = max(potentials, momenta, positions) / n
    # one KDK step (the loop program; its memory does not depend on the number of steps)
    old_advance = pm._make_advance(shape, None, 1, None, True)[0]
    rows["KDK step before"] = _peak_bytes(old_advance, (vec, vec, vec), factors, om, 0, 1) / n
    for label, c in (("KDK step after, unchunked", None), (f"KDK step after, chunks of {chunk}", chunk)):
        advance = pm._make_advance(shape, None, 1, c, False)[0]
        rows[label] = _peak_bytes(advance, (vec, vec), factors, om, 0, 1, donate=(0,)) / n

    # the whole run as one program
    def run_before(delta, fac):
        dx, p, _ = _previous_lpt_on_grid(cosmo_jc, delta, a)
        x = _lattice(shape) + 0.5 + dx
        return old_advance((x, p, old_force(x, om)), fac, om, 0, steps)

    advance = pm._make_advance(shape, None, 1, chunk, False)[0]

    def run_after(delta, fac):
        x, p = pm.lpt_from_potentials(*pm.lpt_potentials(cosmo_jc, delta, a), shape, lattice_offset=0.5)
        return advance((x, p), fac, om, 0, steps)

    rows["run (one program) before"] = _peak_bytes(run_before, real, factors) / n
    rows["run (one program) after"] = _peak_bytes(run_after, real, factors) / n
    rows["run_pm (largest program) before"] = max(rows["2LPT before"], rows["KDK step before"])
    rows["run_pm (largest program) after"] = max(rows["2LPT after"], rows[f"KDK step after, chunks of {chunk}"])
    return rows


def time_slabs(n_slabs: int, chunk: int) -> dict[str, tuple[float, float]]:
    """(wall, process CPU) seconds per CPU-preset slab after compilation, per variant."""
    cosmo = Cosmology()
    cell, fov, steps = 1.0, 4.0, 10
    linear = camb_power(cosmo, [0.0], np.geomspace(1e-4, 1.1 * np.sqrt(3) * np.pi / cell, 256))
    k, pk = linear.k_h_mpc, linear.pk_mpc3_h3[0]
    slabs = lightcone_slab_geometry(0.1, 0.5, 12, fov, cosmo.Omega_m)[: n_slabs + 1]
    mesh = lightcone_slab_mesh(lightcone_slab_geometry(0.1, 0.5, 12, fov, cosmo.Omega_m)
                               + lightcone_slab_geometry(0.1, 0.5, 12, fov, 0.1), cell)
    box = tuple(n * cell for n in mesh)
    lean_lpt = pm._jitted_lpt

    def before(slab):
        pm._jitted_lpt = _previous_lpt_runner
        try:
            pm.run_pm(cosmo, k, pk, mesh_shape=mesh, box_mpc_h=box, seed=slab.index,
                      snapshot_a=(1.0 / (1.0 + slab.z_centre),), n_steps=steps, carry_force=True)
        finally:
            pm._jitted_lpt = lean_lpt

    def after(c):
        return lambda slab: simulate_lightcone_slabs(cosmo, k, pk, [slab], cell_mpc_h=cell, seeds=[slab.index],
                                                     n_steps=steps, mesh_shape=mesh, cic_chunk_size=c)

    variants = {"before": before, "after, unchunked": after(None), f"after, chunks of {chunk}": after(chunk)}
    print(f"slab mesh {mesh} ({np.prod(mesh):.3g} particles), {steps} steps, {n_slabs} slabs timed per variant",
          flush=True)
    times = {}
    for name, run in variants.items():
        run(slabs[0])  # compile
        wall, cpu = [], []
        for slab in slabs[1:]:
            t0, c0 = time.perf_counter(), time.process_time()
            run(slab)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        times[name] = (float(np.mean(wall)), float(np.mean(cpu)))
        print(f"  {name:<28} {times[name][0]:6.2f} s wall {times[name][1]:6.2f} s CPU per slab", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["32", "64", "96x96x48", "287x287x242"])
    parser.add_argument("--chunk", type=int, default=1 << 16, help="CIC chunk of the 'after' programs [particles]")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--slabs", type=int, default=3, help="slabs timed per variant (after a first, compiling one)")
    parser.add_argument("--no-time", action="store_true", help="memory only")
    args = parser.parse_args()
    dev = jax.devices()[0]
    print(f"device {dev.platform} ({getattr(dev, 'device_kind', '?')}), jax {jax.__version__}; "
          f"bytes per particle (XLA compiled memory analysis: arguments + outputs + temporaries - aliased)")
    cosmo_jc = pm.jax_cosmology(Cosmology())
    shapes = [_parse_size(s) for s in args.sizes]
    table = {}
    for shape in shapes:
        table[shape] = memory_rows(shape, args.chunk, args.steps, cosmo_jc)
        print(f"  {'x'.join(map(str, shape))} done", flush=True)
    labels = list(next(iter(table.values())))
    head = "".join(f" {'x'.join(map(str, s)):>12}" for s in shapes)
    print(f"{'program [bytes/particle]':<36}{head}")
    for label in labels:
        print(f"{label:<36}" + "".join(f" {table[s][label]:12.1f}" for s in shapes))
    if not args.no_time:
        time_slabs(args.slabs, args.chunk)


if __name__ == "__main__":
    main()
