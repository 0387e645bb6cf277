"""Time per PM step vs its FFT floor, and peak memory of a 128^3 simulation.

One KDK step of :mod:`clustersbi.simulate` does one force evaluation: a CIC paint, one forward
and three inverse 3D FFTs (jaxpm's complex ``fft3d``/``ifft3d``), three CIC reads, and the
kick/drift updates. The floor printed next to it is the time of those 4 FFTs alone on the same
mesh. Run: ``python benchmarks/pm_step.py [--sizes 64 128] [--steps 5]``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--box", type=float, default=256.0)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    from jaxpm.distributed import fft3d, ifft3d
    from jaxpm.pm import linear_field, lpt

    from clustersbi.cosmology import Cosmology, camb_power
    from clustersbi.simulate import _make_advance, jax_cosmology, pm_step_factors, power_interpolator, run_pm

    cosmo = Cosmology()
    k = np.geomspace(1e-4, 20.0, 400)
    pk = camb_power(cosmo, [0.0], k).pk_mpc3_h3[0]
    rows = []
    for n in args.sizes:
        shape = (n, n, n)
        delta = linear_field(shape, (args.box,) * 3, power_interpolator(k, pk), jax.random.PRNGKey(0))
        dx, p, _ = lpt(jax_cosmology(cosmo), delta, a=0.1, order=2)
        grid = jnp.stack(jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32)] * 3, indexing="ij"), axis=-1)
        x = grid + 0.5 + dx
        factors = jnp.asarray(pm_step_factors(jax_cosmology(cosmo), np.linspace(0.1, 1.0, args.steps + 1)), jnp.float32)
        advance, force = _make_advance(shape)
        om = jnp.float32(cosmo.Omega_m)
        state = (x, p, force(x, om))
        jax.block_until_ready(advance(state, factors, om, 0, 1))  # compile
        t_step = _best_of(lambda: jax.block_until_ready(advance(state, factors, om, 0, args.steps))) / args.steps

        @jax.jit
        def four_ffts(field):
            fk = fft3d(field)
            return ifft3d(fk) + ifft3d(1j * fk) + ifft3d(-fk)

        jax.block_until_ready(four_ffts(delta))
        t_fft = _best_of(lambda: jax.block_until_ready(four_ffts(delta)))
        rows.append((n, t_step, t_fft))

    # peak memory of a full 128^3 simulation (2LPT + 40 steps + particles and density out)
    t0 = time.perf_counter()
    run_pm(cosmo, k, pk, mesh_shape=128, box_mpc_h=args.box, seed=1, snapshot_a=(1.0,), n_steps=40)
    t_sim = time.perf_counter() - t0
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: kB

    print(f"device: {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    print(f"{'mesh':>6} {'s/step':>9} {'4 FFTs [s]':>11} {'step/FFT floor':>15}")
    for n, t_step, t_fft in rows:
        print(f"{n:>4}^3 {t_step:9.4f} {t_fft:11.4f} {t_step / t_fft:15.2f}")
    print(f"128^3 simulation, 40 steps: {t_sim:.1f} s wall (with compilation); peak RSS {rss_gb:.2f} GB")


if __name__ == "__main__":
    main()
