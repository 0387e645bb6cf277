"""The cluster-images stage on a tiny config: generator -> cutouts -> mass CNN -> Table 3 -> plots,
and a user's cutout file through the same loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clustersbi.config import load_schema, validate_config
from clustersbi.cutouts import Cutouts, CutoutFormatError, read_cutouts, write_cutouts
from clustersbi.plots import images as plots
from clustersbi.stages import images as st

REPO = Path(__file__).resolve().parents[1]


def images_config(**images) -> dict:
    config = {
        "analysis": "cluster_images",
        "design": {"n_simulations": 1, "chunk_size": 1},
        "priors": {"cosmology": [{"name": "Omega_m", "label": "x", "distribution": "uniform", "low": 0.2, "high": 0.4}]},
        "cosmology": {},
        "xray": {"table": {"n_kt": 24, "dz": 0.05}},
        "images": {"n_clusters": 40, "n_regions": 4, "npix": 16, "pixel_kpc": 120.0, "m500c_min": 1e14, "m500c_max": 1e15,
                   "generator": {"n_particles": 4000, "n_los": 32}, **images},
        "mass_cnn": {"n_folds": 4, "max_epochs": 3, "patience": 2, "filters": [4, 4, 4, 4], "dense": [16], "batch_size": 16,
                     "saliency": {"n_bins": 6}},
    }
    return validate_config(config, load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """40 halos log-uniform in 1e14-1e15 Msun/h from a catalogue CSV (a wide prior for the proxies)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    catalogue = folder / "halos.csv"
    pd.DataFrame({"M500c": 10 ** rng.uniform(14, 15, 40), "redshift": rng.uniform(0.1, 0.4, 40)}).to_csv(catalogue, index=False)
    cfg = images_config(catalogue_csv=str(catalogue))
    out = folder / "cutouts.h5"
    st.cutouts_stage(cfg["images"], cfg["xray"], cfg["cosmology"]["fiducial"], cfg["seed"], out)
    return cfg, out


def test_generator_stage_writes_the_format(generated):
    cfg, path = generated
    cut = read_cutouts(path)
    assert cut.n == 120 and cut.npix == 16 and cut.source == "generator"
    assert cut.channels == ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7", "y", "mass"]
    assert set(np.unique(cut.region)) <= set(range(4))
    # masses follow the draw's range, and the heavier half is brighter in X-rays on average
    assert cut.M500c.min() >= 1e14 and cut.M500c.max() <= 1e15
    heavy = cut.M500c > np.median(cut.M500c)
    counts = cut.images["xray_0.5-1.2"].sum(axis=(1, 2))
    assert np.median(counts[heavy]) > np.median(counts[~heavy])


