"""The lightcone stage per chunk (clustersbi.stages.simulate.simulate_lightcone_chunk):
particle-file layout, geometry and seeds.

References: astropy's comoving distances (slab edges), the one-particle-per-cell lattice
(particle counts), and clustersbi.lightcone's own single-slab runs (seeds, reproducibility).
"""

from __future__ import annotations

import astropy.cosmology as astropy_cosmology
import h5py
import numpy as np
import pytest

from clustersbi.cosmology import Cosmology, LinearPower
from clustersbi.design import ChunkDesign, SeedStream, derive_seed
from clustersbi.io import ChunkFile
from clustersbi.lightcone import LOS_AXIS, lightcone_slab_geometry, simulate_lightcone_slabs, slab_mesh_omega_m
from clustersbi.stages.cosmology import write_linear_power
from clustersbi.stages.simulate import simulate_lightcone_chunk, slab_seed

# ---- tolerances
CHI_RTOL = 1e-4  # slab edges vs astropy FlatLambdaCDM (Tcmb0 = 0: no radiation, as ours)
SAME_RUN_ATOL_MPC_H = 1e-4  # a slab regenerated alone, same seed, same CPU

GLOBAL_SEED = 5
LIGHTCONE = {"z_min": 0.1, "z_max": 0.3, "n_slabs": 2, "fov_deg2": 1.0, "cell_mpc_h": 3.0, "n_lightcones": 2}
SIMULATION = {"a_init": 0.1, "n_steps": 4, "lightcone": LIGHTCONE}


def _power_law_spectrum(cosmo: Cosmology, pk_scale: float = 1.0) -> LinearPower:
    """A smooth, positive linear P(k) at z = 0 [(Mpc/h)^3] (shape of a CDM spectrum, no CAMB)."""
    k = np.geomspace(1e-3, 10.0, 128)
    pk = pk_scale * 2.0e4 * (k / 0.02) / (1.0 + (k / 0.02) ** 2.6)
    return LinearPower(k_h_mpc=k, redshifts=np.array([0.0]), pk_mpc3_h3=pk[None, :], sigma_8=cosmo.sigma_8, a_s=2e-9)


def _design(indices, rows):
    """Chunk-design rule params (clustersbi.design.chunk_design's layout) without nesting."""
    return {
        "chunk": 0, "indices": list(indices), "seeds": [100 + i for i in indices],
        "splits": ["train"] * len(indices), "outer_names": ["Omega_m", "sigma_8", "A_AGN1"],
        "outer": [list(r) for r in rows], "inner_names": [], "inner_priors": [], "n_inner": 0,
        "seed": GLOBAL_SEED, "inner": [],
    }


def _linear_power_file(path, design, pk_scale=1.0):
    cosmos = [Cosmology(Omega_m=r[0], sigma_8=r[1]) for r in design["outer"]]
    chunk = ChunkDesign.from_params(design, with_inner=False)
    write_linear_power(path, chunk, cosmos, [_power_law_spectrum(c, pk_scale) for c in cosmos])
    return cosmos


@pytest.fixture(scope="module")
def particle_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lightcone")
    design = _design([3], [[0.28, 0.8, 2.0]])
    cosmos = _linear_power_file(tmp / "lp.h5", design)
    simulate_lightcone_chunk(tmp / "lp.h5", design, SIMULATION, GLOBAL_SEED, tmp / "particles.h5")
    return tmp, design, cosmos[0]


