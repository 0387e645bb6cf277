"""The fused maps stage (clustersbi.stages.xray.fused_xray_maps_chunk, rule fused_xray_maps) against
the staged chain it replaces on the same chunk: simulate_lightcone_chunk -> paint_gas_chunk ->
xray_maps_chunk (rules simulate_lightcone, paint_gas, xray_maps), compared dataset by dataset and
attribute by attribute.

The reference is the staged chain itself (tested against lightcone integrals and injected
sources in test_stage_xray.py; the fused slab against its stages in test_forward.py): equal
maps mean the fused stage reads the same linear power, builds the same slabs, fixed mesh, seeds
per simulation, lightcone and slab, and painter conditioning, and writes the same file.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from clustersbi.config import load_schema, validate_config
from clustersbi.design import ChunkDesign, DesignSpec, chunk_design
from clustersbi.lightcone import slab_mesh_omega_m
from clustersbi.stages.ldl import paint_gas_chunk
from clustersbi.stages.simulate import simulate_lightcone_chunk
from clustersbi.stages.xray import emission_table_file, fused_xray_maps_chunk, xray_maps_chunk
from ldl_toys import write_ldl_models, write_toy_linear_power

# ---- tolerances: float32 fused program against the staged chain (float32 PM, float64 painting),
# stored as float32; as tests/test_forward.py (measured there: 1e-7-5e-7 summed, 3e-6 worst pixel)
#: relative difference of a dataset's sum
SUM_RTOL = 1e-5
#: per element, relative to the element plus PIXEL_FLOOR of the dataset's largest magnitude
PIXEL_RTOL = 1e-4
PIXEL_FLOOR = 1e-6

#: 2 simulations x 2 lightcones x 2 slabs; slabs of ~6 x 6 x 37 cells of 1.5 Mpc/h, 3 PM steps
CONFIG = {
    "seed": 5,
    "analysis": "ldl",
    "design": {"n_simulations": 2, "chunk_size": 2, "nested": False},
    "priors": {
        "cosmology": [{"name": "Omega_m", "label": "x", "distribution": "uniform", "low": 0.25, "high": 0.35},
                      {"name": "sigma_8", "label": "x", "distribution": "uniform", "low": 0.7, "high": 0.9}],
        "astrophysics": [{"name": "A_AGN1", "label": "x", "distribution": "loguniform", "low": 0.25, "high": 4.0}],
    },
    "cosmology": {},
    "simulation": {"a_init": 0.1, "n_steps": 3,
                   "lightcone": {"z_min": 0.2, "z_max": 0.24, "n_slabs": 2, "fov_deg2": 0.5, "cell_mpc_h": 1.5,
                                 "n_lightcones": 2, "forward": "fused"}},
    "xray": {"emission": {"backend": "bremsstrahlung"}, "table": {"n_kt": 24, "dz": 0.05}, "pixel_arcmin": 1.0},
}


@pytest.fixture(scope="module")
def config(repo):
    return validate_config(dict(CONFIG), load_schema(repo / "workflow" / "schemas" / "config.schema.yaml"))


@pytest.fixture(scope="module")
def maps_files(tmp_path_factory, config) -> tuple[Path, Path]:
    """(staged maps file, fused maps file) of chunk 0, from the same linear power, models and table."""
    d = tmp_path_factory.mktemp("fused_maps")
    design = chunk_design(DesignSpec.from_config(config), 0, with_inner=False)
    write_toy_linear_power(d / "linear_power.h5", ChunkDesign.from_params(design), config["cosmology"]["fiducial"])
    write_ldl_models(d, config["simulation"]["lightcone"]["cell_mpc_h"])
    emission_table_file(config["xray"], config["simulation"]["lightcone"]["z_max"], d / "table.h5")
    mesh_omega_m = slab_mesh_omega_m(config["priors"]["cosmology"], config["cosmology"]["fiducial"]["Omega_m"])
    seed, simulation = config["seed"], config["simulation"]
    simulate_lightcone_chunk(d / "linear_power.h5", design, simulation, seed, d / "particles.h5", mesh_omega_m=mesh_omega_m)
    paint_gas_chunk(d / "particles.h5", d / "ne.npz", d / "t.npz", design, d / "gas.h5")
    xray_maps_chunk(d / "gas.h5", d / "table.h5", config["xray"], seed, d / "staged.h5", design_params=design,
                    fov_deg2=simulation["lightcone"]["fov_deg2"])
    fused_xray_maps_chunk(d / "linear_power.h5", d / "ne.npz", d / "t.npz", d / "table.h5", design, simulation,
                          config["xray"], seed, d / "fused.h5", mesh_omega_m=mesh_omega_m)
    return d / "staged.h5", d / "fused.h5"


def _objects(path: Path) -> dict[str, tuple[dict, np.ndarray | None]]:
    """{object path: (attributes, dataset values or None for a group)} of an HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = (dict(f.attrs), None)
        f.visititems(lambda name, obj: out.__setitem__(
            name, (dict(obj.attrs), obj[()] if isinstance(obj, h5py.Dataset) else None)))
    return out


def _same_attrs(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_fused_maps_file_equals_the_staged_chains(maps_files):
    staged, fused = (_objects(p) for p in maps_files)
    assert staged.keys() == fused.keys(), f"layouts differ: {sorted(set(staged) ^ set(fused))}"
    datasets = sorted(name for name, (_, values) in staged.items() if values is not None)
    # 2 simulations x 2 lightcones, each rate_cts_s, z_rate_sum, summed_cts_s, z_lo, z_hi, total_cells_cts_s
    assert len(datasets) == 2 * 2 * 6, datasets
    root_s, root_f = dict(staged["/"][0]), dict(fused["/"][0])
    assert (root_s.pop("forward"), root_f.pop("forward")) == ("staged", "fused")
    assert _same_attrs(root_s, root_f), (root_s, root_f)
    for name in staged:
        (attrs_s, want), (attrs_f, got) = staged[name], fused[name]
        if name != "/":
            assert _same_attrs(attrs_s, attrs_f), f"{name}: attributes {attrs_f} vs staged {attrs_s}"
        if want is None:
            continue
        assert got.dtype == want.dtype and got.shape == want.shape, f"{name}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
        got, want = got.astype(np.float64), want.astype(np.float64)
        assert np.abs(want).max() > 0, f"{name}: the staged chain painted nothing"
        sum_err = abs(got.sum() / want.sum() - 1)
        assert sum_err < SUM_RTOL, f"{name}: summed {got.sum()} vs staged {want.sum()} ({sum_err:.2e})"
        pixel_err = np.max(np.abs(got - want) / (np.abs(want) + PIXEL_FLOOR * np.abs(want).max()))
        assert pixel_err < PIXEL_RTOL, f"{name}: worst element off by {pixel_err:.2e}"


def test_slabs_lightcones_and_simulations_are_distinct_draws(maps_files):
    """Equal files could hide one seed reused everywhere: every slab map differs from the others."""
    with h5py.File(maps_files[1], "r") as f:
        slabs = [f[f"{sim}/{lc}/rate_cts_s"][s] for sim in f for lc in f[sim] for s in range(2)]
    sums = np.array([m.sum() for m in slabs])
    assert len(slabs) == 8 and np.unique(np.round(sums, 12)).size == 8, sums
