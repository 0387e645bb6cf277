"""clustersbi.stages.catalogue: per-cluster feature tables of both analyses (the scaling mocks'
L_X and noisy mass proxy, the detections' count rates and aperture profiles from the maps),
empty catalogues kept, and the padded training set with its feature names and counts."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from clustersbi.compress.data import load_training_set
from clustersbi.detect import catalogue_to_h5
from clustersbi.io import h5_read_attrs, h5_write_attrs
from clustersbi.stages.catalogue import (
    aperture_count_rates,
    catalogue_chunk_ldl,
    catalogue_chunk_scaling,
    gather_catalogue,
    ldl_feature_names,
    ldl_features,
    resolve_catalogue_config,
)
from clustersbi.stages.compress import catalogue_layout, compressor_config

CATALOGUE = {"sort_by": None, "supplementary": None, "mass_proxy_scatter": 0.3, "profile_radii_arcmin": [1.0, 2.0]}
BANDS = [[0.5, 1.0], [1.0, 2.0]]


def _meta(index, split="train"):
    return {"index": index, "simulation": index // 2, "inner": index % 2, "split": split, "seed": 1,
            "theta": [0.3, 0.8 + 0.01 * index], "param_names": ["Omega_m", "sigma_8"]}


def _scaling_chunk(tmp_path, name, masses_by_mock):
    cats, sums = tmp_path / f"cat_{name}.h5", tmp_path / f"sum_{name}.h5"
    with h5py.File(cats, "w") as c, h5py.File(sums, "w") as s:
        for index, masses in masses_by_mock.items():
            meta = _meta(index)
            sg = s.create_group(f"mock_{index:07d}")
            if masses is None:
                h5_write_attrs(sg, {**meta, "empty": "no cluster"})
                continue
            h5_write_attrs(sg, meta)
            g = c.create_group(f"mock_{index:07d}")
            g["mass_msun_h"] = np.asarray(masses, float)
            g["l_x_erg_s"] = 1e43 * (np.asarray(masses) / 1e14) ** 1.5
            h5_write_attrs(g, meta)
    return cats, sums


def test_scaling_tables_sorted_with_a_seeded_mass_proxy_and_empty_mocks(tmp_path):
    cats, sums = _scaling_chunk(tmp_path, "a", {0: [1e14, 5e14, 2e14], 1: None, 2: [3e14]})
    out = tmp_path / "features.h5"
    catalogue_chunk_scaling(cats, sums, 7, CATALOGUE, out)
    with h5py.File(out) as f:
        attrs = h5_read_attrs(f)
        assert list(attrs["feature_names"]) == ["log_l_x", "log_mass_proxy"] and attrs["sort_feature"] == "log_l_x"
        assert list(attrs["supplementary_features"]) == ["log_mass_proxy"]
        feats, log_mass = f["mock_0000000/features"][()], f["mock_0000000/log_mass"][()]
        assert np.all(np.diff(feats[:, 0]) < 0)  # brightest first
        assert np.allclose(log_mass, np.log10([5e14, 2e14, 1e14]))
        assert f["mock_0000001/features"].shape == (0, 2)
        proxy_scatter = feats[:, 1] - log_mass
        assert np.all(np.abs(proxy_scatter) < 5 * 0.3 / np.log(10)) and np.any(proxy_scatter != 0)
    again = tmp_path / "again.h5"
    catalogue_chunk_scaling(cats, sums, 7, CATALOGUE, again)
    with h5py.File(out) as a, h5py.File(again) as b:
        assert np.array_equal(a["mock_0000000/features"][()], b["mock_0000000/features"][()])
    exact = tmp_path / "exact.h5"
    catalogue_chunk_scaling(cats, sums, 7, {**CATALOGUE, "mass_proxy_scatter": 0.0}, exact)
    with h5py.File(exact) as f:
        assert np.allclose(f["mock_0000000/features"][:, 1], f["mock_0000000/log_mass"][()])


def test_gather_pads_with_nan_and_keeps_counts_names_and_masses(tmp_path):
    files = []
    for name, mocks in (("a", {0: [1e14, 5e14, 2e14], 1: None}), ("b", {2: [3e14], 3: [1e14] * 5})):
        cats, sums = _scaling_chunk(tmp_path, name, mocks)
        files.append(tmp_path / f"feat_{name}.h5")
        catalogue_chunk_scaling(cats, sums, 7, CATALOGUE, files[-1])
    out = tmp_path / "training.h5"
    gather_catalogue(files[::-1], out)
    ts = load_training_set(out)
    assert ts.x.shape == (4, 5, 2) and ts.param_names == ["Omega_m", "sigma_8"]
    with h5py.File(out) as f:
        assert list(f["counts"][()]) == [3, 0, 1, 5] and list(f["index"][()]) == [0, 1, 2, 3]
        assert f["log_mass"].shape == (4, 5) and np.isnan(f["log_mass"][0, 3:]).all()
        assert list(h5_read_attrs(f)["feature_names"]) == ["log_l_x", "log_mass_proxy"]
    assert np.isnan(ts.x[1]).all() and np.isnan(ts.x[0, 3:]).all() and np.isfinite(ts.x[0, :3]).all()
    assert catalogue_layout(out) == {"sort_column": 0, "supplementary": [1]}
    # the compressor of the stage gets those columns
    cfg = compressor_config("catalogue", {"inputs": {"catalogue": {"extractor": "catalogue_encoder", "transform": "none",
                                                                   "standardize": "per_column", "channel_axis": None, "hidden": None}},
                                          "encoder": {"hidden": [8]}}, catalogue_layout(out))
    assert cfg.architecture == "catalogue_encoder" and cfg.encoder == {"hidden": [8], "sort_column": 0, "supplementary": [1]}
    cut = tmp_path / "cut.h5"
    gather_catalogue(files, cut, n_max=2)
    with h5py.File(cut) as f:
        assert f["x"].shape == (4, 2, 2) and f.attrs["n_clusters_cut"] == 1 + 3
        assert np.allclose(f["log_mass"][0], np.log10([5e14, 2e14]))  # the brightest kept


def test_aperture_count_rates_of_a_point_and_a_flat_map():
    img = np.zeros((21, 31))
    img[10, 20] = 2.0
    out = aperture_count_rates(img, np.array([20.0, 0.0]), np.array([10.0, 0.0]), [0.5, 3.0])
    assert np.allclose(out, [[2.0, 2.0], [0.0, 0.0]])
    flat = aperture_count_rates(np.ones((41, 41)), np.array([20.0]), np.array([20.0]), [5.0, 10.0])
    assert np.allclose(flat[0] / (np.pi * np.array([25.0, 100.0])), 1.0, atol=0.05)


def _detections():
    return pd.DataFrame({"slab": [1, 0], "x_pix": [5.0, 12.0], "y_pix": [6.0, 3.0], "ra_deg": [0.0, 0.1],
                         "dec_deg": [0.0, 0.1], "npix": [9, 4], "CR": [0.05, 0.03], "HR": [0.8, 0.5], "z": [0.2, 0.3],
                         "CR_0.5-1": [0.03, 0.02], "CR_1-2": [0.02, 0.01]})


def test_ldl_features_read_the_detection_and_its_slab_map():
    maps = np.zeros((2, 2, 16, 16))
    maps[1, 0, 6, 5], maps[1, 1, 6, 7] = 0.04, 0.01  # slab 1: the first detection's, 2 pixels apart
    maps[0, :, 3, 12] = 0.015
    feats = ldl_features(_detections(), maps, BANDS, [1.0, 2.0, 4.0], pixel_arcmin=1.0)
    names = ldl_feature_names(BANDS, [1.0, 2.0, 4.0])
    assert names == ["log_cr", "log_cr_0.5-1", "log_cr_1-2", "hr", "z", "log_npix", "log_cr_r1", "log_cr_r2", "log_cr_r4"]
    assert feats.shape == (2, 9)
    col = {n: feats[:, i] for i, n in enumerate(names)}
    assert np.allclose(col["log_cr"], np.log10([0.05, 0.03])) and np.allclose(col["hr"], [0.8, 0.5])
    assert np.allclose(10 ** col["log_cr_r1"], [0.04, 0.03]) and np.allclose(10 ** col["log_cr_r2"], [0.05, 0.03])
    # coarser pixels: the same apertures hold fewer pixels
    feats2 = ldl_features(_detections(), maps, BANDS, [1.0, 2.0, 4.0], pixel_arcmin=2.0)
    assert np.allclose(10 ** feats2[0, 6:], 0.04 + np.array([0, 0, 1]) * 0.01)  # radii of 0.5, 1, 2 pixels


def test_ldl_chunk_concatenates_lightcones_with_empty_ones(tmp_path):
    cats, maps = tmp_path / "cats.h5", tmp_path / "maps.h5"
    with h5py.File(cats, "w") as c, h5py.File(maps, "w") as m:
        for index, lcs in ((0, [_detections(), _detections().iloc[:0]]), (1, [_detections().iloc[:0]] * 2)):
            meta = {"index": index, "split": "test", "theta": [0.3, 0.8], "param_names": ["Omega_m", "sigma_8"]}
            g, gm = c.create_group(f"sim_{index:06d}"), m.create_group(f"sim_{index:06d}")
            h5_write_attrs(g, meta)
            for lc, df in enumerate(lcs):
                catalogue_to_h5(g.create_group(f"lc_{lc:02d}"), df)
                gm.create_group(f"lc_{lc:02d}")["rate_cts_s"] = np.full((2, 2, 16, 16), 1e-3, dtype=np.float32)
    out = tmp_path / "features.h5"
    catalogue_chunk_ldl(cats, maps, CATALOGUE, BANDS, 1.0, out)
    with h5py.File(out) as f:
        assert f["mock_0000000/features"].shape == (2, 8) and f["mock_0000001/features"].shape == (0, 8)
        assert "log_mass" not in f["mock_0000000"] and f.attrs["sort_feature"] == "log_cr"
    training = tmp_path / "training.h5"
    gather_catalogue([out], training)
    with h5py.File(training) as f:
        assert "log_mass" not in f and list(f["counts"][()]) == [2, 0]
    assert catalogue_layout(training) == {"sort_column": 0, "supplementary": []}


def test_unknown_sort_or_supplementary_features_are_named():
    with pytest.raises(ValueError, match=r"\['log_t'\] do not exist"):
        resolve_catalogue_config({**CATALOGUE, "supplementary": ["log_t"]}, "scaling", ["log_l_x", "log_mass_proxy"])
    with pytest.raises(ValueError, match="every feature is supplementary"):
        resolve_catalogue_config({**CATALOGUE, "supplementary": ["log_l_x", "log_mass_proxy"]}, "scaling",
                                 ["log_l_x", "log_mass_proxy"])


@pytest.mark.parametrize("name, reference", [("tiny.yaml", "abundance"), ("tiny_xod.yaml", "xod")])
def test_both_analyses_plan_the_encoder_its_interpretation_and_the_comparison(repo, tmp_path, name, reference):
    import yaml
    from workflow_runs import dry_run_jobs

    config = yaml.safe_load((repo / "tests" / "config" / name).read_text())
    config["inference"]["summaries"] = [reference, "catalogue"]
    jobs = dry_run_jobs(repo, tmp_path, config, name)
    n_chunks = -(-config["design"]["n_simulations"] // config["design"]["chunk_size"])
    assert jobs["catalogue_features"] == n_chunks and jobs["gather_catalogue"] == 1
    assert jobs["interpret_catalogue"] == 1 and jobs["compare_compressors"] == 1 and jobs["train_compressor"] == 2
