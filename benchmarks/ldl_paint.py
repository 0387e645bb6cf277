"""Painting time of the LDL model per 10^6 particles (after jit warm-up), on the default JAX device.

Usage: python benchmarks/ldl_paint.py [--nside 64 96] [--mesh 64] [--box 100]
Prints a table: particles, mesh, CIC paint alone, full LDL forward (2 layers + output), per 1e6.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from clustersbi import gas, ldl


def _time(fn, repeat: int) -> float:
    jax.block_until_ready(fn())  # warm-up / compile
    t0 = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn())
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nside", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--mesh", type=int, default=64)
    parser.add_argument("--box", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    mesh = (args.mesh,) * 3
    params = ldl.init_params(2, 4, alpha=-0.5, k_nyquist=np.pi * args.mesh / args.box)
    print(f"device: {jax.devices()[0]}")
    print(f"{'particles':>10} {'mesh':>5} {'paint [s]':>10} {'paint/1e6 [s]':>14} {'LDL [s]':>9} {'LDL/1e6 [s]':>12}")
    for nside in args.nside:
        pos = jnp.asarray(gas.zeldovich_particles(0, nside, args.box))
        n = pos.shape[0]
        t_paint = _time(lambda: ldl.cic_paint(pos, mesh, args.box), args.repeat)
        t_ldl = _time(lambda: ldl.ldl_forward(params, pos, mesh, args.box), args.repeat)
        print(f"{n:>10d} {args.mesh:>5d} {t_paint:>10.4f} {t_paint / n * 1e6:>14.4f} {t_ldl:>9.4f} {t_ldl / n * 1e6:>12.4f}")


if __name__ == "__main__":
    main()
