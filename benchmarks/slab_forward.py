"""Seconds per lightcone slab: the staged chain of the rules against the fused device program.

Usage: python benchmarks/slab_forward.py [--fov 4] [--cell 1.0] [--steps 10] [--slabs 4]
(default: the CPU config's slab, config/config.yaml; the paper's: --fov 20 --cell 0.39 --steps 20).

Staged (what the rules simulate_lightcone -> paint_gas -> xray_maps do per slab, files
included): ``run_pm`` of the slab (positions and velocities to the host, the a_init and final
CIC densities), the positions written to and read from HDF5, the LDL painter (positions to the
device, n_e and T back as float64), n_e and T through HDF5, ``paint_slab`` (numpy and
scipy.sparse). Fused: :func:`clustersbi.forward.slab_maps` from the seed to the maps on the host.

"k PM" and "k LDL" are the device work both need, chained on the device with nothing brought
back (linear field, 2LPT and KDK; the two LDL forwards); the staged chain's "host %" is the part
of its time that is not those kernels: host transfers, numpy and HDF5 stages, the unused
densities. "proj" is the fused program's X-ray projection alone (part of "fused"), against
"maps", the staged chain's numpy projection.
Every slab gets the fixed mesh sized for Omega_m = 0.1 (``simulation.lightcone.fixed_mesh``);
the first slab includes compilation and is reported apart. LDL models: freshly initialised
parameters in the painter's files (the cost does not depend on their values).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import jax
import jax.flatten_util
import numpy as np

from clustersbi import forward, ldl, pm
from clustersbi.cosmology import Cosmology, camb_power
from clustersbi.lightcone import lightcone_slab_geometry, lightcone_slab_mesh, simulate_lightcone_slabs
from clustersbi.stages.ldl import LDLPainter, ThetaSpace
from clustersbi.xray import builtin_xmm_epic, compute_emission_table, make_sky_grid, paint_slab


def _painter(folder: Path, cell: float) -> LDLPainter:
    k_nyq = float(np.pi / cell)
    theta = ThetaSpace(("Omega_m", "sigma_8"), (False, False), (0.1, 0.6), (0.5, 1.0), {"Omega_m": 0.3071, "sigma_8": 0.8224})
    config = {"theta": theta.to_config(), "k_nyquist_h_mpc": k_nyq, "z_nodes": [0.15, 0.3, 0.45], "ldl": {"t_floor_k": 1e4}}
    base_ne = ldl.init_params(2, 4, alpha=-0.5, k_nyquist=k_nyq)
    base_t = ldl.init_params(2, 4, mean_target=60.0, mu=0.4, alpha=-0.5, k_nyquist=k_nyq)
    size = lambda p: int(jax.flatten_util.ravel_pytree(p)[0].size)
    key = jax.random.PRNGKey(0)
    mlp_ne = ldl.mlp_init(key, 2, [16], size(base_ne))
    ldl.save_model(folder / "ne.npz", {"base": base_ne, "mlp": mlp_ne}, {**config, "field": "ne"})
    mlps = ldl.stack_mlps([ldl.mlp_init(jax.random.fold_in(key, i), 2, [16], size(base_t)) for i in range(3)])
    ldl.save_model(folder / "t.npz", {"base": base_t, "mlps": mlps}, {**config, "field": "t"})
    return LDLPainter(folder / "ne.npz", folder / "t.npz")


def _kernels(cosmo, linear, slab, mesh, box, seed, args, ne_params, t_params) -> tuple[float, float]:
    """Seconds of the device kernels alone, chained on the device, nothing brought back:
    (linear field + 2LPT + KDK, the two LDL forwards)."""
    t0 = time.perf_counter()
    delta = forward.slab_linear_field(linear.k_h_mpc, linear.pk_mpc3_h3[0], mesh, box, seed)
    cosmo_jc = pm.jax_cosmology(cosmo)
    a_edges, _ = pm._scale_factor_grid(0.1, (1.0 / (1.0 + slab.z_centre),), args.steps)
    factors = jax.numpy.asarray(pm.pm_step_factors(cosmo_jc, a_edges), jax.numpy.float32)
    x, p = pm._jitted_lpt(tuple(mesh))(cosmo_jc, delta, 0.1)  # positions half a cell off the mesh points
    advance, _ = pm._make_advance(tuple(mesh), None, 1)
    omega_m = jax.numpy.float32(cosmo.Omega_m)
    x, p = advance((x, p), factors, omega_m, 0, args.steps)
    pos = jax.numpy.mod(jax.numpy.mod(x.reshape(-1, 3) + 0.5, jax.numpy.asarray(mesh, jax.numpy.float32)) * args.cell,
                        jax.numpy.asarray(box, jax.numpy.float32))
    jax.block_until_ready(pos)
    t_pm = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready((ldl.ldl_forward(ne_params, pos, mesh, box), ldl.ldl_forward(t_params, pos, mesh, box)))
    return t_pm, time.perf_counter() - t0


def _projection(ne, tk, slab, cosmo, mesh, box, grid, emission) -> float:
    """Seconds of the fused program's X-ray projection alone (compiled, n_e and T on the device)."""
    n_keep, chi_far = forward.slab_extent(slab.chi_lo, slab.chi_hi, mesh[2], box[2])
    layers = forward.slab_layers(slab.chi_lo, chi_far, box[0], mesh, cosmo.Omega_m, cosmo.h, grid, n_keep)
    ne, tk = jax.numpy.asarray(ne, jax.numpy.float32), jax.numpy.asarray(tk, jax.numpy.float32)
    project = jax.jit(forward.project_slab, static_argnames="n_images")
    jax.block_until_ready(project(ne, tk, layers, emission, 1))
    t0 = time.perf_counter()
    jax.block_until_ready(project(ne, tk, layers, emission, 1))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fov", type=float, default=4.0, help="field of view [deg^2]")
    parser.add_argument("--cell", type=float, default=1.0, help="cell size [Mpc/h]")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pixel", type=float, default=1.0, help="pixel [arcmin]")
    parser.add_argument("--slabs", type=int, default=4, help="slabs timed (of 12 between z = 0.1 and 0.5)")
    args = parser.parse_args()

    cosmo = Cosmology()
    linear = camb_power(cosmo, [0.0], np.geomspace(1e-4, 1.1 * np.sqrt(3) * np.pi / args.cell, 256))
    slabs = lightcone_slab_geometry(0.1, 0.5, 12, args.fov, cosmo.Omega_m)
    mesh = lightcone_slab_mesh(slabs + lightcone_slab_geometry(0.1, 0.5, 12, args.fov, 0.1), args.cell)
    box = tuple(n * args.cell for n in mesh)
    grid = make_sky_grid(args.fov, args.pixel)
    table = compute_emission_table(builtin_xmm_epic(), "bremsstrahlung", ((0.5, 1.0), (1.0, 2.0)),
                                   kt_kev=np.geomspace(0.08, 64.0, 64), z=np.round(np.arange(0.0, 0.55, 0.025), 9))
    emission = forward.emission_arrays(table)
    params = {"Omega_m": cosmo.Omega_m, "sigma_8": cosmo.sigma_8}
    print(f"device {jax.devices()[0]}, field {args.fov} deg^2 ({grid.n_pix}^2 pixels of {args.pixel}'), cell {args.cell} "
          f"Mpc/h, mesh {mesh} ({np.prod(mesh):.3g} particles), {args.steps} steps")
    cols = ["PM", "h5 pos", "paint", "h5 gas", "maps", "staged", "k PM", "k LDL", "host %", "fused", "proj", "ratio"]
    print(f"{'slab':>4} {'z':>6} " + " ".join(f"{c:>8}" for c in cols))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        painter = _painter(folder, args.cell)
        for slab in slabs[: args.slabs]:
            seed = 1000 + slab.index
            ne_params, t_params = painter.params_ne(params), painter.params_t(params, slab.z_centre)
            t = {}
            t0 = time.perf_counter()
            (run,) = simulate_lightcone_slabs(cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[0], [slab], cell_mpc_h=args.cell,
                                              seeds=[seed], n_steps=args.steps, mesh_shape=mesh)
            positions = np.asarray(run.snapshots[-1].positions_mpc_h, np.float32)
            t["PM"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with h5py.File(folder / "particles.h5", "w") as f:
                f.create_dataset("positions_mpc_h", data=positions)
            with h5py.File(folder / "particles.h5", "r") as f:
                positions = f["positions_mpc_h"][:]
            t["h5 pos"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            ne, tk = painter.paint(positions, mesh, box, params, slab.z_centre)
            t["paint"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with h5py.File(folder / "gas.h5", "w") as f:
                f.create_dataset("ne_cm3", data=ne)
                f.create_dataset("t_k", data=tk)
            with h5py.File(folder / "gas.h5", "r") as f:
                ne, tk = np.asarray(f["ne_cm3"], np.float64), np.asarray(f["t_k"], np.float64)
            t["h5 gas"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            n_keep, chi_far = forward.slab_extent(slab.chi_lo, slab.chi_hi, mesh[2], box[2])
            staged = paint_slab(ne[:, :, :n_keep], tk[:, :, :n_keep], slab.chi_lo, chi_far, box[0], table, grid,
                                cosmo.Omega_m, cosmo.h, los_axis=2)
            t["maps"] = time.perf_counter() - t0
            t["staged"] = sum(t[c] for c in cols[:5])
            t["k PM"], t["k LDL"] = _kernels(cosmo, linear, slab, mesh, box, seed, args, ne_params, t_params)
            t["host %"] = 100.0 * (1.0 - (t["k PM"] + t["k LDL"]) / t["staged"])
            t["proj"] = _projection(ne, tk, slab, cosmo, mesh, box, grid, emission)
            t0 = time.perf_counter()
            fused = forward.slab_maps(cosmo, linear.k_h_mpc, linear.pk_mpc3_h3[0], slab, mesh_shape=mesh,
                                      cell_mpc_h=args.cell, seed=seed, ne_params=ne_params, t_params=t_params,
                                      t_floor_k=painter.t_floor_k, table=table, grid=grid, emission=emission,
                                      n_steps=args.steps)
            t["fused"] = time.perf_counter() - t0
            t["ratio"] = t["staged"] / t["fused"]
            diff = abs(fused.rate_cts_s.sum() / staged.rate_cts_s.sum() - 1)
            rows.append(t)
            print(f"{slab.index:>4} {slab.z_centre:>6.3f} " + " ".join(f"{t[c]:>8.3f}" for c in cols)
                  + f"   (summed map: fused/staged - 1 = {diff:.1e})")
    if len(rows) > 1:
        mean = {c: float(np.mean([r[c] for r in rows[1:]])) for c in cols}
        print("after compilation (mean of slabs 2+): " + ", ".join(f"{c} {mean[c]:.3f}" for c in cols))
        print(f"compilation once per job: staged {rows[0]['staged'] - mean['staged']:.1f} s, "
              f"fused {rows[0]['fused'] - mean['fused']:.1f} s")


if __name__ == "__main__":
    main()
