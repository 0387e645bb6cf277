"""Benchmark: clustersbi's FFT power spectrum vs Pylians (Pk_library / MAS_library).

Prints a table of wall times (best of ``--repeat``, the programs of one row run in turn each
round, so that a shared machine loads them alike) and the maximum relative difference of P(k)
from Pylians' on 128^3 and 256^3 meshes with ``--threads`` threads, for two tasks:

* mesh: P(k) of a given float32 overdensity mesh with PCS window compensation, in Pylians'
  binning ([i, i+1) k_f), compared bin by bin below the Nyquist frequency;
* catalogue: PCS assignment of a point set + P(k) (Pylians: ``MAS_library.MA`` + ``Pk``; ours
  without interlacing for a like-for-like comparison, and with interlacing, time only).
  "before": the points assigned by numpy (``assign_to_mesh(engine="numpy")``, float64), as
  ``power.power_spectrum`` did before issue 14; "after": ``power.power_spectrum`` as it is
  (compiled assignment, ``engine="jax"``).

Our first call on a new (mesh, box, binning) builds and caches the per-mode bin indices and
weights, and compiles the assignment; the "cold" column is that first call.

Usage: python benchmarks/power_spectrum.py [--meshes 128 256] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clustersbi import fields, mesh, power


def best_time(func, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls (time.perf_counter) and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def best_in_turn(funcs: dict, repeat: int) -> tuple[dict, dict]:
    """Best wall time and last result of each callable, all of them called in turn each round."""
    best = {key: np.inf for key in funcs}
    result = {}
    for _ in range(repeat):
        for key, func in funcs.items():
            start = time.perf_counter()
            result[key] = func()
            best[key] = min(best[key], time.perf_counter() - start)
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
    pos32 = pos.astype(np.float32)
    kf = power.fundamental_frequency(args.box)
    header = (f"{'task':<28}{'mesh':>6}{'ours cold [s]':>15}{'ours [s]':>10}{'Pylians [s]':>13}{'ours/Pyl.':>10}"
              f"{'max rel diff':>14}")
    print(header)
    print("-" * len(header))

    def row(task, n_mesh, cold, t_ours, t_pyl=None, diff=None):
        cold_s = f"{cold:>15.3f}" if cold is not None else f"{'':>15}"
        pyl = f"{t_pyl:>13.3f}{t_ours / t_pyl:>10.2f}" if t_pyl is not None else f"{'-':>13}{'-':>10}"
        diff_s = f"{diff:>14.2e}" if diff is not None else f"{'-':>14}"
        print(f"{task:<28}{n_mesh:>6}{cold_s}{t_ours:>10.3f}{pyl}{diff_s}", flush=True)

    for n_mesh in args.meshes:
        delta = fields.overdensity_field(pos, n_mesh, args.box, "pcs").astype(np.float32)
        edges = kf * np.arange(1, n_mesh // 2 + 1)
        nb = edges.size - 1

        def ours_mesh():
            return power.power_spectrum_from_mesh(
                delta, args.box, window_order="pcs", k_edges_h_mpc=edges, workers=args.threads
            )

        def ours_cat(interlacing: bool = False):
            return power.power_spectrum(
                pos, args.box, n_mesh, scheme="pcs", interlacing=interlacing, k_edges_h_mpc=edges, workers=args.threads
            )

        def before_cat():
            counts = mesh.assign_to_mesh(pos, n_mesh, args.box, "pcs", convention="node", engine="numpy")
            counts /= counts.mean()
            counts -= 1.0
            return power.power_spectrum_from_mesh(
                counts.astype(np.float32), args.box, window_order="pcs", k_edges_h_mpc=edges, workers=args.threads
            )

        def pylians_cat():
            counts = np.zeros((n_mesh,) * 3, dtype=np.float32)
            masl.MA(pos32, counts, args.box, "PCS", verbose=False)
            counts /= counts.mean(dtype=np.float64)
            counts -= 1.0
            return pkl.Pk(counts, args.box, 0, "PCS", args.threads, False)

        cold_mesh, _ = best_time(ours_mesh, 1)
        cold_cat, _ = best_time(ours_cat, 1)
        cold_before, _ = best_time(before_cat, 1)
        programs = {"mesh": ours_mesh, "before": before_cat, "after": ours_cat, "interlaced": lambda: ours_cat(True)}
        if pkl is not None:
            programs["pyl_mesh"] = lambda: pkl.Pk(delta, args.box, 0, "PCS", args.threads, False)
            programs["pyl_cat"] = pylians_cat
        t, res = best_in_turn(programs, args.repeat)

        def diff(key, ref_key):
            return float(np.abs(res[key].pk_mpc_h3 / res[ref_key].Pk[:nb, 0] - 1).max()) if pkl is not None else None

        row("mesh P(k), PCS comp.", n_mesh, cold_mesh, t["mesh"], t.get("pyl_mesh"), diff("mesh", "pyl_mesh"))
        row("catalogue, PCS, before", n_mesh, cold_before, t["before"], t.get("pyl_cat"), diff("before", "pyl_cat"))
        row("catalogue, PCS, after", n_mesh, cold_cat, t["after"], t.get("pyl_cat"), diff("after", "pyl_cat"))
        row("catalogue, PCS+interl.", n_mesh, None, t["interlaced"])
    print(f"\n{args.n_points} uniform points, box {args.box:g} Mpc/h, {args.threads} threads, best of {args.repeat}"
          " (interlaced: Pylians has no interlacing; its column is empty).")


if __name__ == "__main__":
    main()
