"""Time per lightcone slab: PM simulation and LDL painting, on the default JAX device.

Usage: python benchmarks/lightcone_slab.py [--fov 4] [--cell 1.0] [--steps 10] [--slabs 3]
(the default is the CPU config's slab; the paper's: --fov 20 --cell 0.39 --steps 20).
Every slab gets the fixed mesh sized for Omega_m = 0.1 (``simulation.lightcone.fixed_mesh``),
so the first slab includes compilation and the later ones do not. LDL painting is the
two models a slab needs (n_e and T: two 2-layer forwards on the slab's rectangular box) with
freshly initialised parameters (the cost does not depend on their values).
Prints one row per slab and the estimate for a lightcone of 12 slabs.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from clustersbi import ldl
from clustersbi.cosmology import Cosmology, camb_power
from clustersbi.lightcone import lightcone_slab_geometry, lightcone_slab_mesh, simulate_lightcone_slabs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fov", type=float, default=4.0, help="field of view [deg^2]")
    parser.add_argument("--cell", type=float, default=1.0, help="cell size [Mpc/h]")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--slabs", type=int, default=3, help="slabs timed (of 12 between z = 0.1 and 0.5)")
    args = parser.parse_args()

    cosmo = Cosmology()
    linear = camb_power(cosmo, [0.0], np.geomspace(1e-4, 1.1 * np.sqrt(3) * np.pi / args.cell, 256))
    slabs = lightcone_slab_geometry(0.1, 0.5, 12, args.fov, cosmo.Omega_m)
    mesh = lightcone_slab_mesh(slabs + lightcone_slab_geometry(0.1, 0.5, 12, args.fov, 0.1), args.cell)
    box = tuple(n * args.cell for n in mesh)
    params = ldl.init_params(2, 4, alpha=-0.5, k_nyquist=np.pi / args.cell)
    print(f"device {jax.devices()[0]}, field {args.fov} deg^2, cell {args.cell} Mpc/h, mesh {mesh} "
          f"({np.prod(mesh):.3g} particles), {args.steps} steps")
    print(f"{'slab':>4} {'z':>6} {'PM [s]':>8} {'LDL n_e+T [s]':>14}")
    pm_times, ldl_times = [], []
    for slab in slabs[: args.slabs]:
        t0 = time.perf_counter()
        (run,) = simulate_lightcone_slabs(cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[0], [slab], cell_mpc_h=args.cell,
                                          seeds=[slab.index], n_steps=args.steps, mesh_shape=mesh)
        t_pm = time.perf_counter() - t0
        pos = jax.numpy.asarray(run.snapshots[-1].positions_mpc_h)
        t0 = time.perf_counter()
        for _ in range(2):
            jax.block_until_ready(ldl.ldl_forward(params, pos, mesh, box))
        t_ldl = time.perf_counter() - t0
        pm_times.append(t_pm)
        ldl_times.append(t_ldl)
        print(f"{slab.index:>4} {slab.z_centre:>6.3f} {t_pm:>8.2f} {t_ldl:>14.2f}")
    if len(pm_times) > 1:
        pm, lp = float(np.mean(pm_times[1:])), float(np.mean(ldl_times[1:]))
        print(f"after compilation: PM {pm:.2f} s, LDL {lp:.2f} s per slab; "
              f"a 12-slab lightcone ~{12 * (pm + lp):.1f} s (+ {pm_times[0] - pm + ldl_times[0] - lp:.1f} s compilation once per job)")


if __name__ == "__main__":
    main()