def test_mass_cnn_stage_and_table(generated, tmp_path):
    cfg, path = generated
    out = {k: tmp_path / f"single_{k}" for k in ("model.pt", "history.csv", "predictions.csv", "saliency.h5")}
    st.train_mass_cnn_stage(path, "single", cfg["mass_cnn"], cfg["seed"], 1, *out.values())
    pred = pd.read_csv(out["predictions.csv"])
    assert len(pred) == 120 and np.all(np.isfinite(pred["ln_m500c_pred"]))
    # no cluster in two folds
    assert pred.groupby("cluster_id")["fold"].nunique().max() == 1
    hist = pd.read_csv(out["history.csv"])
    assert set(hist["fold"]) == {0, 1, 2, 3}
    st.mass_cnn_table_stage(path, {"single": out["predictions.csv"]}, cfg["mass_cnn"], cfg["cosmology"]["fiducial"],
                            tmp_path / "table3.csv", tmp_path / "all.csv")
    table = pd.read_csv(tmp_path / "table3.csv").set_index("model")
    assert list(table.index) == ["N_phot", "N_phot_500c", "L_X", "CNN_single"]
    prior_dex = np.std(np.log10(read_cutouts(path).M500c), ddof=1)  # ~0.29 dex
    for proxy in ("N_phot", "N_phot_500c", "L_X"):
        row = table.loc[proxy]
        # the proxies carry mass information (soft-band L ~ M self-similarly; cool cores and the
        # intrinsic sigma_lnL = 0.3 scatter it by ~0.2 dex), and Ho's predictive scatter (eq. 7)
        # forecasts the scatter measured on the test folds
        assert row.scatter_dex < 0.75 * prior_dex, (table, prior_dex)
        np.testing.assert_allclose(row.predictive_scatter_dex, row.scatter_dex, rtol=0.25)
    np.testing.assert_allclose(table["scatter_pct"], table["scatter_dex"] * np.log(10) * 100)
    plots.plot_examples(path, tmp_path / "ex.png", 3)
    plots.plot_residuals(tmp_path / "all.csv", tmp_path / "table3.csv", tmp_path / "res.png")
    plots.plot_saliency([out["saliency.h5"]], tmp_path / "sal.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("ex.png", "res.png", "sal.png"))


def test_user_cutout_file_is_validated_and_copied(tmp_path):
    rng = np.random.default_rng(0)
    n, npix = 6, 8
    user = Cutouts(
        images={"xray_0.5-2": rng.poisson(2.0, (n, npix, npix)), "mass": rng.random((n, npix, npix)) * 1e12,
                "stellar": rng.random((n, npix, npix)) * 1e10},
        pixel_kpc=np.linspace(10, 20, n), cluster_id=np.arange(n) // 3, view=np.arange(n) % 3, region=np.arange(n) // 3,
        redshift=np.full(n, 0.1), M500c=np.full(n, 2e14), M200c=np.full(n, 3e14), R500c_kpc=np.full(n, 800.0),
        R200c_kpc=np.full(n, 1200.0), exposure_s=np.full(n, 1e4), position=rng.random((n, 3)), source="simulation",
    )
    src = tmp_path / "user.h5"
    write_cutouts(src, user)
    cfg = images_config(source="user", cutout_file=str(src))
    st.cutouts_stage(cfg["images"], cfg["xray"], cfg["cosmology"]["fiducial"], cfg["seed"], tmp_path / "out.h5")
    back = read_cutouts(tmp_path / "out.h5")
    assert back.source == "simulation" and back.channels == ["xray_0.5-2", "mass", "stellar"]
    np.testing.assert_array_equal(back.images["stellar"], user.images["stellar"])
    np.testing.assert_allclose(back.pixel_kpc_array(), np.linspace(10, 20, n))
    with pytest.raises(ValueError, match="images.cutout_file"):
        cfg_missing = images_config(source="user")
        st.cutouts_stage(cfg_missing["images"], cfg["xray"], {}, 0, tmp_path / "x.h5")
    import h5py

    with h5py.File(src, "a") as h5:
        del h5["redshift"]
    with pytest.raises(CutoutFormatError, match="missing dataset redshift"):
        st.cutouts_stage(cfg["images"], cfg["xray"], {}, 0, tmp_path / "y.h5")


# ---------------------------------------------------------------------- source: simulation
def _isothermal_sphere(n, r_max, centre, rng):
    """Particles of a singular isothermal sphere, M(<r) proportional to r: radii uniform in r."""
    r = r_max * (np.arange(n) + 0.5) / n
    v = rng.normal(size=(n, 3))
    return centre + r[:, None] * v / np.linalg.norm(v, axis=1)[:, None]


def _lightcone_files(folder, halos_per_slab, omega_m=0.3, h=0.7, mock_of=None):
    """A particle and a gas chunk file in the layout of rules simulate_lightcone and paint_gas: one
    simulation, one lightcone, a slab per entry of ``halos_per_slab`` (a list of halo centres, each
    an isothermal sphere of 400 particles and 1 Mpc/h in a uniform grid of particles, with a hot
    gas block about it)."""
    from clustersbi.design import SimulationRecord
    from clustersbi.io import ChunkFile

    rng = np.random.default_rng(7)
    shape = (24, 24, 8)
    box = np.array(shape, dtype=float)
    grid = np.stack(np.meshgrid(*[np.arange(s) + 0.5 for s in shape], indexing="ij"), -1).reshape(-1, 3)
    sim = SimulationRecord(3, 99, "train", ("Omega_m",), (omega_m,))
    gas_sim = sim if mock_of is None else SimulationRecord(8, 5, "train", ("Omega_m",), (omega_m,), simulation=3, inner_index=1)
    paths = folder / "particles.h5", folder / "gas.h5"
    with ChunkFile.create(paths[0]) as particles, ChunkFile.create(paths[1]) as gas:
        p_lc = ChunkFile.lightcone(particles.simulation(sim, omega_m=omega_m, h=h), 0)
        g_lc = ChunkFile.lightcone(gas.simulation(gas_sim, omega_m=omega_m, h=h), 0)
        for s, centres in enumerate(halos_per_slab):
            n_halo = 400 * len(centres)
            pos = np.concatenate([grid[: len(grid) - n_halo]] + [_isothermal_sphere(400, 1.0, np.array(c), rng) for c in centres])
            ne, t = np.full(shape, 1e-6), np.full(shape, 1e6)
            for c in centres:
                i, j = int(c[0]), int(c[1])
                ne[i - 2:i + 3, j - 2:j + 3, :], t[i - 2:i + 3, j - 2:j + 3, :] = 1e-4, 3e7
            attrs = {"index": s, "chi_lo": 500.0 + 8 * s, "chi_hi": 508.0 + 8 * s, "z_lo": 0.18, "z_hi": 0.22, "z_centre": 0.2,
                     "box_mpc_h": box, "mesh_shape": np.array(shape), "cell_mpc_h": 1.0, "los_axis": 2}
            ChunkFile.add_slab(p_lc, s, **attrs).create_dataset("positions_mpc_h", data=np.mod(pos, box))
            g = ChunkFile.add_slab(g_lc, s, **attrs)
            g.create_dataset("ne_cm3", data=ne)
            g.create_dataset("t_k", data=t)
    return paths


def test_simulation_source_cuts_out_every_injected_halo(tmp_path):
    from clustersbi.constants import RHO_CRIT_MSUN_H_MPC_H3
    from clustersbi.cosmology import efunc

    centres = [[[12.3, 5.6, 4.1]], [], [[6.2, 17.5, 3.9], [18.4, 8.1, 4.2]]]
    particles, gas = _lightcone_files(tmp_path, centres)
    cfg = images_config(source="simulation", simulation={"mass_min_msun_h": 1e13, "npix": 8})
    out = tmp_path / "cutouts.h5"
    st.cutouts_stage(cfg["images"], cfg["xray"], cfg["cosmology"]["fiducial"], cfg["seed"], out,
                     particle_files=[particles], gas_files=[gas])
    cut = read_cutouts(out)
    assert cut.source == "simulation" and cut.n == 3 and cut.npix == 8
    assert cut.channels == ["xray_0.5-1.2", "xray_1.2-2", "xray_2-7", "y", "mass"]
    # one region per slab volume (the empty slab 1 included in the numbering), ids unique
    assert list(cut.region) == [0, 2, 2] and sorted(cut.cluster_id) == [0, 1, 2]
    # SO masses of the 400-particle isothermal spheres: M(<r) = M r / r_max with the mean density
    # 500 rho_c(z) inside r (comoving), the uniform background adds < 2%
    z, omega_m = 0.2, 0.3
    m_part = RHO_CRIT_MSUN_H_MPC_H3 * omega_m  # one particle per (Mpc/h)^3
    mass = 400 * m_part
    rho = 500 * RHO_CRIT_MSUN_H_MPC_H3 * efunc(z, omega_m) ** 2 / (1 + z) ** 3
    m500 = mass * np.sqrt(3 * mass / (4 * np.pi * rho))  # r_max = 1 Mpc/h
    np.testing.assert_allclose(cut.M500c, m500, rtol=0.05)
    found = np.sort(cut.position[:, 0])
    np.testing.assert_allclose(found, [6.2, 12.3, 18.4], atol=0.2)
    # X-ray counts peak on the hot block around each halo
    for k in range(cut.n):
        img = cut.images["xray_0.5-1.2"][k]
        assert img.max() > 100 * np.median(img)


def test_simulation_source_reads_the_pm_run_of_a_painted_mock(tmp_path):
    particles, gas = _lightcone_files(tmp_path, [[[12.3, 5.6, 4.1]]], mock_of=3)
    cfg = images_config(source="simulation", simulation={"mass_min_msun_h": 1e13, "npix": 8})
    cut = st.simulation_cutouts([particles], [gas], cfg["images"], cfg["xray"])
    assert cut.n == 1
    import h5py

    with h5py.File(particles, "a") as h5:
        del h5["sim_000003"]
    with pytest.raises(ValueError, match="no simulation 3 .gas of simulation 8"):
        st.simulation_cutouts([particles], [gas], cfg["images"], cfg["xray"])
    with pytest.raises(ValueError, match="lower the cut"):
        cfg = images_config(source="simulation", simulation={"mass_min_msun_h": 1e16, "npix": 8})
        particles, gas = _lightcone_files(tmp_path, [[[12.3, 5.6, 4.1]]])
        st.cutouts_stage(cfg["images"], cfg["xray"], {}, 0, tmp_path / "none.h5", particle_files=[particles], gas_files=[gas])


def test_simulation_source_config_names_the_chunk_count():
    with pytest.raises(ValueError, match="images.simulation.n_chunks: 2 chunks wanted, the design has 1"):
        images_config(source="simulation", simulation={"n_chunks": 2})
