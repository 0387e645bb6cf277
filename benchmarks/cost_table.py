"""GPU-hours and wall time of the paper presets, projected from measured per-unit times.

Reads each preset (its design size, lightcone or box geometry, PM steps, compressor epochs),
counts the work units (lightcone slabs and their particles, boxes, training rows x epochs) and
multiplies them by the per-unit times measured on one GPU (``MEASURED``, each with the
benchmarks/RESULTS.md section it comes from). Prints one table per preset: stage, units,
seconds per unit, GPU-hours, and the wall time with ``--gpus`` jobs running at once.

    python benchmarks/cost_table.py [--gpus 64] [--presets config/xod.yaml config/fields_paper.yaml]

Rows marked "goal" use a target instead of a measurement (the forward model's 15 s per
200 deg^2 XOD); rows marked "extrapolated" scale a measurement to a size that was not run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clustersbi.config import load_yaml, validate_config
from clustersbi.lightcone import lightcone_slab_geometry, lightcone_slab_mesh, slab_mesh_omega_m

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

#: Per-unit GPU times [s], 1x NVIDIA H100 80GB (benchmarks/RESULTS.md, 2026-11-23)
MEASURED = {
    # "Lightcone slabs": 4.5 s for 20 PM steps of a 2.0e7-particle slab, host transfers included
    "pm_slab_s_per_particle_step": 4.5 / (2.0e7 * 20),
    # "Particle-mesh step" (GPU): 512^3 particles, 512^3 force mesh, 0.0404 s per step
    "pm_box_s_per_particle_step_b1": 0.0404 / 512**3,
    # the same table, 256^3 particles on a 512^3 force mesh (B = 2): 0.0145 s per step
    "pm_box_s_per_particle_step_b2": 0.0145 / 256**3,
    # "Lightcone slabs": the two LDL forwards (n_e, T) of a 2.0e7-particle slab, 0.04 s
    "ldl_slab_s_per_particle": 0.04 / 2.0e7,
    # "Particle-mesh step" (GPU): 4 real FFTs of 512^3, 0.0099 s: the PM floor per particle-step
    "pm_floor_s_per_particle_step": 0.0099 / 512**3,
    # "Compression and NPE" (GPU): XOD ResNet epoch of 32,000 rows, 5.2 s; 3D CNN 25 s per 28,672
    "resnet_s_per_row_epoch": 5.2 / 32_000,
    "cnn3d_s_per_row_epoch": 25.0 / 28_672,
}
#: X-ray painting of a 20 deg^2 lightcone at 128^3 cells, 11.5-20.9 s, measured on the 2-core
#: CPU only ("X-ray lightcones"); used as an upper bound until a GPU row exists
XRAY_LIGHTCONE_CPU_S = 11.5
#: the forward model's goal per 200 deg^2 XOD (issue: paper scale on a GPU cluster)
GOAL_S_PER_XOD = 15.0


@dataclass
class Row:
    stage: str
    units: float
    unit: str
    seconds_per_unit: float
    note: str = ""
    #: part of the measured total (not a floor or a goal)
    measured: bool = True
    #: spread over the GPU jobs running at once (a compressor trains on one GPU)
    parallel: bool = True

    @property
    def gpu_hours(self) -> float:
        return self.units * self.seconds_per_unit / 3600.0


def lightcone_rows(config: dict) -> list[Row]:
    """Cost rows of an LDL -> X-ray -> XOD preset (analysis ldl): per slab, then per XOD."""
    lc = config["simulation"]["lightcone"]
    n_sims = config["design"]["n_simulations"]
    n_mocks = n_sims * (config["design"].get("n_inner", 1) if config["design"].get("nested") else 1)
    omega_m = slab_mesh_omega_m(config["priors"]["cosmology"], config["cosmology"]["fiducial"]["Omega_m"])
    slabs = lightcone_slab_geometry(lc["z_min"], lc["z_max"], lc["n_slabs"], lc["fov_deg2"], omega_m)
    particles = float(np.prod(lightcone_slab_mesh(slabs, lc["cell_mpc_h"])))
    n_slabs = n_sims * lc["n_lightcones"] * lc["n_slabs"]
    steps = config["simulation"]["n_steps"]
    epochs = config["compress"]["max_epochs"]
    n_train = round(n_sims * config["design"]["splits"]["train"])
    per_slab = f"slab ({particles:.2g} particles, {steps} steps)"
    return [
        Row("PM (2LPT + KDK), measured", n_slabs, per_slab, MEASURED["pm_slab_s_per_particle_step"] * particles * steps,
            "host transfers between stages included"),
        Row("PM kernels alone (the measured step)", n_slabs, per_slab,
            MEASURED["pm_box_s_per_particle_step_b1"] * particles * steps, "the floor: no transfers", measured=False),
        Row("PM FFTs alone (4 per step)", n_slabs, per_slab,
            MEASURED["pm_floor_s_per_particle_step"] * particles * steps, "extrapolated per particle", measured=False),
        Row("LDL n_e and T", n_slabs * (n_mocks // n_sims), "slab painting",
            MEASURED["ldl_slab_s_per_particle"] * particles),
        Row("X-ray maps", n_mocks * lc["n_lightcones"], "lightcone", XRAY_LIGHTCONE_CPU_S,
            "CPU time: no GPU row yet (upper bound)"),
        Row("forward model, goal", n_mocks, "XOD", GOAL_S_PER_XOD, "goal, not measured", measured=False),
        Row("ResNet compressor (max epochs)", n_train * epochs, "row x epoch", MEASURED["resnet_s_per_row_epoch"],
            "early stopping ends sooner", parallel=False),
    ]


def box_rows(config: dict) -> list[Row]:
    """Cost rows of a box preset (analysis scaling or fields): PM boxes and the compressor."""
    sim = config["simulation"]
    n_sims = config["design"]["n_simulations"]
    particles = float(sim["n_mesh"]) ** 3
    b = sim.get("force_mesh_factor", 1)
    rate = MEASURED["pm_box_s_per_particle_step_b2" if b == 2 else "pm_box_s_per_particle_step_b1"]
    measured_n = 256**3 if b == 2 else 512**3
    note = "extrapolated per particle" if particles != measured_n else ""
    epochs = config["compress"]["max_epochs"]
    n_train = round(n_sims * config["design"]["splits"]["train"])
    n_mocks = n_sims * (config["design"].get("n_inner", 1) if config["design"].get("nested") else 1)
    return [
        Row(f"PM box (B = {b}), steps only", n_sims, f"box ({particles:.2g} particles, {sim['n_steps']} steps)",
            rate * particles * sim["n_steps"], note),
        Row("PM FFTs alone (4 per step)", n_sims, "box",
            MEASURED["pm_floor_s_per_particle_step"] * particles * b**3 * sim["n_steps"], "the floor", measured=False),
        Row("3D CNN compressor (max epochs)", round(n_mocks * n_train / n_sims) * epochs, "row x epoch",
            MEASURED["cnn3d_s_per_row_epoch"], "if the fields summary is compressed; early stopping ends sooner", parallel=False),
    ]


def print_table(name: str, rows: list[Row], gpus: int) -> None:
    print(f"\n{name}  ({gpus} GPU jobs at once)")
    print(f"| stage | units | unit | s per unit | GPU-hours | wall [h] | note |")
    print("|---|---:|---|---:|---:|---:|---|")
    def wall_hours(r: Row) -> float:
        return r.gpu_hours / (gpus if r.parallel else 1)

    for r in rows:
        wall = wall_hours(r)
        print(f"| {r.stage} | {r.units:,.0f} | {r.unit} | {r.seconds_per_unit:.3g} | {r.gpu_hours:,.1f} | "
              f"{wall:,.1f} | {r.note} |")
    measured = [r for r in rows if r.measured]
    total = sum(r.gpu_hours for r in measured)
    print(f"| total as measured ({', '.join(r.stage.split(' (')[0] for r in measured)}) | | | | {total:,.1f} | "
          f"{sum(wall_hours(r) for r in measured):,.1f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", type=Path, nargs="+",
                        default=[REPO / "config" / "xod.yaml", REPO / "config" / "fields_paper.yaml"])
    parser.add_argument("--gpus", type=int, default=64, help="GPU jobs running at once")
    args = parser.parse_args()
    for preset in args.presets:
        config = validate_config(load_yaml(preset), SCHEMA)  # the schema defaults, as the workflow sees them
        rows = lightcone_rows(config) if config["analysis"] == "ldl" else box_rows(config)
        print_table(preset.name, rows, args.gpus)


if __name__ == "__main__":
    main()
