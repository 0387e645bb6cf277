"""Benchmark: clustersbi's FFT power spectrum vs Pylians (Pk_library / MAS_library).

Prints a table of wall times (best of ``--repeat``) and the maximum relative difference of P(k)
on 128^3 and 256^3 meshes with ``--threads`` threads, for two tasks:

* mesh: P(k) of a given float32 overdensity mesh with PCS window compensation, in Pylians'
  binning ([i, i+1) k_f), compared bin by bin below the Nyquist frequency;
* catalogue: PCS assignment of a point set + P(k) (Pylians: ``MAS_library.MA`` + ``Pk``;
  ours without interlacing for a like-for-like comparison, and with interlacing, time only).

Our first call on a new (mesh, box, binning) builds and caches the per-mode bin indices and
weights; the "cold" column is that first call.

Usage: python benchmarks/power_spectrum.py [--meshes 128 256] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clustersbi import fields, power


def best_time(func, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls (time.perf_counter) and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n-points", type=int, default=200_000)
    parser.add_argument("--box", type=float, default=1000.0)
    args = parser.parse_args()
    try:
        import MAS_library as masl
        import Pk_library as pkl
    except ImportError:
        masl = pkl = None
        print("Pylians not installed (pip install pylians): timing clustersbi only")

    rng = np.random.default_rng(0)
    pos = rng.uniform(0.0, args.box, (args.n_points, 3))
    kf = power.fundamental_frequency(args.box)
    header = f"{'task':<24}{'mesh':>6}{'ours cold [s]':>15}{'ours [s]':>10}{'Pylians [s]':>13}{'ratio':>8}{'max rel diff':>14}"
    print(header)
    print("-" * len(header))
    for n_mesh in args.meshes:
        delta = fields.overdensity_field(pos, n_mesh, args.box, "pcs").astype(np.float32)
        edges = kf * np.arange(1, n_mesh // 2 + 1)

        def ours_mesh():
            return power.power_spectrum_from_mesh(
                delta, args.box, window_order="pcs", k_edges_h_mpc=edges, workers=args.threads
            )

        cold, _ = best_time(ours_mesh, 1)
        t_ours, ps = best_time(ours_mesh, args.repeat)
        if pkl is not None:
            t_pyl, ref = best_time(lambda: pkl.Pk(delta, args.box, 0, "PCS", args.threads, False), args.repeat)
            nb = ps.pk_mpc_h3.size
            diff = np.abs(ps.pk_mpc_h3 / ref.Pk[:nb, 0] - 1).max()
            print(f"{'mesh P(k), PCS comp.':<24}{n_mesh:>6}{cold:>15.3f}{t_ours:>10.3f}{t_pyl:>13.3f}{t_ours / t_pyl:>8.2f}{diff:>14.2e}")
        else:
            print(f"{'mesh P(k), PCS comp.':<24}{n_mesh:>6}{cold:>15.3f}{t_ours:>10.3f}{'-':>13}{'-':>8}{'-':>14}")

        def ours_cat(interlacing: bool):
            return power.power_spectrum(
                pos, args.box, n_mesh, scheme="pcs", interlacing=interlacing, k_edges_h_mpc=edges, workers=args.threads
            )

        cold, _ = best_time(lambda: ours_cat(False), 1)
        t_ours, ps = best_time(lambda: ours_cat(False), args.repeat)
        if pkl is not None:
            pos32 = pos.astype(np.float32)

            def pylians_cat():
                mesh = np.zeros((n_mesh,) * 3, dtype=np.float32)
                masl.MA(pos32, mesh, args.box, "PCS", verbose=False)
                mesh /= mesh.mean(dtype=np.float64)
                mesh -= 1.0
                return pkl.Pk(mesh, args.box, 0, "PCS", args.threads, False)

            t_pyl, ref = best_time(pylians_cat, args.repeat)
            nb = ps.pk_mpc_h3.size
            diff = np.abs(ps.pk_mpc_h3 / ref.Pk[:nb, 0] - 1).max()
            print(f"{'catalogue, PCS':<24}{n_mesh:>6}{cold:>15.3f}{t_ours:>10.3f}{t_pyl:>13.3f}{t_ours / t_pyl:>8.2f}{diff:>14.2e}")
        else:
            t_pyl = None
            print(f"{'catalogue, PCS':<24}{n_mesh:>6}{cold:>15.3f}{t_ours:>10.3f}{'-':>13}{'-':>8}{'-':>14}")
        t_int, _ = best_time(lambda: ours_cat(True), args.repeat)
        ratio = f"{t_int / t_pyl:>8.2f}" if t_pyl else f"{'-':>8}"
        print(f"{'catalogue, PCS+interl.':<24}{n_mesh:>6}{'':>15}{t_int:>10.3f}{'(no interl.)':>13}{ratio}{'-':>14}")
    print(f"\n{args.n_points} uniform points, box {args.box:g} Mpc/h, {args.threads} threads, best of {args.repeat}.")


if __name__ == "__main__":
    main()
