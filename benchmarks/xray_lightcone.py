"""Per-lightcone time of X-ray painting and of sep detection on this machine.

A lightcone of ``--slabs`` slabs of ``--n``^3 cells (0.1 < z < 0.5, ``--fov`` deg^2,
``--pixel`` arcmin pixels), filled with a lognormal gas field plus beta-like clumps; times
the emission table (once per config), painting (all slabs) and detection (all slabs).

    python benchmarks/xray_lightcone.py --n 64 --slabs 12
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clustersbi.cosmology import comoving_distance_mpc_h
from clustersbi.detect import DetectionConfig, detect_lightcone
from clustersbi.xray import compute_emission_table, load_response, make_sky_grid, paint_lightcone


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--slabs", type=int, default=12)
    p.add_argument("--fov", type=float, default=20.0)
    p.add_argument("--pixel", type=float, default=1.0)
    p.add_argument("--backend", default="bremsstrahlung")
    a = p.parse_args()
    omega_m, h = 0.3, 0.7
    chi = np.linspace(*comoving_distance_mpc_h(np.array([0.1, 0.5]), omega_m), a.slabs + 1)
    width = np.deg2rad(np.sqrt(a.fov)) * chi[-1]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    table = compute_emission_table(load_response(), a.backend, z=np.linspace(0, 0.6, 25))
    t_table = time.perf_counter() - t0
    slabs = []
    for i in range(a.slabs):
        ne = 2e-7 * np.exp(rng.normal(0, 1.5, (a.n,) * 3))
        t = 10 ** rng.normal(6.5, 0.6, (a.n,) * 3)
        for _ in range(20):  # clumps: a few hot dense cells
            c = rng.integers(2, a.n - 2, 3)
            ne[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 10 ** rng.uniform(-4.5, -3.5)
            t[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 10 ** rng.uniform(7.0, 7.8)
        slabs.append((ne, t, chi[i], chi[i + 1], width))
    grid = make_sky_grid(a.fov, a.pixel)
    t0 = time.perf_counter()
    maps = paint_lightcone(slabs, table, grid, omega_m, h)
    t_paint = time.perf_counter() - t0
    t0 = time.perf_counter()
    cat = detect_lightcone(maps, a.pixel, DetectionConfig())
    t_detect = time.perf_counter() - t0
    print(f"{'n':>5} {'slabs':>5} {'pix':>5} {'table_s':>8} {'paint_s':>8} {'detect_s':>9} {'n_det':>6}")
    print(f"{a.n:>5} {a.slabs:>5} {grid.n_pix:>5} {t_table:>8.2f} {t_paint:>8.2f} {t_detect:>9.3f} {len(cat):>6}")


if __name__ == "__main__":
    main()
