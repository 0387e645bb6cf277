"""Painting time of the LDL model per 10^6 particles (after jit warm-up), on the default JAX device.

Usage: python benchmarks/ldl_paint.py [--nside 64 96] [--mesh 64] [--box 100]
Prints a table: particles, mesh, CIC paint alone, full LDL forward (2 layers + output), per 1e6,
and the first LDL call (tracing + XLA compilation + one run). Until 2026-11-23 the mesh's |k|
was a numpy constant folded into the program, and the first call grew with the mesh (176 s at
256^3 on an H100); |k| is now built inside the program from three 1D axes.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from clustersbi import gas, ldl
from clustersbi.mesh import cic_paint


def _time(fn, repeat: int) -> tuple[float, float]:
    """(first call: tracing + compilation + one run, mean of ``repeat`` later calls) [s]."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())  # warm-up / compile
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeat):
        jax.block_until_ready(fn())
    return t_first, (time.perf_counter() - t0) / repeat


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
    print(f"{'particles':>10} {'mesh':>5} {'paint [s]':>10} {'paint/1e6 [s]':>14} {'LDL [s]':>9} {'LDL/1e6 [s]':>12}"
          f" {'LDL 1st call [s]':>17}", flush=True)
    for nside in args.nside:
        pos = jnp.asarray(gas.zeldovich_particles(0, nside, args.box))
        n = pos.shape[0]
        _, t_paint = _time(lambda: cic_paint(pos, mesh, args.box, convention=ldl.MESH_CONVENTION), args.repeat)
        t_first, t_ldl = _time(lambda: ldl.ldl_forward(params, pos, mesh, args.box), args.repeat)
        print(f"{n:>10d} {args.mesh:>5d} {t_paint:>10.4f} {t_paint / n * 1e6:>14.4f} {t_ldl:>9.4f}"
              f" {t_ldl / n * 1e6:>12.4f} {t_first:>17.2f}", flush=True)


if __name__ == "__main__":
    main()