def test_layout_and_geometry_match_the_slab_geometry(particle_file):
    tmp, design, cosmo = particle_file
    slabs = lightcone_slab_geometry(0.1, 0.3, 2, 1.0, cosmo.Omega_m)
    astro = astropy_cosmology.FlatLambdaCDM(H0=100.0, Om0=cosmo.Omega_m, Tcmb0=0.0)
    with h5py.File(tmp / "particles.h5", "r") as f:
        assert sorted(f) == ["sim_000003"]
        g_sim = f["sim_000003"]
        assert g_sim.attrs["index"] == 3 and g_sim.attrs["seed"] == 103 and g_sim.attrs["split"] == "train"
        assert g_sim.attrs["param_A_AGN1"] == 2.0 and g_sim.attrs["omega_m"] == pytest.approx(0.28)
        assert sorted(g_sim) == ["lc_00", "lc_01"]
        for lc in (0, 1):
            assert g_sim[f"lc_{lc:02d}"].attrs["lightcone"] == lc
            assert sorted(g_sim[f"lc_{lc:02d}"]) == ["slab_00", "slab_01"]
            for slab in slabs:
                g = g_sim[f"lc_{lc:02d}/slab_{slab.index:02d}"]
                a = g.attrs
                assert a["seed"] == derive_seed(GLOBAL_SEED, SeedStream.SLAB, 3, lc, slab.index)
                assert a["z_snapshot"] == pytest.approx(slab.z_centre, rel=1e-6)
                for key in ("chi_lo", "chi_hi", "z_lo", "z_hi", "z_centre", "depth_mpc_h", "width_mpc_h"):
                    assert a[key] == pytest.approx(getattr(slab, key), rel=1e-12), key
                for key, z in (("chi_lo", a["z_lo"]), ("chi_hi", a["z_hi"])):
                    ref = astro.comoving_distance(z).value  # Mpc with H0 = 100: Mpc/h
                    assert abs(a[key] / ref - 1) < CHI_RTOL, f"{key}: {a[key]} vs astropy {ref}"
                mesh = np.asarray(a["mesh_shape"])
                expect = [np.ceil(slab.width_mpc_h / 3.0)] * 2 + [np.ceil(slab.depth_mpc_h / 3.0)]
                assert mesh.tolist() == expect, (mesh, expect)
                np.testing.assert_allclose(a["box_mpc_h"], mesh * 3.0)
                assert a["los_axis"] == LOS_AXIS == 2 and a["cell_mpc_h"] == 3.0
                assert np.all(a["box_mpc_h"][:2] >= slab.width_mpc_h) and a["box_mpc_h"][2] >= slab.depth_mpc_h
                pos = g["positions_mpc_h"][:]
                assert pos.dtype == np.float32 and pos.shape == (int(np.prod(mesh)), 3), pos.shape
                assert np.all(pos >= 0) and np.all(pos < a["box_mpc_h"]), "positions outside [0, box)"


def test_chunk_file_reader_walks_the_layout(particle_file):
    """clustersbi.io.ChunkFile (the readers of every later stage) sees the same layout."""
    tmp, design, _ = particle_file
    with ChunkFile.open(tmp / "particles.h5") as f:
        sims = list(f.simulations())
        assert [attrs["index"] for attrs, _ in sims] == design["indices"]
        attrs, g_sim = sims[0]
        assert list(attrs["param_names"]) == design["outer_names"]
        np.testing.assert_allclose(attrs["theta"], design["outer"][0], rtol=1e-12)
        lightcones = list(ChunkFile.lightcones(g_sim))
        assert [l for l, _ in lightcones] == [0, 1]
        for _, g_lc in lightcones:
            assert [int(g.attrs["index"]) for g in ChunkFile.slabs(g_lc)] == [0, 1]
        assert f.attrs["global_seed"] == GLOBAL_SEED and f.attrs["simulation"] == SIMULATION


def test_lightcones_are_independent_and_slabs_reproducible(particle_file):
    tmp, design, cosmo = particle_file
    with h5py.File(tmp / "particles.h5", "r") as f:
        p0 = f["sim_000003/lc_00/slab_01/positions_mpc_h"][:]
        p1 = f["sim_000003/lc_01/slab_01/positions_mpc_h"][:]
        seed = int(f["sim_000003/lc_00/slab_01"].attrs["seed"])
    assert seed == slab_seed(GLOBAL_SEED, 3, 0, 1)
    assert np.abs(p0 - p1).max() > 1.0, "two lightcones share initial conditions"
    slab = lightcone_slab_geometry(0.1, 0.3, 2, 1.0, cosmo.Omega_m)[1]
    lp = _power_law_spectrum(cosmo)
    (run,) = simulate_lightcone_slabs(cosmo, lp.k_h_mpc, lp.pk_mpc3_h3[0], [slab], cell_mpc_h=3.0,
                                      seeds=[slab_seed(GLOBAL_SEED, 3, 0, 1)], a_init=0.1, n_steps=4)
    diff = float(np.abs(run.snapshots[-1].positions_mpc_h - p0).max())
    assert diff < SAME_RUN_ATOL_MPC_H, f"slab regenerated alone differs by {diff} Mpc/h"


