"""Time per PM step vs its FFT floor, before/after the CIC read of issue 14, and peak memory.

One KDK step of :mod:`clustersbi.pm` does one force evaluation: a CIC paint (one
windowed scatter), one forward and three inverse real 3D FFTs (``jnp.fft.rfftn``/``irfftn``),
one CIC read of the 3-vector force, and the kick/drift updates. Two floors are printed next to
it: the time of those 4 real FFTs alone on the same mesh, and of 4 complex FFTs (jaxpm's
``fft3d``/``ifft3d``, what jaxpm's own ``pm_forces`` does). "before" is the same step with the
previous CIC read (kept below as ``_legacy_cic_gather``: a gather of the 3-vector per
neighbour with the wrap-around recomputed per neighbour, from the three FFTs stacked into one
mesh); "after" is :func:`clustersbi.pm._make_advance` as it is (its carried-force program). The three programs are timed in
turn, best of ``--repeat``. On the CPU backend the CPU-time columns (process time, both
threads) are printed too: on a shared machine they move less than wall time.
Run: ``python benchmarks/pm_step.py [--sizes 64 128] [--steps 5] [--force-mesh-factor 1]``.
On a GPU (JAX picks it when ``jax[cuda]`` is installed; ``JAX_PLATFORMS=cpu`` forces the CPU), e.g.
``--sizes 64 128 256 512 --full-run-mesh 256``: the last two columns then give the memory of the
step program and the allocator peak (``-`` on the CPU backend).

Measured tables, with date and machine, are in benchmarks/RESULTS.md.
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


def _best_in_turn(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Best wall and process (CPU) time of each callable, the callables run in turn each round."""
    wall = {k: np.inf for k in fns}
    cpu = {k: np.inf for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[key] = min(wall[key], time.perf_counter() - t0)
            cpu[key] = min(cpu[key], time.process_time() - c0)
    return wall, cpu


def _legacy_cic_gather(mesh_vec, x):
    """The CIC read of clustersbi.mesh before issue 14 (for the "before" column)."""
    import jax.numpy as jnp

    from clustersbi.mesh import _cic_base

    shape = mesh_vec.shape[:3]
    flat_field = mesh_vec.reshape(-1, mesh_vec.shape[-1])
    base, frac = _cic_base(x.reshape(-1, 3), shape)
    out = None
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                i, j, k = (
                    jnp.where(base[:, a] + o == shape[a], 0, base[:, a] + o) for a, o in enumerate((dx, dy, dz))
                )
                kern = (
                    (frac[:, 0] if dx else 1.0 - frac[:, 0])
                    * (frac[:, 1] if dy else 1.0 - frac[:, 1])
                    * (frac[:, 2] if dz else 1.0 - frac[:, 2])
                )
                flat = (i * shape[1] + j) * shape[2] + k
                term = flat_field.at[flat].get(mode="promise_in_bounds") * kern[:, None]
                out = term if out is None else out + term
    return out


def _legacy_advance(mesh_shape, force_mesh_factor: int):
    """The KDK program of clustersbi.pm._make_advance with the force of before issue 14."""
    import jax
    import jax.numpy as jnp
    from jaxpm.kernels import cic_compensation, gradient_kernel, invlaplace_kernel

    from clustersbi.mesh import cic_scatter
    from clustersbi.pm import rfft_wavevectors

    f = int(force_mesh_factor)
    compensation = 2 if f == 1 else 0
    force_shape = tuple(int(n) * f for n in mesh_shape)

    def force(positions, omega_m):
        xf = (positions.reshape(-1, 3) - 0.5) * jnp.float32(f) + 0.5
        kvec = rfft_wavevectors(force_shape)
        pot_k = jnp.fft.rfftn(cic_scatter(xf, force_shape)) * (invlaplace_kernel(kvec) * jnp.float32(f * f))
        if compensation:
            pot_k = pot_k * cic_compensation(kvec) ** compensation
        grad = jnp.stack(
            [jnp.fft.irfftn(-gradient_kernel(kvec, i) * pot_k, force_shape).astype(jnp.float32) for i in range(3)],
            axis=-1,
        )
        return _legacy_cic_gather(grad, xf).reshape(positions.shape) * 1.5 * omega_m

    def advance(state, factors, omega_m, i0, i1):
        def body(i, st):
            x, p, fx = st
            p = p + factors[i, 0] * fx
            x = x + factors[i, 1] * p
            fx = force(x, omega_m)
            return x, p + factors[i, 2] * fx, fx

        return jax.lax.fori_loop(i0, i1, body, state)

    return jax.jit(advance)


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
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the in-turn timing (best of)")
    parser.add_argument("--no-before", action="store_true", help="skip the step with the previous CIC read")
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
    on_cpu = dev.platform == "cpu"
    print("s/step: wall time per step, before -> after (carried force); step/rFFT: wall ratios to the 4 real FFTs;"
          " (x,p): the default fused-kick program (state donated), per force evaluation"
          + ("; cpu: the same in process time" if on_cpu else ""))
    print(f"{'mesh':>6} {'before':>8} {'after':>8} {'4 rFFT':>8} {'4 cFFT':>8} {'before/rFFT':>11}"
          f" {'after/rFFT':>10} {'after/cFFT':>10} {'(x,p)/rFFT':>10}"
          + (f" {'cpu bef/rFFT':>12} {'cpu aft/rFFT':>12}" if on_cpu else "")
          + f" {'step prog.':>11} {'dev. peak':>10}", flush=True)

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
            # the carried-force program: one force per step as the fused-kick default, but its state
            # is not donated, so one state can be timed repeatedly
            advance, force = _make_advance(shape, force_mesh_factor=args.force_mesh_factor, carry_force=True)
            om = jnp.float32(cosmo.Omega_m)
            state = (x, p, force(x, om))
            prog_gb = _program_gb(advance, state, factors, om, 0, args.steps)
            mean = float(delta.mean())
            del x, p, delta
            fine = jnp.zeros(tuple(args.force_mesh_factor * s for s in shape), jnp.float32) + mean
            # the default program (state (x, p), donated): each call gets a fresh copy of the state
            # (two (n, 3) copies, ~1% of 5 steps at 128^3); timed per force evaluation (below)
            lean = _make_advance(shape, force_mesh_factor=args.force_mesh_factor)[0]
            programs = {
                "after": lambda: jax.block_until_ready(advance(state, factors, om, 0, args.steps)),
                "lean": lambda: jax.block_until_ready(lean((state[0] + 0, state[1] + 0), factors, om, 0, args.steps)),
                "rfft": lambda: jax.block_until_ready(four_rffts(fine)),
                "cfft": lambda: jax.block_until_ready(four_ffts(fine)),
            }
            if not args.no_before:
                legacy = _legacy_advance(shape, args.force_mesh_factor)
                programs["before"] = lambda: jax.block_until_ready(legacy(state, factors, om, 0, args.steps))
            for run in programs.values():  # compile
                run()
            wall, cpu = _best_in_turn(programs, args.repeat)
            for t in (wall, cpu):
                for key in ("after", "before"):
                    if key in t:
                        t[key] /= args.steps
                # per force evaluation: a call of the (x, p) program starts with the first
                # half-kick's force, which the carried programs take from their state
                t["lean"] /= args.steps + 1
            del state, fine
        except Exception as err:  # e.g. RESOURCE_EXHAUSTED on a GPU: report it and go on
            print(f"{n:>4}^3 failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}", flush=True)
            continue
        before = wall.get("before", np.nan)
        row = (f"{n:>4}^3 {before:8.4f} {wall['after']:8.4f} {wall['rfft']:8.4f} {wall['cfft']:8.4f}"
               f" {before / wall['rfft']:11.2f} {wall['after'] / wall['rfft']:10.2f} {wall['after'] / wall['cfft']:10.2f}")
        row += f" {wall['lean'] / wall['rfft']:10.2f}"
        if on_cpu:
            row += f" {cpu.get('before', np.nan) / cpu['rfft']:12.2f} {cpu['after'] / cpu['rfft']:12.2f}"
        print(row + f" {_fmt_gb(prog_gb):>11} {_fmt_gb(_device_peak_gb(dev)):>10}", flush=True)
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
