"""Time per PM step vs its FFT floor, and peak memory of a 128^3 simulation.

One KDK step of :mod:`clustersbi.pm` does one force evaluation: a CIC paint (one
windowed scatter), one forward and three inverse real 3D FFTs (``jnp.fft.rfftn``/``irfftn``),
one CIC read of the 3-vector force, and the kick/drift updates. Two floors are printed next to
it: the time of those 4 real FFTs alone on the same mesh, and of 4 complex FFTs (jaxpm's
``fft3d``/``ifft3d``, what jaxpm's own ``pm_forces`` does).
Run: ``python benchmarks/pm_step.py [--sizes 64 128] [--steps 5] [--force-mesh-factor 1]``.
On a GPU (JAX picks it when ``jax[cuda]`` is installed; ``JAX_PLATFORMS=cpu`` forces the CPU), e.g.
``--sizes 64 128 256 512 --full-run-mesh 256``: the last two columns then give the memory of the
step program and the allocator peak (``-`` on the CPU backend).

Measured on the 2-core CPU (shared, so +-20%), s per step, before -> after this module moved
from jaxpm's ``cic_paint``/``cic_read`` + complex FFTs to its own scatter/gather + real FFTs:

    mesh   before   after   4 rFFT   4 cFFT   after/rFFT  after/cFFT
    64^3   0.080    0.021   0.0035   0.0069      6.0         3.0
    128^3  1.06     0.47    0.094    0.30        5.0         1.6

(the machine was loaded by other jobs, load ~4 on 2 cores; a separate run gave 0.039 and
0.58 s/step). Peak RSS of a full 128^3, 40-step run: 1.70 GB (27 s with compilation).
The step now costs less than 2x the 4 complex FFTs jaxpm itself uses at 128^3, but 5-6x the
4 real FFTs: the CIC scatter and gather (XLA's CPU scatter is serial) still dominate.

"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def _best_of(fn, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _device_peak_gb(device) -> float | None:
    """Peak bytes the JAX allocator has held on ``device`` so far (None on the CPU backend)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 1024**3


def _program_gb(jitted, *args) -> float | None:
    """Arguments + outputs + temporaries of the compiled XLA program (what one call needs)."""
    try:
        m = jitted.lower(*args).compile().memory_analysis()
        return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                - m.alias_size_in_bytes) / 1024**3
    except Exception:  # not every backend/version reports it
        return None


def _fmt_gb(x: float | None) -> str:
    return f"{x:.2f}" if x is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--box", type=float, default=256.0)
    parser.add_argument("--force-mesh-factor", type=int, default=1)
    parser.add_argument("--no-full-run", action="store_true", help="skip the full 40-step run")
    parser.add_argument("--full-run-mesh", type=int, default=128, help="mesh of the full 40-step run")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    from jaxpm.distributed import fft3d, ifft3d
    from jaxpm.pm import linear_field, lpt

    from clustersbi.cosmology import Cosmology, camb_power
    from clustersbi.pm import _make_advance, jax_cosmology, pm_step_factors, power_interpolator, run_pm

    dev = jax.devices()[0]
    cosmo = Cosmology()
    k = np.geomspace(1e-4, 20.0, 400)
    pk = camb_power(cosmo, [0.0], k).pk_mpc3_h3[0]
    # Rows are printed as they finish, so a size that runs out of memory keeps the smaller ones.
    print(f"device: {dev.platform} ({getattr(dev, 'device_kind', '?')}), {jax.device_count()} device(s), "
          f"jax {jax.__version__}; force mesh factor {args.force_mesh_factor} (FFT floors on the force mesh)")
    print("step program = XLA arguments + outputs + temporaries of one advance() call [GB]; "
          "device peak = allocator peak so far in this process (includes the 2LPT set-up) [GB]")
    print(f"{'mesh':>6} {'s/step':>9} {'4 rFFT [s]':>11} {'4 cFFT [s]':>11} {'step/rFFT':>10} {'step/cFFT':>10}"
          f" {'step prog.':>11} {'dev. peak':>10}", flush=True)

    @jax.jit
    def four_ffts(field):
        fk = fft3d(field)
        return ifft3d(fk) + ifft3d(1j * fk) + ifft3d(-fk)

    @jax.jit
    def four_rffts(field):
        fk = jnp.fft.rfftn(field)
        return sum(jnp.fft.irfftn(c * fk, field.shape) for c in (1.0, 1j, -1.0))

    for n in args.sizes:
        try:
            shape = (n, n, n)
            delta = linear_field(shape, (args.box,) * 3, power_interpolator(k, pk), jax.random.PRNGKey(0))
            dx, p, _ = lpt(jax_cosmology(cosmo), delta, a=0.1, order=2)
            grid = jnp.stack(jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32)] * 3, indexing="ij"), axis=-1)
            x = grid + 0.5 + dx
            del grid, dx
            factors = jnp.asarray(pm_step_factors(jax_cosmology(cosmo), np.linspace(0.1, 1.0, args.steps + 1)),
                                  jnp.float32)
            advance, force = _make_advance(shape, force_mesh_factor=args.force_mesh_factor)
            om = jnp.float32(cosmo.Omega_m)
            state = (x, p, force(x, om))
            prog_gb = _program_gb(advance, state, factors, om, 0, args.steps)
            jax.block_until_ready(advance(state, factors, om, 0, 1))  # compile
            t_step = _best_of(lambda: jax.block_until_ready(advance(state, factors, om, 0, args.steps))) / args.steps
            mean = float(delta.mean())
            del state, x, p, delta

            fine = jnp.zeros(tuple(args.force_mesh_factor * s for s in shape), jnp.float32) + mean
            jax.block_until_ready(four_ffts(fine))
            jax.block_until_ready(four_rffts(fine))
            t_fft = _best_of(lambda: jax.block_until_ready(four_ffts(fine)))
            t_rfft = _best_of(lambda: jax.block_until_ready(four_rffts(fine)))
            del fine
        except Exception as err:  # e.g. RESOURCE_EXHAUSTED on a GPU: report it and go on
            print(f"{n:>4}^3 failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}", flush=True)
            continue
        print(f"{n:>4}^3 {t_step:9.4f} {t_rfft:11.4f} {t_fft:11.4f} {t_step / t_rfft:10.2f} {t_step / t_fft:10.2f}"
              f" {_fmt_gb(prog_gb):>11} {_fmt_gb(_device_peak_gb(dev)):>10}", flush=True)
    if not args.no_full_run:
        # a full simulation (2LPT + 40 steps + particles and density out): wall time and peak memory
        n = args.full_run_mesh
        t0 = time.perf_counter()
        run_pm(cosmo, k, pk, mesh_shape=n, box_mpc_h=args.box, seed=1, snapshot_a=(1.0,), n_steps=40,
               force_mesh_factor=args.force_mesh_factor)
        t_sim = time.perf_counter() - t0
        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kB
        print(f"{n}^3 simulation, 40 steps: {t_sim:.1f} s wall (with compilation); peak RSS {rss_gb:.2f} GB; "
              f"device peak so far {_fmt_gb(_device_peak_gb(dev))} GB")


if __name__ == "__main__":
    main()