def test_non_finite_simulation_names_its_index(tmp_path):
    design = _design([7], [[0.3, 0.8, 1.0]])
    _linear_power_file(tmp_path / "lp.h5", design, pk_scale=np.nan)
    cfg = {**SIMULATION, "lightcone": {**LIGHTCONE, "n_lightcones": 1, "n_slabs": 1}}
    with pytest.raises(RuntimeError, match=r"simulation 7 .*lightcone 0, slab 0"):
        simulate_lightcone_chunk(tmp_path / "lp.h5", design, cfg, GLOBAL_SEED, tmp_path / "particles.h5")
    assert not (tmp_path / "particles.h5").exists(), "a failed chunk left an output file"


def test_fixed_mesh_covers_every_cosmology_and_is_shared(tmp_path):
    """With mesh_omega_m (the prior's smallest Omega_m) every slab of the chunk gets one mesh,
    which covers each simulation's own slabs (astropy-checked geometry, test above)."""
    priors = [{"name": "sigma_8", "low": 0.6, "high": 1.0}, {"name": "Omega_m", "low": 0.15, "high": 0.5}]
    omega_ref = slab_mesh_omega_m(priors, 0.3)
    assert omega_ref == 0.15 and slab_mesh_omega_m(priors[:1], 0.3) == 0.3
    design = _design([0, 1], [[0.45, 0.8, 1.0], [0.2, 0.8, 1.0]])
    cosmos = _linear_power_file(tmp_path / "lp.h5", design)
    cfg = {**SIMULATION, "lightcone": {**LIGHTCONE, "n_lightcones": 1}}
    simulate_lightcone_chunk(tmp_path / "lp.h5", design, cfg, GLOBAL_SEED, tmp_path / "p.h5", mesh_omega_m=omega_ref)
    widest = lightcone_slab_geometry(0.1, 0.3, 2, 1.0, omega_ref)
    expect = [np.ceil(widest[-1].width_mpc_h / 3.0)] * 2 + [np.ceil(widest[0].depth_mpc_h / 3.0)]
    with h5py.File(tmp_path / "p.h5", "r") as f:
        for i, cosmo in enumerate(cosmos):
            for slab in lightcone_slab_geometry(0.1, 0.3, 2, 1.0, cosmo.Omega_m):
                a = f[f"sim_{i:06d}/lc_00/slab_{slab.index:02d}"].attrs
                assert np.asarray(a["mesh_shape"]).tolist() == expect
                assert np.all(a["box_mpc_h"][:2] >= slab.width_mpc_h) and a["box_mpc_h"][2] >= slab.depth_mpc_h
                assert a["depth_mpc_h"] == pytest.approx(slab.depth_mpc_h, rel=1e-12), "slab's own depth kept"
    slab = lightcone_slab_geometry(0.1, 0.3, 2, 1.0, 0.3)[0]
    lp = _power_law_spectrum(cosmos[0])
    with pytest.raises(ValueError, match="does not cover"):
        simulate_lightcone_slabs(cosmos[0], lp.k_h_mpc, lp.pk_mpc3_h3[0], [slab], cell_mpc_h=3.0, seeds=[1],
                                 n_steps=2, mesh_shape=(2, 2, 2))
    with pytest.raises(ValueError, match="seeds"):
        simulate_lightcone_slabs(cosmos[0], lp.k_h_mpc, lp.pk_mpc3_h3[0], [slab], cell_mpc_h=3.0, seeds=[1, 2],
                                 n_steps=2)
