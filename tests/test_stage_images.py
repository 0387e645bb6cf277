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
